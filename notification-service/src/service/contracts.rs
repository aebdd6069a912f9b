//! What each storage port promises, as one async function per port, run here against
//! the in-memory fake the unit tests use and in `repository::contracts` against the
//! PostgreSQL implementation: what a fake promises is what the real thing does, so the
//! fakes cannot drift. Time is passed in, so windows, leases and stale claims are
//! checked without waiting.

use super::fakes::{FakeBudget, FakeDeliveryLog, FakeOrderStore};
use super::ports::*;
use chrono::{DateTime, SubsecRound, Utc};
use std::time::Duration;
use uuid::Uuid;

/// Now, on a whole second: PostgreSQL keeps microseconds, and durations computed
/// from stored times must come out exact.
fn t0() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0)
}

fn secs(s: i64) -> chrono::Duration {
    chrono::Duration::seconds(s)
}

fn request(event_id: Uuid) -> ClaimRequest {
    ClaimRequest {
        event_id,
        event_type: "appointment.created".into(),
        recipient: "ana@example.com".into(),
        source: "appointments.created/0/7".into(),
    }
}

pub(crate) async fn delivery_log_contract(log: &dyn DeliveryLog) {
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let stale = Duration::from_secs(60);
    let t0 = t0();
    let event = request(Uuid::new_v4());
    let claim = |owner, at| log.claim(&event, owner, stale, at);
    assert_eq!(
        claim(a, t0).await.unwrap(),
        Claim::Acquired { takeover: false }
    );
    assert_eq!(
        claim(b, t0 + secs(1)).await.unwrap(),
        Claim::HeldElsewhere,
        "another live consumer has it"
    );
    assert_eq!(
        claim(a, t0 + secs(2)).await.unwrap(),
        Claim::Acquired { takeover: false },
        "its own claim again, renewed"
    );
    assert_eq!(
        claim(b, t0 + secs(61)).await.unwrap(),
        Claim::HeldElsewhere,
        "stale only `stale_after` past the renewal"
    );
    assert_eq!(
        claim(b, t0 + secs(63)).await.unwrap(),
        Claim::Acquired { takeover: true },
        "its consumer died mid-send"
    );
    log.release(event.event_id, a).await.unwrap();
    assert_eq!(
        claim(a, t0 + secs(64)).await.unwrap(),
        Claim::HeldElsewhere,
        "only the owner's release lets go of a claim"
    );
    log.mark_sent(event.event_id, 2).await.unwrap();
    log.release(event.event_id, b).await.unwrap();
    for (owner, at) in [(a, t0 + secs(65)), (b, t0 + secs(3600))] {
        assert_eq!(
            claim(owner, at).await.unwrap(),
            Claim::AlreadySent,
            "sent is for good"
        );
    }

    // A released claim is gone: the next claim is a fresh one, not a takeover.
    let other = request(Uuid::new_v4());
    assert_eq!(
        log.claim(&other, a, stale, t0).await.unwrap(),
        Claim::Acquired { takeover: false }
    );
    log.release(other.event_id, a).await.unwrap();
    assert_eq!(
        log.claim(&other, b, stale, t0 + secs(1)).await.unwrap(),
        Claim::Acquired { takeover: false }
    );
    // Recording an event nobody claimed is harmless.
    log.mark_sent(Uuid::new_v4(), 1).await.unwrap();
}

pub(crate) async fn order_store_contract(store: &dyn OrderStore) {
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let lease = Duration::from_secs(30);
    let t0 = t0();
    let id = Uuid::new_v4();
    let change = |version| Turn {
        appointment_id: id,
        version,
        repeats: false,
    };
    let reminder = |version| Turn {
        repeats: true,
        ..change(version)
    };

    assert_eq!(store.observe_version(id, 1).await.unwrap(), 1);
    assert_eq!(store.observe_version(id, 3).await.unwrap(), 3);
    assert_eq!(
        store.observe_version(id, 2).await.unwrap(),
        3,
        "the latest version never goes back"
    );

    assert_eq!(
        store
            .take_turn(&change(1), a, lease, false, t0)
            .await
            .unwrap(),
        TurnDecision::Go,
        "nothing told yet: version 1 goes"
    );
    assert_eq!(
        store
            .take_turn(&change(2), b, lease, true, t0 + secs(1))
            .await
            .unwrap(),
        TurnDecision::WaitBusy,
        "a's lease holds even a forced e-mail back"
    );
    assert_eq!(
        store
            .take_turn(&change(1), a, lease, false, t0 + secs(1))
            .await
            .unwrap(),
        TurnDecision::Go,
        "its own lease does not hold a back; it is renewed"
    );
    assert_eq!(
        store
            .take_turn(&change(2), b, lease, false, t0 + secs(30))
            .await
            .unwrap(),
        TurnDecision::WaitBusy,
        "the renewed lease runs `lease` from the renewal"
    );
    assert_eq!(
        store
            .take_turn(&change(2), b, lease, false, t0 + secs(32))
            .await
            .unwrap(),
        TurnDecision::WaitEarlier { told: 0 },
        "the lease ran out; version 1 is still untold"
    );

    store.end_turn(&change(1), a, true).await.unwrap();
    assert_eq!(
        store
            .take_turn(&change(2), b, lease, false, t0 + secs(33))
            .await
            .unwrap(),
        TurnDecision::Go
    );
    store.end_turn(&change(2), a, false).await.unwrap();
    assert_eq!(
        store
            .take_turn(&reminder(2), a, lease, false, t0 + secs(34))
            .await
            .unwrap(),
        TurnDecision::WaitBusy,
        "only the holder's end gives the lease back"
    );
    store.end_turn(&change(2), b, false).await.unwrap();
    assert_eq!(
        store
            .take_turn(&reminder(2), a, lease, false, t0 + secs(35))
            .await
            .unwrap(),
        TurnDecision::WaitEarlier { told: 1 },
        "an end without `told` records nothing told"
    );
    assert_eq!(
        store
            .take_turn(&reminder(2), a, lease, true, t0 + secs(36))
            .await
            .unwrap(),
        TurnDecision::Go
    );
    store.end_turn(&reminder(2), a, true).await.unwrap();
    store.end_turn(&change(1), b, true).await.unwrap();
    for turn in [change(1), reminder(1)] {
        assert_eq!(
            store
                .take_turn(&turn, b, lease, true, t0 + secs(37))
                .await
                .unwrap(),
            TurnDecision::Superseded { told: 2 },
            "what was told never goes back"
        );
    }

    // First sight of an appointment in a turn: nothing told yet.
    let fresh = Turn {
        appointment_id: Uuid::new_v4(),
        version: 2,
        repeats: true,
    };
    assert_eq!(
        store.take_turn(&fresh, a, lease, false, t0).await.unwrap(),
        TurnDecision::WaitEarlier { told: 0 }
    );
    // Ending a turn of an appointment never seen is harmless.
    let unseen = Turn {
        appointment_id: Uuid::new_v4(),
        ..fresh
    };
    store.end_turn(&unseen, a, true).await.unwrap();
}

/// The cap the budget contract is written for: 2 dead letters a minute.
pub(crate) const BUDGET_MAX: u32 = 2;
pub(crate) const BUDGET_WINDOW: Duration = Duration::from_secs(60);

/// `budget` was built with [`BUDGET_MAX`] per [`BUDGET_WINDOW`].
pub(crate) async fn dead_letter_budget_contract(budget: &dyn DeadLetterBudget) {
    let t0 = t0();
    let admit = |kind, at| budget.admit(kind, "appointments.created/0/7", at);
    assert_eq!(
        admit(FailureKind::Poison, t0).await.unwrap(),
        Admission::Admitted
    );
    assert_eq!(
        admit(FailureKind::Refused, t0 + secs(10)).await.unwrap(),
        Admission::Admitted
    );
    assert_eq!(
        admit(FailureKind::Poison, t0 + secs(20)).await.unwrap(),
        Admission::Full {
            count: 2,
            retry_after: Duration::from_secs(40)
        },
        "full until the oldest leaves the window"
    );
    assert_eq!(
        admit(FailureKind::Poison, t0 + secs(60)).await.unwrap(),
        Admission::Admitted,
        "the oldest left; the refused one was not counted"
    );
    assert_eq!(
        admit(FailureKind::Refused, t0 + secs(61)).await.unwrap(),
        Admission::Full {
            count: 2,
            retry_after: Duration::from_secs(9)
        }
    );
    assert_eq!(
        admit(FailureKind::Refused, t0 + secs(3600)).await.unwrap(),
        Admission::Admitted
    );
}

#[tokio::test]
async fn fake_delivery_log_keeps_the_contract() {
    delivery_log_contract(&FakeDeliveryLog::default()).await;
}

#[tokio::test]
async fn fake_order_store_keeps_the_contract() {
    order_store_contract(&FakeOrderStore::default()).await;
}

#[tokio::test]
async fn fake_dead_letter_budget_keeps_the_contract() {
    dead_letter_budget_contract(&FakeBudget::new(BUDGET_MAX, BUDGET_WINDOW)).await;
}
