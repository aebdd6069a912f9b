//! Structured logging: one JSON object per line, with the fields of every span the
//! event is in (request id, caller, appointment id, event id…) flattened into it, so one
//! grep follows a request through every line it caused. An event's own fields win over
//! its spans', and an inner span's over an outer one's.
//!
//! Servers log to stdout. Command-line tools that print their result on stdout log to
//! stderr instead, so their output stays machine-readable.
//!
//! Tracing: every span is also an OpenTelemetry span (`tracing-opentelemetry`), so a
//! line logged inside a span carries that span's `trace_id` and `span_id`. Spans are
//! exported over OTLP only when `tracing.otlp_endpoint` is set; export runs on the
//! batch processor's own thread with a bounded queue, so a dead collector costs dropped
//! spans, never a slower or failed request. [`Telemetry::shutdown`] flushes what is
//! queued on exit.

use crate::config_loader::ConfigLoadError;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::fmt as stdfmt;
use std::time::Duration;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_opentelemetry::OtelData;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter};

/// The event format: `timestamp`, `level`, the spans' fields, `trace_id` and `span_id`
/// of the innermost span, the event's fields (`message` among them) and `target`, in
/// one flat JSON object.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> stdfmt::Result {
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        );
        line.insert(
            "level".into(),
            Value::String(event.metadata().level().to_string()),
        );
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                // Span fields are kept as a JSON object by `JsonFields`.
                if let Some(fields) = extensions.get::<FormattedFields<N>>() {
                    if let Ok(Value::Object(fields)) = serde_json::from_str(fields.as_str()) {
                        line.extend(fields);
                    }
                }
                // The innermost span's ids win, as its fields do.
                if let Some(otel) = extensions.get::<OtelData>() {
                    if let (Some(trace), Some(span)) = (otel.trace_id(), otel.span_id()) {
                        line.insert("trace_id".into(), Value::String(trace.to_string()));
                        line.insert("span_id".into(), Value::String(span.to_string()));
                    }
                }
            }
        }
        event.record(&mut JsonVisitor(&mut line));
        // Records of the `log` crate (librdkafka's) carry their target as a field.
        let target = match line.get("log.target") {
            Some(Value::String(t)) => t.clone(),
            _ => event.metadata().target().to_owned(),
        };
        line.insert("target".into(), Value::String(target));
        writeln!(writer, "{}", Value::Object(line))
    }
}

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().into(), Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn stdfmt::Debug) {
        self.0
            .insert(field.name().into(), Value::from(format!("{value:?}")));
    }
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOutput {
    Stdout,
    Stderr,
}

/// The `tracing` section of a service's configuration; a key left out takes its
/// default (the one place defaults live).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct TracingSettings {
    /// The OTLP collector, e.g. `http://127.0.0.1:4317` (gRPC) or
    /// `http://127.0.0.1:4318` (HTTP; `/v1/traces` is added). Empty: spans are not
    /// exported (log lines still carry trace and span ids).
    pub otlp_endpoint: String,
    pub otlp_protocol: OtlpProtocol,
    /// Share of new traces recorded, 0.0 to 1.0. A request that arrives with a
    /// `traceparent` follows its caller's decision (parent-based sampling).
    pub sample_ratio: f64,
    /// How long one export may take before it is abandoned (its spans dropped).
    pub export_timeout_ms: u64,
    /// Spans held for export at most; beyond that new spans are dropped, not waited for.
    pub max_queue_size: usize,
}

/// How spans travel to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum OtlpProtocol {
    #[serde(rename = "grpc")]
    Grpc,
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

impl Default for TracingSettings {
    fn default() -> Self {
        Self {
            otlp_endpoint: String::new(),
            otlp_protocol: OtlpProtocol::Grpc,
            sample_ratio: 1.0,
            export_timeout_ms: 3000,
            max_queue_size: 4096,
        }
    }
}

impl TracingSettings {
    pub fn validate(&self) -> Result<(), ConfigLoadError> {
        let e = &self.otlp_endpoint;
        if !(e.is_empty() || e.starts_with("http://") || e.starts_with("https://")) {
            return Err(ConfigLoadError::invalid(
                "tracing.otlp_endpoint",
                "must be empty (no export) or an http(s) URL of an OTLP collector",
            ));
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(ConfigLoadError::invalid(
                "tracing.sample_ratio",
                "must be between 0.0 and 1.0",
            ));
        }
        if self.export_timeout_ms == 0 {
            return Err(ConfigLoadError::invalid(
                "tracing.export_timeout_ms",
                "must be greater than 0",
            ));
        }
        if self.max_queue_size == 0 {
            return Err(ConfigLoadError::invalid(
                "tracing.max_queue_size",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    pub fn exporting(&self) -> bool {
        !self.otlp_endpoint.is_empty()
    }
}

/// The tracer provider of a running service; [`Telemetry::shutdown`] flushes it.
#[must_use = "spans still queued are lost unless `shutdown` is awaited on exit"]
pub struct Telemetry {
    provider: SdkTracerProvider,
    timeout: Duration,
}

impl Telemetry {
    /// Exports the spans still queued (waiting at most the export timeout) and stops
    /// the exporter. Runs on a blocking thread: the SDK's shutdown blocks.
    pub async fn shutdown(self) {
        let Self { provider, timeout } = self;
        let result =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(timeout)).await;
        match result {
            Ok(Ok(())) => {}
            // Spans that could not be flushed are lost; the service still exits.
            Ok(Err(e)) => tracing::warn!(error = %e, "flushing spans on shutdown failed"),
            Err(e) => tracing::warn!(error = %e, "flushing spans on shutdown failed"),
        }
    }
}

/// Installs the global subscriber without span export (command-line tools, tests); see
/// [`init_traced`].
pub fn init(service: &'static str, default_level: &str, output: LogOutput) {
    if let Err(e) = init_traced(service, default_level, output, &TracingSettings::default()) {
        // Only a bad exporter configuration fails, and there is none here.
        tracing::warn!(error = %e, "telemetry set-up failed");
    }
}

/// The layer that turns `tracing` spans into OpenTelemetry spans, as every service uses
/// it: no thread or source-location attributes and no busy/idle timing on every span
/// (the span's start and end say how long it took), which keeps its cost per span low.
pub fn otel_layer<S>(
    tracer: opentelemetry_sdk::trace::SdkTracer,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_threads(false)
        .with_location(false)
        .with_tracked_inactivity(false)
}

/// Installs the global JSON subscriber with the OpenTelemetry layer, the W3C trace
/// context propagator and a panic hook that logs panics as one JSON line.
/// `default_level` applies unless `RUST_LOG` is set. Calling it twice is harmless (the
/// second subscriber is not installed), which tests rely on. Must run inside a tokio
/// runtime when exporting over gRPC (the exporter's channel lives on it).
pub fn init_traced(
    service: &'static str,
    default_level: &str,
    output: LogOutput,
    settings: &TracingSettings,
) -> anyhow::Result<Telemetry> {
    let provider = tracer_provider(service, settings)?;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let otel = otel_layer(provider.tracer(service));
    let fmt_layer = fmt::layer()
        .fmt_fields(JsonFields::new())
        .event_format(FlatJson);
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let result = match output {
        LogOutput::Stdout => registry
            .with(fmt_layer.with_writer(std::io::stdout))
            .try_init(),
        LogOutput::Stderr => registry
            .with(fmt_layer.with_writer(std::io::stderr))
            .try_init(),
    };
    if result.is_ok() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        std::panic::set_hook(Box::new(|info| {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            let location = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            tracing::error!(panic = %message, location = %location, "panic");
        }));
        tracing::debug!(
            service,
            otlp_endpoint = %settings.otlp_endpoint,
            sample_ratio = settings.sample_ratio,
            "telemetry initialised"
        );
    }
    Ok(Telemetry {
        provider,
        timeout: Duration::from_millis(settings.export_timeout_ms),
    })
}

/// The provider: parent-based ratio sampling and a batch OTLP exporter when an
/// endpoint is configured; without one, nothing is recorded (trace ids still exist and
/// propagate, so logs and downstream services keep them).
pub fn tracer_provider(
    service: &'static str,
    settings: &TracingSettings,
) -> anyhow::Result<SdkTracerProvider> {
    let resource = Resource::builder()
        .with_service_name(service)
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    if !settings.exporting() {
        return Ok(builder
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOff)))
            .build());
    }
    let timeout = Duration::from_millis(settings.export_timeout_ms);
    let exporter = match settings.otlp_protocol {
        OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(settings.otlp_endpoint.clone())
            .with_timeout(timeout)
            .build()?,
        OtlpProtocol::HttpProtobuf => {
            let base = settings.otlp_endpoint.trim_end_matches('/');
            let url = if base.ends_with("/v1/traces") {
                base.to_owned()
            } else {
                format!("{base}/v1/traces")
            };
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(url)
                .with_timeout(timeout)
                .build()?
        }
    };
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(settings.max_queue_size)
                .build(),
        )
        .build();
    Ok(builder
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            settings.sample_ratio,
        ))))
        .with_span_processor(processor)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_carry_the_fields_of_their_spans() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = fmt()
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let request = tracing::info_span!(
                "request",
                request_id = "r-1",
                user_id = tracing::field::Empty,
                step = "outer"
            );
            let _r = request.enter();
            request.record("user_id", "u-7");
            let booking = tracing::info_span!("book", appointment_id = "a-3", step = "inner");
            let _b = booking.enter();
            tracing::info!(event_id = "e-9", attempts = 2u64, "email sent");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let line: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["message"], "email sent");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["request_id"], "r-1");
        assert_eq!(line["user_id"], "u-7", "recorded after the span began");
        assert_eq!(line["appointment_id"], "a-3");
        assert_eq!(line["step"], "inner", "the inner span wins");
        assert_eq!(line["event_id"], "e-9");
        assert_eq!(line["attempts"], 2);
        assert_eq!(line["target"], "medbook_shared::telemetry::tests");
    }

    #[test]
    fn lines_in_a_span_carry_its_trace_and_span_ids() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
            .with(
                fmt::layer()
                    .fmt_fields(JsonFields::new())
                    .event_format(FlatJson)
                    .with_writer(move || writer.clone()),
            );
        let (outer_ids, inner_ids) = tracing::subscriber::with_default(subscriber, || {
            use opentelemetry::trace::TraceContextExt;
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            let ids = |s: &tracing::Span| {
                let cx = s.context();
                let sc = cx.span().span_context().clone();
                (sc.trace_id().to_string(), sc.span_id().to_string())
            };
            let outer = tracing::info_span!("request");
            let _o = outer.enter();
            tracing::info!("outer line");
            let inner = tracing::info_span!("db");
            let _i = inner.enter();
            tracing::info!("inner line");
            (ids(&outer), ids(&inner))
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["trace_id"], outer_ids.0.as_str());
        assert_eq!(lines[0]["span_id"], outer_ids.1.as_str());
        assert_eq!(lines[1]["trace_id"], outer_ids.0.as_str(), "one trace");
        assert_eq!(
            lines[1]["span_id"],
            inner_ids.1.as_str(),
            "the inner span's id"
        );
        assert_eq!(lines[1]["trace_id"].as_str().map(str::len), Some(32));
    }

    #[test]
    fn tracing_settings_are_checked() {
        let ok = TracingSettings::default();
        assert!(ok.validate().is_ok());
        assert!(!ok.exporting());
        let bad = |f: fn(&mut TracingSettings)| {
            let mut s = TracingSettings::default();
            f(&mut s);
            s.validate().unwrap_err().to_string()
        };
        assert!(bad(|s| s.sample_ratio = 1.5).contains("tracing.sample_ratio"));
        assert!(bad(|s| s.sample_ratio = -0.1).contains("tracing.sample_ratio"));
        assert!(
            bad(|s| s.otlp_endpoint = "127.0.0.1:4317".into()).contains("tracing.otlp_endpoint")
        );
        assert!(bad(|s| s.export_timeout_ms = 0).contains("tracing.export_timeout_ms"));
        assert!(bad(|s| s.max_queue_size = 0).contains("tracing.max_queue_size"));
    }

    #[test]
    fn the_protocol_has_the_otlp_names() {
        let p: OtlpProtocol = serde_json::from_str("\"http/protobuf\"").unwrap();
        assert_eq!(p, OtlpProtocol::HttpProtobuf);
        let p: OtlpProtocol = serde_json::from_str("\"grpc\"").unwrap();
        assert_eq!(p, OtlpProtocol::Grpc);
        assert!(serde_json::from_str::<OtlpProtocol>("\"http/json\"").is_err());
    }
}
