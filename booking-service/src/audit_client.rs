//! The audit-service client: the audit sink's publisher (the relay ships the outbox's
//! audit rows through it, a batch per `Append`) and the reader behind
//! `GET /api/v1/audit`. Every call has a deadline; the audit-service being down only
//! delays shipping, never a booking.

use crate::repository::audit::{AuditRecord, RecordActor};
use crate::service::outbox::{EventPublisher, PendingEvent};
use async_trait::async_trait;
use medbook_proto::audit::v1 as pb;
use medbook_proto::audit::v1::audit_service_client::AuditServiceClient;
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

#[derive(Clone)]
pub struct AuditClient {
    client: AuditServiceClient<Channel>,
    token: Option<MetadataValue<tonic::metadata::Ascii>>,
    timeout: Duration,
}

impl AuditClient {
    /// Connects lazily: a missing audit-service is an error of each call, not of
    /// start-up.
    pub fn new(
        addr: &str,
        token: Option<&SecretString>,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let channel = Endpoint::from_shared(addr.to_owned())?
            .connect_timeout(timeout)
            .timeout(timeout)
            .connect_lazy();
        let token = token
            .map(|t| format!("Bearer {}", t.expose_secret()).parse())
            .transpose()
            .map_err(|_| anyhow::anyhow!("audit.api_token is not a valid header value"))?;
        Ok(Self {
            client: AuditServiceClient::new(channel),
            token,
            timeout,
        })
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(message);
        req.set_timeout(self.timeout);
        if let Some(t) = &self.token {
            req.metadata_mut().insert("authorization", t.clone());
        }
        req
    }

    pub async fn append(
        &self,
        records: Vec<pb::AuditRecord>,
    ) -> Result<pb::AppendResponse, tonic::Status> {
        let mut client = self.client.clone();
        client
            .append(self.request(pb::AppendRequest { records }))
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn query(&self, query: pb::QueryRequest) -> Result<pb::QueryResponse, tonic::Status> {
        let mut client = self.client.clone();
        client
            .query(self.request(query))
            .await
            .map(tonic::Response::into_inner)
    }
}

/// A queued record as the audit-service's message.
pub fn to_proto(r: AuditRecord) -> pb::AuditRecord {
    pb::AuditRecord {
        id: r.id.to_string(),
        actor: Some(pb::Actor {
            kind: Some(match r.actor {
                RecordActor::User { id, role } => {
                    pb::actor::Kind::User(pb::UserActor { user_id: id, role })
                }
                RecordActor::System(job) => pb::actor::Kind::System(job),
            }),
        }),
        action: r.action,
        entity_type: r.entity_type,
        entity_id: r.entity_id,
        changes: r
            .changes
            .into_iter()
            .map(|c| pb::FieldChange {
                field: c.field,
                before: c.before,
                after: c.after,
            })
            .collect(),
        source: r.source,
        request_id: r.request_id.unwrap_or_default(),
        occurred_at: Some(medbook_proto::time::to_proto(r.occurred_at)),
    }
}

#[async_trait]
impl EventPublisher for AuditClient {
    /// One `Append` per batch: it is all-or-nothing there, so every row shares its
    /// outcome. A row whose payload cannot be read fails alone (and is kept).
    async fn publish(&self, events: &[PendingEvent]) -> Vec<Result<(), String>> {
        let decoded: Vec<Result<pb::AuditRecord, String>> = events
            .iter()
            .map(|e| {
                serde_json::from_str::<AuditRecord>(&e.payload)
                    .map(to_proto)
                    .map_err(|err| format!("audit row {} unreadable: {err}", e.id))
            })
            .collect();
        let records: Vec<pb::AuditRecord> = decoded
            .iter()
            .filter_map(|r| r.as_ref().ok().cloned())
            .collect();
        let outcome = if records.is_empty() {
            Ok(())
        } else {
            self.append(records)
                .await
                .map(|_| ())
                .map_err(|s| format!("audit-service: {} {}", s.code(), s.message()))
        };
        decoded
            .into_iter()
            .map(|r| match r {
                Err(e) => Err(e),
                Ok(_) => outcome.clone(),
            })
            .collect()
    }

    async fn check(&self) -> Result<(), String> {
        let mut client = self.client.clone();
        match client
            .get_checkpoint(self.request(pb::GetCheckpointRequest {}))
            .await
        {
            Ok(_) => Ok(()),
            // A new log has no checkpoint yet, but it answers.
            Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
            Err(s) => Err(format!("{} {}", s.code(), s.message())),
        }
    }
}
