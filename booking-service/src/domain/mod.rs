//! Entities and value objects of the booking domain. No framework types live here:
//! every value is parsed once at the edge (`Email::parse`, `Password::parse`, …) and is
//! valid from then on.

pub mod audit;
pub mod booking;
pub mod client;
pub mod decisions;
pub mod errors;
pub mod ids;
pub mod inputs;
pub mod links;
pub mod password_policy;
pub mod rejection;
pub mod reminders;
pub mod schedule;
pub mod user;
pub mod values;
pub mod waitlist;

pub use client::ClientNetwork;
pub use errors::{FieldError, ValidationErrors};
pub use ids::{AppointmentId, ClinicId, DoctorId, ReviewId, SlotId};
pub use user::{Gender, LinkTarget, NewUser, PatientProfile, RawPatient, Role, User, UserId};
pub use values::{BirthDate, Email, FullName, Password, Phone};
