//! The audit log's use cases, shared by every transport: append a batch, query, the
//! latest checkpoint, proofs, and issuing checkpoints.
//!
//! Appends are serialised twice: by a mutex in the process (the in-memory tree must
//! grow in index order) and by the store's append lock (so that replicas, too, get
//! contiguous indices; a replica that finds rows it has not seen takes their leaf
//! hashes first). The tree only grows after the rows are committed, so it never holds
//! a leaf the store does not. Storage and time are ports (`ports`): PostgreSQL and
//! the wall clock in the service, fakes in the unit tests.

use crate::merkle::{Hash, ProofError, Tree};
use crate::metrics::Metrics;
use crate::ports::{
    contiguous_leaves, AppendOutcome, Clock, Cursor, DbError, Filter, LogStore, StoredRecord,
};
use crate::record::Record;
use crate::signing::{Checkpoint, SigningKey};
use ed25519_dalek::VerifyingKey;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

pub use crate::ports::Appended;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Proof(#[from] ProofError),
    #[error("no checkpoint has been issued yet")]
    NoCheckpoint,
    #[error("the database holds {db} records but this process has {memory}; restart it")]
    Diverged { db: u64, memory: u64 },
    #[error("{0}")]
    Corrupt(String),
}

#[derive(Debug, Clone)]
pub struct Inclusion {
    pub leaf: Hash,
    pub path: Vec<Hash>,
    pub root: Hash,
}

#[derive(Debug, Clone)]
pub struct Consistency {
    pub path: Vec<Hash>,
    pub from_root: Hash,
    pub to_root: Hash,
}

pub struct LogConfig {
    pub origin: String,
    pub checkpoint_every: u64,
}

/// The log, once loaded: start-up sets it when loading is done; the transports and
/// the readiness probe read it (and answer "still loading" until then).
pub type Loaded = Arc<OnceLock<Arc<AuditLog>>>;

pub struct AuditLog {
    store: Arc<dyn LogStore>,
    clock: Arc<dyn Clock>,
    key: SigningKey,
    config: LogConfig,
    metrics: Metrics,
    append_lock: tokio::sync::Mutex<()>,
    tree: RwLock<Tree>,
    latest: RwLock<Option<Checkpoint>>,
}

/// Leaf hashes read per round trip at start-up.
const LOAD_CHUNK: u64 = 100_000;

/// Reads every stored leaf hash, checking that the indices are contiguous.
async fn load_leaves(store: &dyn LogStore) -> Result<Vec<Hash>, LogError> {
    let mut out = Vec::new();
    loop {
        let next = u64::try_from(out.len()).unwrap_or(u64::MAX);
        let chunk = store.leaf_hashes(next, LOAD_CHUNK).await?;
        let got = u64::try_from(chunk.len()).unwrap_or(0);
        out.extend(contiguous_leaves(next, chunk).map_err(LogError::Corrupt)?);
        if got < LOAD_CHUNK {
            return Ok(out);
        }
    }
}

impl AuditLog {
    /// Loads the tree from the stored leaf hashes and checks it against the latest
    /// checkpoint (whose signature must verify with `trusted`): a log that does not
    /// match what it signed refuses to serve, rather than sign more.
    pub async fn open(
        store: Arc<dyn LogStore>,
        clock: Arc<dyn Clock>,
        key: SigningKey,
        trusted: Vec<VerifyingKey>,
        config: LogConfig,
        metrics: Metrics,
    ) -> anyhow::Result<Self> {
        let started = std::time::Instant::now();
        let leaves = load_leaves(store.as_ref()).await?;
        let latest = store.latest_checkpoint().await?;
        let tree = Tree::from_leaves(leaves);
        if let Some(cp) = &latest {
            let root = tree.root(cp.tree_size).map_err(|_| {
                anyhow::anyhow!(
                    "the latest checkpoint signs {} records but the database holds {}; run `audit-service verify`",
                    cp.tree_size,
                    tree.size()
                )
            })?;
            if root != cp.root {
                anyhow::bail!(
                    "the stored records do not match the latest checkpoint (tree size {}); run `audit-service verify`",
                    cp.tree_size
                );
            }
            cp.verify(&trusted).map_err(|e| {
                anyhow::anyhow!(
                    "the latest checkpoint (tree size {}, key {}): {e}; if the signing key was rotated, add the old public key to audit.previous_public_keys",
                    cp.tree_size,
                    cp.key_id
                )
            })?;
        }
        tracing::info!(
            tree_size = tree.size(),
            latest_checkpoint = latest.as_ref().map_or(0, |c| c.tree_size),
            key_id = %key.key_id(),
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "audit log loaded"
        );
        metrics
            .tree_size
            .set(i64::try_from(tree.size()).unwrap_or(i64::MAX));
        Ok(Self {
            store,
            clock,
            key,
            config,
            metrics,
            append_lock: tokio::sync::Mutex::new(()),
            tree: RwLock::new(tree),
            latest: RwLock::new(latest),
        })
    }

    pub fn size(&self) -> u64 {
        self.tree
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .size()
    }

    pub fn latest_checkpoint(&self) -> Option<Checkpoint> {
        self.latest
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn latest_size(&self) -> u64 {
        self.latest
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map_or(0, |c| c.tree_size)
    }

    /// Appends `records` (already validated) in one transaction: all or none. A record
    /// whose id is already in the log (or earlier in the batch) is answered with its
    /// index and `duplicate`.
    #[tracing::instrument(skip_all, fields(records = records.len()))]
    pub async fn append(&self, records: Vec<Record>) -> Result<(Vec<Appended>, u64), LogError> {
        let _guard = self.append_lock.lock().await;
        let memory = self.size();
        let AppendOutcome {
            catch_up,
            results,
            leaves,
        } = self.store.append(memory, Arc::new(records)).await?;
        let size = {
            let mut tree = self.tree.write().unwrap_or_else(PoisonError::into_inner);
            for leaf in catch_up.into_iter().chain(leaves.iter().copied()) {
                tree.push(leaf);
            }
            tree.size()
        };
        let new = u64::try_from(leaves.len()).unwrap_or(0);
        self.metrics.appended.inc_by(new);
        self.metrics.duplicates.inc_by(
            u64::try_from(results.len())
                .unwrap_or(0)
                .saturating_sub(new),
        );
        self.metrics
            .tree_size
            .set(i64::try_from(size).unwrap_or(i64::MAX));
        if size
            >= self
                .latest_size()
                .saturating_add(self.config.checkpoint_every)
        {
            // The records are committed whatever happens here; the timer retries.
            if let Err(e) = self.checkpoint_locked().await {
                tracing::error!(error = %e, "issuing a checkpoint failed");
            }
        }
        Ok((results, size))
    }

    /// Issues a checkpoint of the current tree if it grew since the latest one.
    pub async fn checkpoint_if_grown(&self) -> Result<Option<Checkpoint>, LogError> {
        let _guard = self.append_lock.lock().await;
        self.checkpoint_locked().await
    }

    /// With the append lock held.
    async fn checkpoint_locked(&self) -> Result<Option<Checkpoint>, LogError> {
        let (size, root) = {
            let tree = self.tree.read().unwrap_or_else(PoisonError::into_inner);
            (tree.size(), tree.root(tree.size())?)
        };
        if size == 0 || size <= self.latest_size() {
            return Ok(None);
        }
        let cp = Checkpoint::sign(&self.key, &self.config.origin, size, root, self.clock.now());
        let inserted = self.store.insert_checkpoint(cp.clone()).await?;
        let latest = self.store.latest_checkpoint().await?;
        if inserted {
            self.metrics.checkpoints.inc();
            tracing::info!(tree_size = size, root = %hex::encode(root), "checkpoint issued");
        }
        *self.latest.write().unwrap_or_else(PoisonError::into_inner) = latest.clone();
        self.sample();
        Ok(Some(latest.unwrap_or(cp)))
    }

    /// Updates the gauges sampled at scrape time.
    pub fn sample(&self) {
        let age = self.latest_checkpoint().map_or(-1, |cp| {
            (self.clock.now() - cp.issued_at).num_seconds().max(0)
        });
        self.metrics.checkpoint_age.set(age);
        self.metrics
            .tree_size
            .set(i64::try_from(self.size()).unwrap_or(i64::MAX));
    }

    pub fn checkpoint(&self) -> Result<Checkpoint, LogError> {
        self.latest_checkpoint().ok_or(LogError::NoCheckpoint)
    }

    pub fn inclusion(&self, index: u64, tree_size: u64) -> Result<Inclusion, LogError> {
        let tree = self.tree.read().unwrap_or_else(PoisonError::into_inner);
        let path = tree.inclusion_proof(index, tree_size)?;
        Ok(Inclusion {
            leaf: tree.leaf(index).unwrap_or_default(),
            path,
            root: tree.root(tree_size)?,
        })
    }

    pub fn consistency(&self, from: u64, to: u64) -> Result<Consistency, LogError> {
        let tree = self.tree.read().unwrap_or_else(PoisonError::into_inner);
        let path = tree.consistency_proof(from, to)?;
        Ok(Consistency {
            path,
            from_root: tree.root(from)?,
            to_root: tree.root(to)?,
        })
    }

    /// One page of `Query`: at most `limit` records and whether more follow.
    pub async fn query(
        &self,
        filter: Filter,
        cursor: Option<Cursor>,
        limit: u32,
    ) -> Result<(Vec<StoredRecord>, bool), LogError> {
        let mut rows = self
            .store
            .query(filter, cursor, limit.saturating_add(1))
            .await?;
        let more = rows.len() > usize::try_from(limit).unwrap_or(usize::MAX);
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok((rows, more))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::{key, record, FakeClock, FakeStore};
    use crate::merkle::{verify_consistency, verify_inclusion};
    use crate::record::Actor;

    fn system() -> Actor {
        Actor::System("reminders".into())
    }

    fn records(n: i64) -> Vec<Record> {
        (0..n)
            .map(|i| record("reminder.sent", ("appointment", "a1"), system(), i))
            .collect()
    }

    /// A log on `store`, signing with `key(1)` and checkpointing every `every` records.
    async fn open(
        store: &Arc<FakeStore>,
        clock: &Arc<FakeClock>,
        every: u64,
    ) -> anyhow::Result<(AuditLog, Metrics)> {
        let metrics = Metrics::new()?;
        let log = AuditLog::open(
            store.clone(),
            clock.clone(),
            key(1),
            vec![key(1).verifying_key()],
            LogConfig {
                origin: "medbook.test/audit".into(),
                checkpoint_every: every,
            },
            metrics.clone(),
        )
        .await?;
        Ok((log, metrics))
    }

    fn rig() -> (Arc<FakeStore>, Arc<FakeClock>) {
        (Arc::default(), Arc::default())
    }

    #[tokio::test]
    async fn appends_take_the_next_indices_and_answer_duplicates_with_the_original() {
        let (store, clock) = rig();
        let (log, metrics) = open(&store, &clock, 1000).await.unwrap();
        let r = records(3);
        let (results, size) = log
            .append(vec![r[0].clone(), r[1].clone(), r[0].clone()])
            .await
            .unwrap();
        assert_eq!(size, 2);
        assert_eq!(
            results
                .iter()
                .map(|a| (a.id, a.index, a.duplicate))
                .collect::<Vec<_>>(),
            [(r[0].id, 0, false), (r[1].id, 1, false), (r[0].id, 0, true)]
        );
        let (results, size) = log.append(vec![r[1].clone(), r[2].clone()]).await.unwrap();
        assert_eq!(size, 3);
        assert_eq!(
            results
                .iter()
                .map(|a| (a.index, a.duplicate))
                .collect::<Vec<_>>(),
            [(1, true), (2, false)]
        );
        assert_eq!(log.size(), 3);
        assert_eq!(store.count(), 3);
        assert_eq!(metrics.appended.get(), 3);
        assert_eq!(metrics.duplicates.get(), 2);
        assert_eq!(metrics.tree_size.get(), 3);
        // The tree holds exactly the stored leaves.
        let leaves: Vec<Hash> = r.iter().zip(0..).map(|(r, i)| r.leaf_hash(i)).collect();
        assert_eq!(
            log.inclusion(0, 3).unwrap().root,
            Tree::from_leaves(leaves).root(3).unwrap()
        );
    }

    #[tokio::test]
    async fn a_replica_takes_the_records_another_appended_first() {
        let (store, clock) = rig();
        let (one, _) = open(&store, &clock, 1000).await.unwrap();
        let (two, _) = open(&store, &clock, 1000).await.unwrap();
        one.append(records(2)).await.unwrap();
        let (results, size) = two.append(records(1)).await.unwrap();
        assert_eq!(results.first().map(|a| a.index), Some(2));
        assert_eq!(size, 3);
        assert_eq!(two.size(), 3);
        assert_eq!(one.size(), 2, "until it appends again");
        one.append(records(1)).await.unwrap();
        assert_eq!(
            one.consistency(3, 4).unwrap().from_root,
            two.inclusion(0, 3).unwrap().root,
            "both trees hold the same leaves"
        );
    }

    #[tokio::test]
    async fn a_store_holding_fewer_records_than_loaded_is_refused() {
        let (store, clock) = rig();
        let (log, metrics) = open(&store, &clock, 1000).await.unwrap();
        log.append(records(3)).await.unwrap();
        // A database restored from an older backup.
        store.tamper(|rows| rows.truncate(1));
        let err = log.append(records(1)).await.unwrap_err();
        assert!(
            matches!(&err, LogError::Db(DbError::Internal(_)))
                && err
                    .to_string()
                    .contains("holds 1 records, fewer than the 3 loaded"),
            "{err}"
        );
        assert_eq!((log.size(), store.count()), (3, 1));
        assert_eq!(metrics.appended.get(), 3);
    }

    #[tokio::test]
    async fn a_failed_append_leaves_the_tree_as_it_was() {
        let (store, clock) = rig();
        let (log, metrics) = open(&store, &clock, 1000).await.unwrap();
        log.append(records(2)).await.unwrap();
        store.set_unavailable(true);
        let err = log.append(records(1)).await.unwrap_err();
        assert!(
            matches!(err, LogError::Db(DbError::Unavailable(_))),
            "{err}"
        );
        assert_eq!(log.size(), 2);
        assert_eq!(metrics.appended.get(), 2);
        store.set_unavailable(false);
        let (results, size) = log.append(records(1)).await.unwrap();
        assert_eq!((results.first().map(|a| a.index), size), (Some(2), 3));
    }

    #[tokio::test]
    async fn a_checkpoint_is_issued_every_n_records_at_the_clocks_time() {
        let (store, clock) = rig();
        let (log, metrics) = open(&store, &clock, 3).await.unwrap();
        assert!(matches!(log.checkpoint(), Err(LogError::NoCheckpoint)));
        log.append(records(2)).await.unwrap();
        assert!(matches!(log.checkpoint(), Err(LogError::NoCheckpoint)));
        log.append(records(1)).await.unwrap();
        let cp = log.checkpoint().unwrap();
        assert_eq!(cp.tree_size, 3);
        assert_eq!(cp.issued_at, clock.now());
        assert_eq!(cp.origin, "medbook.test/audit");
        assert_eq!(cp.root, log.inclusion(0, 3).unwrap().root);
        assert_eq!(
            cp.verify(&[key(1).verifying_key()]).unwrap(),
            key(1).key_id()
        );
        assert_eq!(store.latest_checkpoint().await.unwrap(), Some(cp.clone()));
        assert_eq!(metrics.checkpoints.get(), 1);

        // The timer's: nothing while the tree did not grow, then one of the new size.
        assert_eq!(log.checkpoint_if_grown().await.unwrap(), None);
        log.append(records(1)).await.unwrap();
        clock.advance(chrono::Duration::seconds(30));
        let later = log.checkpoint_if_grown().await.unwrap().unwrap();
        assert_eq!((later.tree_size, later.issued_at), (4, clock.now()));
        assert_eq!(log.checkpoint().unwrap(), later);
        assert_eq!(metrics.checkpoints.get(), 2);
    }

    #[tokio::test]
    async fn a_checkpoint_another_replica_stored_first_is_adopted() {
        let (store, clock) = rig();
        let (one, _) = open(&store, &clock, 1000).await.unwrap();
        one.append(records(2)).await.unwrap();
        let (two, two_metrics) = open(&store, &clock, 1000).await.unwrap();
        let first = one.checkpoint_if_grown().await.unwrap().unwrap();
        clock.advance(chrono::Duration::seconds(5));
        let adopted = two.checkpoint_if_grown().await.unwrap().unwrap();
        assert_eq!(adopted, first, "the stored one wins");
        assert_eq!(two.checkpoint().unwrap(), first);
        assert_eq!(two_metrics.checkpoints.get(), 0);
    }

    #[tokio::test]
    async fn the_checkpoint_age_follows_the_clock() {
        let (store, clock) = rig();
        let (log, metrics) = open(&store, &clock, 1000).await.unwrap();
        log.sample();
        assert_eq!(metrics.checkpoint_age.get(), -1, "no checkpoint yet");
        log.append(records(1)).await.unwrap();
        log.checkpoint_if_grown().await.unwrap();
        assert_eq!(metrics.checkpoint_age.get(), 0);
        clock.advance(chrono::Duration::seconds(90));
        log.sample();
        assert_eq!(metrics.checkpoint_age.get(), 90);
        // A clock set back does not make it negative.
        clock.advance(chrono::Duration::seconds(-3600));
        log.sample();
        assert_eq!(metrics.checkpoint_age.get(), 0);
    }

    #[tokio::test]
    async fn proofs_lead_to_the_trees_roots() {
        let (store, clock) = rig();
        let (log, _) = open(&store, &clock, 1000).await.unwrap();
        let r = records(7);
        log.append(r.clone()).await.unwrap();
        let p = log.inclusion(5, 7).unwrap();
        assert_eq!(p.leaf, r[5].leaf_hash(5));
        verify_inclusion(5, 7, &p.leaf, &p.path, &p.root).unwrap();
        let c = log.consistency(3, 7).unwrap();
        assert_eq!(c.to_root, p.root);
        verify_consistency(3, 7, &c.from_root, &c.to_root, &c.path).unwrap();
        assert!(matches!(
            log.inclusion(0, 8),
            Err(LogError::Proof(ProofError::BeyondTree {
                requested: 8,
                available: 7
            }))
        ));
        assert!(matches!(
            log.inclusion(7, 7),
            Err(LogError::Proof(ProofError::IndexOutOfRange { .. }))
        ));
    }

    #[tokio::test]
    async fn queries_page_newest_first() {
        let (store, clock) = rig();
        let (log, _) = open(&store, &clock, 1000).await.unwrap();
        log.append(records(5)).await.unwrap();
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let (rows, more) = log.query(Filter::default(), cursor, 2).await.unwrap();
            assert!(rows.len() <= 2);
            seen.extend(rows.iter().map(|r| r.index));
            cursor = rows.last().map(|r| Cursor {
                occurred_at: r.occurred_at,
                index: r.index,
            });
            if !more {
                break;
            }
        }
        assert_eq!(seen, [4, 3, 2, 1, 0]);
        // A page that ends exactly at the last record says so.
        let (rows, more) = log.query(Filter::default(), None, 5).await.unwrap();
        assert_eq!((rows.len(), more), (5, false));
    }

    #[tokio::test]
    async fn reopening_loads_the_same_tree_and_checkpoint() {
        let (store, clock) = rig();
        let (log, _) = open(&store, &clock, 4).await.unwrap();
        log.append(records(4)).await.unwrap();
        log.append(records(2)).await.unwrap();
        let root = log.inclusion(0, 6).unwrap().root;
        let (again, metrics) = open(&store, &clock, 4).await.unwrap();
        assert_eq!(again.size(), 6);
        assert_eq!(again.inclusion(0, 6).unwrap().root, root);
        assert_eq!(again.checkpoint().unwrap(), log.checkpoint().unwrap());
        assert_eq!(again.checkpoint().unwrap().tree_size, 4);
        assert_eq!(metrics.tree_size.get(), 6);
    }

    #[tokio::test]
    async fn opening_refuses_a_log_that_does_not_match_its_checkpoint() {
        let (store, clock) = rig();
        let (log, _) = open(&store, &clock, 1000).await.unwrap();
        log.append(records(3)).await.unwrap();
        // Signed by the log's key, over another root.
        let forged = Checkpoint::sign(&key(1), "medbook.test/audit", 3, [9; 32], clock.now());
        store.insert_checkpoint(forged).await.unwrap();
        let err = open(&store, &clock, 1000).await.err().unwrap().to_string();
        assert!(
            err.contains("do not match the latest checkpoint (tree size 3)"),
            "{err}"
        );

        // A checkpoint of more records than are stored.
        let (store, clock) = rig();
        let (log, _) = open(&store, &clock, 1000).await.unwrap();
        log.append(records(3)).await.unwrap();
        let beyond = Checkpoint::sign(&key(1), "medbook.test/audit", 5, [9; 32], clock.now());
        store.insert_checkpoint(beyond).await.unwrap();
        let err = open(&store, &clock, 1000).await.err().unwrap().to_string();
        assert!(
            err.contains("signs 5 records but the database holds 3"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn opening_refuses_a_checkpoint_of_an_untrusted_key() {
        let (store, clock) = rig();
        let (log, _) = open(&store, &clock, 1000).await.unwrap();
        log.append(records(2)).await.unwrap();
        let root = log.inclusion(0, 2).unwrap().root;
        let other = Checkpoint::sign(&key(2), "medbook.test/audit", 2, root, clock.now());
        store.insert_checkpoint(other).await.unwrap();
        let err = open(&store, &clock, 1000).await.err().unwrap().to_string();
        assert!(err.contains("audit.previous_public_keys"), "{err}");
    }

    #[tokio::test]
    async fn opening_refuses_a_stored_log_with_a_hole_or_a_bad_leaf() {
        let (store, clock) = rig();
        let (log, _) = open(&store, &clock, 1000).await.unwrap();
        log.append(records(3)).await.unwrap();
        store.tamper(|rows| {
            rows.remove(1);
        });
        let err = open(&store, &clock, 1000).await.err().unwrap().to_string();
        assert!(err.contains("no record at index 1"), "{err}");

        let (store, clock) = rig();
        let (behind, _) = open(&store, &clock, 1000).await.unwrap();
        let (log, _) = open(&store, &clock, 1000).await.unwrap();
        log.append(records(3)).await.unwrap();
        store.tamper(|rows| rows[2].leaf_hash.push(0));
        let err = open(&store, &clock, 1000).await.err().unwrap().to_string();
        assert!(
            err.contains("leaf hash at index 2 is not 32 bytes"),
            "{err}"
        );
        // A replica that would take that leaf in from another fails too, and stores
        // nothing.
        let err = behind.append(records(1)).await.unwrap_err().to_string();
        assert!(
            err.contains("leaf hash at index 2 is not 32 bytes"),
            "{err}"
        );
        assert_eq!((behind.size(), store.count()), (0, 3));
    }
}
