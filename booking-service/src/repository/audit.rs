//! The audit sink of the outbox: a change's [`AuditEntry`] becomes an outbox row with
//! `sink = 'audit'`, written in the change's own transaction. Its payload is an
//! [`AuditRecord`] in JSON, completed with the request's context (actor, source,
//! request id) and a record id, which the audit-service uses to drop duplicates.

use super::outbox::OutboxRow;
use crate::domain::audit::AuditEntry;
use crate::service::outbox::Sink;
use crate::service::ports::RepoError;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use medbook_service_kit::context::{self, Actor};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The outbox's topic column for audit rows (they go to no topic).
pub const AUDIT_TOPIC: &str = "audit";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordActor {
    User { id: String, role: String },
    System(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordChange {
    pub field: String,
    /// JSON texts; absent when the field did not exist on that side.
    pub before: Option<String>,
    pub after: Option<String>,
}

/// One audit record, as queued for the audit-service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub id: Uuid,
    pub actor: RecordActor,
    pub action: String,
    pub entity_type: String,
    pub entity_id: String,
    pub changes: Vec<RecordChange>,
    pub source: String,
    pub request_id: Option<String>,
    pub occurred_at: DateTime<Utc>,
}

impl AuditRecord {
    /// `entry` completed from the current context, at `now`.
    pub fn from_entry(entry: AuditEntry, now: DateTime<Utc>) -> Self {
        let ctx = context::current();
        let actor = match (entry.actor, ctx.acting()) {
            (Some(named), _) => RecordActor::User {
                id: named.user_id,
                role: named.role,
            },
            (None, Some(Actor::User { id, role })) => RecordActor::User { id, role },
            (None, Some(Actor::System(job))) => RecordActor::System(job),
            (None, None) => RecordActor::System("anonymous".into()),
        };
        Self {
            id: Uuid::new_v4(),
            actor,
            action: entry.action.to_owned(),
            entity_type: entry.entity_type.to_owned(),
            entity_id: entry.entity_id,
            changes: entry
                .changes
                .into_iter()
                .map(|c| RecordChange {
                    field: c.field,
                    before: c.before.map(|v| v.to_string()),
                    after: c.after.map(|v| v.to_string()),
                })
                .collect(),
            source: ctx.source.unwrap_or("system").to_owned(),
            request_id: ctx.request_id,
            occurred_at: now,
        }
    }

    pub fn payload(&self) -> Result<String, RepoError> {
        serde_json::to_string(self)
            .map_err(|e| RepoError::Internal(anyhow::anyhow!("audit record not encodable: {e}")))
    }
}

impl AuditRecord {
    /// The record's outbox row (audit sink; its id is also the aggregate id).
    pub fn row(&self) -> Result<OutboxRow, RepoError> {
        Ok(OutboxRow {
            id: self.id,
            aggregate_id: self.id,
            topic: AUDIT_TOPIC.to_owned(),
            event_type: self.action.clone(),
            payload: self.payload()?,
            created_at: self.occurred_at,
            request_id: self.request_id.clone(),
            sink: Sink::Audit.as_str(),
            trace_parent: medbook_shared::trace_context::current_traceparent(),
        })
    }
}

/// Queues `entry` in the caller's transaction.
pub fn enqueue(conn: &mut PgConnection, entry: AuditEntry) -> Result<(), RepoError> {
    AuditRecord::from_entry(entry, Utc::now())
        .row()?
        .insert(conn)
}

/// [`crate::service::ports::AuditLog`] over the outbox's audit sink.
pub struct PgAuditLog {
    db: super::db::Db,
    signal: std::sync::Arc<dyn crate::service::ports::CommitListener>,
}

impl PgAuditLog {
    pub fn new(
        db: super::db::Db,
        signal: std::sync::Arc<dyn crate::service::ports::CommitListener>,
    ) -> Self {
        Self { db, signal }
    }
}

#[async_trait::async_trait]
impl crate::service::ports::AuditLog for PgAuditLog {
    async fn record(&self, entry: AuditEntry) -> Result<(), RepoError> {
        self.db
            .transaction(move |conn| enqueue(conn, entry.clone()))
            .await?;
        self.signal.committed(0);
        Ok(())
    }
}
