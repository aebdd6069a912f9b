//! The waitlist: a patient waits for a slot of a doctor between two dates. When a slot
//! in that range is free (cancelled, moved away from, newly opened), the first patient
//! in line is offered it: the slot is held for them for a while, and a link books it.
//! An unanswered offer lapses, the slot passes to the next in line and is never offered
//! to that entry again. What is decided here: the entry's range, and what an offer
//! says and records.

use super::audit::AuditEntry;
use super::links;
use super::{DoctorId, SlotId, UserId, ValidationErrors};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use medbook_shared::events::{ClinicInfo, DoctorInfo, EventEnvelope, PatientInfo, WaitlistOffer};
use uuid::Uuid;

/// Longest range an entry may span, in days.
pub const MAX_RANGE_DAYS: i64 = 92;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitlistStatus {
    /// In line.
    Waiting,
    /// Waiting, with a slot held for it (derived from the hold, not stored).
    Offered,
    /// The patient booked an offered slot.
    Booked,
    /// The patient left the line.
    Left,
}

impl WaitlistStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Offered => "offered",
            Self::Booked => "booked",
            Self::Left => "left",
        }
    }
}

impl std::str::FromStr for WaitlistStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [Self::Waiting, Self::Offered, Self::Booked, Self::Left]
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| format!("unknown waitlist status `{s}`"))
    }
}

/// The days an entry waits for, checked: `to` not before `from`, not over, and at
/// most [`MAX_RANGE_DAYS`] long. `today`: the caller's today (UTC; a day of slack
/// covers every clinic's zone).
pub fn parse_range(
    from: NaiveDate,
    to: NaiveDate,
    today: NaiveDate,
) -> Result<(NaiveDate, NaiveDate), ValidationErrors> {
    let mut e = ValidationErrors::new();
    if to < from {
        e.push("to_date", "must not be before from_date");
    } else if (to - from).num_days() >= MAX_RANGE_DAYS {
        e.push(
            "to_date",
            format!("must be less than {MAX_RANGE_DAYS} days after from_date"),
        );
    }
    if today.pred_opt().is_some_and(|yesterday| to < yesterday) {
        e.push("to_date", "must not be in the past");
    }
    e.finish(|| Some((from, to)))
}

/// A free slot matched to the first entry in line, with what its e-mail carries.
#[derive(Debug, Clone)]
pub struct Match {
    pub entry_id: Uuid,
    pub slot_id: SlotId,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub patient: PatientInfo,
    pub doctor: DoctorInfo,
    pub clinic: ClinicInfo,
}

/// An offer to write: the hold (its token's hash), the event carrying the link, the
/// audit record.
#[derive(Debug, Clone)]
pub struct NewOffer {
    pub entry_id: Uuid,
    pub slot_id: SlotId,
    pub patient_id: UserId,
    pub token_hash: String,
    pub expires_at: DateTime<Utc>,
    pub event: EventEnvelope,
    pub audit: AuditEntry,
}

/// The offer of `m`, held for `hold` from `now`, its link under `offer_url`.
pub fn offer(m: Match, now: DateTime<Utc>, hold: Duration, offer_url: &str) -> NewOffer {
    let token = links::random_token();
    let expires_at = now + hold;
    let audit = AuditEntry::new("waitlist.offered", "waitlist_entry", m.entry_id).created(
        &serde_json::json!({
            "slot_id": m.slot_id,
            "patient_id": m.patient.id,
            "doctor_id": m.doctor.id,
            "starts_at": m.starts_at,
            "expires_at": expires_at,
        }),
    );
    NewOffer {
        entry_id: m.entry_id,
        slot_id: m.slot_id,
        patient_id: UserId(m.patient.id),
        token_hash: links::token_hash(&token),
        expires_at,
        event: EventEnvelope::new(
            now,
            WaitlistOffer {
                entry_id: m.entry_id,
                slot_id: m.slot_id.0,
                starts_at: m.starts_at,
                ends_at: m.ends_at,
                patient: m.patient,
                doctor: m.doctor,
                clinic: m.clinic,
                link: links::with_token(offer_url, &token),
                expires_at,
            },
        ),
        audit,
    }
}

/// An entry as its patient sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitlistEntry {
    pub id: Uuid,
    pub patient_id: UserId,
    pub doctor_id: DoctorId,
    pub doctor_name: String,
    pub from_date: NaiveDate,
    pub to_date: NaiveDate,
    pub status: WaitlistStatus,
    /// While `offered`: the held slot and until when.
    pub offer: Option<HeldSlot>,
    /// Once `booked`: the appointment.
    pub appointment_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldSlot {
    pub slot_id: SlotId,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// What an offer's link finds.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferView {
    pub entry_id: Uuid,
    pub patient_id: UserId,
    pub slot: HeldSlot,
    pub doctor_name: String,
    pub specialty: String,
    pub clinic_name: String,
    pub clinic_address: String,
    pub time_zone: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn a_range_is_ordered_current_and_bounded() {
        let today = d("2026-12-07");
        assert!(parse_range(d("2026-12-08"), d("2026-12-20"), today).is_ok());
        assert!(parse_range(d("2026-12-06"), d("2026-12-06"), today).is_ok());
        let fields = |r: Result<_, ValidationErrors>| {
            r.unwrap_err()
                .0
                .into_iter()
                .map(|f| f.field)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            fields(parse_range(d("2026-12-20"), d("2026-12-08"), today)),
            ["to_date"]
        );
        assert_eq!(
            fields(parse_range(d("2026-12-01"), d("2026-12-03"), today)),
            ["to_date"]
        );
        assert_eq!(
            fields(parse_range(d("2026-12-08"), d("2027-03-10"), today)),
            ["to_date"]
        );
    }

    #[test]
    fn an_offer_carries_a_link_whose_token_only_its_hash_keeps() {
        let now = Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, 0).unwrap();
        let m = Match {
            entry_id: Uuid::from_u128(1),
            slot_id: SlotId(Uuid::from_u128(2)),
            starts_at: now + Duration::days(1),
            ends_at: now + Duration::days(1) + Duration::minutes(30),
            patient: PatientInfo {
                id: Uuid::from_u128(3),
                email: "p@example.com".into(),
                full_name: "P".into(),
            },
            doctor: DoctorInfo {
                id: Uuid::from_u128(4),
                full_name: "D".into(),
                specialty: "S".into(),
            },
            clinic: ClinicInfo {
                id: Uuid::from_u128(5),
                name: "C".into(),
                city: "X".into(),
                address: "A".into(),
                time_zone: "UTC".into(),
            },
        };
        let o = offer(
            m,
            now,
            Duration::minutes(15),
            "https://c.example/waitlist/offer",
        );
        assert_eq!(o.expires_at, now + Duration::minutes(15));
        let medbook_shared::events::Event::Waitlist(w) = &o.event.event else {
            panic!("an offer event")
        };
        let token = w
            .link
            .strip_prefix("https://c.example/waitlist/offer?token=")
            .unwrap();
        assert!(links::well_formed(token));
        assert_eq!(links::token_hash(token), o.token_hash);
        assert_eq!(w.expires_at, o.expires_at);
        assert_eq!(o.event.key(), Uuid::from_u128(1).to_string());
    }
}
