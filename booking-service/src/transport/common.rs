//! What HTTP and gRPC share: the words a client is told of a refusal (one table, so a
//! patient reads the same sentence whichever way they came in) and the bearer form of
//! credentials, and what kind of refusal each rejection is. Below the transports there
//! are only the domain's enums.

use crate::domain::booking::BookingRejection;
use crate::domain::rejection::{AuthFailure, Rejection, ReviewRejection};

/// What kind of refusal a rejection is, which each transport turns into its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The caller must do something first (verify the address).
    ActFirst,
    /// There is nothing of this (or nothing of the caller's).
    NotFound,
    /// It clashes with what is stored (a taken slot, a concurrent change): read again
    /// or choose another.
    Clash,
    /// Against a business rule.
    Rule,
}

/// The kind of each rejection: one exhaustive table for every transport.
pub fn refusal(r: Rejection) -> Refusal {
    use BookingRejection as B;
    match r {
        Rejection::Booking(b) => match b {
            B::EmailUnverified => Refusal::ActFirst,
            B::SlotNotFound | B::AppointmentNotFound | B::PatientNotFound => Refusal::NotFound,
            B::SlotTaken
            | B::SlotBlocked
            | B::SameSlot
            | B::NotActive
            | B::SlotHeld
            | B::AttendanceRecorded => Refusal::Clash,
            B::SlotInPast
            | B::TooShortNotice
            | B::BeyondHorizon
            | B::DoctorUnavailable
            | B::TooManyActive
            | B::DifferentDoctor
            | B::AlreadyStarted
            | B::IdempotencyKeyReused
            | B::ChangeDeadlinePassed
            | B::PatientOverlap
            | B::TooManyNoShows
            | B::NotStarted
            | B::ReasonRequired => Refusal::Rule,
        },
        Rejection::Review(r) => match r {
            ReviewRejection::NotYourAppointment => Refusal::NotFound,
            ReviewRejection::Cancelled | ReviewRejection::NotYetHappened => Refusal::Rule,
            ReviewRejection::AlreadyReviewed => Refusal::Clash,
        },
        Rejection::EmailTaken
        | Rejection::AddressTaken
        | Rejection::AlreadyVerified
        | Rejection::ClinicInUse
        | Rejection::UserAlreadyLinked
        | Rejection::DoctorHasAccount
        | Rejection::SlotOverlap
        | Rejection::SlotBooked
        | Rejection::SlotHasHistory
        | Rejection::PatientHasHistory
        | Rejection::ImportCollision
        | Rejection::Duplicate
        | Rejection::Overlap
        | Rejection::InUse
        | Rejection::ConcurrentUpdate
        | Rejection::AlreadyWaiting
        | Rejection::OfferGone => Refusal::Clash,
    }
}

/// The sentence for a rejection.
pub fn rejection(r: Rejection) -> &'static str {
    match r {
        Rejection::Booking(b) => booking(b),
        Rejection::Review(r) => match r {
            ReviewRejection::NotYourAppointment => "appointment not found",
            ReviewRejection::Cancelled => "a cancelled appointment cannot be reviewed",
            ReviewRejection::NotYetHappened => "an appointment can be reviewed once it is over",
            ReviewRejection::AlreadyReviewed => "this appointment has already been reviewed",
        },
        Rejection::EmailTaken => "an account with this e-mail address already exists",
        Rejection::AddressTaken => "this address now belongs to another account",
        Rejection::AlreadyVerified => "your e-mail address is already verified",
        Rejection::ClinicInUse => "the clinic still has doctors; move or remove them first",
        Rejection::UserAlreadyLinked => "this user is already linked to another doctor",
        Rejection::DoctorHasAccount => "the doctor already has an account",
        Rejection::SlotOverlap => "the slot overlaps another slot of this doctor",
        Rejection::SlotBooked => "the slot is booked; cancel or move the appointment first",
        Rejection::SlotHasHistory => "the slot has or had an appointment; block it instead",
        Rejection::PatientHasHistory => {
            "the patient has appointments or reviews and cannot be deleted"
        }
        Rejection::ImportCollision => {
            "a record collided with an existing one; nothing was imported"
        }
        Rejection::Duplicate => "a record with the same unique value already exists",
        Rejection::Overlap => "overlaps an existing record",
        Rejection::InUse => "the record is referenced by other records",
        Rejection::ConcurrentUpdate => "the record was changed concurrently; retry the request",
        Rejection::AlreadyWaiting => "you are already on this doctor's waitlist",
        Rejection::OfferGone => {
            "this offer is no longer open: it lapsed, or the slot was booked; you stay on the \
             waitlist for the next one"
        }
    }
}

fn booking(r: BookingRejection) -> &'static str {
    use BookingRejection::*;
    match r {
        SlotNotFound => "slot not found",
        AppointmentNotFound => "appointment not found",
        PatientNotFound => "patient not found",
        EmailUnverified => {
            "verify your e-mail address before booking: follow the link we sent you, or ask \
             for a new one with POST /api/v1/me/email-verification"
        }
        SlotTaken => "the slot has just been booked by someone else",
        SlotBlocked => "the slot is not open for booking",
        SameSlot => "the appointment is already in this slot",
        NotActive => "the appointment is cancelled or over",
        SlotInPast => "the slot has already started",
        TooShortNotice => "the slot starts too soon to be booked",
        BeyondHorizon => "the slot is too far in the future",
        DoctorUnavailable => "the doctor is not taking bookings",
        TooManyActive => "you already hold the maximum number of upcoming appointments",
        DifferentDoctor => "an appointment can only move to a slot of the same doctor",
        AlreadyStarted => "the appointment has already started",
        IdempotencyKeyReused => "this Idempotency-Key was used with a different request",
        ChangeDeadlinePassed => {
            "it is too close to the appointment to cancel or move it online; the clinic's \
             deadline has passed, so call the clinic"
        }
        PatientOverlap => "you already have an appointment at an overlapping time",
        TooManyNoShows => {
            "you missed too many recent appointments to book online; the clinic can book \
             for you"
        }
        SlotHeld => "the slot is held for a patient on the waitlist",
        NotStarted => "attendance can be recorded once the appointment has started",
        AttendanceRecorded => "the appointment's attendance has already been recorded",
        ReasonRequired => {
            "past the clinic's deadline for patients, an admin moving an appointment must \
             give a reason"
        }
    }
}

/// The sentence for a refused token.
pub fn auth_failure(f: AuthFailure) -> &'static str {
    match f {
        AuthFailure::Missing => "missing bearer token",
        AuthFailure::NotBearer => "authorization must be a bearer token",
        AuthFailure::Malformed => "malformed authorization header",
        AuthFailure::Expired => "token expired",
        AuthFailure::NotAccessToken => "not an access token",
        AuthFailure::Invalid => "invalid token",
        AuthFailure::Revoked => "token has been revoked (logged out, or the password changed)",
        AuthFailure::RefreshReused => "refresh token was already used",
        AuthFailure::RefreshInvalid => "invalid refresh token",
        AuthFailure::AccountGone => "account no longer exists",
    }
}

/// The bearer token of an `Authorization` value (HTTP header or gRPC metadata: the
/// same `Bearer <token>` form).
pub fn bearer(value: Option<&str>) -> Result<&str, AuthFailure> {
    let value = value.ok_or(AuthFailure::Missing)?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(AuthFailure::NotBearer)
}
