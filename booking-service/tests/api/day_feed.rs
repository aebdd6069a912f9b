//! The live day feed (`StreamDailyAppointments`) across replicas and paths: the
//! database announces every committed change of an appointment, so a watcher on one
//! replica sees what another replica, a command or plain SQL committed; and a watcher
//! whose replica lost its listening connection is sent a fresh snapshot once it is back.

use crate::grpc::{authed, next_event_within};
use crate::helpers::{id_of, practice, spawn_app, spawn_app_with, TestApp, TestUser};
use booking_service::domain::{AppointmentId, SlotId};
use booking_service::repository::day_feed::APPLICATION_NAME;
use booking_service::service::appointments::Actor;
use booking_service::startup::{Application, Services};
use chrono::{TimeZone, Utc};
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, RunQueryDsl};
use medbook_proto::schedule::v1 as pb;
use medbook_proto::schedule::v1::schedule_service_client::ScheduleServiceClient;
use medbook_test_support::{eventually, metric};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

/// What "live" means: a change reaches a watcher on another replica within a second
/// of its commit.
const LIVE: Duration = Duration::from_secs(1);
/// The other tests' deadline for a change to arrive: generous, for loaded machines.
const SOON: Duration = Duration::from_secs(5);

/// Tomorrow in the practice's zone (Europe/Berlin): its date, and the minutes from now
/// (as `create_slot` counts them) to `hour`:00 on it. Far from midnight, so the slots
/// of a test never straddle two days.
fn tomorrow_at(hour: u32) -> (String, i64) {
    let tz = chrono_tz::Europe::Berlin;
    let date = Utc::now()
        .with_timezone(&tz)
        .date_naive()
        .succ_opt()
        .unwrap();
    let at = tz
        .from_local_datetime(&date.and_hms_opt(hour, 0, 0).unwrap())
        .single()
        .unwrap()
        .with_timezone(&Utc);
    let now =
        chrono::DurationRound::duration_trunc(Utc::now(), chrono::Duration::minutes(1)).unwrap();
    (date.to_string(), (at - now).num_minutes())
}

/// A second replica of `app`: another process's worth of server (HTTP, gRPC, its own
/// day feed listener) on the same database.
struct Replica {
    address: String,
    grpc_address: String,
}

async fn replica(app: &TestApp) -> Replica {
    let replica = Application::build(app.settings.clone()).await.unwrap();
    let r = Replica {
        address: format!("http://127.0.0.1:{}", replica.port()),
        grpc_address: format!("http://127.0.0.1:{}", replica.grpc_port().unwrap()),
    };
    tokio::spawn(replica.run_until_stopped());
    r
}

/// Opens the doctor's day on the gRPC server at `grpc_address`; returns the stream and
/// the ids in its first snapshot.
async fn watch(
    grpc_address: &str,
    doctor_id: &str,
    date: &str,
    user: &TestUser,
) -> (tonic::Streaming<pb::DayEvent>, Vec<String>) {
    let mut c = ScheduleServiceClient::connect(grpc_address.to_owned())
        .await
        .unwrap();
    let mut stream = c
        .stream_daily_appointments(authed(
            pb::StreamDailyAppointmentsRequest {
                doctor_id: doctor_id.to_owned(),
                date: date.to_owned(),
            },
            user,
        ))
        .await
        .unwrap()
        .into_inner();
    let pb::day_event::Kind::Snapshot(snapshot) =
        next_event_within(&mut stream, Duration::from_secs(5)).await
    else {
        panic!("the first message is the snapshot");
    };
    assert_eq!(snapshot.date, date);
    let ids = snapshot.appointments.into_iter().map(|a| a.id).collect();
    (stream, ids)
}

/// The next message, which must be a change, within `deadline`: its kind and the
/// appointment's id.
async fn next_change(
    stream: &mut tonic::Streaming<pb::DayEvent>,
    deadline: Duration,
) -> (pb::ChangeKind, String) {
    match next_event_within(stream, deadline).await {
        pb::day_event::Kind::Change(change) => (change.kind(), change.appointment.unwrap().id),
        other => panic!("expected a change, got {other:?}"),
    }
}

/// Books `slot_id` for `patient` through the HTTP API at `address`.
async fn book_at(address: &str, patient: &TestUser, slot_id: &str) -> String {
    let res = reqwest::Client::new()
        .post(format!("{address}/api/v1/appointments"))
        .bearer_auth(&patient.access)
        .json(&json!({"slot_id": slot_id, "reason": "check-up"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    id_of(&res.json::<Value>().await.unwrap())
}

#[tokio::test]
async fn a_watcher_on_one_replica_sees_what_another_replica_commits() {
    let a = spawn_app().await;
    let b = replica(&a).await;
    let p = practice(&a).await;
    let d = p.doctor_id();
    let (date, at) = tomorrow_at(10);
    let first = a.create_slot(&p.admin, &d, at, 30).await;
    let second = a.create_slot(&p.admin, &d, at + 60, 30).await;
    let patient = a.patient().await;
    let (mut on_a, held) = watch(&a.grpc_address, &d, &date, &p.admin).await;
    assert!(held.is_empty());
    let (mut on_b, _) = watch(&b.grpc_address, &d, &date, &p.admin).await;

    // Booked over HTTP through replica B: A's watcher sees it within a second.
    let booked = book_at(&b.address, &patient, &id_of(&first)).await;
    assert_eq!(
        next_change(&mut on_a, LIVE).await,
        (pb::ChangeKind::Booked, booked.clone())
    );
    assert_eq!(
        next_change(&mut on_b, LIVE).await,
        (pb::ChangeKind::Booked, booked.clone())
    );

    // Booked over gRPC through replica A: B's watcher sees it.
    let mut grpc_a = crate::grpc::client(&a).await;
    let other = grpc_a
        .book_slot(authed(
            pb::BookSlotRequest {
                slot_id: id_of(&second),
                reason: "follow-up".into(),
                idempotency_key: String::new(),
            },
            &patient,
        ))
        .await
        .unwrap()
        .into_inner()
        .id;
    assert_eq!(
        next_change(&mut on_b, LIVE).await,
        (pb::ChangeKind::Booked, other.clone())
    );
    assert_eq!(
        next_change(&mut on_a, LIVE).await,
        (pb::ChangeKind::Booked, other)
    );

    // Cancelled through B: A hears it.
    let res = reqwest::Client::new()
        .request(
            Method::POST,
            format!("{}/api/v1/appointments/{booked}/cancel", b.address),
        )
        .bearer_auth(&patient.access)
        .json(&json!({"reason": "travelling"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        next_change(&mut on_a, LIVE).await,
        (pb::ChangeKind::Cancelled, booked)
    );
    assert_eq!(
        metric(&a.ops_address, "day_feed_listener_connected").await,
        1.0
    );
    assert!(metric(&a.ops_address, "day_feed_notifications_total").await >= 3.0);
}

#[tokio::test]
async fn changes_made_in_sql_or_by_a_command_reach_the_watchers() {
    let app = spawn_app().await;
    let p = practice(&app).await;
    let d = p.doctor_id();
    let (date, at) = tomorrow_at(10);
    let slots: Vec<String> = {
        let mut v = Vec::new();
        for i in 0..3 {
            v.push(id_of(&app.create_slot(&p.admin, &d, at + i * 60, 30).await));
        }
        v
    };
    // A slot on the day after: where the command moves an appointment to.
    let later = id_of(&app.create_slot(&p.admin, &d, at + 24 * 60, 30).await);
    let patient = app.patient().await;
    let by_sql = book_at(&app.address, &patient, &slots[0]).await;
    let by_command = book_at(&app.address, &patient, &slots[1]).await;
    let (mut stream, held) = watch(&app.grpc_address, &d, &date, &p.admin).await;
    assert_eq!(held.len(), 2);

    // Cancelled in plain SQL, behind every replica's back.
    app.db.execute(&format!(
        "BEGIN;
         UPDATE appointments SET status = 'cancelled', cancel_reason = 'by hand',
                cancelled_at = now(), updated_at = now(), version = version + 1
          WHERE id = '{by_sql}';
         UPDATE slots SET status = 'available' WHERE id = '{}';
         COMMIT;",
        slots[0]
    ));
    assert_eq!(
        next_change(&mut stream, SOON).await,
        (pb::ChangeKind::Cancelled, by_sql)
    );

    // Moved to the next day by the use case a command runs, in a process of its own
    // (`Services::build`, as every CLI command builds it: no server, no listener).
    let command = Services::build(&app.settings).await.unwrap();
    command
        .appointments
        .reschedule(
            Actor::Admin,
            AppointmentId(by_command.parse().unwrap()),
            SlotId(later.parse().unwrap()),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        next_change(&mut stream, SOON).await,
        (pb::ChangeKind::RescheduledOut, by_command)
    );

    // Booked in plain SQL.
    let inserted = uuid::Uuid::new_v4();
    app.db.execute(&format!(
        "BEGIN;
         UPDATE slots SET status = 'booked' WHERE id = '{slot}';
         INSERT INTO appointments (id, slot_id, patient_id, doctor_id, status, reason, starts_at)
         SELECT '{inserted}', s.id, '{patient}', s.doctor_id, 'booked', 'by hand', s.starts_at
           FROM slots s WHERE s.id = '{slot}';
         COMMIT;",
        slot = slots[2],
        patient = patient.id,
    ));
    assert_eq!(
        next_change(&mut stream, SOON).await,
        (pb::ChangeKind::Booked, inserted.to_string())
    );
}

/// Counts the listening connections of database `name`, or (with `kill`) ends them and
/// waits until they are gone.
fn listeners(maintenance: &mut PgConnection, name: &str, kill: bool) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let what = if kill {
        "count(*) FILTER (WHERE pg_terminate_backend(pid, 5000))"
    } else {
        "count(*)"
    };
    diesel::sql_query(format!(
        "SELECT {what} AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = $2"
    ))
    .bind::<diesel::sql_types::Text, _>(name)
    .bind::<diesel::sql_types::Text, _>(APPLICATION_NAME)
    .get_result::<N>(maintenance)
    .unwrap()
    .n
}

#[tokio::test]
async fn a_watcher_gets_a_fresh_snapshot_after_the_listener_lost_its_connection() {
    // While the database refuses new connections below, only the booking uses the
    // pool, on a connection it already has: no access recheck, no reminder scheduler.
    let app = spawn_app_with(|s| {
        s.grpc.watch_recheck_secs = 3600;
        s.reminders.scheduler_enabled = false;
    })
    .await;
    let p = practice(&app).await;
    let d = p.doctor_id();
    let (date, at) = tomorrow_at(10);
    let slot = id_of(&app.create_slot(&p.admin, &d, at, 30).await);
    let patient = app.patient().await;
    let (mut stream, held) = watch(&app.grpc_address, &d, &date, &p.admin).await;
    assert!(held.is_empty());
    let ops = app.ops_address.clone();
    assert_eq!(metric(&ops, "day_feed_listener_connected").await, 1.0);
    let mut maintenance =
        PgConnection::establish(&medbook_test_support::pg::maintenance_url()).unwrap();
    assert_eq!(listeners(&mut maintenance, &app.db.name, false), 1);

    // The listener's connection is killed, and the database refuses new connections
    // for a while (the pool keeps those it has): the listener cannot listen again, so
    // the booking below commits while nothing listens, whatever the timing.
    let name = app.db.name.clone();
    maintenance
        .batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .unwrap();
    assert_eq!(listeners(&mut maintenance, &name, true), 1);
    eventually("the listener noticed", Duration::from_secs(5), || async {
        (metric(&ops, "day_feed_listener_connected").await == 0.0).then_some(())
    })
    .await;
    let booked = book_at(&app.address, &patient, &slot).await;
    assert_eq!(listeners(&mut maintenance, &name, false), 0);
    assert_eq!(
        metric(&ops, "day_feed_listener_reconnects_total").await,
        0.0
    );
    maintenance
        .batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .unwrap();

    // Listening again (after a backoff of a few seconds at most), the replica sends the
    // watcher a fresh snapshot, with the booking it never heard of.
    let pb::day_event::Kind::Snapshot(snapshot) =
        next_event_within(&mut stream, Duration::from_secs(30)).await
    else {
        panic!("a fresh snapshot first");
    };
    let ids: Vec<String> = snapshot.appointments.into_iter().map(|a| a.id).collect();
    assert_eq!(ids, vec![booked.clone()]);
    assert_eq!(
        metric(&ops, "day_feed_listener_reconnects_total").await,
        1.0
    );
    assert_eq!(metric(&ops, "day_feed_listener_connected").await, 1.0);
    assert_eq!(listeners(&mut maintenance, &name, false), 1);

    // And changes flow live again.
    let res = app
        .send_json(
            Method::POST,
            &format!("/api/v1/appointments/{booked}/cancel"),
            Some(&patient.access),
            &json!({"reason": "travelling"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        next_change(&mut stream, SOON).await,
        (pb::ChangeKind::Cancelled, booked)
    );
}

/// Listens on the trigger's channel with a connection of its own; the payloads arrive
/// on the receiver. The connection lasts as long as the client.
async fn listen_raw(
    app: &TestApp,
) -> (
    tokio_postgres::Client,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (client, mut connection) = tokio_postgres::connect(&app.db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(message)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let tokio_postgres::AsyncMessage::Notification(n) = message {
                assert_eq!(n.channel(), "appointment_changes");
                if tx.send(n.payload().to_owned()).is_err() {
                    return;
                }
            }
        }
    });
    client
        .batch_execute("LISTEN appointment_changes")
        .await
        .unwrap();
    (client, rx)
}

/// The next announcement, within five seconds, as JSON.
async fn announcement(announced: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> Value {
    let payload = tokio::time::timeout(Duration::from_secs(5), announced.recv())
        .await
        .expect("an announcement in time")
        .expect("the listening connection is open");
    assert!(payload.len() < 1000, "{payload}");
    serde_json::from_str(&payload).unwrap()
}

/// The trigger itself: what it announces for a booking and a reschedule, and that a
/// statement changing nothing a day shows, or a rolled-back one, announces nothing.
#[tokio::test]
async fn the_trigger_announces_each_committed_change_with_a_small_payload() {
    let app = spawn_app().await;
    let p = practice(&app).await;
    let d = p.doctor_id();
    let (_, at) = tomorrow_at(10);
    let first = id_of(&app.create_slot(&p.admin, &d, at, 30).await);
    let second = id_of(&app.create_slot(&p.admin, &d, at + 60, 30).await);
    let patient = app.patient().await;
    let (client, mut announced) = listen_raw(&app).await;

    let booked = book_at(&app.address, &patient, &first).await;
    let a = announcement(&mut announced).await;
    assert_eq!(a["appointment_id"], booked.as_str());
    assert_eq!(a["doctor_id"], d.as_str());
    assert_eq!(a["kind"], "booked");
    assert_eq!(a["version"], 1);
    assert!(a["previous_starts_at"].is_null(), "{a}");

    let res = app
        .send_json(
            Method::POST,
            &format!("/api/v1/appointments/{booked}/reschedule"),
            Some(&patient.access),
            &json!({"slot_id": second}),
        )
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let moved = announcement(&mut announced).await;
    assert_eq!(moved["kind"], "rescheduled");
    assert_eq!(moved["version"], 2);
    assert_eq!(moved["previous_starts_at"], a["starts_at"]);
    let starts = |v: &Value| {
        v.as_str()
            .unwrap()
            .parse::<chrono::DateTime<Utc>>()
            .unwrap()
    };
    assert_eq!(
        starts(&moved["starts_at"]) - starts(&a["starts_at"]),
        chrono::Duration::minutes(60)
    );

    // Nothing a day shows changes, or nothing commits: silence. Then a change that
    // commits is the next announcement.
    app.db.execute(&format!(
        "UPDATE appointments SET reason = 'other' WHERE id = '{booked}';
         UPDATE appointments SET status = status, version = version WHERE id = '{booked}';
         BEGIN;
         UPDATE appointments SET status = 'cancelled' WHERE id = '{booked}';
         ROLLBACK;
         UPDATE appointments SET status = 'completed' WHERE id = '{booked}';"
    ));
    let done = announcement(&mut announced).await;
    assert_eq!(done["kind"], "status", "{done}");
    assert_eq!(done["appointment_id"], booked.as_str());
    drop(client);
}
