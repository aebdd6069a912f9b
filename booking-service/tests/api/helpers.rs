//! Test harness: a migrated template database, one clone per test, the app on port 0.

use booking_service::domain::{Email, FullName, Password};
use booking_service::repository::migrations::MIGRATIONS;
use booking_service::service::auth::Registration;
use booking_service::settings::Settings;
use booking_service::startup::{Application, Services};
use chrono::DurationRound;
use diesel::RunQueryDsl;
use medbook_shared::config_loader::ConfigSources;
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{json, Value};
use uuid::Uuid;

/// Passes the password policy (not common, no name or address in it).
pub const PATIENT_PASSWORD: &str = "violet-harbor-42";

pub const JWT_SECRET: &str = "integration-test-secret-at-least-32-bytes";

/// The Redis the tests use (logged-out tokens, the Redis cache).
pub fn redis_url() -> String {
    std::env::var("MEDBOOK_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

pub use medbook_test_support::pg::TestDb;

/// A database with the booking schema, cloned from its migrated template.
pub fn test_db() -> TestDb {
    TestDb::migrated(
        "medbook",
        MIGRATIONS,
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations")),
    )
}

/// Settings for a test: dev profile, cheap bcrypt, port 0, the given database.
pub fn test_settings(db: &TestDb) -> Settings {
    let env = [
        ("MEDBOOK_PROFILE", "dev".to_owned()),
        ("MEDBOOK_AUTH__JWT_SECRET", JWT_SECRET.to_owned()),
        ("MEDBOOK_AUTH__BCRYPT_COST", "4".to_owned()),
        ("MEDBOOK_HTTP__ADDR", "127.0.0.1:0".to_owned()),
        ("MEDBOOK_HTTP__OPS_ADDR", "127.0.0.1:0".to_owned()),
        ("MEDBOOK_GRPC__ADDR", "127.0.0.1:0".to_owned()),
        // Registration and reset answers are padded; a short floor keeps tests quick.
        ("MEDBOOK_ACCOUNTS__RESPONSE_FLOOR_MS", "50".to_owned()),
        // Tests register many patients from one address; `accounts.rs` tests the limit.
        ("MEDBOOK_ACCOUNTS__REQUESTS_PER_CLIENT", "100000".to_owned()),
        ("MEDBOOK_HTTP__WORKERS", "2".to_owned()),
        ("MEDBOOK_DATABASE__URL", db.url()),
        ("MEDBOOK_DATABASE__POOL_SIZE", "5".to_owned()),
        ("MEDBOOK_DATABASE__STARTUP_RETRY_SECS", "5".to_owned()),
        ("MEDBOOK_REDIS__URL", redis_url()),
        // Tests book slots starting soon; the notice rule has its own test.
        ("MEDBOOK_BOOKING__MIN_NOTICE_MINUTES", "0".to_owned()),
        (
            "MEDBOOK_KAFKA__BROKERS",
            medbook_test_support::kafka::shared_brokers(),
        ),
        // Events are written to the outbox either way; the tests in `events.rs` run
        // the relay against topics of their own.
        ("MEDBOOK_OUTBOX__RELAY_ENABLED", "false".to_owned()),
        // Audit records wait in the outbox; `audit.rs` runs the relay against a real
        // audit-service.
        ("MEDBOOK_AUDIT__RELAY_ENABLED", "false".to_owned()),
        // Waitlist offers are made by rounds the tests in `clinic_care.rs` drive with
        // a clock of their own; one test runs the matcher as a replica does.
        ("MEDBOOK_WAITLIST__MATCHER_ENABLED", "false".to_owned()),
    ];
    Settings::load_from(&ConfigSources {
        file: None,
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    })
    .unwrap()
}

pub struct TestApp {
    pub address: String,
    /// The operators' listener (`/metrics`, `/ready`).
    pub ops_address: String,
    /// The gRPC ScheduleService.
    pub grpc_address: String,
    pub client: reqwest::Client,
    pub settings: Settings,
    pub db: TestDb,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customize: impl FnOnce(&mut Settings)) -> TestApp {
    medbook_shared::telemetry::init(
        "booking-service-tests",
        "warn",
        medbook_shared::telemetry::LogOutput::Stdout,
    );
    // Test failures read better with the standard panic output than as JSON lines.
    let _ = std::panic::take_hook();
    let db = test_db();
    let mut settings = test_settings(&db);
    customize(&mut settings);
    let app = Application::build(settings.clone()).await.unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    let ops_address = format!("http://127.0.0.1:{}", app.ops_port());
    let grpc_address = format!("http://127.0.0.1:{}", app.grpc_port().unwrap_or_default());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        ops_address,
        grpc_address,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        settings,
        db,
    }
}

/// A registered and logged-in user.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: Uuid,
    pub email: String,
    pub password: String,
    pub access: String,
    pub refresh: String,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        let mut r = self.request(Method::GET, path);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.unwrap()
    }

    pub async fn send_json(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> Response {
        let mut r = self.request(method, path).json(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.unwrap()
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.send_json(Method::POST, path, None, body).await
    }

    pub async fn register(&self, email: &str, password: &str) -> Response {
        self.post(
            "/api/v1/auth/register",
            &json!({"email": email, "password": password, "full_name": "Test Patient"}),
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.post(
            "/api/v1/auth/login",
            &json!({"email": email, "password": password}),
        )
        .await
    }

    /// Registers a patient with a unique e-mail, verifies the address (as following the
    /// link does; `accounts.rs` follows real links) and logs in.
    pub async fn patient(&self) -> TestUser {
        let user = self.unverified_patient().await;
        self.db.execute(&format!(
            "UPDATE users SET email_verified_at = now() WHERE id = '{}'",
            user.id
        ));
        user
    }

    /// Registers and logs in a patient whose address is not verified yet.
    pub async fn unverified_patient(&self) -> TestUser {
        let email = format!("patient-{}@example.com", Uuid::new_v4().simple());
        let password = PATIENT_PASSWORD.to_owned();
        let res = self.register(&email, &password).await;
        assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());
        let id = self.user_id(&email);
        self.logged_in(id, email, password).await
    }

    /// The id of the user with this address.
    pub fn user_id(&self, email: &str) -> Uuid {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Uuid)]
            id: Uuid,
        }
        diesel::sql_query("SELECT id FROM users WHERE email = $1")
            .bind::<diesel::sql_types::Text, _>(email)
            .get_result::<Row>(&mut self.db.conn())
            .unwrap()
            .id
    }

    /// The operators' listener.
    pub async fn ops_get(&self, path: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.ops_address))
            .send()
            .await
            .unwrap()
    }

    /// The account e-mails of `event_type` (e.g. `account.verify_email`) to `email`,
    /// newest first, read from the outbox (the relay is off in these tests; the
    /// pipeline tests read the same mails from the mail sink).
    pub fn outbox_mails(&self, event_type: &str, email: &str) -> Vec<Value> {
        #[derive(diesel::QueryableByName)]
        struct Payload {
            #[diesel(sql_type = diesel::sql_types::Text)]
            payload: String,
        }
        let rows: Vec<Payload> = diesel::sql_query(
            "SELECT payload FROM outbox_events WHERE event_type = $1 ORDER BY seq DESC",
        )
        .bind::<diesel::sql_types::Text, _>(event_type)
        .load(&mut self.db.conn())
        .unwrap();
        rows.into_iter()
            .filter_map(|r| serde_json::from_str::<Value>(&r.payload).ok())
            .filter(|v| v["data"]["account"]["email"] == email)
            .collect()
    }

    /// The link of the newest such e-mail.
    pub fn outbox_link(&self, event_type: &str, email: &str) -> Option<String> {
        self.outbox_mails(event_type, email)
            .first()
            .and_then(|v| v["data"]["link"].as_str().map(str::to_owned))
    }

    /// How many such e-mails there are.
    pub fn outbox_count(&self, event_type: &str, email: &str) -> usize {
        self.outbox_mails(event_type, email).len()
    }

    /// Creates an admin through the same use case as the CLI, and logs in.
    pub async fn admin(&self) -> TestUser {
        let services = Services::build(&self.settings).await.unwrap();
        let email = format!("admin-{}@example.com", Uuid::new_v4().simple());
        let password = "steel-orchard-77".to_owned();
        let admin = services
            .auth
            .create_admin(Registration {
                email: Email::parse(&email).unwrap(),
                password: Password::parse(&password).unwrap(),
                full_name: FullName::parse("Test Admin").unwrap(),
                birth_date: None,
                gender: None,
                phone: None,
            })
            .await
            .unwrap();
        self.logged_in(admin.id.0, email, password).await
    }

    async fn logged_in(&self, id: Uuid, email: String, password: String) -> TestUser {
        let res = self.login(&email, &password).await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        TestUser {
            id,
            email,
            password,
            access: body["access_token"].as_str().unwrap().to_owned(),
            refresh: body["refresh_token"].as_str().unwrap().to_owned(),
        }
    }
}

/// Asserts the documented error shape and returns the body.
pub async fn assert_error(res: Response, status: u16, code: &str) -> Value {
    let actual = res.status().as_u16();
    let header_id = res
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let content_type = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = res.text().await.unwrap();
    assert_eq!(actual, status, "body: {text}");
    assert_eq!(content_type.as_deref(), Some("application/json"), "{text}");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(body["error"]["details"].is_array(), "{body}");
    assert!(header_id.is_some(), "X-Request-Id missing");
    assert_eq!(body["request_id"].as_str(), header_id.as_deref(), "{body}");
    body
}

/// Admin-side fixtures for the booking core.
impl TestApp {
    pub async fn create_clinic(&self, admin: &TestUser, city: &str, tz: &str) -> Value {
        let res = self
            .send_json(
                Method::POST,
                "/api/v1/clinics",
                Some(&admin.access),
                &json!({"name": format!("Clinic {city}"), "city": city, "address": "1 Main St", "time_zone": tz}),
            )
            .await;
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
        res.json().await.unwrap()
    }

    pub async fn create_doctor(
        &self,
        admin: &TestUser,
        clinic_id: &str,
        name: &str,
        specialty: &str,
    ) -> Value {
        let res = self
            .send_json(
                Method::POST,
                "/api/v1/doctors",
                Some(&admin.access),
                &json!({"full_name": name, "specialty": specialty, "clinic_id": clinic_id, "years_of_experience": 7}),
            )
            .await;
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
        res.json().await.unwrap()
    }

    /// A slot `start_in_minutes` from now lasting `minutes`.
    pub async fn create_slot(
        &self,
        admin: &TestUser,
        doctor_id: &str,
        start_in_minutes: i64,
        minutes: i64,
    ) -> Value {
        let start = chrono::Utc::now()
            .duration_trunc(chrono::Duration::minutes(1))
            .unwrap()
            + chrono::Duration::minutes(start_in_minutes);
        let res = self
            .send_json(
                Method::POST,
                &format!("/api/v1/doctors/{doctor_id}/slots"),
                Some(&admin.access),
                &json!({"starts_at": start.to_rfc3339(), "ends_at": (start + chrono::Duration::minutes(minutes)).to_rfc3339()}),
            )
            .await;
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
        res.json().await.unwrap()
    }

    pub async fn book(&self, patient: &TestUser, slot_id: &str) -> Response {
        self.send_json(
            Method::POST,
            "/api/v1/appointments",
            Some(&patient.access),
            &json!({"slot_id": slot_id, "reason": "check-up"}),
        )
        .await
    }
}

/// A clinic with one doctor, and an admin.
pub struct Practice {
    pub admin: TestUser,
    pub clinic: Value,
    pub doctor: Value,
}

impl Practice {
    pub fn doctor_id(&self) -> String {
        self.doctor["id"].as_str().unwrap().to_owned()
    }
}

pub async fn practice(app: &TestApp) -> Practice {
    let admin = app.admin().await;
    let clinic = app.create_clinic(&admin, "Berlin", "Europe/Berlin").await;
    let doctor = app
        .create_doctor(
            &admin,
            clinic["id"].as_str().unwrap(),
            "Dr. Erika Mustermann",
            "Cardiology",
        )
        .await;
    Practice {
        admin,
        clinic,
        doctor,
    }
}

/// POSTs `body` as `user`; panics unless the answer is 2xx; returns the JSON answer.
pub async fn post_ok(app: &TestApp, user: &TestUser, path: &str, body: Value) -> Value {
    let res = app
        .send_json(Method::POST, path, Some(&user.access), &body)
        .await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {body}");
    body
}

/// The `id` of a resource.
pub fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// The `n` of a `SELECT … AS n` query.
pub fn count(app: &TestApp, sql: &str) -> i64 {
    diesel::RunQueryDsl::get_result::<Count>(diesel::sql_query(sql), &mut app.db.conn())
        .unwrap()
        .n
}

/// The outbox relay on, publishing to `topics`, quick to retry.
pub fn quick_relay(topics: &medbook_test_support::kafka::TestTopics, s: &mut Settings) {
    s.kafka = topics.settings();
    s.outbox.relay_enabled = true;
    s.outbox.poll_interval_ms = 100;
    s.outbox.backoff_initial_ms = 100;
    s.outbox.backoff_max_ms = 1000;
    s.outbox.message_timeout_ms = 3000;
    s.outbox.lease_ms = 10_000;
}
