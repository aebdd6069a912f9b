//! bcrypt, bounded: at most `permits` hashes run at once (about the core count), and a
//! caller that cannot get a permit within `max_wait` gets `HashError::Busy` at once
//! instead of queueing behind a login storm and starving every other endpoint.

use crate::blocking;
use crate::domain::Password;
use crate::service::ports::{HashError, PasswordHasher};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

pub struct BcryptHasher {
    cost: u32,
    permits: Arc<Semaphore>,
    max_wait: Duration,
}

impl BcryptHasher {
    pub fn new(cost: u32, permits: usize, max_wait: Duration) -> Self {
        Self {
            cost,
            permits: Arc::new(Semaphore::new(permits.max(1))),
            max_wait,
        }
    }

    /// A hash of a random password, used to spend the same time on unknown accounts.
    pub fn dummy_hash(cost: u32) -> anyhow::Result<String> {
        let random: [u8; 16] = rand::random();
        Ok(bcrypt::hash(hex::encode(random), cost)?)
    }

    async fn bounded<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, bcrypt::BcryptError> + Send + 'static,
    ) -> Result<T, HashError> {
        let permit = tokio::time::timeout(self.max_wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| HashError::Busy)?
            .map_err(|e| HashError::Internal(e.into()))?;
        let result = blocking::run(move || {
            let r = f();
            drop(permit);
            r
        })
        .await?;
        result.map_err(|e| HashError::Internal(e.into()))
    }
}

#[async_trait]
impl PasswordHasher for BcryptHasher {
    async fn hash(&self, password: Password) -> Result<String, HashError> {
        let cost = self.cost;
        // `Password` guarantees at most 72 bytes, so nothing is truncated.
        self.bounded(move || bcrypt::hash(password.expose(), cost))
            .await
    }

    async fn verify(&self, password: Password, hash: String) -> Result<bool, HashError> {
        self.bounded(move || match bcrypt::verify(password.expose(), &hash) {
            // A malformed stored hash never matches; it is not a server error.
            Err(bcrypt::BcryptError::InvalidHash(_))
            | Err(bcrypt::BcryptError::InvalidPrefix(_)) => Ok(false),
            other => other,
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_and_verifies_all_72_bytes() {
        let h = BcryptHasher::new(4, 2, Duration::from_secs(5));
        let a = Password::parse(&format!("{}X", "a".repeat(71))).unwrap();
        let b = Password::parse(&format!("{}Y", "a".repeat(71))).unwrap();
        let hash = h.hash(a.clone()).await.unwrap();
        assert!(h.verify(a, hash.clone()).await.unwrap());
        assert!(!h.verify(b, hash).await.unwrap(), "the 72nd byte counts");
    }

    #[tokio::test]
    async fn saturated_hasher_answers_busy() {
        let h = Arc::new(BcryptHasher::new(12, 1, Duration::from_millis(20)));
        let p = Password::parse("long enough").unwrap();
        let first = {
            let h = h.clone();
            let p = p.clone();
            tokio::spawn(async move { h.hash(p).await })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        let second = h.hash(p).await;
        assert!(matches!(second, Err(HashError::Busy)), "{second:?}");
        assert!(first.await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn garbage_hash_does_not_match() {
        let h = BcryptHasher::new(4, 1, Duration::from_secs(1));
        let p = Password::parse("long enough").unwrap();
        assert!(!h.verify(p, "not-a-hash".into()).await.unwrap());
    }
}
