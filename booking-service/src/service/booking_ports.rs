//! Storage traits of the booking core: clinics, doctors, slots, appointments, reviews.
//! Operations that must be atomic (booking, rescheduling, cancelling, reviewing) are one
//! method each, implemented as one database transaction; the first three are decided
//! by `domain::decisions` inside it.

use super::ports::{Page, PageRequest, RepoError};
use crate::domain::booking::{
    Appointment, AppointmentStatus, AuthorShownAs, BookingRejection, Clinic, ClinicInput, Doctor,
    DoctorInput, DoctorStatus, Rating, Review, Slot, SlotStatus,
};
use crate::domain::decisions::{
    AttendanceRequest, BookingRequest, CancelRequest, RescheduleRequest,
};
use crate::domain::schedule::SlotRange;
use crate::domain::{AppointmentId, ClinicId, DoctorId, ReviewId, SlotId, UserId};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

#[async_trait]
pub trait ClinicRepository: Send + Sync {
    async fn create(&self, id: ClinicId, input: ClinicInput) -> Result<Clinic, RepoError>;
    async fn update(&self, id: ClinicId, input: ClinicInput) -> Result<Option<Clinic>, RepoError>;
    /// Fails with a foreign-key violation while doctors belong to the clinic.
    async fn delete(&self, id: ClinicId) -> Result<bool, RepoError>;
    async fn get(&self, id: ClinicId) -> Result<Option<Clinic>, RepoError>;
    async fn list(
        &self,
        city: Option<String>,
        page: PageRequest,
    ) -> Result<Page<Clinic>, RepoError>;
    async fn doctor_ids(&self, clinic_id: ClinicId) -> Result<Vec<DoctorId>, RepoError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoctorSort {
    Name,
    /// Best rated first; unrated last.
    Rating,
}

#[derive(Debug, Clone)]
pub struct DoctorQuery {
    pub name: Option<String>,
    pub specialty: Option<String>,
    pub status: Option<DoctorStatus>,
    pub city: Option<String>,
    pub clinic_id: Option<ClinicId>,
    /// Has an available future slot on this date in its clinic's time zone.
    pub available_on: Option<NaiveDate>,
    pub sort: DoctorSort,
    pub page: PageRequest,
}

/// What removing a doctor did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoctorRemoval {
    Deleted,
    /// The doctor has appointments, so the record stays (history) as `inactive`.
    Deactivated,
    NotFound,
}

#[async_trait]
pub trait DoctorRepository: Send + Sync {
    async fn create(&self, id: DoctorId, input: DoctorInput) -> Result<Doctor, RepoError>;
    async fn update(&self, id: DoctorId, input: DoctorInput) -> Result<Option<Doctor>, RepoError>;
    async fn remove(&self, id: DoctorId) -> Result<DoctorRemoval, RepoError>;
    async fn get(&self, id: DoctorId) -> Result<Option<Doctor>, RepoError>;
    /// The doctor a user account is linked to.
    async fn by_user(&self, user_id: UserId) -> Result<Option<Doctor>, RepoError>;
    /// `now` decides which slots count as future for `available_on`.
    async fn search(
        &self,
        query: DoctorQuery,
        now: DateTime<Utc>,
    ) -> Result<Page<Doctor>, RepoError>;
}

/// How a bulk generation went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenerationReport {
    pub created: u64,
    /// Ranges that overlapped existing slots (e.g. a re-run) and were left out.
    pub skipped: u64,
}

/// What a slot status change or deletion did.
#[derive(Debug, Clone, PartialEq)]
pub enum SlotChange {
    Done(Option<Slot>),
    NotFound,
    /// The slot is booked (or has appointment history, for deletion).
    Booked,
}

#[derive(Debug, Clone)]
pub struct SlotFilter {
    pub doctor_id: DoctorId,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub status: Option<SlotStatus>,
}

/// Days a slot listing spans when `to` is not given, and at most.
pub const DEFAULT_LIST_DAYS: i64 = 14;
pub const MAX_LIST_DAYS: i64 = 62;

impl SlotFilter {
    /// A doctor's slots starting in `[from, to)`: `from` defaults to `now`, `to` to
    /// [`DEFAULT_LIST_DAYS`] later, and the window may span at most [`MAX_LIST_DAYS`].
    /// The same rules for every transport.
    pub fn parse(
        doctor_id: DoctorId,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        status: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Self, crate::domain::ValidationErrors> {
        let mut e = crate::domain::ValidationErrors::new();
        let from = from.unwrap_or(now);
        let to = to.unwrap_or(from + chrono::Duration::days(DEFAULT_LIST_DAYS));
        if to <= from {
            e.push("to", "must be after from");
        } else if to - from > chrono::Duration::days(MAX_LIST_DAYS) {
            e.push(
                "to",
                format!("must be at most {MAX_LIST_DAYS} days after from"),
            );
        }
        let status = e.check_opt("status", status.map(str::parse::<SlotStatus>));
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

#[async_trait]
pub trait SlotRepository: Send + Sync {
    /// Fails with an exclusion violation when it overlaps another slot of the doctor.
    async fn create(
        &self,
        id: SlotId,
        doctor_id: DoctorId,
        range: SlotRange,
    ) -> Result<Slot, RepoError>;
    async fn insert_generated(
        &self,
        doctor_id: DoctorId,
        ranges: Vec<SlotRange>,
    ) -> Result<GenerationReport, RepoError>;
    /// Blocks an available slot or unblocks a blocked one.
    async fn set_blocked(&self, id: SlotId, blocked: bool) -> Result<SlotChange, RepoError>;
    /// Deletes a slot that was never booked.
    async fn delete_unbooked(&self, id: SlotId) -> Result<SlotChange, RepoError>;
    async fn get(&self, id: SlotId) -> Result<Option<Slot>, RepoError>;
    async fn list(&self, filter: SlotFilter) -> Result<Vec<Slot>, RepoError>;
}

/// A booking's result: the appointment, and whether it is a replay of an earlier
/// request with the same idempotency key.
#[derive(Debug, Clone)]
pub struct Booked {
    pub appointment: Appointment,
    pub replayed: bool,
}

#[derive(Debug, Clone, Default)]
pub struct AppointmentFilter {
    pub patient_id: Option<UserId>,
    pub doctor_id: Option<DoctorId>,
    pub status: Option<AppointmentStatus>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait AppointmentRepository: Send + Sync {
    /// Locks the facts of `domain::decisions::decide_booking`, and writes its decision.
    async fn book(
        &self,
        req: BookingRequest,
    ) -> Result<Result<Booked, BookingRejection>, RepoError>;
    /// Locks the facts of `decide_reschedule`, and writes its decision.
    async fn reschedule(
        &self,
        req: RescheduleRequest,
    ) -> Result<Result<Appointment, BookingRejection>, RepoError>;
    /// Locks the facts of `decide_cancel`, and writes its decision.
    async fn cancel(
        &self,
        req: CancelRequest,
    ) -> Result<Result<Appointment, BookingRejection>, RepoError>;
    /// Locks the facts of `decide_attendance`, and writes its decision.
    async fn record_attendance(
        &self,
        req: AttendanceRequest,
    ) -> Result<Result<Appointment, BookingRejection>, RepoError>;
    /// The appointment whose manage-link token hashes to `token_hash`.
    async fn by_manage_token(&self, token_hash: String) -> Result<Option<Appointment>, RepoError>;
    async fn get(&self, id: AppointmentId) -> Result<Option<Appointment>, RepoError>;
    async fn list(
        &self,
        filter: AppointmentFilter,
        page: PageRequest,
    ) -> Result<Page<Appointment>, RepoError>;
}

#[derive(Debug, Clone)]
pub struct ReviewCommand {
    pub review_id: ReviewId,
    pub doctor_id: DoctorId,
    pub patient_id: UserId,
    pub appointment_id: AppointmentId,
    pub rating: Rating,
    pub text: String,
    pub author_shown_as: AuthorShownAs,
    pub now: DateTime<Utc>,
}

pub use crate::domain::rejection::ReviewRejection;

#[async_trait]
pub trait ReviewRepository: Send + Sync {
    /// Stores the review and updates the doctor's rating totals in one transaction.
    async fn create(
        &self,
        cmd: ReviewCommand,
    ) -> Result<Result<Review, ReviewRejection>, RepoError>;
    async fn list(&self, doctor_id: DoctorId, page: PageRequest)
        -> Result<Page<Review>, RepoError>;
}
