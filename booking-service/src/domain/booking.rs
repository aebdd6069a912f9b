//! Clinics, doctors, slots, appointments and reviews, and the rules of booking.
//! The rules that must hold under concurrency (one active appointment per slot,
//! non-overlapping slots) are also enforced by the database; the checks here give
//! precise error messages.

use super::{AppointmentId, ClinicId, DoctorId, ReviewId, SlotId, UserId, ValidationErrors};
use chrono::{DateTime, Duration, Utc};
use std::fmt;
use std::str::FromStr;

macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [&'static str] = &[$($text),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(format!("must be one of: {}", Self::ALL.join(", "))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(
    /// Whether a doctor takes bookings.
    DoctorStatus { Active => "active", OnLeave => "on_leave", Inactive => "inactive" }
);
text_enum!(SlotStatus { Available => "available", Booked => "booked", Blocked => "blocked" });
text_enum!(
    AppointmentStatus {
        Booked => "booked",
        Cancelled => "cancelled",
        Completed => "completed",
        NoShow => "no_show",
    }
);

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Clinic {
    pub id: ClinicId,
    pub name: String,
    pub city: String,
    pub address: String,
    pub time_zone: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Validated clinic fields (create and full update).
#[derive(Debug, Clone)]
pub struct ClinicInput {
    pub name: String,
    pub city: String,
    pub address: String,
    pub time_zone: chrono_tz::Tz,
}

/// A rating summary: average of 1–5 stars and how many reviews.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RatingSummary {
    pub average: Option<f64>,
    pub count: i64,
}

impl RatingSummary {
    pub fn from_totals(sum: i64, count: i64) -> Self {
        // In hundredths, rounded half up, in integers (ratings are 1–5, so it is at most
        // 500 and the conversion to f64 is exact).
        let average = (count > 0)
            .then(|| {
                let hundredths =
                    sum.checked_mul(200)?.checked_add(count)? / count.checked_mul(2)?;
                Some(f64::from(i32::try_from(hundredths).ok()?) / 100.0)
            })
            .flatten();
        Self { average, count }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Doctor {
    pub id: DoctorId,
    pub full_name: String,
    pub specialty: String,
    pub clinic: Clinic,
    pub status: DoctorStatus,
    pub bio: String,
    pub years_of_experience: i32,
    pub user_id: Option<UserId>,
    pub rating: RatingSummary,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Validated doctor fields (create and full update).
#[derive(Debug, Clone)]
pub struct DoctorInput {
    pub full_name: String,
    pub specialty: String,
    pub clinic_id: ClinicId,
    pub status: DoctorStatus,
    pub bio: String,
    pub years_of_experience: i32,
    pub user_id: Option<UserId>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub id: SlotId,
    pub doctor_id: DoctorId,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub status: SlotStatus,
}

/// An appointment with what a patient needs to see about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Appointment {
    pub id: AppointmentId,
    pub slot_id: SlotId,
    pub patient_id: UserId,
    pub doctor_id: DoctorId,
    pub doctor_name: String,
    pub clinic_id: ClinicId,
    pub clinic_name: String,
    pub time_zone: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub status: AppointmentStatus,
    pub reason: String,
    pub cancel_reason: Option<String>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A review as anyone may read it: the author as the patient chose to be shown, and
/// nothing that ties it to an appointment or an account.
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    pub id: ReviewId,
    pub doctor_id: DoctorId,
    /// The author as shown ([`AuthorShownAs::display`]).
    pub author: String,
    pub author_shown_as: AuthorShownAs,
    pub rating: i16,
    pub text: String,
    pub created_at: DateTime<Utc>,
}

/// How a review names its author in public; the patient chooses when writing it.
/// Initials by default: a doctor's public reviews must not list who saw that doctor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthorShownAs {
    /// "A. L." for Ann Lee.
    #[default]
    Initials,
    FullName,
    /// "Anonymous patient".
    Anonymous,
}

impl AuthorShownAs {
    pub const ALL: &'static [&'static str] = &["initials", "full_name", "anonymous"];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initials => "initials",
            Self::FullName => "full_name",
            Self::Anonymous => "anonymous",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "initials" => Ok(Self::Initials),
            "full_name" => Ok(Self::FullName),
            "anonymous" => Ok(Self::Anonymous),
            _ => Err(format!("must be one of {}", Self::ALL.join(", "))),
        }
    }

    /// The author's name as shown: initials of the first and last word, the whole
    /// name, or no name at all.
    pub fn display(self, full_name: &str) -> String {
        let initial = |w: &str| w.chars().next().map(|c| format!("{}.", c.to_uppercase()));
        let words: Vec<&str> = full_name.split_whitespace().collect();
        match self {
            Self::FullName if !words.is_empty() => words.join(" "),
            Self::Initials if !words.is_empty() => {
                let first = words.first().and_then(|w| initial(w));
                let last = (words.len() > 1)
                    .then(|| words.last().and_then(|w| initial(w)))
                    .flatten();
                first.into_iter().chain(last).collect::<Vec<_>>().join(" ")
            }
            _ => "Anonymous patient".into(),
        }
    }
}

/// 1 to 5 stars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rating(i16);

impl Rating {
    pub const MIN: i64 = 1;
    pub const MAX: i64 = 5;

    pub fn parse(v: i64) -> Result<Self, String> {
        match i16::try_from(v) {
            Ok(stars) if (Self::MIN..=Self::MAX).contains(&i64::from(stars)) => Ok(Self(stars)),
            _ => Err(format!(
                "must be an integer from {} to {}",
                Self::MIN,
                Self::MAX
            )),
        }
    }
    pub fn get(self) -> i16 {
        self.0
    }
}

/// Checks a free-text field: trimmed, at most `max` characters, no control characters
/// other than line breaks and tabs.
pub fn parse_text(raw: &str, max: usize, allow_empty: bool) -> Result<String, String> {
    let s = raw.trim();
    if !allow_empty && s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    if s.chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err("must not contain control characters".into());
    }
    Ok(s.to_owned())
}

/// Limits on what a patient may book, cancel and move: the service's defaults from
/// configuration, or, with [`BookingPolicy::for_practice`], a clinic's own rules with
/// its doctor's overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookingPolicy {
    /// A slot must start at least this long from now.
    pub min_notice: Duration,
    /// …and at most this far ahead.
    pub horizon: Duration,
    /// Future active appointments a patient may hold at once.
    pub max_active_per_patient: i64,
    /// A patient may cancel or reschedule up to this long before the visit (admins
    /// still may, with a reason).
    pub change_deadline: Duration,
    /// This many no-shows within `no_show_window` stop self-service booking (admins can
    /// still book for the patient). `None`: never.
    pub no_show_limit: Option<i64>,
    pub no_show_window: Duration,
    /// Whether the patient is e-mailed about a recorded no-show.
    pub no_show_email: bool,
}

/// Days of no-shows counted when a clinic sets a limit but no window.
pub const DEFAULT_NO_SHOW_WINDOW_DAYS: i64 = 180;

/// A clinic's own booking rules; `None`: the service's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClinicPolicy {
    pub min_notice_minutes: Option<i32>,
    pub horizon_days: Option<i32>,
    pub change_deadline_minutes: Option<i32>,
    pub max_active_per_patient: Option<i32>,
    pub no_show_limit: Option<i32>,
    pub no_show_window_days: Option<i32>,
    pub no_show_email: bool,
}

/// A doctor's overrides of their clinic's rules about their own schedule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DoctorPolicy {
    pub min_notice_minutes: Option<i32>,
    pub horizon_days: Option<i32>,
    pub change_deadline_minutes: Option<i32>,
}

/// Inclusive bounds of each policy value, as the database checks them.
pub mod policy_bounds {
    pub const MINUTES: (i32, i32) = (0, 525_600);
    pub const HORIZON_DAYS: (i32, i32) = (1, 730);
    pub const MAX_ACTIVE: (i32, i32) = (1, 100);
    pub const NO_SHOW_LIMIT: (i32, i32) = (1, 100);
    pub const NO_SHOW_WINDOW_DAYS: (i32, i32) = (1, 3650);
}

fn check_bound(
    e: &mut super::ValidationErrors,
    field: &'static str,
    value: Option<i32>,
    (min, max): (i32, i32),
) {
    if let Some(v) = value {
        if !(min..=max).contains(&v) {
            e.push(field, format!("must be between {min} and {max}"));
        }
    }
}

/// The bounds of the rules a clinic and a doctor both set (notice, horizon, deadline).
fn check_schedule(
    e: &mut super::ValidationErrors,
    min_notice_minutes: Option<i32>,
    horizon_days: Option<i32>,
    change_deadline_minutes: Option<i32>,
) {
    use policy_bounds::*;
    check_bound(e, "min_notice_minutes", min_notice_minutes, MINUTES);
    check_bound(e, "horizon_days", horizon_days, HORIZON_DAYS);
    check_bound(
        e,
        "change_deadline_minutes",
        change_deadline_minutes,
        MINUTES,
    );
}

impl ClinicPolicy {
    pub fn validate(self) -> Result<Self, super::ValidationErrors> {
        use policy_bounds::*;
        let mut e = super::ValidationErrors::new();
        check_schedule(
            &mut e,
            self.min_notice_minutes,
            self.horizon_days,
            self.change_deadline_minutes,
        );
        check_bound(
            &mut e,
            "max_active_per_patient",
            self.max_active_per_patient,
            MAX_ACTIVE,
        );
        check_bound(&mut e, "no_show_limit", self.no_show_limit, NO_SHOW_LIMIT);
        check_bound(
            &mut e,
            "no_show_window_days",
            self.no_show_window_days,
            NO_SHOW_WINDOW_DAYS,
        );
        e.finish(|| Some(self))
    }
}

impl DoctorPolicy {
    pub fn validate(self) -> Result<Self, super::ValidationErrors> {
        let mut e = super::ValidationErrors::new();
        check_schedule(
            &mut e,
            self.min_notice_minutes,
            self.horizon_days,
            self.change_deadline_minutes,
        );
        e.finish(|| Some(self))
    }
}

impl BookingPolicy {
    /// The rules of one doctor's practice: the doctor's override, else the clinic's
    /// rule, else this (the service's default).
    pub fn for_practice(self, clinic: &ClinicPolicy, doctor: &DoctorPolicy) -> BookingPolicy {
        let minutes = |v: Option<i32>| v.map(|m| Duration::minutes(i64::from(m)));
        let days = |v: Option<i32>| v.map(|d| Duration::days(i64::from(d)));
        BookingPolicy {
            min_notice: minutes(doctor.min_notice_minutes)
                .or(minutes(clinic.min_notice_minutes))
                .unwrap_or(self.min_notice),
            horizon: days(doctor.horizon_days)
                .or(days(clinic.horizon_days))
                .unwrap_or(self.horizon),
            change_deadline: minutes(doctor.change_deadline_minutes)
                .or(minutes(clinic.change_deadline_minutes))
                .unwrap_or(self.change_deadline),
            max_active_per_patient: clinic
                .max_active_per_patient
                .map_or(self.max_active_per_patient, i64::from),
            no_show_limit: clinic.no_show_limit.map(i64::from).or(self.no_show_limit),
            no_show_window: days(clinic.no_show_window_days).unwrap_or(self.no_show_window),
            no_show_email: clinic.no_show_email || self.no_show_email,
        }
    }
}

/// Why a slot cannot be booked (or moved to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BookingRejection {
    SlotNotFound,
    SlotTaken,
    SlotBlocked,
    SlotInPast,
    TooShortNotice,
    BeyondHorizon,
    DoctorUnavailable,
    TooManyActive,
    DifferentDoctor,
    SameSlot,
    AppointmentNotFound,
    NotActive,
    AlreadyStarted,
    IdempotencyKeyReused,
    /// The patient has not proved control of their e-mail address yet.
    EmailUnverified,
    /// Too close to the visit for a patient to cancel or reschedule (clinic policy).
    ChangeDeadlinePassed,
    /// The patient has another active appointment at an overlapping time.
    PatientOverlap,
    /// The patient missed too many visits lately to book themselves (clinic policy).
    TooManyNoShows,
    /// The slot is held for a patient on the doctor's waitlist.
    SlotHeld,
    /// Attendance can be recorded once the appointment has started.
    NotStarted,
    /// The appointment's attendance was recorded already.
    AttendanceRecorded,
    /// No patient account has this id (an admin booking for someone).
    PatientNotFound,
    /// An admin moving an appointment past the clinic's deadline must say why.
    ReasonRequired,
}

impl BookingRejection {
    /// Every rejection, for metric series that exist before the first refusal.
    pub const ALL: [BookingRejection; 23] = [
        Self::SlotNotFound,
        Self::SlotTaken,
        Self::SlotBlocked,
        Self::SlotInPast,
        Self::TooShortNotice,
        Self::BeyondHorizon,
        Self::DoctorUnavailable,
        Self::TooManyActive,
        Self::DifferentDoctor,
        Self::SameSlot,
        Self::AppointmentNotFound,
        Self::NotActive,
        Self::AlreadyStarted,
        Self::IdempotencyKeyReused,
        Self::EmailUnverified,
        Self::ChangeDeadlinePassed,
        Self::PatientOverlap,
        Self::TooManyNoShows,
        Self::SlotHeld,
        Self::NotStarted,
        Self::AttendanceRecorded,
        Self::PatientNotFound,
        Self::ReasonRequired,
    ];

    /// The stable machine code (both not-found rejections are `not_found`).
    pub fn code(self) -> &'static str {
        match self {
            Self::SlotNotFound | Self::AppointmentNotFound | Self::PatientNotFound => "not_found",
            Self::SlotTaken => "slot_taken",
            Self::SlotBlocked => "slot_unavailable",
            Self::SlotInPast => "slot_in_past",
            Self::TooShortNotice => "too_short_notice",
            Self::BeyondHorizon => "beyond_booking_horizon",
            Self::DoctorUnavailable => "doctor_unavailable",
            Self::TooManyActive => "too_many_appointments",
            Self::DifferentDoctor => "different_doctor",
            Self::SameSlot => "same_slot",
            Self::NotActive => "appointment_not_active",
            Self::AlreadyStarted => "appointment_started",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::EmailUnverified => "email_unverified",
            Self::ChangeDeadlinePassed => "change_deadline_passed",
            Self::PatientOverlap => "overlapping_appointment",
            Self::TooManyNoShows => "too_many_no_shows",
            Self::SlotHeld => "slot_held",
            Self::NotStarted => "appointment_not_started",
            Self::AttendanceRecorded => "attendance_recorded",
            Self::ReasonRequired => "reason_required",
        }
    }
}

/// Whether this patient may book at all: only with a verified e-mail address, so that
/// confirmations and reminders never go to someone who did not ask for them.
pub fn check_patient(email_verified: bool) -> Result<(), BookingRejection> {
    if email_verified {
        Ok(())
    } else {
        Err(BookingRejection::EmailUnverified)
    }
}

/// Whether a slot can be taken now, given the doctor's status. Checked inside the
/// booking transaction with the slot row locked.
pub fn check_bookable(
    slot: &Slot,
    doctor_status: DoctorStatus,
    now: DateTime<Utc>,
    policy: &BookingPolicy,
) -> Result<(), BookingRejection> {
    if slot.starts_at <= now {
        return Err(BookingRejection::SlotInPast);
    }
    match slot.status {
        SlotStatus::Available => {}
        SlotStatus::Booked => return Err(BookingRejection::SlotTaken),
        SlotStatus::Blocked => return Err(BookingRejection::SlotBlocked),
    }
    if doctor_status != DoctorStatus::Active {
        return Err(BookingRejection::DoctorUnavailable);
    }
    if slot.starts_at < now + policy.min_notice {
        return Err(BookingRejection::TooShortNotice);
    }
    if slot.starts_at > now + policy.horizon {
        return Err(BookingRejection::BeyondHorizon);
    }
    Ok(())
}

/// Longest clinic name, city and address, in characters.
pub const MAX_CLINIC_NAME_CHARS: usize = 200;
pub const MAX_CITY_CHARS: usize = 100;
pub const MAX_ADDRESS_CHARS: usize = 300;

/// Clinic fields as they arrive, validated together.
pub fn parse_clinic(
    name: &str,
    city: &str,
    address: &str,
    time_zone: &str,
) -> Result<ClinicInput, ValidationErrors> {
    let mut e = ValidationErrors::new();
    let name = e.check("name", parse_text(name, MAX_CLINIC_NAME_CHARS, false));
    let city = e.check("city", parse_text(city, MAX_CITY_CHARS, false));
    let address = e.check("address", parse_text(address, MAX_ADDRESS_CHARS, false));
    let tz = e.check("time_zone", super::schedule::parse_time_zone(time_zone));
    e.finish(|| {
        Some(ClinicInput {
            name: name?,
            city: city?,
            address: address?,
            time_zone: tz?,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn reviewers_are_shown_as_they_chose_and_by_initials_by_default() {
        let shown = |s: AuthorShownAs, n: &str| s.display(n);
        assert_eq!(shown(AuthorShownAs::default(), "Ann Marie Lee"), "A. L.");
        assert_eq!(shown(AuthorShownAs::Initials, "ömer  çelik"), "Ö. Ç.");
        assert_eq!(shown(AuthorShownAs::Initials, "Madonna"), "M.");
        assert_eq!(shown(AuthorShownAs::FullName, " Ann   Lee "), "Ann Lee");
        assert_eq!(
            shown(AuthorShownAs::Anonymous, "Ann Lee"),
            "Anonymous patient"
        );
        assert_eq!(shown(AuthorShownAs::Initials, "  "), "Anonymous patient");
        for name in AuthorShownAs::ALL {
            assert_eq!(AuthorShownAs::parse(name).unwrap().as_str(), *name);
        }
        assert!(AuthorShownAs::parse("email").is_err());
    }

    fn slot(starts_in: Duration, status: SlotStatus) -> (Slot, DateTime<Utc>) {
        let now = Utc::now();
        (
            Slot {
                id: SlotId(Uuid::new_v4()),
                doctor_id: DoctorId(Uuid::new_v4()),
                starts_at: now + starts_in,
                ends_at: now + starts_in + Duration::minutes(30),
                status,
            },
            now,
        )
    }

    const POLICY: BookingPolicy = BookingPolicy {
        min_notice: Duration::hours(2),
        horizon: Duration::days(90),
        max_active_per_patient: 5,
        change_deadline: Duration::zero(),
        no_show_limit: None,
        no_show_window: Duration::days(180),
        no_show_email: false,
    };

    #[test]
    fn a_doctors_override_wins_over_the_clinic_which_wins_over_the_default() {
        let clinic = ClinicPolicy {
            min_notice_minutes: Some(60),
            change_deadline_minutes: Some(24 * 60),
            max_active_per_patient: Some(2),
            no_show_limit: Some(3),
            no_show_email: true,
            ..ClinicPolicy::default()
        };
        let doctor = DoctorPolicy {
            min_notice_minutes: Some(0),
            ..DoctorPolicy::default()
        };
        let p = POLICY.for_practice(&clinic, &doctor);
        assert_eq!(p.min_notice, Duration::zero());
        assert_eq!(p.horizon, Duration::days(90));
        assert_eq!(p.change_deadline, Duration::hours(24));
        assert_eq!(p.max_active_per_patient, 2);
        assert_eq!(p.no_show_limit, Some(3));
        assert_eq!(p.no_show_window, Duration::days(180));
        assert!(p.no_show_email);
        assert_eq!(
            POLICY.for_practice(&ClinicPolicy::default(), &DoctorPolicy::default()),
            POLICY
        );
    }

    #[test]
    fn policy_values_out_of_bounds_are_refused_by_field() {
        let e = ClinicPolicy {
            horizon_days: Some(0),
            no_show_limit: Some(101),
            ..ClinicPolicy::default()
        }
        .validate()
        .unwrap_err();
        let fields: Vec<_> = e.0.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["horizon_days", "no_show_limit"]);
        assert!(DoctorPolicy {
            change_deadline_minutes: Some(-1),
            ..DoctorPolicy::default()
        }
        .validate()
        .is_err());
    }

    #[test]
    fn bookable_rules() {
        let (s, now) = slot(Duration::days(1), SlotStatus::Available);
        assert_eq!(
            check_bookable(&s, DoctorStatus::Active, now, &POLICY),
            Ok(())
        );
        assert_eq!(
            check_bookable(&s, DoctorStatus::OnLeave, now, &POLICY),
            Err(BookingRejection::DoctorUnavailable)
        );
        let (s, now) = slot(Duration::days(1), SlotStatus::Booked);
        assert_eq!(
            check_bookable(&s, DoctorStatus::Active, now, &POLICY),
            Err(BookingRejection::SlotTaken)
        );
        let (s, now) = slot(Duration::days(1), SlotStatus::Blocked);
        assert_eq!(
            check_bookable(&s, DoctorStatus::Active, now, &POLICY),
            Err(BookingRejection::SlotBlocked)
        );
        let (s, now) = slot(Duration::minutes(-5), SlotStatus::Available);
        assert_eq!(
            check_bookable(&s, DoctorStatus::Active, now, &POLICY),
            Err(BookingRejection::SlotInPast)
        );
        let (s, now) = slot(Duration::minutes(30), SlotStatus::Available);
        assert_eq!(
            check_bookable(&s, DoctorStatus::Active, now, &POLICY),
            Err(BookingRejection::TooShortNotice)
        );
        let (s, now) = slot(Duration::days(91), SlotStatus::Available);
        assert_eq!(
            check_bookable(&s, DoctorStatus::Active, now, &POLICY),
            Err(BookingRejection::BeyondHorizon)
        );
    }

    #[test]
    fn ratings_and_summaries() {
        assert!(Rating::parse(0).is_err());
        assert!(Rating::parse(6).is_err());
        assert_eq!(Rating::parse(5).unwrap().get(), 5);
        assert_eq!(RatingSummary::from_totals(0, 0).average, None);
        assert_eq!(RatingSummary::from_totals(14, 3).average, Some(4.67));
    }

    #[test]
    fn texts() {
        assert!(parse_text(&"x".repeat(2001), 2000, true).is_err());
        assert_eq!(
            parse_text("  fine\nline ", 2000, true).unwrap(),
            "fine\nline"
        );
        assert!(parse_text("", 10, false).is_err());
        assert!(parse_text("bell\u{7}", 10, true).is_err());
    }
}
