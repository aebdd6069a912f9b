//! Shapes shared by several endpoints: users, paging.

use crate::domain::{User, ValidationErrors};
use crate::service::ports::PageRequest;
use chrono::{DateTime, NaiveDate, Utc};
use paperclip::actix::Apiv2Schema;
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

pub const MAX_PER_PAGE: u32 = 100;
pub const DEFAULT_PER_PAGE: u32 = 20;
pub const MAX_PAGE: u32 = 1_000_000;
/// Longest search filter (`name`, `specialty`, `city` of doctors, `q` of patients).
pub const MAX_FILTER_CHARS: usize = 200;

/// A user's profile as the API shows it (never the password hash).
#[derive(Debug, Serialize, Apiv2Schema)]
pub struct UserResponse {
    pub id: Uuid,
    pub email: String,
    /// `patient`, `admin` or `doctor`.
    pub role: String,
    pub full_name: String,
    pub birth_date: Option<NaiveDate>,
    /// `female`, `male`, `other` or `undisclosed`.
    pub gender: Option<String>,
    /// E.164, e.g. `+4930123456`.
    pub phone: Option<String>,
    /// Whether the owner has proved control of `email`; patients book only once it is.
    pub email_verified: bool,
    /// An address change waiting for its verification link to be followed.
    pub pending_email: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<User> for UserResponse {
    fn from(u: User) -> Self {
        Self {
            id: u.id.0,
            email: u.email,
            role: u.role.as_str().to_owned(),
            full_name: u.full_name,
            birth_date: u.birth_date,
            gender: u.gender.map(|g| g.as_str().to_owned()),
            email_verified: u.email_verified_at.is_some(),
            pending_email: u.pending_email,
            phone: u.phone,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// `page` (from 1) and `per_page` (1–100, default 20).
pub fn page_request(
    page: Option<u32>,
    per_page: Option<u32>,
) -> Result<PageRequest, ValidationErrors> {
    let mut errors = ValidationErrors::new();
    let page = page.unwrap_or(1);
    let per_page = per_page.unwrap_or(DEFAULT_PER_PAGE);
    if page == 0 || page > MAX_PAGE {
        errors.push("page", format!("must be between 1 and {MAX_PAGE}"));
    }
    if per_page == 0 || per_page > MAX_PER_PAGE {
        errors.push("per_page", format!("must be between 1 and {MAX_PER_PAGE}"));
    }
    errors.finish(|| Some(PageRequest { page, per_page }))
}

/// Checks a search filter: at most `max` characters (when limited) and no NUL, which
/// PostgreSQL cannot hold in a text value (it used to fail the query: a 500).
pub fn check_filter(
    errors: &mut ValidationErrors,
    field: &str,
    value: Option<&str>,
    max: Option<usize>,
) {
    let Some(value) = value else { return };
    if let Some(max) = max.filter(|max| value.chars().count() > *max) {
        errors.push(field, format!("must be at most {max} characters"));
    } else if value.contains('\0') {
        errors.push(field, "must not contain NUL characters");
    }
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
pub fn double_option<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Declares a page DTO `{items, total, page, per_page}` of `$item`, convertible from a
/// service [`Page`](crate::service::ports::Page) of anything that converts into `$item`.
/// (A generic `PageResponse<T>` would be simpler, but paperclip names every
/// instantiation of a generic schema alike.)
macro_rules! page_dto {
    ($(#[$meta:meta])* $name:ident, $item:ty) => {
        $(#[$meta])*
        #[derive(Debug, serde::Serialize, paperclip::actix::Apiv2Schema)]
        pub struct $name {
            pub items: Vec<$item>,
            pub total: i64,
            pub page: u32,
            pub per_page: u32,
        }

        impl<T: Into<$item>> From<crate::service::ports::Page<T>> for $name {
            fn from(p: crate::service::ports::Page<T>) -> Self {
                Self {
                    items: p.items.into_iter().map(Into::into).collect(),
                    total: p.total,
                    page: p.page,
                    per_page: p.per_page,
                }
            }
        }
    };
}
pub(crate) use page_dto;

/// Times in responses, written as chrono writes them (RFC 3339 in UTC with `Z`, a
/// fraction only when there is one: milli-, micro- or nanoseconds) but without its
/// `fmt` machinery, which was the largest cost of serialising a day of slots.
pub mod rfc3339 {
    use chrono::{DateTime, Datelike, Timelike, Utc};
    use serde::Serializer;

    /// `count` decimal digits of `value`, zero-padded.
    fn digits(out: &mut String, value: u32, count: u32) {
        let mut div = 10u32.pow(count.saturating_sub(1));
        for _ in 0..count {
            out.push(char::from(
                b'0' + u8::try_from((value / div) % 10).unwrap_or(0),
            ));
            div /= 10;
        }
    }

    /// `t` as chrono's `Serialize` writes it, into `out`.
    pub fn write(t: &DateTime<Utc>, out: &mut String) {
        let Ok(year @ 0..=9999) = u32::try_from(t.year()) else {
            // Outside four digits chrono writes a sign and more digits: let it.
            out.push_str(&t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
            return;
        };
        // A leap second is written as second 60, as chrono does.
        let (second, nanos) = match t.nanosecond() {
            n if n >= 1_000_000_000 => (t.second() + 1, n - 1_000_000_000),
            n => (t.second(), n),
        };
        digits(out, year, 4);
        out.push('-');
        digits(out, t.month(), 2);
        out.push('-');
        digits(out, t.day(), 2);
        out.push('T');
        digits(out, t.hour(), 2);
        out.push(':');
        digits(out, t.minute(), 2);
        out.push(':');
        digits(out, second, 2);
        if nanos != 0 {
            out.push('.');
            if nanos % 1_000_000 == 0 {
                digits(out, nanos / 1_000_000, 3);
            } else if nanos % 1_000 == 0 {
                digits(out, nanos / 1_000, 6);
            } else {
                digits(out, nanos, 9);
            }
        }
        out.push('Z');
    }

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(30);
        write(t, &mut out);
        s.serialize_str(&out)
    }

    #[cfg(test)]
    mod tests {
        use chrono::{TimeZone, Utc};

        #[test]
        fn writes_what_chrono_writes() {
            let base = Utc.with_ymd_and_hms(2026, 12, 7, 9, 5, 3).unwrap();
            for t in [
                base,
                base + chrono::Duration::milliseconds(120),
                base + chrono::Duration::microseconds(120_001),
                base + chrono::Duration::nanoseconds(7),
                Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap(),
                Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
                Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
                Utc.with_ymd_and_hms(-5, 1, 1, 0, 0, 0).unwrap(),
                Utc.timestamp_opt(1_483_228_799, 1_500_000_000).unwrap(),
            ] {
                let ours = serde_json::to_string(&Wrap(t)).unwrap();
                let theirs = serde_json::to_string(&t).unwrap();
                assert_eq!(ours, theirs, "{t:?}");
            }
        }

        struct Wrap(chrono::DateTime<Utc>);
        impl serde::Serialize for Wrap {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                super::serialize(&self.0, s)
            }
        }
    }
}
