//! Rewrites any error response that is not already JSON (actix's 404 for an unknown
//! route, 405 for a wrong method, errors of extractors without our config, …) into the
//! one JSON error shape, keeping its status and headers such as `Allow`. The account
//! pages' own HTML answers (`pages`) are kept as they are.

use crate::transport::http::error::ApiError;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{Error, ResponseError};

fn is_json_or_page(res: &ServiceResponse<BoxBody>) -> bool {
    res.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"))
}

pub async fn json_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    // Errors raised by inner middleware (timeout, panic) are `ApiError`s already.
    let res = next.call(req).await?.map_into_boxed_body();
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json_or_page(&res) {
        return Ok(res);
    }
    let (req, old) = res.into_parts();
    let mut new = ApiError::from_status(status).error_response();
    for (name, value) in old.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            new.headers_mut().append(name.clone(), value.clone());
        }
    }
    Ok(ServiceResponse::new(req, new))
}
