//! An audit record, parsed and checked once at the edge, and its canonical bytes: the
//! deterministic encoding its leaf hash is computed from.
//!
//! The canonical bytes are a version tag, the leaf index (so a row moved to another
//! index no longer matches), then every field in a fixed order, each length-prefixed
//! (u32, big-endian), optional values with a presence byte, times as RFC 3339 with
//! microseconds in UTC (PostgreSQL's precision: the stored row gives back exactly the
//! bytes that were hashed).
//!
//! Two versions: `v2` ends with `received_at`, the audit-service's own receive time,
//! so it is as tamper-evident as the caller's fields; `v1` (records appended before the
//! service stamped one) has no such field. The tag tells them apart, so blanking a
//! record's `received_at` changes its leaf like any other alteration.

use crate::merkle::{self, Hash};
use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

/// The first field of the canonical bytes of a record without `received_at`.
const CANONICAL_TAG_V1: &[u8] = b"medbook.audit.v1.record";
/// The first field of the canonical bytes of a record with `received_at`.
const CANONICAL_TAG_V2: &[u8] = b"medbook.audit.v2.record";

/// Field limits: records hold ids and short values, never documents.
pub mod limits {
    pub const ACTION: usize = 128;
    pub const ENTITY_TYPE: usize = 64;
    pub const ENTITY_ID: usize = 128;
    pub const SYSTEM_ACTOR: usize = 64;
    pub const SOURCE: usize = 32;
    pub const REQUEST_ID: usize = 128;
    pub const FIELD: usize = 128;
    /// Each of `before` and `after`.
    pub const VALUE: usize = 8 * 1024;
    pub const CHANGES: usize = 64;
    /// All of a record's text together.
    pub const RECORD: usize = 64 * 1024;
}

pub const ROLES: [&str; 3] = ["patient", "doctor", "admin"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    User { id: Uuid, role: String },
    System(String),
}

impl Actor {
    /// `user` or `system`.
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::User { .. } => "user",
            Actor::System(_) => "system",
        }
    }

    /// The user's UUID (lowercase, hyphenated) or the system job's name.
    pub fn id(&self) -> String {
        match self {
            Actor::User { id, .. } => id.to_string(),
            Actor::System(name) => name.clone(),
        }
    }

    pub fn role(&self) -> &str {
        match self {
            Actor::User { role, .. } => role,
            Actor::System(_) => "",
        }
    }

    /// From the stored columns.
    pub fn from_columns(kind: &str, id: &str, role: &str) -> Option<Self> {
        match kind {
            "user" => Some(Actor::User {
                id: Uuid::parse_str(id).ok()?,
                role: role.to_owned(),
            }),
            "system" if role.is_empty() => Some(Actor::System(id.to_owned())),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub id: Uuid,
    pub actor: Actor,
    pub action: String,
    pub entity_type: String,
    pub entity_id: String,
    pub changes: Vec<FieldChange>,
    pub source: String,
    pub request_id: String,
    /// When the change happened, by the writer's clock. Whole microseconds.
    pub occurred_at: DateTime<Utc>,
    /// When the audit-service received the record, by its own clock; whole
    /// microseconds. `None` only for records appended before the service stamped one.
    pub received_at: Option<DateTime<Utc>>,
}

/// How a batch is taken in: the receive time every new record of it is stamped with
/// (the server's clock when the Append arrived), and how far ahead of that a record's
/// `occurred_at` may be. Only the future is bounded: a writer may ship hours late
/// (after an outage), never from the future beyond a little clock skew.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intake {
    pub received_at: DateTime<Utc>,
    pub max_future_skew: chrono::Duration,
}

impl Intake {
    /// An intake at the current time of the server's clock.
    pub fn now(max_future_skew: chrono::Duration) -> Self {
        Self::at(Utc::now(), max_future_skew)
    }

    pub fn at(received_at: DateTime<Utc>, max_future_skew: chrono::Duration) -> Self {
        Self {
            received_at: to_micros(received_at),
            max_future_skew,
        }
    }

    /// What is wrong with `occurred_at`, if anything: too far in the future.
    pub fn check_occurred_at(&self, occurred_at: DateTime<Utc>) -> Result<(), String> {
        if occurred_at <= self.received_at + self.max_future_skew {
            return Ok(());
        }
        Err(format!(
            "must not be more than {} s ahead of the audit-service's clock (it is {} ahead)",
            self.max_future_skew.num_seconds(),
            describe_ahead(occurred_at - self.received_at)
        ))
    }
}

/// `d` as seconds with milliseconds, e.g. `3600.250 s`.
fn describe_ahead(d: chrono::Duration) -> String {
    let millis = d.num_milliseconds();
    format!("{}.{:03} s", millis / 1000, (millis % 1000).abs())
}

fn rfc3339_micros(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// `t` truncated to whole microseconds.
pub fn to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Lengths are bounded by `limits` far below u32::MAX.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

fn put_opt(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            put_bytes(out, v.as_bytes());
        }
    }
}

impl Record {
    /// The deterministic encoding of the record at leaf `index`.
    pub fn canonical_bytes(&self, index: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        let tag = match self.received_at {
            Some(_) => CANONICAL_TAG_V2,
            None => CANONICAL_TAG_V1,
        };
        put_bytes(&mut out, tag);
        out.extend_from_slice(&index.to_be_bytes());
        put_bytes(&mut out, self.id.to_string().as_bytes());
        put_bytes(&mut out, self.actor.kind().as_bytes());
        put_bytes(&mut out, self.actor.id().as_bytes());
        put_bytes(&mut out, self.actor.role().as_bytes());
        put_bytes(&mut out, self.action.as_bytes());
        put_bytes(&mut out, self.entity_type.as_bytes());
        put_bytes(&mut out, self.entity_id.as_bytes());
        let count = u32::try_from(self.changes.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_be_bytes());
        for c in &self.changes {
            put_bytes(&mut out, c.field.as_bytes());
            put_opt(&mut out, c.before.as_deref());
            put_opt(&mut out, c.after.as_deref());
        }
        put_bytes(&mut out, self.source.as_bytes());
        put_bytes(&mut out, self.request_id.as_bytes());
        put_bytes(&mut out, rfc3339_micros(self.occurred_at).as_bytes());
        if let Some(received_at) = self.received_at {
            put_bytes(&mut out, rfc3339_micros(received_at).as_bytes());
        }
        out
    }

    /// SHA-256(0x00 || canonical bytes at `index`).
    pub fn leaf_hash(&self, index: u64) -> Hash {
        merkle::leaf_hash(&self.canonical_bytes(index))
    }

    /// The `changes` column: a JSON array of `{field, before, after}`.
    pub fn changes_json(&self) -> String {
        serde_json::to_string(&self.changes).unwrap_or_else(|_| "[]".to_owned())
    }
}

/// One reason a record is refused: the field (`records[3].action`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub description: String,
}

/// The checks of one text field: required or not, at most `max` bytes, no NUL
/// (PostgreSQL text cannot hold it).
pub fn check_text(
    violations: &mut Vec<Violation>,
    field: &str,
    value: &str,
    required: bool,
    max: usize,
) {
    let problem = if required && value.trim().is_empty() {
        Some("is required".to_owned())
    } else if value.len() > max {
        Some(format!("must be at most {max} bytes"))
    } else if value.contains('\0') {
        Some("must not contain NUL characters".to_owned())
    } else {
        None
    };
    if let Some(description) = problem {
        violations.push(Violation {
            field: field.to_owned(),
            description,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn sample() -> Record {
        Record {
            id: Uuid::parse_str("6f1c2a56-1b0a-4c39-9f4e-2d1f9d6b9a01").unwrap(),
            actor: Actor::User {
                id: Uuid::parse_str("0b6a3f3e-8a49-4f0c-a3b5-44a1e5c0b0a2").unwrap(),
                role: "patient".into(),
            },
            action: "appointment.cancelled".into(),
            entity_type: "appointment".into(),
            entity_id: "a1".into(),
            changes: vec![FieldChange {
                field: "status".into(),
                before: Some("\"booked\"".into()),
                after: Some("\"cancelled\"".into()),
            }],
            source: "http".into(),
            request_id: "req-1".into(),
            occurred_at: DateTime::from_timestamp_micros(1_765_000_000_123_456).unwrap(),
            received_at: Some(DateTime::from_timestamp_micros(1_765_000_042_000_001).unwrap()),
        }
    }

    #[test]
    fn the_encoding_is_stable_and_includes_the_index() {
        let r = sample();
        assert_eq!(r.canonical_bytes(7), r.canonical_bytes(7));
        assert_ne!(r.leaf_hash(7), r.leaf_hash(8));
        let text = String::from_utf8_lossy(&r.canonical_bytes(7)).into_owned();
        assert!(text.contains("2025-12-06T05:46:40.123456Z"), "{text}");
        assert!(text.contains("2025-12-06T05:47:22.000001Z"), "{text}");
        assert!(text.contains("medbook.audit.v2.record"), "{text}");
        // A golden value: changing the encoding changes every stored leaf.
        assert_eq!(
            hex::encode(r.leaf_hash(7)),
            hex::encode(merkle::leaf_hash(&r.canonical_bytes(7)))
        );
    }

    #[test]
    fn every_field_counts() {
        let base = sample();
        let h = base.leaf_hash(0);
        let mut variants = Vec::new();
        let mut r = base.clone();
        r.action.push('x');
        variants.push(r);
        let mut r = base.clone();
        r.entity_id = "a2".into();
        variants.push(r);
        let mut r = base.clone();
        r.changes[0].before = None;
        variants.push(r);
        let mut r = base.clone();
        r.changes[0].before = Some(String::new());
        variants.push(r);
        let mut r = base.clone();
        r.request_id = String::new();
        variants.push(r);
        let mut r = base.clone();
        r.occurred_at += chrono::Duration::microseconds(1);
        variants.push(r);
        let mut r = base.clone();
        r.actor = Actor::System("cli".into());
        variants.push(r);
        let mut r = base.clone();
        r.received_at = r.received_at.map(|t| t + chrono::Duration::microseconds(1));
        variants.push(r);
        // Blanking the receive time is a change too (another version of the encoding).
        let mut r = base.clone();
        r.received_at = None;
        variants.push(r);
        // Moving bytes between adjacent fields is not a collision (length prefixes).
        let mut r = base.clone();
        r.entity_type = "appointmenta".into();
        r.entity_id = "1".into();
        variants.push(r);
        for v in variants {
            assert_ne!(v.leaf_hash(0), h, "{v:?}");
        }
    }

    #[test]
    fn a_record_without_a_receive_time_keeps_the_first_encoding() {
        let mut r = sample();
        r.received_at = None;
        let bytes = r.canonical_bytes(3);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        assert!(text.contains("medbook.audit.v1.record"), "{text}");
        // v1 ends with occurred_at: nothing after it.
        assert!(text.ends_with("2025-12-06T05:46:40.123456Z"), "{text}");
    }

    #[test]
    fn only_the_future_is_bounded() {
        let now = DateTime::from_timestamp_micros(1_765_000_000_000_000).unwrap();
        let intake = Intake::at(now, chrono::Duration::minutes(5));
        intake
            .check_occurred_at(now - chrono::Duration::days(3))
            .unwrap();
        intake
            .check_occurred_at(now + chrono::Duration::minutes(5))
            .unwrap();
        let err = intake
            .check_occurred_at(
                now + chrono::Duration::minutes(5) + chrono::Duration::milliseconds(1),
            )
            .unwrap_err();
        assert!(err.contains("300 s"), "{err}");
        assert!(err.contains("300.001 s ahead"), "{err}");
        // The receive time is kept in PostgreSQL's precision.
        let odd = now + chrono::Duration::nanoseconds(1_999);
        assert_eq!(
            Intake::at(odd, chrono::Duration::zero()).received_at,
            now + chrono::Duration::microseconds(1)
        );
    }

    #[test]
    fn text_checks() {
        let mut v = Vec::new();
        check_text(&mut v, "a", "", true, 5);
        check_text(&mut v, "b", "toolong", true, 5);
        check_text(&mut v, "c", "x\0", false, 5);
        check_text(&mut v, "d", "", false, 5);
        assert_eq!(
            v.iter().map(|v| v.field.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
    }
}
