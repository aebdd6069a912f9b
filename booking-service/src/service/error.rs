//! The one error type of the service layer. Each transport maps it exhaustively.

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
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    #[error("forbidden")]
    Forbidden,
    /// The caller may not do this yet, for a reason it can act on (e.g.
    /// `email_unverified`).
    #[error("refused: {message}")]
    Refused { code: &'static str, message: String },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("conflict: {message}")]
    Conflict { code: &'static str, message: String },
    /// Well-formed but against a business rule (e.g. booking a past slot).
    #[error("unprocessable: {message}")]
    Unprocessable { code: &'static str, message: String },
    /// Too many attempts; retry after the given time.
    #[error("too many requests")]
    TooManyRequests { retry_after: Duration },
    /// A bounded resource (e.g. password hashing) is saturated; retry shortly.
    #[error("overloaded")]
    Overloaded { retry_after: Duration },
    /// A dependency (the database) is unreachable.
    #[error("service unavailable: {0}")]
    Unavailable(String),
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
            RepoError::UniqueViolation(c) => ServiceError::Conflict {
                code: "conflict",
                message: format!("a record with the same unique value already exists ({c})"),
            },
            RepoError::ExclusionViolation(c) => ServiceError::Conflict {
                code: "overlap",
                message: format!("overlaps an existing record ({c})"),
            },
            RepoError::ForeignKeyViolation(c) => ServiceError::Conflict {
                code: "in_use",
                message: format!("the record is referenced by other records ({c})"),
            },
            RepoError::Retryable(_) => ServiceError::Conflict {
                code: "concurrent_update",
                message: "the record was changed concurrently; retry the request".into(),
            },
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
