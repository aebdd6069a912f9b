//! The one error type of the service layer. Each transport maps it exhaustively.

use crate::domain::rejection::{AuthFailure, Rejection};
use crate::domain::ValidationErrors;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("validation failed: {0}")]
    Validation(ValidationErrors),
    /// Wrong e-mail or password: deliberately does not say which.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// Missing, malformed, expired or revoked token.
    #[error("unauthorized: {0:?}")]
    Unauthorized(AuthFailure),
    #[error("forbidden")]
    Forbidden,
    /// The caller may not do this yet, for a reason it can act on (an unverified
    /// address), against a business rule, or clashing with stored data: each
    /// transport says which and how.
    #[error("rejected: {}", .0.code())]
    Rejected(Rejection),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Too many attempts; retry after the given time.
    #[error("too many requests")]
    TooManyRequests { retry_after: Duration },
    /// A bounded resource (e.g. password hashing) is saturated; retry shortly.
    #[error("overloaded")]
    Overloaded { retry_after: Duration },
    /// A dependency (the database) is unreachable.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// The audit log cannot be read right now (its records wait, nothing is lost).
    #[error("the audit log is unavailable")]
    AuditUnavailable,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<ValidationErrors> for ServiceError {
    fn from(e: ValidationErrors) -> Self {
        ServiceError::Validation(e)
    }
}

impl From<super::ports::RepoError> for ServiceError {
    fn from(e: super::ports::RepoError) -> Self {
        use super::ports::RepoError;
        match e {
            RepoError::Unavailable(m) => ServiceError::Unavailable(m),
            // Which constraint it was stays in the log, never in an answer.
            RepoError::UniqueViolation(c) => {
                tracing::debug!(constraint = %c, "unique violation");
                ServiceError::Rejected(Rejection::Duplicate)
            }
            RepoError::ExclusionViolation(c) => {
                tracing::debug!(constraint = %c, "exclusion violation");
                ServiceError::Rejected(Rejection::Overlap)
            }
            RepoError::ForeignKeyViolation(c) => {
                tracing::debug!(constraint = %c, "foreign key violation");
                ServiceError::Rejected(Rejection::InUse)
            }
            RepoError::Retryable(_) => ServiceError::Rejected(Rejection::ConcurrentUpdate),
            RepoError::Internal(e) => ServiceError::Internal(e),
        }
    }
}

impl From<super::ports::HashError> for ServiceError {
    fn from(e: super::ports::HashError) -> Self {
        use super::ports::HashError;
        match e {
            HashError::Busy => ServiceError::Overloaded {
                retry_after: Duration::from_secs(1),
            },
            HashError::Internal(e) => ServiceError::Internal(e),
        }
    }
}

impl From<Rejection> for ServiceError {
    fn from(r: Rejection) -> Self {
        ServiceError::Rejected(r)
    }
}
