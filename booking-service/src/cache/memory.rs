//! In-process implementations of [`Cache`] and [`RevokedTokens`].
//!
//! Why this module exists: a single replica (development, small deployments) needs no
//! Redis, and the unit tests of the service layer need fast, deterministic stores. Both
//! types here are backed by `moka`, which bounds the cache by entry count (evicting the
//! least valuable entries, roughly LRU) and expires entries by time. Neither can fail, so
//! the cache never counts errors and the revoked-token store never returns one.
//!
//! With several replicas use the Redis implementations instead: a token revoked on one
//! replica must be rejected by all, and an invalidation must reach every copy.

use super::{Cache, CacheError, CacheMetrics, RevokedTokens};
use async_trait::async_trait;
use moka::Expiry;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

const LABEL: &str = "memory";

/// An in-process cache bounded to `max_entries` entries, each living at most `ttl`.
pub struct MemoryCache {
    entries: moka::future::Cache<String, Vec<u8>>,
    metrics: Arc<CacheMetrics>,
}

impl MemoryCache {
    pub fn new(max_entries: u64, ttl: Duration, metrics: Arc<CacheMetrics>) -> Self {
        let entries = moka::future::Cache::builder()
            .max_capacity(max_entries)
            .time_to_live(ttl)
            .build();
        Self { entries, metrics }
    }

    /// The number of entries, approximately: evictions and expirations are applied
    /// lazily (see [`MemoryCache::run_pending_tasks`]).
    pub fn entry_count(&self) -> u64 {
        self.entries.entry_count()
    }

    /// Applies pending evictions and expirations now (tests, diagnostics).
    pub async fn run_pending_tasks(&self) {
        self.entries.run_pending_tasks().await;
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let value = self.entries.get(key).await;
        if value.is_some() {
            self.metrics.hit(LABEL);
        } else {
            self.metrics.miss(LABEL);
        }
        value
    }

    async fn set(&self, key: &str, value: Vec<u8>) {
        self.entries.insert(key.to_owned(), value).await;
    }

    async fn invalidate(&self, key: &str) {
        self.entries.invalidate(key).await;
    }
}

/// Revoked access-token ids, each kept for its own TTL, in this process only.
///
/// Deliberately not size-bounded: evicting an entry would silently un-revoke a token.
/// Entries leave when their TTL (the remaining lifetime of the token) runs out.
pub struct MemoryRevokedTokens {
    /// The value is the TTL the id was revoked with, read by [`RevocationExpiry`].
    ids: moka::future::Cache<Uuid, Duration>,
    /// Per user: tokens issued before this time (Unix milliseconds) are revoked.
    users: moka::future::Cache<Uuid, i64>,
}

/// Per-entry expiry: an id expires after the TTL it was revoked with; revoking it again
/// never shortens an existing revocation.
struct RevocationExpiry;

impl Expiry<Uuid, Duration> for RevocationExpiry {
    fn expire_after_create(&self, _: &Uuid, ttl: &Duration, _: Instant) -> Option<Duration> {
        Some(*ttl)
    }

    fn expire_after_update(
        &self,
        _: &Uuid,
        ttl: &Duration,
        _: Instant,
        remaining: Option<Duration>,
    ) -> Option<Duration> {
        Some(remaining.map_or(*ttl, |remaining| remaining.max(*ttl)))
    }
}

impl MemoryRevokedTokens {
    pub fn new() -> Self {
        Self {
            ids: moka::future::Cache::builder()
                .expire_after(RevocationExpiry)
                .build(),
            // Cut-offs outlive every token they revoke: a day is far above any access
            // token lifetime.
            users: moka::future::Cache::builder()
                .time_to_live(Duration::from_secs(86_400))
                .build(),
        }
    }
}

impl Default for MemoryRevokedTokens {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl RevokedTokens for MemoryRevokedTokens {
    async fn revoke(&self, token_id: Uuid, ttl: Duration) -> Result<(), CacheError> {
        self.ids.insert(token_id, ttl).await;
        Ok(())
    }

    async fn revoke_user_before(
        &self,
        user_id: Uuid,
        before: chrono::DateTime<chrono::Utc>,
        _ttl: Duration,
    ) -> Result<(), CacheError> {
        self.users.insert(user_id, before.timestamp_millis()).await;
        Ok(())
    }

    async fn is_revoked(
        &self,
        token_id: Uuid,
        user_id: Uuid,
        issued_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, CacheError> {
        let cut = self.users.get(&user_id).await;
        Ok(self.ids.get(&token_id).await.is_some()
            || cut.is_some_and(|before| issued_at.timestamp_millis() < before))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Registry;

    fn metrics() -> Arc<CacheMetrics> {
        CacheMetrics::new(&Registry::new()).unwrap()
    }

    #[tokio::test]
    async fn round_trip_and_invalidate() {
        let cache = MemoryCache::new(10, Duration::from_secs(60), metrics());
        assert_eq!(cache.get("a").await, None);
        cache.set("a", b"one".to_vec()).await;
        assert_eq!(cache.get("a").await.as_deref(), Some(&b"one"[..]));
        cache.set("a", b"two".to_vec()).await;
        assert_eq!(cache.get("a").await.as_deref(), Some(&b"two"[..]));
        cache.invalidate("a").await;
        assert_eq!(cache.get("a").await, None);
    }

    #[tokio::test]
    async fn counts_hits_and_misses() {
        let metrics = metrics();
        let cache = MemoryCache::new(10, Duration::from_secs(60), metrics.clone());
        cache.get("a").await;
        cache.set("a", vec![1]).await;
        cache.get("a").await;
        cache.get("a").await;
        assert_eq!(metrics.misses.with_label_values(&[LABEL]).get(), 1);
        assert_eq!(metrics.hits.with_label_values(&[LABEL]).get(), 2);
        assert_eq!(metrics.errors.with_label_values(&[LABEL]).get(), 0);
    }

    #[tokio::test]
    async fn stays_within_capacity() {
        let capacity = 50;
        let cache = MemoryCache::new(capacity, Duration::from_secs(60), metrics());
        for i in 0..1_000 {
            cache.set(&format!("key-{i}"), vec![0; 16]).await;
        }
        cache.run_pending_tasks().await;
        let count = cache.entry_count();
        assert!(count <= capacity, "{count} entries > capacity {capacity}");
        assert!(count > 0);
    }

    #[tokio::test]
    async fn entries_expire_after_the_ttl() {
        let cache = MemoryCache::new(10, Duration::from_millis(200), metrics());
        cache.set("a", vec![1]).await;
        assert!(cache.get("a").await.is_some());
        medbook_test_support::eventually(
            "the entry to expire",
            Duration::from_secs(10),
            || async { cache.get("a").await.is_none().then_some(()) },
        )
        .await;
        cache.run_pending_tasks().await;
        assert_eq!(cache.entry_count(), 0);
    }

    #[tokio::test]
    async fn revoked_tokens_are_reported_until_they_expire() {
        let store = MemoryRevokedTokens::new();
        let revoked = Uuid::new_v4();
        let long_lived = Uuid::new_v4();
        store
            .revoke(revoked, Duration::from_millis(300))
            .await
            .unwrap();
        store
            .revoke(long_lived, Duration::from_secs(60))
            .await
            .unwrap();
        assert!(store
            .is_revoked(revoked, Uuid::nil(), chrono::Utc::now())
            .await
            .unwrap());
        assert!(!store
            .is_revoked(Uuid::new_v4(), Uuid::nil(), chrono::Utc::now())
            .await
            .unwrap());
        medbook_test_support::eventually(
            "the revocation to expire",
            Duration::from_secs(10),
            || async {
                (!store
                    .is_revoked(revoked, Uuid::nil(), chrono::Utc::now())
                    .await
                    .unwrap())
                .then_some(())
            },
        )
        .await;
        assert!(store
            .is_revoked(long_lived, Uuid::nil(), chrono::Utc::now())
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn revoking_again_never_shortens_a_revocation() {
        let store = MemoryRevokedTokens::new();
        let id = Uuid::new_v4();
        store.revoke(id, Duration::from_secs(60)).await.unwrap();
        store.revoke(id, Duration::from_millis(50)).await.unwrap();
        // A token revoked for 50 ms alone: once it has expired, the shorter revocation
        // of `id` would have too.
        let control = Uuid::new_v4();
        store
            .revoke(control, Duration::from_millis(50))
            .await
            .unwrap();
        medbook_test_support::eventually(
            "the control to expire",
            Duration::from_secs(10),
            || async {
                (!store
                    .is_revoked(control, Uuid::nil(), chrono::Utc::now())
                    .await
                    .unwrap())
                .then_some(())
            },
        )
        .await;
        assert!(store
            .is_revoked(id, Uuid::nil(), chrono::Utc::now())
            .await
            .unwrap());
    }
}
