//! The gRPC transport: `medbook.audit.v1.AuditService` over [`AuditLog`]. Each method
//! checks the caller (`auth`: the append token for Append, the read token for Query,
//! either for checkpoints and proofs), converts the request (`convert`), calls one use
//! case and maps the outcome (`status`); every answer is counted by method and code.

pub mod auth;
pub mod convert;
pub mod status;

use crate::log::{AuditLog, Loaded};
use crate::metrics::Metrics;
use crate::ports::{Clock, Cursor};
use crate::record::Intake;
use auth::{Access, Credentials};
use medbook_proto::audit::v1 as pb;
use medbook_shared::trace_context;
use pb::audit_service_server::AuditService;
use std::future::Future;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub use pb::audit_service_server::AuditServiceServer;

/// The services this server answers, as reflection lists them.
pub const SERVED: [&str; 4] = [
    "medbook.audit.v1.AuditService",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// How Append takes records in.
#[derive(Debug, Clone, Copy)]
pub struct AppendPolicy {
    /// The most records one Append may carry.
    pub max_batch: usize,
    /// How far ahead of the server's clock a record's occurred_at may be.
    pub max_future_skew: chrono::Duration,
}

pub struct AuditGrpc {
    log: Loaded,
    /// Stamps each Append's receive time.
    clock: Arc<dyn Clock>,
    metrics: Metrics,
    credentials: Credentials,
    policy: AppendPolicy,
}

impl AuditGrpc {
    pub fn new(
        log: Loaded,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
        credentials: Credentials,
        policy: AppendPolicy,
    ) -> Self {
        Self {
            log,
            clock,
            metrics,
            credentials,
            policy,
        }
    }

    /// The log, or UNAVAILABLE while it is still loading.
    fn log(&self) -> Result<&Arc<AuditLog>, Status> {
        self.log
            .get()
            .ok_or_else(|| Status::unavailable("the audit log is still loading; retry shortly"))
    }

    /// Runs one call: authorisation (`access`), the handler, the metric.
    async fn call<Req, Res, F, Fut>(
        &self,
        method: &'static str,
        access: Access,
        request: Request<Req>,
        handler: F,
    ) -> Result<Response<Res>, Status>
    where
        F: FnOnce(Req) -> Fut,
        Fut: Future<Output = Result<Res, Status>>,
    {
        let result = match self
            .credentials
            .authorize(request.metadata(), method, access)
        {
            Ok(()) => handler(request.into_inner()).await,
            Err(e) => Err(e),
        };
        let code = result
            .as_ref()
            .map_or_else(Status::code, |_| tonic::Code::Ok);
        self.metrics.rpc(method, code);
        result.map(Response::new)
    }
}

#[tonic::async_trait]
impl AuditService for AuditGrpc {
    async fn append(
        &self,
        request: Request<pb::AppendRequest>,
    ) -> Result<Response<pb::AppendResponse>, Status> {
        // The receive time: the server's clock as the call arrives, before it waits
        // for other appends.
        let intake = Intake::at(self.clock.now(), self.policy.max_future_skew);
        self.call("Append", Access::Append, request, |req| async move {
            if req.records.is_empty() {
                return Err(status::invalid(&[status::violation(
                    "records",
                    "must hold at least one record",
                )]));
            }
            if req.records.len() > self.policy.max_batch {
                return Err(status::invalid(&[status::violation(
                    "records",
                    format!("must hold at most {} records", self.policy.max_batch),
                )]));
            }
            let mut violations = Vec::new();
            let records: Vec<_> = req
                .records
                .iter()
                .enumerate()
                .filter_map(|(i, r)| convert::record(i, r, &intake, &mut violations))
                .collect();
            if !violations.is_empty() {
                violations.truncate(50);
                return Err(status::invalid(&violations));
            }
            // One span per record in the trace of the change it records (its
            // `traceparent`), beside the call's own span.
            let spans: Vec<tracing::Span> = req.records.iter().map(record_span).collect();
            let (results, tree_size) = self.log()?.append(records).await?;
            for (span, r) in spans.iter().zip(&results) {
                span.record("audit.index", r.index);
                span.record("audit.duplicate", r.duplicate);
            }
            Ok(pb::AppendResponse {
                results: results
                    .into_iter()
                    .map(|r| pb::AppendResult {
                        id: r.id.to_string(),
                        index: r.index,
                        duplicate: r.duplicate,
                    })
                    .collect(),
                tree_size,
            })
        })
        .await
    }

    async fn query(
        &self,
        request: Request<pb::QueryRequest>,
    ) -> Result<Response<pb::QueryResponse>, Status> {
        self.call("Query", Access::Read, request, |req| async move {
            let (filter, cursor, page_size) =
                convert::query(&req).map_err(|v| status::invalid(&v))?;
            let (rows, more) = self.log()?.query(filter, cursor, page_size).await?;
            let next_page_token = match rows.last() {
                Some(last) if more => convert::page_token(&Cursor {
                    occurred_at: last.occurred_at,
                    index: last.index,
                }),
                _ => String::new(),
            };
            Ok(pb::QueryResponse {
                records: rows.iter().map(convert::stored).collect(),
                next_page_token,
            })
        })
        .await
    }

    async fn get_checkpoint(
        &self,
        request: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::Checkpoint>, Status> {
        self.call("GetCheckpoint", Access::Either, request, |_| async move {
            Ok(convert::checkpoint(&self.log()?.checkpoint()?))
        })
        .await
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::InclusionProof>, Status> {
        self.call(
            "GetInclusionProof",
            Access::Either,
            request,
            |req| async move {
                if req.tree_size == 0 {
                    return Err(status::invalid(&[status::violation(
                        "tree_size",
                        "must be at least 1",
                    )]));
                }
                let p = self.log()?.inclusion(req.index, req.tree_size)?;
                Ok(pb::InclusionProof {
                    index: req.index,
                    tree_size: req.tree_size,
                    leaf_hash: p.leaf.to_vec(),
                    path: convert::hashes(&p.path),
                    root_hash: p.root.to_vec(),
                })
            },
        )
        .await
    }

    async fn get_consistency_proof(
        &self,
        request: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::ConsistencyProof>, Status> {
        self.call(
            "GetConsistencyProof",
            Access::Either,
            request,
            |req| async move {
                let mut v = Vec::new();
                if req.from_size == 0 {
                    v.push(status::violation("from_size", "must be at least 1"));
                }
                if req.from_size > req.to_size {
                    v.push(status::violation("to_size", "must not be below from_size"));
                }
                if !v.is_empty() {
                    return Err(status::invalid(&v));
                }
                let p = self.log()?.consistency(req.from_size, req.to_size)?;
                Ok(pb::ConsistencyProof {
                    from_size: req.from_size,
                    to_size: req.to_size,
                    path: convert::hashes(&p.path),
                    from_root: p.from_root.to_vec(),
                    to_root: p.to_root.to_vec(),
                })
            },
        )
        .await
    }
}

/// The span of appending one record, a child of the shipping span named by its
/// `traceparent`; none for a record sent without one.
fn record_span(r: &pb::AuditRecord) -> tracing::Span {
    if r.traceparent.is_empty() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "audit append",
        otel.name = "audit.record append",
        otel.kind = "consumer",
        audit.action = %r.action,
        audit.record_id = %r.id,
        audit.index = tracing::field::Empty,
        audit.duplicate = tracing::field::Empty,
    );
    trace_context::set_remote_parent(
        &span,
        trace_context::context_from_traceparent(Some(&r.traceparent)),
    );
    span
}
