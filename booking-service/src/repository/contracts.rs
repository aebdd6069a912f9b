//! The service's storage contracts (`service::contracts`) run against the PostgreSQL
//! implementations, on a fresh database of the test run's PostgreSQL.

use super::{Db, PgLoginThrottle, PgRefreshTokens, PgUsers, PoolSettings};
use crate::domain::DoctorId;
use crate::service::contracts::{
    doctor_accounts_contract, throttle_contract, tokens_contract, users_contract,
};
use medbook_test_support::pg::TestDb;
use uuid::Uuid;

#[tokio::test]
async fn pg_doctor_accounts_keep_the_contract() {
    let (db, pool) = pg();
    let doctor = Uuid::new_v4();
    db.execute(&format!(
        "INSERT INTO clinics (id, name, city, address, time_zone)
         VALUES ('{doctor}', 'C', 'Berlin', 'Main St 1', 'Europe/Berlin');
         INSERT INTO doctors (id, full_name, specialty, clinic_id, status, bio, years_of_experience)
         VALUES ('{doctor}', 'Dana Doctor', 'cardiology', '{doctor}', 'active', '', 5)"
    ));
    doctor_accounts_contract(&PgUsers::new(pool), DoctorId(doctor)).await;
    let linked: Vec<(Option<Uuid>,)> = {
        use diesel::prelude::*;
        diesel::sql_query(format!("SELECT user_id FROM doctors WHERE id = '{doctor}'"))
            .load::<LinkedRow>(&mut db.conn())
            .unwrap()
            .into_iter()
            .map(|r| (r.user_id,))
            .collect()
    };
    assert!(linked[0].0.is_some(), "the record names the account");
}

#[derive(diesel::QueryableByName)]
struct LinkedRow {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Uuid>)]
    user_id: Option<Uuid>,
}

/// A pool on a fresh database with the booking schema (the real PostgreSQL of the
/// test run).
fn pg() -> (TestDb, Db) {
    let db = TestDb::migrated(
        "medbook",
        super::migrations::MIGRATIONS,
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations")),
    );
    let pool = Db::new(&PoolSettings {
        url: db.url(),
        max_size: 2,
        connect_timeout: std::time::Duration::from_secs(5),
        statement_timeout: std::time::Duration::from_secs(5),
    })
    .unwrap();
    (db, pool)
}

#[tokio::test]
async fn pg_users_keep_the_contract() {
    let (_db, pool) = pg();
    users_contract(&PgUsers::new(pool)).await;
}

#[tokio::test]
async fn pg_refresh_tokens_keep_the_contract() {
    let (_db, pool) = pg();
    tokens_contract(&PgUsers::new(pool.clone()), &PgRefreshTokens::new(pool)).await;
}

#[tokio::test]
async fn pg_throttle_keeps_the_contract() {
    let (_db, pool) = pg();
    throttle_contract(&PgLoginThrottle::new(pool)).await;
}
