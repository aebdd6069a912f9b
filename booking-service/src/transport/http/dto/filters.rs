//! List queries, converted into the filters the use cases take (`TryFrom`), with every
//! invalid field reported at once.

use super::appointments::{AppointmentListQuery, PageQuery};
use super::catalog::{ClinicListQuery, DoctorSearchQuery};
use super::common::{check_filter, page_request, MAX_FILTER_CHARS};
use super::patients::PatientListQuery;
use super::slots::SlotListQuery;
use crate::domain::booking::{AppointmentStatus, DoctorStatus};
use crate::domain::ValidationErrors;
use crate::domain::{ClinicId, DoctorId, UserId};
use crate::service::booking_ports::{AppointmentFilter, DoctorQuery, DoctorSort, SlotFilter};
use crate::service::ports::PageRequest;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A page of some listing with its filter.
#[derive(Debug, Clone)]
pub struct Listing<F> {
    pub filter: F,
    pub page: PageRequest,
}

/// A free-text filter: checked, and blank means none.
fn search_text(e: &mut ValidationErrors, field: &str, value: Option<String>) -> Option<String> {
    check_filter(e, field, value.as_deref(), Some(MAX_FILTER_CHARS));
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
                    patient_id: q.patient_id.map(UserId),
                    doctor_id: q.doctor_id.map(DoctorId),
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
                clinic_id: q.clinic_id.map(ClinicId),
                available_on: q.available_on,
                sort: sort?,
                page: page?,
            })
        })
    }
}

/// A doctor's slots, `from` defaulting to `now` ([`SlotFilter::parse`]).
impl TryFrom<(Uuid, SlotListQuery, DateTime<Utc>)> for SlotFilter {
    type Error = ValidationErrors;
    fn try_from(
        (doctor_id, q, now): (Uuid, SlotListQuery, DateTime<Utc>),
    ) -> Result<Self, ValidationErrors> {
        SlotFilter::parse(DoctorId(doctor_id), q.from, q.to, q.status.as_deref(), now)
    }
}

/// Patients whose name or e-mail contains `search`.
impl TryFrom<PatientListQuery> for Listing<Option<String>> {
    type Error = ValidationErrors;
    fn try_from(q: PatientListQuery) -> Result<Self, ValidationErrors> {
        let mut e = ValidationErrors::new();
        let page = e.absorb(page_request(q.page, q.per_page));
        let search = q.q;
        check_filter(&mut e, "q", search.as_deref(), Some(MAX_FILTER_CHARS));
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
        let mut e = ValidationErrors::new();
        let page = e.absorb(page_request(q.page, q.per_page));
        check_filter(&mut e, "city", q.city.as_deref(), None);
        e.finish(|| {
            Some(Listing {
                filter: ClinicFilter { city: q.city },
                page: page?,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

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
