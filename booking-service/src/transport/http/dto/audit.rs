//! `GET /api/v1/audit`: the query and one page of the audit log.

use crate::domain::audit::{AuditFilter, LoggedActor, LoggedPage, LoggedRecord};
use crate::domain::ValidationErrors;
use chrono::{DateTime, Utc};
use paperclip::actix::Apiv2Schema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use crate::domain::audit::{DEFAULT_AUDIT_PAGE, MAX_AUDIT_FILTER_CHARS, MAX_AUDIT_PAGE};

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

impl TryFrom<AuditQuery> for AuditFilter {
    type Error = ValidationErrors;
    fn try_from(q: AuditQuery) -> Result<Self, ValidationErrors> {
        AuditFilter::parse(AuditFilter {
            entity_type: q.entity_type,
            entity_id: q.entity_id,
            actor_id: q.actor_id,
            action: q.action,
            from: q.from,
            to: q.to,
            per_page: q.per_page.unwrap_or(DEFAULT_AUDIT_PAGE),
            page_token: q.page_token,
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

impl From<LoggedPage> for AuditPage {
    fn from(p: LoggedPage) -> Self {
        Self {
            items: p.items.into_iter().map(AuditRecordResponse::from).collect(),
            next_page_token: p.next_page_token,
        }
    }
}

impl From<LoggedRecord> for AuditRecordResponse {
    fn from(r: LoggedRecord) -> Self {
        let actor = match r.actor {
            LoggedActor::User { user_id, role } => AuditActor {
                user_id: Some(user_id),
                role: Some(role),
                system: None,
            },
            LoggedActor::System(job) => AuditActor {
                user_id: None,
                role: None,
                system: Some(job),
            },
            LoggedActor::Unknown => AuditActor {
                user_id: None,
                role: None,
                system: None,
            },
        };
        Self {
            index: r.index,
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
            request_id: r.request_id,
            occurred_at: r.occurred_at,
            received_at: r.received_at,
            appended_at: r.appended_at,
        }
    }
}
