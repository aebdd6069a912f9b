//! One set of contract tests per storage port, run here against the in-memory fake the
//! unit tests use and in `repository::contracts` against the PostgreSQL implementation:
//! what a fake promises is what the real thing does, so the fakes cannot drift.

use super::fakes::{FakeThrottle, FakeTokens, FakeUsers};
use super::ports::*;
use crate::domain::{DoctorId, Email, FullName, NewUser, Role, UserId};
use chrono::{Duration, Utc};
use uuid::Uuid;

fn new_user(email: &str, name: &str) -> NewUser {
    NewUser {
        id: UserId(Uuid::new_v4()),
        email: Email::parse(email).unwrap(),
        password_hash: Some("$2b$04$hash".into()),
        role: Role::Patient,
        full_name: FullName::parse(name).unwrap(),
        birth_date: None,
        gender: None,
        phone: None,
        email_verified_at: None,
    }
}

pub(crate) async fn users_contract(users: &dyn UserRepository) {
    let ann = users
        .insert(new_user("ann@example.com", "Ann Archer"))
        .await
        .unwrap();
    assert_eq!(users.find_by_id(ann.id).await.unwrap().as_ref(), Some(&ann));
    let by_email = users
        .find_by_email(&Email::parse("ann@example.com").unwrap())
        .await
        .unwrap();
    assert_eq!(by_email.map(|u| u.id), Some(ann.id));
    assert!(matches!(
        users.insert(new_user("ann@example.com", "Other Ann")).await,
        Err(RepoError::UniqueViolation(c)) if c == "users_email_key"
    ));
    // All or nothing.
    let batch = vec![
        new_user("bob@example.com", "Bob Baker"),
        new_user("ann@example.com", "Ann Again"),
    ];
    assert!(matches!(
        users.insert_all(batch).await,
        Err(RepoError::UniqueViolation(_))
    ));
    assert_eq!(
        users
            .existing_emails(vec!["ann@example.com".into(), "bob@example.com".into()])
            .await
            .unwrap(),
        ["ann@example.com"]
    );

    let renamed = users
        .update(
            ann.id,
            UserChanges {
                full_name: Some(FullName::parse("Ann Baker").unwrap()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renamed.full_name, "Ann Baker");
    assert!(users
        .update(UserId(Uuid::new_v4()), UserChanges::default())
        .await
        .unwrap()
        .is_none());

    let page = users
        .list(
            Role::Patient,
            Some("baker".into()),
            PageRequest {
                page: 1,
                per_page: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!((page.total, page.items.len()), (1, 1));
    assert!(
        !users.delete(ann.id, Role::Admin).await.unwrap(),
        "only with its role"
    );
    assert!(users.delete(ann.id, Role::Patient).await.unwrap());
    assert!(users.find_by_id(ann.id).await.unwrap().is_none());
}

pub(crate) async fn tokens_contract(
    users: &dyn UserRepository,
    tokens: &dyn RefreshTokenRepository,
) {
    let owner = users
        .insert(new_user("tess@example.com", "Tess Token"))
        .await
        .unwrap();
    let now = Utc::now();
    let family = Uuid::new_v4();
    let token = |hash: &str, expires_in: Duration| NewRefreshToken {
        id: Uuid::new_v4(),
        user_id: owner.id,
        family_id: family,
        token_hash: hash.into(),
        expires_at: now + expires_in,
        session_expires_at: now + Duration::days(90),
    };
    let replacement = |hash: &str| Replacement {
        id: Uuid::new_v4(),
        token_hash: hash.into(),
        expires_at: now + Duration::days(1),
    };
    tokens.insert(token("h1", Duration::days(1))).await.unwrap();
    assert_eq!(
        tokens
            .rotate("h1".into(), replacement("h2"), now)
            .await
            .unwrap(),
        RotateOutcome::Rotated { user_id: owner.id }
    );
    assert_eq!(
        tokens
            .rotate("h1".into(), replacement("h3"), now)
            .await
            .unwrap(),
        RotateOutcome::ReuseDetected,
        "a rotated token presented again"
    );
    assert_eq!(
        tokens
            .rotate("h2".into(), replacement("h4"), now)
            .await
            .unwrap(),
        RotateOutcome::Rejected,
        "its family went with it"
    );
    assert_eq!(
        tokens
            .rotate("unknown".into(), replacement("h5"), now)
            .await
            .unwrap(),
        RotateOutcome::Rejected
    );
    tokens
        .insert(token("old", Duration::seconds(-1)))
        .await
        .unwrap();
    assert_eq!(
        tokens
            .rotate("old".into(), replacement("h6"), now)
            .await
            .unwrap(),
        RotateOutcome::Rejected,
        "expired"
    );
    // Rotation never carries a session past its absolute end.
    let ending = NewRefreshToken {
        family_id: Uuid::new_v4(),
        session_expires_at: now + Duration::hours(1),
        ..token("ending", Duration::days(1))
    };
    tokens.insert(ending).await.unwrap();
    assert_eq!(
        tokens
            .rotate("ending".into(), replacement("ending-2"), now)
            .await
            .unwrap(),
        RotateOutcome::Rotated { user_id: owner.id }
    );
    assert_eq!(
        tokens
            .rotate(
                "ending-2".into(),
                replacement("ending-3"),
                now + Duration::hours(2)
            )
            .await
            .unwrap(),
        RotateOutcome::Rejected,
        "the session ended, though the token asked for a day"
    );
    assert!(!tokens
        .revoke_family_of("unknown".into(), now)
        .await
        .unwrap());
    let fresh = NewRefreshToken {
        family_id: Uuid::new_v4(),
        ..token("live", Duration::days(1))
    };
    tokens.insert(fresh).await.unwrap();
    assert_eq!(
        tokens.revoke_all_for_user(owner.id, now).await.unwrap(),
        4,
        "the live token, the expired one (never revoked) and the ending session's two"
    );
    assert_eq!(
        tokens
            .rotate("live".into(), replacement("h7"), now)
            .await
            .unwrap(),
        RotateOutcome::Rejected
    );
}

pub(crate) async fn throttle_contract(throttle: &dyn LoginThrottle) {
    let policy = ThrottlePolicy {
        max_failures: 2,
        window: std::time::Duration::from_secs(60),
        lockout: std::time::Duration::from_secs(30),
    };
    let now = Utc::now();
    let key = "account:ann@example.com".to_owned();
    throttle
        .record_failure(key.clone(), policy, now)
        .await
        .unwrap();
    assert_eq!(throttle.locked_for(key.clone(), now).await.unwrap(), None);
    throttle
        .record_failure(key.clone(), policy, now)
        .await
        .unwrap();
    let locked = throttle.locked_for(key.clone(), now).await.unwrap();
    assert!(
        locked.is_some_and(|d| d <= policy.lockout && d > std::time::Duration::ZERO),
        "{locked:?}"
    );
    let later = now + Duration::seconds(31);
    assert_eq!(throttle.locked_for(key.clone(), later).await.unwrap(), None);
    throttle
        .record_failure(key.clone(), policy, now)
        .await
        .unwrap();
    throttle.clear(key.clone()).await.unwrap();
    assert_eq!(throttle.locked_for(key, now).await.unwrap(), None);

    let known = format!("account:{}:203.0.113.7", uuid::Uuid::new_v4());
    let earlier = now - Duration::days(1);
    assert!(!throttle
        .succeeded_since(known.clone(), earlier)
        .await
        .unwrap());
    throttle
        .remember_success(known.clone(), earlier)
        .await
        .unwrap();
    assert!(throttle
        .succeeded_since(known.clone(), earlier)
        .await
        .unwrap());
    assert!(!throttle.succeeded_since(known.clone(), now).await.unwrap());
    throttle.remember_success(known.clone(), now).await.unwrap();
    assert!(throttle.succeeded_since(known, now).await.unwrap());
}

/// A doctor's account is inserted and linked together, once: an unknown doctor or a
/// second account leaves nothing behind.
pub(crate) async fn doctor_accounts_contract(users: &dyn UserRepository, doctor: DoctorId) {
    let mut account = new_user("doc@example.com", "Dana Doctor");
    account.role = Role::Doctor;
    let created = users
        .insert_doctor_account(account, doctor)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(created.role, Role::Doctor);
    assert_eq!(
        users.find_by_id(created.id).await.unwrap().map(|u| u.id),
        Some(created.id)
    );
    let second = new_user("doc2@example.com", "Dana Doctor");
    let id = second.id;
    assert_eq!(
        users.insert_doctor_account(second, doctor).await.unwrap(),
        Err(DoctorAccountRefusal::AlreadyLinked)
    );
    assert!(
        users.find_by_id(id).await.unwrap().is_none(),
        "nothing written"
    );
    let third = new_user("doc3@example.com", "Dana Doctor");
    let id = third.id;
    assert_eq!(
        users
            .insert_doctor_account(third, DoctorId(Uuid::new_v4()))
            .await
            .unwrap(),
        Err(DoctorAccountRefusal::NoSuchDoctor)
    );
    assert!(
        users.find_by_id(id).await.unwrap().is_none(),
        "nothing written"
    );
}

#[tokio::test]
async fn fake_doctor_accounts_keep_the_contract() {
    let users = FakeUsers::default();
    let doctor = DoctorId(Uuid::new_v4());
    users.1.lock().unwrap().insert(doctor, None);
    doctor_accounts_contract(&users, doctor).await;
}

#[tokio::test]
async fn fake_users_keep_the_contract() {
    users_contract(&FakeUsers::default()).await;
}

#[tokio::test]
async fn fake_refresh_tokens_keep_the_contract() {
    tokens_contract(&FakeUsers::default(), &FakeTokens::default()).await;
}

#[tokio::test]
async fn fake_throttle_keeps_the_contract() {
    throttle_contract(&FakeThrottle::default()).await;
}
