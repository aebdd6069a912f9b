//! A doctor's day: who may see it, the day's appointments (the date in the clinic's time
//! zone), and the live feed of changes as they commit. The HTTP day view and the gRPC
//! `StreamDailyAppointments` both come through here.
//!
//! The feed comes from the database, not from this process: the `appointments` table
//! announces every committed change (a trigger's `pg_notify`, whichever replica, command
//! or SQL session made it), and one listener per replica
//! ([`super::day_feed::DayFeedListener`]) hands each announcement to this process's
//! watchers through an in-process broadcast. A watcher never slows a booking (a bounded
//! ring; a watcher that falls behind learns how many it missed and starts again from a
//! fresh snapshot), and when the listener lost its connection and is back, every watcher
//! is told to start again from a snapshot too: what committed meanwhile was not heard.

use super::appointments::{Actor, AppointmentService};
use super::booking_ports::AppointmentFilter;
use super::catalog::CatalogService;
use super::ports::{Clock, PageRequest, UserRepository};
use super::ServiceError;
use crate::domain::booking::{Appointment, AppointmentStatus, Doctor};
use crate::domain::{AppointmentId, DoctorId, Role, UserId};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use std::sync::Arc;
use tokio::sync::{broadcast, OnceCell};

/// What happened to an appointment, as the database announced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Booked,
    Cancelled,
    Rescheduled,
    /// Another status change (completed, no-show), or a version bump alone.
    StatusChanged,
}

/// One committed change of an appointment, as announced: enough to tell which days it
/// concerns; the appointment itself is looked up by whoever watches one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeNotice {
    pub appointment_id: AppointmentId,
    pub doctor_id: DoctorId,
    pub kind: ChangeKind,
    /// The appointment's version after the change.
    pub version: i32,
    pub starts_at: DateTime<Utc>,
    /// When the appointment started before, if the change moved it.
    pub previous_starts_at: Option<DateTime<Utc>>,
}

impl ChangeNotice {
    /// Whether the change may concern `day`: the doctor's, and starting (or having
    /// started) on it.
    pub fn touches(&self, day: &Day) -> bool {
        self.doctor_id == day.doctor.id
            && (day.contains(self.starts_at)
                || self.previous_starts_at.is_some_and(|t| day.contains(t)))
    }
}

/// A notice on its way to the watchers, with the appointment as the first watcher that
/// needed it looked it up (once per notice and replica, however many watch).
#[derive(Debug)]
pub struct Announced {
    pub notice: ChangeNotice,
    entry: OnceCell<Option<DayEntry>>,
}

impl Announced {
    pub fn new(notice: ChangeNotice) -> Self {
        Self {
            notice,
            entry: OnceCell::new(),
        }
    }
}

/// What a day watcher hears.
#[derive(Debug, Clone)]
pub enum FeedEvent {
    /// A committed change.
    Change(Arc<Announced>),
    /// Changes may have gone unheard (the listener's connection was lost, or an
    /// announcement could not be read): start again from a fresh snapshot.
    Resync,
}

/// Committed appointment changes, for whoever is watching in this process.
#[derive(Debug, Clone)]
pub struct ScheduleFeed(broadcast::Sender<FeedEvent>);

impl ScheduleFeed {
    /// Keeps the last `capacity` events for slow watchers.
    pub fn new(capacity: usize) -> Self {
        Self(broadcast::channel(capacity.max(1)).0)
    }

    /// Never blocks; without watchers the change is simply dropped.
    pub fn announce(&self, notice: ChangeNotice) {
        let _ = self
            .0
            .send(FeedEvent::Change(Arc::new(Announced::new(notice))));
    }

    /// Tells every watcher to start again from a snapshot.
    pub fn resync(&self) {
        let _ = self.0.send(FeedEvent::Resync);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<FeedEvent> {
        self.0.subscribe()
    }

    pub fn watchers(&self) -> usize {
        self.0.receiver_count()
    }
}

impl Default for ScheduleFeed {
    fn default() -> Self {
        Self::new(1024)
    }
}

/// One doctor's day in its clinic's time zone: `[starts, ends)` in UTC.
#[derive(Debug, Clone)]
pub struct Day {
    pub doctor: Doctor,
    pub date: NaiveDate,
    pub time_zone: Tz,
    pub starts: DateTime<Utc>,
    pub ends: DateTime<Utc>,
}

impl Day {
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.starts <= t && t < self.ends
    }
}

/// The start of `date` in `tz` (the first instant of it, across DST gaps).
fn local_midnight(tz: Tz, date: NaiveDate) -> Option<DateTime<Utc>> {
    let midnight = date.and_hms_opt(0, 0, 0)?;
    match tz.from_local_datetime(&midnight) {
        chrono::LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        chrono::LocalResult::Ambiguous(t, _) => Some(t.with_timezone(&Utc)),
        // A DST gap at midnight: the day starts an hour in.
        chrono::LocalResult::None => tz
            .from_local_datetime(&(midnight + chrono::Duration::hours(1)))
            .earliest()
            .map(|t| t.with_timezone(&Utc)),
    }
}

/// Who a day's appointment is with, as the doctor's own patient list shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientCard {
    pub full_name: String,
    /// Full years on the day of the visit, when the patient gave a birth date.
    pub age: Option<u32>,
}

/// Full years from `birth` to `on` (0 before the first birthday; `None` if `on` is
/// before `birth`).
pub fn age_on(birth: NaiveDate, on: NaiveDate) -> Option<u32> {
    on.years_since(birth)
}

/// A day's appointment with its patient.
#[derive(Debug, Clone)]
pub struct DayEntry {
    pub appointment: Appointment,
    pub patient: PatientCard,
}

pub struct DaySchedule {
    catalog: Arc<CatalogService>,
    appointments: Arc<AppointmentService>,
    users: Arc<dyn UserRepository>,
    feed: ScheduleFeed,
    clock: Arc<dyn Clock>,
}

impl DaySchedule {
    pub fn new(
        catalog: Arc<CatalogService>,
        appointments: Arc<AppointmentService>,
        users: Arc<dyn UserRepository>,
        feed: ScheduleFeed,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            catalog,
            appointments,
            users,
            feed,
            clock,
        }
    }

    /// Whether `caller` may see `doctor`'s day, as the database says now (never the
    /// cache): an account that is still an admin, or the doctor's account while it is
    /// linked to the doctor. Asked when a day is opened and again while it is watched,
    /// so a demoted, deleted or unlinked account stops seeing it.
    pub async fn may_see(
        &self,
        caller: (UserId, Role),
        doctor: DoctorId,
    ) -> Result<(), ServiceError> {
        let Some(user) = self.users.find_by_id(caller.0).await? else {
            return Err(ServiceError::Forbidden);
        };
        match user.role {
            Role::Admin if caller.1 == Role::Admin => Ok(()),
            Role::Doctor if caller.1 == Role::Doctor => {
                match self.catalog.doctor_of_user(user.id).await? {
                    Some(d) if d.id == doctor => Ok(()),
                    _ => Err(ServiceError::Forbidden),
                }
            }
            _ => Err(ServiceError::Forbidden),
        }
    }

    pub fn feed(&self) -> &ScheduleFeed {
        &self.feed
    }

    /// The announced appointment as it is now, with its patient (`None` if it is
    /// gone), read as the day view reads them; looked up once per announcement, for all
    /// watchers.
    pub async fn announced(&self, announced: &Announced) -> Result<Option<DayEntry>, ServiceError> {
        announced
            .entry
            .get_or_try_init(|| async {
                match self
                    .appointments
                    .get(Actor::Admin, announced.notice.appointment_id.0)
                    .await
                {
                    Ok(a) => Ok(Some(DayEntry {
                        patient: self.card(&a).await?,
                        appointment: a,
                    })),
                    Err(ServiceError::NotFound(_)) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await
            .cloned()
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The doctor linked to a doctor's account (404 when none is).
    pub async fn own_doctor(&self, user: UserId) -> Result<DoctorId, ServiceError> {
        self.catalog
            .doctor_of_user(user)
            .await?
            .map(|d| d.id)
            .ok_or(ServiceError::NotFound("doctor linked to this account"))
    }

    /// `doctor`'s day on `date` (today in the clinic's zone when `None`), if the
    /// caller may see it: an admin, or the user the doctor is linked to. Anyone else is
    /// refused without learning whether the doctor exists.
    pub async fn day(
        &self,
        caller: (UserId, Role),
        doctor: DoctorId,
        date: Option<NaiveDate>,
    ) -> Result<Day, ServiceError> {
        // Refused before the doctor is looked up: a stranger learns nothing of it.
        self.may_see(caller, doctor).await?;
        let doctor = self.catalog.doctor(doctor).await?;
        let time_zone: Tz = doctor
            .clinic
            .time_zone
            .parse()
            .map_err(|e| ServiceError::Internal(anyhow::anyhow!("clinic time zone: {e}")))?;
        let date = date.unwrap_or_else(|| self.clock.now().with_timezone(&time_zone).date_naive());
        let next = date
            .succ_opt()
            .ok_or_else(|| ServiceError::Internal(anyhow::anyhow!("date out of range")))?;
        let (Some(starts), Some(ends)) = (
            local_midnight(time_zone, date),
            local_midnight(time_zone, next),
        ) else {
            return Err(ServiceError::Internal(anyhow::anyhow!(
                "day not representable"
            )));
        };
        Ok(Day {
            doctor,
            date,
            time_zone,
            starts,
            ends,
        })
    }

    /// The patient of an appointment: name, and age on the day of the visit in its
    /// clinic's zone.
    async fn card(&self, a: &Appointment) -> Result<PatientCard, ServiceError> {
        let user = self.users.find_by_id(a.patient_id).await?;
        let on = match a.time_zone.parse::<Tz>() {
            Ok(tz) => a.starts_at.with_timezone(&tz).date_naive(),
            Err(_) => a.starts_at.date_naive(),
        };
        Ok(match user {
            Some(u) => PatientCard {
                full_name: u.full_name,
                age: u.birth_date.and_then(|b| age_on(b, on)),
            },
            // An account deleted since (its history kept): no name to show.
            None => PatientCard {
                full_name: String::new(),
                age: None,
            },
        })
    }

    /// The day's appointments that are not cancelled, earliest first, with who each
    /// patient is (one lookup per patient).
    pub async fn entries(&self, day: &Day) -> Result<Vec<DayEntry>, ServiceError> {
        let appointments = self.appointments(day).await?;
        let mut cards: std::collections::HashMap<UserId, PatientCard> =
            std::collections::HashMap::new();
        let mut out = Vec::with_capacity(appointments.len());
        for a in appointments {
            let patient = match cards.get(&a.patient_id) {
                Some(c) => c.clone(),
                None => {
                    let c = self.card(&a).await?;
                    cards.insert(a.patient_id, c.clone());
                    c
                }
            };
            out.push(DayEntry {
                appointment: a,
                patient,
            });
        }
        Ok(out)
    }

    /// The day's appointments that are not cancelled, earliest first.
    pub async fn appointments(&self, day: &Day) -> Result<Vec<Appointment>, ServiceError> {
        let mut all = Vec::new();
        let mut page = 1;
        loop {
            let filter = AppointmentFilter {
                patient_id: None,
                doctor_id: Some(day.doctor.id),
                status: None,
                from: Some(day.starts),
                to: Some(day.ends),
            };
            let request = PageRequest {
                page,
                per_page: 100,
            };
            let got = self
                .appointments
                .list(Actor::Admin, filter, request)
                .await?;
            let n = got.items.len();
            all.extend(
                got.items
                    .into_iter()
                    .filter(|a| a.status != AppointmentStatus::Cancelled),
            );
            if n < 100 {
                break;
            }
            page += 1;
        }
        all.sort_by_key(|a| (a.starts_at, a.id.0));
        Ok(all)
    }
}
