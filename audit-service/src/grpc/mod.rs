//! The gRPC transport: `medbook.audit.v1.AuditService` over [`AuditLog`]. Each method
//! checks the caller (a bearer token, when configured), converts the request
//! (`convert`), calls one use case and maps the outcome (`status`); every answer is
//! counted by method and code.

pub mod convert;
pub mod status;

use crate::log::AuditLog;
use crate::metrics::Metrics;
use crate::repository::Cursor;
use crate::startup::Loaded;
use medbook_proto::audit::v1 as pb;
use medbook_shared::trace_context;
use pb::audit_service_server::AuditService;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use std::future::Future;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub use pb::audit_service_server::AuditServiceServer;

pub struct AuditGrpc {
    log: Loaded,
    metrics: Metrics,
    /// SHA-256 of the API token, when one is required.
    token: Option<[u8; 32]>,
    max_batch: usize,
}

impl AuditGrpc {
    pub fn new(
        log: Loaded,
        metrics: Metrics,
        token: Option<&SecretString>,
        max_batch: usize,
    ) -> Self {
        Self {
            log,
            metrics,
            token: token.map(|t| Sha256::digest(t.expose_secret().as_bytes()).into()),
            max_batch,
        }
    }

    /// The log, or UNAVAILABLE while it is still loading.
    fn log(&self) -> Result<&Arc<AuditLog>, Status> {
        self.log
            .get()
            .ok_or_else(|| Status::unavailable("the audit log is still loading; retry shortly"))
    }

    /// `authorization: Bearer <token>`, compared in constant time (of the digests).
    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let Some(expected) = &self.token else {
            return Ok(());
        };
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("missing `authorization: Bearer <token>`"))?;
        let digest: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
        let diff = digest
            .iter()
            .zip(expected.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff == 0 {
            Ok(())
        } else {
            Err(Status::unauthenticated("invalid token"))
        }
    }

    /// Runs one call: authorisation, the handler, the metric.
    async fn call<Req, Res, F, Fut>(
        &self,
        method: &'static str,
        request: Request<Req>,
        handler: F,
    ) -> Result<Response<Res>, Status>
    where
        F: FnOnce(Req) -> Fut,
        Fut: Future<Output = Result<Res, Status>>,
    {
        let result = match self.authorize(&request) {
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
        self.call("Append", request, |req| async move {
            if req.records.is_empty() {
                return Err(status::invalid(&[status::violation(
                    "records",
                    "must hold at least one record",
                )]));
            }
            if req.records.len() > self.max_batch {
                return Err(status::invalid(&[status::violation(
                    "records",
                    format!("must hold at most {} records", self.max_batch),
                )]));
            }
            let mut violations = Vec::new();
            let records: Vec<_> = req
                .records
                .iter()
                .enumerate()
                .filter_map(|(i, r)| convert::record(i, r, &mut violations))
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
        self.call("Query", request, |req| async move {
            let (filter, cursor, page_size) =
                convert::query(&req).map_err(|v| status::invalid(&v))?;
            let (rows, more) = self.log()?.query(filter, cursor, page_size).await?;
            let next_page_token = match rows.last() {
                Some(last) if more => convert::page_token(&Cursor {
                    occurred_at: last.occurred_at,
                    index: last.index(),
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
        self.call("GetCheckpoint", request, |_| async move {
            Ok(convert::checkpoint(&self.log()?.checkpoint()?))
        })
        .await
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::InclusionProof>, Status> {
        self.call("GetInclusionProof", request, |req| async move {
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
        })
        .await
    }

    async fn get_consistency_proof(
        &self,
        request: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::ConsistencyProof>, Status> {
        self.call("GetConsistencyProof", request, |req| async move {
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
        })
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
