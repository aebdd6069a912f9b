//! The command line: keygen, start-up refusals, key rotation.

use crate::helpers::*;
use std::process::Stdio;

#[test]
fn keygen_writes_a_private_key_file_and_prints_its_public_key() {
    let dir = TempDir::new();
    let file = dir.0.join("keys/audit.key");
    let config = Config {
        env: vec![],
        key: String::new(),
        public_key: String::new(),
    };
    let out = binary(&config)
        .args(["keygen", "--out", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = audit_service::signing::SigningKey::read_file(&file).unwrap();
    assert_eq!(printed["key_id"], key.key_id());
    assert_eq!(printed["public_key"], key.public_key_base64());
    let secret = std::fs::read_to_string(&file).unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains(secret.trim()));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Never over an existing key.
    let again = binary(&config)
        .args(["keygen", "--out", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), secret);
}

fn start_failure(config: &Config) -> String {
    let out = binary(config).stdout(Stdio::null()).output().unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn production_refuses_to_start_without_a_key_or_both_tokens() {
    let db = audit_db();
    let dir = TempDir::new();
    let mut config = Config::new(&db, &dir);
    config
        .set("MEDBOOK_PROFILE", "production")
        .unset("MEDBOOK_AUDIT__SIGNING_KEY")
        .set(
            "MEDBOOK_AUDIT__SIGNING_KEY_FILE",
            dir.0.join("missing.key").to_str().unwrap(),
        );
    let err = start_failure(&config);
    assert!(err.contains("no signing key"), "{err}");
    assert!(err.contains("keygen"), "{err}");
    assert!(!dir.0.join("missing.key").exists());
    config.set("MEDBOOK_AUDIT__SIGNING_KEY", &config.key.clone());
    config.unset("MEDBOOK_AUDIT__APPEND_TOKEN");
    let err = start_failure(&config);
    assert!(err.contains("audit.append_token"), "{err}");
    assert!(!err.contains(&config.key), "{err}");
    assert!(!err.contains(READ_TOKEN), "{err}");
    // One token for both kinds of call is no separation.
    config.set("MEDBOOK_AUDIT__APPEND_TOKEN", READ_TOKEN);
    let err = start_failure(&config);
    assert!(err.contains("audit.read_token"), "{err}");
    assert!(err.contains("must differ"), "{err}");
    assert!(!err.contains(READ_TOKEN), "{err}");
    // The old single token is not a setting any more: check-config names it.
    config
        .set("MEDBOOK_AUDIT__APPEND_TOKEN", APPEND_TOKEN)
        .set("MEDBOOK_AUDIT__API_TOKEN", "left-over");
    let out = binary(&config).arg("check-config").output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("audit.api_token"), "{text}");
}

#[tokio::test]
async fn dev_generates_a_missing_key_file_and_keeps_using_it() {
    let db = audit_db();
    let dir = TempDir::new();
    let file = dir.0.join("dev.key");
    let mut config = Config::new(&db, &dir);
    config
        .unset("MEDBOOK_AUDIT__SIGNING_KEY")
        .unset("MEDBOOK_AUDIT__APPEND_TOKEN")
        .unset("MEDBOOK_AUDIT__READ_TOKEN")
        .set("MEDBOOK_AUDIT__CHECKPOINT_EVERY", "1")
        .set("MEDBOOK_AUDIT__SIGNING_KEY_FILE", file.to_str().unwrap());
    let mut server = Server::start(&config);
    // No tokens configured: none needed.
    let mut c = server.client().await.with_token(None);
    c.append_n(1).await;
    let first = c.checkpoint().await.unwrap().key_id;
    drop(c);
    server.stop();
    let key = audit_service::signing::SigningKey::read_file(&file).unwrap();
    assert_eq!(first, key.key_id());
    let server = Server::start(&config);
    let mut c = server.client().await.with_token(None);
    c.append_n(1).await;
    assert_eq!(c.checkpoint().await.unwrap().key_id, first);
    let (code, report) = verify(&config, &[]);
    assert_eq!(code, 0, "{report}");
}

#[tokio::test]
async fn after_a_key_rotation_old_checkpoints_verify_with_the_previous_key() {
    let db = audit_db();
    let dir = TempDir::new();
    let mut config = Config::new(&db, &dir);
    config.set("MEDBOOK_AUDIT__CHECKPOINT_EVERY", "2");
    let mut server = Server::start(&config);
    server.client().await.append_n(2).await;
    server.stop();

    // A new key; the old one's public key is trusted still.
    let old_public = config.public_key.clone();
    let (new_key, new_signing) = new_key();
    config.set("MEDBOOK_AUDIT__SIGNING_KEY", &new_key);
    // Without the old public key the service refuses to trust its latest checkpoint.
    let out = binary(&config).stdout(Stdio::null()).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("previous_public_keys"), "{err}");

    config.set("MEDBOOK_AUDIT__PREVIOUS_PUBLIC_KEYS", &old_public);
    let server = Server::start(&config);
    let mut c = server.client().await;
    c.append_n(2).await;
    let cp = c.checkpoint().await.unwrap();
    assert_eq!(cp.tree_size, 4);
    assert_eq!(cp.key_id, new_signing.key_id());
    let (code, report) = verify(&config, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["checkpoints"], 2);
    // Forgetting the old key makes its checkpoint unverifiable.
    config.unset("MEDBOOK_AUDIT__PREVIOUS_PUBLIC_KEYS");
    let (code, report) = verify(&config, &[]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["problem"], "bad_checkpoint");
}
