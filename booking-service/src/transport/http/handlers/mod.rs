//! Thin handlers: extract the caller and body, convert to domain values, call one
//! use case, map the result.

pub mod appointments;
pub mod audit;
pub mod auth;
pub mod catalog;
pub mod clinic_care;
pub mod doctor;
pub mod me;
pub mod ops;
pub mod patients;
pub mod reviews;
pub mod slots;
