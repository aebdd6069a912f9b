//! The audit log in memory: an [`AuditReader`] for unit tests and for running without an
//! audit-service; it answers as the audit-service does (newest first, opaque page
//! tokens it alone understands, filters combined).

use crate::domain::audit::{AuditFilter, LoggedActor, LoggedPage, LoggedRecord};
use crate::domain::FieldError;
use crate::service::audit_log::{AuditReadError, AuditReader};
use async_trait::async_trait;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

#[derive(Default)]
pub struct MemoryAuditLog {
    records: Mutex<Vec<LoggedRecord>>,
    down: AtomicBool,
}

impl MemoryAuditLog {
    /// Appends `record` at the next index.
    pub fn append(&self, mut record: LoggedRecord) {
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        record.index = u64::try_from(records.len()).unwrap_or(u64::MAX);
        records.push(record);
    }

    /// While down, every query is unavailable.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

const TOKEN_PREFIX: &str = "mem:";

fn matches(r: &LoggedRecord, f: &AuditFilter) -> bool {
    let actor_id = match &r.actor {
        LoggedActor::User { user_id, .. } => Some(user_id.as_str()),
        _ => None,
    };
    f.entity_type.as_ref().is_none_or(|t| *t == r.entity_type)
        && f.entity_id.as_ref().is_none_or(|t| *t == r.entity_id)
        && f.action.as_ref().is_none_or(|a| *a == r.action)
        && f.actor_id
            .is_none_or(|a| actor_id == Some(a.to_string().as_str()))
        && f.from
            .is_none_or(|from| r.occurred_at.is_some_and(|t| t >= from))
        && f.to.is_none_or(|to| r.occurred_at.is_some_and(|t| t < to))
}

#[async_trait]
impl AuditReader for MemoryAuditLog {
    async fn query(&self, filter: AuditFilter) -> Result<LoggedPage, AuditReadError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(AuditReadError::Unavailable("the log is down".into()));
        }
        // A page token is the index below which the next page starts.
        let below = match filter.page_token.as_deref() {
            None | Some("") => u64::MAX,
            Some(t) => t
                .strip_prefix(TOKEN_PREFIX)
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| {
                    AuditReadError::Refused(vec![FieldError::new(
                        "page_token",
                        "is not a page token of this log",
                    )])
                })?,
        };
        let records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        let per_page = usize::try_from(filter.per_page).unwrap_or(usize::MAX);
        let mut items: Vec<LoggedRecord> = records
            .iter()
            .rev()
            .filter(|r| r.index < below && matches(r, &filter))
            .take(per_page.saturating_add(1))
            .cloned()
            .collect();
        let next_page_token = if items.len() > per_page {
            items.truncate(per_page);
            items.last().map(|r| format!("{TOKEN_PREFIX}{}", r.index))
        } else {
            None
        };
        Ok(LoggedPage {
            items,
            next_page_token,
        })
    }
}
