//! Request and response bodies of the HTTP API. Requests reject unknown fields and
//! convert into domain values with every invalid field reported.

pub mod appointments;
pub mod audit;
pub mod auth;
pub mod catalog;
pub mod common;
pub mod filters;
pub mod patients;
pub mod policies;
pub mod slots;
pub mod waitlist;
