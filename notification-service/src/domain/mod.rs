//! What the notification-service knows without any I/O: the emails it writes and how
//! a failure to send one is classified.

pub mod account_email;
pub mod email;
pub mod ics;
pub mod mail;
pub mod order;
