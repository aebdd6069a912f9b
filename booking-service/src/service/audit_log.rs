//! Reading the audit log (admins): the records live in the audit-service, reached
//! through the [`AuditReader`] port (gRPC in `audit_client`, in memory in
//! `audit_memory`).

use super::ServiceError;
use crate::domain::audit::{AuditFilter, LoggedPage};
use crate::domain::FieldError;
use async_trait::async_trait;
use std::sync::Arc;

/// Why the log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AuditReadError {
    /// The log refused the filter (a page token not its own, say), by field.
    #[error("refused: {0:?}")]
    Refused(Vec<FieldError>),
    /// The log cannot be reached or failed; records written meanwhile wait.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait AuditReader: Send + Sync {
    /// One page of the records matching `filter`, newest first; the next page is asked
    /// with the page's `next_page_token` in the same filter.
    async fn query(&self, filter: AuditFilter) -> Result<LoggedPage, AuditReadError>;
}

pub struct AuditLogService {
    reader: Arc<dyn AuditReader>,
}

impl AuditLogService {
    pub fn new(reader: Arc<dyn AuditReader>) -> Self {
        Self { reader }
    }

    /// One page of the log.
    pub async fn query(&self, filter: AuditFilter) -> Result<LoggedPage, ServiceError> {
        match self.reader.query(filter).await {
            Ok(page) => Ok(page),
            Err(AuditReadError::Refused(mut fields)) => {
                if fields.is_empty() {
                    fields.push(FieldError::new("page_token", "is not valid"));
                }
                Err(ServiceError::Validation(crate::domain::ValidationErrors(
                    fields,
                )))
            }
            Err(AuditReadError::Unavailable(cause)) => {
                tracing::warn!(error = %cause, "audit-service query failed");
                Err(ServiceError::AuditUnavailable)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit_memory::MemoryAuditLog;

    #[tokio::test]
    async fn a_refused_filter_names_its_field_and_an_outage_is_its_own_error() {
        let log = Arc::new(MemoryAuditLog::default());
        let svc = AuditLogService::new(log.clone());
        let filter = AuditFilter {
            per_page: 10,
            page_token: Some("not-ours".into()),
            ..Default::default()
        };
        match svc.query(filter.clone()).await {
            Err(ServiceError::Validation(v)) => assert_eq!(v.0[0].field, "page_token"),
            other => panic!("{other:?}"),
        }
        log.set_down(true);
        assert!(matches!(
            svc.query(AuditFilter {
                per_page: 10,
                ..Default::default()
            })
            .await,
            Err(ServiceError::AuditUnavailable)
        ));
    }
}
