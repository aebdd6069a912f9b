//! The audit-reading port's contract: what `GET /api/v1/audit` may rely on, held against
//! the in-memory log and against the gRPC client talking to a real audit-service.

use booking_service::audit_client::{self, AuditClient};
use booking_service::audit_memory::MemoryAuditLog;
use booking_service::domain::audit::{
    AuditFilter, LoggedActor, LoggedChange, LoggedPage, LoggedRecord,
};
use booking_service::service::audit_log::{AuditReadError, AuditReader};
use chrono::{DateTime, Duration, Utc};
use medbook_proto::audit::v1 as pb;
use medbook_test_support::process::{service_command, ServiceProcess};
use secrecy::SecretString;
use uuid::Uuid;

const APPEND_TOKEN: &str = "contract-audit-append-token-77f1";
const READ_TOKEN: &str = "contract-audit-read-token-3c2e";

/// One record the contract writes into the log before reading it.
struct Seed {
    id: Uuid,
    actor: LoggedActor,
    action: &'static str,
    entity_type: &'static str,
    entity_id: String,
    occurred_at: DateTime<Utc>,
}

fn seeds(user: Uuid, start: DateTime<Utc>) -> Vec<Seed> {
    let user = LoggedActor::User {
        user_id: user.to_string(),
        role: "admin".into(),
    };
    let mut out = Vec::new();
    for (i, (actor, action, entity_type)) in [
        (user.clone(), "clinic.created", "clinic"),
        (user.clone(), "clinic.updated", "clinic"),
        (user, "clinic.updated", "clinic"),
        (
            LoggedActor::System("reminders".into()),
            "appointment.reminded",
            "appointment",
        ),
        (
            LoggedActor::System("reminders".into()),
            "appointment.reminded",
            "appointment",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        out.push(Seed {
            id: Uuid::new_v4(),
            actor,
            action,
            entity_type,
            entity_id: format!("e{i}"),
            occurred_at: start + Duration::seconds(i64::try_from(i).unwrap()),
        });
    }
    out
}

fn filter() -> AuditFilter {
    AuditFilter {
        per_page: 50,
        ..Default::default()
    }
}

async fn all_pages(reader: &dyn AuditReader, mut f: AuditFilter) -> Vec<LoggedRecord> {
    let mut out = Vec::new();
    loop {
        let LoggedPage {
            items,
            next_page_token,
        } = reader.query(f.clone()).await.unwrap();
        assert!(items.len() <= usize::try_from(f.per_page).unwrap());
        out.extend(items);
        match next_page_token {
            Some(t) => f.page_token = Some(t),
            None => return out,
        }
    }
}

/// The promises, given a reader over a log holding exactly `seeds` (in that order)
/// and a reader that cannot reach its log.
async fn contract(reader: &dyn AuditReader, down: &dyn AuditReader, seeds: &[Seed], user: Uuid) {
    // Newest first, every record once, across pages of two.
    let paged = all_pages(
        reader,
        AuditFilter {
            per_page: 2,
            ..filter()
        },
    )
    .await;
    let ids: Vec<String> = paged.iter().map(|r| r.id.clone()).collect();
    let expected: Vec<String> = seeds.iter().rev().map(|s| s.id.to_string()).collect();
    assert_eq!(ids, expected);
    assert!(paged.windows(2).all(|w| w[0].index > w[1].index));
    let first = paged.last().unwrap();
    assert_eq!(first.action, "clinic.created");
    assert_eq!(first.entity_type, "clinic");
    assert_eq!(first.entity_id, "e0");
    assert_eq!(
        first.actor,
        LoggedActor::User {
            user_id: user.to_string(),
            role: "admin".into()
        }
    );
    assert_eq!(first.changes.len(), 1);
    assert_eq!(first.changes[0].field, "name");

    // Each filter alone, and together.
    let of = |f: AuditFilter| async move { all_pages(reader, f).await };
    let clinics = of(AuditFilter {
        entity_type: Some("clinic".into()),
        ..filter()
    })
    .await;
    assert_eq!(clinics.len(), 3);
    let one = of(AuditFilter {
        entity_type: Some("clinic".into()),
        entity_id: Some("e1".into()),
        ..filter()
    })
    .await;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].id, seeds[1].id.to_string());
    let by_user = of(AuditFilter {
        actor_id: Some(user),
        ..filter()
    })
    .await;
    assert_eq!(by_user.len(), 3);
    let reminded = of(AuditFilter {
        action: Some("appointment.reminded".into()),
        ..filter()
    })
    .await;
    assert_eq!(reminded.len(), 2);
    assert!(reminded
        .iter()
        .all(|r| r.actor == LoggedActor::System("reminders".into())));
    let window = of(AuditFilter {
        from: Some(seeds[1].occurred_at),
        to: Some(seeds[3].occurred_at),
        ..filter()
    })
    .await;
    let ids: Vec<String> = window.iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids, [seeds[2].id.to_string(), seeds[1].id.to_string()]);

    // A page token the log did not issue is refused by field; an unreachable log is
    // unavailable, never an empty page.
    match reader
        .query(AuditFilter {
            page_token: Some("not-a-token-of-this-log".into()),
            ..filter()
        })
        .await
    {
        Err(AuditReadError::Refused(fields)) => {
            assert!(!fields.is_empty());
            assert!(fields.iter().any(|f| f.field == "page_token"), "{fields:?}");
        }
        other => panic!("a foreign page token gave {other:?}"),
    }
    assert!(matches!(
        down.query(filter()).await,
        Err(AuditReadError::Unavailable(_))
    ));
}

fn logged(s: &Seed) -> LoggedRecord {
    LoggedRecord {
        index: 0,
        id: s.id.to_string(),
        actor: s.actor.clone(),
        action: s.action.into(),
        entity_type: s.entity_type.into(),
        entity_id: s.entity_id.clone(),
        changes: vec![LoggedChange {
            field: "name".into(),
            before: None,
            after: Some("\"x\"".into()),
        }],
        source: "http".into(),
        request_id: None,
        occurred_at: Some(s.occurred_at),
        received_at: Some(s.occurred_at),
        appended_at: Some(s.occurred_at),
    }
}

#[tokio::test]
async fn the_memory_log_keeps_the_reader_contract() {
    let user = Uuid::new_v4();
    let seeds = seeds(user, Utc::now() - Duration::minutes(5));
    let log = MemoryAuditLog::default();
    for s in &seeds {
        log.append(logged(s));
    }
    let down = MemoryAuditLog::default();
    down.set_down(true);
    contract(&log, &down, &seeds, user).await;
}

fn reader_on(port: u16) -> AuditClient {
    AuditClient::new(
        &format!("http://127.0.0.1:{port}"),
        Some(&SecretString::from(APPEND_TOKEN.to_owned())),
        Some(&SecretString::from(READ_TOKEN.to_owned())),
        std::time::Duration::from_secs(5),
        medbook_proto::observe::GrpcMetrics::new(
            &prometheus::Registry::new(),
            "client",
            audit_client::METHODS,
        )
        .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn the_grpc_client_keeps_the_reader_contract_against_the_audit_service() {
    let db = medbook_test_support::pg::TestDb::empty("medbook_audit");
    let key = std::env::temp_dir().join(format!("audit-contract-{}.key", Uuid::new_v4()));
    let port = medbook_test_support::free_port();
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_booking-service"))
        .with_file_name(format!("audit-service{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.exists(),
        "{} is missing: build it with `cargo build -p audit-service` (scripts/test.sh does)",
        binary.display()
    );
    let process = ServiceProcess::spawn(
        service_command(binary)
            .env("MEDBOOK_PROFILE", "dev")
            .env("MEDBOOK_DATABASE__URL", db.url())
            .env("MEDBOOK_GRPC__ADDR", format!("127.0.0.1:{port}"))
            .env("MEDBOOK_HTTP__OPS_ADDR", "127.0.0.1:0")
            .env("MEDBOOK_AUDIT__SIGNING_KEY_FILE", &key)
            .env("MEDBOOK_AUDIT__APPEND_TOKEN", APPEND_TOKEN)
            .env("MEDBOOK_AUDIT__READ_TOKEN", READ_TOKEN)
            .arg("serve")
            .stderr(std::process::Stdio::null()),
    );
    process.wait_for("grpc listening", std::time::Duration::from_secs(60));

    let user = Uuid::new_v4();
    let seeds = seeds(user, Utc::now() - Duration::minutes(5));
    let client = reader_on(port);
    let records: Vec<pb::AuditRecord> = seeds
        .iter()
        .map(|s| pb::AuditRecord {
            id: s.id.to_string(),
            actor: Some(pb::Actor {
                kind: Some(match &s.actor {
                    LoggedActor::User { user_id, role } => pb::actor::Kind::User(pb::UserActor {
                        user_id: user_id.clone(),
                        role: role.clone(),
                    }),
                    LoggedActor::System(job) => pb::actor::Kind::System(job.clone()),
                    LoggedActor::Unknown => unreachable!(),
                }),
            }),
            action: s.action.into(),
            entity_type: s.entity_type.into(),
            entity_id: s.entity_id.clone(),
            changes: vec![pb::FieldChange {
                field: "name".into(),
                before: None,
                after: Some("\"x\"".into()),
            }],
            source: "http".into(),
            request_id: String::new(),
            occurred_at: Some(medbook_proto::time::to_proto(s.occurred_at)),
            traceparent: String::new(),
        })
        .collect();
    // It listens while it loads its log; appends are idempotent by record id.
    medbook_test_support::eventually(
        "the audit-service takes the records",
        std::time::Duration::from_secs(30),
        || async { client.append(records.clone(), None).await.ok() },
    )
    .await;

    // Nothing listens on this port: the log is unreachable.
    let down = reader_on(medbook_test_support::free_port());
    contract(&client, &down, &seeds, user).await;
    drop(process);
    let _ = std::fs::remove_file(key);
}
