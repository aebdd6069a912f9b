//! Who is calling: an access token checked once, the same way for every transport
//! (HTTP, gRPC, the web pages). A token is accepted when it verifies and has not been
//! logged out; when the revocation store cannot be asked, the configured policy decides.

use super::cache_ports::RevokedTokens;
use super::ports::TokenIssuer;
use super::ServiceError;
use crate::domain::rejection::AuthFailure;
use crate::domain::{Role, UserId};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use uuid::Uuid;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub id: UserId,
    pub role: Role,
    pub token_id: Uuid,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

pub struct Authenticator {
    issuer: Arc<dyn TokenIssuer>,
    revoked: Arc<dyn RevokedTokens>,
    /// Refuse (unavailable) instead of accept when the revocation store cannot be asked.
    deny_when_unknown: bool,
    /// Counts the checks the revocation store could not answer.
    unknown: Option<prometheus::IntCounter>,
}

impl Authenticator {
    pub fn new(
        issuer: Arc<dyn TokenIssuer>,
        revoked: Arc<dyn RevokedTokens>,
        deny_when_unknown: bool,
    ) -> Self {
        Self {
            issuer,
            revoked,
            deny_when_unknown,
            unknown: None,
        }
    }

    /// Counts unanswered revocation checks in `counter`
    /// (`auth_revocation_check_failures_total`).
    pub fn with_failure_counter(mut self, counter: prometheus::IntCounter) -> Self {
        self.unknown = Some(counter);
        self
    }

    /// The caller of `token`: verified, not logged out. When the revocation store
    /// (Redis) cannot be asked, `auth.revocation_check_failure` decides: `deny`
    /// (unavailable; always in production) or `allow` (the dev profile's default).
    /// Whatever the request changes from here on is audited as this caller.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, ServiceError> {
        let claims = self
            .issuer
            .verify_access(token)
            .map_err(ServiceError::Unauthorized)?;
        let caller = Caller {
            id: claims.user_id,
            role: claims.role,
            token_id: claims.token_id,
            issued_at: claims.issued_at,
            expires_at: claims.expires_at,
        };
        match self
            .revoked
            .is_revoked(caller.token_id, caller.id.0, caller.issued_at)
            .await
        {
            Ok(false) => {}
            Ok(true) => return Err(ServiceError::Unauthorized(AuthFailure::Revoked)),
            Err(e) => {
                if let Some(c) = &self.unknown {
                    c.inc();
                }
                if self.deny_when_unknown {
                    return Err(ServiceError::Unavailable(format!(
                        "cannot verify the session: {e}"
                    )));
                }
                tracing::warn!(error = %e, "revocation store unavailable; accepting token");
            }
        }
        medbook_service_kit::context::authenticated(medbook_service_kit::context::Actor::User {
            id: caller.id.to_string(),
            role: caller.role.as_str().to_owned(),
        });
        Ok(caller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::cache_ports::CacheError;
    use crate::service::ports::{AccessClaims, IssuedAccessToken};
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicU8, Ordering};
    use std::time::Duration;

    struct Issuer;
    impl TokenIssuer for Issuer {
        fn issue_access(
            &self,
            _user: UserId,
            _role: Role,
            _now: DateTime<Utc>,
        ) -> anyhow::Result<IssuedAccessToken> {
            anyhow::bail!("not used")
        }
        fn verify_access(&self, token: &str) -> Result<AccessClaims, AuthFailure> {
            match token {
                "good" => Ok(AccessClaims {
                    user_id: UserId(Uuid::nil()),
                    role: Role::Admin,
                    token_id: Uuid::nil(),
                    issued_at: Utc::now(),
                    expires_at: Utc::now(),
                }),
                "old" => Err(AuthFailure::Expired),
                _ => Err(AuthFailure::Invalid),
            }
        }
        fn new_refresh_token(&self) -> (String, String) {
            (String::new(), String::new())
        }
        fn hash_refresh_token(&self, secret: &str) -> String {
            secret.to_owned()
        }
        fn refresh_ttl(&self) -> Duration {
            Duration::from_secs(86_400)
        }
        fn access_ttl(&self) -> Duration {
            Duration::from_secs(900)
        }
    }

    /// 0: not revoked, 1: revoked, 2: the store is down.
    struct Store(AtomicU8);
    #[async_trait]
    impl RevokedTokens for Store {
        async fn revoke(&self, _: Uuid, _: Duration) -> Result<(), CacheError> {
            Ok(())
        }
        async fn revoke_user_before(
            &self,
            _: Uuid,
            _: DateTime<Utc>,
            _: Duration,
        ) -> Result<(), CacheError> {
            Ok(())
        }
        async fn is_revoked(&self, _: Uuid, _: Uuid, _: DateTime<Utc>) -> Result<bool, CacheError> {
            match self.0.load(Ordering::SeqCst) {
                0 => Ok(false),
                1 => Ok(true),
                _ => Err(CacheError::Unavailable("down".into())),
            }
        }
    }

    #[tokio::test]
    async fn a_token_is_verified_then_checked_for_revocation() {
        let store = Arc::new(Store(AtomicU8::new(0)));
        let counter = prometheus::IntCounter::new("f", "f").unwrap();
        let strict = Authenticator::new(Arc::new(Issuer), store.clone(), true)
            .with_failure_counter(counter.clone());
        let lenient = Authenticator::new(Arc::new(Issuer), store.clone(), false);

        assert_eq!(strict.authenticate("good").await.unwrap().role, Role::Admin);
        assert!(matches!(
            strict.authenticate("old").await,
            Err(ServiceError::Unauthorized(AuthFailure::Expired))
        ));
        store.0.store(1, Ordering::SeqCst);
        assert!(matches!(
            strict.authenticate("good").await,
            Err(ServiceError::Unauthorized(AuthFailure::Revoked))
        ));
        store.0.store(2, Ordering::SeqCst);
        assert!(matches!(
            strict.authenticate("good").await,
            Err(ServiceError::Unavailable(_))
        ));
        assert_eq!(counter.get(), 1);
        assert!(lenient.authenticate("good").await.is_ok());
    }
}
