//! `GET /api/v1/audit`: the query and one page of the audit log.

use crate::domain::ValidationErrors;
use chrono::{DateTime, Utc};
use medbook_proto::audit::v1 as pb;
use paperclip::actix::Apiv2Schema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const DEFAULT_AUDIT_PAGE: u32 = 50;
pub const MAX_AUDIT_PAGE: u32 = 100;
/// Longest accepted `entity_type`, `action` and `page_token`.
pub const MAX_AUDIT_FILTER_CHARS: usize = 200;

/// Every filter is optional; records match all given ones. Newest first.
#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// For example `appointment`, `user`, `slot`, `doctor`, `clinic`, `review`.
    pub entity_type: Option<String>,
    /// The entity's id; needs `entity_type`.
    pub entity_id: Option<String>,
    /// The acting user's id.
    pub actor_id: Option<Uuid>,
    /// For example `appointment.cancelled`, `login.failed`.
    pub action: Option<String>,
    /// Inclusive lower bound on the change's time.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive upper bound on the change's time.
    pub to: Option<DateTime<Utc>>,
    /// 1 to 100 (default 50).
    pub per_page: Option<u32>,
    /// `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

impl TryFrom<AuditQuery> for pb::QueryRequest {
    type Error = ValidationErrors;
    fn try_from(q: AuditQuery) -> Result<Self, ValidationErrors> {
        let mut e = ValidationErrors::new();
        for (field, value) in [
            ("entity_type", &q.entity_type),
            ("entity_id", &q.entity_id),
            ("action", &q.action),
            ("page_token", &q.page_token),
        ] {
            if let Some(v) = value {
                if v.chars().count() > MAX_AUDIT_FILTER_CHARS {
                    e.push(
                        field,
                        format!("must be at most {MAX_AUDIT_FILTER_CHARS} characters"),
                    );
                }
                if v.chars().any(char::is_control) {
                    e.push(field, "must not contain control characters");
                }
            }
        }
        if q.entity_id.is_some() && q.entity_type.is_none() {
            e.push("entity_id", "needs entity_type");
        }
        let per_page = q.per_page.unwrap_or(DEFAULT_AUDIT_PAGE);
        if !(1..=MAX_AUDIT_PAGE).contains(&per_page) {
            e.push(
                "per_page",
                format!("must be between 1 and {MAX_AUDIT_PAGE}"),
            );
        }
        if let (Some(from), Some(to)) = (q.from, q.to) {
            if to <= from {
                e.push("to", "must be after from");
            }
        }
        e.finish(|| {
            Some(pb::QueryRequest {
                entity_type: q.entity_type.unwrap_or_default(),
                entity_id: q.entity_id.unwrap_or_default(),
                actor_id: q.actor_id.map(|id| id.to_string()).unwrap_or_default(),
                action: q.action.unwrap_or_default(),
                from: q.from.map(medbook_proto::time::to_proto),
                to: q.to.map(medbook_proto::time::to_proto),
                page_size: per_page,
                page_token: q.page_token.unwrap_or_default(),
            })
        })
    }
}

/// Who made a change: a user (`user_id`, `role`) or a named system job (`system`).
#[derive(Debug, Serialize, Apiv2Schema)]
pub struct AuditActor {
    pub user_id: Option<String>,
    pub role: Option<String>,
    pub system: Option<String>,
}

/// One changed field; values are JSON texts, absent where the field did not exist.
/// Personal data appears as `"[redacted]"`.
#[derive(Debug, Serialize, Apiv2Schema)]
pub struct AuditChange {
    pub field: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct AuditRecordResponse {
    /// Position in the tamper-evident log.
    pub index: u64,
    pub id: String,
    pub actor: AuditActor,
    pub action: String,
    pub entity_type: String,
    pub entity_id: String,
    pub changes: Vec<AuditChange>,
    /// `http`, `grpc`, `cli`, `system`.
    pub source: String,
    pub request_id: Option<String>,
    /// When the change happened, as booking-service recorded it.
    pub occurred_at: Option<DateTime<Utc>>,
    /// When the audit-service received the record, by its own clock (part of the
    /// record's hash; absent on records logged before receive times were kept).
    pub received_at: Option<DateTime<Utc>>,
    pub appended_at: Option<DateTime<Utc>>,
}

/// One page, newest first.
#[derive(Debug, Serialize, Apiv2Schema)]
pub struct AuditPage {
    pub items: Vec<AuditRecordResponse>,
    /// Pass as `page_token` for the next page; absent on the last.
    pub next_page_token: Option<String>,
}

impl From<pb::QueryResponse> for AuditPage {
    fn from(r: pb::QueryResponse) -> Self {
        Self {
            items: r
                .records
                .into_iter()
                .map(AuditRecordResponse::from)
                .collect(),
            next_page_token: Some(r.next_page_token).filter(|t| !t.is_empty()),
        }
    }
}

impl From<pb::StoredRecord> for AuditRecordResponse {
    fn from(s: pb::StoredRecord) -> Self {
        let r = s.record.unwrap_or_default();
        let actor = match r.actor.and_then(|a| a.kind) {
            Some(pb::actor::Kind::User(u)) => AuditActor {
                user_id: Some(u.user_id),
                role: Some(u.role),
                system: None,
            },
            Some(pb::actor::Kind::System(job)) => AuditActor {
                user_id: None,
                role: None,
                system: Some(job),
            },
            None => AuditActor {
                user_id: None,
                role: None,
                system: None,
            },
        };
        Self {
            index: s.index,
            id: r.id,
            actor,
            action: r.action,
            entity_type: r.entity_type,
            entity_id: r.entity_id,
            changes: r
                .changes
                .into_iter()
                .map(|c| AuditChange {
                    field: c.field,
                    before: c.before,
                    after: c.after,
                })
                .collect(),
            source: r.source,
            request_id: Some(r.request_id).filter(|id| !id.is_empty()),
            occurred_at: r
                .occurred_at
                .as_ref()
                .and_then(medbook_proto::time::from_proto),
            received_at: s
                .received_at
                .as_ref()
                .and_then(medbook_proto::time::from_proto),
            appended_at: s
                .appended_at
                .as_ref()
                .and_then(medbook_proto::time::from_proto),
        }
    }
}
