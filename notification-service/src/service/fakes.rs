//! In-memory implementations of the ports, for the handler's unit tests. The stores
//! keep the promises the contract tests (`contracts`) hold the PostgreSQL ones to;
//! the knobs beyond them (`busy`, `full_answers`, `failures`, a mailer's script) play
//! a dependency that is busy or failing.

use super::ports::*;
use crate::domain::mail::Email;
use crate::domain::order;
use chrono::{DateTime, Utc};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// A mail server that answers as scripted (then accepts), and keeps what it accepted.
#[derive(Default)]
pub struct FakeMailer {
    pub script: Mutex<VecDeque<Result<(), SendError>>>,
    pub sent: Mutex<Vec<Email>>,
    pub calls: Mutex<u32>,
}

#[async_trait::async_trait]
impl Mailer for FakeMailer {
    async fn send(&self, email: &Email) -> Result<(), SendError> {
        *self.calls.lock().unwrap() += 1;
        let r = self.script.lock().unwrap().pop_front().unwrap_or(Ok(()));
        if r.is_ok() {
            self.sent.lock().unwrap().push(email.clone());
        }
        r
    }
    async fn probe(&self) -> Result<(), SendError> {
        Ok(())
    }
}

const SENDING: &str = "sending";
const SENT: &str = "sent";

/// One event's row, as the `deliveries` table has it.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryRow {
    pub status: &'static str,
    pub owner: Uuid,
    pub claimed_at: DateTime<Utc>,
}

#[derive(Default)]
pub struct FakeDeliveryLog {
    pub rows: Mutex<HashMap<Uuid, DeliveryRow>>,
    /// Claims answered `HeldElsewhere` before the real answer.
    pub busy: Mutex<u32>,
}

impl FakeDeliveryLog {
    /// The event's status (`sending`, `sent`), if it has a row.
    pub fn status(&self, event_id: Uuid) -> Option<&'static str> {
        self.rows.lock().unwrap().get(&event_id).map(|d| d.status)
    }
}

#[async_trait::async_trait]
impl DeliveryLog for FakeDeliveryLog {
    async fn claim(
        &self,
        r: &ClaimRequest,
        owner: Uuid,
        stale_after: Duration,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Claim> {
        {
            let mut busy = self.busy.lock().unwrap();
            if *busy > 0 {
                *busy -= 1;
                return Ok(Claim::HeldElsewhere);
            }
        }
        let stale_before = now - chrono::Duration::from_std(stale_after)?;
        let mut rows = self.rows.lock().unwrap();
        let mine = DeliveryRow {
            status: SENDING,
            owner,
            claimed_at: now,
        };
        Ok(match rows.get(&r.event_id).copied() {
            None => {
                rows.insert(r.event_id, mine);
                Claim::Acquired { takeover: false }
            }
            Some(d) if d.status == SENT => Claim::AlreadySent,
            Some(d) if d.owner == owner || d.claimed_at < stale_before => {
                rows.insert(r.event_id, mine);
                Claim::Acquired {
                    takeover: d.owner != owner,
                }
            }
            Some(_) => Claim::HeldElsewhere,
        })
    }
    async fn mark_sent(&self, event_id: Uuid, _: u32) -> anyhow::Result<()> {
        if let Some(d) = self.rows.lock().unwrap().get_mut(&event_id) {
            d.status = SENT;
        }
        Ok(())
    }
    async fn release(&self, event_id: Uuid, owner: Uuid) -> anyhow::Result<()> {
        let mut rows = self.rows.lock().unwrap();
        if rows
            .get(&event_id)
            .is_some_and(|d| d.status == SENDING && d.owner == owner)
        {
            rows.remove(&event_id);
        }
        Ok(())
    }
}

/// One appointment's row, as the `appointment_versions` table has it.
#[derive(Debug, Clone, Copy)]
pub struct OrderRow {
    pub version: i32,
    pub told: i32,
    pub holder: Option<(Uuid, DateTime<Utc>)>,
}

#[derive(Default)]
pub struct FakeOrderStore {
    pub rows: Mutex<HashMap<Uuid, OrderRow>>,
    pub version_calls: Mutex<u32>,
    /// Every decision given, in order: what a test waits on.
    pub decisions: Mutex<Vec<(Turn, TurnDecision)>>,
}

impl FakeOrderStore {
    /// Whether an e-mail of the appointment was told to wait for an earlier version.
    pub fn waited(&self, appointment_id: Uuid) -> bool {
        self.decisions.lock().unwrap().iter().any(|(t, d)| {
            t.appointment_id == appointment_id && matches!(d, TurnDecision::WaitEarlier { .. })
        })
    }
}

#[async_trait::async_trait]
impl OrderStore for FakeOrderStore {
    async fn observe_version(&self, id: Uuid, version: i32) -> anyhow::Result<i32> {
        *self.version_calls.lock().unwrap() += 1;
        let mut rows = self.rows.lock().unwrap();
        let row = rows.entry(id).or_insert(OrderRow {
            version,
            told: 0,
            holder: None,
        });
        row.version = row.version.max(version);
        Ok(row.version)
    }
    async fn take_turn(
        &self,
        turn: &Turn,
        owner: Uuid,
        lease: Duration,
        forced: bool,
        now: DateTime<Utc>,
    ) -> anyhow::Result<TurnDecision> {
        let lease = chrono::Duration::from_std(lease)?;
        let mut rows = self.rows.lock().unwrap();
        let row = rows.entry(turn.appointment_id).or_insert(OrderRow {
            version: turn.version,
            told: 0,
            holder: None,
        });
        let holder = row.holder.filter(|(_, until)| *until > now).map(|(h, _)| h);
        let decision = order::decide(turn, row.told, holder, owner, forced);
        if decision == TurnDecision::Go {
            row.holder = Some((owner, now + lease));
        }
        self.decisions.lock().unwrap().push((*turn, decision));
        Ok(decision)
    }
    async fn end_turn(&self, turn: &Turn, owner: Uuid, told: bool) -> anyhow::Result<()> {
        if let Some(row) = self.rows.lock().unwrap().get_mut(&turn.appointment_id) {
            if told {
                row.told = row.told.max(turn.version);
            }
            if row.holder.is_some_and(|(h, _)| h == owner) {
                row.holder = None;
            }
        }
        Ok(())
    }
}

/// The dead-letter cap as a sliding window in memory; `full_answers` makes the next
/// admissions answer `Full` first (another worker filled the window).
pub struct FakeBudget {
    max: u32,
    window: Duration,
    pub admitted: Mutex<Vec<(DateTime<Utc>, FailureKind)>>,
    pub full_answers: Mutex<u32>,
}

impl FakeBudget {
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            admitted: Mutex::default(),
            full_answers: Mutex::default(),
        }
    }
}

#[async_trait::async_trait]
impl DeadLetterBudget for FakeBudget {
    async fn admit(
        &self,
        kind: FailureKind,
        _: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Admission> {
        {
            let mut f = self.full_answers.lock().unwrap();
            if *f > 0 {
                *f -= 1;
                return Ok(Admission::Full {
                    count: self.max,
                    retry_after: Duration::from_millis(5),
                });
            }
        }
        let window = chrono::Duration::from_std(self.window)?;
        let mut admitted = self.admitted.lock().unwrap();
        admitted.retain(|(at, _)| *at > now - window);
        let count = u32::try_from(admitted.len())?;
        if count >= self.max {
            let retry_after = admitted
                .iter()
                .map(|(at, _)| *at)
                .min()
                .map(|oldest| (oldest + window - now).to_std().unwrap_or_default())
                .unwrap_or_default();
            return Ok(Admission::Full { count, retry_after });
        }
        admitted.push((now, kind));
        Ok(Admission::Admitted)
    }
}

/// A dead-letter topic that fails `failures` times, then keeps what it is given.
#[derive(Default)]
pub struct FakeDeadLetters {
    pub letters: Mutex<Vec<(Incoming, DeadLetter)>>,
    pub failures: Mutex<u32>,
}

#[async_trait::async_trait]
impl DeadLetterSink for FakeDeadLetters {
    async fn dead_letter(&self, m: &Incoming, l: &DeadLetter) -> Result<(), String> {
        let mut f = self.failures.lock().unwrap();
        if *f > 0 {
            *f -= 1;
            return Err("broker down".into());
        }
        self.letters.lock().unwrap().push((m.clone(), l.clone()));
        Ok(())
    }
}

/// A clock that stands still until a test moves it.
pub struct FakeClock {
    now: Mutex<(DateTime<Utc>, Instant)>,
}

impl FakeClock {
    pub fn at(now: DateTime<Utc>) -> Self {
        Self {
            now: Mutex::new((now, Instant::now())),
        }
    }

    /// Sets the wall time; the monotonic reading moves on as far, if it is forward.
    pub fn set(&self, at: DateTime<Utc>) {
        let mut now = self.now.lock().unwrap();
        let step = (at - now.0).to_std().unwrap_or_default();
        *now = (at, now.1 + step);
    }

    /// Moves both readings on by `d`.
    pub fn advance(&self, d: Duration) {
        let now = self.now();
        self.set(now + chrono::Duration::from_std(d).unwrap());
    }
}

impl Clock for FakeClock {
    fn now(&self) -> DateTime<Utc> {
        self.now.lock().unwrap().0
    }

    fn instant(&self) -> Instant {
        self.now.lock().unwrap().1
    }
}
