//! The ports of the cache and of the revoked-token store, owned by the use cases that
//! need them (their Redis and in-memory adapters live in `cache`). A cache is an
//! optimisation: its failures look like misses. The revoked-token store is a security
//! control: its failures are reported, and the caller decides.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::future::Future;
use std::time::Duration;
use uuid::Uuid;

/// The cache key of a doctor's public record (with its rating summary).
pub fn doctor_cache_key(id: crate::domain::DoctorId) -> String {
    format!("doctor:{id}")
}

/// The cache key of a patient's record.
pub fn patient_cache_key(id: crate::domain::UserId) -> String {
    format!("patient:{id}")
}

/// A key-value cache of opaque serialized values, with a backend-defined TTL and size
/// bound.
///
/// None of the operations can fail: a backend failure is logged and counted by the
/// implementation and then looks like a miss (`get`) or a no-op (`set`, `invalidate`).
#[async_trait]
pub trait Cache: Send + Sync {
    /// The value stored under `key`; `None` on a miss and on any backend failure.
    async fn get(&self, key: &str) -> Option<Vec<u8>>;
    /// Stores `value` under `key` (best effort), replacing any previous value.
    async fn set(&self, key: &str, value: Vec<u8>);
    /// Removes `key` (best effort); call it after every write to the underlying data.
    async fn invalidate(&self, key: &str);
}

/// Failures of the [`RevokedTokens`] store.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache backend unavailable: {0}")]
    Unavailable(String),
}

/// Access tokens that must not be accepted before they expire: the ids of tokens that
/// were logged out, and per user a time before which every token was revoked (a
/// password reset or change ends every session).
#[async_trait]
pub trait RevokedTokens: Send + Sync {
    /// Marks `token_id` revoked for `ttl` (the remaining lifetime of the token).
    async fn revoke(&self, token_id: Uuid, ttl: Duration) -> Result<(), CacheError>;
    /// Revokes every token of `user_id` issued before `before` (to the millisecond),
    /// for `ttl` (the access-token lifetime).
    async fn revoke_user_before(
        &self,
        user_id: Uuid,
        before: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<(), CacheError>;
    /// Whether the token was revoked, by its id or by its user's cut-off; one lookup.
    async fn is_revoked(
        &self,
        token_id: Uuid,
        user_id: Uuid,
        issued_at: DateTime<Utc>,
    ) -> Result<bool, CacheError>;
}

/// Cache-aside: the value cached under `key` if there is one that decodes, otherwise the
/// result of `load`, which is then cached (best effort).
///
/// Values are stored as JSON. An entry that does not decode (e.g. written by an older
/// version of the type) is treated as a miss and invalidated. Errors of `load` are
/// returned as they are and nothing is cached.
pub async fn get_or_load<T, F, Fut, E>(cache: &dyn Cache, key: &str, load: F) -> Result<T, E>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    if let Some(bytes) = cache.get(key).await {
        match serde_json::from_slice::<T>(&bytes) {
            Ok(value) => return Ok(value),
            Err(e) => {
                tracing::warn!(key, error = %e, "undecodable cache entry, reloading");
                cache.invalidate(key).await;
            }
        }
    }
    let value = load().await?;
    match serde_json::to_vec(&value) {
        Ok(bytes) => cache.set(key, bytes).await,
        Err(e) => tracing::warn!(key, error = %e, "value not cacheable: serialization failed"),
    }
    Ok(value)
}
