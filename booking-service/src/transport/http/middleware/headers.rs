//! Headers every response carries: `X-Content-Type-Options: nosniff` (a browser never
//! guesses a type we did not declare); unless the handler set its own (the HTML pages:
//! `pages`, Swagger UI's page), `Content-Security-Policy: default-src 'none';
//! frame-ancestors 'none'` (a JSON answer opened as a page runs nothing, loads nothing
//! and cannot be framed); and, on every response but the public catalogue's reads and
//! [`Immutable`] files, `Cache-Control: no-store` with `Pragma: no-cache` (RFC 6749 §5.1
//! for tokens; the same for personal data), so neither browsers nor proxies keep a copy.

use crate::transport::http::access;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::Error;

/// The policy of every response that does not bring its own.
pub const DEFAULT_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// Marks a response (in its extensions) as a file that is the same for everyone and
/// never changes at its address (Swagger UI's files, linked with their content hash):
/// its handler's `Cache-Control` is kept.
#[derive(Debug, Clone, Copy)]
pub struct Immutable;

pub async fn security_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let cacheable = access::cacheable(req.request());
    let mut res = next.call(req).await?;
    let immutable = res.response().extensions().get::<Immutable>().is_some();
    let headers = res.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(DEFAULT_CSP),
        );
    }
    if !cacheable && !immutable {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    }
    Ok(res)
}
