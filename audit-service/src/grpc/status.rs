//! The one error boundary of the gRPC transport: every failure becomes a `Status`
//! here. Invalid input carries a `google.rpc.BadRequest` with one field violation per
//! problem (in `grpc-status-details-bin`, the way tonic-types and other gRPC
//! libraries read it); internal failures carry no internals.

use crate::log::LogError;
use crate::merkle::ProofError;
use crate::ports::DbError;
use crate::record::Violation;
use prost::Message;
use tonic::{Code, Status};

/// `google.rpc.Status`.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<prost_types::Any>,
}

/// `google.rpc.BadRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct BadRequest {
    #[prost(message, repeated, tag = "1")]
    pub field_violations: Vec<FieldViolation>,
}

/// `google.rpc.BadRequest.FieldViolation`.
#[derive(Clone, PartialEq, Message)]
pub struct FieldViolation {
    #[prost(string, tag = "1")]
    pub field: String,
    #[prost(string, tag = "2")]
    pub description: String,
}

pub const BAD_REQUEST_TYPE: &str = "type.googleapis.com/google.rpc.BadRequest";

/// A status of `code` whose details list `violations`.
pub fn with_violations(code: Code, message: &str, violations: &[Violation]) -> Status {
    let bad = BadRequest {
        field_violations: violations
            .iter()
            .map(|v| FieldViolation {
                field: v.field.clone(),
                description: v.description.clone(),
            })
            .collect(),
    };
    let summary: Vec<String> = violations
        .iter()
        .take(5)
        .map(|v| format!("{} {}", v.field, v.description))
        .collect();
    let message = if summary.is_empty() {
        message.to_owned()
    } else {
        format!("{message}: {}", summary.join("; "))
    };
    let details = RpcStatus {
        code: code as i32,
        message: message.clone(),
        details: vec![prost_types::Any {
            type_url: BAD_REQUEST_TYPE.to_owned(),
            value: bad.encode_to_vec(),
        }],
    };
    Status::with_details(code, message, details.encode_to_vec().into())
}

pub fn invalid(violations: &[Violation]) -> Status {
    with_violations(Code::InvalidArgument, "invalid request", violations)
}

pub fn violation(field: &str, description: impl Into<String>) -> Violation {
    Violation {
        field: field.to_owned(),
        description: description.into(),
    }
}

/// The field violations in a status's details (for clients and tests).
pub fn violations_of(status: &Status) -> Vec<(String, String)> {
    let Ok(rpc) = RpcStatus::decode(status.details()) else {
        return Vec::new();
    };
    rpc.details
        .iter()
        .filter(|a| a.type_url == BAD_REQUEST_TYPE)
        .filter_map(|a| BadRequest::decode(a.value.as_slice()).ok())
        .flat_map(|b| b.field_violations)
        .map(|v| (v.field, v.description))
        .collect()
}

impl From<LogError> for Status {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Db(DbError::Unavailable(m)) | LogError::Db(DbError::Retryable(m)) => {
                tracing::warn!(error = %m, "database unavailable");
                Status::unavailable("the audit database is unavailable; retry later")
            }
            LogError::Db(e @ DbError::UniqueViolation(_)) => {
                // Another writer took the index or id in between: retryable.
                tracing::warn!(error = %e, "append conflict");
                Status::aborted("concurrent append; retry")
            }
            LogError::Db(e) => {
                if looks_like_outage(&e) {
                    tracing::warn!(error = %e, "database unavailable");
                    return Status::unavailable("the audit database is unavailable; retry later");
                }
                tracing::error!(error = %format!("{e:#}"), "internal error");
                Status::internal("internal error")
            }
            LogError::NoCheckpoint => Status::not_found("no checkpoint has been issued yet"),
            LogError::Proof(ProofError::BeyondTree {
                requested,
                available,
            }) => Status::out_of_range(format!(
                "tree size {requested} is beyond the log's {available} records"
            )),
            LogError::Proof(e @ ProofError::IndexOutOfRange { .. }) => {
                invalid(&[violation("index", e.to_string())])
            }
            LogError::Proof(e @ ProofError::BadRange { .. }) => {
                invalid(&[violation("from_size", e.to_string())])
            }
            LogError::Diverged { .. } | LogError::Corrupt(_) => {
                tracing::error!(error = %e, "the log is inconsistent");
                Status::failed_precondition(e.to_string())
            }
        }
    }
}

/// A query that failed because the server went away (terminated connection, dropped
/// database) rather than because of the query.
fn looks_like_outage(e: &DbError) -> bool {
    let text = format!("{e:#}").to_lowercase();
    [
        "terminating connection",
        "server closed the connection",
        "connection refused",
        "does not exist",
        "could not connect",
        "broken pipe",
        "no connection to the server",
    ]
    .iter()
    .any(|s| text.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_travel_in_the_details() {
        let s = invalid(&[violation("records[0].id", "must be a UUID")]);
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().contains("records[0].id"));
        assert_eq!(
            violations_of(&s),
            vec![("records[0].id".to_owned(), "must be a UUID".to_owned())]
        );
    }
}
