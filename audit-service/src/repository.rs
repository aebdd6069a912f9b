//! The audit database (`medbook_audit`): its embedded migrations, every statement the
//! service and `verify` send, and [`PgLogStore`], the log's `LogStore` port over them.
//! The pool, start-up and migrating are the service kit's. The statement functions
//! are blocking; callers run them through `Db::run` / `Db::transaction`.

use crate::ports::{
    contiguous_leaves, place_batch, AppendOutcome, Cursor, Filter, LogStore, StoredRecord,
};
use crate::record::Record;
use crate::signing::Checkpoint;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, BigInt, Bytea, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::{PgConnection, QueryResult, QueryableByName, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use medbook_service_kit::db::map_err;
use medbook_service_kit::sql::Sql;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

pub use crate::ports::NewRow;
pub use medbook_service_kit::db::{Db, DbError};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The advisory lock key migrations of this database are applied under.
pub const MIGRATION_LOCK: i64 = 7243003;

/// The transaction-scoped advisory lock every append takes, so that appends from any
/// number of processes get contiguous indices.
pub const APPEND_LOCK: i64 = 7243103;

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// A stored record, as its columns hold it.
#[derive(Debug, Clone, QueryableByName)]
pub struct RecordRow {
    #[diesel(sql_type = BigInt)]
    pub idx: i64,
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = Text)]
    pub actor_kind: String,
    #[diesel(sql_type = Text)]
    pub actor_id: String,
    #[diesel(sql_type = Text)]
    pub actor_role: String,
    #[diesel(sql_type = Text)]
    pub action: String,
    #[diesel(sql_type = Text)]
    pub entity_type: String,
    #[diesel(sql_type = Text)]
    pub entity_id: String,
    #[diesel(sql_type = Text)]
    pub changes: String,
    #[diesel(sql_type = Text)]
    pub source: String,
    #[diesel(sql_type = Text)]
    pub request_id: String,
    #[diesel(sql_type = Timestamptz)]
    pub occurred_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    pub appended_at: DateTime<Utc>,
    /// The service's receive time; part of the leaf (NULL only in records appended
    /// before it was stamped).
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub received_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Bytea)]
    pub leaf_hash: Vec<u8>,
}

const RECORD_COLUMNS: &str = "idx, id, actor_kind, actor_id, actor_role, action, entity_type, \
     entity_id, changes::text AS changes, source, request_id, occurred_at, appended_at, \
     received_at, leaf_hash";

impl RecordRow {
    /// The record its columns describe; `None` when they cannot be one (a tampered
    /// row).
    pub fn record(&self) -> Option<Record> {
        crate::ports::RecordColumns {
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

    pub fn index(&self) -> u64 {
        to_u64(self.idx)
    }
}

impl From<RecordRow> for StoredRecord {
    fn from(r: RecordRow) -> Self {
        StoredRecord {
            index: r.index(),
            id: r.id,
            actor_kind: r.actor_kind,
            actor_id: r.actor_id,
            actor_role: r.actor_role,
            action: r.action,
            entity_type: r.entity_type,
            entity_id: r.entity_id,
            changes: r.changes,
            source: r.source,
            request_id: r.request_id,
            occurred_at: r.occurred_at,
            appended_at: r.appended_at,
            received_at: r.received_at,
            leaf_hash: r.leaf_hash,
        }
    }
}

#[derive(QueryableByName)]
struct Next {
    #[diesel(sql_type = BigInt)]
    next: i64,
}

/// One more than the highest index (0 for an empty log).
pub fn next_index(conn: &mut PgConnection) -> QueryResult<u64> {
    let row: Next =
        Sql::new("SELECT COALESCE(MAX(idx) + 1, 0) AS next FROM audit_records").get_result(conn)?;
    Ok(to_u64(row.next))
}

/// Takes the append lock for the current transaction.
pub fn lock_appends(conn: &mut PgConnection) -> QueryResult<()> {
    Sql::new("SELECT pg_advisory_xact_lock($1)")
        .bind::<BigInt, _>(APPEND_LOCK)
        .execute(conn)
        .map(|_| ())
}

#[derive(QueryableByName)]
struct Existing {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = BigInt)]
    idx: i64,
}

/// The indices of those of `ids` already in the log.
pub fn existing(conn: &mut PgConnection, ids: &[Uuid]) -> QueryResult<HashMap<Uuid, u64>> {
    let rows: Vec<Existing> = Sql::new("SELECT id, idx FROM audit_records WHERE id = ANY($1)")
        .bind::<Array<SqlUuid>, _>(ids.to_vec())
        .load(conn)?;
    Ok(rows.into_iter().map(|r| (r.id, to_u64(r.idx))).collect())
}

/// Inserts `rows` in one statement.
pub fn insert_records(conn: &mut PgConnection, rows: &[NewRow<'_>]) -> QueryResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut idx = Vec::with_capacity(rows.len());
    let mut ids = Vec::with_capacity(rows.len());
    let mut kinds = Vec::with_capacity(rows.len());
    let mut actor_ids = Vec::with_capacity(rows.len());
    let mut roles = Vec::with_capacity(rows.len());
    let mut actions = Vec::with_capacity(rows.len());
    let mut entity_types = Vec::with_capacity(rows.len());
    let mut entity_ids = Vec::with_capacity(rows.len());
    let mut changes = Vec::with_capacity(rows.len());
    let mut sources = Vec::with_capacity(rows.len());
    let mut request_ids = Vec::with_capacity(rows.len());
    let mut occurred = Vec::with_capacity(rows.len());
    let mut received = Vec::with_capacity(rows.len());
    let mut leaves = Vec::with_capacity(rows.len());
    for r in rows {
        idx.push(to_i64(r.index));
        ids.push(r.record.id);
        kinds.push(r.record.actor.kind().to_owned());
        actor_ids.push(r.record.actor.id());
        roles.push(r.record.actor.role().to_owned());
        actions.push(r.record.action.clone());
        entity_types.push(r.record.entity_type.clone());
        entity_ids.push(r.record.entity_id.clone());
        changes.push(r.record.changes_json());
        sources.push(r.record.source.clone());
        request_ids.push(r.record.request_id.clone());
        occurred.push(r.record.occurred_at);
        received.push(r.record.received_at);
        leaves.push(r.leaf_hash.to_vec());
    }
    Sql::new(
        "INSERT INTO audit_records (idx, id, actor_kind, actor_id, actor_role, action, \
         entity_type, entity_id, changes, source, request_id, occurred_at, received_at, \
         leaf_hash) \
         SELECT i, id, k, a, r, act, et, eid, c::jsonb, s, req, t, rt, h FROM UNNEST($1, $2, \
         $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) AS u(i, id, k, a, r, act, et, \
         eid, c, s, req, t, rt, h)",
    )
    .bind::<Array<BigInt>, _>(idx)
    .bind::<Array<SqlUuid>, _>(ids)
    .bind::<Array<Text>, _>(kinds)
    .bind::<Array<Text>, _>(actor_ids)
    .bind::<Array<Text>, _>(roles)
    .bind::<Array<Text>, _>(actions)
    .bind::<Array<Text>, _>(entity_types)
    .bind::<Array<Text>, _>(entity_ids)
    .bind::<Array<Text>, _>(changes)
    .bind::<Array<Text>, _>(sources)
    .bind::<Array<Text>, _>(request_ids)
    .bind::<Array<Timestamptz>, _>(occurred)
    .bind::<Array<Nullable<Timestamptz>>, _>(received)
    .bind::<Array<Bytea>, _>(leaves)
    .execute(conn)
    .map(|_| ())
}

#[derive(QueryableByName)]
struct Leaf {
    #[diesel(sql_type = BigInt)]
    idx: i64,
    #[diesel(sql_type = Bytea)]
    leaf_hash: Vec<u8>,
}

/// Stored leaf hashes from index `from`, at most `limit`, by index.
pub fn leaf_hashes(
    conn: &mut PgConnection,
    from: u64,
    limit: u64,
) -> QueryResult<Vec<(u64, Vec<u8>)>> {
    let rows: Vec<Leaf> =
        Sql::new("SELECT idx, leaf_hash FROM audit_records WHERE idx >= $1 ORDER BY idx LIMIT $2")
            .bind::<BigInt, _>(to_i64(from))
            .bind::<BigInt, _>(to_i64(limit))
            .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|r| (to_u64(r.idx), r.leaf_hash))
        .collect())
}

/// Stored leaf hashes with indices from `from` up to `to` (exclusive), by index.
pub fn leaf_hashes_between(
    conn: &mut PgConnection,
    from: u64,
    to: u64,
) -> QueryResult<Vec<(u64, Vec<u8>)>> {
    let rows: Vec<Leaf> = Sql::new(
        "SELECT idx, leaf_hash FROM audit_records WHERE idx >= $1 AND idx < $2 ORDER BY idx",
    )
    .bind::<BigInt, _>(to_i64(from))
    .bind::<BigInt, _>(to_i64(to))
    .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|r| (to_u64(r.idx), r.leaf_hash))
        .collect())
}

/// Rows after `after` (index, id), by index then id, at most `limit`: how `verify`
/// reads the whole table, duplicates of an index included.
pub fn rows_after(
    conn: &mut PgConnection,
    after: Option<(i64, Uuid)>,
    limit: i64,
) -> QueryResult<Vec<RecordRow>> {
    let (idx, id) = after.unwrap_or((-1, Uuid::nil()));
    // Each text is a constant, so the statement stays prepared.
    Sql::new(concat!(
        "SELECT idx, id, actor_kind, actor_id, actor_role, action, entity_type, entity_id, ",
        "changes::text AS changes, source, request_id, occurred_at, appended_at, received_at, ",
        "leaf_hash ",
        "FROM audit_records WHERE (idx, id) > ($1, $2) ORDER BY idx, id LIMIT $3"
    ))
    .bind::<BigInt, _>(idx)
    .bind::<SqlUuid, _>(id)
    .bind::<BigInt, _>(limit)
    .load(conn)
}

/// Records matching `filter`, newest (`occurred_at`, then index) first, after
/// `cursor`, at most `limit`.
pub fn query(
    conn: &mut PgConnection,
    filter: &Filter,
    cursor: Option<Cursor>,
    limit: u32,
) -> QueryResult<Vec<RecordRow>> {
    let mut sql = format!("SELECT {RECORD_COLUMNS} FROM audit_records WHERE TRUE");
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    let mut texts: Vec<String> = Vec::new();
    for (column, value) in [
        ("entity_type", &filter.entity_type),
        ("entity_id", &filter.entity_id),
        ("actor_id", &filter.actor_id),
        ("action", &filter.action),
    ] {
        if let Some(v) = value {
            sql.push_str(&format!(" AND {column} = ${}", next()));
            texts.push(v.clone());
        }
    }
    let mut times: Vec<DateTime<Utc>> = Vec::new();
    if let Some(from) = filter.from {
        sql.push_str(&format!(" AND occurred_at >= ${}", next()));
        times.push(from);
    }
    if let Some(to) = filter.to {
        sql.push_str(&format!(" AND occurred_at < ${}", next()));
        times.push(to);
    }
    if cursor.is_some() {
        let (a, b) = (next(), next());
        sql.push_str(&format!(" AND (occurred_at, idx) < (${a}, ${b})"));
    }
    let l = next();
    sql.push_str(&format!(" ORDER BY occurred_at DESC, idx DESC LIMIT ${l}"));
    let mut q = diesel::sql_query(sql).into_boxed::<diesel::pg::Pg>();
    for t in texts {
        q = q.bind::<Text, _>(t);
    }
    for t in times {
        q = q.bind::<Timestamptz, _>(t);
    }
    if let Some(c) = cursor {
        q = q
            .bind::<Timestamptz, _>(c.occurred_at)
            .bind::<BigInt, _>(to_i64(c.index));
    }
    q.bind::<BigInt, _>(i64::from(limit)).load(conn)
}

#[derive(QueryableByName)]
struct CheckpointRow {
    #[diesel(sql_type = BigInt)]
    tree_size: i64,
    #[diesel(sql_type = Bytea)]
    root_hash: Vec<u8>,
    #[diesel(sql_type = Text)]
    origin: String,
    #[diesel(sql_type = Timestamptz)]
    issued_at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    key_id: String,
    #[diesel(sql_type = Bytea)]
    public_key: Vec<u8>,
    #[diesel(sql_type = Bytea)]
    signature: Vec<u8>,
    #[diesel(sql_type = Bytea)]
    signed_text: Vec<u8>,
}

impl From<CheckpointRow> for Checkpoint {
    fn from(r: CheckpointRow) -> Self {
        let mut root = [0u8; 32];
        // A root of another length (a tampered row) stays zero and fails to verify.
        if let Ok(bytes) = <[u8; 32]>::try_from(r.root_hash.as_slice()) {
            root = bytes;
        }
        Checkpoint {
            origin: r.origin,
            tree_size: to_u64(r.tree_size),
            root,
            issued_at: r.issued_at,
            signature: r.signature,
            key_id: r.key_id,
            public_key: r.public_key,
            signed_text: r.signed_text,
        }
    }
}

const CHECKPOINT_COLUMNS: &str =
    "tree_size, root_hash, origin, issued_at, key_id, public_key, signature, signed_text";

pub fn latest_checkpoint(conn: &mut PgConnection) -> QueryResult<Option<Checkpoint>> {
    let rows: Vec<CheckpointRow> = Sql::new(concat!(
        "SELECT tree_size, root_hash, origin, issued_at, key_id, public_key, signature, ",
        "signed_text FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1"
    ))
    .load(conn)?;
    Ok(rows.into_iter().next().map(Checkpoint::from))
}

/// Every checkpoint, smallest tree first.
pub fn all_checkpoints(conn: &mut PgConnection) -> QueryResult<Vec<Checkpoint>> {
    let rows: Vec<CheckpointRow> = diesel::sql_query(format!(
        "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints ORDER BY tree_size"
    ))
    .load(conn)?;
    Ok(rows.into_iter().map(Checkpoint::from).collect())
}

/// Stores `cp`; a checkpoint of the same size already stored wins (returns false).
pub fn insert_checkpoint(conn: &mut PgConnection, cp: &Checkpoint) -> QueryResult<bool> {
    let n = Sql::new(
        "INSERT INTO audit_checkpoints (tree_size, root_hash, origin, issued_at, key_id, \
         public_key, signature, signed_text) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (tree_size) DO NOTHING",
    )
    .bind::<BigInt, _>(to_i64(cp.tree_size))
    .bind::<Bytea, _>(cp.root.to_vec())
    .bind::<Text, _>(cp.origin.clone())
    .bind::<Timestamptz, _>(cp.issued_at)
    .bind::<Text, _>(cp.key_id.clone())
    .bind::<Bytea, _>(cp.public_key.clone())
    .bind::<Bytea, _>(cp.signature.clone())
    .bind::<Bytea, _>(cp.signed_text.clone())
    .execute(conn)?;
    Ok(n > 0)
}

/// The log's store in PostgreSQL. Appends take the transaction-scoped advisory lock
/// [`APPEND_LOCK`], so that any number of replicas get contiguous indices.
#[derive(Clone)]
pub struct PgLogStore {
    db: Db,
}

impl PgLogStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

#[async_trait]
impl LogStore for PgLogStore {
    async fn append(
        &self,
        known: u64,
        records: Arc<Vec<Record>>,
    ) -> Result<AppendOutcome, DbError> {
        self.db
            .transaction(move |conn| {
                lock_appends(conn).map_err(map_err)?;
                let next = next_index(conn).map_err(map_err)?;
                if next < known {
                    return Err(DbError::Internal(anyhow::anyhow!(
                        "the database holds {next} records, fewer than the {known} loaded"
                    )));
                }
                // Rows another replica appended since: their leaves first.
                let catch_up = if next > known {
                    let rows = leaf_hashes_between(conn, known, next).map_err(map_err)?;
                    contiguous_leaves(known, rows)
                        .map_err(|e| DbError::Internal(anyhow::anyhow!("{e}")))?
                } else {
                    Vec::new()
                };
                let ids: Vec<Uuid> = records.iter().map(|r| r.id).collect();
                let stored = existing(conn, &ids).map_err(map_err)?;
                let (results, rows) = place_batch(next, &records, stored);
                insert_records(conn, &rows).map_err(map_err)?;
                Ok(AppendOutcome {
                    catch_up,
                    results,
                    leaves: rows.iter().map(|r| r.leaf_hash).collect(),
                })
            })
            .await
    }

    async fn leaf_hashes(&self, from: u64, limit: u64) -> Result<Vec<(u64, Vec<u8>)>, DbError> {
        self.db
            .run(move |conn| leaf_hashes(conn, from, limit).map_err(map_err))
            .await
    }

    async fn query(
        &self,
        filter: Filter,
        cursor: Option<Cursor>,
        limit: u32,
    ) -> Result<Vec<StoredRecord>, DbError> {
        let rows = self
            .db
            .run(move |conn| query(conn, &filter, cursor, limit).map_err(map_err))
            .await?;
        Ok(rows.into_iter().map(StoredRecord::from).collect())
    }

    async fn insert_checkpoint(&self, cp: Checkpoint) -> Result<bool, DbError> {
        self.db
            .run(move |conn| insert_checkpoint(conn, &cp).map_err(map_err))
            .await
    }

    async fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, DbError> {
        self.db
            .run(|conn| latest_checkpoint(conn).map_err(map_err))
            .await
    }
}
