//! Rigs: a database of the test's own, the binary with env config, a tonic client.

use base64::Engine;
use medbook_proto::audit::v1 as pb;
use medbook_test_support::pg::TestDb;
use medbook_test_support::process::{service_command, ServiceProcess};
use pb::audit_service_client::AuditServiceClient;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;
use tonic::transport::Channel;
use uuid::Uuid;

/// The writer's credential: Append (and checkpoints and proofs).
pub const APPEND_TOKEN: &str = "test-append-token-3f9a";
/// The readers' credential: Query (and checkpoints and proofs).
pub const READ_TOKEN: &str = "test-read-token-81c2";

/// A database with the audit-service's schema, cloned from its template.
pub fn audit_db() -> TestDb {
    TestDb::migrated(
        "audit",
        audit_service::repository::MIGRATIONS,
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")),
    )
}

/// A fresh base64 ed25519 seed and its key.
pub fn new_key() -> (String, audit_service::signing::SigningKey) {
    let seed: [u8; 32] = rand::random();
    let b64 = base64::engine::general_purpose::STANDARD.encode(seed);
    let key =
        audit_service::signing::SigningKey::from_base64(&secrecy::SecretString::from(b64.clone()))
            .unwrap();
    (b64, key)
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let p = std::env::temp_dir().join(format!("audit-test-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a test runs the service with: its environment, by key.
#[derive(Clone)]
pub struct Config {
    pub env: Vec<(String, String)>,
    pub key: String,
    pub public_key: String,
}

impl Config {
    pub fn new(db: &TestDb, dir: &TempDir) -> Self {
        let (key, signing) = new_key();
        let mut c = Self {
            env: Vec::new(),
            public_key: signing.public_key_base64(),
            key: key.clone(),
        };
        c.set("MEDBOOK_PROFILE", "dev")
            .set("MEDBOOK_DATABASE__URL", &db.url())
            .set("MEDBOOK_GRPC__ADDR", "127.0.0.1:0")
            .set("MEDBOOK_HTTP__OPS_ADDR", "127.0.0.1:0")
            .set("MEDBOOK_LOG__LEVEL", "info")
            .set("MEDBOOK_AUDIT__SIGNING_KEY", &key)
            .set("MEDBOOK_AUDIT__APPEND_TOKEN", APPEND_TOKEN)
            .set("MEDBOOK_AUDIT__READ_TOKEN", READ_TOKEN)
            .set("MEDBOOK_AUDIT__CHECKPOINT_EVERY", "1000")
            .set("MEDBOOK_AUDIT__CHECKPOINT_INTERVAL_SECS", "3600")
            .set(
                "MEDBOOK_AUDIT__VERIFY_STATE_FILE",
                dir.0.join("verify-state.json").to_str().unwrap(),
            );
        c
    }

    pub fn set(&mut self, key: &str, value: &str) -> &mut Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn unset(&mut self, key: &str) -> &mut Self {
        self.env.retain(|(k, _)| k != key);
        self
    }
}

pub fn binary(config: &Config) -> Command {
    let mut cmd = service_command(env!("CARGO_BIN_EXE_audit-service"));
    cmd.envs(config.env.iter().cloned());
    cmd
}

/// The binary, serving; its log lines in `lines`.
pub struct Server {
    pub process: ServiceProcess,
    pub grpc: String,
    pub ops: String,
}

impl Server {
    /// Starts the service and waits until it is ready.
    pub fn start(config: &Config) -> Self {
        let mut server = Self {
            process: ServiceProcess::spawn(binary(config).stderr(Stdio::null())),
            grpc: String::new(),
            ops: String::new(),
        };
        loop {
            let v = server.next_line("the service to be ready");
            match v["message"].as_str() {
                Some("grpc listening") => {
                    server.grpc = format!("http://127.0.0.1:{}", v["port"]);
                }
                Some("probes and metrics listening") => {
                    server.ops = format!("http://127.0.0.1:{}", v["port"]);
                }
                Some("audit-service ready") => return server,
                _ => {}
            }
        }
    }

    pub fn next_line(&self, what: &str) -> Value {
        self.process.next_line(what, Duration::from_secs(60))
    }

    /// A client that sends each call the credential meant for it, as booking-service
    /// does: the append token with Append, the read token with everything else.
    pub async fn client(&self) -> Client {
        Client {
            inner: AuditServiceClient::new(self.channel().await),
            append_token: Some(APPEND_TOKEN.to_owned()),
            read_token: Some(READ_TOKEN.to_owned()),
        }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.grpc.clone())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub fn stop(&mut self) {
        self.process.signal("-TERM");
        let status = self.process.wait(Duration::from_secs(20));
        assert!(status.success(), "exited with {status}");
    }

    pub async fn metric(&self, name_and_labels: &str) -> f64 {
        medbook_test_support::metric(&self.ops, name_and_labels).await
    }
}

impl std::ops::Deref for Server {
    type Target = ServiceProcess;
    fn deref(&self) -> &ServiceProcess {
        &self.process
    }
}

/// An AuditService client that sends a bearer token (when it has one for the call).
#[derive(Clone)]
pub struct Client {
    pub inner: AuditServiceClient<Channel>,
    /// Sent with Append.
    pub append_token: Option<String>,
    /// Sent with Query, GetCheckpoint and the proofs.
    pub read_token: Option<String>,
}

impl Client {
    /// The same client sending `token` (or nothing) with every call.
    pub fn with_token(&self, token: Option<&str>) -> Self {
        Self {
            inner: self.inner.clone(),
            append_token: token.map(str::to_owned),
            read_token: token.map(str::to_owned),
        }
    }

    fn request<T>(message: T, token: Option<&String>) -> tonic::Request<T> {
        let mut r = tonic::Request::new(message);
        if let Some(t) = token {
            r.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        r
    }

    /// A request carrying the read token.
    pub fn read_request<T>(&self, message: T) -> tonic::Request<T> {
        Self::request(message, self.read_token.as_ref())
    }

    pub async fn append(
        &mut self,
        records: Vec<pb::AuditRecord>,
    ) -> Result<pb::AppendResponse, tonic::Status> {
        let r = Self::request(pb::AppendRequest { records }, self.append_token.as_ref());
        self.inner.append(r).await.map(tonic::Response::into_inner)
    }

    pub async fn query(&mut self, q: pb::QueryRequest) -> Result<pb::QueryResponse, tonic::Status> {
        let r = self.read_request(q);
        self.inner.query(r).await.map(tonic::Response::into_inner)
    }

    pub async fn checkpoint(&mut self) -> Result<pb::Checkpoint, tonic::Status> {
        let r = self.read_request(pb::GetCheckpointRequest {});
        self.inner
            .get_checkpoint(r)
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn inclusion(
        &mut self,
        index: u64,
        tree_size: u64,
    ) -> Result<pb::InclusionProof, tonic::Status> {
        let r = self.read_request(pb::GetInclusionProofRequest { index, tree_size });
        self.inner
            .get_inclusion_proof(r)
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn consistency(
        &mut self,
        from_size: u64,
        to_size: u64,
    ) -> Result<pb::ConsistencyProof, tonic::Status> {
        let r = self.read_request(pb::GetConsistencyProofRequest { from_size, to_size });
        self.inner
            .get_consistency_proof(r)
            .await
            .map(tonic::Response::into_inner)
    }

    /// Appends `n` generated records one batch at a time; their ids.
    pub async fn append_n(&mut self, n: usize) -> Vec<String> {
        let records: Vec<_> = (0..n).map(|i| record(&format!("e{i}"))).collect();
        let ids = records.iter().map(|r| r.id.clone()).collect();
        for chunk in records.chunks(500) {
            self.append(chunk.to_vec()).await.unwrap();
        }
        ids
    }
}

/// A valid record about appointment `entity`, by a patient.
pub fn record(entity: &str) -> pb::AuditRecord {
    record_by(entity, &Uuid::new_v4().to_string())
}

pub fn record_by(entity: &str, user: &str) -> pb::AuditRecord {
    pb::AuditRecord {
        id: Uuid::new_v4().to_string(),
        actor: Some(pb::Actor {
            kind: Some(pb::actor::Kind::User(pb::UserActor {
                user_id: user.to_owned(),
                role: "patient".into(),
            })),
        }),
        action: "appointment.cancelled".into(),
        entity_type: "appointment".into(),
        entity_id: entity.to_owned(),
        changes: vec![pb::FieldChange {
            field: "status".into(),
            before: Some("\"booked\"".into()),
            after: Some("\"cancelled\"".into()),
        }],
        source: "http".into(),
        request_id: format!("req-{entity}"),
        traceparent: String::new(),
        occurred_at: Some(medbook_proto::time::to_proto(chrono::Utc::now())),
    }
}

/// Runs `verify` (with `args`); its exit code and JSON report.
pub fn verify(config: &Config, args: &[&str]) -> (i32, Value) {
    let out = binary(config).arg("verify").args(args).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "verify printed no JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

pub fn hash(bytes: &[u8]) -> [u8; 32] {
    bytes.try_into().unwrap()
}

pub fn hashes(path: &[Vec<u8>]) -> Vec<[u8; 32]> {
    path.iter().map(|h| hash(h)).collect()
}
