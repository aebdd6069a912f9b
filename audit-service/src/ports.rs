//! The traits the log's use cases (`log`) depend on: the store of records and
//! checkpoints, and the clock. Real implementations: `repository::PgLogStore`
//! (PostgreSQL) and [`SystemClock`]; unit tests run on `fakes`.
//!
//! What every store must do alike under the append lock (which index a record gets,
//! which is a duplicate, which stored leaves are well formed) is written once here, in
//! [`place_batch`] and [`contiguous_leaves`], so implementations cannot disagree on it.

use crate::merkle::Hash;
use crate::record::{Actor, FieldChange, Record};
use crate::signing::Checkpoint;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// Storage failures (the service kit's classification of database errors).
pub use medbook_service_kit::db::DbError;

/// Where one record of an Append landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub id: Uuid,
    pub index: u64,
    /// The id was already in the log (or earlier in the batch): `index` is the
    /// original's, and nothing was stored.
    pub duplicate: bool,
}

/// A record about to be stored at `index`.
pub struct NewRow<'a> {
    pub index: u64,
    pub record: &'a Record,
    pub leaf_hash: Hash,
}

/// What one append did, as the store saw it under the append lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendOutcome {
    /// The leaves stored since the caller's `known` (by other replicas), by index:
    /// the caller's tree takes them before this batch's.
    pub catch_up: Vec<Hash>,
    /// One per record of the batch, in its order.
    pub results: Vec<Appended>,
    /// The leaves of the rows this batch stored, by index.
    pub leaves: Vec<Hash>,
}

/// What `Query` filters on; `None` is "any".
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    pub actor_id: Option<String>,
    pub action: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// Where a page starts: after the record with this (occurred_at, index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub occurred_at: DateTime<Utc>,
    pub index: u64,
}

/// A stored record as its columns hold it: kept apart from [`Record`] because a
/// tampered row may no longer make one, and is still shown as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub index: u64,
    pub id: Uuid,
    pub actor_kind: String,
    pub actor_id: String,
    pub actor_role: String,
    pub action: String,
    pub entity_type: String,
    pub entity_id: String,
    /// The `changes` column as JSON text.
    pub changes: String,
    pub source: String,
    pub request_id: String,
    pub occurred_at: DateTime<Utc>,
    /// The store's clock when the row was written (not part of the leaf).
    pub appended_at: DateTime<Utc>,
    /// The service's receive time; part of the leaf (`None` only in records appended
    /// before it was stamped).
    pub received_at: Option<DateTime<Utc>>,
    pub leaf_hash: Vec<u8>,
}

impl StoredRecord {
    /// The record its columns describe; `None` when they cannot be one (a tampered
    /// row).
    pub fn record(&self) -> Option<Record> {
        RecordColumns {
            id: self.id,
            actor: [&self.actor_kind, &self.actor_id, &self.actor_role],
            action: &self.action,
            entity_type: &self.entity_type,
            entity_id: &self.entity_id,
            changes: &self.changes,
            source: &self.source,
            request_id: &self.request_id,
            occurred_at: self.occurred_at,
            received_at: self.received_at,
        }
        .record()
    }
}

/// The columns of a stored record that make the record, borrowed from whichever row
/// holds them ([`StoredRecord`], the repository's own row).
pub struct RecordColumns<'a> {
    pub id: Uuid,
    /// Kind, id and role.
    pub actor: [&'a str; 3],
    pub action: &'a str,
    pub entity_type: &'a str,
    pub entity_id: &'a str,
    /// JSON text.
    pub changes: &'a str,
    pub source: &'a str,
    pub request_id: &'a str,
    pub occurred_at: DateTime<Utc>,
    pub received_at: Option<DateTime<Utc>>,
}

impl RecordColumns<'_> {
    /// The record; `None` when the columns cannot be one (a tampered row).
    pub fn record(&self) -> Option<Record> {
        let changes: Vec<FieldChange> = serde_json::from_str(self.changes).ok()?;
        let [kind, id, role] = self.actor;
        Some(Record {
            id: self.id,
            actor: Actor::from_columns(kind, id, role)?,
            action: self.action.to_owned(),
            entity_type: self.entity_type.to_owned(),
            entity_id: self.entity_id.to_owned(),
            changes,
            source: self.source.to_owned(),
            request_id: self.request_id.to_owned(),
            occurred_at: self.occurred_at,
            received_at: self.received_at,
        })
    }
}

/// The log's storage: append-only records (leaves) and signed checkpoints.
#[async_trait]
pub trait LogStore: Send + Sync {
    /// Appends `records` in one transaction (all or none) under the lock every
    /// process appending to this store takes, so that indices stay contiguous across
    /// replicas. `known` is how many leaves the caller holds: the leaves stored beyond
    /// it come back as `catch_up`; a store holding fewer than `known` fails with
    /// `DbError::Internal` and stores nothing. Indices and duplicates are
    /// [`place_batch`]'s, the catch-up leaves [`contiguous_leaves`]'s.
    async fn append(&self, known: u64, records: Arc<Vec<Record>>)
        -> Result<AppendOutcome, DbError>;

    /// Stored leaf hashes from index `from`, at most `limit`, by index; as stored (a
    /// tampered row's may not be 32 bytes, or an index may be missing).
    async fn leaf_hashes(&self, from: u64, limit: u64) -> Result<Vec<(u64, Vec<u8>)>, DbError>;

    /// Records matching `filter`, newest (`occurred_at`, then index) first, after
    /// `cursor`, at most `limit`.
    async fn query(
        &self,
        filter: Filter,
        cursor: Option<Cursor>,
        limit: u32,
    ) -> Result<Vec<StoredRecord>, DbError>;

    /// Stores `cp`; a checkpoint of the same tree size already stored wins (returns
    /// false): another replica signed that size first.
    async fn insert_checkpoint(&self, cp: Checkpoint) -> Result<bool, DbError>;

    /// The checkpoint of the largest tree.
    async fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, DbError>;
}

/// The time the use cases stamp (checkpoints) and measure ages against; settable in
/// tests.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Where each of `batch` lands in a log of `next` records of which `stored` (id to
/// index) are already in it: a record whose id is stored, or earlier in the batch, is
/// a duplicate answered with the original's index; the others take the next indices
/// in order. Returns the answers (one per record) and the rows to store.
pub fn place_batch(
    next: u64,
    batch: &[Record],
    mut stored: HashMap<Uuid, u64>,
) -> (Vec<Appended>, Vec<NewRow<'_>>) {
    let mut results = Vec::with_capacity(batch.len());
    let mut rows = Vec::new();
    let mut index = next;
    for record in batch {
        if let Some(&original) = stored.get(&record.id) {
            results.push(Appended {
                id: record.id,
                index: original,
                duplicate: true,
            });
            continue;
        }
        rows.push(NewRow {
            index,
            record,
            leaf_hash: record.leaf_hash(index),
        });
        stored.insert(record.id, index);
        results.push(Appended {
            id: record.id,
            index,
            duplicate: false,
        });
        index += 1;
    }
    (results, rows)
}

/// The leaf hashes of `rows` (index, stored hash) read by index from `from`: every
/// index present and every hash 32 bytes, or what is wrong (for the operator).
pub fn contiguous_leaves(
    from: u64,
    rows: impl IntoIterator<Item = (u64, Vec<u8>)>,
) -> Result<Vec<Hash>, String> {
    let mut out = Vec::new();
    for (expected, (idx, leaf)) in (from..).zip(rows) {
        if idx != expected {
            return Err(format!(
                "the stored log has no record at index {expected}; run `audit-service verify`"
            ));
        }
        out.push(
            <[u8; 32]>::try_from(leaf.as_slice())
                .map_err(|_| format!("the leaf hash at index {idx} is not 32 bytes"))?,
        );
    }
    Ok(out)
}
