//! Command line: `serve` (the default), `migrate`, `keygen --out FILE` and `verify
//! [--state FILE]`. Commands print their result as JSON on stdout; logs go to stderr.

use crate::repository::{MIGRATIONS, MIGRATION_LOCK};
use crate::settings::Settings;
use crate::signing::SigningKey;
use clap::{Parser, Subcommand};
use medbook_service_kit::cli::print_json;
use medbook_service_kit::runner::{Plan, Service};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "audit-service",
    about = "medbook's tamper-evident audit log (gRPC)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the AuditService over gRPC (the default).
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Exit 0 when the running service answers `GET /health` on its ops listener: the
    /// container health check (the image has no curl). Reads the same configuration.
    Healthcheck {
        /// How long to wait for the answer.
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
    /// Print the configuration as the service reads it (listeners, probe paths, topics,
    /// keys it does not know) as JSON; exit 1 when a key is unknown, 2 when invalid.
    CheckConfig,
    /// Write a new ed25519 signing key to FILE (never over an existing file); print its
    /// public key and key id.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Rebuild the tree from the rows and check it against every signed checkpoint and
    /// the checkpoint verified last time; exits 1 naming the first bad index.
    Verify {
        /// Where the last verified checkpoint is kept (default: audit.verify_state_file).
        #[arg(long)]
        state: Option<PathBuf>,
    },
}

/// The audit-service binary: its commands over the shared start-up
/// ([`medbook_service_kit::runner`]).
pub struct Binary;

impl Service for Binary {
    type Cli = Cli;
    type Command = Command;
    type Settings = Settings;

    fn plan(cli: Cli) -> Plan<Command> {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => Plan::Serve(Command::Serve),
            Command::Keygen { out } => Plan::Standalone(Box::new(move || keygen(&out))),
            Command::CheckConfig => Plan::CheckConfig,
            Command::Healthcheck { timeout_ms } => Plan::Healthcheck { timeout_ms },
            command => Plan::Command(command),
        }
    }

    async fn run(command: Command, settings: Settings) -> anyhow::Result<ExitCode> {
        match command {
            Command::Serve => {
                crate::startup::serve(settings, async {
                    let signal = medbook_service_kit::signals::wait_for_stop_signal().await;
                    tracing::info!(signal, "shutdown signal received");
                })
                .await?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Migrate => {
                let db = settings.database.connect().await?;
                let applied =
                    medbook_service_kit::startup::migrate(&db, MIGRATIONS, MIGRATION_LOCK).await?;
                print_json(&json!({ "applied": applied }))?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Keygen { out } => keygen(&out),
            Command::Healthcheck { .. } | Command::CheckConfig => {
                anyhow::bail!(
                    "healthcheck and check-config are answered by the runner, before start-up"
                )
            }
            Command::Verify { state } => {
                let trusted = settings.trusted_keys()?;
                let state = state.unwrap_or_else(|| settings.verify_state_file().to_owned());
                let db = settings.database.connect().await?;
                let report =
                    crate::verify::verify(&db, &settings.audit.origin, &trusted, &state).await?;
                print_json(&report)?;
                if report.ok {
                    tracing::info!(records = report.records, "audit log verified");
                    Ok(ExitCode::SUCCESS)
                } else {
                    tracing::error!(
                        first_bad_index = ?report.first_bad_index,
                        problem = ?report.problem,
                        "audit log verification failed"
                    );
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

/// Runs `keygen`: needs no configuration.
fn keygen(out: &std::path::Path) -> anyhow::Result<ExitCode> {
    let key = SigningKey::generate();
    key.write_new(out)?;
    print_json(&json!({
        "file": out,
        "public_key": key.public_key_base64(),
        "key_id": key.key_id(),
    }))?;
    Ok(ExitCode::SUCCESS)
}
