//! `/api/v1/audit`: the audit log, read from the audit-service over gRPC (admins only).

use crate::domain::audit::AuditFilter;
use crate::transport::http::dto::audit::{AuditPage, AuditQuery};
use crate::transport::http::error::ApiError;
use crate::transport::http::extractors::AdminCaller;
use crate::transport::http::state::AppState;
use paperclip::actix::{api_v2_operation, web};

/// Read the audit log
///
/// Who changed what, newest first: every booking, cancellation, reschedule, review,
/// catalogue and slot change, patient and admin account change, login and token event.
/// Paged with `page_token`. `entity_id` needs `entity_type`; `to` must be after `from`.
/// Answers 503 `audit_unavailable` while the audit-service is
/// unreachable (records written meanwhile are kept and arrive later).
#[api_v2_operation(tags(Audit))]
pub async fn list(
    state: web::Data<AppState>,
    _admin: AdminCaller,
    query: web::Query<AuditQuery>,
) -> Result<web::Json<AuditPage>, ApiError> {
    let filter = AuditFilter::try_from(query.into_inner())?;
    Ok(web::Json(AuditPage::from(
        state.audit_log.query(filter).await?,
    )))
}
