//! `/api/v1/audit`: the audit log, read from the audit-service over gRPC (admins only).

use crate::domain::FieldError;
use crate::transport::http::dto::audit::{AuditPage, AuditQuery};
use crate::transport::http::error::ApiError;
use crate::transport::http::extractors::AdminCaller;
use crate::transport::http::state::AppState;
use actix_web::http::StatusCode;
use medbook_proto::audit::v1 as pb;
use paperclip::actix::{api_v2_operation, web};
use tonic_types::StatusExt;

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
    let request = pb::QueryRequest::try_from(query.into_inner())?;
    match state.audit.query(request).await {
        Ok(page) => Ok(web::Json(AuditPage::from(page))),
        // The audit-service refused a filter (a page token not its own, say): named
        // fields, as every validation error.
        Err(s) if s.code() == tonic::Code::InvalidArgument => {
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
            Err(ApiError::validation(fields))
        }
        Err(s) => {
            tracing::warn!(code = ?s.code(), message = s.message(), "audit-service query failed");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_unavailable",
                "the audit log cannot be read right now; try again shortly",
            ))
        }
    }
}
