//! What one booking, reschedule and cancellation cost the database: the statements
//! each sends (counted by the pool's statement log, on one connection), and that every
//! one of them is a prepared statement after the first use. A regression (a re-read, an
//! extra check, an unprepared statement) fails here.

use crate::helpers::{test_db, TestDb};
use booking_service::domain::booking::BookingPolicy;
use booking_service::domain::reminders::ReminderPlan;
use booking_service::domain::UserId;
use booking_service::repository::{Db, PgAppointments, PoolSettings, StatementLog};
use booking_service::service::appointments::{Actor, AppointmentService};
use booking_service::service::outbox::OutboxSignal;
use booking_service::service::ports::SystemClock;
use chrono::{Duration, Utc};
use diesel::prelude::*;
use diesel::sql_types::Text;
use medbook_service_kit::DbError;
use std::sync::Arc;
use uuid::Uuid;

#[derive(QueryableByName)]
struct Prepared {
    #[diesel(sql_type = Text)]
    statement: String,
}

struct Fixture {
    _db: TestDb,
    pool: Db,
    log: StatementLog,
    service: AppointmentService,
    patient: UserId,
    slots: Vec<Uuid>,
}

fn fixture() -> Fixture {
    let db = test_db();
    let (clinic, doctor, patient) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let slots: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    let mut sql = format!(
        "INSERT INTO clinics (id, name, city, address, time_zone)
             VALUES ('{clinic}', 'North', 'Berlin', 'Main St 1', 'Europe/Berlin');
         INSERT INTO doctors (id, full_name, specialty, clinic_id, status)
             VALUES ('{doctor}', 'Dr. Anna Adams', 'cardiology', '{clinic}', 'active');
         INSERT INTO users (id, email, role, full_name, email_verified_at)
             VALUES ('{patient}', 'ann@example.com', 'patient', 'Ann Patient', now());"
    );
    for (i, id) in slots.iter().enumerate() {
        let start = Utc::now() + Duration::days(3) + Duration::hours(i as i64);
        sql.push_str(&format!(
            "INSERT INTO slots (id, doctor_id, starts_at, ends_at, status)
                 VALUES ('{id}', '{doctor}', '{}', '{}', 'available');",
            start.to_rfc3339(),
            (start + Duration::minutes(30)).to_rfc3339()
        ));
    }
    db.execute(&sql);
    let log = StatementLog::default();
    let pool = Db::with_statement_log(
        &PoolSettings {
            url: db.url(),
            // One connection: every statement below runs on it, so its prepared
            // statements are all in its `pg_prepared_statements`.
            max_size: 1,
            connect_timeout: std::time::Duration::from_secs(5),
            statement_timeout: std::time::Duration::from_secs(5),
        },
        log.clone(),
    )
    .unwrap();
    let repo = PgAppointments::new(pool.clone(), Arc::new(OutboxSignal::default()));
    let service = AppointmentService::new(
        Arc::new(repo),
        Arc::new(SystemClock),
        BookingPolicy {
            min_notice: Duration::hours(2),
            horizon: Duration::days(90),
            max_active_per_patient: 5,
            change_deadline: Duration::zero(),
            no_show_limit: None,
            no_show_window: Duration::days(180),
            no_show_email: false,
        },
        booking_service::domain::links::ManageLinks::new(b"bench", "http://127.0.0.1:8080/manage"),
    )
    .with_reminders(ReminderPlan::parse(&["24h", "2h"]).unwrap());
    Fixture {
        _db: db,
        pool,
        log,
        service,
        patient: UserId(patient),
        slots,
    }
}

impl Fixture {
    /// The statements the connection has prepared.
    async fn prepared(&self) -> Vec<String> {
        let rows: Vec<Prepared> = self
            .pool
            .run(|conn| {
                diesel::sql_query("SELECT statement FROM pg_prepared_statements")
                    .load(conn)
                    .map_err(DbError::from)
            })
            .await
            .unwrap();
        self.log.take();
        rows.into_iter().map(|r| r.statement).collect()
    }

    /// Asserts that each statement of `sent` other than BEGIN/COMMIT is prepared.
    async fn assert_prepared(&self, what: &str, sent: &[String]) {
        let prepared = self.prepared().await;
        for s in sent
            .iter()
            .filter(|s| !matches!(s.as_str(), "BEGIN" | "COMMIT"))
        {
            assert!(
                prepared.iter().any(|p| p.trim() == s.trim()),
                "{what}: not a prepared statement: {s}\nprepared: {prepared:#?}"
            );
        }
    }
}

#[tokio::test]
async fn a_booking_is_five_round_trips_all_prepared() {
    let f = fixture();
    // The first booking prepares the statements; the second runs on a warm connection.
    let first = f
        .service
        .book(
            f.patient,
            booking_service::domain::SlotId(f.slots[0]),
            "check-up".into(),
            Some("key-1".into()),
        )
        .await
        .unwrap();
    let cold = f.log.take();
    let second = f
        .service
        .book(
            f.patient,
            booking_service::domain::SlotId(f.slots[1]),
            "check-up".into(),
            None,
        )
        .await
        .unwrap();
    let warm = f.log.take();
    assert!(!first.replayed && !second.replayed);
    assert_eq!(
        warm.len(),
        5,
        "BEGIN, the patient, the slot, the write, COMMIT; sent: {warm:#?}"
    );
    assert_eq!(warm.first().map(String::as_str), Some("BEGIN"));
    assert_eq!(warm.last().map(String::as_str), Some("COMMIT"));
    assert_eq!(cold.len(), warm.len(), "{cold:#?}");
    f.assert_prepared("booking", &warm).await;

    // What the one write statement wrote, as a later read sees it.
    let got = f
        .service
        .get(Actor::Patient(f.patient), second.appointment.id.into())
        .await
        .unwrap();
    assert_eq!(
        got, second.appointment,
        "the returned appointment is the stored one"
    );
    f.log.take();

    // A replay of the first request: the same appointment, nothing written.
    let replay = f
        .service
        .book(
            f.patient,
            booking_service::domain::SlotId(f.slots[0]),
            "check-up".into(),
            Some("key-1".into()),
        )
        .await
        .unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.appointment, first.appointment);
    let sent = f.log.take();
    assert_eq!(
        sent.len(),
        5,
        "BEGIN, patient, slot, the earlier appointment, COMMIT: {sent:#?}"
    );
}

#[tokio::test]
async fn a_reschedule_is_five_round_trips_and_a_cancellation_four() {
    let f = fixture();
    let booked = f
        .service
        .book(
            f.patient,
            booking_service::domain::SlotId(f.slots[0]),
            String::new(),
            None,
        )
        .await
        .unwrap()
        .appointment;
    let patient = Actor::Patient(f.patient);
    // Twice each, so the counted run is on a warm connection.
    f.service
        .reschedule(
            patient,
            booked.id,
            booking_service::domain::SlotId(f.slots[1]),
            None,
        )
        .await
        .unwrap();
    f.log.take();
    let moved = f
        .service
        .reschedule(
            patient,
            booked.id,
            booking_service::domain::SlotId(f.slots[2]),
            None,
        )
        .await
        .unwrap();
    let sent = f.log.take();
    assert_eq!(
        sent.len(),
        5,
        "BEGIN, the appointment, both slots, the write, COMMIT: {sent:#?}"
    );
    f.assert_prepared("reschedule", &sent).await;
    assert_eq!(moved.slot_id, booking_service::domain::SlotId(f.slots[2]));
    assert_eq!(
        f.service.get(patient, booked.id.into()).await.unwrap(),
        moved,
        "the returned appointment is the stored one"
    );

    let other = f
        .service
        .book(
            f.patient,
            booking_service::domain::SlotId(f.slots[3]),
            String::new(),
            None,
        )
        .await
        .unwrap()
        .appointment;
    f.service.cancel(patient, other.id, None).await.unwrap();
    f.log.take();
    let cancelled = f
        .service
        .cancel(patient, booked.id, Some("ill".into()))
        .await
        .unwrap();
    let sent = f.log.take();
    assert_eq!(
        sent.len(),
        4,
        "BEGIN, the appointment with its slot, the write, COMMIT: {sent:#?}"
    );
    f.assert_prepared("cancel", &sent).await;
    assert_eq!(
        f.service.get(patient, booked.id.into()).await.unwrap(),
        cancelled
    );
}

#[tokio::test]
async fn a_connection_the_server_closed_is_replaced_without_failing_the_booking() {
    let f = fixture();
    f.service
        .book(
            f.patient,
            booking_service::domain::SlotId(f.slots[0]),
            String::new(),
            None,
        )
        .await
        .unwrap();
    // The server ends the pool's one (idle) connection, as a restart or an
    // administrator would; nothing has tested it since.
    f._db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    );
    let booked = f
        .service
        .book(
            f.patient,
            booking_service::domain::SlotId(f.slots[1]),
            String::new(),
            None,
        )
        .await
        .expect("BEGIN on the dead connection is retried on a new one");
    assert_eq!(
        booked.appointment.slot_id,
        booking_service::domain::SlotId(f.slots[1])
    );
}
