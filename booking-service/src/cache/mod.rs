//! Caching and the revoked-access-token store.
//!
//! Why this module exists: some reads (doctor schedules, directory pages, …) are far more
//! frequent than the writes that change them, and every one of them would otherwise hit
//! PostgreSQL. [`Cache`] lets the service layer keep serialized results close at hand,
//! either in-process ([`memory::MemoryCache`], one replica) or shared between replicas
//! ([`redis::RedisCache`]), and [`get_or_load`] implements the cache-aside pattern on top
//! of it. A cache is an optimisation only: every backend failure becomes a miss, never an
//! error, so an outage of Redis slows the service down but never breaks it.
//!
//! Logging out must make an access token unusable before it expires, and the access
//! tokens themselves are stateless JWTs, so the ids of the logged-out ones are kept in a
//! [`RevokedTokens`] store until they would have expired anyway. Unlike the cache, this
//! store is a security control: its failures are reported ([`CacheError`]) so the caller
//! decides whether to fail open or closed.

pub mod memory;
pub mod redis;

pub use crate::service::cache_ports::{get_or_load, Cache, CacheError, RevokedTokens};
use prometheus::{IntCounterVec, Opts, Registry};
use std::sync::Arc;

/// Prometheus counters of the caches, labelled by backend (`cache="memory"|"redis"`).
///
/// Create one per registry and share it between all caches: registering the same metric
/// names twice in one registry fails. Every `get` counts exactly one of hit, miss or
/// error; failed `set`s and `invalidate`s count an error.
pub struct CacheMetrics {
    pub hits: IntCounterVec,
    pub misses: IntCounterVec,
    pub errors: IntCounterVec,
}

impl CacheMetrics {
    pub fn new(registry: &Registry) -> anyhow::Result<Arc<Self>> {
        let hits = IntCounterVec::new(
            Opts::new("cache_hits_total", "Cache lookups that found a value"),
            &["cache"],
        )?;
        let misses = IntCounterVec::new(
            Opts::new("cache_misses_total", "Cache lookups that found nothing"),
            &["cache"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "cache_errors_total",
                "Cache operations that failed in the backend (served as misses)",
            ),
            &["cache"],
        )?;
        registry.register(Box::new(hits.clone()))?;
        registry.register(Box::new(misses.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        // Both backends' series exist from the start (one of them stays at 0).
        for backend in ["memory", "redis"] {
            hits.with_label_values(&[backend]);
            misses.with_label_values(&[backend]);
            errors.with_label_values(&[backend]);
        }
        Ok(Arc::new(Self {
            hits,
            misses,
            errors,
        }))
    }

    pub fn hit(&self, cache: &str) {
        self.hits.with_label_values(&[cache]).inc();
    }

    pub fn miss(&self, cache: &str) {
        self.misses.with_label_values(&[cache]).inc();
    }

    pub fn error(&self, cache: &str) {
        self.errors.with_label_values(&[cache]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::memory::MemoryCache;
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Schedule {
        doctor: String,
        slots: Vec<u32>,
    }

    fn cache() -> (MemoryCache, Arc<CacheMetrics>) {
        let metrics = CacheMetrics::new(&Registry::new()).unwrap();
        (
            MemoryCache::new(100, Duration::from_secs(60), metrics.clone()),
            metrics,
        )
    }

    async fn load_counted(
        calls: &AtomicUsize,
        slots: Vec<u32>,
    ) -> Result<Schedule, std::convert::Infallible> {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok(Schedule {
            doctor: "house".into(),
            slots,
        })
    }

    #[tokio::test]
    async fn get_or_load_loads_once_then_serves_from_cache() {
        let (cache, metrics) = cache();
        let calls = AtomicUsize::new(0);
        let first = get_or_load(&cache, "k", || load_counted(&calls, vec![1, 2]))
            .await
            .unwrap();
        let second = get_or_load(&cache, "k", || load_counted(&calls, vec![9]))
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(first, second);
        assert_eq!(second.slots, vec![1, 2]);
        assert_eq!(metrics.misses.with_label_values(&["memory"]).get(), 1);
        assert_eq!(metrics.hits.with_label_values(&["memory"]).get(), 1);
    }

    #[tokio::test]
    async fn get_or_load_reloads_after_invalidate() {
        let (cache, _) = cache();
        let calls = AtomicUsize::new(0);
        get_or_load(&cache, "k", || load_counted(&calls, vec![1]))
            .await
            .unwrap();
        cache.invalidate("k").await;
        let reloaded = get_or_load(&cache, "k", || load_counted(&calls, vec![2]))
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(reloaded.slots, vec![2]);
        // …and the reloaded value is what is cached now.
        let cached = get_or_load(&cache, "k", || load_counted(&calls, vec![3]))
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(cached.slots, vec![2]);
    }

    #[tokio::test]
    async fn get_or_load_replaces_an_undecodable_entry() {
        let (cache, _) = cache();
        cache.set("k", b"not json".to_vec()).await;
        let calls = AtomicUsize::new(0);
        let value = get_or_load(&cache, "k", || load_counted(&calls, vec![7]))
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(value.slots, vec![7]);
        let stored = cache.get("k").await.unwrap();
        assert_eq!(
            serde_json::from_slice::<Schedule>(&stored).unwrap().slots,
            vec![7]
        );
    }

    #[tokio::test]
    async fn get_or_load_returns_loader_errors_and_caches_nothing() {
        let (cache, _) = cache();
        let result: Result<Schedule, &str> =
            get_or_load(&cache, "k", || async { Err("db down") }).await;
        assert_eq!(result.unwrap_err(), "db down");
        assert!(cache.get("k").await.is_none());
    }

    #[test]
    fn metrics_are_registered() {
        let registry = Registry::new();
        let metrics = CacheMetrics::new(&registry).unwrap();
        metrics.hit("redis");
        metrics.miss("redis");
        metrics.error("redis");
        let names: Vec<String> = registry
            .gather()
            .iter()
            .map(|family| family.name().to_owned())
            .collect();
        for name in [
            "cache_hits_total",
            "cache_misses_total",
            "cache_errors_total",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} missing: {names:?}");
        }
        // A second set in the same registry would collide; share one instead.
        assert!(CacheMetrics::new(&registry).is_err());
    }
}
