//! List queries, converted into the filters the use cases take (`TryFrom`), with every
//! invalid field reported at once.

use super::appointments::{AppointmentListQuery, PageQuery};
use super::catalog::{ClinicListQuery, DoctorSearchQuery};
use super::common::page_request;
use super::patients::PatientListQuery;
use super::slots::SlotListQuery;
use crate::domain::booking::{AppointmentStatus, DoctorStatus, SlotStatus};
use crate::domain::ValidationErrors;
use crate::service::booking_ports::{AppointmentFilter, DoctorQuery, DoctorSort, SlotFilter};
use crate::service::ports::PageRequest;
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

/// Free-text filters longer than this are refused.
pub const MAX_SEARCH_CHARS: usize = 200;

/// A page of some listing with its filter.
#[derive(Debug, Clone)]
pub struct Listing<F> {
    pub filter: F,
    pub page: PageRequest,
}

fn search_text(e: &mut ValidationErrors, field: &str, value: Option<String>) -> Option<String> {
    if value
        .as_ref()
        .is_some_and(|v| v.chars().count() > MAX_SEARCH_CHARS)
    {
        e.push(
            field,
            format!("must be at most {MAX_SEARCH_CHARS} characters"),
        );
    }
    value.filter(|s| !s.trim().is_empty())
}

impl TryFrom<PageQuery> for PageRequest {
    type Error = ValidationErrors;
    fn try_from(q: PageQuery) -> Result<Self, ValidationErrors> {
        page_request(q.page, q.per_page)
    }
}

impl TryFrom<AppointmentListQuery> for Listing<AppointmentFilter> {
    type Error = ValidationErrors;
    fn try_from(q: AppointmentListQuery) -> Result<Self, ValidationErrors> {
        let mut e = ValidationErrors::new();
        let page = e.absorb(page_request(q.page, q.per_page));
        let status = e.check_opt(
            "status",
            q.status.as_deref().map(str::parse::<AppointmentStatus>),
        );
        if let (Some(from), Some(to)) = (q.from, q.to) {
            if to <= from {
                e.push("to", "must be after from");
            }
        }
        e.finish(|| {
            Some(Listing {
                filter: AppointmentFilter {
                    patient_id: q.patient_id,
                    doctor_id: q.doctor_id,
                    status: status?,
                    from: q.from,
                    to: q.to,
                },
                page: page?,
            })
        })
    }
}

impl TryFrom<DoctorSearchQuery> for DoctorQuery {
    type Error = ValidationErrors;
    fn try_from(q: DoctorSearchQuery) -> Result<Self, ValidationErrors> {
        let mut e = ValidationErrors::new();
        let page = e.absorb(page_request(q.page, q.per_page));
        let status = e.check_opt(
            "status",
            q.status.as_deref().map(str::parse::<DoctorStatus>),
        );
        let sort = match q.sort.as_deref() {
            None | Some("name") => Some(DoctorSort::Name),
            Some("rating") => Some(DoctorSort::Rating),
            Some(_) => e.check("sort", Err("must be name or rating".to_owned())),
        };
        let name = search_text(&mut e, "name", q.name);
        let specialty = search_text(&mut e, "specialty", q.specialty);
        let city = search_text(&mut e, "city", q.city);
        e.finish(|| {
            Some(DoctorQuery {
                name,
                specialty,
                status: status?,
                city,
                clinic_id: q.clinic_id,
                available_on: q.available_on,
                sort: sort?,
                page: page?,
            })
        })
    }
}

/// The longest window of one slot listing.
pub const MAX_SLOT_WINDOW_DAYS: i64 = 62;
/// The window when `to` is not given.
pub const DEFAULT_SLOT_WINDOW_DAYS: i64 = 14;

/// A doctor's slots, `from` defaulting to `now`.
impl TryFrom<(Uuid, SlotListQuery, DateTime<Utc>)> for SlotFilter {
    type Error = ValidationErrors;
    fn try_from(
        (doctor_id, q, now): (Uuid, SlotListQuery, DateTime<Utc>),
    ) -> Result<Self, ValidationErrors> {
        let mut e = ValidationErrors::new();
        let from = q.from.unwrap_or(now);
        let to =
            q.to.unwrap_or(from + Duration::days(DEFAULT_SLOT_WINDOW_DAYS));
        if to <= from {
            e.push("to", "must be after from");
        } else if to - from > Duration::days(MAX_SLOT_WINDOW_DAYS) {
            e.push(
                "to",
                format!("must be at most {MAX_SLOT_WINDOW_DAYS} days after from"),
            );
        }
        let status = e.check_opt("status", q.status.as_deref().map(str::parse::<SlotStatus>));
        e.finish(|| {
            Some(SlotFilter {
                doctor_id,
                from,
                to,
                status: status?,
            })
        })
    }
}

/// Patients whose name or e-mail contains `search`.
impl TryFrom<PatientListQuery> for Listing<Option<String>> {
    type Error = ValidationErrors;
    fn try_from(q: PatientListQuery) -> Result<Self, ValidationErrors> {
        let mut e = ValidationErrors::new();
        let page = e.absorb(page_request(q.page, q.per_page));
        let search = q.q;
        if search
            .as_ref()
            .is_some_and(|s| s.chars().count() > MAX_SEARCH_CHARS)
        {
            e.push(
                "q",
                format!("must be at most {MAX_SEARCH_CHARS} characters"),
            );
        }
        e.finish(|| {
            Some(Listing {
                filter: search,
                page: page?,
            })
        })
    }
}

/// Clinics, optionally of one city.
pub struct ClinicFilter {
    pub city: Option<String>,
}

impl TryFrom<ClinicListQuery> for Listing<ClinicFilter> {
    type Error = ValidationErrors;
    fn try_from(q: ClinicListQuery) -> Result<Self, ValidationErrors> {
        Ok(Listing {
            filter: ClinicFilter { city: q.city },
            page: page_request(q.page, q.per_page)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_field_is_reported() {
        let q = AppointmentListQuery {
            status: Some("lost".into()),
            from: Some(Utc::now()),
            to: Some(Utc::now() - Duration::hours(1)),
            patient_id: None,
            doctor_id: None,
            page: Some(0),
            per_page: Some(1000),
        };
        let err = Listing::<AppointmentFilter>::try_from(q).unwrap_err();
        let fields: Vec<_> = err.0.iter().map(|f| f.field.as_str()).collect();
        for f in ["page", "per_page", "status", "to"] {
            assert!(fields.contains(&f), "{f} missing from {fields:?}");
        }
    }

    #[test]
    fn slot_windows_default_and_are_bounded() {
        let now = Utc::now();
        let q = || SlotListQuery {
            from: None,
            to: None,
            status: None,
        };
        let f = SlotFilter::try_from((Uuid::nil(), q(), now)).unwrap();
        assert_eq!((f.from, f.to), (now, now + Duration::days(14)));
        let too_long = SlotListQuery {
            to: Some(now + Duration::days(63)),
            ..q()
        };
        assert!(SlotFilter::try_from((Uuid::nil(), too_long, now)).is_err());
    }
}
