//! Requests that run longer than `http.request_timeout_ms` get a JSON 503 and their
//! future is dropped. (Work already handed to the blocking pool finishes there; the
//! database's statement timeout bounds it.)

use crate::transport::http::error::ApiError;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, Error};
use std::time::Duration;

/// The configured limit, stored as app data.
#[derive(Debug, Clone, Copy)]
pub struct RequestTimeout(pub Duration);

pub async fn timeout(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let limit = req
        .app_data::<web::Data<RequestTimeout>>()
        .map_or(Duration::from_secs(30), |t| t.0);
    match tokio::time::timeout(limit, next.call(req)).await {
        Ok(res) => res.map(ServiceResponse::map_into_boxed_body),
        Err(_) => Err(ApiError::timeout().into()),
    }
}
