//! Test databases: uniquely named, dropped when the test ends. [`TestDb::migrated`]
//! clones a template that already holds a crate's migrations (built once per set of
//! migration files, by whichever test process gets there first), so a test starts in
//! milliseconds instead of migrating; [`TestDb::empty`] is for tests of migrating.

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
use medbook_service_kit::retry::Backoff;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// The URL of the maintenance database (`MEDBOOK_TEST_DATABASE_URL`).
pub fn maintenance_url() -> String {
    crate::env("MEDBOOK_TEST_DATABASE_URL")
}

/// The URL of database `name` on the test server.
pub fn db_url(name: &str) -> String {
    let base = maintenance_url();
    let server = base.rsplit_once('/').map_or(base.as_str(), |(s, _)| s);
    format!("{server}/{name}")
}

fn maintenance() -> PgConnection {
    PgConnection::establish(&maintenance_url()).unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is required for these tests and is not reachable at {}: {e}",
            maintenance_url()
        )
    })
}

/// Serialises template creation across test processes.
const TEMPLATE_LOCK: i64 = 7243100;

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read migrations at {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("migration directory entry").path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The template for the migrations in `dir`, found or built once per test process.
fn template(prefix: &str, migrations: EmbeddedMigrations, dir: &Path) -> String {
    static TEMPLATES: OnceLock<Mutex<HashMap<(String, PathBuf), String>>> = OnceLock::new();
    let mut known = TEMPLATES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    known
        .entry((prefix.to_owned(), dir.to_owned()))
        .or_insert_with(|| ensure_template(prefix, migrations, dir))
        .clone()
}

/// The template for the migrations in `dir`: named by a hash of their files, created
/// (migrated, then renamed into place, so it is never seen half-built) if missing.
fn ensure_template(prefix: &str, migrations: EmbeddedMigrations, dir: &Path) -> String {
    let mut hasher = Sha256::new();
    for f in files(dir) {
        hasher.update(
            f.strip_prefix(dir)
                .unwrap_or(&f)
                .to_string_lossy()
                .as_bytes(),
        );
        hasher.update(std::fs::read(&f).expect("migration file"));
    }
    let digest = hasher.finalize();
    let hash: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let name = format!("{prefix}_tpl_{hash}");
    let mut conn = maintenance();
    conn.batch_execute(&format!("SELECT pg_advisory_lock({TEMPLATE_LOCK})"))
        .expect("template lock");
    let exists = diesel::sql_query(format!(
        "SELECT datname FROM pg_database WHERE datname = '{name}'"
    ))
    .execute(&mut conn)
    .expect("looking up the template")
        > 0;
    if !exists {
        let building = format!("{name}_tmp");
        // Left over by a run that died half-way.
        conn.batch_execute(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
            .expect("dropping a half-built template");
        conn.batch_execute(&format!("CREATE DATABASE {building}"))
            .expect("creating the template");
        {
            let mut tpl = PgConnection::establish(&db_url(&building)).expect("template connection");
            tpl.run_pending_migrations(migrations)
                .expect("migrating the template");
        }
        conn.batch_execute(&format!("ALTER DATABASE {building} RENAME TO {name}"))
            .expect("publishing the template");
    }
    conn.batch_execute(&format!("SELECT pg_advisory_unlock({TEMPLATE_LOCK})"))
        .expect("template unlock");
    name
}

/// A database for one test; dropped (connections and all) with the guard.
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    /// An empty database: the code under test migrates it.
    pub fn empty(prefix: &str) -> Self {
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        maintenance()
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        Self { name }
    }

    /// A database holding `migrations` (whose files are in `dir`), cloned from their
    /// template.
    pub fn migrated(prefix: &str, migrations: EmbeddedMigrations, dir: &Path) -> Self {
        let template = template(prefix, migrations, dir);
        let name = format!("{prefix}_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = maintenance();
        // Cloning fails while another session uses the template (another test cloning
        // it at this instant): retried briefly.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(500));
        loop {
            match conn.batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}")) {
                Ok(()) => return Self { name },
                Err(e) if e.to_string().contains("being accessed") && Instant::now() < deadline => {
                    std::thread::sleep(backoff.next_delay());
                }
                Err(e) => panic!("cannot create test database {name}: {e}"),
            }
        }
    }

    pub fn url(&self) -> String {
        db_url(&self.name)
    }

    pub fn conn(&self) -> PgConnection {
        PgConnection::establish(&self.url())
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.name))
    }

    /// Runs SQL directly (to arrange a state, simulate time passing, check invariants).
    pub fn execute(&self, sql: &str) {
        self.conn()
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{e}: {sql}"));
    }

    /// Drops the database now (killing connections): simulates losing it.
    pub fn drop_now(&self) {
        maintenance()
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .expect("dropping the test database");
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut conn) = PgConnection::establish(&maintenance_url()) {
            let _ = conn.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}
