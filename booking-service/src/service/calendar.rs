//! Calendar feeds: a patient's and a doctor's appointments as an iCalendar
//! subscription, at a secret URL the owner can rotate (the old one then stops working).
//! Each event is the one the e-mail attachments carry (same UID and SEQUENCE, built by
//! `medbook_shared::ics`), so a calendar that has both shows one entry; a cancelled
//! appointment stays in the feed as `STATUS:CANCELLED` so subscribed calendars drop it.

use super::ports::{Clock, RepoError};
use super::ServiceError;
use crate::domain::links;
use crate::domain::{DoctorId, UserId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use medbook_shared::events::AppointmentSnapshot;
use std::sync::Arc;

/// Whose feed a token opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedOwner {
    Patient(UserId),
    Doctor(DoctorId),
}

/// An appointment as a feed lists it.
#[derive(Debug, Clone)]
pub struct FeedItem {
    pub appointment: AppointmentSnapshot,
    pub cancelled: bool,
    /// When it last changed (the event's DTSTAMP).
    pub updated_at: DateTime<Utc>,
}

/// Days of past appointments a feed keeps, so a calendar still shows the recent ones.
pub const FEED_PAST_DAYS: i64 = 30;

#[async_trait]
pub trait CalendarRepository: Send + Sync {
    /// Stores the hash of a new feed token (replacing the old one), audited.
    async fn set_token(&self, owner: FeedOwner, token_hash: String) -> Result<bool, RepoError>;
    /// The feed a token's hash opens.
    async fn owner(&self, token_hash: String) -> Result<Option<(FeedOwner, String)>, RepoError>;
    /// The owner's appointments starting after `since`, earliest first.
    async fn items(
        &self,
        owner: FeedOwner,
        since: DateTime<Utc>,
    ) -> Result<Vec<FeedItem>, RepoError>;
}

pub struct CalendarService {
    repo: Arc<dyn CalendarRepository>,
    clock: Arc<dyn Clock>,
    /// Feeds live at `{base_url}/{token}.ics`.
    base_url: String,
    /// The calendar ORGANIZER, as in the e-mails.
    organizer: String,
}

/// A rendered feed.
#[derive(Debug, Clone)]
pub struct Feed {
    pub name: String,
    pub body: String,
}

impl CalendarService {
    pub fn new(
        repo: Arc<dyn CalendarRepository>,
        clock: Arc<dyn Clock>,
        base_url: &str,
        organizer: &str,
    ) -> Self {
        Self {
            repo,
            clock,
            base_url: base_url.trim_end_matches('/').to_owned(),
            organizer: organizer.to_owned(),
        }
    }

    /// A new secret URL for the owner's feed; the previous one stops working.
    pub async fn rotate(&self, owner: FeedOwner) -> Result<String, ServiceError> {
        let token = links::random_token();
        if !self
            .repo
            .set_token(owner, links::token_hash(&token))
            .await?
        {
            return Err(ServiceError::NotFound(match owner {
                FeedOwner::Patient(_) => "account",
                FeedOwner::Doctor(_) => "doctor",
            }));
        }
        Ok(format!("{}/{token}.ics", self.base_url))
    }

    /// The feed a token opens (`NotFound("calendar")` for any other token).
    pub async fn feed(&self, token: &str) -> Result<Feed, ServiceError> {
        if !links::well_formed(token) {
            return Err(ServiceError::NotFound("calendar"));
        }
        let (owner, name) = self
            .repo
            .owner(links::token_hash(token))
            .await?
            .ok_or(ServiceError::NotFound("calendar"))?;
        let since = self.clock.now() - chrono::Duration::days(FEED_PAST_DAYS);
        let items = self.repo.items(owner, since).await?;
        let entries: Vec<medbook_shared::ics::FeedEntry<'_>> = items
            .iter()
            .map(|i| medbook_shared::ics::FeedEntry {
                appointment: &i.appointment,
                status: if i.cancelled {
                    medbook_shared::ics::Status::Cancelled
                } else {
                    medbook_shared::ics::Status::Confirmed
                },
                stamp: i.updated_at,
            })
            .collect();
        let name = format!("medbook · {name}");
        let body = medbook_shared::ics::feed(&name, &self.organizer, &entries);
        Ok(Feed { name, body })
    }
}
