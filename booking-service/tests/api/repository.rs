//! The PostgreSQL implementations of the ports, exercised directly.

use crate::helpers::{test_db, TestDb};
use booking_service::domain::{BirthDate, Email, FullName, Gender, NewUser, Phone, Role, UserId};
use booking_service::repository::{Db, PgLoginThrottle, PgRefreshTokens, PgUsers, PoolSettings};
use booking_service::service::ports::*;
use chrono::{NaiveDate, Utc};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

fn db(test_db: &TestDb) -> Db {
    Db::new(&PoolSettings {
        url: test_db.url(),
        max_size: 8,
        connect_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(5),
    })
    .unwrap()
}

fn new_user(email: &str) -> NewUser {
    NewUser {
        id: UserId(Uuid::new_v4()),
        email: Email::parse(email).unwrap(),
        password_hash: Some("$2b$04$hash".into()),
        role: Role::Patient,
        full_name: FullName::parse("Round Trip").unwrap(),
        birth_date: Some(
            BirthDate::parse(
                NaiveDate::from_ymd_opt(1999, 12, 31).unwrap(),
                Utc::now().date_naive(),
            )
            .unwrap(),
        ),
        gender: Some(Gender::Undisclosed),
        phone: Some(Phone::parse("+12025550123").unwrap()),
        email_verified_at: None,
    }
}

#[tokio::test]
async fn users_round_trip_every_column() {
    let t = test_db();
    let users = PgUsers::new(db(&t));
    let n = new_user("rt@example.com");
    let id = n.id;
    let inserted = users.insert(n).await.unwrap();
    let found = users.find_by_id(id).await.unwrap().unwrap();
    assert_eq!(inserted, found);
    assert_eq!(found.gender, Some(Gender::Undisclosed));
    assert_eq!(found.birth_date, NaiveDate::from_ymd_opt(1999, 12, 31));
    assert_eq!(found.phone.as_deref(), Some("+12025550123"));
    let updated = users
        .update(
            id,
            UserChanges {
                phone: Some(None),
                gender: Some(Some(Gender::Female)),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.phone, None);
    assert_eq!(updated.gender, Some(Gender::Female));
    assert!(updated.updated_at > found.updated_at);
    let dup = users.insert(new_user("rt@example.com")).await.unwrap_err();
    assert!(matches!(dup, RepoError::UniqueViolation(_)), "{dup:?}");
    // insert_all is one transaction: a duplicate inside it leaves nothing behind.
    let err = users
        .insert_all(vec![new_user("x1@example.com"), new_user("rt@example.com")])
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::UniqueViolation(_)));
    assert!(users
        .find_by_email(&Email::parse("x1@example.com").unwrap())
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn concurrent_rotation_of_one_token_succeeds_once() {
    let t = test_db();
    let pool = db(&t);
    let users = PgUsers::new(pool.clone());
    let tokens = Arc::new(PgRefreshTokens::new(pool));
    let user = users.insert(new_user("tok@example.com")).await.unwrap();
    tokens
        .insert(NewRefreshToken {
            id: Uuid::new_v4(),
            user_id: user.id,
            family_id: Uuid::new_v4(),
            token_hash: "presented".into(),
            expires_at: Utc::now() + chrono::Duration::hours(1),
            session_expires_at: Utc::now() + chrono::Duration::days(1),
        })
        .await
        .unwrap();
    let attempts = (0..8).map(|i| {
        let tokens = tokens.clone();
        tokio::spawn(async move {
            tokens
                .rotate(
                    "presented".into(),
                    Replacement {
                        id: Uuid::new_v4(),
                        token_hash: format!("replacement-{i}"),
                        expires_at: Utc::now() + chrono::Duration::hours(1),
                    },
                    Utc::now(),
                )
                .await
                .unwrap()
        })
    });
    let outcomes: Vec<RotateOutcome> = futures_util::future::join_all(attempts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let rotated = outcomes
        .iter()
        .filter(|o| matches!(o, RotateOutcome::Rotated { .. }))
        .count();
    assert_eq!(rotated, 1, "{outcomes:?}");
    assert!(outcomes.contains(&RotateOutcome::ReuseDetected));
}

#[tokio::test]
async fn expired_refresh_tokens_are_rejected() {
    let t = test_db();
    let pool = db(&t);
    let user = PgUsers::new(pool.clone())
        .insert(new_user("exp@example.com"))
        .await
        .unwrap();
    let tokens = PgRefreshTokens::new(pool);
    tokens
        .insert(NewRefreshToken {
            id: Uuid::new_v4(),
            user_id: user.id,
            family_id: Uuid::new_v4(),
            token_hash: "old".into(),
            expires_at: Utc::now() - chrono::Duration::seconds(1),
            session_expires_at: Utc::now() + chrono::Duration::days(1),
        })
        .await
        .unwrap();
    let outcome = tokens
        .rotate(
            "old".into(),
            Replacement {
                id: Uuid::new_v4(),
                token_hash: "new".into(),
                expires_at: Utc::now(),
            },
            Utc::now(),
        )
        .await
        .unwrap();
    assert_eq!(outcome, RotateOutcome::Rejected);
}

#[tokio::test]
async fn throttle_counts_within_a_window_and_locks_temporarily() {
    let t = test_db();
    let throttle = PgLoginThrottle::new(db(&t));
    let policy = ThrottlePolicy {
        max_failures: 3,
        window: Duration::from_secs(60),
        lockout: Duration::from_secs(30),
    };
    let t0 = Utc::now();
    let key = || "account:a@example.com".to_owned();
    throttle.record_failure(key(), policy, t0).await.unwrap();
    throttle.record_failure(key(), policy, t0).await.unwrap();
    assert_eq!(throttle.locked_for(key(), t0).await.unwrap(), None);
    // The window passes: counting starts over.
    let t1 = t0 + chrono::Duration::seconds(61);
    throttle.record_failure(key(), policy, t1).await.unwrap();
    throttle.record_failure(key(), policy, t1).await.unwrap();
    assert_eq!(throttle.locked_for(key(), t1).await.unwrap(), None);
    throttle.record_failure(key(), policy, t1).await.unwrap();
    let locked = throttle.locked_for(key(), t1).await.unwrap().unwrap();
    assert!(locked <= Duration::from_secs(30) && locked >= Duration::from_secs(29));
    let t2 = t1 + chrono::Duration::seconds(31);
    assert_eq!(
        throttle.locked_for(key(), t2).await.unwrap(),
        None,
        "lockouts expire"
    );
    throttle.clear(key()).await.unwrap();
    assert_eq!(throttle.locked_for(key(), t1).await.unwrap(), None);
}

#[derive(diesel::QueryableByName, Debug)]
struct Column {
    #[diesel(sql_type = diesel::sql_types::Text)]
    table_name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    column_name: String,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    nullable: bool,
}

/// `src/repository/schema.rs` is written by hand: compare it with the migrated database
/// (table and column names, and nullability), as `diesel print-schema` would.
#[test]
fn schema_rs_matches_the_migrated_database() {
    use diesel::RunQueryDsl;
    let source = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/repository/schema.rs"
    ))
    .unwrap();
    let mut declared = std::collections::BTreeSet::new();
    let mut table = None;
    for line in source.lines().map(str::trim) {
        if let Some(rest) = line.strip_suffix('{') {
            let name = rest.trim().split(['(', ' ']).next().unwrap_or_default();
            if !name.is_empty() && !name.starts_with("diesel::") {
                table = Some(name.to_owned());
            }
        } else if line == "}" {
            table = None;
        } else if let (Some(t), Some((col, ty))) = (&table, line.split_once("->")) {
            let nullable = ty.trim().starts_with("Nullable<");
            declared.insert((t.clone(), col.trim().to_owned(), nullable));
        }
    }
    let db = test_db();
    let actual: std::collections::BTreeSet<(String, String, bool)> = diesel::sql_query(
        "SELECT table_name::text AS table_name, column_name::text AS column_name, is_nullable = 'YES' AS nullable
         FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations'",
    )
    .load::<Column>(&mut db.conn())
    .unwrap()
    .into_iter()
    .map(|c| (c.table_name, c.column_name, c.nullable))
    .collect();
    assert!(!declared.is_empty());
    let missing: Vec<_> = actual.difference(&declared).collect();
    let extra: Vec<_> = declared.difference(&actual).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "in the database only: {missing:?}\nin schema.rs only: {extra:?}"
    );
}
