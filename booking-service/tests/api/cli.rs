//! The command line: `migrate`, `create-admin`, `patients …`, `openapi`.

use crate::helpers::{spawn_app, test_db, TestDb, JWT_SECRET};
use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Output, Stdio};

fn cli(db: &TestDb) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_booking-service"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(std::env::temp_dir())
        .env("MEDBOOK_AUTH__JWT_SECRET", JWT_SECRET)
        .env("MEDBOOK_PROFILE", "dev")
        .env("MEDBOOK_AUTH__BCRYPT_COST", "4")
        .env("MEDBOOK_LOG__LEVEL", "warn")
        .env("MEDBOOK_DATABASE__URL", db.url());
    cmd
}

fn json_out(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // Logs go to stderr: stdout is exactly the command's JSON result.
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test]
async fn create_admin_from_env_or_stdin_then_log_in() {
    let app = spawn_app().await;
    let mut cmd = cli(&app.db);
    let out = cmd
        .args(["create-admin", "--email", "Root@Clinic.example"])
        .env("MEDBOOK_ADMIN_PASSWORD", "amber-kettle-63")
        .output()
        .unwrap();
    let admin = json_out(&out);
    assert_eq!(admin["role"], "admin");
    let res = app.login("root@clinic.example", "amber-kettle-63").await;
    assert_eq!(res.status(), 200);
    let token = res.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.get("/api/v1/patients", Some(&token)).await.status(),
        200
    );

    let mut child = cli(&app.db)
        .args([
            "create-admin",
            "--email",
            "second@clinic.example",
            "--full-name",
            "Second",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"stdin password\n")
        .unwrap();
    json_out(&child.wait_with_output().unwrap());
    assert_eq!(
        app.login("second@clinic.example", "stdin password")
            .await
            .status(),
        200
    );

    let out = cli(&app.db)
        .args(["create-admin", "--email", "weak@clinic.example"])
        .env("MEDBOOK_ADMIN_PASSWORD", "short")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("password"));
}

#[test]
fn patients_import_is_all_or_nothing_and_export_round_trips() {
    let db = test_db();
    let dir = std::env::temp_dir().join(format!("medbook-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        json!([
            {"email": "ok@example.com", "full_name": "Okay Person", "birth_date": "1980-01-01", "gender": "other", "phone": "+33 1 23 45 67 89"},
            {"email": "broken", "full_name": "", "phone": "12"},
            {"email": "OK@example.com", "full_name": "Duplicate"}
        ])
        .to_string(),
    )
    .unwrap();
    let out = cli(&db)
        .args(["patients", "import"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["imported"], 0);
    let rejected = report["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2, "{report}");
    assert_eq!(rejected[0]["index"], 1);
    assert_eq!(rejected[0]["errors"].as_array().unwrap().len(), 3);
    assert_eq!(rejected[1]["index"], 2);
    let listed = json_out(&cli(&db).args(["patients", "list"]).output().unwrap());
    assert_eq!(listed["total"], 0, "nothing imported");

    let good = dir.join("good.json");
    std::fs::write(
        &good,
        json!([
            {"email": "a@example.com", "full_name": "Alpha", "birth_date": "1980-01-01", "gender": "female", "phone": "+33123456789"},
            {"email": "b@example.com", "full_name": "Beta"}
        ])
        .to_string(),
    )
    .unwrap();
    let out = json_out(
        &cli(&db)
            .args(["patients", "import"])
            .arg(&good)
            .output()
            .unwrap(),
    );
    assert_eq!(out["imported"], 2);
    let again = cli(&db)
        .args(["patients", "import"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        !again.status.success(),
        "re-import must be refused: e-mails taken"
    );

    let export = dir.join("export.json");
    json_out(
        &cli(&db)
            .args(["patients", "export"])
            .arg(&export)
            .output()
            .unwrap(),
    );
    let exported: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
    assert_eq!(exported.len(), 2);
    let alpha = exported
        .iter()
        .find(|p| p["email"] == "a@example.com")
        .unwrap();
    assert_eq!(alpha["phone"], "+33123456789");
    let id = alpha["id"].as_str().unwrap().to_owned();

    let fresh = test_db();
    let out = json_out(
        &cli(&fresh)
            .args(["patients", "import"])
            .arg(&export)
            .output()
            .unwrap(),
    );
    assert_eq!(out["imported"], 2);
    let got = json_out(&cli(&fresh).args(["patients", "get", &id]).output().unwrap());
    assert_eq!(got["full_name"], "Alpha");

    let added = json_out(
        &cli(&fresh)
            .args([
                "patients",
                "add",
                "--email",
                "c@example.com",
                "--full-name",
                "Gamma",
                "--gender",
                "male",
            ])
            .output()
            .unwrap(),
    );
    assert_eq!(added["gender"], "male");
    let bad_add = cli(&fresh)
        .args(["patients", "add", "--email", "nope", "--full-name", "X"])
        .output()
        .unwrap();
    assert!(!bad_add.status.success());
    let found = json_out(
        &cli(&fresh)
            .args(["patients", "list", "--search", "gam"])
            .output()
            .unwrap(),
    );
    assert_eq!(found["total"], 1);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn migrate_is_idempotent() {
    let db = test_db();
    let out = json_out(&cli(&db).arg("migrate").output().unwrap());
    assert_eq!(out["applied"], json!([]), "template is already migrated");
}

#[test]
fn openapi_prints_the_document_without_configuration() {
    let out = Command::new(env!("CARGO_BIN_EXE_booking-service"))
        .env_clear()
        .arg("openapi")
        .output()
        .unwrap();
    let doc = json_out(&out);
    assert!(doc["paths"]["/api/v1/auth/login"].is_object());
}

/// Demo accounts have a published password: the production profile refuses to make
/// them, and nothing is written.
#[tokio::test]
async fn seed_demo_refuses_the_production_profile() {
    let app = crate::helpers::spawn_app().await;
    // A configuration production accepts, so the refusal is seed-demo's own.
    let out = cli(&app.db)
        .env("MEDBOOK_PROFILE", "production")
        .env("MEDBOOK_AUTH__BCRYPT_COST", "10")
        .env("MEDBOOK_AUDIT__APPEND_TOKEN", "cli-test-append-token")
        .env("MEDBOOK_AUDIT__READ_TOKEN", "cli-test-read-token")
        .arg("seed-demo")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("seed-demo creates accounts with a published password"),
        "{stderr}"
    );
    let clinics: Value = app.get("/api/v1/clinics", None).await.json().await.unwrap();
    assert_eq!(clinics["total"], 0);
}

#[tokio::test]
async fn seed_demo_loads_a_living_data_set_once() {
    let app = crate::helpers::spawn_app().await;
    let report = json_out(
        &cli(&app.db)
            .args(["seed-demo", "--doctors", "14", "--patients", "6"])
            .output()
            .unwrap(),
    );
    assert_eq!(report["skipped"], false);
    assert_eq!(report["clinics"], 7);
    assert_eq!(report["doctors"], 14);
    assert!(
        report["slots"].as_u64().unwrap() >= 14 * 19 * 16,
        "{report}"
    );
    assert!(
        report["upcoming_appointments"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert!(report["past_visits"].as_u64().unwrap() > 0, "{report}");
    let again = json_out(&cli(&app.db).arg("seed-demo").output().unwrap());
    assert_eq!(again["skipped"], true);

    let cities: Value = app
        .get("/api/v1/clinics?per_page=100", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cities["total"], 7);
    let rated: Value = app
        .get("/api/v1/doctors?sort=rating&per_page=1", None)
        .await
        .json()
        .await
        .unwrap();
    assert!(rated["items"][0]["rating"]["count"].as_i64().unwrap() > 0);
    let login = app
        .login("patient01@demo.medbook.local", "demo-patient")
        .await;
    assert_eq!(login.status(), 200);
    let token = login.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mine: Value = app
        .get("/api/v1/appointments", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert!(mine["total"].as_i64().unwrap() >= 1, "{mine}");

    // Demo doctors log in and see today's visits, named, waiting for their attendance.
    assert_eq!(report["doctor_accounts"], 5);
    let login = app
        .login("doctor01@demo.medbook.local", "demo-doctor")
        .await;
    assert_eq!(login.status(), 200);
    let token = login.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // The day of the latest of them in the clinic's zone (today, unless seeded just
    // after midnight there).
    #[derive(diesel::QueryableByName)]
    struct Day {
        #[diesel(sql_type = diesel::sql_types::Text)]
        day: String,
    }
    let latest: Day = diesel::RunQueryDsl::get_result(
        diesel::sql_query(
            "SELECT to_char(a.starts_at AT TIME ZONE c.time_zone, 'YYYY-MM-DD') AS day
               FROM appointments a JOIN doctors d ON d.id = a.doctor_id
               JOIN clinics c ON c.id = d.clinic_id JOIN users u ON u.id = d.user_id
              WHERE u.email = 'doctor01@demo.medbook.local' AND a.status = 'booked'
                AND a.starts_at < now()
              ORDER BY a.starts_at DESC LIMIT 1",
        ),
        &mut app.db.conn(),
    )
    .unwrap();
    let day: Value = app
        .get(
            &format!("/api/v1/doctor/appointments?date={}", latest.day),
            Some(&token),
        )
        .await
        .json()
        .await
        .unwrap();
    let started: Vec<&Value> = day["appointments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["status"] == "booked")
        .collect();
    assert!(!started.is_empty(), "{day}");
    assert!(!started[0]["patient_name"].as_str().unwrap().is_empty());
    let res = app
        .send_json(
            reqwest::Method::POST,
            &format!(
                "/api/v1/appointments/{}/attendance",
                started[0]["id"].as_str().unwrap()
            ),
            Some(&token),
            &serde_json::json!({"outcome": "no_show"}),
        )
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
}

#[tokio::test]
async fn create_doctor_account_links_a_login_that_sees_its_day() {
    let app = spawn_app().await;
    let p = crate::helpers::practice(&app).await;
    let doctor_id = p.doctor_id();
    let email = format!("doc-{}@clinic.example", uuid::Uuid::new_v4().simple());
    let run = || {
        cli(&app.db)
            .args([
                "create-doctor-account",
                "--email",
                &email,
                "--doctor-id",
                &doctor_id,
            ])
            .env("MEDBOOK_DOCTOR_PASSWORD", "copper-stethoscope-58")
            .output()
            .unwrap()
    };
    let account = json_out(&run());
    assert_eq!(account["role"], "doctor");
    // The doctor's record names the account; a second account is refused.
    let again = run();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already has an account"));

    let res = app.login(&email, "copper-stethoscope-58").await;
    assert_eq!(res.status(), 200);
    let token: Value = res.json().await.unwrap();
    let day: Value = app
        .get(
            "/api/v1/doctor/appointments",
            Some(token["access_token"].as_str().unwrap()),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(day["doctor_id"], doctor_id.as_str());
    assert_eq!(day["time_zone"], "Europe/Berlin");
    // Both changes are audited as the command.
    let actions = crate::helpers::count(
        &app,
        "SELECT count(*) AS n FROM outbox_events WHERE sink = 'audit'
           AND event_type IN ('doctor_account.created', 'doctor.updated')
           AND payload::jsonb -> 'actor' ->> 'system' = 'cli create-doctor-account'",
    );
    assert_eq!(actions, 2);
}

/// The clinic cancels from the command line under the same rule as over HTTP and
/// gRPC: a reason is required; with one, the patient's appointment is cancelled.
#[tokio::test]
async fn appointments_cancel_requires_a_reason_like_every_admin_cancel() {
    let app = spawn_app().await;
    let p = crate::helpers::practice(&app).await;
    let slot = app.create_slot(&p.admin, &p.doctor_id(), 60, 30).await;
    let patient = app.patient().await;
    let booked: Value = app
        .book(&patient, slot["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    let id = booked["id"].as_str().unwrap().to_owned();
    let status = || async {
        let a: Value = app
            .get(&format!("/api/v1/appointments/{id}"), Some(&patient.access))
            .await
            .json()
            .await
            .unwrap();
        a["status"].as_str().unwrap().to_owned()
    };

    for args in [vec![], vec!["--reason", "  "]] {
        let out = cli(&app.db)
            .args(["appointments", "cancel", &id])
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("reason: is required when an admin cancels"),
            "{stderr}"
        );
    }
    assert_eq!(status().await, "booked");

    let cancelled = json_out(
        &cli(&app.db)
            .args([
                "appointments",
                "cancel",
                &id,
                "--reason",
                "the doctor is ill",
            ])
            .output()
            .unwrap(),
    );
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["cancel_reason"], "the doctor is ill");
    assert_eq!(status().await, "cancelled");
    // Audited once, as the command.
    let records = crate::helpers::count(
        &app,
        "SELECT count(*) AS n FROM outbox_events WHERE sink = 'audit'
           AND event_type = 'appointment.cancelled'
           AND payload::jsonb -> 'actor' ->> 'system' = 'cli appointments'",
    );
    assert_eq!(records, 1);
    // Again: the appointment is no longer active, in the words HTTP uses.
    let again = cli(&app.db)
        .args(["appointments", "cancel", &id, "--reason", "twice"])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("appointment_not_active"));
}
