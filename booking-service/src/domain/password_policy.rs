//! What a new password must not be, beyond its length (`Password::parse`): one of the
//! most common passwords, or built from the account's own e-mail address or name
//! (OWASP ASVS 5.0 §6.2.4 and §6.2.11).
//!
//! The list is Django's `common-passwords.txt` (20,000 entries, BSD licence; see
//! `booking-service/data/README.md`), compiled into the binary. Comparison ignores
//! case, as Django's does: `Password1` is as guessable as `password1`.

use super::{Password, ValidationErrors};
use std::collections::HashSet;
use std::sync::LazyLock;

static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../../data/common-passwords.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
});

/// How many common passwords are refused.
pub fn common_password_count() -> usize {
    COMMON.len()
}

/// Parts of a name or address shorter than this are not looked for in a password
/// (`ann` in `Annapolis-1987` would refuse too much).
const MIN_PART_CHARS: usize = 4;

/// Checks `password` for an account with this e-mail address and full name.
pub fn check(password: &Password, email: &str, full_name: &str) -> Result<(), String> {
    let lower = password.expose().to_lowercase();
    if COMMON.contains(lower.as_str()) {
        return Err(
            "is one of the most common passwords; choose one that is harder to guess".into(),
        );
    }
    let compact: String = lower.chars().filter(|c| c.is_alphanumeric()).collect();
    let email = email.trim().to_lowercase();
    let local = email.split('@').next().unwrap_or_default();
    let name = full_name.to_lowercase();
    let mut parts: Vec<String> = vec![email.clone(), local.to_owned()];
    parts.push(name.chars().filter(|c| c.is_alphanumeric()).collect());
    parts.extend(
        name.split(|c: char| !c.is_alphanumeric())
            .chain(local.split(|c: char| !c.is_alphanumeric()))
            .map(str::to_owned),
    );
    let found = parts
        .iter()
        .filter(|p| p.chars().count() >= MIN_PART_CHARS)
        .any(|p| lower.contains(p.as_str()) || compact.contains(p.as_str()));
    if found {
        return Err("must not contain your e-mail address or name".into());
    }
    Ok(())
}

/// [`check`], refused as a validation error of `field`.
pub fn require(
    field: &str,
    password: &Password,
    email: &str,
    full_name: &str,
) -> Result<(), ValidationErrors> {
    let mut errors = ValidationErrors::new();
    errors.check(field, check(password, email, full_name));
    errors.finish(|| Some(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(s: &str) -> Password {
        Password::parse(s).unwrap()
    }

    #[test]
    fn the_list_is_shipped_and_large() {
        assert!(
            common_password_count() >= 10_000,
            "{}",
            common_password_count()
        );
    }

    #[test]
    fn common_passwords_are_refused_whatever_their_case() {
        for p in [
            "password",
            "12345678",
            "PassWord1",
            "qwertyuiop",
            "iloveyou",
        ] {
            assert!(check(&pw(p), "ann@example.com", "Ann Lee").is_err(), "{p}");
        }
    }

    #[test]
    fn the_accounts_own_address_and_name_are_refused() {
        let email = "ann.lee@example.com";
        for p in [
            "ann.lee@example.com!",
            "my-ann.lee-pass",
            "zz-Annabel-zz",
            "annabel-lee-forever",
            "AnnabelLee#1",
        ] {
            assert!(check(&pw(p), email, "Annabel Lee").is_err(), "{p} accepted");
        }
    }

    #[test]
    fn ordinary_strong_passwords_pass() {
        for p in [
            "correct horse battery",
            "Tr0ub4dor&3x",
            "plum-violin-42-sky",
        ] {
            assert_eq!(check(&pw(p), "ann@example.com", "Ann Lee"), Ok(()), "{p}");
        }
    }
}
