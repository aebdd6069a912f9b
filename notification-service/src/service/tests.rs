//! The handler's rules with in-memory fakes of its ports.

use super::fakes::*;
use super::*;
use chrono::TimeZone;
use medbook_shared::events::*;

struct Rig {
    mailer: Arc<FakeMailer>,
    log: Arc<FakeDeliveryLog>,
    order: Arc<FakeOrderStore>,
    dlq: Arc<FakeDeadLetters>,
    budget: Arc<FakeBudget>,
    stop: watch::Sender<bool>,
    handler: NotificationHandler,
}

/// A handler on fakes, on the system's clock.
fn rig(max_age: Duration, max_dead_letters: u32) -> Rig {
    rig_on(Arc::new(SystemClock), max_age, max_dead_letters)
}

fn rig_on(clock: Arc<dyn Clock>, max_age: Duration, max_dead_letters: u32) -> Rig {
    let mailer = Arc::new(FakeMailer::default());
    let log = Arc::new(FakeDeliveryLog::default());
    let order = Arc::new(FakeOrderStore::default());
    let dlq = Arc::new(FakeDeadLetters::default());
    let budget = Arc::new(FakeBudget::new(max_dead_letters, CAP_WINDOW));
    let (stop, stopped) = watch::channel(false);
    let metrics = Metrics::new().unwrap();
    let handler = NotificationHandler::new(
        HandlerParts {
            mailer: mailer.clone(),
            log: log.clone(),
            order_store: order.clone(),
            dlq: dlq.clone(),
            retry: RetryPolicy {
                initial_backoff: Duration::from_millis(5),
                max_backoff: Duration::from_millis(20),
                max_age,
            },
            budget: budget.clone(),
            order: OrderPolicy {
                max_wait: ORDER_WAIT,
                recheck: Duration::from_millis(2),
            },
            smtp: SmtpStatus::new(metrics.smtp_up_gauge()),
            clock,
            metrics,
            stale_after: Duration::from_secs(60),
            organizer: "no-reply@medbook.local".into(),
        },
        stopped,
    );
    Rig {
        mailer,
        log,
        order,
        dlq,
        budget,
        stop,
        handler,
    }
}

const DAY: Duration = Duration::from_secs(86_400);
/// How long the rig's e-mails wait for an earlier version of their appointment.
const ORDER_WAIT: Duration = Duration::from_millis(300);
/// The rig's dead-letter window: a message held by a full window asks again after
/// about this long (at least `DEPENDENCY_RETRY`).
const CAP_WINDOW: Duration = Duration::from_secs(1);

fn event(tz: &str) -> EventEnvelope {
    let t = |h| chrono::Utc.with_ymd_and_hms(2026, 12, 1, h, 0, 0).unwrap();
    EventEnvelope::new(
        t(8),
        AppointmentEvent::Created(AppointmentSnapshot {
            appointment_id: Uuid::new_v4(),
            slot_id: Uuid::new_v4(),
            starts_at: t(9),
            ends_at: t(10),
            reason: "checkup".into(),
            patient: PatientInfo {
                id: Uuid::new_v4(),
                email: "ana@example.com".into(),
                full_name: "Ana".into(),
            },
            doctor: DoctorInfo {
                id: Uuid::new_v4(),
                full_name: "Dr. B".into(),
                specialty: "GP".into(),
            },
            clinic: ClinicInfo {
                id: Uuid::new_v4(),
                name: "C".into(),
                city: "Berlin".into(),
                address: "A 1".into(),
                time_zone: tz.into(),
            },
            version: 1,
            manage_url: Some("https://medbook.example/appointments/manage?token=m".into()),
        }),
    )
}

fn message(payload: Option<Vec<u8>>) -> Incoming {
    Incoming {
        topic: "appointments.created".into(),
        partition: 2,
        offset: 41,
        key: Some(b"k".to_vec()),
        payload,
        headers: vec![("medbook-event-type".into(), Some(b"x".to_vec()))],
        timestamp: Some(chrono::Utc::now()),
    }
}

fn encoded(e: &EventEnvelope) -> Incoming {
    message(Some(e.encode().unwrap()))
}

#[tokio::test]
async fn sends_once_and_skips_redeliveries() {
    let r = rig(DAY, 10);
    let e = event("Europe/Berlin");
    let m = encoded(&e);
    assert_eq!(
        r.handler.handle(&m).await,
        Ok(Outcome::Sent {
            attempts: 1,
            takeover: false
        })
    );
    assert_eq!(r.handler.handle(&m).await, Ok(Outcome::Duplicate));
    assert_eq!(r.mailer.sent.lock().unwrap().len(), 1);
    assert_eq!(r.log.status(e.id), Some("sent"));
}

#[tokio::test]
async fn undecodable_messages_go_to_the_dlq_at_once() {
    let r = rig(DAY, 10);
    let mut unknown_type: serde_json::Value =
        serde_json::from_slice(&event("UTC").encode().unwrap()).unwrap();
    unknown_type["type"] = "appointment.teleported".into();
    let mut v2 = unknown_type.clone();
    v2["type"] = "appointment.created".into();
    v2["version"] = 2.into();
    for payload in [
        None,
        Some(b"{not json".to_vec()),
        Some(serde_json::to_vec(&unknown_type).unwrap()),
        Some(serde_json::to_vec(&v2).unwrap()),
    ] {
        assert_eq!(
            r.handler.handle(&message(payload)).await,
            Ok(Outcome::DeadLettered(FailureKind::Poison))
        );
    }
    assert_eq!(*r.mailer.calls.lock().unwrap(), 0);
    let letters = r.dlq.letters.lock().unwrap();
    assert_eq!(letters.len(), 4);
    // Dead-lettered at once: no attempt, so no retry and no backoff.
    assert!(letters.iter().all(|(_, l)| l.attempts == 0), "{letters:?}");
    assert!(letters[2].1.error.contains("appointment.teleported"));
    assert!(letters[3].1.error.contains("version 2"));
    assert_eq!(letters[1].0.payload.as_deref(), Some(&b"{not json"[..]));
}

#[tokio::test]
async fn transient_failures_are_retried_then_sent() {
    let r = rig(DAY, 10);
    r.mailer.script.lock().unwrap().extend([
        Err(SendError::Transient("421 busy".into())),
        Err(SendError::Transient("connection refused".into())),
    ]);
    let e = event("UTC");
    assert_eq!(
        r.handler.handle(&encoded(&e)).await,
        Ok(Outcome::Sent {
            attempts: 3,
            takeover: false
        })
    );
    assert!(r.dlq.letters.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_outage_holds_the_mail_until_the_server_is_back_and_never_dead_letters_it() {
    let r = rig(DAY, 1);
    r.mailer
        .script
        .lock()
        .unwrap()
        .extend((0..20).map(|_| Err(SendError::Unavailable("connection refused".into()))));
    let e = event("UTC");
    assert_eq!(
        r.handler.handle(&encoded(&e)).await,
        Ok(Outcome::Sent {
            attempts: 21,
            takeover: false
        })
    );
    assert!(r.dlq.letters.lock().unwrap().is_empty());
    assert!(r.handler.smtp().is_up());
}

#[tokio::test]
async fn a_waiting_email_is_woken_as_soon_as_the_server_is_seen_up() {
    // A backoff far longer than the test: only the wake-up can end the wait.
    let mut h = rig(DAY, 10);
    h.handler.retry.initial_backoff = Duration::from_secs(3600);
    h.handler.retry.max_backoff = Duration::from_secs(3600);
    let r = Arc::new(h);
    r.mailer
        .script
        .lock()
        .unwrap()
        .push_back(Err(SendError::Unavailable("refused".into())));
    let e = event("UTC");
    let task = {
        let r = r.clone();
        tokio::spawn(async move { r.handler.handle(&encoded(&e)).await })
    };
    let mut down = r.handler.smtp().subscribe();
    down.wait_for(|up| !*up).await.unwrap();
    r.handler.smtp().set_up(true);
    let outcome = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("still waiting after the server came back")
        .unwrap();
    assert!(matches!(outcome, Ok(Outcome::Sent { attempts: 2, .. })));
}

#[tokio::test]
async fn mail_older_than_the_maximum_age_is_dead_lettered_without_tripping_the_cap() {
    // The cap admits no dead letter at all, yet expired mail is not counted.
    let r = rig(Duration::from_secs(3600), 0);
    r.mailer
        .script
        .lock()
        .unwrap()
        .extend((0..3).map(|_| Err(SendError::Transient("451 later".into()))));
    let e = event("UTC");
    let mut m = encoded(&e);
    m.timestamp = Some(chrono::Utc::now() - chrono::Duration::hours(2));
    assert_eq!(
        r.handler.handle(&m).await,
        Ok(Outcome::DeadLettered(FailureKind::Expired))
    );
    assert_eq!(*r.mailer.calls.lock().unwrap(), 1);
    let letters = r.dlq.letters.lock().unwrap();
    assert!(
        letters[0].1.error.contains("retry.max_age"),
        "{}",
        letters[0].1.error
    );
    // Released: a replay may try again and send.
    assert!(r.log.status(e.id).is_none());
}

#[tokio::test]
async fn permanent_failures_are_dead_lettered_and_released_and_a_replay_sends() {
    let r = rig(DAY, 10);
    r.mailer
        .script
        .lock()
        .unwrap()
        .push_back(Err(SendError::Permanent("550 no such user".into())));
    let p = event("UTC");
    assert_eq!(
        r.handler.handle(&encoded(&p)).await,
        Ok(Outcome::DeadLettered(FailureKind::Permanent))
    );
    assert_eq!(*r.mailer.calls.lock().unwrap(), 1);
    {
        let letters = r.dlq.letters.lock().unwrap();
        assert_eq!(letters[0].1.attempts, 1);
        assert!(letters[0].1.error.contains("550"));
    }
    assert!(r.log.status(p.id).is_none());
    // The replayed event goes through once the cause is gone.
    assert!(matches!(
        r.handler.handle(&encoded(&p)).await,
        Ok(Outcome::Sent { .. })
    ));
}

fn reminder_of(e: &EventEnvelope, version: i32, starts_in: chrono::Duration) -> EventEnvelope {
    let mut a = e.appointment().unwrap().clone();
    a.version = version;
    a.starts_at = chrono::Utc::now() + starts_in;
    a.ends_at = a.starts_at + chrono::Duration::minutes(30);
    EventEnvelope::new(
        chrono::Utc::now(),
        AppointmentEvent::Reminder(Reminder {
            appointment: a,
            offset: "2h".into(),
            due_at: chrono::Utc::now(),
        }),
    )
}

#[tokio::test]
async fn a_reminder_is_sent_only_while_its_version_is_current_and_the_appointment_ahead() {
    let r = rig(DAY, 10);
    let booked = event("UTC");
    let hours = chrono::Duration::hours(2);
    assert!(matches!(
        r.handler.handle(&encoded(&booked)).await,
        Ok(Outcome::Sent { .. })
    ));
    // Current: sent.
    let current = reminder_of(&booked, 1, hours);
    assert!(matches!(
        r.handler.handle(&encoded(&current)).await,
        Ok(Outcome::Sent { .. })
    ));
    // The appointment was moved (version 2) before the old reminder arrived.
    let mut moved = booked.clone();
    moved.id = Uuid::new_v4();
    if let Event::Appointment(AppointmentEvent::Created(a)) = &mut moved.event {
        a.version = 2;
    }
    r.handler.handle(&encoded(&moved)).await.unwrap();
    let stale = reminder_of(&booked, 1, hours);
    assert_eq!(
        r.handler.handle(&encoded(&stale)).await,
        Ok(Outcome::Skipped(SkipReason::Stale))
    );
    // Held up past the start: dropped, not sent late.
    let late = reminder_of(&booked, 2, -chrono::Duration::minutes(1));
    assert_eq!(
        r.handler.handle(&encoded(&late)).await,
        Ok(Outcome::Skipped(SkipReason::Started))
    );
    assert_eq!(r.mailer.sent.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn a_reminder_that_goes_stale_while_it_waits_for_the_server_is_dropped() {
    let r = Arc::new(rig(DAY, 10));
    r.mailer
        .script
        .lock()
        .unwrap()
        .extend((0..1000).map(|_| Err(SendError::Transient("451 later".into()))));
    let booked = event("UTC");
    let reminder = reminder_of(&booked, 1, chrono::Duration::hours(2));
    let task = {
        let r = r.clone();
        let m = encoded(&reminder);
        tokio::spawn(async move { r.handler.handle(&m).await })
    };
    // Meanwhile the appointment is cancelled (version 2).
    r.order
        .observe_version(booked.appointment().unwrap().appointment_id, 2)
        .await
        .unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome, Ok(Outcome::Skipped(SkipReason::Stale)));
    assert!(r.mailer.sent.lock().unwrap().is_empty());
    assert!(r.log.status(reminder.id).is_none());
}

fn account_link(expires_in: chrono::Duration) -> AccountLink {
    AccountLink {
        account: AccountInfo {
            id: Uuid::new_v4(),
            email: "ann@example.com".into(),
            full_name: "Ann".into(),
        },
        link: "https://medbook.example/account/verify-email?token=t0k3n".into(),
        expires_at: chrono::Utc::now() + expires_in,
    }
}

fn account_event(e: AccountEvent) -> EventEnvelope {
    EventEnvelope::new(chrono::Utc::now(), e)
}

/// Each kind of account e-mail, its link (if any) working for another `expires_in`.
fn account_events(expires_in: chrono::Duration) -> Vec<EventEnvelope> {
    let l = account_link(expires_in);
    vec![
        account_event(AccountEvent::VerifyEmail(l.clone())),
        account_event(AccountEvent::PasswordReset(l.clone())),
        account_event(AccountEvent::RegistrationAttempted(l.clone())),
        account_event(AccountEvent::EmailChanged(EmailChange {
            account: l.account,
            new_email: "ann@example.org".into(),
        })),
    ]
}

#[tokio::test]
async fn an_account_email_is_sent_once_and_a_redelivery_is_a_duplicate() {
    let r = rig(DAY, 10);
    let e = account_event(AccountEvent::VerifyEmail(account_link(
        chrono::Duration::hours(1),
    )));
    let m = encoded(&e);
    assert_eq!(
        r.handler.handle(&m).await,
        Ok(Outcome::Sent {
            attempts: 1,
            takeover: false
        })
    );
    assert_eq!(r.handler.handle(&m).await, Ok(Outcome::Duplicate));
    let sent = r.mailer.sent.lock().unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to_address, "ann@example.com");
    assert_eq!(sent[0].subject, "Verify your e-mail address");
    assert!(sent[0].calendar.is_none());
    assert_eq!(r.log.status(e.id), Some("sent"));
}

#[tokio::test]
async fn an_account_email_whose_link_expired_is_skipped_and_not_sent() {
    let r = rig(DAY, 10);
    let expired = account_events(-chrono::Duration::seconds(1));
    for e in &expired[..3] {
        assert_eq!(
            r.handler.handle(&encoded(e)).await,
            Ok(Outcome::Skipped(SkipReason::LinkExpired)),
            "{:?}",
            e.event_type()
        );
        assert!(r.log.status(e.id).is_none());
    }
    assert_eq!(*r.mailer.calls.lock().unwrap(), 0);
    // The address-change notice has no link: it never expires.
    assert!(matches!(
        r.handler.handle(&encoded(&expired[3])).await,
        Ok(Outcome::Sent { .. })
    ));
    // Counted apart from reminders.
    let metrics = r.handler.metrics.render().unwrap();
    assert!(
        metrics.contains("account_emails_skipped_total{reason=\"link_expired\"} 3"),
        "{metrics}"
    );
    for reason in ["stale", "started"] {
        assert!(
            metrics.contains(&format!("reminders_skipped_total{{reason=\"{reason}\"}} 0")),
            "{metrics}"
        );
    }
}

#[tokio::test]
async fn a_link_that_expires_while_its_mail_waits_for_the_server_is_dropped_and_released() {
    let r = rig(DAY, 10);
    r.mailer
        .script
        .lock()
        .unwrap()
        .extend((0..1000).map(|_| Err(SendError::Transient("451 later".into()))));
    let e = account_event(AccountEvent::PasswordReset(account_link(
        chrono::Duration::milliseconds(300),
    )));
    let outcome = tokio::time::timeout(Duration::from_secs(10), r.handler.handle(&encoded(&e)))
        .await
        .expect("still retrying after the link expired");
    assert_eq!(outcome, Ok(Outcome::Skipped(SkipReason::LinkExpired)));
    assert!(*r.mailer.calls.lock().unwrap() >= 1);
    assert!(r.mailer.sent.lock().unwrap().is_empty());
    assert!(r.log.status(e.id).is_none());
    assert!(r.dlq.letters.lock().unwrap().is_empty());
}

#[tokio::test]
async fn account_emails_never_touch_appointment_versions() {
    let r = rig(DAY, 10);
    for e in account_events(chrono::Duration::hours(1)) {
        assert!(matches!(
            r.handler.handle(&encoded(&e)).await,
            Ok(Outcome::Sent { .. })
        ));
    }
    assert_eq!(r.mailer.sent.lock().unwrap().len(), 4);
    assert_eq!(*r.order.version_calls.lock().unwrap(), 0);
    assert!(r.order.rows.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_revoked_partition_lets_go_of_its_waiting_message_and_its_claim() {
    let r = Arc::new(rig(DAY, 10));
    r.mailer
        .script
        .lock()
        .unwrap()
        .extend((0..1000).map(|_| Err(SendError::Unavailable("refused".into()))));
    let e = event("UTC");
    let (revoke, revoked) = watch::channel(false);
    let task = {
        let r = r.clone();
        let m = encoded(&e);
        tokio::spawn(async move { r.handler.handle_cancellable(&m, &revoked).await })
    };
    let mut up = r.handler.smtp().subscribe();
    up.wait_for(|up| !*up).await.unwrap();
    revoke.send(true).unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome, Err(HandleError::Stopped));
    assert!(r.log.status(e.id).is_none());
    assert!(r.dlq.letters.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_unknown_time_zone_is_a_permanent_failure() {
    let r = rig(DAY, 10);
    assert_eq!(
        r.handler.handle(&encoded(&event("Mars/Base"))).await,
        Ok(Outcome::DeadLettered(FailureKind::Permanent))
    );
    assert_eq!(*r.mailer.calls.lock().unwrap(), 0);
}

#[tokio::test]
async fn past_the_cap_a_refused_message_is_held_then_tried_again_not_dead_lettered() {
    let r = rig(DAY, 1);
    r.mailer.script.lock().unwrap().extend([
        Err(SendError::Refused("535 authentication failed".into())),
        Err(SendError::Refused("535 authentication failed".into())),
        // The operator fixed the credentials while the message was held.
        Ok(()),
    ]);
    assert_eq!(
        r.handler.handle(&encoded(&event("UTC"))).await,
        Ok(Outcome::DeadLettered(FailureKind::Refused))
    );
    // The window is full now: the second refusal is held, not dead-lettered, and the
    // message is sent once the server takes it.
    assert_eq!(
        r.handler.handle(&encoded(&event("UTC"))).await,
        Ok(Outcome::Sent {
            attempts: 2,
            takeover: false
        })
    );
    assert_eq!(r.dlq.letters.lock().unwrap().len(), 1);
    assert!(r
        .handler
        .metrics
        .render()
        .unwrap()
        .contains("dead_letters_held 0"));
}

#[tokio::test]
async fn poison_past_the_cap_waits_for_room_in_the_window_and_a_stop_lets_go_of_it() {
    let r = Arc::new(rig(DAY, 10));
    // Other workers filled the window: two answers `Full`, then room.
    *r.budget.full_answers.lock().unwrap() = 2;
    assert_eq!(
        r.handler.handle(&message(Some(b"x".to_vec()))).await,
        Ok(Outcome::DeadLettered(FailureKind::Poison))
    );
    assert_eq!(r.dlq.letters.lock().unwrap().len(), 1);
    // Held for good: a stop ends the wait, nothing is written, the offset stays.
    *r.budget.full_answers.lock().unwrap() = u32::MAX;
    let task = {
        let r = r.clone();
        tokio::spawn(async move { r.handler.handle(&message(Some(b"y".to_vec()))).await })
    };
    medbook_test_support::eventually(
        "the message is held by the cap",
        Duration::from_secs(10),
        || {
            let r = r.clone();
            async move {
                r.handler
                    .metrics
                    .render()
                    .unwrap()
                    .contains("dead_letters_held 1")
                    .then_some(())
            }
        },
    )
    .await;
    r.stop.send(true).unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome, Err(HandleError::Stopped));
    assert_eq!(r.dlq.letters.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn bounced_addresses_are_never_capped() {
    // The cap admits no dead letter at all; bounces go to the DLQ at once regardless.
    let r = rig(DAY, 0);
    r.mailer
        .script
        .lock()
        .unwrap()
        .extend((0..5).map(|_| Err(SendError::Permanent("550 5.1.1 no such user".into()))));
    for _ in 0..5 {
        assert_eq!(
            r.handler.handle(&encoded(&event("UTC"))).await,
            Ok(Outcome::DeadLettered(FailureKind::Permanent))
        );
    }
    assert_eq!(r.dlq.letters.lock().unwrap().len(), 5);
    assert!(r.budget.admitted.lock().unwrap().is_empty());
}

/// Version `version` of `booked`'s appointment, cancelled.
fn cancelled(booked: &EventEnvelope, version: i32) -> EventEnvelope {
    let mut a = booked.appointment().unwrap().clone();
    a.version = version;
    EventEnvelope::new(
        chrono::Utc::now(),
        AppointmentEvent::Cancelled(Cancellation {
            appointment: a,
            cancelled_by: CancelledBy::Patient,
            cancel_reason: None,
        }),
    )
}

fn subjects(r: &Rig) -> Vec<String> {
    r.mailer
        .sent
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.subject.split(':').next().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_cancellation_handled_first_waits_for_its_confirmation_and_follows_it() {
    let r = Arc::new(rig(DAY, 10));
    let booked = event("UTC");
    let cancel = cancelled(&booked, 2);
    let later = {
        let r = r.clone();
        let m = encoded(&cancel);
        tokio::spawn(async move { r.handler.handle(&m).await })
    };
    let id = booked.appointment().unwrap().appointment_id;
    medbook_test_support::eventually("the cancellation waits", Duration::from_secs(10), || {
        let r = r.clone();
        async move { r.order.waited(id).then_some(()) }
    })
    .await;
    assert!(r.mailer.sent.lock().unwrap().is_empty());
    assert!(matches!(
        r.handler.handle(&encoded(&booked)).await,
        Ok(Outcome::Sent { .. })
    ));
    assert!(matches!(later.await.unwrap(), Ok(Outcome::Sent { .. })));
    assert_eq!(
        subjects(&r),
        ["Appointment confirmed", "Appointment cancelled"]
    );
    let render = r.handler.metrics.render().unwrap();
    assert!(
        render.contains("email_order_wait_seconds_count{ended=\"in_order\"} 1"),
        "{render}"
    );
}

#[tokio::test]
async fn a_change_that_waited_its_longest_goes_and_the_late_earlier_one_is_superseded() {
    let r = rig(DAY, 10);
    let booked = event("UTC");
    let started = Instant::now();
    assert!(matches!(
        r.handler.handle(&encoded(&cancelled(&booked, 2))).await,
        Ok(Outcome::Sent { .. })
    ));
    assert!(started.elapsed() >= ORDER_WAIT);
    // The confirmation turns up after the cancellation was told: never sent as current.
    assert_eq!(
        r.handler.handle(&encoded(&booked)).await,
        Ok(Outcome::Skipped(SkipReason::Superseded))
    );
    assert_eq!(subjects(&r), ["Appointment cancelled"]);
    // Released, not recorded as sent: its event id stays free.
    assert!(r.log.status(booked.id).is_none());
}

#[tokio::test]
async fn a_dead_lettered_version_does_not_hold_the_next_and_its_replay_is_superseded() {
    let r = rig(DAY, 10);
    r.mailer
        .script
        .lock()
        .unwrap()
        .push_back(Err(SendError::Permanent("552 mailbox full".into())));
    let booked = event("UTC");
    assert_eq!(
        r.handler.handle(&encoded(&booked)).await,
        Ok(Outcome::DeadLettered(FailureKind::Permanent))
    );
    // The next version goes at once: the dead-lettered one is decided.
    let started = Instant::now();
    assert!(matches!(
        r.handler.handle(&encoded(&cancelled(&booked, 2))).await,
        Ok(Outcome::Sent { .. })
    ));
    assert!(started.elapsed() < ORDER_WAIT);
    // An operator replays the old confirmation from the DLQ: it is not sent.
    assert_eq!(
        r.handler.handle(&encoded(&booked)).await,
        Ok(Outcome::Skipped(SkipReason::Superseded))
    );
    assert_eq!(subjects(&r), ["Appointment cancelled"]);
}

#[tokio::test]
async fn a_reminder_waits_until_its_version_was_told() {
    let r = Arc::new(rig(DAY, 10));
    let booked = event("UTC");
    let reminder = reminder_of(&booked, 1, chrono::Duration::hours(2));
    let task = {
        let r = r.clone();
        let m = encoded(&reminder);
        tokio::spawn(async move { r.handler.handle(&m).await })
    };
    let id = booked.appointment().unwrap().appointment_id;
    medbook_test_support::eventually("the reminder waits", Duration::from_secs(10), || {
        let r = r.clone();
        async move { r.order.waited(id).then_some(()) }
    })
    .await;
    assert!(r.mailer.sent.lock().unwrap().is_empty());
    assert!(matches!(
        r.handler.handle(&encoded(&booked)).await,
        Ok(Outcome::Sent { .. })
    ));
    assert!(matches!(task.await.unwrap(), Ok(Outcome::Sent { .. })));
    let subjects = subjects(&r);
    assert_eq!(subjects[0], "Appointment confirmed", "{subjects:?}");
}

#[tokio::test]
async fn a_busy_dlq_or_a_claim_held_elsewhere_is_waited_for() {
    let r = rig(DAY, 10);
    *r.dlq.failures.lock().unwrap() = 2;
    assert_eq!(
        r.handler.handle(&message(Some(b"x".to_vec()))).await,
        Ok(Outcome::DeadLettered(FailureKind::Poison))
    );
    assert_eq!(r.dlq.letters.lock().unwrap().len(), 1);
    *r.log.busy.lock().unwrap() = 1;
    assert!(matches!(
        r.handler.handle(&encoded(&event("UTC"))).await,
        Ok(Outcome::Sent { .. })
    ));
}

#[tokio::test]
async fn stopping_interrupts_a_backoff_without_marking_anything() {
    let r = rig(DAY, 10);
    r.mailer
        .script
        .lock()
        .unwrap()
        .extend((0..10).map(|_| Err(SendError::Transient("refused".into()))));
    r.stop.send(true).unwrap();
    let e = event("UTC");
    assert_eq!(
        r.handler.handle(&encoded(&e)).await,
        Err(HandleError::Stopped)
    );
    assert_ne!(r.log.status(e.id), Some("sent"));
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let p = RetryPolicy {
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(1000),
        max_age: DAY,
    };
    let waits: Vec<u128> = (1..=6).map(|a| p.backoff(a).as_millis()).collect();
    assert_eq!(waits, vec![100, 200, 400, 800, 1000, 1000]);
    assert_eq!(p.backoff(u32::MAX), Duration::from_millis(1000));
    // Jitter stays within [half, full] of the backoff.
    for attempt in 1..=8 {
        for _ in 0..50 {
            let j = p.jittered(attempt);
            assert!(
                j >= p.backoff(attempt) / 2 && j <= p.backoff(attempt),
                "{j:?}"
            );
        }
    }
}

/// A rig on a clock that stands still until the test moves it.
fn rig_at_rest(max_age: Duration) -> (Rig, Arc<FakeClock>) {
    let clock = Arc::new(FakeClock::at(chrono::Utc::now()));
    (rig_on(clock.clone(), max_age, 10), clock)
}

#[tokio::test]
async fn an_order_wait_ends_when_the_clock_says_so() {
    let (r, clock) = rig_at_rest(DAY);
    let r = Arc::new(r);
    let booked = event("UTC");
    let task = {
        let r = r.clone();
        let m = encoded(&cancelled(&booked, 2));
        tokio::spawn(async move { r.handler.handle(&m).await })
    };
    let id = booked.appointment().unwrap().appointment_id;
    medbook_test_support::eventually("the cancellation waits", Duration::from_secs(10), || {
        let r = r.clone();
        async move { r.order.waited(id).then_some(()) }
    })
    .await;
    // However long it waits in real time, the clock has not moved: it still waits.
    assert!(!task.is_finished());
    clock.advance(ORDER_WAIT);
    let outcome = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("still waiting after the clock passed the order's wait")
        .unwrap();
    assert!(matches!(outcome, Ok(Outcome::Sent { .. })));
    let render = r.handler.metrics.render().unwrap();
    assert!(
        render.contains("email_order_wait_seconds_count{ended=\"forced\"} 1"),
        "{render}"
    );
}

#[tokio::test]
async fn a_reminder_whose_appointment_starts_while_it_waits_for_the_server_is_dropped() {
    let (r, clock) = rig_at_rest(DAY);
    let r = Arc::new(r);
    let booked = event("UTC");
    assert!(matches!(
        r.handler.handle(&encoded(&booked)).await,
        Ok(Outcome::Sent { .. })
    ));
    r.mailer
        .script
        .lock()
        .unwrap()
        .extend((0..1000).map(|_| Err(SendError::Transient("451 later".into()))));
    let mut reminder = reminder_of(&booked, 1, chrono::Duration::hours(2));
    if let Event::Appointment(AppointmentEvent::Reminder(rem)) = &mut reminder.event {
        rem.appointment.starts_at = clock.now() + chrono::Duration::hours(2);
    }
    let task = {
        let r = r.clone();
        let m = encoded(&reminder);
        tokio::spawn(async move { r.handler.handle(&m).await })
    };
    medbook_test_support::eventually("the reminder was tried", Duration::from_secs(10), || {
        let r = r.clone();
        async move { (*r.mailer.calls.lock().unwrap() >= 2).then_some(()) }
    })
    .await;
    clock.advance(Duration::from_secs(3 * 3600));
    let outcome = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("still retrying after the appointment started")
        .unwrap();
    assert_eq!(outcome, Ok(Outcome::Skipped(SkipReason::Started)));
    assert_eq!(r.mailer.sent.lock().unwrap().len(), 1);
    assert!(r.log.status(reminder.id).is_none());
}

#[tokio::test]
async fn mail_expires_by_the_clock_and_its_dead_letter_is_stamped_by_it() {
    let (r, clock) = rig_at_rest(Duration::from_secs(3600));
    let r = Arc::new(r);
    r.mailer
        .script
        .lock()
        .unwrap()
        .extend((0..1000).map(|_| Err(SendError::Transient("451 later".into()))));
    let mut m = encoded(&event("UTC"));
    m.timestamp = Some(clock.now());
    let task = {
        let r = r.clone();
        tokio::spawn(async move { r.handler.handle(&m).await })
    };
    medbook_test_support::eventually("the mail was tried", Duration::from_secs(10), || {
        let r = r.clone();
        async move { (*r.mailer.calls.lock().unwrap() >= 2).then_some(()) }
    })
    .await;
    assert!(
        r.dlq.letters.lock().unwrap().is_empty(),
        "younger than max_age"
    );
    clock.advance(Duration::from_secs(3600));
    let outcome = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("still retrying after max_age on the clock")
        .unwrap();
    assert_eq!(outcome, Ok(Outcome::DeadLettered(FailureKind::Expired)));
    let letters = r.dlq.letters.lock().unwrap();
    assert_eq!(letters[0].1.failed_at, clock.now());
}

/// The no-show of `booked`'s appointment at `version`, e-mailed or not.
fn no_show_of(booked: &EventEnvelope, version: i32, email_patient: bool) -> EventEnvelope {
    let mut a = booked.appointment().unwrap().clone();
    a.version = version;
    EventEnvelope::new(
        chrono::Utc::now(),
        AppointmentEvent::NoShow(NoShow {
            appointment: a,
            email_patient,
        }),
    )
}

#[tokio::test]
async fn a_no_show_the_clinic_does_not_email_about_is_consumed_without_an_email() {
    let r = rig(DAY, 10);
    let booked = event("UTC");
    assert!(matches!(
        r.handler.handle(&encoded(&booked)).await,
        Ok(Outcome::Sent { .. })
    ));
    let quiet = no_show_of(&booked, 1, false);
    assert_eq!(
        r.handler.handle(&encoded(&quiet)).await,
        Ok(Outcome::NotWanted)
    );
    // Nothing claimed or recorded: not even a time zone is needed to decide it.
    let mut unrenderable = no_show_of(&event("Mars/Base"), 1, false);
    unrenderable.id = Uuid::new_v4();
    assert_eq!(
        r.handler.handle(&encoded(&unrenderable)).await,
        Ok(Outcome::NotWanted)
    );
    assert!(r.log.status(quiet.id).is_none());
    assert_eq!(subjects(&r), ["Appointment confirmed"]);
    assert!(r.dlq.letters.lock().unwrap().is_empty());
    let metrics = r.handler.metrics.render().unwrap();
    assert!(
        metrics.contains("emails_handled_total{outcome=\"not_wanted\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_wanted_no_show_of_the_told_version_goes_at_once_and_holds_no_later_change_back() {
    let r = rig(DAY, 10);
    let booked = event("UTC");
    assert!(matches!(
        r.handler.handle(&encoded(&booked)).await,
        Ok(Outcome::Sent { .. })
    ));
    // Same version as the confirmation that was told: not stale, not superseded.
    let started = Instant::now();
    let missed = no_show_of(&booked, 1, true);
    assert!(matches!(
        r.handler.handle(&encoded(&missed)).await,
        Ok(Outcome::Sent { .. })
    ));
    assert!(started.elapsed() < ORDER_WAIT, "it did not wait");
    assert_eq!(
        r.handler.handle(&encoded(&missed)).await,
        Ok(Outcome::Duplicate)
    );
    // It repeated version 1 and advanced nothing: version 2 goes right after it.
    let started = Instant::now();
    assert!(matches!(
        r.handler.handle(&encoded(&cancelled(&booked, 2))).await,
        Ok(Outcome::Sent { .. })
    ));
    assert!(started.elapsed() < ORDER_WAIT, "the change waited");
    assert_eq!(
        subjects(&r),
        [
            "Appointment confirmed",
            "We missed you",
            "Appointment cancelled"
        ]
    );
    let sent = r.mailer.sent.lock().unwrap();
    assert!(sent[1].calendar.is_none());
    assert!(!sent[1].text.contains("Cancel or reschedule"));
    assert!(sent[0].text.contains("Cancel or reschedule: https://"));
}

#[tokio::test]
async fn a_no_show_handled_before_its_confirmation_waits_for_it() {
    let r = Arc::new(rig(DAY, 10));
    let booked = event("UTC");
    let task = {
        let r = r.clone();
        let m = encoded(&no_show_of(&booked, 1, true));
        tokio::spawn(async move { r.handler.handle(&m).await })
    };
    let id = booked.appointment().unwrap().appointment_id;
    medbook_test_support::eventually("the no-show waits", Duration::from_secs(10), || {
        let r = r.clone();
        async move { r.order.waited(id).then_some(()) }
    })
    .await;
    assert!(r.mailer.sent.lock().unwrap().is_empty());
    assert!(matches!(
        r.handler.handle(&encoded(&booked)).await,
        Ok(Outcome::Sent { .. })
    ));
    assert!(matches!(task.await.unwrap(), Ok(Outcome::Sent { .. })));
    assert_eq!(subjects(&r), ["Appointment confirmed", "We missed you"]);
}

/// A waitlist offer for Ann, held for another `holds_for`.
fn offer(holds_for: chrono::Duration) -> EventEnvelope {
    let a = event("Europe/Berlin").appointment().unwrap().clone();
    EventEnvelope::new(
        chrono::Utc::now(),
        WaitlistOffer {
            entry_id: Uuid::new_v4(),
            slot_id: a.slot_id,
            starts_at: a.starts_at,
            ends_at: a.ends_at,
            patient: a.patient,
            doctor: a.doctor,
            clinic: a.clinic,
            link: "https://medbook.example/waitlist/offer?token=0ff3r".into(),
            expires_at: chrono::Utc::now() + holds_for,
        },
    )
}

#[tokio::test]
async fn an_offer_is_sent_once_by_event_id_without_touching_appointment_versions() {
    let r = rig(DAY, 10);
    let e = offer(chrono::Duration::minutes(15));
    let m = encoded(&e);
    assert_eq!(
        r.handler.handle(&m).await,
        Ok(Outcome::Sent {
            attempts: 1,
            takeover: false
        })
    );
    assert_eq!(r.handler.handle(&m).await, Ok(Outcome::Duplicate));
    let sent = r.mailer.sent.lock().unwrap();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].subject.starts_with("A slot opened up"));
    assert!(sent[0].text.contains("token=0ff3r"));
    assert_eq!(r.log.status(e.id), Some("sent"));
    assert_eq!(*r.order.version_calls.lock().unwrap(), 0);
    assert!(r.order.rows.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_offer_that_expired_before_it_could_be_sent_is_dropped() {
    let r = rig(DAY, 10);
    let e = offer(-chrono::Duration::seconds(1));
    assert_eq!(
        r.handler.handle(&encoded(&e)).await,
        Ok(Outcome::Skipped(SkipReason::OfferExpired))
    );
    assert_eq!(*r.mailer.calls.lock().unwrap(), 0);
    assert!(r.log.status(e.id).is_none());
    assert!(r.dlq.letters.lock().unwrap().is_empty());
    let metrics = r.handler.metrics.render().unwrap();
    assert!(
        metrics.contains("waitlist_offers_skipped_total{reason=\"offer_expired\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("account_emails_skipped_total{reason=\"link_expired\"} 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_offer_waiting_for_the_server_is_dropped_when_its_hold_ends_not_after_the_backoff() {
    // A backoff far longer than the test: only the offer's expiry may end the wait.
    let mut r = rig(DAY, 10);
    r.handler.retry.initial_backoff = Duration::from_secs(3600);
    r.handler.retry.max_backoff = Duration::from_secs(3600);
    r.mailer
        .script
        .lock()
        .unwrap()
        .extend((0..10).map(|_| Err(SendError::Transient("451 later".into()))));
    let e = offer(chrono::Duration::milliseconds(400));
    let outcome = tokio::time::timeout(Duration::from_secs(10), r.handler.handle(&encoded(&e)))
        .await
        .expect("still waiting after the offer expired");
    assert_eq!(outcome, Ok(Outcome::Skipped(SkipReason::OfferExpired)));
    assert_eq!(*r.mailer.calls.lock().unwrap(), 1);
    assert!(r.mailer.sent.lock().unwrap().is_empty());
    assert!(r.log.status(e.id).is_none(), "the claim is released");
}

#[tokio::test]
async fn an_offer_that_expires_while_another_consumer_holds_it_is_never_sent() {
    let (r, clock) = rig_at_rest(DAY);
    let r = Arc::new(r);
    *r.log.busy.lock().unwrap() = u32::MAX;
    let e = offer(chrono::Duration::minutes(5));
    let task = {
        let r = r.clone();
        let m = encoded(&e);
        tokio::spawn(async move { r.handler.handle(&m).await })
    };
    medbook_test_support::eventually("the claim is tried", Duration::from_secs(10), || {
        let r = r.clone();
        async move { (*r.log.busy.lock().unwrap() < u32::MAX).then_some(()) }
    })
    .await;
    // The other consumer lets go only after the hold ended.
    clock.advance(Duration::from_secs(6 * 60));
    *r.log.busy.lock().unwrap() = 0;
    let outcome = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome, Ok(Outcome::Skipped(SkipReason::OfferExpired)));
    assert_eq!(*r.mailer.calls.lock().unwrap(), 0);
    assert!(r.log.status(e.id).is_none());
}

#[tokio::test]
async fn an_offer_with_an_unusable_link_is_dead_lettered_as_permanent() {
    let r = rig(DAY, 10);
    let mut e = offer(chrono::Duration::minutes(15));
    if let Event::Waitlist(o) = &mut e.event {
        o.link = "javascript:alert(1)".into();
    }
    assert_eq!(
        r.handler.handle(&encoded(&e)).await,
        Ok(Outcome::DeadLettered(FailureKind::Permanent))
    );
    assert_eq!(*r.mailer.calls.lock().unwrap(), 0);
    let letters = r.dlq.letters.lock().unwrap();
    assert!(
        !letters[0].1.error.contains("javascript"),
        "{}",
        letters[0].1.error
    );
}
