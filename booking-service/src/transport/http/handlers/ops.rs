//! `/health` of the public listener, in the OpenAPI document. The operators' listener
//! (`http.ops_addr`: `/health`, `/ready`, `/metrics`) is the service kit's
//! (`medbook_service_kit::ops`), wired in `startup`.

use paperclip::actix::{api_v2_operation, web, Apiv2Schema};
use serde::Serialize;

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct HealthResponse {
    /// `ok`
    pub status: String,
}

/// Liveness
///
/// 200 while the process serves requests; checks nothing else.
#[api_v2_operation(tags(Ops))]
pub async fn health() -> web::Json<HealthResponse> {
    web::Json(HealthResponse {
        status: "ok".into(),
    })
}
