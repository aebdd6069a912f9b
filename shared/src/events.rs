//! The events every service agrees on (DESIGN.md §6), defined once: what happened to
//! an appointment, and the account e-mails (address verification, password reset,
//! security notices).
//!
//! On the wire an event is a JSON envelope `{id, type, version, occurred_at, data}`,
//! keyed by the appointment id (account events: the user id) so that one
//! appointment's (account's) events stay in order. `data`
//! carries everything an email needs, so a consumer never calls back into the booking
//! service. Decoding is strict where it matters and lenient where it helps evolution:
//! unknown fields are ignored, while an unknown `type` or `version` is an error the
//! consumer treats as a poison message.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The only envelope version this code writes and reads.
pub const ENVELOPE_VERSION: u32 = 1;

/// Topic of newly booked appointments.
pub const TOPIC_CREATED: &str = "appointments.created";
/// Topic of cancellations.
pub const TOPIC_CANCELLED: &str = "appointments.cancelled";
/// Topic of reschedules.
pub const TOPIC_RESCHEDULED: &str = "appointments.rescheduled";
/// Topic of due reminders (the booking-service's reminder scheduler).
pub const TOPIC_REMINDERS: &str = "appointments.reminders";
/// Topic of account e-mails: verification and reset links, security notices. Its
/// messages carry single-use links, so its retention is short (kafka/topics.txt).
pub const TOPIC_ACCOUNTS: &str = "accounts.emails";
/// Topic of attendance outcomes recorded after a visit started (no-shows).
pub const TOPIC_ATTENDANCE: &str = "appointments.attendance";
/// Topic of waitlist offers: a freed slot held for the first patient in line. Its
/// messages carry a booking link that dies with the hold (minutes), so its retention
/// is short (kafka/topics.txt).
pub const TOPIC_WAITLIST: &str = "waitlist.offers";
/// Dead letters of the notification-service.
pub const TOPIC_DLQ: &str = "notifications.dlq";
/// Every topic the system uses, dead letters last.
pub const ALL_TOPICS: [&str; 8] = [
    TOPIC_CREATED,
    TOPIC_CANCELLED,
    TOPIC_RESCHEDULED,
    TOPIC_REMINDERS,
    TOPIC_ACCOUNTS,
    TOPIC_ATTENDANCE,
    TOPIC_WAITLIST,
    TOPIC_DLQ,
];
/// The topics the notification-service consumes.
pub const EVENT_TOPICS: [&str; 7] = [
    TOPIC_CREATED,
    TOPIC_CANCELLED,
    TOPIC_RESCHEDULED,
    TOPIC_REMINDERS,
    TOPIC_ACCOUNTS,
    TOPIC_ATTENDANCE,
    TOPIC_WAITLIST,
];

/// Kafka header names that travel with events.
pub mod headers {
    /// The envelope's `id`, so tools can find an event without decoding it.
    pub const EVENT_ID: &str = "medbook-event-id";
    /// The envelope's `type`.
    pub const EVENT_TYPE: &str = "medbook-event-type";
    /// The HTTP request that caused the event.
    pub const REQUEST_ID: &str = "x-request-id";
}

/// A topic name with the deployment's prefix (empty in production; tests use a unique
/// prefix to stay out of each other's way).
pub fn topic_name(prefix: &str, topic: &str) -> String {
    format!("{prefix}{topic}")
}

/// What happened: to an appointment, or an e-mail an account needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Created,
    Cancelled,
    Rescheduled,
    Reminder,
    /// A link that proves the recipient owns the address.
    VerifyEmail,
    /// A link that sets a new password.
    PasswordReset,
    /// Someone tried to register with an address that has an account.
    RegistrationAttempted,
    /// The account's address was changed; told to the old address.
    EmailChanged,
    /// The patient did not come to an appointment that started (recorded by the
    /// doctor or an admin).
    NoShow,
    /// A freed slot is held for a patient on the doctor's waitlist.
    WaitlistOffer,
}

impl EventType {
    pub const ALL: [EventType; 10] = [
        Self::Created,
        Self::Cancelled,
        Self::Rescheduled,
        Self::Reminder,
        Self::VerifyEmail,
        Self::PasswordReset,
        Self::RegistrationAttempted,
        Self::EmailChanged,
        Self::NoShow,
        Self::WaitlistOffer,
    ];

    /// The envelope's `type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "appointment.created",
            Self::Cancelled => "appointment.cancelled",
            Self::Rescheduled => "appointment.rescheduled",
            Self::Reminder => "appointment.reminder",
            Self::VerifyEmail => "account.verify_email",
            Self::PasswordReset => "account.password_reset",
            Self::RegistrationAttempted => "account.registration_attempted",
            Self::EmailChanged => "account.email_changed",
            Self::NoShow => "appointment.no_show",
            Self::WaitlistOffer => "waitlist.offer",
        }
    }

    /// The topic this type is published to (without prefix).
    pub fn topic(self) -> &'static str {
        match self {
            Self::Created => TOPIC_CREATED,
            Self::Cancelled => TOPIC_CANCELLED,
            Self::Rescheduled => TOPIC_RESCHEDULED,
            Self::Reminder => TOPIC_REMINDERS,
            Self::VerifyEmail
            | Self::PasswordReset
            | Self::RegistrationAttempted
            | Self::EmailChanged => TOPIC_ACCOUNTS,
            Self::NoShow => TOPIC_ATTENDANCE,
            Self::WaitlistOffer => TOPIC_WAITLIST,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// The patient the email goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientInfo {
    pub id: Uuid,
    pub email: String,
    pub full_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoctorInfo {
    pub id: Uuid,
    pub full_name: String,
    pub specialty: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClinicInfo {
    pub id: Uuid,
    pub name: String,
    pub city: String,
    pub address: String,
    /// IANA zone name; emails show times in it.
    pub time_zone: String,
}

/// The appointment as it is after the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppointmentSnapshot {
    pub appointment_id: Uuid,
    pub slot_id: Uuid,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub reason: String,
    pub patient: PatientInfo,
    pub doctor: DoctorInfo,
    pub clinic: ClinicInfo,
    /// The appointment's version: 1 when booked, one more on every reschedule and
    /// cancellation. A reminder whose version is no longer the appointment's current one
    /// is stale. Events written before versions existed decode as 0.
    #[serde(default)]
    pub version: i32,
    /// The patient's link to see, cancel or reschedule this appointment without
    /// logging in. The same link in every e-mail of the appointment (it survives
    /// reschedules); it stops working when the appointment ends or is cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manage_url: Option<String>,
}

impl AppointmentSnapshot {
    /// Whether the appointment has started at `now`: a reminder for it would be late,
    /// so neither the reminder scheduler nor the mailer sends one (one rule for both).
    pub fn has_started(&self, now: DateTime<Utc>) -> bool {
        self.starts_at <= now
    }
}

/// Who cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelledBy {
    Patient,
    Admin,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancellation {
    #[serde(flatten)]
    pub appointment: AppointmentSnapshot,
    pub cancelled_by: CancelledBy,
    pub cancel_reason: Option<String>,
}

/// The slot the appointment had before a reschedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousSlot {
    pub slot_id: Uuid,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reschedule {
    #[serde(flatten)]
    pub appointment: AppointmentSnapshot,
    pub previous: PreviousSlot,
}

/// A reminder that an appointment is coming up, written when it falls due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reminder {
    #[serde(flatten)]
    pub appointment: AppointmentSnapshot,
    /// The reminder's offset as configured, e.g. `24h` or `1d`.
    pub offset: String,
    /// When it fell due.
    pub due_at: DateTime<Utc>,
}

/// A patient did not come: recorded once the appointment started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoShow {
    #[serde(flatten)]
    pub appointment: AppointmentSnapshot,
    /// Whether the clinic e-mails patients about their missed visits (off unless the
    /// clinic turns it on); the event is published either way.
    pub email_patient: bool,
}

/// A slot that freed up, held for the first patient in line on the doctor's waitlist
/// until `expires_at`. Following `link` books it; after `expires_at` the offer moves on
/// to the next in line, so an e-mail that could not be sent by then is dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitlistOffer {
    /// The waitlist entry the offer is for (the message key).
    pub entry_id: Uuid,
    pub slot_id: Uuid,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub patient: PatientInfo,
    pub doctor: DoctorInfo,
    pub clinic: ClinicInfo,
    /// The full URL, token included. Only the token's hash is stored.
    pub link: String,
    pub expires_at: DateTime<Utc>,
}

/// The account an e-mail goes to: `email` is the address it is sent to (for an
/// address change being verified, the new one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfo {
    pub id: Uuid,
    pub email: String,
    pub full_name: String,
}

/// An e-mail with a single-use link: verification, password reset, or the notice that
/// someone tried to register with the address (its link resets the password).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountLink {
    pub account: AccountInfo,
    /// The full URL, token included. Only the token's hash is stored.
    pub link: String,
    /// When the link stops working; a mail that could not be sent by then is dropped.
    pub expires_at: DateTime<Utc>,
}

/// The notice to the old address that the account's address has changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailChange {
    /// The account, with its old address (the notice goes there).
    pub account: AccountInfo,
    pub new_email: String,
}

/// The account e-mails, by event type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountEvent {
    VerifyEmail(AccountLink),
    PasswordReset(AccountLink),
    RegistrationAttempted(AccountLink),
    EmailChanged(EmailChange),
}

impl AccountEvent {
    pub fn event_type(&self) -> EventType {
        match self {
            Self::VerifyEmail(_) => EventType::VerifyEmail,
            Self::PasswordReset(_) => EventType::PasswordReset,
            Self::RegistrationAttempted(_) => EventType::RegistrationAttempted,
            Self::EmailChanged(_) => EventType::EmailChanged,
        }
    }

    /// The account (and address) the e-mail goes to.
    pub fn account(&self) -> &AccountInfo {
        match self {
            Self::VerifyEmail(l) | Self::PasswordReset(l) | Self::RegistrationAttempted(l) => {
                &l.account
            }
            Self::EmailChanged(c) => &c.account,
        }
    }

    /// When the e-mail's link stops working, if it has one.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::VerifyEmail(l) | Self::PasswordReset(l) | Self::RegistrationAttempted(l) => {
                Some(l.expires_at)
            }
            Self::EmailChanged(_) => None,
        }
    }
}

/// Any event.
// One value per message, never stored in bulk: boxing the larger variant would only
// add noise to every match.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Appointment(AppointmentEvent),
    Account(AccountEvent),
    Waitlist(WaitlistOffer),
}

impl Event {
    pub fn event_type(&self) -> EventType {
        match self {
            Self::Appointment(e) => e.event_type(),
            Self::Account(e) => e.event_type(),
            Self::Waitlist(_) => EventType::WaitlistOffer,
        }
    }

    /// The appointment as it is after the change, for appointment events.
    pub fn appointment(&self) -> Option<&AppointmentSnapshot> {
        match self {
            Self::Appointment(e) => Some(e.appointment()),
            Self::Account(_) | Self::Waitlist(_) => None,
        }
    }

    /// What the event is about: the appointment's id, the account's, or the waitlist
    /// entry's.
    pub fn aggregate_id(&self) -> Uuid {
        match self {
            Self::Appointment(e) => e.appointment().appointment_id,
            Self::Account(e) => e.account().id,
            Self::Waitlist(o) => o.entry_id,
        }
    }
}

impl From<AppointmentEvent> for Event {
    fn from(e: AppointmentEvent) -> Self {
        Self::Appointment(e)
    }
}

impl From<AccountEvent> for Event {
    fn from(e: AccountEvent) -> Self {
        Self::Account(e)
    }
}

impl From<WaitlistOffer> for Event {
    fn from(o: WaitlistOffer) -> Self {
        Self::Waitlist(o)
    }
}

/// The payload, by event type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppointmentEvent {
    Created(AppointmentSnapshot),
    Cancelled(Cancellation),
    Rescheduled(Reschedule),
    Reminder(Reminder),
    NoShow(NoShow),
}

impl AppointmentEvent {
    pub fn event_type(&self) -> EventType {
        match self {
            Self::Created(_) => EventType::Created,
            Self::Cancelled(_) => EventType::Cancelled,
            Self::Rescheduled(_) => EventType::Rescheduled,
            Self::Reminder(_) => EventType::Reminder,
            Self::NoShow(_) => EventType::NoShow,
        }
    }

    /// The appointment as it is after the change.
    pub fn appointment(&self) -> &AppointmentSnapshot {
        match self {
            Self::Created(a) => a,
            Self::Cancelled(c) => &c.appointment,
            Self::Rescheduled(r) => &r.appointment,
            Self::Reminder(r) => &r.appointment,
            Self::NoShow(n) => &n.appointment,
        }
    }
}

/// One event as published: identity, time and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventEnvelope {
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub event: Event,
}

/// Why bytes are not an event this code understands. Consumers treat every variant as a
/// poison message: retrying cannot help.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("malformed event: {0}")]
    Malformed(String),
    #[error("unsupported event version {0} (this consumer reads version {ENVELOPE_VERSION})")]
    UnsupportedVersion(u64),
    #[error("unknown event type `{0}`")]
    UnknownType(String),
}

/// The payload by reference, serialized as the bare struct.
#[derive(Serialize)]
#[serde(untagged)]
enum DataRef<'a> {
    Created(&'a AppointmentSnapshot),
    Cancelled(&'a Cancellation),
    Rescheduled(&'a Reschedule),
    Reminder(&'a Reminder),
    NoShow(&'a NoShow),
    Link(&'a AccountLink),
    EmailChange(&'a EmailChange),
    Offer(&'a WaitlistOffer),
}

/// The envelope's fields as they travel; `data` is decoded once `type` is known.
#[derive(Serialize, Deserialize)]
struct Wire<D> {
    id: Uuid,
    #[serde(rename = "type")]
    event_type: String,
    version: u64,
    occurred_at: DateTime<Utc>,
    data: D,
}

impl EventEnvelope {
    /// A new event with a fresh id.
    pub fn new(occurred_at: DateTime<Utc>, event: impl Into<Event>) -> Self {
        Self {
            id: Uuid::new_v4(),
            occurred_at,
            event: event.into(),
        }
    }

    pub fn event_type(&self) -> EventType {
        self.event.event_type()
    }

    /// The message key: per-appointment (per-account) ordering.
    pub fn key(&self) -> String {
        self.event.aggregate_id().to_string()
    }

    /// The appointment as it is after the change, for appointment events.
    pub fn appointment(&self) -> Option<&AppointmentSnapshot> {
        self.event.appointment()
    }

    /// The JSON bytes of the envelope. Only fails if serde_json itself does: the payload
    /// is plain strings, ids and times.
    pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        let data = match &self.event {
            Event::Appointment(AppointmentEvent::Created(d)) => DataRef::Created(d),
            Event::Appointment(AppointmentEvent::Cancelled(d)) => DataRef::Cancelled(d),
            Event::Appointment(AppointmentEvent::Rescheduled(d)) => DataRef::Rescheduled(d),
            Event::Appointment(AppointmentEvent::Reminder(d)) => DataRef::Reminder(d),
            Event::Appointment(AppointmentEvent::NoShow(d)) => DataRef::NoShow(d),
            Event::Waitlist(d) => DataRef::Offer(d),
            Event::Account(
                AccountEvent::VerifyEmail(d)
                | AccountEvent::PasswordReset(d)
                | AccountEvent::RegistrationAttempted(d),
            ) => DataRef::Link(d),
            Event::Account(AccountEvent::EmailChanged(d)) => DataRef::EmailChange(d),
        };
        serde_json::to_vec(&Wire {
            id: self.id,
            event_type: self.event_type().as_str().to_owned(),
            version: u64::from(ENVELOPE_VERSION),
            occurred_at: self.occurred_at,
            data,
        })
    }

    /// Decodes an envelope; see [`DecodeError`] for what is refused.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let wire: Wire<serde_json::Value> =
            serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        if wire.version != u64::from(ENVELOPE_VERSION) {
            return Err(DecodeError::UnsupportedVersion(wire.version));
        }
        let event_type = EventType::parse(&wire.event_type)
            .ok_or_else(|| DecodeError::UnknownType(wire.event_type.clone()))?;
        let malformed = |e: serde_json::Error| DecodeError::Malformed(format!("data: {e}"));
        let data = wire.data;
        let event: Event = match event_type {
            EventType::Created => {
                AppointmentEvent::Created(serde_json::from_value(data).map_err(malformed)?).into()
            }
            EventType::Cancelled => {
                AppointmentEvent::Cancelled(serde_json::from_value(data).map_err(malformed)?).into()
            }
            EventType::Rescheduled => {
                AppointmentEvent::Rescheduled(serde_json::from_value(data).map_err(malformed)?)
                    .into()
            }
            EventType::Reminder => {
                AppointmentEvent::Reminder(serde_json::from_value(data).map_err(malformed)?).into()
            }
            EventType::VerifyEmail => {
                AccountEvent::VerifyEmail(serde_json::from_value(data).map_err(malformed)?).into()
            }
            EventType::PasswordReset => {
                AccountEvent::PasswordReset(serde_json::from_value(data).map_err(malformed)?).into()
            }
            EventType::RegistrationAttempted => AccountEvent::RegistrationAttempted(
                serde_json::from_value(data).map_err(malformed)?,
            )
            .into(),
            EventType::EmailChanged => {
                AccountEvent::EmailChanged(serde_json::from_value(data).map_err(malformed)?).into()
            }
            EventType::NoShow => {
                AppointmentEvent::NoShow(serde_json::from_value(data).map_err(malformed)?).into()
            }
            EventType::WaitlistOffer => {
                Event::Waitlist(serde_json::from_value::<WaitlistOffer>(data).map_err(malformed)?)
            }
        };
        Ok(Self {
            id: wire.id,
            occurred_at: wire.occurred_at,
            event,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn snapshot() -> AppointmentSnapshot {
        AppointmentSnapshot {
            appointment_id: Uuid::new_v4(),
            slot_id: Uuid::new_v4(),
            starts_at: Utc.with_ymd_and_hms(2026, 12, 1, 9, 30, 0).unwrap(),
            ends_at: Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap(),
            reason: "Checkup <b>&</b> \"quotes\" ü".into(),
            patient: PatientInfo {
                id: Uuid::new_v4(),
                email: "ana@example.com".into(),
                full_name: "Ana Lima".into(),
            },
            doctor: DoctorInfo {
                id: Uuid::new_v4(),
                full_name: "Dr. Mia Chen".into(),
                specialty: "Cardiology".into(),
            },
            clinic: ClinicInfo {
                id: Uuid::new_v4(),
                name: "Central".into(),
                city: "Berlin".into(),
                address: "Hauptstr. 1".into(),
                time_zone: "Europe/Berlin".into(),
            },
            version: 3,
            manage_url: Some("https://medbook.example/manage?token=abc".into()),
        }
    }

    fn all_events() -> Vec<EventEnvelope> {
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 8, 0, 0).unwrap();
        vec![
            EventEnvelope::new(at, AppointmentEvent::Created(snapshot())),
            EventEnvelope::new(
                at,
                AppointmentEvent::Cancelled(Cancellation {
                    appointment: snapshot(),
                    cancelled_by: CancelledBy::Admin,
                    cancel_reason: Some("doctor ill".into()),
                }),
            ),
            EventEnvelope::new(
                at,
                AppointmentEvent::Rescheduled(Reschedule {
                    appointment: snapshot(),
                    previous: PreviousSlot {
                        slot_id: Uuid::new_v4(),
                        starts_at: Utc.with_ymd_and_hms(2026, 11, 30, 9, 30, 0).unwrap(),
                        ends_at: Utc.with_ymd_and_hms(2026, 11, 30, 10, 0, 0).unwrap(),
                    },
                }),
            ),
            EventEnvelope::new(
                at,
                AppointmentEvent::Reminder(Reminder {
                    appointment: snapshot(),
                    offset: "24h".into(),
                    due_at: Utc.with_ymd_and_hms(2026, 11, 30, 9, 30, 0).unwrap(),
                }),
            ),
            EventEnvelope::new(
                at,
                AppointmentEvent::NoShow(NoShow {
                    appointment: snapshot(),
                    email_patient: true,
                }),
            ),
        ]
    }

    #[test]
    fn waitlist_offers_round_trip_keyed_by_the_entry() {
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 8, 0, 0).unwrap();
        let a = snapshot();
        let offer = WaitlistOffer {
            entry_id: Uuid::new_v4(),
            slot_id: a.slot_id,
            starts_at: a.starts_at,
            ends_at: a.ends_at,
            patient: a.patient,
            doctor: a.doctor,
            clinic: a.clinic,
            link: "https://medbook.example/waitlist/offer?token=abc".into(),
            expires_at: Utc.with_ymd_and_hms(2026, 11, 22, 8, 15, 0).unwrap(),
        };
        let e = EventEnvelope::new(at, offer.clone());
        assert_eq!(e.event_type().topic(), TOPIC_WAITLIST);
        assert_eq!(e.key(), offer.entry_id.to_string());
        assert!(e.appointment().is_none());
        let bytes = e.encode().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["type"], "waitlist.offer");
        assert_eq!(v["data"]["expires_at"], "2026-11-22T08:15:00Z");
        assert_eq!(EventEnvelope::decode(&bytes), Ok(e));
    }

    fn account_events() -> Vec<EventEnvelope> {
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 8, 0, 0).unwrap();
        let account = AccountInfo {
            id: Uuid::new_v4(),
            email: "ana@example.com".into(),
            full_name: "Ana Lima".into(),
        };
        let link = AccountLink {
            account: account.clone(),
            link: "https://medbook.example/account/verify-email?token=abc".into(),
            expires_at: Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap(),
        };
        vec![
            EventEnvelope::new(at, AccountEvent::VerifyEmail(link.clone())),
            EventEnvelope::new(at, AccountEvent::PasswordReset(link.clone())),
            EventEnvelope::new(at, AccountEvent::RegistrationAttempted(link)),
            EventEnvelope::new(
                at,
                AccountEvent::EmailChanged(EmailChange {
                    account,
                    new_email: "ana.lima@example.org".into(),
                }),
            ),
        ]
    }

    #[test]
    fn account_events_round_trip_keyed_by_the_account() {
        for e in account_events() {
            let bytes = e.encode().unwrap();
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(v["type"], e.event_type().as_str());
            assert_eq!(v["data"]["account"]["email"], "ana@example.com");
            assert_eq!(e.event_type().topic(), TOPIC_ACCOUNTS);
            let Event::Account(account) = &e.event else {
                panic!("not an account event")
            };
            assert_eq!(e.key(), account.account().id.to_string());
            assert!(e.appointment().is_none());
            assert_eq!(EventEnvelope::decode(&bytes), Ok(e));
        }
    }

    #[test]
    fn every_event_type_round_trips() {
        for e in all_events() {
            let bytes = e.encode().unwrap();
            assert_eq!(EventEnvelope::decode(&bytes), Ok(e));
        }
    }

    #[test]
    fn the_wire_shape_is_the_contract() {
        for e in all_events() {
            let v: serde_json::Value = serde_json::from_slice(&e.encode().unwrap()).unwrap();
            assert_eq!(v["id"], e.id.to_string());
            assert_eq!(v["type"], e.event_type().as_str());
            assert_eq!(v["version"], 1);
            assert_eq!(v["occurred_at"], "2026-11-22T08:00:00Z");
            let data = &v["data"];
            assert_eq!(data["patient"]["email"], "ana@example.com");
            assert_eq!(data["clinic"]["time_zone"], "Europe/Berlin");
            assert_eq!(data["starts_at"], "2026-12-01T09:30:00Z");
            match e.event_type() {
                EventType::Created => assert!(data.get("previous").is_none()),
                EventType::Cancelled => {
                    assert_eq!(data["cancelled_by"], "admin");
                    assert_eq!(data["cancel_reason"], "doctor ill");
                }
                EventType::Rescheduled => {
                    assert_eq!(data["previous"]["starts_at"], "2026-11-30T09:30:00Z")
                }
                EventType::Reminder => {
                    assert_eq!(data["offset"], "24h");
                    assert_eq!(data["due_at"], "2026-11-30T09:30:00Z");
                }
                EventType::NoShow => assert_eq!(data["email_patient"], true),
                other => panic!("{other:?} is not an appointment event"),
            }
            assert_eq!(data["version"], 3);
            assert_eq!(
                data["manage_url"],
                "https://medbook.example/manage?token=abc"
            );
            assert_eq!(e.key(), data["appointment_id"].as_str().unwrap());
        }
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let e = &all_events()[2];
        let mut v: serde_json::Value = serde_json::from_slice(&e.encode().unwrap()).unwrap();
        v["trace"] = serde_json::json!({"x": 1});
        v["data"]["doctor"]["photo_url"] = "http://x".into();
        v["data"]["new_field"] = serde_json::json!([1, 2]);
        let bytes = serde_json::to_vec(&v).unwrap();
        assert_eq!(EventEnvelope::decode(&bytes).as_ref(), Ok(e));
    }

    #[test]
    fn events_without_a_version_decode_as_version_zero() {
        let e = &all_events()[0];
        let mut v: serde_json::Value = serde_json::from_slice(&e.encode().unwrap()).unwrap();
        v["data"].as_object_mut().unwrap().remove("version");
        let decoded = EventEnvelope::decode(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(decoded.appointment().unwrap().version, 0);
    }

    #[test]
    fn unknown_version_and_type_are_refused() {
        let e = &all_events()[0];
        let mut v: serde_json::Value = serde_json::from_slice(&e.encode().unwrap()).unwrap();
        v["version"] = 2.into();
        assert_eq!(
            EventEnvelope::decode(&serde_json::to_vec(&v).unwrap()),
            Err(DecodeError::UnsupportedVersion(2))
        );
        v["version"] = 1.into();
        v["type"] = "appointment.teleported".into();
        assert_eq!(
            EventEnvelope::decode(&serde_json::to_vec(&v).unwrap()),
            Err(DecodeError::UnknownType("appointment.teleported".into()))
        );
    }

    #[test]
    fn garbage_and_missing_data_are_malformed() {
        for bytes in [
            &b"not json"[..],
            &b"{}"[..],
            &b"\xff\xfe"[..],
            br#"{"id":"x","type":"appointment.created","version":1,"occurred_at":"2026-01-01T00:00:00Z","data":{}}"#,
        ] {
            assert!(matches!(
                EventEnvelope::decode(bytes),
                Err(DecodeError::Malformed(_))
            ));
        }
        let e = &all_events()[1];
        let mut v: serde_json::Value = serde_json::from_slice(&e.encode().unwrap()).unwrap();
        v["data"].as_object_mut().unwrap().remove("cancelled_by");
        assert!(matches!(
            EventEnvelope::decode(&serde_json::to_vec(&v).unwrap()),
            Err(DecodeError::Malformed(m)) if m.contains("cancelled_by")
        ));
    }

    #[test]
    fn types_map_to_their_topics() {
        assert_eq!(EventType::Created.topic(), TOPIC_CREATED);
        assert_eq!(EventType::Cancelled.topic(), TOPIC_CANCELLED);
        assert_eq!(EventType::Rescheduled.topic(), TOPIC_RESCHEDULED);
        assert_eq!(EventType::Reminder.topic(), TOPIC_REMINDERS);
        assert_eq!(EventType::PasswordReset.topic(), TOPIC_ACCOUNTS);
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        assert_eq!(topic_name("t1.", TOPIC_DLQ), "t1.notifications.dlq");
    }
}
