//! `WaitlistRepository` and `WaitlistMatching` over PostgreSQL.
//!
//! A hold is a `slot_holds` row: while it exists, the trigger
//! `appointments_respect_holds` lets only its patient book the slot, whatever path
//! writes. The matcher's two statements claim their rows with `FOR UPDATE SKIP
//! LOCKED`, so replicas share the work and never make two offers of one slot (the
//! hold's primary key is the slot) or two of one entry (its unique `entry_id`).

use super::audit::AuditRecord;
use super::db::{map_err, Db};
use super::outbox::OutboxRow;
use super::parties::{parties_columns, PartiesRow};
use super::sql::Sql;
use crate::domain::audit::AuditEntry;
use crate::domain::waitlist::{
    offer, HeldSlot, Match, NewOffer, OfferView, WaitlistEntry, WaitlistStatus,
};
use crate::domain::{DoctorId, SlotId, UserId};
use crate::service::ports::RepoError;
use crate::service::waitlist::{
    JoinRefusal, NewEntry, OfferRules, WaitlistMatching, WaitlistRepository,
};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Date, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use uuid::Uuid;

fn internal(e: impl std::fmt::Display) -> RepoError {
    RepoError::Internal(anyhow::anyhow!("{e}"))
}

/// An entry with its doctor's name and, while offered, its hold.
macro_rules! entry_query {
    ($rest:literal) => {
        concat!(
            "
SELECT e.id, e.patient_id, e.doctor_id, d.full_name AS doctor_name, e.from_date, e.to_date,
       CASE WHEN h.slot_id IS NULL THEN e.status ELSE 'offered' END AS status,
       e.appointment_id, e.created_at,
       h.slot_id AS held_slot_id, s.starts_at AS held_starts_at, s.ends_at AS held_ends_at,
       h.expires_at AS held_expires_at
FROM waitlist_entries e
JOIN doctors d ON d.id = e.doctor_id
LEFT JOIN slot_holds h ON h.entry_id = e.id
LEFT JOIN slots s ON s.id = h.slot_id
",
            $rest
        )
    };
}

#[derive(QueryableByName)]
struct EntryRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    patient_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    doctor_id: Uuid,
    #[diesel(sql_type = Text)]
    doctor_name: String,
    #[diesel(sql_type = Date)]
    from_date: NaiveDate,
    #[diesel(sql_type = Date)]
    to_date: NaiveDate,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    appointment_id: Option<Uuid>,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    held_slot_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    held_starts_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    held_ends_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    held_expires_at: Option<DateTime<Utc>>,
}

impl TryFrom<EntryRow> for WaitlistEntry {
    type Error = RepoError;
    fn try_from(r: EntryRow) -> Result<Self, RepoError> {
        let offer = match (
            r.held_slot_id,
            r.held_starts_at,
            r.held_ends_at,
            r.held_expires_at,
        ) {
            (Some(slot), Some(starts_at), Some(ends_at), Some(expires_at)) => Some(HeldSlot {
                slot_id: SlotId(slot),
                starts_at,
                ends_at,
                expires_at,
            }),
            _ => None,
        };
        Ok(WaitlistEntry {
            id: r.id,
            patient_id: UserId(r.patient_id),
            doctor_id: DoctorId(r.doctor_id),
            doctor_name: r.doctor_name,
            from_date: r.from_date,
            to_date: r.to_date,
            status: r.status.parse::<WaitlistStatus>().map_err(internal)?,
            offer,
            appointment_id: r.appointment_id,
            created_at: r.created_at,
        })
    }
}

fn entry(conn: &mut PgConnection, id: Uuid) -> Result<WaitlistEntry, RepoError> {
    Sql::new(entry_query!("WHERE e.id = $1"))
        .bind::<SqlUuid, _>(id)
        .get_result::<EntryRow>(conn)
        .map_err(map_err)
        .and_then(WaitlistEntry::try_from)
}

fn audit(conn: &mut PgConnection, entry: AuditEntry, at: DateTime<Utc>) -> Result<(), RepoError> {
    AuditRecord::from_entry(entry, at).row()?.insert(conn)
}

/// An offer's facts by its token's hash.
const OFFER_BY_TOKEN: &str = "
SELECT h.entry_id, h.patient_id, h.slot_id, s.starts_at, s.ends_at, h.expires_at,
       d.full_name AS doctor_name, d.specialty, c.name AS clinic_name,
       c.address || ', ' || c.city AS clinic_address, c.time_zone
FROM slot_holds h
JOIN slots s ON s.id = h.slot_id
JOIN doctors d ON d.id = s.doctor_id
JOIN clinics c ON c.id = d.clinic_id
WHERE h.token_hash = $1";

#[derive(QueryableByName)]
struct OfferRow {
    #[diesel(sql_type = SqlUuid)]
    entry_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    patient_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    slot_id: Uuid,
    #[diesel(sql_type = Timestamptz)]
    starts_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    ends_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    expires_at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    doctor_name: String,
    #[diesel(sql_type = Text)]
    specialty: String,
    #[diesel(sql_type = Text)]
    clinic_name: String,
    #[diesel(sql_type = Text)]
    clinic_address: String,
    #[diesel(sql_type = Text)]
    time_zone: String,
}

/// Lapsed holds, claimed and released; each entry, still waiting, never gets that slot
/// again.
const EXPIRE: &str = "
WITH lapsed AS (
    DELETE FROM slot_holds WHERE slot_id IN (
        SELECT slot_id FROM slot_holds WHERE expires_at <= $1
        ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)
    RETURNING entry_id, slot_id, patient_id
), passed AS (
    INSERT INTO waitlist_passes (entry_id, slot_id)
    SELECT entry_id, slot_id FROM lapsed ON CONFLICT DO NOTHING
)
SELECT entry_id, slot_id, patient_id FROM lapsed";

#[derive(QueryableByName)]
struct LapsedRow {
    #[diesel(sql_type = SqlUuid)]
    entry_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    slot_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    patient_id: Uuid,
}

/// The next offer to make: the first entry in line (oldest) with a slot that became free
/// after it joined and that it has not passed, in its range (the clinic's calendar days), that its patient could book now
/// (a verified address, the practice's notice, horizon, cap and no-show limit, no
/// overlap with their other appointments), its earliest such slot. Entry and slot locked, skipping what another replica holds.
const NEXT_MATCH: &str = concat!(
    "
SELECT e.id AS entry_id, s.id AS slot_id, s.starts_at, s.ends_at, ",
    parties_columns!(),
    "
FROM waitlist_entries e
JOIN users u ON u.id = e.patient_id
JOIN doctors d ON d.id = e.doctor_id AND d.status = 'active'
JOIN clinics c ON c.id = d.clinic_id
JOIN slots s ON s.doctor_id = e.doctor_id AND s.status = 'available'
WHERE e.status = 'waiting'
  AND NOT EXISTS (SELECT 1 FROM slot_holds held WHERE held.entry_id = e.id)
  AND u.email_verified_at IS NOT NULL
  -- Under the practice's cap on upcoming appointments, and not stopped by no-shows.
  AND (SELECT count(*) FROM appointments a
        WHERE a.patient_id = e.patient_id AND a.status = 'booked' AND a.starts_at > $1)
      < COALESCE(c.max_active_per_patient, $4)
  AND (c.no_show_limit IS NULL OR
       (SELECT count(*) FROM appointments a
         WHERE a.patient_id = e.patient_id AND a.status = 'no_show'
           AND a.starts_at > $1 - make_interval(days => COALESCE(c.no_show_window_days, $5)))
       < c.no_show_limit)
  AND s.available_since > e.created_at
  AND s.starts_at >= $1 + make_interval(mins => COALESCE(d.min_notice_minutes, c.min_notice_minutes, $2))
  AND s.starts_at <= $1 + make_interval(days => COALESCE(d.horizon_days, c.horizon_days, $3))
  AND (s.starts_at AT TIME ZONE c.time_zone)::date BETWEEN e.from_date AND e.to_date
  AND NOT EXISTS (SELECT 1 FROM slot_holds h WHERE h.slot_id = s.id)
  AND NOT EXISTS (SELECT 1 FROM waitlist_passes p WHERE p.entry_id = e.id AND p.slot_id = s.id)
  AND NOT EXISTS (
      SELECT 1 FROM appointments a
      WHERE a.patient_id = e.patient_id AND a.status = 'booked'
        AND tstzrange(a.starts_at, a.ends_at, '[)') && tstzrange(s.starts_at, s.ends_at, '[)'))
ORDER BY e.created_at, e.id, s.starts_at
LIMIT 1
FOR UPDATE OF e, s SKIP LOCKED"
);

#[derive(QueryableByName)]
struct MatchRow {
    #[diesel(sql_type = SqlUuid)]
    entry_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    slot_id: Uuid,
    #[diesel(sql_type = Timestamptz)]
    starts_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    ends_at: DateTime<Utc>,
    #[diesel(embed)]
    parties: PartiesRow,
}

impl From<MatchRow> for Match {
    fn from(r: MatchRow) -> Self {
        let (patient, doctor, clinic) = r.parties.infos();
        Match {
            entry_id: r.entry_id,
            slot_id: SlotId(r.slot_id),
            starts_at: r.starts_at,
            ends_at: r.ends_at,
            patient,
            doctor,
            clinic,
        }
    }
}

/// An offer, in one statement: the hold, the entry's offer token, the event and the
/// audit record.
const WRITE_OFFER: &str = "
WITH held AS (
    INSERT INTO slot_holds (slot_id, entry_id, patient_id, token_hash, expires_at, created_at)
    VALUES ($1, $2, $3, $4, $5, $6)
), offered AS (
    UPDATE waitlist_entries SET updated_at = $6, offer_token_hash = $4 WHERE id = $2
)
INSERT INTO outbox_events (id, aggregate_id, topic, event_type, payload, created_at, request_id, sink, trace_parent)
VALUES ($7, $8, $9, $10, $11, $12, $13, $14, $15),
       ($16, $17, $18, $19, $20, $21, $22, $23, $24)";

fn write_offer(conn: &mut PgConnection, o: &NewOffer, now: DateTime<Utc>) -> Result<(), RepoError> {
    let q = Sql::new(WRITE_OFFER)
        .bind::<SqlUuid, _>(o.slot_id)
        .bind::<SqlUuid, _>(o.entry_id)
        .bind::<SqlUuid, _>(o.patient_id)
        .bind::<Text, _>(o.token_hash.clone())
        .bind::<Timestamptz, _>(o.expires_at)
        .bind::<Timestamptz, _>(now);
    let audit = AuditRecord::from_entry(o.audit.clone(), now).row()?;
    audit
        .bind(OutboxRow::event(&o.event)?.bind(q))
        .execute(conn)
        .map(|_| ())
        .map_err(map_err)
}

pub struct PgWaitlist {
    db: Db,
}

impl PgWaitlist {
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

#[async_trait]
impl WaitlistRepository for PgWaitlist {
    async fn join(&self, e: NewEntry) -> Result<Result<WaitlistEntry, JoinRefusal>, RepoError> {
        let result = self
            .db
            .transaction(move |conn| {
                let doctor: Option<Uuid> = super::schema::doctors::table
                    .find(e.doctor_id.0)
                    .select(super::schema::doctors::id)
                    .first(conn)
                    .optional()
                    .map_err(map_err)?;
                if doctor.is_none() {
                    return Ok(Err(JoinRefusal::DoctorNotFound));
                }
                Sql::new(
                    "INSERT INTO waitlist_entries
                        (id, patient_id, doctor_id, from_date, to_date, status, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, 'waiting', $6, $6)",
                )
                .bind::<SqlUuid, _>(e.id)
                .bind::<SqlUuid, _>(e.patient_id)
                .bind::<SqlUuid, _>(e.doctor_id)
                .bind::<Date, _>(e.from_date)
                .bind::<Date, _>(e.to_date)
                .bind::<Timestamptz, _>(e.now)
                .execute(conn)
                .map_err(map_err)?;
                audit(
                    conn,
                    AuditEntry::new("waitlist.joined", "waitlist_entry", e.id).created(
                        &serde_json::json!({
                            "patient_id": e.patient_id.0,
                            "doctor_id": e.doctor_id.0,
                            "from_date": e.from_date,
                            "to_date": e.to_date,
                        }),
                    ),
                    e.now,
                )?;
                Ok(Ok(entry(conn, e.id)?))
            })
            .await;
        match result {
            Err(RepoError::UniqueViolation(c)) if c == "waitlist_one_live_entry" => {
                Ok(Err(JoinRefusal::AlreadyWaiting))
            }
            other => other,
        }
    }

    async fn list(&self, patient: UserId) -> Result<Vec<WaitlistEntry>, RepoError> {
        self.db
            .run(move |conn| {
                Sql::new(entry_query!(
                    "WHERE e.patient_id = $1
                     ORDER BY e.status = 'waiting' DESC, e.created_at DESC
                     LIMIT 100"
                ))
                .bind::<SqlUuid, _>(patient)
                .load::<EntryRow>(conn)
                .map_err(map_err)?
                .into_iter()
                .map(WaitlistEntry::try_from)
                .collect()
            })
            .await
    }

    async fn leave(
        &self,
        patient: UserId,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<bool, RepoError> {
        self.db
            .transaction(move |conn| {
                let left = Sql::new(
                    "WITH released AS (DELETE FROM slot_holds WHERE entry_id = $1)
                     UPDATE waitlist_entries SET status = 'left', updated_at = $3
                     WHERE id = $1 AND patient_id = $2 AND status = 'waiting'",
                )
                .bind::<SqlUuid, _>(id)
                .bind::<SqlUuid, _>(patient)
                .bind::<Timestamptz, _>(now)
                .execute(conn)
                .map_err(map_err)?;
                if left == 0 {
                    return Ok(false);
                }
                audit(
                    conn,
                    AuditEntry::new("waitlist.left", "waitlist_entry", id).field(
                        "status",
                        None,
                        Some(serde_json::json!("left")),
                    ),
                    now,
                )?;
                Ok(true)
            })
            .await
    }

    async fn booked_from_offer(
        &self,
        token_hash: String,
    ) -> Result<Option<(UserId, crate::domain::AppointmentId)>, RepoError> {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = SqlUuid)]
            patient_id: Uuid,
            #[diesel(sql_type = SqlUuid)]
            appointment_id: Uuid,
        }
        self.db
            .run(move |conn| {
                Ok(Sql::new(
                    "SELECT patient_id, appointment_id FROM waitlist_entries
                      WHERE offer_token_hash = $1 AND status = 'booked'
                        AND appointment_id IS NOT NULL",
                )
                .bind::<Text, _>(token_hash)
                .get_result::<Row>(conn)
                .optional()
                .map_err(map_err)?
                .map(|r| {
                    (
                        UserId(r.patient_id),
                        crate::domain::AppointmentId(r.appointment_id),
                    )
                }))
            })
            .await
    }

    async fn offer(&self, token_hash: String) -> Result<Option<OfferView>, RepoError> {
        self.db
            .run(move |conn| {
                Ok(Sql::new(OFFER_BY_TOKEN)
                    .bind::<Text, _>(token_hash)
                    .get_result::<OfferRow>(conn)
                    .optional()
                    .map_err(map_err)?
                    .map(|r| OfferView {
                        entry_id: r.entry_id,
                        patient_id: UserId(r.patient_id),
                        slot: HeldSlot {
                            slot_id: SlotId(r.slot_id),
                            starts_at: r.starts_at,
                            ends_at: r.ends_at,
                            expires_at: r.expires_at,
                        },
                        doctor_name: r.doctor_name,
                        specialty: r.specialty,
                        clinic_name: r.clinic_name,
                        clinic_address: r.clinic_address,
                        time_zone: r.time_zone,
                    }))
            })
            .await
    }
}

#[async_trait]
impl WaitlistMatching for PgWaitlist {
    async fn expire(&self, now: DateTime<Utc>, limit: i64) -> Result<u64, RepoError> {
        self.db
            .transaction(move |conn| {
                let lapsed: Vec<LapsedRow> = Sql::new(EXPIRE)
                    .bind::<Timestamptz, _>(now)
                    .bind::<BigInt, _>(limit)
                    .load(conn)
                    .map_err(map_err)?;
                for l in &lapsed {
                    audit(
                        conn,
                        AuditEntry::new("waitlist.offer_lapsed", "waitlist_entry", l.entry_id)
                            .field("slot_id", Some(serde_json::json!(l.slot_id)), None)
                            .field("patient_id", Some(serde_json::json!(l.patient_id)), None),
                        now,
                    )?;
                }
                Ok(u64::try_from(lapsed.len()).unwrap_or(u64::MAX))
            })
            .await
    }

    async fn offer(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        rules: &OfferRules,
    ) -> Result<u64, RepoError> {
        let mut made = 0u64;
        // A concurrent replica may take a slot or an entry between this one's read
        // and its write: the hold's keys refuse the second offer, and the next match
        // is tried (a few times at most per round).
        let mut clashes = 0;
        let notice = i32::try_from(rules.defaults.min_notice.num_minutes()).unwrap_or(i32::MAX);
        let horizon = i32::try_from(rules.defaults.horizon.num_days()).unwrap_or(i32::MAX);
        let cap = rules.defaults.max_active_per_patient;
        let no_show_window =
            i32::try_from(rules.defaults.no_show_window.num_days()).unwrap_or(i32::MAX);
        while i64::try_from(made).unwrap_or(i64::MAX) < limit {
            let (hold, url) = (rules.hold, rules.offer_url.clone());
            let offered = self
                .db
                .transaction(move |conn| {
                    let Some(row) = Sql::new(NEXT_MATCH)
                        .bind::<Timestamptz, _>(now)
                        .bind::<Integer, _>(notice)
                        .bind::<Integer, _>(horizon)
                        .bind::<BigInt, _>(cap)
                        .bind::<Integer, _>(no_show_window)
                        .get_result::<MatchRow>(conn)
                        .optional()
                        .map_err(map_err)?
                    else {
                        return Ok(false);
                    };
                    let o = offer(Match::from(row), now, hold, &url);
                    write_offer(conn, &o, now)?;
                    Ok(true)
                })
                .await;
            match offered {
                Ok(false) => break,
                Ok(true) => made += 1,
                Err(RepoError::UniqueViolation(_)) if clashes < 3 => clashes += 1,
                Err(e) => return Err(e),
            }
        }
        Ok(made)
    }
}
