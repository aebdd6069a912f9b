//! Value objects with private fields: the only way to get one is `parse`, so an
//! `Email` is always a valid, normalised e-mail address, a `Password` always fits bcrypt, …

use chrono::{Datelike, NaiveDate};
use std::fmt;

pub const MAX_EMAIL_LEN: usize = 254;
pub const MAX_NAME_CHARS: usize = 200;
/// bcrypt only looks at the first 72 bytes; longer passwords are refused, never truncated.
pub const MAX_PASSWORD_BYTES: usize = 72;
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Digits of an E.164 number after the `+` (the first one is never 0).
pub const MIN_PHONE_DIGITS: usize = 7;
pub const MAX_PHONE_DIGITS: usize = 15;
/// How many calendar years back a birth date may lie.
pub const MAX_AGE_YEARS: i32 = 130;

/// An e-mail address, trimmed and lower-cased (addresses are case-insensitive here).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let s = raw.trim().to_lowercase();
        if s.is_empty() {
            return Err("must not be empty".into());
        }
        if s.len() > MAX_EMAIL_LEN {
            return Err(format!("must be at most {MAX_EMAIL_LEN} characters"));
        }
        let Some((local, domain)) = s.split_once('@') else {
            return Err("must be an e-mail address like name@example.com".into());
        };
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !local_ok || !domain_ok {
            return Err("must be an e-mail address like name@example.com".into());
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A person's full name: trimmed, 1–200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullName(String);

impl FullName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let s = raw.trim();
        if s.is_empty() {
            return Err("must not be empty".into());
        }
        if s.chars().count() > MAX_NAME_CHARS {
            return Err(format!("must be at most {MAX_NAME_CHARS} characters"));
        }
        if s.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A plain-text password that bcrypt can hash without truncation.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.chars().count() < MIN_PASSWORD_CHARS {
            return Err(format!("must be at least {MIN_PASSWORD_CHARS} characters"));
        }
        if raw.len() > MAX_PASSWORD_BYTES {
            return Err(format!(
                "must be at most {MAX_PASSWORD_BYTES} bytes (UTF-8); longer passwords are not accepted"
            ));
        }
        if raw.contains('\0') {
            return Err("must not contain NUL characters".into());
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// A phone number in E.164 form (`+` and 7–15 digits); spaces, dashes, dots and
/// parentheses are accepted on input and removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone(String);

impl Phone {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let compact: String = raw
            .trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
            .collect();
        let digits = compact.strip_prefix('+').ok_or_else(|| {
            "must be in international format, starting with + and the country code".to_owned()
        })?;
        if !(MIN_PHONE_DIGITS..=MAX_PHONE_DIGITS).contains(&digits.len())
            || !digits.chars().all(|c| c.is_ascii_digit())
            || digits.starts_with('0')
        {
            return Err(format!(
                "must be + followed by {MIN_PHONE_DIGITS} to {MAX_PHONE_DIGITS} digits (E.164)"
            ));
        }
        Ok(Self(compact))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A birth date: not in the future and not more than 130 years ago.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BirthDate(NaiveDate);

impl BirthDate {
    pub fn parse(date: NaiveDate, today: NaiveDate) -> Result<Self, String> {
        if date > today {
            return Err("must not be in the future".into());
        }
        if today.year() - date.year() > MAX_AGE_YEARS {
            return Err(format!("must be within the last {MAX_AGE_YEARS} years"));
        }
        Ok(Self(date))
    }

    pub fn get(self) -> NaiveDate {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ann.Lee@Example.COM ").unwrap().as_str(),
            "ann.lee@example.com"
        );
        for bad in [
            "",
            "plain",
            "a@b",
            "@example.com",
            "a@.com",
            "a b@example.com",
            "a..b@example.com",
            "<script>@x.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad} accepted");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(Email::parse(&long).is_err());
    }

    #[test]
    fn password_limits_are_in_bytes_and_never_truncate() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse(&"a".repeat(72)).is_ok());
        assert!(Password::parse(&"a".repeat(73)).is_err());
        // 24 three-byte characters are 72 bytes; one more is 75 bytes.
        assert!(Password::parse(&"€".repeat(24)).is_ok());
        assert!(Password::parse(&"€".repeat(25)).is_err());
        assert_eq!(
            format!("{:?}", Password::parse("secret-pass").unwrap()),
            "Password(***)"
        );
    }

    #[test]
    fn names_and_phones() {
        assert!(FullName::parse("  ").is_err());
        assert!(FullName::parse(&"x".repeat(201)).is_err());
        assert!(FullName::parse("Ann\u{0}Lee").is_err());
        assert_eq!(FullName::parse(" Ann Lee ").unwrap().as_str(), "Ann Lee");
        assert_eq!(
            Phone::parse("+49 (30) 123-4567").unwrap().as_str(),
            "+49301234567"
        );
        for bad in [
            "0301234567",
            "+12",
            "+12345678901234567",
            "+49abc1234567",
            "+0123456789",
        ] {
            assert!(Phone::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn birth_dates() {
        let today = NaiveDate::from_ymd_opt(2026, 1, 10).unwrap();
        assert!(BirthDate::parse(NaiveDate::from_ymd_opt(2026, 1, 11).unwrap(), today).is_err());
        assert!(BirthDate::parse(NaiveDate::from_ymd_opt(1890, 1, 1).unwrap(), today).is_err());
        assert!(BirthDate::parse(NaiveDate::from_ymd_opt(1990, 5, 1).unwrap(), today).is_ok());
    }
}
