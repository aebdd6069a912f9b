//! Inputs every transport takes alike (HTTP bodies and headers, gRPC messages, the
//! command line): parsed here once, so a rule cannot differ by the way in. Each parser
//! names the field as its transport calls it.

use super::booking::parse_text;
use super::decisions::Actor;
use super::{FieldError, ValidationErrors};
use uuid::Uuid;

/// Longest reason of a booking or cancellation, in characters.
pub const MAX_REASON_CHARS: usize = 1000;
/// Longest idempotency key, in (visible ASCII) characters.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 200;

/// The reason for a visit: optional (empty when absent), trimmed, at most
/// [`MAX_REASON_CHARS`], no control characters but line breaks and tabs.
pub fn visit_reason(raw: Option<&str>) -> Result<String, FieldError> {
    parse_text(raw.unwrap_or(""), MAX_REASON_CHARS, true).map_err(|m| FieldError::new("reason", m))
}

/// The reason of a cancellation: like a visit's, and required when an admin cancels
/// (the patient is told why their appointment was taken away).
pub fn cancel_reason(actor: Actor, raw: Option<&str>) -> Result<Option<String>, ValidationErrors> {
    let reason = raw
        .map(|r| parse_text(r, MAX_REASON_CHARS, true))
        .transpose()
        .map_err(|m| ValidationErrors(vec![FieldError::new("reason", m)]))?;
    if matches!(actor, Actor::Admin) && reason.as_deref().is_none_or(str::is_empty) {
        return Err(ValidationErrors(vec![FieldError::new(
            "reason",
            "is required when an admin cancels",
        )]));
    }
    Ok(reason)
}

/// The reason an admin gives for moving an appointment: optional text; past the
/// clinic's deadline the booking rules require one (`reason_required`).
pub fn change_reason(raw: Option<&str>) -> Result<Option<String>, ValidationErrors> {
    raw.map(|r| parse_text(r, MAX_REASON_CHARS, true))
        .transpose()
        .map(|r| r.filter(|r| !r.trim().is_empty()))
        .map_err(|m| ValidationErrors(vec![FieldError::new("reason", m)]))
}

/// Whether `s` is a valid idempotency key: 1 to [`MAX_IDEMPOTENCY_KEY_CHARS`] visible
/// ASCII characters.
pub fn valid_idempotency_key(s: &str) -> bool {
    (1..=MAX_IDEMPOTENCY_KEY_CHARS).contains(&s.len()) && s.chars().all(|c| c.is_ascii_graphic())
}

/// An optional idempotency key, reported under `field`.
pub fn idempotency_key(field: &str, raw: Option<&str>) -> Result<Option<String>, FieldError> {
    match raw {
        None => Ok(None),
        Some(k) if valid_idempotency_key(k) => Ok(Some(k.to_owned())),
        Some(_) => Err(invalid_idempotency_key(field)),
    }
}

/// The refusal of an idempotency key that is not 1 to 200 visible ASCII characters.
pub fn invalid_idempotency_key(field: &str) -> FieldError {
    FieldError::new(field, "must be 1 to 200 visible ASCII characters")
}

/// An id given as text, reported under `field`.
pub fn id(field: &str, raw: &str) -> Result<Uuid, FieldError> {
    raw.parse()
        .map_err(|_| FieldError::new(field, "must be a UUID"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::UserId;

    #[test]
    fn an_admin_must_say_why_a_patient_may_not() {
        for blank in [None, Some(""), Some("   ")] {
            let e = cancel_reason(Actor::Admin, blank).unwrap_err();
            assert_eq!(e.0[0].field, "reason");
            assert_eq!(e.0[0].message, "is required when an admin cancels");
        }
        assert_eq!(
            cancel_reason(Actor::Admin, Some(" doctor ill ")).unwrap(),
            Some("doctor ill".into())
        );
        let patient = Actor::Patient(UserId(Uuid::nil()));
        assert_eq!(cancel_reason(patient, None).unwrap(), None);
        let long = "x".repeat(MAX_REASON_CHARS + 1);
        assert_eq!(
            cancel_reason(patient, Some(&long)).unwrap_err().0[0].message,
            "must be at most 1000 characters"
        );
    }

    #[test]
    fn idempotency_keys_are_visible_ascii() {
        assert_eq!(idempotency_key("k", None).unwrap(), None);
        assert_eq!(
            idempotency_key("k", Some("a-1")).unwrap(),
            Some("a-1".into())
        );
        for bad in ["", "a b", "é", &"x".repeat(201)] {
            assert_eq!(idempotency_key("k", Some(bad)).unwrap_err().field, "k");
        }
        assert_eq!(id("slot_id", "nope").unwrap_err().message, "must be a UUID");
    }
}
