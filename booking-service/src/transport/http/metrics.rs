//! Prometheus metrics of the HTTP layer and the connection pool.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub in_flight: IntGauge,
    pool: IntGaugeVec,
    /// Requests whose token could not be checked against the revocation store.
    pub revocation_check_failures: prometheus::IntCounter,
}

impl Metrics {
    pub fn new() -> anyhow::Result<Self> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by method, matched route and status",
            ),
            &["method", "route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency").buckets(
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
            ),
            &["method", "route"],
        )?;
        let in_flight = IntGauge::new("http_requests_in_flight", "HTTP requests being served")?;
        let pool = IntGaugeVec::new(
            Opts::new("db_pool_connections", "Database pool connections by state"),
            &["state"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(pool.clone()))?;
        let revocation_check_failures = prometheus::IntCounter::new(
            "auth_revocation_check_failures_total",
            "Requests whose access token could not be checked against the revocation store",
        )?;
        registry.register(Box::new(revocation_check_failures.clone()))?;
        Ok(Self {
            registry,
            requests,
            latency,
            in_flight,
            pool,
            revocation_check_failures,
        })
    }

    /// The registry, for other components (caches, …) to register their metrics in.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn set_pool(&self, open: u32, idle: u32, max: u32) {
        self.pool.with_label_values(&["open"]).set(i64::from(open));
        self.pool.with_label_values(&["idle"]).set(i64::from(idle));
        self.pool
            .with_label_values(&["in_use"])
            .set(i64::from(open.saturating_sub(idle)));
        self.pool.with_label_values(&["max"]).set(i64::from(max));
    }

    pub fn render(&self) -> anyhow::Result<String> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        Ok(String::from_utf8(buf)?)
    }
}
