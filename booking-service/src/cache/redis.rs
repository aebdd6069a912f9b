//! Redis implementations of [`Cache`] and [`RevokedTokens`].
//!
//! Why this module exists: with several replicas, cached values must be invalidated
//! everywhere at once and a logged-out token must be rejected by every replica, so both
//! live in one shared Redis.
//!
//! Redis is treated as optional infrastructure. Nothing connects at start-up: the
//! connection is opened on first use, dropped when it breaks, and reopened at most once
//! per [`RECONNECT_INTERVAL`], so while Redis is down a request costs no network round
//! trip at all. Every operation (including waiting for a connection) is bounded by
//! `op_timeout`. Each failure is logged once (`warn`) and counted in
//! `cache_errors_total{cache="redis"}`; the cache then answers with a miss, the revoked
//! token store with [`CacheError::Unavailable`].
//!
//! Every cache key is written with a TTL (`SET … EX`), so that a Redis configured with
//! `maxmemory-policy volatile-lru` can evict any of them.

use super::{Cache, CacheError, CacheMetrics, RevokedTokens};
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, Cmd, FromRedisValue, RedisError};
use async_trait::async_trait;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use uuid::Uuid;

const LABEL: &str = "redis";
const CACHE_PREFIX: &str = "medbook:cache:";
const REVOKED_PREFIX: &str = "medbook:revoked:";

/// The minimum time between two connection attempts.
pub const RECONNECT_INTERVAL: Duration = Duration::from_secs(1);

/// A cache in Redis; keys are prefixed with `medbook:cache:` and live at most `ttl`.
pub struct RedisCache {
    conn: LazyConnection,
    ttl_secs: u64,
    metrics: Arc<CacheMetrics>,
}

impl RedisCache {
    /// Fails only for an invalid URL; whether Redis is reachable does not matter here.
    /// `ttl` is rounded up to whole seconds (at least one).
    pub fn new(
        url: &str,
        ttl: Duration,
        op_timeout: Duration,
        metrics: Arc<CacheMetrics>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            conn: LazyConnection::new(url, op_timeout)?,
            ttl_secs: whole_seconds(ttl),
            metrics,
        })
    }

    fn key(key: &str) -> String {
        format!("{CACHE_PREFIX}{key}")
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let key = Self::key(key);
        let mut cmd = ::redis::cmd("GET");
        cmd.arg(&key);
        match self.conn.run::<Option<Vec<u8>>>("GET", &key, &cmd).await {
            Ok(Some(value)) => {
                self.metrics.hit(LABEL);
                Some(value)
            }
            Ok(None) => {
                self.metrics.miss(LABEL);
                None
            }
            Err(_) => {
                self.metrics.error(LABEL);
                None
            }
        }
    }

    async fn set(&self, key: &str, value: Vec<u8>) {
        let key = Self::key(key);
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(&key).arg(value).arg("EX").arg(self.ttl_secs);
        if self.conn.run::<()>("SET", &key, &cmd).await.is_err() {
            self.metrics.error(LABEL);
        }
    }

    async fn invalidate(&self, key: &str) {
        let key = Self::key(key);
        let mut cmd = ::redis::cmd("DEL");
        cmd.arg(&key);
        if self.conn.run::<()>("DEL", &key, &cmd).await.is_err() {
            self.metrics.error(LABEL);
        }
    }
}

/// Revoked access-token ids in Redis, as keys `medbook:revoked:<uuid>` that expire with
/// the token.
pub struct RedisRevokedTokens {
    conn: LazyConnection,
}

impl RedisRevokedTokens {
    /// Fails only for an invalid URL; whether Redis is reachable does not matter here.
    pub fn new(url: &str, op_timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            conn: LazyConnection::new(url, op_timeout)?,
        })
    }

    fn key(token_id: Uuid) -> String {
        format!("{REVOKED_PREFIX}{token_id}")
    }

    /// `medbook:revoked-user:<uuid>`: the time (Unix milliseconds) before which the
    /// user's tokens are revoked.
    fn user_key(user_id: Uuid) -> String {
        format!("{REVOKED_USER_PREFIX}{user_id}")
    }
}

const REVOKED_USER_PREFIX: &str = "medbook:revoked-user:";

#[async_trait]
impl RevokedTokens for RedisRevokedTokens {
    /// `ttl` is rounded up to whole seconds (at least one): a revocation may outlive the
    /// token slightly, never the other way round.
    async fn revoke(&self, token_id: Uuid, ttl: Duration) -> Result<(), CacheError> {
        let key = Self::key(token_id);
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(&key).arg(1).arg("EX").arg(whole_seconds(ttl));
        self.conn
            .run::<()>("SET", &key, &cmd)
            .await
            .map_err(OpError::into_cache_error)
    }

    async fn revoke_user_before(
        &self,
        user_id: Uuid,
        before: chrono::DateTime<chrono::Utc>,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        let key = Self::user_key(user_id);
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(&key)
            .arg(before.timestamp_millis())
            .arg("EX")
            .arg(whole_seconds(ttl));
        self.conn
            .run::<()>("SET", &key, &cmd)
            .await
            .map_err(OpError::into_cache_error)
    }

    /// One `MGET` of the token's key and its user's cut-off.
    async fn is_revoked(
        &self,
        token_id: Uuid,
        user_id: Uuid,
        issued_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, CacheError> {
        let key = Self::key(token_id);
        let mut cmd = ::redis::cmd("MGET");
        cmd.arg(&key).arg(Self::user_key(user_id));
        let (token, cut): (Option<i64>, Option<i64>) = self
            .conn
            .run("MGET", &key, &cmd)
            .await
            .map_err(OpError::into_cache_error)?;
        Ok(token.is_some() || cut.is_some_and(|before| issued_at.timestamp_millis() < before))
    }
}

/// A TTL in whole seconds for `EX`: rounded up, at least 1 (`EX 0` is an error).
fn whole_seconds(ttl: Duration) -> u64 {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    secs.max(1)
}

/// Why an operation was not carried out. Already logged when returned.
#[derive(Debug)]
enum OpError {
    /// Redis failed (could not connect, timed out, returned an error).
    Failed(String),
    /// Not attempted: the last connection attempt failed less than
    /// [`RECONNECT_INTERVAL`] ago.
    Backoff,
}

impl OpError {
    fn into_cache_error(self) -> CacheError {
        match self {
            OpError::Failed(reason) => CacheError::Unavailable(reason),
            OpError::Backoff => CacheError::Unavailable(
                "not connected; waiting before the next connection attempt".to_owned(),
            ),
        }
    }
}

/// One Redis server, connected on first use and reconnected (at most once per
/// [`RECONNECT_INTERVAL`]) after the connection broke. Shared by both stores above.
struct LazyConnection {
    client: Client,
    op_timeout: Duration,
    state: Mutex<ConnState>,
    /// Held while connecting, so that concurrent callers wait for one attempt instead of
    /// each making their own.
    connecting: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct ConnState {
    /// The open connection and its generation (so a caller whose command failed on an
    /// older connection does not drop a newer one).
    current: Option<(u64, ConnectionManager)>,
    generation: u64,
    last_attempt: Option<Instant>,
}

impl LazyConnection {
    fn new(url: &str, op_timeout: Duration) -> anyhow::Result<Self> {
        let client = Client::open(url)
            .map_err(|e| anyhow::anyhow!("invalid Redis URL {}: {e}", redact(url)))?;
        Ok(Self {
            client,
            op_timeout,
            state: Mutex::new(ConnState::default()),
            connecting: tokio::sync::Mutex::new(()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ConnState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn current(&self) -> Option<(u64, ConnectionManager)> {
        self.state().current.clone()
    }

    /// Runs `cmd` within `op_timeout`, connecting first if needed. `op` and `key` are
    /// for the log line. Failures are logged here, once.
    async fn run<T: FromRedisValue>(&self, op: &str, key: &str, cmd: &Cmd) -> Result<T, OpError> {
        let deadline = tokio::time::Instant::now() + self.op_timeout;
        let (generation, mut conn) = match tokio::time::timeout_at(deadline, self.connect()).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(OpError::Backoff)) => {
                tracing::debug!(op, key, "redis not connected, operation skipped");
                return Err(OpError::Backoff);
            }
            Ok(Err(OpError::Failed(reason))) => {
                tracing::warn!(op, key, error = %reason, "redis connection failed");
                return Err(OpError::Failed(reason));
            }
            Err(_) => {
                let reason = format!("no connection within {:?}", self.op_timeout);
                tracing::warn!(op, key, error = %reason, "redis connection failed");
                return Err(OpError::Failed(reason));
            }
        };
        let reason = match tokio::time::timeout_at(deadline, cmd.query_async::<T>(&mut conn)).await
        {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => {
                if breaks_connection(&e) {
                    self.discard(generation);
                }
                e.to_string()
            }
            Err(_) => {
                // The connection may be stuck; start afresh (within the rate limit).
                self.discard(generation);
                format!("timed out after {:?}", self.op_timeout)
            }
        };
        tracing::warn!(op, key, error = %reason, "redis operation failed");
        Err(OpError::Failed(reason))
    }

    /// The open connection, or a new one if the last attempt is long enough ago.
    async fn connect(&self) -> Result<(u64, ConnectionManager), OpError> {
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        let _connecting = self.connecting.lock().await;
        {
            let mut state = self.state();
            if let Some(conn) = state.current.clone() {
                return Ok(conn); // connected while we waited
            }
            let now = Instant::now();
            if state
                .last_attempt
                .is_some_and(|last| now.duration_since(last) < RECONNECT_INTERVAL)
            {
                return Err(OpError::Backoff);
            }
            state.last_attempt = Some(now);
        }
        // No retries inside the manager: the rate limit above is the retry policy.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(self.op_timeout)
            .set_response_timeout(self.op_timeout);
        let manager = ConnectionManager::new_with_config(self.client.clone(), config)
            .await
            .map_err(|e| OpError::Failed(e.to_string()))?;
        let mut state = self.state();
        state.generation += 1;
        let conn = (state.generation, manager);
        state.current = Some(conn.clone());
        Ok(conn)
    }

    /// Forgets the connection of `generation` if it is still the current one.
    fn discard(&self, generation: u64) {
        let mut state = self.state();
        if state
            .current
            .as_ref()
            .is_some_and(|(current, _)| *current == generation)
        {
            state.current = None;
        }
    }
}

/// Whether the error means the connection is unusable, rather than Redis refusing one
/// command (wrong type, out of memory, …).
fn breaks_connection(e: &RedisError) -> bool {
    e.is_io_error() || e.is_unrecoverable_error()
}

/// The URL without its password, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::get_or_load;
    use super::*;
    use prometheus::Registry;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const UNREACHABLE: &str = "redis://127.0.0.1:1";

    fn redis_url() -> String {
        std::env::var("MEDBOOK_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
    }

    /// A plain connection to the test Redis, to inspect what the stores wrote. Panics
    /// (failing the test, never skipping it) when Redis is not there.
    async fn raw() -> ::redis::aio::MultiplexedConnection {
        let url = redis_url();
        let client = Client::open(url.as_str())
            .unwrap_or_else(|e| panic!("invalid MEDBOOK_TEST_REDIS_URL {url}: {e}"));
        match tokio::time::timeout(
            Duration::from_secs(5),
            client.get_multiplexed_async_connection(),
        )
        .await
        {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => panic!(
                "these tests need a running Redis at {url} (set MEDBOOK_TEST_REDIS_URL): {e}"
            ),
            Err(_) => panic!(
                "these tests need a running Redis at {url} (set MEDBOOK_TEST_REDIS_URL): \
                 connecting timed out"
            ),
        }
    }

    async fn pttl(conn: &mut ::redis::aio::MultiplexedConnection, key: &str) -> i64 {
        ::redis::cmd("PTTL")
            .arg(key)
            .query_async(conn)
            .await
            .unwrap()
    }

    fn metrics() -> Arc<CacheMetrics> {
        CacheMetrics::new(&Registry::new()).unwrap()
    }

    fn cache(url: &str, metrics: Arc<CacheMetrics>) -> RedisCache {
        RedisCache::new(
            url,
            Duration::from_secs(60),
            Duration::from_millis(500),
            metrics,
        )
        .unwrap()
    }

    fn unique_key() -> String {
        format!("test:{}", Uuid::new_v4())
    }

    #[tokio::test]
    async fn round_trip_and_invalidate() {
        let mut raw = raw().await;
        let metrics = metrics();
        let cache = cache(&redis_url(), metrics.clone());
        let key = unique_key();

        assert_eq!(cache.get(&key).await, None);
        cache.set(&key, b"\x00binary\xff".to_vec()).await;
        assert_eq!(
            cache.get(&key).await.as_deref(),
            Some(&b"\x00binary\xff"[..])
        );
        let stored: Option<Vec<u8>> = ::redis::cmd("GET")
            .arg(format!("medbook:cache:{key}"))
            .query_async(&mut raw)
            .await
            .unwrap();
        assert_eq!(stored.as_deref(), Some(&b"\x00binary\xff"[..]));

        cache.invalidate(&key).await;
        assert_eq!(cache.get(&key).await, None);

        assert_eq!(metrics.hits.with_label_values(&[LABEL]).get(), 1);
        assert_eq!(metrics.misses.with_label_values(&[LABEL]).get(), 2);
        assert_eq!(metrics.errors.with_label_values(&[LABEL]).get(), 0);
    }

    #[tokio::test]
    async fn every_write_sets_a_ttl() {
        let mut raw = raw().await;
        let cache = RedisCache::new(
            &redis_url(),
            Duration::from_secs(30),
            Duration::from_millis(500),
            metrics(),
        )
        .unwrap();
        let key = unique_key();
        let full = format!("medbook:cache:{key}");

        cache.set(&key, vec![1]).await;
        let ttl = pttl(&mut raw, &full).await;
        assert!(ttl > 0 && ttl <= 30_000, "PTTL {ttl}");

        // Overwriting must set the TTL again, not leave a key without one.
        let _: () = ::redis::cmd("PERSIST")
            .arg(&full)
            .query_async(&mut raw)
            .await
            .unwrap();
        cache.set(&key, vec![2]).await;
        let ttl = pttl(&mut raw, &full).await;
        assert!(ttl > 0 && ttl <= 30_000, "PTTL {ttl}");

        cache.invalidate(&key).await;
    }

    #[test]
    fn sub_second_ttls_are_rounded_up() {
        assert_eq!(whole_seconds(Duration::ZERO), 1);
        assert_eq!(whole_seconds(Duration::from_millis(200)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1_001)), 2);
        assert_eq!(whole_seconds(Duration::from_secs(900)), 900);
    }

    #[tokio::test]
    async fn get_or_load_through_redis() {
        let _ = raw().await;
        let cache = cache(&redis_url(), metrics());
        let key = unique_key();
        let calls = AtomicUsize::new(0);
        let load = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::convert::Infallible>(vec!["09:00".to_owned(), "09:30".to_owned()])
        };
        let first = get_or_load(&cache, &key, load).await.unwrap();
        let second = get_or_load(&cache, &key, load).await.unwrap();
        assert_eq!(first, second);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        cache.invalidate(&key).await;
        get_or_load(&cache, &key, load).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        cache.invalidate(&key).await;
    }

    #[tokio::test]
    async fn unreachable_redis_gives_misses_quickly_and_counts_errors() {
        let metrics = metrics();
        let cache = RedisCache::new(
            UNREACHABLE,
            Duration::from_secs(60),
            Duration::from_millis(200),
            metrics.clone(),
        )
        .unwrap();
        for _ in 0..3 {
            let started = Instant::now();
            cache.set("k", vec![1]).await;
            assert!(
                started.elapsed() < Duration::from_millis(500),
                "set took {:?}",
                started.elapsed()
            );
            let started = Instant::now();
            assert_eq!(cache.get("k").await, None);
            assert!(
                started.elapsed() < Duration::from_millis(500),
                "get took {:?}",
                started.elapsed()
            );
            let started = Instant::now();
            cache.invalidate("k").await;
            assert!(
                started.elapsed() < Duration::from_millis(500),
                "invalidate took {:?}",
                started.elapsed()
            );
        }
        assert_eq!(metrics.errors.with_label_values(&[LABEL]).get(), 9);
        assert_eq!(metrics.hits.with_label_values(&[LABEL]).get(), 0);
        assert_eq!(metrics.misses.with_label_values(&[LABEL]).get(), 0);

        let revoked = RedisRevokedTokens::new(UNREACHABLE, Duration::from_millis(200)).unwrap();
        assert!(matches!(
            revoked
                .is_revoked(Uuid::new_v4(), Uuid::nil(), chrono::Utc::now())
                .await,
            Err(CacheError::Unavailable(_))
        ));
        assert!(matches!(
            revoked
                .revoke(Uuid::new_v4(), Duration::from_secs(60))
                .await,
            Err(CacheError::Unavailable(_))
        ));
    }

    #[test]
    fn only_an_invalid_url_fails_construction() {
        assert!(RedisCache::new(
            "not a url",
            Duration::from_secs(1),
            Duration::from_secs(1),
            metrics()
        )
        .is_err());
        assert!(RedisRevokedTokens::new("ftp://x", Duration::from_secs(1)).is_err());
        // No runtime needed, nothing connects: construction is lazy.
        assert!(RedisRevokedTokens::new(UNREACHABLE, Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("redis://:secret@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
    }

    /// A server that accepts connections and never answers: operations must still end
    /// after `op_timeout`, and while it stays silent the next attempt waits out the
    /// reconnect interval instead of costing every request a timeout.
    #[tokio::test]
    async fn silent_server_is_bounded_by_the_timeout_and_rate_limited() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(socket); // keep it open, say nothing
            }
        });

        let metrics = metrics();
        let cache = RedisCache::new(
            &format!("redis://127.0.0.1:{port}"),
            Duration::from_secs(60),
            Duration::from_millis(200),
            metrics.clone(),
        )
        .unwrap();

        let started = Instant::now();
        assert_eq!(cache.get("k").await, None);
        let first = started.elapsed();
        assert!(
            first >= Duration::from_millis(150) && first < Duration::from_millis(600),
            "first get took {first:?}"
        );

        // Within the reconnect interval: no new connection, no waiting.
        let started = Instant::now();
        assert_eq!(cache.get("k").await, None);
        cache.set("k", vec![1]).await;
        assert!(
            started.elapsed() < Duration::from_millis(50),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 1);

        // After it, one new attempt.
        tokio::time::sleep(RECONNECT_INTERVAL).await;
        let started = Instant::now();
        assert_eq!(cache.get("k").await, None);
        assert!(
            started.elapsed() < Duration::from_millis(600),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(metrics.errors.with_label_values(&[LABEL]).get(), 4);
        server.abort();
    }

    #[tokio::test]
    async fn revoke_then_is_revoked() {
        let mut raw = raw().await;
        let store = RedisRevokedTokens::new(&redis_url(), Duration::from_millis(500)).unwrap();
        let id = Uuid::new_v4();
        assert!(!store
            .is_revoked(id, Uuid::nil(), chrono::Utc::now())
            .await
            .unwrap());
        store.revoke(id, Duration::from_secs(60)).await.unwrap();
        assert!(store
            .is_revoked(id, Uuid::nil(), chrono::Utc::now())
            .await
            .unwrap());
        assert!(!store
            .is_revoked(Uuid::new_v4(), Uuid::nil(), chrono::Utc::now())
            .await
            .unwrap());

        let ttl = pttl(&mut raw, &format!("medbook:revoked:{id}")).await;
        assert!(ttl > 0 && ttl <= 60_000, "PTTL {ttl}");
        let _: () = ::redis::cmd("DEL")
            .arg(format!("medbook:revoked:{id}"))
            .query_async(&mut raw)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn revocations_expire() {
        let mut raw = raw().await;
        let store = RedisRevokedTokens::new(&redis_url(), Duration::from_millis(500)).unwrap();
        let id = Uuid::new_v4();
        // Sub-second TTLs become one second, never zero (which Redis would reject).
        store.revoke(id, Duration::from_millis(100)).await.unwrap();
        let ttl = pttl(&mut raw, &format!("medbook:revoked:{id}")).await;
        assert!(ttl > 0 && ttl <= 1_000, "PTTL {ttl}");
        assert!(store
            .is_revoked(id, Uuid::nil(), chrono::Utc::now())
            .await
            .unwrap());
        medbook_test_support::eventually(
            "the revocation to expire",
            Duration::from_secs(10),
            || async {
                (!store
                    .is_revoked(id, Uuid::nil(), chrono::Utc::now())
                    .await
                    .unwrap())
                .then_some(())
            },
        )
        .await;
    }

    #[tokio::test]
    async fn a_users_cut_off_revokes_only_tokens_issued_before_it() {
        let mut raw = raw().await;
        let store = RedisRevokedTokens::new(&redis_url(), Duration::from_millis(500)).unwrap();
        let user = Uuid::new_v4();
        let now = chrono::Utc::now();
        let earlier = now - chrono::Duration::minutes(5);
        assert!(!store
            .is_revoked(Uuid::new_v4(), user, earlier)
            .await
            .unwrap());
        store
            .revoke_user_before(user, now, Duration::from_secs(900))
            .await
            .unwrap();
        assert!(store
            .is_revoked(Uuid::new_v4(), user, earlier)
            .await
            .unwrap());
        assert!(
            !store.is_revoked(Uuid::new_v4(), user, now).await.unwrap(),
            "a token issued at the cut-off (a new login) stays valid"
        );
        assert!(
            !store
                .is_revoked(Uuid::new_v4(), Uuid::new_v4(), earlier)
                .await
                .unwrap(),
            "other users are untouched"
        );
        let key = format!("medbook:revoked-user:{user}");
        let ttl = pttl(&mut raw, &key).await;
        assert!(ttl > 0 && ttl <= 900_000, "PTTL {ttl}");
        let _: () = ::redis::cmd("DEL")
            .arg(key)
            .query_async(&mut raw)
            .await
            .unwrap();
    }
}
