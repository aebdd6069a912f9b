//! The PostgreSQL stores held to the contracts of their ports
//! (`service::contracts`), on a fresh database of the test run's server with this
//! service's migrations.

use super::{Db, PgDeadLetterBudget, PgDeliveryLog, PgOrderStore, MIGRATIONS};
use crate::service::contracts::*;
use medbook_service_kit::db::PoolSettings;
use medbook_test_support::pg::TestDb;
use std::time::Duration;

/// A pool on a fresh database with the notification-service's schema, cloned from the
/// template the pipeline tests use too.
fn pg() -> (TestDb, Db) {
    let db = TestDb::migrated(
        "notify",
        MIGRATIONS,
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")),
    );
    let pool = Db::new(&PoolSettings {
        url: db.url(),
        max_size: 2,
        connect_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(5),
    })
    .unwrap();
    (db, pool)
}

#[tokio::test]
async fn pg_delivery_log_keeps_the_contract() {
    let (_db, pool) = pg();
    delivery_log_contract(&PgDeliveryLog::new(pool)).await;
}

#[tokio::test]
async fn pg_order_store_keeps_the_contract() {
    let (_db, pool) = pg();
    order_store_contract(&PgOrderStore::new(pool)).await;
}

#[tokio::test]
async fn pg_dead_letter_budget_keeps_the_contract() {
    let (_db, pool) = pg();
    dead_letter_budget_contract(&PgDeadLetterBudget::new(pool, BUDGET_MAX, BUDGET_WINDOW)).await;
}
