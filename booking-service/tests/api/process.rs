//! The real binary: graceful shutdown on SIGTERM, clear failures at start-up.

use crate::helpers::{test_db, JWT_SECRET};
use medbook_test_support::process::{service_command, ServiceProcess};
use std::process::Command;
use std::time::Duration;

fn binary() -> Command {
    let mut cmd = service_command(env!("CARGO_BIN_EXE_booking-service"));
    cmd.env("MEDBOOK_AUTH__JWT_SECRET", JWT_SECRET)
        // Production needs the audit-service's credentials too.
        .env("MEDBOOK_AUDIT__APPEND_TOKEN", "process-test-append-token")
        .env("MEDBOOK_AUDIT__READ_TOKEN", "process-test-read-token");
    cmd
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_then_exits_cleanly() {
    let db = test_db();
    let mut service = ServiceProcess::spawn(
        binary()
            .env("MEDBOOK_DATABASE__URL", db.url())
            .env("MEDBOOK_HTTP__ADDR", "127.0.0.1:0")
            .env("MEDBOOK_HTTP__SHUTDOWN_GRACE_SECS", "10")
            .env("MEDBOOK_AUTH__BCRYPT_COST", "13")
            .env("MEDBOOK_HTTP__OPS_ADDR", "127.0.0.1:0")
            .env("MEDBOOK_GRPC__ADDR", "127.0.0.1:0")
            // The registration queues a verification e-mail; this test is about HTTP
            // draining, so no relay waits on a broker that is not there.
            .env("MEDBOOK_OUTBOX__RELAY_ENABLED", "false"),
    );
    let (port, ops_port) = loop {
        let v = service.next_line("the service to start", Duration::from_secs(60));
        assert_eq!(
            v["level"].as_str().map(str::is_empty),
            Some(false),
            "JSON log lines"
        );
        if v["message"] == "listening" {
            break (v["port"].as_u64().unwrap(), v["ops_port"].as_u64().unwrap());
        }
    };
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    // Registration hashes at cost 13 (~0.5-1 s): in flight when SIGTERM arrives.
    let in_flight = tokio::spawn({
        let client = client.clone();
        let url = format!("{base}/api/v1/auth/register");
        async move {
            client
                .post(url)
                .json(&serde_json::json!({"email": "late@example.com", "password": "long enough", "full_name": "Late"}))
                .send()
                .await
        }
    });
    // SIGTERM once the request is being served (the in-flight gauge says so).
    let ops = format!("http://127.0.0.1:{ops_port}");
    medbook_test_support::eventually("the request in flight", Duration::from_secs(10), || async {
        (medbook_test_support::metric(&ops, "http_requests_in_flight").await >= 1.0).then_some(())
    })
    .await;
    service.signal("-TERM");
    let res = in_flight
        .await
        .unwrap()
        .expect("in-flight request was cut off");
    assert_eq!(res.status(), 202);
    let status = service.wait(Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
    assert!(
        client.get(format!("{base}/health")).send().await.is_err(),
        "still accepting"
    );
    let lines: Vec<String> = service.lines.try_iter().map(|v| v.to_string()).collect();
    assert!(lines.iter().any(|l| l.contains("SIGTERM")), "{lines:?}");
}

#[test]
fn unreachable_database_fails_start_up_with_a_clear_message() {
    let out = binary()
        .env(
            "MEDBOOK_DATABASE__URL",
            "postgres://medbook:secret-pw@127.0.0.1:1/medbook",
        )
        .env("MEDBOOK_DATABASE__STARTUP_RETRY_SECS", "1")
        .env("MEDBOOK_DATABASE__CONNECT_TIMEOUT_MS", "300")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("database unreachable"), "{stderr}");
    assert!(!stderr.contains("secret-pw"), "password leaked: {stderr}");
}

#[test]
fn invalid_configuration_names_the_key() {
    let out = binary()
        .env("MEDBOOK_HTTP__ADDR", "nonsense")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("http.addr"));
    let out = binary()
        .env_remove("MEDBOOK_AUTH__JWT_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("auth.jwt_secret"));
}
