//! Fresh, uniquely named PostgreSQL databases, dropped when the test ends.

use diesel::{Connection, PgConnection, RunQueryDsl};

/// The server URL without a database (`MEDBOOK_TEST_DATABASE_URL` names the
/// maintenance database).
fn maintenance_url() -> String {
    crate::env("MEDBOOK_TEST_DATABASE_URL")
}

pub struct FreshDb {
    pub name: String,
}

impl FreshDb {
    pub fn create(prefix: &str) -> Self {
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::establish(&maintenance_url()).unwrap();
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .unwrap();
        Self { name }
    }

    pub fn url(&self) -> String {
        let base = maintenance_url();
        let (server, _) = base.rsplit_once('/').unwrap();
        format!("{server}/{}", self.name)
    }

    pub fn conn(&self) -> PgConnection {
        PgConnection::establish(&self.url()).unwrap()
    }
}

impl Drop for FreshDb {
    fn drop(&mut self) {
        if let Ok(mut conn) = PgConnection::establish(&maintenance_url()) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut conn);
        }
    }
}
