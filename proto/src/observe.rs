//! What both gRPC servers and the audit client share for observability: a tower layer
//! that makes every call a server span (continuing the caller's W3C `traceparent`) and
//! counts it in RED metrics per service and method, and the client side's span,
//! metadata injection and metrics.
//!
//! The code of a call is read from the response headers (`grpc-status`), where tonic
//! puts every error of a unary call; a response without it is `OK`. A stream's
//! duration is the time to its first response headers; a status it ends with later is
//! not seen.

use medbook_shared::trace_context;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;
use tracing::Instrument;

/// Latency buckets of gRPC calls, in seconds.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Every gRPC code's name as the metrics label it (`OK`, `InvalidArgument`…).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Cancelled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

/// `/pkg.Service/Method` → (`pkg.Service`, `Method`). Paths that are not gRPC method
/// paths are counted as `unknown`, so a scanner cannot create label values.
fn split_path(path: &str, known: &[&str]) -> (String, String) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    match (parts.next(), parts.next()) {
        (Some(service), Some(method))
            if known.contains(&service)
                && !method.is_empty()
                && method.len() <= 64
                && method.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            (service.to_owned(), method.to_owned())
        }
        _ => ("unknown".to_owned(), "unknown".to_owned()),
    }
}

/// RED metrics of one side (`server` or `client`) of gRPC calls.
#[derive(Clone)]
pub struct GrpcMetrics {
    requests: IntCounterVec,
    latency: HistogramVec,
}

impl GrpcMetrics {
    /// `grpc_{side}_requests_total{service,method,code}` and
    /// `grpc_{side}_request_duration_seconds{service,method}`, registered in `registry`,
    /// with the `OK` series of each of `methods` (`(service, method)`) present from the
    /// start.
    pub fn new(
        registry: &Registry,
        side: &str,
        methods: &[(&str, &str)],
    ) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                format!("grpc_{side}_requests_total"),
                format!("gRPC calls ({side} side) by service, method and status code"),
            ),
            &["service", "method", "code"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                format!("grpc_{side}_request_duration_seconds"),
                format!("gRPC call latency ({side} side) to the response headers"),
            )
            .buckets(BUCKETS.to_vec()),
            &["service", "method"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        for (service, method) in methods {
            requests.with_label_values(&[service, method, "OK"]);
            latency.with_label_values(&[service, method]);
        }
        Ok(Self { requests, latency })
    }

    pub fn observe(&self, service: &str, method: &str, code: &str, took: std::time::Duration) {
        self.requests
            .with_label_values(&[service, method, code])
            .inc();
        self.latency
            .with_label_values(&[service, method])
            .observe(took.as_secs_f64());
    }
}

/// The server layer: a span and RED metrics per call. `services` are the fully
/// qualified names the server serves (others are labelled `unknown`).
#[derive(Clone)]
pub struct ServerObserveLayer {
    metrics: GrpcMetrics,
    services: &'static [&'static str],
}

impl ServerObserveLayer {
    pub fn new(metrics: GrpcMetrics, services: &'static [&'static str]) -> Self {
        Self { metrics, services }
    }
}

impl<S> tower::Layer<S> for ServerObserveLayer {
    type Service = ServerObserve<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ServerObserve {
            inner,
            metrics: self.metrics.clone(),
            services: self.services,
        }
    }
}

#[derive(Clone)]
pub struct ServerObserve<S> {
    inner: S,
    metrics: GrpcMetrics,
    services: &'static [&'static str],
}

/// The server span of a call, a child of the caller's span when the request carries
/// a `traceparent`.
fn server_span(headers: &http::HeaderMap, service: &str, method: &str) -> tracing::Span {
    let span = tracing::info_span!(
        "grpc",
        otel.name = %format!("{service}/{method}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
        rpc.grpc.status_code = tracing::field::Empty,
    );
    let parent = trace_context::context_from(|key| {
        headers
            .get(key)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    trace_context::set_remote_parent(&span, parent);
    span
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for ServerObserve<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let (service, method) = split_path(req.uri().path(), self.services);
        let span = server_span(req.headers(), &service, &method);
        let metrics = self.metrics.clone();
        // The service that was polled ready is the one to call (tower's contract).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let start = Instant::now();
        Box::pin(async move {
            let result = inner.call(req).instrument(span.clone()).await;
            let code = match &result {
                Ok(res) => res
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or(tonic::Code::Ok, tonic::Code::from_i32),
                Err(_) => tonic::Code::Unknown,
            };
            let name = code_name(code);
            span.record("rpc.grpc.status_code", i32::from(code));
            if is_server_error(code) {
                span.record("otel.status_code", "error");
            }
            metrics.observe(&service, &method, name, start.elapsed());
            result
        })
    }
}

/// Codes that mean the server failed (OpenTelemetry's rule for server spans); the
/// others are the caller's mistakes.
fn is_server_error(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(
        code,
        Unknown | DeadlineExceeded | Unimplemented | Internal | Unavailable | DataLoss
    )
}

/// The client span of one call to `service`/`method`.
pub fn client_span(service: &str, method: &str) -> tracing::Span {
    tracing::info_span!(
        "grpc client",
        otel.name = %format!("{service}/{method}"),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
        rpc.grpc.status_code = tracing::field::Empty,
    )
}

/// Puts the trace context of `span` into the request's metadata.
pub fn inject(span: &tracing::Span, metadata: &mut tonic::metadata::MetadataMap) {
    for (key, value) in trace_context::headers_of(span) {
        if let (Ok(k), Ok(v)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            value.parse(),
        ) {
            metadata.insert(k, v);
        }
    }
}

/// Records a finished client call on its span and in `metrics`.
pub fn client_done(
    metrics: &GrpcMetrics,
    span: &tracing::Span,
    service: &str,
    method: &str,
    code: tonic::Code,
    took: std::time::Duration,
) {
    span.record("rpc.grpc.status_code", i32::from(code));
    if code != tonic::Code::Ok {
        span.record("otel.status_code", "error");
    }
    metrics.observe(service, method, code_name(code), took);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_bounded_labels() {
        let known = ["medbook.audit.v1.AuditService"];
        assert_eq!(
            split_path("/medbook.audit.v1.AuditService/Append", &known),
            ("medbook.audit.v1.AuditService".into(), "Append".into())
        );
        for odd in [
            "/medbook.audit.v1.AuditService/",
            "/other.Service/Append",
            "/medbook.audit.v1.AuditService/Ap/pend",
            "/",
            "",
        ] {
            assert_eq!(
                split_path(odd, &known),
                ("unknown".into(), "unknown".into()),
                "{odd}"
            );
        }
    }

    #[test]
    fn every_code_has_its_name() {
        for i in 0..=16 {
            let code = tonic::Code::from_i32(i);
            assert_eq!(code_name(code), format!("{code:?}").replace("Ok", "OK"));
        }
    }

    #[test]
    fn known_methods_have_series_before_any_call() {
        let registry = Registry::new();
        let m = GrpcMetrics::new(&registry, "server", &[("a.B", "C")]).unwrap();
        m.observe("a.B", "C", "NotFound", std::time::Duration::from_millis(2));
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(
            text.contains(r#"grpc_server_requests_total{code="OK",method="C",service="a.B"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"grpc_server_requests_total{code="NotFound",method="C",service="a.B"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains("grpc_server_request_duration_seconds_bucket"),
            "{text}"
        );
    }
}
