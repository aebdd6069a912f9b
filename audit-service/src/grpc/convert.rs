//! Messages of `medbook.audit.v1` to and from the domain: input checked once here,
//! every problem reported as a field violation.

use crate::merkle::Hash;
use crate::ports::{Cursor, Filter, StoredRecord};
use crate::record::{
    check_text, limits, to_micros, Actor, FieldChange, Intake, Record, Violation, ROLES,
};
use crate::signing::Checkpoint;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use chrono::DateTime;
use medbook_proto::audit::v1 as pb;
use medbook_proto::time::{from_proto, to_proto};
use uuid::Uuid;

fn uuid(violations: &mut Vec<Violation>, field: &str, value: &str) -> Option<Uuid> {
    if value.is_empty() {
        violations.push(Violation {
            field: field.to_owned(),
            description: "is required".into(),
        });
        return None;
    }
    match Uuid::parse_str(value) {
        Ok(id) => Some(id),
        Err(_) => {
            violations.push(Violation {
                field: field.to_owned(),
                description: "must be a UUID".into(),
            });
            None
        }
    }
}

fn push(violations: &mut Vec<Violation>, field: String, description: &str) {
    violations.push(Violation {
        field,
        description: description.to_owned(),
    });
}

/// The record `r` (field `records[i]`) as taken in by `intake` (stamped with its
/// receive time), or what is wrong with it.
pub fn record(
    i: usize,
    r: &pb::AuditRecord,
    intake: &Intake,
    violations: &mut Vec<Violation>,
) -> Option<Record> {
    let at = |f: &str| format!("records[{i}].{f}");
    let before = violations.len();
    let id = uuid(violations, &at("id"), &r.id);
    let actor = match r.actor.as_ref().and_then(|a| a.kind.as_ref()) {
        None => {
            push(violations, at("actor"), "is required (user or system)");
            None
        }
        Some(pb::actor::Kind::User(u)) => {
            let id = uuid(violations, &at("actor.user.user_id"), &u.user_id);
            if !ROLES.contains(&u.role.as_str()) {
                push(
                    violations,
                    at("actor.user.role"),
                    "must be patient, doctor or admin",
                );
            }
            id.map(|id| Actor::User {
                id,
                role: u.role.clone(),
            })
        }
        Some(pb::actor::Kind::System(name)) => {
            check_text(
                violations,
                &at("actor.system"),
                name,
                true,
                limits::SYSTEM_ACTOR,
            );
            Some(Actor::System(name.clone()))
        }
    };
    check_text(violations, &at("action"), &r.action, true, limits::ACTION);
    check_text(
        violations,
        &at("entity_type"),
        &r.entity_type,
        true,
        limits::ENTITY_TYPE,
    );
    check_text(
        violations,
        &at("entity_id"),
        &r.entity_id,
        true,
        limits::ENTITY_ID,
    );
    check_text(violations, &at("source"), &r.source, true, limits::SOURCE);
    check_text(
        violations,
        &at("request_id"),
        &r.request_id,
        false,
        limits::REQUEST_ID,
    );
    if r.changes.len() > limits::CHANGES {
        push(
            violations,
            at("changes"),
            &format!("must have at most {} entries", limits::CHANGES),
        );
    }
    let mut total = r.action.len()
        + r.entity_type.len()
        + r.entity_id.len()
        + r.source.len()
        + r.request_id.len();
    for (j, c) in r.changes.iter().take(limits::CHANGES).enumerate() {
        let f = |name: &str| at(&format!("changes[{j}].{name}"));
        check_text(violations, &f("field"), &c.field, true, limits::FIELD);
        for (name, value) in [("before", &c.before), ("after", &c.after)] {
            if let Some(v) = value {
                check_text(violations, &f(name), v, false, limits::VALUE);
                total += v.len();
            }
        }
        total += c.field.len();
    }
    if total > limits::RECORD {
        push(
            violations,
            at("changes"),
            &format!("the record must be at most {} bytes", limits::RECORD),
        );
    }
    let occurred_at = match r.occurred_at.as_ref() {
        None => {
            push(violations, at("occurred_at"), "is required");
            None
        }
        Some(t) => match from_proto(t) {
            Some(t) => match intake.check_occurred_at(t) {
                Ok(()) => Some(to_micros(t)),
                Err(problem) => {
                    push(violations, at("occurred_at"), &problem);
                    None
                }
            },
            None => {
                push(violations, at("occurred_at"), "is not a valid timestamp");
                None
            }
        },
    };
    if violations.len() > before {
        return None;
    }
    Some(Record {
        id: id?,
        actor: actor?,
        action: r.action.clone(),
        entity_type: r.entity_type.clone(),
        entity_id: r.entity_id.clone(),
        changes: r
            .changes
            .iter()
            .map(|c| FieldChange {
                field: c.field.clone(),
                before: c.before.clone(),
                after: c.after.clone(),
            })
            .collect(),
        source: r.source.clone(),
        request_id: r.request_id.clone(),
        occurred_at: occurred_at?,
        received_at: Some(intake.received_at),
    })
}

/// The protobuf form of a record.
pub fn to_message(r: &Record) -> pb::AuditRecord {
    pb::AuditRecord {
        id: r.id.to_string(),
        actor: Some(pb::Actor {
            kind: Some(match &r.actor {
                Actor::User { id, role } => pb::actor::Kind::User(pb::UserActor {
                    user_id: id.to_string(),
                    role: role.clone(),
                }),
                Actor::System(name) => pb::actor::Kind::System(name.clone()),
            }),
        }),
        action: r.action.clone(),
        entity_type: r.entity_type.clone(),
        entity_id: r.entity_id.clone(),
        changes: r
            .changes
            .iter()
            .map(|c| pb::FieldChange {
                field: c.field.clone(),
                before: c.before.clone(),
                after: c.after.clone(),
            })
            .collect(),
        source: r.source.clone(),
        request_id: r.request_id.clone(),
        traceparent: String::new(),
        occurred_at: Some(to_proto(r.occurred_at)),
    }
}

/// A stored row as `StoredRecord` (a row that no longer parses is shown as stored).
pub fn stored(row: &StoredRecord) -> pb::StoredRecord {
    let record = row
        .record()
        .map(|r| to_message(&r))
        .unwrap_or_else(|| pb::AuditRecord {
            id: row.id.to_string(),
            action: row.action.clone(),
            entity_type: row.entity_type.clone(),
            entity_id: row.entity_id.clone(),
            source: row.source.clone(),
            request_id: row.request_id.clone(),
            occurred_at: Some(to_proto(row.occurred_at)),
            ..Default::default()
        });
    pb::StoredRecord {
        index: row.index,
        record: Some(record),
        appended_at: Some(to_proto(row.appended_at)),
        leaf_hash: row.leaf_hash.clone(),
        received_at: row.received_at.map(to_proto),
    }
}

pub fn checkpoint(cp: &Checkpoint) -> pb::Checkpoint {
    pb::Checkpoint {
        origin: cp.origin.clone(),
        tree_size: cp.tree_size,
        root_hash: cp.root.to_vec(),
        issued_at: Some(to_proto(cp.issued_at)),
        signature: cp.signature.clone(),
        key_id: cp.key_id.clone(),
        public_key: cp.public_key.clone(),
        signed_text: cp.signed_text.clone(),
    }
}

pub fn hashes(path: &[Hash]) -> Vec<Vec<u8>> {
    path.iter().map(|h| h.to_vec()).collect()
}

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 100;

/// An opaque page token: where the previous page ended.
pub fn page_token(c: &Cursor) -> String {
    B64URL.encode(format!(
        "v1:{}:{}",
        c.occurred_at.timestamp_micros(),
        c.index
    ))
}

fn parse_token(token: &str) -> Option<Cursor> {
    let text = String::from_utf8(B64URL.decode(token).ok()?).ok()?;
    let mut parts = text.split(':');
    if parts.next()? != "v1" {
        return None;
    }
    let micros: i64 = parts.next()?.parse().ok()?;
    let index: u64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some(Cursor {
        occurred_at: DateTime::from_timestamp_micros(micros)?,
        index,
    })
}

fn opt(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// `Query`'s filter, page start and page size.
pub fn query(r: &pb::QueryRequest) -> Result<(Filter, Option<Cursor>, u32), Vec<Violation>> {
    let mut v = Vec::new();
    check_text(
        &mut v,
        "entity_type",
        &r.entity_type,
        false,
        limits::ENTITY_TYPE,
    );
    check_text(&mut v, "entity_id", &r.entity_id, false, limits::ENTITY_ID);
    check_text(&mut v, "action", &r.action, false, limits::ACTION);
    if !r.entity_id.is_empty() && r.entity_type.is_empty() {
        push(&mut v, "entity_type".into(), "is required with entity_id");
    }
    let actor_id = if r.actor_id.is_empty() {
        None
    } else {
        uuid(&mut v, "actor_id", &r.actor_id).map(|id| id.to_string())
    };
    let mut time = |field: &str, t: &Option<prost_types::Timestamp>| match t {
        None => None,
        Some(t) => {
            let parsed = from_proto(t);
            if parsed.is_none() {
                push(&mut v, field.to_owned(), "is not a valid timestamp");
            }
            parsed
        }
    };
    let from = time("from", &r.from);
    let to = time("to", &r.to);
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            push(&mut v, "to".into(), "must not be before from");
        }
    }
    let page_size = match r.page_size {
        0 => DEFAULT_PAGE_SIZE,
        n if n <= MAX_PAGE_SIZE => n,
        _ => {
            push(
                &mut v,
                "page_size".into(),
                &format!("must be between 1 and {MAX_PAGE_SIZE} (0 means {DEFAULT_PAGE_SIZE})"),
            );
            DEFAULT_PAGE_SIZE
        }
    };
    let cursor = if r.page_token.is_empty() {
        None
    } else {
        let c = parse_token(&r.page_token);
        if c.is_none() {
            push(
                &mut v,
                "page_token".into(),
                "is not a token this service issued",
            );
        }
        c
    };
    if !v.is_empty() {
        return Err(v);
    }
    Ok((
        Filter {
            entity_type: opt(&r.entity_type),
            entity_id: opt(&r.entity_id),
            actor_id,
            action: opt(&r.action),
            from,
            to,
        },
        cursor,
        page_size,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn page_tokens_round_trip_and_garbage_is_refused() {
        let c = Cursor {
            occurred_at: DateTime::from_timestamp_micros(1_700_000_000_000_001).unwrap(),
            index: 42,
        };
        assert_eq!(parse_token(&page_token(&c)), Some(c));
        for bad in [
            "",
            "!!",
            "djE6eDp5",
            &B64URL.encode("v2:1:2"),
            &B64URL.encode("v1:1:2:3"),
        ] {
            assert_eq!(parse_token(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_good_record_converts_and_a_bad_one_lists_every_problem() {
        let good = pb::AuditRecord {
            id: Uuid::new_v4().to_string(),
            actor: Some(pb::Actor {
                kind: Some(pb::actor::Kind::System("cli".into())),
            }),
            action: "slot.created".into(),
            entity_type: "slot".into(),
            entity_id: Uuid::new_v4().to_string(),
            changes: vec![],
            source: "cli".into(),
            request_id: String::new(),
            traceparent: String::new(),
            occurred_at: Some(to_proto(Utc::now())),
        };
        let intake = Intake::now(chrono::Duration::minutes(5));
        let mut v = Vec::new();
        let r = record(0, &good, &intake, &mut v).unwrap();
        assert!(v.is_empty());
        assert_eq!(to_message(&r).id, good.id);
        assert_eq!(r.received_at, Some(intake.received_at));
        let bad = pb::AuditRecord {
            id: "nope".into(),
            actor: None,
            action: String::new(),
            occurred_at: None,
            ..good.clone()
        };
        assert!(record(3, &bad, &intake, &mut v).is_none());
        let fields: Vec<_> = v.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "records[3].id",
                "records[3].actor",
                "records[3].action",
                "records[3].occurred_at"
            ]
        );
    }

    #[test]
    fn occurred_at_may_be_late_but_not_far_ahead_of_the_intake() {
        let intake = Intake::now(chrono::Duration::minutes(5));
        let at = |t: DateTime<Utc>| pb::AuditRecord {
            id: Uuid::new_v4().to_string(),
            actor: Some(pb::Actor {
                kind: Some(pb::actor::Kind::System("cli".into())),
            }),
            action: "slot.created".into(),
            entity_type: "slot".into(),
            entity_id: "s1".into(),
            source: "cli".into(),
            occurred_at: Some(to_proto(t)),
            ..Default::default()
        };
        let mut v = Vec::new();
        let late = intake.received_at - chrono::Duration::hours(6);
        let r = record(0, &at(late), &intake, &mut v).unwrap();
        assert_eq!(r.occurred_at, late);
        assert_eq!(r.received_at, Some(intake.received_at));
        let soon = intake.received_at + chrono::Duration::minutes(4);
        assert!(record(1, &at(soon), &intake, &mut v).is_some());
        assert!(v.is_empty(), "{v:?}");
        let ahead = intake.received_at + chrono::Duration::minutes(6);
        assert!(record(2, &at(ahead), &intake, &mut v).is_none());
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].field, "records[2].occurred_at");
        assert!(v[0].description.contains("300 s"), "{v:?}");
    }
}
