//! booking-service in this process, for the end-to-end test and the benchmarks (which
//! include this file with `#[path]`): its own database, the given topics, an admin
//! with a clinic and a doctor to book, and patients with verified addresses.
// Each includer uses a different part of it.
#![allow(dead_code)]

use booking_service::domain::{Email, FullName, Password};
use booking_service::service::auth::Registration;
use booking_service::settings::Settings;
use booking_service::startup::{Application, Services};
use medbook_shared::config_loader::ConfigSources;
use medbook_shared::events::{AccountEvent, Event, EventEnvelope, TOPIC_ACCOUNTS};
use medbook_test_support::kafka::TestTopics;
use medbook_test_support::pg::TestDb;
use serde_json::{json, Value};
use std::time::Duration;

/// Passwords that are neither common nor built from the account's address or name, as
/// the booking-service requires.
const PATIENT_PASSWORD: &str = "violet ferry 2207";
const ADMIN_PASSWORD: &str = "harbour lantern 7781";

pub struct BookingApp {
    pub base: String,
    pub client: reqwest::Client,
    pub settings: Settings,
    pub db: TestDb,
    topics: TestTopics,
    server: actix_web::dev::ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl BookingApp {
    /// Starts the service (relay on) with `extra` settings as `MEDBOOK_…` variables.
    pub async fn start(topics: &TestTopics, extra: &[(&str, &str)]) -> Self {
        let db = TestDb::migrated(
            "medbook",
            booking_service::repository::migrations::MIGRATIONS,
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations")),
        );
        let mut env = vec![
            ("MEDBOOK_PROFILE".to_owned(), "dev".to_owned()),
            ("MEDBOOK_AUTH__BCRYPT_COST".into(), "4".into()),
            ("MEDBOOK_HTTP__ADDR".into(), "127.0.0.1:0".into()),
            ("MEDBOOK_HTTP__OPS_ADDR".into(), "127.0.0.1:0".into()),
            ("MEDBOOK_GRPC__ADDR".into(), "127.0.0.1:0".into()),
            // Audit records stay in the outbox (booking-service's tests ship them).
            ("MEDBOOK_AUDIT__RELAY_ENABLED".into(), "false".into()),
            ("MEDBOOK_DATABASE__URL".into(), db.url()),
            (
                "MEDBOOK_REDIS__URL".into(),
                medbook_test_support::env("MEDBOOK_TEST_REDIS_URL"),
            ),
            ("MEDBOOK_KAFKA__BROKERS".into(), topics.brokers.clone()),
            ("MEDBOOK_KAFKA__TOPIC_PREFIX".into(), topics.prefix.clone()),
            ("MEDBOOK_OUTBOX__POLL_INTERVAL_MS".into(), "100".into()),
            ("MEDBOOK_BOOKING__MIN_NOTICE_MINUTES".into(), "0".into()),
            (
                "MEDBOOK_BOOKING__MAX_ACTIVE_PER_PATIENT".into(),
                "100000".into(),
            ),
            // Many registrations from one client, answered at once.
            (
                "MEDBOOK_ACCOUNTS__REQUESTS_PER_CLIENT".into(),
                "100000".into(),
            ),
            ("MEDBOOK_ACCOUNTS__RESPONSE_FLOOR_MS".into(), "0".into()),
        ];
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let settings = Settings::load_from(&ConfigSources { file: None, env }).unwrap();
        let app = Application::build(settings.clone()).await.unwrap();
        let base = format!("http://127.0.0.1:{}", app.port());
        let server = app.handle();
        let task = tokio::spawn(app.run_until_stopped());
        Self {
            base,
            client: reqwest::Client::new(),
            settings,
            db,
            topics: topics.clone(),
            server,
            task,
        }
    }

    /// Stops the service (server, relay, scheduler) before its database goes.
    pub async fn stop(self) {
        self.server.stop(true).await;
        let _ = self.task.await;
    }

    /// POSTs `body`; panics unless the answer is 2xx; returns the JSON answer.
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Value {
        let mut req = self.client.post(format!("{}{path}", self.base)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        self.post(
            "/api/v1/auth/login",
            None,
            json!({"email": email, "password": password}),
        )
        .await["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Registers a patient over HTTP and verifies the address (bookings need it) with
    /// the token of the verification link the service published; returns their access
    /// token. Needs no mail server.
    pub async fn patient(&self, email: &str, full_name: &str) -> String {
        self.register(email, full_name).await;
        let token = self.verification_token(email).await;
        self.verify_email(&token).await;
        self.log_in_patient(email).await
    }

    /// Registers a patient over HTTP (unverified: a verification link is on its way).
    pub async fn register(&self, email: &str, full_name: &str) {
        self.post(
            "/api/v1/auth/register",
            None,
            json!({"email": email, "password": PATIENT_PASSWORD, "full_name": full_name}),
        )
        .await;
    }

    /// Uses up the token of a verification link.
    pub async fn verify_email(&self, token: &str) {
        self.post("/api/v1/auth/verify-email", None, json!({ "token": token }))
            .await;
    }

    /// Logs a patient registered by [`Self::register`] in.
    pub async fn log_in_patient(&self, email: &str) -> String {
        self.login(email, PATIENT_PASSWORD).await
    }

    /// The token of the first verification link for `email` on the accounts topic.
    pub async fn verification_token(&self, email: &str) -> String {
        let mut reader = self.topics.reader(&[TOPIC_ACCOUNTS]).await;
        let mut checked = 0;
        loop {
            // `read` may return more than one new message: look at each.
            let seen = reader
                .read(checked + 1, Duration::from_secs(30), Duration::ZERO)
                .await;
            for m in &seen[checked..] {
                let Ok(e) = EventEnvelope::decode(&m.payload) else {
                    continue;
                };
                if let Event::Account(AccountEvent::VerifyEmail(l)) = &e.event {
                    if l.account.email == email {
                        return token_of(&l.link);
                    }
                }
            }
            checked = seen.len();
        }
    }

    /// An admin (created as the CLI does), logged in.
    pub async fn admin(&self) -> String {
        let email = format!("admin-{}@example.com", uuid::Uuid::new_v4().simple());
        Services::build(&self.settings)
            .await
            .unwrap()
            .auth
            .create_admin(Registration {
                email: Email::parse(&email).unwrap(),
                password: Password::parse(ADMIN_PASSWORD).unwrap(),
                full_name: FullName::parse("Admin").unwrap(),
                birth_date: None,
                gender: None,
                phone: None,
            })
            .await
            .unwrap();
        self.login(&email, ADMIN_PASSWORD).await
    }

    /// A clinic in `city`/`time_zone` with one doctor; returns the doctor.
    pub async fn doctor(
        &self,
        admin: &str,
        clinic: Value,
        full_name: &str,
        specialty: &str,
    ) -> Value {
        let clinic = self.post("/api/v1/clinics", Some(admin), clinic).await;
        self.post(
            "/api/v1/doctors",
            Some(admin),
            json!({"full_name": full_name, "specialty": specialty, "clinic_id": clinic["id"], "years_of_experience": 9}),
        )
        .await
    }

    /// `count` half-hour slots of `doctor_id`, 20 minutes apart from an hour from now,
    /// written straight to the database; their ids in time order.
    pub fn slots(&self, doctor_id: &str, count: usize) -> Vec<String> {
        use diesel::RunQueryDsl;
        let mut conn = self.db.conn();
        diesel::sql_query(format!(
            "INSERT INTO slots (id, doctor_id, starts_at, ends_at, status)
             SELECT gen_random_uuid(), '{doctor_id}',
                    date_trunc('minute', now()) + (i * interval '20 minutes') + interval '1 hour',
                    date_trunc('minute', now()) + (i * interval '20 minutes') + interval '80 minutes',
                    'available'
             FROM generate_series(0, {}) AS i",
            count.saturating_sub(1)
        ))
        .execute(&mut conn)
        .unwrap();
        #[derive(diesel::QueryableByName)]
        struct Id {
            #[diesel(sql_type = diesel::sql_types::Uuid)]
            id: uuid::Uuid,
        }
        diesel::sql_query(format!(
            "SELECT id FROM slots WHERE doctor_id = '{doctor_id}' ORDER BY starts_at"
        ))
        .load::<Id>(&mut conn)
        .unwrap()
        .into_iter()
        .map(|r| r.id.to_string())
        .collect()
    }
}

/// The `token` query parameter of a link.
pub fn token_of(link: &str) -> String {
    link.split_once("token=")
        .map(|(_, t)| t.split('&').next().unwrap_or(t).to_owned())
        .unwrap_or_else(|| panic!("no token in {link}"))
}
