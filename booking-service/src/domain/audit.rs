//! What the audit log is told about a change: the action, the entity, and the fields
//! before and after. Built here, from domain values, by the code that makes the change;
//! the repository writes it in the change's own transaction (the audit sink of the
//! outbox), with who asked, through which door and under which request id taken from
//! the request's context.
//!
//! The log is immutable, so it holds ids, never what identifies a patient: names,
//! e-mail addresses, phone numbers and birth dates are recorded as changed without
//! their values ([`REDACTED`]). Passwords, hashes and tokens are never recorded at all.

use serde_json::Value;

/// The value that stands for personal data in a change.
pub const REDACTED: &str = "[redacted]";

/// Fields whose values never enter the log.
const PERSONAL: &[&str] = &["email", "pending_email", "full_name", "phone", "birth_date"];
/// Fields that are not even named.
const SECRET: &[&str] = &["password", "password_hash", "token", "token_hash", "secret"];

#[derive(Debug, Clone, PartialEq)]
pub struct FieldChange {
    pub field: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Who, when the request's context does not say: a login names the user it signed in,
/// a registration the account it created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedActor {
    pub user_id: String,
    pub role: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub action: &'static str,
    pub entity_type: &'static str,
    pub entity_id: String,
    pub changes: Vec<FieldChange>,
    pub actor: Option<NamedActor>,
}

impl AuditEntry {
    pub fn new(
        action: &'static str,
        entity_type: &'static str,
        entity_id: impl std::fmt::Display,
    ) -> Self {
        Self {
            action,
            entity_type,
            entity_id: entity_id.to_string(),
            changes: Vec::new(),
            actor: None,
        }
    }

    /// The change is made by (or for) this user.
    pub fn by(mut self, user_id: impl std::fmt::Display, role: &str) -> Self {
        self.actor = Some(NamedActor {
            user_id: user_id.to_string(),
            role: role.to_owned(),
        });
        self
    }

    /// One field from `before` to `after`; nothing when they are equal. Personal data is
    /// redacted and secrets are dropped.
    pub fn field(mut self, field: &str, before: Option<Value>, after: Option<Value>) -> Self {
        if before == after || SECRET.contains(&field) {
            return self;
        }
        let (before, after) = if PERSONAL.contains(&field) {
            let hide = |v: Option<Value>| v.map(|_| Value::String(REDACTED.into()));
            (hide(before), hide(after))
        } else {
            (before, after)
        };
        self.changes.push(FieldChange {
            field: field.to_owned(),
            before,
            after,
        });
        self
    }

    /// Every field of a new entity (a JSON object) as created.
    pub fn created(self, fields: &Value) -> Self {
        self.diff(&Value::Null, fields)
    }

    /// Every field of a deleted entity as gone.
    pub fn deleted(self, fields: &Value) -> Self {
        self.diff(fields, &Value::Null)
    }

    /// The fields that differ between two JSON objects (either may be null: creation or
    /// deletion), in name order.
    pub fn diff(mut self, before: &Value, after: &Value) -> Self {
        let empty = serde_json::Map::new();
        let b = before.as_object().unwrap_or(&empty);
        let a = after.as_object().unwrap_or(&empty);
        let mut names: Vec<&String> = b.keys().chain(a.keys()).collect();
        names.sort();
        names.dedup();
        for name in names {
            self = self.field(name, b.get(name).cloned(), a.get(name).cloned());
        }
        self
    }
}

/// A value as a JSON value (for [`AuditEntry::field`]).
pub fn json<T: serde::Serialize>(value: &T) -> Option<Value> {
    serde_json::to_value(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_diff_names_only_what_changed_and_hides_personal_data() {
        let e = AuditEntry::new("patient.updated", "user", "u1").diff(
            &json!({"email": "a@x.test", "gender": "female", "password_hash": "h1", "phone": null}),
            &json!({"email": "b@x.test", "gender": "female", "password_hash": "h2", "phone": "+1"}),
        );
        assert_eq!(
            e.changes,
            vec![
                FieldChange {
                    field: "email".into(),
                    before: Some(json!(REDACTED)),
                    after: Some(json!(REDACTED)),
                },
                FieldChange {
                    field: "phone".into(),
                    before: Some(json!(REDACTED)),
                    after: Some(json!(REDACTED)),
                },
            ]
        );
    }

    #[test]
    fn creation_and_deletion_have_one_side() {
        let c = AuditEntry::new("clinic.created", "clinic", "c").created(&json!({"name": "N"}));
        assert_eq!(c.changes[0].before, None);
        assert_eq!(c.changes[0].after, Some(json!("N")));
        let d = AuditEntry::new("clinic.deleted", "clinic", "c").deleted(&json!({"name": "N"}));
        assert_eq!(d.changes[0].before, Some(json!("N")));
        assert_eq!(d.changes[0].after, None);
    }
}

/// Longest accepted `entity_type`, `action` and `page_token` of an audit query.
pub const MAX_AUDIT_FILTER_CHARS: usize = 200;
pub const DEFAULT_AUDIT_PAGE: u32 = 50;
pub const MAX_AUDIT_PAGE: u32 = 100;

/// A query of the audit log: every filter optional, records match all given ones,
/// newest first. Valid once built by [`AuditFilter::parse`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    pub actor_id: Option<uuid::Uuid>,
    pub action: Option<String>,
    /// Inclusive lower bound on the change's time.
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// Exclusive upper bound.
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    pub per_page: u32,
    pub page_token: Option<String>,
}

impl AuditFilter {
    /// The filter, or every rule it breaks: texts of at most
    /// [`MAX_AUDIT_FILTER_CHARS`] without control characters, `entity_id` only with
    /// `entity_type`, 1 to [`MAX_AUDIT_PAGE`] per page, `to` after `from`.
    pub fn parse(raw: AuditFilter) -> Result<Self, super::ValidationErrors> {
        let mut e = super::ValidationErrors::new();
        for (field, value) in [
            ("entity_type", &raw.entity_type),
            ("entity_id", &raw.entity_id),
            ("action", &raw.action),
            ("page_token", &raw.page_token),
        ] {
            if let Some(v) = value {
                if v.chars().count() > MAX_AUDIT_FILTER_CHARS {
                    e.push(
                        field,
                        format!("must be at most {MAX_AUDIT_FILTER_CHARS} characters"),
                    );
                }
                if v.chars().any(char::is_control) {
                    e.push(field, "must not contain control characters");
                }
            }
        }
        if raw.entity_id.is_some() && raw.entity_type.is_none() {
            e.push("entity_id", "needs entity_type");
        }
        if !(1..=MAX_AUDIT_PAGE).contains(&raw.per_page) {
            e.push(
                "per_page",
                format!("must be between 1 and {MAX_AUDIT_PAGE}"),
            );
        }
        if let (Some(from), Some(to)) = (raw.from, raw.to) {
            if to <= from {
                e.push("to", "must be after from");
            }
        }
        e.finish(|| Some(raw))
    }
}

/// Who made a logged change: a user or a named system job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoggedActor {
    User { user_id: String, role: String },
    System(String),
    Unknown,
}

/// One changed field as logged: JSON texts, absent where the field did not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedChange {
    pub field: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// A record as the audit log holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRecord {
    /// Position in the tamper-evident log.
    pub index: u64,
    pub id: String,
    pub actor: LoggedActor,
    pub action: String,
    pub entity_type: String,
    pub entity_id: String,
    pub changes: Vec<LoggedChange>,
    pub source: String,
    pub request_id: Option<String>,
    pub occurred_at: Option<chrono::DateTime<chrono::Utc>>,
    pub received_at: Option<chrono::DateTime<chrono::Utc>>,
    pub appended_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// One page of the log, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedPage {
    pub items: Vec<LoggedRecord>,
    /// For the next page; `None` on the last.
    pub next_page_token: Option<String>,
}
