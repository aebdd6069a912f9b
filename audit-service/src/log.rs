//! The audit log's use cases, shared by every transport: append a batch, query, the
//! latest checkpoint, proofs, and issuing checkpoints.
//!
//! Appends are serialised twice: by a mutex in the process (the in-memory tree must
//! grow in index order) and by a transaction-scoped advisory lock in the database (so
//! that replicas, too, get contiguous indices; a replica that finds rows it has not
//! seen loads their leaf hashes first). The tree only grows after the rows are
//! committed, so it never holds a leaf the database does not.

use crate::merkle::{Hash, ProofError, Tree};
use crate::metrics::Metrics;
use crate::record::Record;
use crate::repository::{self, Cursor, Db, DbError, Filter, NewRow, RecordRow};
use crate::signing::{Checkpoint, SigningKey};
use ed25519_dalek::VerifyingKey;
use std::sync::{Arc, PoisonError, RwLock};
use uuid::Uuid;

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

fn dberr(e: diesel::result::Error) -> DbError {
    medbook_service_kit::db::map_err(e)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub id: Uuid,
    pub index: u64,
    pub duplicate: bool,
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

pub struct AuditLog {
    db: Db,
    key: SigningKey,
    config: LogConfig,
    metrics: Metrics,
    append_lock: tokio::sync::Mutex<()>,
    tree: RwLock<Tree>,
    latest: RwLock<Option<Checkpoint>>,
}

/// Leaf hashes read per round trip at start-up.
const LOAD_CHUNK: u64 = 100_000;

fn to_hash(bytes: &[u8]) -> Option<Hash> {
    <[u8; 32]>::try_from(bytes).ok()
}

/// Reads stored leaf hashes from `from` up to `to` (exclusive), checking that the
/// indices are contiguous.
fn load_leaves(
    conn: &mut diesel::PgConnection,
    from: u64,
    to: Option<u64>,
) -> Result<Vec<Hash>, LogError> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let chunk = repository::leaf_hashes(conn, next, LOAD_CHUNK).map_err(dberr)?;
        let got = chunk.len();
        for (idx, leaf) in chunk {
            if to.is_some_and(|t| idx >= t) {
                return Ok(out);
            }
            if idx != next {
                return Err(LogError::Corrupt(format!(
                    "the stored log has no record at index {next}; run `audit-service verify`"
                )));
            }
            out.push(to_hash(&leaf).ok_or_else(|| {
                LogError::Corrupt(format!("the leaf hash at index {idx} is not 32 bytes"))
            })?);
            next += 1;
        }
        if u64::try_from(got).unwrap_or(0) < LOAD_CHUNK {
            return Ok(out);
        }
    }
}

impl AuditLog {
    /// Loads the tree from the stored leaf hashes and checks it against the latest
    /// checkpoint (whose signature must verify with `trusted`): a log that does not
    /// match what it signed refuses to serve, rather than sign more.
    pub async fn open(
        db: Db,
        key: SigningKey,
        trusted: Vec<VerifyingKey>,
        config: LogConfig,
        metrics: Metrics,
    ) -> anyhow::Result<Self> {
        let started = std::time::Instant::now();
        let (leaves, latest) = db
            .run(|conn| -> Result<_, LogError> {
                let leaves = load_leaves(conn, 0, None)?;
                let latest = repository::latest_checkpoint(conn).map_err(dberr)?;
                Ok((leaves, latest))
            })
            .await?;
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
            db,
            key,
            config,
            metrics,
            append_lock: tokio::sync::Mutex::new(()),
            tree: RwLock::new(tree),
            latest: RwLock::new(latest),
        })
    }

    pub fn db(&self) -> &Db {
        &self.db
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
        let records = Arc::new(records);
        let batch = records.clone();
        let (catch_up, results, leaves) = self
            .db
            .transaction(move |conn| {
                repository::lock_appends(conn).map_err(dberr)?;
                let next = repository::next_index(conn).map_err(dberr)?;
                if next < memory {
                    return Err(DbError::Internal(anyhow::anyhow!(
                        "the database holds {next} records, fewer than the {memory} loaded"
                    )));
                }
                // Rows another replica appended since: their leaves first.
                let catch_up = if next > memory {
                    load_leaves(conn, memory, Some(next))
                        .map_err(|e| DbError::Internal(anyhow::anyhow!("{e}")))?
                } else {
                    Vec::new()
                };
                let ids: Vec<Uuid> = batch.iter().map(|r| r.id).collect();
                let mut known = repository::existing(conn, &ids).map_err(dberr)?;
                let mut results = Vec::with_capacity(batch.len());
                let mut rows = Vec::new();
                let mut index = next;
                for record in batch.iter() {
                    if let Some(&original) = known.get(&record.id) {
                        results.push(Appended {
                            id: record.id,
                            index: original,
                            duplicate: true,
                        });
                        continue;
                    }
                    let leaf_hash = record.leaf_hash(index);
                    rows.push(NewRow {
                        index,
                        record,
                        leaf_hash,
                    });
                    known.insert(record.id, index);
                    results.push(Appended {
                        id: record.id,
                        index,
                        duplicate: false,
                    });
                    index += 1;
                }
                repository::insert_records(conn, &rows).map_err(dberr)?;
                let leaves: Vec<Hash> = rows.iter().map(|r| r.leaf_hash).collect();
                Ok((catch_up, results, leaves))
            })
            .await?;
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
        let cp = Checkpoint::sign(
            &self.key,
            &self.config.origin,
            size,
            root,
            chrono::Utc::now(),
        );
        let stored = cp.clone();
        let (inserted, latest) = self
            .db
            .run(move |conn| -> Result<_, DbError> {
                let inserted = repository::insert_checkpoint(conn, &stored).map_err(dberr)?;
                let latest = repository::latest_checkpoint(conn).map_err(dberr)?;
                Ok((inserted, latest))
            })
            .await?;
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
            (chrono::Utc::now() - cp.issued_at).num_seconds().max(0)
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
    ) -> Result<(Vec<RecordRow>, bool), LogError> {
        let mut rows = self
            .db
            .run(move |conn| {
                repository::query(conn, &filter, cursor, limit.saturating_add(1)).map_err(dberr)
            })
            .await?;
        let more = rows.len() > usize::try_from(limit).unwrap_or(usize::MAX);
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok((rows, more))
    }
}
