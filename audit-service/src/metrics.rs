//! Prometheus metrics of the audit-service.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub appended: IntCounter,
    pub duplicates: IntCounter,
    pub tree_size: IntGauge,
    pub checkpoints: IntCounter,
    pub checkpoint_age: IntGauge,
    rpcs: IntCounterVec,
}

impl Metrics {
    pub fn new() -> prometheus::Result<Self> {
        let m = Self {
            registry: Registry::new(),
            appended: IntCounter::new(
                "audit_records_appended_total",
                "Records appended to the log (duplicates not counted)",
            )?,
            duplicates: IntCounter::new(
                "audit_append_duplicates_total",
                "Records sent again and answered with their original index",
            )?,
            tree_size: IntGauge::new("audit_tree_size", "Leaves in the Merkle tree")?,
            checkpoints: IntCounter::new(
                "audit_checkpoints_issued_total",
                "Signed checkpoints issued by this process",
            )?,
            checkpoint_age: IntGauge::new(
                "audit_latest_checkpoint_age_seconds",
                "Seconds since the latest checkpoint was issued (-1: none yet)",
            )?,
            rpcs: IntCounterVec::new(
                Opts::new("audit_rpc_requests_total", "AuditService calls answered"),
                &["method", "code"],
            )?,
        };
        m.registry.register(Box::new(m.appended.clone()))?;
        m.registry.register(Box::new(m.duplicates.clone()))?;
        m.registry.register(Box::new(m.tree_size.clone()))?;
        m.registry.register(Box::new(m.checkpoints.clone()))?;
        m.registry.register(Box::new(m.checkpoint_age.clone()))?;
        m.registry.register(Box::new(m.rpcs.clone()))?;
        m.checkpoint_age.set(-1);
        Ok(m)
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// One answered call: `code` is the gRPC code's name (`Ok`, `InvalidArgument`…).
    pub fn rpc(&self, method: &str, code: tonic::Code) {
        self.rpcs
            .with_label_values(&[method, &format!("{code:?}")])
            .inc();
    }
}
