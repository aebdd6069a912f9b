//! The audit-service client: the audit sink's publisher (the relay ships the outbox's
//! audit rows through it, a batch per `Append`) and the reader behind
//! `GET /api/v1/audit`. Each call carries the credential of its kind: the append token
//! with Append (and the readiness check's GetCheckpoint, which either token may call),
//! the read token with Query; the audit-service refuses the other one. Every call has
//! a deadline; the audit-service being down only delays shipping, never a booking.

use crate::domain::audit::{AuditFilter, LoggedActor, LoggedChange, LoggedPage, LoggedRecord};
use crate::domain::FieldError;
use crate::repository::audit::{AuditRecord, RecordActor};
use crate::service::audit_log::{AuditReadError, AuditReader};
use crate::service::outbox::{EventPublisher, PendingEvent};
use async_trait::async_trait;
use medbook_proto::audit::v1 as pb;
use medbook_proto::audit::v1::audit_service_client::AuditServiceClient;
use medbook_proto::observe::{self, GrpcMetrics};
use medbook_shared::trace_context;
use secrecy::{ExposeSecret, SecretString};
use std::time::{Duration, Instant};
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

type Bearer = MetadataValue<tonic::metadata::Ascii>;

#[derive(Clone)]
pub struct AuditClient {
    client: AuditServiceClient<Channel>,
    /// `Bearer <audit.append_token>`, sent with Append.
    append: Option<Bearer>,
    /// `Bearer <audit.read_token>`, sent with Query.
    read: Option<Bearer>,
    timeout: Duration,
    metrics: GrpcMetrics,
}

/// `Bearer <token>` as a header value; `key` names the setting when it cannot be one.
fn bearer(key: &str, token: Option<&SecretString>) -> anyhow::Result<Option<Bearer>> {
    token
        .map(|t| format!("Bearer {}", t.expose_secret()).parse())
        .transpose()
        .map_err(|_| anyhow::anyhow!("{key} is not a valid header value"))
}

/// The audit-service's fully qualified gRPC name (metrics label, span name).
const SERVICE: &str = "medbook.audit.v1.AuditService";
/// The methods this client calls, whose series exist from the start.
pub const METHODS: &[(&str, &str)] = &[
    (SERVICE, "Append"),
    (SERVICE, "Query"),
    (SERVICE, "GetCheckpoint"),
];

impl AuditClient {
    /// Connects lazily: a missing audit-service is an error of each call, not of
    /// start-up.
    pub fn new(
        addr: &str,
        append_token: Option<&SecretString>,
        read_token: Option<&SecretString>,
        timeout: Duration,
        metrics: GrpcMetrics,
    ) -> anyhow::Result<Self> {
        let channel = Endpoint::from_shared(addr.to_owned())?
            .connect_timeout(timeout)
            .timeout(timeout)
            .connect_lazy();
        Ok(Self {
            client: AuditServiceClient::new(channel),
            append: bearer("audit.append_token", append_token)?,
            read: bearer("audit.read_token", read_token)?,
            timeout,
            metrics,
        })
    }

    /// The credential `method` is called with.
    fn credential(&self, method: &str) -> Option<&Bearer> {
        match method {
            "Append" => self.append.as_ref(),
            "Query" => self.read.as_ref(),
            // GetCheckpoint takes either; the relay's readiness is the writer's concern.
            _ => self.append.as_ref().or(self.read.as_ref()),
        }
    }

    fn request<T>(&self, method: &str, message: T, span: &tracing::Span) -> tonic::Request<T> {
        let mut req = tonic::Request::new(message);
        req.set_timeout(self.timeout);
        if let Some(t) = self.credential(method) {
            req.metadata_mut().insert("authorization", t.clone());
        }
        observe::inject(span, req.metadata_mut());
        req
    }

    /// One call of `method` in a client span (a child of `parent`, or of the current
    /// span), counted in the client metrics.
    async fn call<T, R, F, Fut>(
        &self,
        method: &'static str,
        parent: Option<&tracing::Span>,
        message: T,
        f: F,
    ) -> Result<R, tonic::Status>
    where
        F: FnOnce(AuditServiceClient<Channel>, tonic::Request<T>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let span = match parent {
            Some(p) => p.in_scope(|| observe::client_span(SERVICE, method)),
            None => observe::client_span(SERVICE, method),
        };
        let request = self.request(method, message, &span);
        let start = Instant::now();
        let result = tracing::Instrument::instrument(f(self.client.clone(), request), span.clone())
            .await
            .map(tonic::Response::into_inner);
        let code = result
            .as_ref()
            .map_or_else(|s| s.code(), |_| tonic::Code::Ok);
        observe::client_done(&self.metrics, &span, SERVICE, method, code, start.elapsed());
        result
    }

    pub async fn append(
        &self,
        records: Vec<pb::AuditRecord>,
        parent: Option<&tracing::Span>,
    ) -> Result<pb::AppendResponse, tonic::Status> {
        self.call(
            "Append",
            parent,
            pb::AppendRequest { records },
            |mut c, r| async move { c.append(r).await },
        )
        .await
    }

    async fn query_page(
        &self,
        query: pb::QueryRequest,
    ) -> Result<pb::QueryResponse, tonic::Status> {
        self.call(
            "Query",
            None,
            query,
            |mut c, r| async move { c.query(r).await },
        )
        .await
    }
}

/// The relay's span of shipping one audit record, in the trace of the change that
/// wrote it; its context goes with the record, so the audit-service's span of the
/// append joins that trace too.
fn ship_span(e: &PendingEvent) -> tracing::Span {
    let span = tracing::info_span!(
        "audit ship",
        otel.name = "audit.record ship",
        otel.kind = "producer",
        otel.status_code = tracing::field::Empty,
        audit.action = %e.event_type,
        audit.record_id = %e.id,
        request_id = e.request_id.as_deref().unwrap_or(""),
    );
    trace_context::set_remote_parent(
        &span,
        trace_context::context_from_traceparent(e.trace_parent.as_deref()),
    );
    span
}

/// A queued record as the audit-service's message; `traceparent` is the shipping
/// span's context (transport only, not part of the record).
pub fn to_proto(r: AuditRecord, traceparent: String) -> pb::AuditRecord {
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
        traceparent,
    }
}

#[async_trait]
impl EventPublisher for AuditClient {
    /// One `Append` per batch: it is all-or-nothing there, so every row shares its
    /// outcome. A row whose payload cannot be read fails alone (and is kept).
    async fn publish(&self, events: &[PendingEvent]) -> Vec<Result<(), String>> {
        let spans: Vec<tracing::Span> = events.iter().map(ship_span).collect();
        let decoded: Vec<Result<pb::AuditRecord, String>> = events
            .iter()
            .zip(&spans)
            .map(|(e, span)| {
                let traceparent = trace_context::headers_of(span)
                    .remove(trace_context::TRACEPARENT)
                    .unwrap_or_default();
                serde_json::from_str::<AuditRecord>(&e.payload)
                    .map(|r| to_proto(r, traceparent))
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
            // The call is one span, in the trace of the batch's first record; the other
            // records' spans link to it through their own children on the server.
            self.append(records, spans.first())
                .await
                .map(|_| ())
                .map_err(|s| format!("audit-service: {} {}", s.code(), s.message()))
        };
        for span in &spans {
            if outcome.is_err() {
                span.record("otel.status_code", "error");
            }
        }
        decoded
            .into_iter()
            .map(|r| match r {
                Err(e) => Err(e),
                Ok(_) => outcome.clone(),
            })
            .collect()
    }

    async fn check(&self) -> Result<(), String> {
        // Readiness probes run outside any trace: no span of their own.
        let mut client = self.client.clone();
        let start = Instant::now();
        let result = client
            .get_checkpoint(self.request(
                "GetCheckpoint",
                pb::GetCheckpointRequest {},
                &tracing::Span::none(),
            ))
            .await;
        let code = result
            .as_ref()
            .map_or_else(|s| s.code(), |_| tonic::Code::Ok);
        self.metrics.observe(
            SERVICE,
            "GetCheckpoint",
            observe::code_name(code),
            start.elapsed(),
        );
        match result {
            Ok(_) => Ok(()),
            // A new log has no checkpoint yet, but it answers.
            Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
            Err(s) => Err(format!("{} {}", s.code(), s.message())),
        }
    }
}

#[async_trait::async_trait]
impl AuditReader for AuditClient {
    async fn query(&self, filter: AuditFilter) -> Result<LoggedPage, AuditReadError> {
        let request = pb::QueryRequest {
            entity_type: filter.entity_type.unwrap_or_default(),
            entity_id: filter.entity_id.unwrap_or_default(),
            actor_id: filter.actor_id.map(|id| id.to_string()).unwrap_or_default(),
            action: filter.action.unwrap_or_default(),
            from: filter.from.map(medbook_proto::time::to_proto),
            to: filter.to.map(medbook_proto::time::to_proto),
            page_size: filter.per_page,
            page_token: filter.page_token.unwrap_or_default(),
        };
        match self.query_page(request).await {
            Ok(page) => Ok(LoggedPage {
                items: page.records.into_iter().map(logged).collect(),
                next_page_token: Some(page.next_page_token).filter(|t| !t.is_empty()),
            }),
            // The audit-service refused a filter: its named fields, or the message.
            Err(s) if s.code() == tonic::Code::InvalidArgument => {
                use tonic_types::StatusExt;
                let mut fields: Vec<FieldError> = s
                    .get_details_bad_request()
                    .map(|b| {
                        b.field_violations
                            .into_iter()
                            .map(|v| FieldError::new(v.field, v.description))
                            .collect()
                    })
                    .unwrap_or_default();
                if fields.is_empty() {
                    fields.push(FieldError::new("page_token", s.message().to_owned()));
                }
                Err(AuditReadError::Refused(fields))
            }
            Err(s) => Err(AuditReadError::Unavailable(format!(
                "{:?}: {}",
                s.code(),
                s.message()
            ))),
        }
    }
}

/// A stored record as the log's reader sees it.
fn logged(s: pb::StoredRecord) -> LoggedRecord {
    let r = s.record.unwrap_or_default();
    let time =
        |t: Option<prost_types::Timestamp>| t.as_ref().and_then(medbook_proto::time::from_proto);
    LoggedRecord {
        index: s.index,
        id: r.id,
        actor: match r.actor.and_then(|a| a.kind) {
            Some(pb::actor::Kind::User(u)) => LoggedActor::User {
                user_id: u.user_id,
                role: u.role,
            },
            Some(pb::actor::Kind::System(job)) => LoggedActor::System(job),
            None => LoggedActor::Unknown,
        },
        action: r.action,
        entity_type: r.entity_type,
        entity_id: r.entity_id,
        changes: r
            .changes
            .into_iter()
            .map(|c| LoggedChange {
                field: c.field,
                before: c.before,
                after: c.after,
            })
            .collect(),
        source: r.source,
        request_id: Some(r.request_id).filter(|id| !id.is_empty()),
        occurred_at: time(r.occurred_at),
        received_at: time(s.received_at),
        appended_at: time(s.appended_at),
    }
}
