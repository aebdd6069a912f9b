//! Why a use case refuses a well-formed request: one enum the service returns and each
//! transport maps, once and exhaustively, to its own status and words. Each rejection
//! has a stable machine code (the `code` of an HTTP error body, the `reason` of a gRPC
//! `ErrorInfo`, a metric label); no status and no sentence is decided here.

use super::booking::{AppointmentStatus, BookingRejection};
use chrono::{DateTime, Utc};

/// Why a review cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewRejection {
    /// No such appointment of this patient with this doctor.
    NotYourAppointment,
    Cancelled,
    NotYetHappened,
    AlreadyReviewed,
}

/// Whether the patient's appointment (found with this doctor, or not) may be reviewed
/// now: it must exist, not be cancelled and be over. "Already reviewed" is the store's
/// unique answer, decided as the review is written.
pub fn check_reviewable(
    appointment: Option<(AppointmentStatus, DateTime<Utc>)>,
    now: DateTime<Utc>,
) -> Result<(), ReviewRejection> {
    let Some((status, ends_at)) = appointment else {
        return Err(ReviewRejection::NotYourAppointment);
    };
    if status == AppointmentStatus::Cancelled {
        return Err(ReviewRejection::Cancelled);
    }
    if ends_at > now {
        return Err(ReviewRejection::NotYetHappened);
    }
    Ok(())
}

/// A refusal by a business rule, or a clash with data already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// A booking, cancellation or reschedule refused by the booking rules (never one of
    /// the not-found ones: those are `ServiceError::NotFound`).
    Booking(BookingRejection),
    /// A review refused (never `NotYourAppointment`: that is not found).
    Review(ReviewRejection),
    /// Registration or an address change to an address another account has.
    EmailTaken,
    /// The address was taken by another account while the link was in the mail.
    AddressTaken,
    /// The address is verified already.
    AlreadyVerified,
    /// A clinic that still has doctors cannot be deleted.
    ClinicInUse,
    /// The user account already belongs to another doctor.
    UserAlreadyLinked,
    /// The doctor's record is linked to an account already.
    DoctorHasAccount,
    /// A slot may not overlap another of the same doctor.
    SlotOverlap,
    /// A booked slot cannot be changed.
    SlotBooked,
    /// A slot that has or had an appointment cannot be deleted (block it instead).
    SlotHasHistory,
    /// A patient with appointments or reviews cannot be deleted.
    PatientHasHistory,
    /// An import collided with an existing record; nothing was imported.
    ImportCollision,
    /// A unique value already exists.
    Duplicate,
    /// Overlaps an existing record.
    Overlap,
    /// The record is referenced by other records.
    InUse,
    /// A concurrent change won; the request may be retried.
    ConcurrentUpdate,
    /// The patient already waits for this doctor.
    AlreadyWaiting,
    /// A waitlist offer lapsed, was booked or withdrawn.
    OfferGone,
}

impl Rejection {
    /// The stable machine code.
    pub fn code(self) -> &'static str {
        match self {
            Rejection::Booking(b) => b.code(),
            Rejection::Review(r) => match r {
                ReviewRejection::NotYourAppointment => "not_found",
                ReviewRejection::Cancelled => "appointment_cancelled",
                ReviewRejection::NotYetHappened => "appointment_not_over",
                ReviewRejection::AlreadyReviewed => "already_reviewed",
            },
            Rejection::EmailTaken | Rejection::AddressTaken => "email_taken",
            Rejection::AlreadyVerified => "already_verified",
            Rejection::ClinicInUse => "clinic_in_use",
            Rejection::UserAlreadyLinked => "user_already_linked",
            Rejection::DoctorHasAccount => "doctor_has_account",
            Rejection::SlotOverlap => "slot_overlap",
            Rejection::SlotBooked | Rejection::SlotHasHistory => "slot_booked",
            Rejection::PatientHasHistory => "patient_has_history",
            Rejection::ImportCollision | Rejection::Duplicate => "conflict",
            Rejection::Overlap => "overlap",
            Rejection::InUse => "in_use",
            Rejection::ConcurrentUpdate => "concurrent_update",
            Rejection::AlreadyWaiting => "already_on_waitlist",
            Rejection::OfferGone => "offer_gone",
        }
    }
}

impl From<BookingRejection> for Rejection {
    fn from(r: BookingRejection) -> Self {
        Rejection::Booking(r)
    }
}

impl From<ReviewRejection> for Rejection {
    fn from(r: ReviewRejection) -> Self {
        Rejection::Review(r)
    }
}

/// Why an access token is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No credentials were sent.
    Missing,
    /// Credentials were sent, but not as a bearer token.
    NotBearer,
    /// The header or metadata value is not visible ASCII.
    Malformed,
    Expired,
    /// A valid token, but not an access token.
    NotAccessToken,
    /// Bad signature, wrong issuer or audience, not a token at all.
    Invalid,
    /// Logged out, or the password changed since it was issued.
    Revoked,
    /// The refresh token was used already (the session is ended).
    RefreshReused,
    /// Unknown, expired or revoked refresh token.
    RefreshInvalid,
    /// The account the token was issued to no longer exists.
    AccountGone,
}
