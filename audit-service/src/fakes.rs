//! In-memory fakes of the ports, for unit tests of the use cases (`log`). The contract
//! tests (`contracts`) hold them to what the PostgreSQL store does.

use crate::ports::{
    contiguous_leaves, place_batch, AppendOutcome, Clock, Cursor, DbError, Filter, LogStore,
    StoredRecord,
};
use crate::record::{to_micros, Actor, FieldChange, Record};
use crate::signing::{Checkpoint, SigningKey};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

#[derive(Default)]
struct State {
    /// By index; a test may tamper with them (see [`FakeStore::tamper`]).
    rows: Vec<StoredRecord>,
    /// By tree size.
    checkpoints: BTreeMap<u64, Checkpoint>,
    unavailable: bool,
}

/// The log's store in memory. One store shared by several `AuditLog`s plays replicas
/// of one database.
#[derive(Default)]
pub struct FakeStore(Mutex<State>);

impl FakeStore {
    /// While `down`, every call fails as an unreachable database does.
    pub fn set_unavailable(&self, down: bool) {
        self.0.lock().unwrap().unavailable = down;
    }

    /// Changes the stored rows behind the log's back: a restored backup, a tampered
    /// table.
    pub fn tamper(&self, f: impl FnOnce(&mut Vec<StoredRecord>)) {
        f(&mut self.0.lock().unwrap().rows);
    }

    /// How many rows are stored.
    pub fn count(&self) -> usize {
        self.0.lock().unwrap().rows.len()
    }

    fn state(&self) -> Result<std::sync::MutexGuard<'_, State>, DbError> {
        let state = self.0.lock().unwrap();
        if state.unavailable {
            return Err(DbError::Unavailable("the fake store is down".into()));
        }
        Ok(state)
    }
}

fn stored(index: u64, record: &Record, leaf_hash: &[u8]) -> StoredRecord {
    StoredRecord {
        index,
        id: record.id,
        actor_kind: record.actor.kind().to_owned(),
        actor_id: record.actor.id(),
        actor_role: record.actor.role().to_owned(),
        action: record.action.clone(),
        entity_type: record.entity_type.clone(),
        entity_id: record.entity_id.clone(),
        changes: record.changes_json(),
        source: record.source.clone(),
        request_id: record.request_id.clone(),
        occurred_at: record.occurred_at,
        appended_at: to_micros(Utc::now()),
        received_at: record.received_at,
        leaf_hash: leaf_hash.to_vec(),
    }
}

fn matches(row: &StoredRecord, filter: &Filter, cursor: Option<Cursor>) -> bool {
    let equal = |wanted: &Option<String>, value: &str| wanted.as_deref().is_none_or(|w| w == value);
    equal(&filter.entity_type, &row.entity_type)
        && equal(&filter.entity_id, &row.entity_id)
        && equal(&filter.actor_id, &row.actor_id)
        && equal(&filter.action, &row.action)
        && filter.from.is_none_or(|from| row.occurred_at >= from)
        && filter.to.is_none_or(|to| row.occurred_at < to)
        && cursor.is_none_or(|c| (row.occurred_at, row.index) < (c.occurred_at, c.index))
}

#[async_trait]
impl LogStore for FakeStore {
    async fn append(
        &self,
        known: u64,
        records: Arc<Vec<Record>>,
    ) -> Result<AppendOutcome, DbError> {
        let mut state = self.state()?;
        // As PostgreSQL's MAX(idx) + 1.
        let next = state.rows.iter().map(|r| r.index + 1).max().unwrap_or(0);
        if next < known {
            return Err(DbError::Internal(anyhow::anyhow!(
                "the database holds {next} records, fewer than the {known} loaded"
            )));
        }
        let mut newer: Vec<_> = state
            .rows
            .iter()
            .filter(|r| r.index >= known)
            .map(|r| (r.index, r.leaf_hash.clone()))
            .collect();
        newer.sort_by_key(|(i, _)| *i);
        let catch_up = contiguous_leaves(known, newer)
            .map_err(|e| DbError::Internal(anyhow::anyhow!("{e}")))?;
        let ids: HashMap<_, _> = state.rows.iter().map(|r| (r.id, r.index)).collect();
        let stored_ids = records
            .iter()
            .filter_map(|r| ids.get(&r.id).map(|&i| (r.id, i)))
            .collect();
        let (results, rows) = place_batch(next, &records, stored_ids);
        let leaves = rows.iter().map(|r| r.leaf_hash).collect();
        for row in &rows {
            state
                .rows
                .push(stored(row.index, row.record, &row.leaf_hash));
        }
        Ok(AppendOutcome {
            catch_up,
            results,
            leaves,
        })
    }

    async fn leaf_hashes(&self, from: u64, limit: u64) -> Result<Vec<(u64, Vec<u8>)>, DbError> {
        let state = self.state()?;
        let mut leaves: Vec<_> = state
            .rows
            .iter()
            .filter(|r| r.index >= from)
            .map(|r| (r.index, r.leaf_hash.clone()))
            .collect();
        leaves.sort_by_key(|(i, _)| *i);
        leaves.truncate(usize::try_from(limit).unwrap());
        Ok(leaves)
    }

    async fn query(
        &self,
        filter: Filter,
        cursor: Option<Cursor>,
        limit: u32,
    ) -> Result<Vec<StoredRecord>, DbError> {
        let state = self.state()?;
        let mut rows: Vec<_> = state
            .rows
            .iter()
            .filter(|r| matches(r, &filter, cursor))
            .cloned()
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse((r.occurred_at, r.index)));
        rows.truncate(usize::try_from(limit).unwrap());
        Ok(rows)
    }

    async fn insert_checkpoint(&self, cp: Checkpoint) -> Result<bool, DbError> {
        let mut state = self.state()?;
        if state.checkpoints.contains_key(&cp.tree_size) {
            return Ok(false);
        }
        state.checkpoints.insert(cp.tree_size, cp);
        Ok(true)
    }

    async fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, DbError> {
        let state = self.state()?;
        Ok(state.checkpoints.values().next_back().cloned())
    }
}

/// A clock that stands still until a test moves it.
pub struct FakeClock(Mutex<DateTime<Utc>>);

impl FakeClock {
    /// Stopped at `t`.
    pub fn at(t: DateTime<Utc>) -> Self {
        Self(Mutex::new(t))
    }

    pub fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().unwrap() = t;
    }

    pub fn advance(&self, by: chrono::Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Default for FakeClock {
    /// A fixed instant in whole microseconds (as checkpoints store time).
    fn default() -> Self {
        Self::at(DateTime::from_timestamp_micros(1_767_607_200_123_456).unwrap())
    }
}

impl Clock for FakeClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// The signing key of seed `[seed; 32]`: the same key as often as a test needs it.
pub fn key(seed: u8) -> SigningKey {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode([seed; 32]);
    SigningKey::from_base64(&secrecy::SecretString::from(b64)).unwrap()
}

/// A micro-precise instant `secs` seconds after a fixed one.
pub fn t(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(1_767_600_000_000_001).unwrap()
        + chrono::Duration::seconds(secs)
}

/// A valid record with a fresh id: `action` on `entity_type`/`entity_id` by `actor`,
/// occurred at `t(secs)`, received a second later.
pub fn record(action: &str, entity: (&str, &str), actor: Actor, secs: i64) -> Record {
    Record {
        id: Uuid::new_v4(),
        actor,
        action: action.to_owned(),
        entity_type: entity.0.to_owned(),
        entity_id: entity.1.to_owned(),
        changes: vec![FieldChange {
            field: "status".into(),
            before: Some("\"booked\"".into()),
            after: None,
        }],
        source: "http".into(),
        request_id: format!("req-{secs}"),
        occurred_at: t(secs),
        received_at: Some(t(secs + 1)),
    }
}
