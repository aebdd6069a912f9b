//! What the notification-service knows without any I/O: the emails it writes and how
//! a failure to send one is classified. The calendar part of appointment e-mails is
//! `medbook_shared::ics`, shared with booking-service's calendar feeds.

pub mod account_email;
pub mod email;
pub mod mail;
pub mod order;
pub mod waitlist_email;
