//! W3C trace context across the hops a booking takes: HTTP and gRPC headers, the
//! outbox row that waits for the relay, Kafka message headers. One global propagator
//! (`TraceContextPropagator`, installed by `telemetry::init`) reads and writes the
//! `traceparent`/`tracestate` pair; these helpers adapt it to each carrier, so that no
//! transport hand-parses a header.

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt;
use opentelemetry::Context;
use rdkafka::message::Headers;
use std::collections::HashMap;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header (and outbox column content) W3C trace context travels in.
pub const TRACEPARENT: &str = "traceparent";
/// Vendor trace state, carried beside `traceparent` when there is any.
pub const TRACESTATE: &str = "tracestate";

struct MapCarrier<'a>(&'a mut HashMap<String, String>);

impl Injector for MapCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

/// The trace context of `span`, as carrier entries (`traceparent`, maybe `tracestate`).
/// Empty when the span belongs to no trace (telemetry not initialised).
pub fn headers_of(span: &tracing::Span) -> HashMap<String, String> {
    let cx = span.context();
    let mut map = HashMap::new();
    if cx.span().span_context().is_valid() {
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(&cx, &mut MapCarrier(&mut map));
        });
    }
    map
}

/// The `traceparent` of the current span, if it is in a trace. Stored with an outbox
/// row, it makes the relay's spans children of the request that wrote the row.
pub fn current_traceparent() -> Option<String> {
    headers_of(&tracing::Span::current()).remove(TRACEPARENT)
}

/// The remote context `get` describes (`get("traceparent")`, `get("tracestate")`).
/// An absent or malformed `traceparent` gives an empty context: a new trace begins.
pub fn context_from(get: impl Fn(&str) -> Option<String>) -> Context {
    let mut map = HashMap::new();
    for key in [TRACEPARENT, TRACESTATE] {
        if let Some(v) = get(key) {
            map.insert(key.to_owned(), v);
        }
    }
    let extractor = HashExtractor(&map);
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&extractor))
}

struct HashExtractor<'a>(&'a HashMap<String, String>);

impl Extractor for HashExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// The context of a stored `traceparent` (an outbox row's).
pub fn context_from_traceparent(traceparent: Option<&str>) -> Context {
    context_from(|key| {
        (key == TRACEPARENT)
            .then(|| traceparent.map(str::to_owned))
            .flatten()
    })
}

/// Makes `span` a child of the remote `parent`, when `parent` carries a valid span
/// context; otherwise `span` stays where it is (a root, or a child of the current span).
pub fn set_remote_parent(span: &tracing::Span, parent: Context) {
    if parent.span().span_context().is_valid() {
        // Fails only when the span was already started or has no OpenTelemetry layer:
        // then it simply keeps its own trace.
        let _ = span.set_parent(parent);
    }
}

/// The trace context of `span` as Kafka message headers (the relay's producer span).
pub fn kafka_headers(span: &tracing::Span) -> Vec<(String, Option<Vec<u8>>)> {
    headers_of(span)
        .into_iter()
        .map(|(k, v)| (k, Some(v.into_bytes())))
        .collect()
}

/// The remote context carried by a Kafka message's headers.
pub fn extract_kafka<H: Headers>(headers: Option<&H>) -> Context {
    context_from(|key| {
        let headers = headers?;
        headers
            .iter()
            .find(|h| h.key == key)
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_owned)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use rdkafka::message::{BorrowedHeaders, Header, OwnedHeaders};
    use tracing_subscriber::layer::SubscriberExt;

    fn with_tracing<T>(f: impl FnOnce() -> T) -> T {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, f)
    }

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_child_of_a_remote_parent_continues_its_trace() {
        let child = with_tracing(|| {
            let span = tracing::info_span!("child");
            set_remote_parent(&span, context_from_traceparent(Some(PARENT)));
            let _e = span.enter();
            current_traceparent()
        })
        .expect("a traceparent");
        let parts: Vec<&str> = child.split('-').collect();
        assert_eq!(parts.first(), Some(&"00"));
        assert_eq!(parts.get(1), Some(&"4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_ne!(parts.get(2), Some(&"00f067aa0ba902b7"), "its own span id");
        assert_eq!(parts.get(3), Some(&"01"), "sampled, as its parent");
    }

    #[test]
    fn a_malformed_traceparent_starts_a_new_trace() {
        let tp = with_tracing(|| {
            let span = tracing::info_span!("root");
            set_remote_parent(&span, context_from_traceparent(Some("00-zz-yy-01")));
            let _e = span.enter();
            current_traceparent()
        })
        .expect("a traceparent");
        assert!(!tp.contains("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(tp.len(), 55, "{tp}");
    }

    #[test]
    fn kafka_headers_carry_the_context_both_ways() {
        let (sent, received) = with_tracing(|| {
            let span = tracing::info_span!("publish");
            let _e = span.enter();
            let mut headers = OwnedHeaders::new().insert(Header {
                key: "other",
                value: Some("x"),
            });
            for (key, value) in kafka_headers(&span) {
                headers = headers.insert(Header {
                    key: &key,
                    value: value.as_deref(),
                });
            }
            let sent = current_traceparent();
            let borrowed: &BorrowedHeaders = headers.as_borrowed();
            let cx = extract_kafka(Some(borrowed));
            let consumer = tracing::info_span!("process");
            set_remote_parent(&consumer, cx);
            let _c = consumer.enter();
            (sent, current_traceparent())
        });
        let sent = sent.expect("sent");
        let received = received.expect("received");
        assert_eq!(sent.get(3..35), received.get(3..35), "one trace");
        assert_ne!(sent, received, "the consumer's own span");
    }

    #[test]
    fn no_headers_no_parent() {
        let cx = with_tracing(|| extract_kafka::<BorrowedHeaders>(None));
        assert!(!cx.span().span_context().is_valid());
    }
}
