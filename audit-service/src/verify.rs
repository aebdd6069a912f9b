//! `audit-service verify`: rebuilds the Merkle tree from the rows themselves (every
//! leaf recomputed from the row's columns; the stored leaf hash is only compared,
//! never trusted) and checks it against every signed checkpoint and against the
//! checkpoint this command verified last time (kept in a state file, so that a log
//! rewritten together with its checkpoints table is caught too).
//!
//! It names the first bad index and what is wrong with it:
//! * `altered`: a row's columns no longer give its stored leaf hash, or (when the
//!   stored hash was rewritten too) a checkpoint's root no longer matches; the index is
//!   then the first one that checkpoint covers beyond the last matching checkpoint
//!   (the finest the signatures can tell);
//! * `deleted`: an index is missing, or a checkpoint signs more records than there
//!   are rows;
//! * `inserted`: two rows share an index, or the rows from some index on moved up by
//!   one;
//! * `reordered`: a row holds the record of another index;
//! * `bad_checkpoint`: a checkpoint whose signature or text does not verify;
//! * `inconsistent`: the log is not an extension of the one verified last time.

use crate::merkle::{self, Hash, Tree};
use crate::record::Record;
use crate::repository::{self, Db, DbError, RecordRow};
use crate::signing::Checkpoint;
use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Rows read per round trip.
const CHUNK: i64 = 20_000;
/// Mismatching rows kept for telling reorderings from alterations.
const MISMATCHES_KEPT: usize = 2_000;
/// Problems listed in the report (the first is the one that counts).
const PROBLEMS_LISTED: usize = 20;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Problem {
    pub index: Option<u64>,
    pub problem: &'static str,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckpointSummary {
    pub tree_size: u64,
    pub root_hash: String,
    pub issued_at: DateTime<Utc>,
    pub key_id: String,
}

impl From<&Checkpoint> for CheckpointSummary {
    fn from(cp: &Checkpoint) -> Self {
        Self {
            tree_size: cp.tree_size,
            root_hash: hex::encode(cp.root),
            issued_at: cp.issued_at,
            key_id: cp.key_id.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ok: bool,
    pub first_bad_index: Option<u64>,
    pub problem: Option<&'static str>,
    pub detail: Option<String>,
    /// Rows in the table.
    pub records: u64,
    pub checkpoints: usize,
    pub latest_checkpoint: Option<CheckpointSummary>,
    /// Rows beyond the latest checkpoint: not yet signed, so not yet verifiable.
    pub unsigned_records: u64,
    pub previously_verified_size: Option<u64>,
    pub problems: Vec<Problem>,
    pub state_file: PathBuf,
    pub state_updated: bool,
    pub elapsed_ms: u64,
}

/// What the state file remembers: the last checkpoint verified.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VerifiedState {
    pub origin: String,
    pub tree_size: u64,
    pub root_hash: String,
    pub issued_at: DateTime<Utc>,
    pub key_id: String,
    pub verified_at: DateTime<Utc>,
}

fn read_state(path: &Path) -> anyhow::Result<Option<VerifiedState>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("the state file {} is not valid: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

/// Replaces the state file (written aside, then renamed into place).
fn write_state(path: &Path, state: &VerifiedState) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(state)?)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| anyhow::anyhow!("cannot replace {}: {e}", path.display()))?;
    Ok(())
}

/// A row whose columns do not give its stored leaf hash.
struct Mismatch {
    index: u64,
    record: Record,
    stored: Vec<u8>,
}

/// What reading the table found.
struct Scan {
    tree: Tree,
    rows: u64,
    problems: Vec<Problem>,
    mismatches: Vec<Mismatch>,
}

fn problem(index: Option<u64>, problem: &'static str, detail: String) -> Problem {
    Problem {
        index,
        problem,
        detail,
    }
}

/// Reads every row by index, recomputing its leaf.
fn scan(conn: &mut diesel::PgConnection) -> Result<Scan, DbError> {
    let mut tree = Tree::new();
    let mut problems = Vec::new();
    let mut mismatches = Vec::new();
    let mut rows = 0u64;
    let mut expected = 0u64;
    let mut previous: Option<i64> = None;
    let mut after = None;
    loop {
        let chunk: Vec<RecordRow> =
            repository::rows_after(conn, after, CHUNK).map_err(medbook_service_kit::db::map_err)?;
        let Some(last) = chunk.last() else {
            break;
        };
        after = Some((last.idx, last.id));
        for row in chunk {
            rows += 1;
            if previous == Some(row.idx) {
                problems.push(problem(
                    Some(row.index()),
                    "inserted",
                    format!(
                        "more than one row has index {} (record {})",
                        row.idx, row.id
                    ),
                ));
                continue;
            }
            previous = Some(row.idx);
            let Ok(index) = u64::try_from(row.idx) else {
                problems.push(problem(
                    Some(0),
                    "inserted",
                    format!(
                        "a row has the negative index {} (record {})",
                        row.idx, row.id
                    ),
                ));
                continue;
            };
            if index > expected {
                let what = if index - expected == 1 {
                    format!("no row has index {expected}")
                } else {
                    format!("no rows have indices {expected} to {}", index - 1)
                };
                problems.push(problem(Some(expected), "deleted", what));
                expected = index;
            }
            match row.record() {
                Some(record) => {
                    let leaf = record.leaf_hash(index);
                    if leaf.as_slice() != row.leaf_hash.as_slice() {
                        problems.push(problem(
                            Some(index),
                            "altered",
                            format!(
                                "the row at index {index} (record {}) no longer gives its stored leaf hash",
                                row.id
                            ),
                        ));
                        if mismatches.len() < MISMATCHES_KEPT {
                            mismatches.push(Mismatch {
                                index,
                                record,
                                stored: row.leaf_hash.clone(),
                            });
                        }
                    }
                    tree.push(leaf);
                }
                None => {
                    problems.push(problem(
                        Some(index),
                        "altered",
                        format!(
                            "the row at index {index} (record {}) is not a valid record any more",
                            row.id
                        ),
                    ));
                    // Something no record hashes to.
                    tree.push(merkle::node_hash(&[0xff; 32], &[0xff; 32]));
                }
            }
            expected += 1;
        }
    }
    Ok(Scan {
        tree,
        rows,
        problems,
        mismatches,
    })
}

/// Re-reads alterations as moves: a row holding the record of another index
/// (reordered), the rows from some index on moved up by one (inserted) or down by
/// one (deleted and renumbered).
fn classify_moves(scan: &mut Scan) {
    let stored: HashMap<u64, &[u8]> = scan
        .mismatches
        .iter()
        .map(|m| (m.index, m.stored.as_slice()))
        .collect();
    let candidates: Vec<u64> = scan.mismatches.iter().take(200).map(|m| m.index).collect();
    let mut moved: HashMap<u64, u64> = HashMap::new();
    for m in &scan.mismatches {
        let mut others: Vec<u64> = vec![m.index.wrapping_sub(1), m.index + 1];
        others.extend(candidates.iter().copied());
        for q in others {
            if q == m.index || q == u64::MAX {
                continue;
            }
            let leaf: Hash = m.record.leaf_hash(q);
            let came_from_q = leaf.as_slice() == m.stored.as_slice()
                || stored.get(&q).is_some_and(|s| *s == leaf.as_slice());
            if came_from_q {
                moved.insert(m.index, q);
                break;
            }
        }
    }
    for p in scan.problems.iter_mut() {
        let (Some(index), "altered") = (p.index, p.problem) else {
            continue;
        };
        let Some(&from) = moved.get(&index) else {
            continue;
        };
        if moved.get(&from) == Some(&index) {
            p.problem = "reordered";
            p.detail = format!("the rows at indices {index} and {from} were swapped");
        } else if from + 1 == index {
            p.problem = "inserted";
            p.index = Some(from);
            p.detail = format!(
                "a row was inserted at index {from}: the records from there on moved up by one"
            );
        } else if index + 1 == from {
            p.problem = "deleted";
            p.detail =
                format!("the record at index {index} was removed and the rows after it renumbered");
        } else {
            p.problem = "reordered";
            p.detail = format!("the row at index {index} holds the record of index {from}");
        }
    }
}

/// Verifies the log in `db` against `trusted` keys and the state file at `state`;
/// on success records the latest checkpoint there.
pub async fn verify(
    db: &Db,
    origin: &str,
    trusted: &[VerifyingKey],
    state: &Path,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let previous = read_state(state)?;
    let (mut scan, checkpoints) = db
        .run(|conn| -> Result<_, DbError> {
            let checkpoints =
                repository::all_checkpoints(conn).map_err(medbook_service_kit::db::map_err)?;
            Ok((scan(conn)?, checkpoints))
        })
        .await?;
    classify_moves(&mut scan);
    let tree_size = scan.tree.size();
    let mut problems = std::mem::take(&mut scan.problems);

    // Every checkpoint: its signature, then its root over the recomputed tree.
    let mut latest: Option<&Checkpoint> = None;
    let mut matched = 0u64;
    let mut root_mismatch = false;
    for cp in &checkpoints {
        if cp.origin != origin {
            problems.push(problem(
                None,
                "bad_checkpoint",
                format!(
                    "the checkpoint of tree size {} names origin {:?}, not {origin:?}",
                    cp.tree_size, cp.origin
                ),
            ));
            continue;
        }
        if let Err(e) = cp.verify(trusted) {
            problems.push(problem(
                None,
                "bad_checkpoint",
                format!("the checkpoint of tree size {}: {e}", cp.tree_size),
            ));
            continue;
        }
        latest = Some(cp);
        if cp.tree_size > tree_size {
            problems.push(problem(
                Some(tree_size),
                "deleted",
                format!(
                    "the checkpoint of tree size {} signs {} records but the log has {tree_size}",
                    cp.tree_size, cp.tree_size
                ),
            ));
            continue;
        }
        match scan.tree.root(cp.tree_size) {
            Ok(root) if root == cp.root => {
                if !root_mismatch {
                    matched = cp.tree_size;
                }
            }
            _ if root_mismatch => {}
            _ => {
                root_mismatch = true;
                // A row-level finding inside the range already says what is wrong.
                let explained = problems.iter().any(|p| {
                    p.index
                        .is_some_and(|i| (matched..cp.tree_size).contains(&i))
                });
                if explained {
                    continue;
                }
                problems.push(problem(
                    Some(matched),
                    "altered",
                    format!(
                        "the root at tree size {} does not match its signed checkpoint: a record between indices {matched} and {} was changed (its stored leaf hash too)",
                        cp.tree_size,
                        cp.tree_size - 1
                    ),
                ));
            }
        }
    }

    // The checkpoint verified last time: still there, and the log still extends it.
    if let Some(prev) = &previous {
        let latest_size = latest.map_or(0, |c| c.tree_size);
        if prev.origin != origin {
            problems.push(problem(
                None,
                "inconsistent",
                format!(
                    "the state file is of origin {:?}, not {origin:?}",
                    prev.origin
                ),
            ));
        } else if latest_size < prev.tree_size {
            problems.push(problem(
                Some(latest_size.min(tree_size)),
                "deleted",
                format!(
                    "the latest valid checkpoint signs {latest_size} records, fewer than the {} verified before: checkpoints were removed",
                    prev.tree_size
                ),
            ));
        } else if prev.tree_size > tree_size {
            problems.push(problem(
                Some(tree_size),
                "deleted",
                format!(
                    "{} records were verified before; the log now has {tree_size}",
                    prev.tree_size
                ),
            ));
        } else {
            let consistent = match (
                hex::decode(&prev.root_hash)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok()),
                latest,
            ) {
                (Some(before), Some(now)) => scan
                    .tree
                    .consistency_proof(prev.tree_size, now.tree_size)
                    .ok()
                    .is_some_and(|proof| {
                        merkle::verify_consistency(
                            prev.tree_size,
                            now.tree_size,
                            &before,
                            &now.root,
                            &proof,
                        )
                        .is_ok()
                    }),
                _ => false,
            };
            if !consistent {
                problems.push(problem(
                    None,
                    "inconsistent",
                    format!(
                        "the log is not an extension of the tree of {} records verified at {}",
                        prev.tree_size, prev.verified_at
                    ),
                ));
            }
        }
    }

    // By index; at one index, what happened to the row (inserted, deleted, moved)
    // before the alteration it shows as.
    problems.sort_by_key(|p| (p.index.unwrap_or(u64::MAX), p.problem == "altered"));
    problems.dedup();
    let ok = problems.is_empty();
    let mut state_updated = false;
    if let (true, Some(cp)) = (ok, latest) {
        write_state(
            state,
            &VerifiedState {
                origin: origin.to_owned(),
                tree_size: cp.tree_size,
                root_hash: hex::encode(cp.root),
                issued_at: cp.issued_at,
                key_id: cp.key_id.clone(),
                verified_at: Utc::now(),
            },
        )?;
        state_updated = true;
    }
    let first = problems.first().cloned();
    problems.truncate(PROBLEMS_LISTED);
    Ok(Report {
        ok,
        first_bad_index: first.as_ref().and_then(|p| p.index),
        problem: first.as_ref().map(|p| p.problem),
        detail: first.map(|p| p.detail),
        records: scan.rows,
        checkpoints: checkpoints.len(),
        latest_checkpoint: latest.map(CheckpointSummary::from),
        unsigned_records: tree_size.saturating_sub(latest.map_or(0, |c| c.tree_size)),
        previously_verified_size: previous.map(|p| p.tree_size),
        problems,
        state_file: state.to_owned(),
        state_updated,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}
