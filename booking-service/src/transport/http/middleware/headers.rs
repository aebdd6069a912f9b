//! Headers every response carries: `X-Content-Type-Options: nosniff` (a browser never
//! guesses a type we did not declare) and, on every response but the public catalogue's
//! reads, `Cache-Control: no-store` with `Pragma: no-cache` (RFC 6749 §5.1 for tokens;
//! the same for personal data), so neither browsers nor proxies keep a copy.

use crate::transport::http::access;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::Error;

pub async fn security_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let cacheable = access::cacheable(req.request());
    let mut res = next.call(req).await?;
    let headers = res.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !cacheable {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    }
    Ok(res)
}
