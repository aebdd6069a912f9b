//! Command line: `serve` (the default), `migrate`, and the operators' dead-letter tools
//! `dlq list | show | replay`. Commands print JSON lines on stdout; logs go to stderr.

use crate::dlq::{self, Selection};
use crate::repository::PgDeliveryLog;
use crate::settings::Settings;
use crate::startup::{self, NotificationApp};
use clap::{Args, Parser, Subcommand};
use std::collections::HashSet;
use std::time::Duration;
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(
    name = "notification-service",
    about = "Emails patients about their appointments and accounts"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume appointment and account events and send emails (the default).
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
    /// Inspect and replay the dead-letter topic.
    #[command(subcommand)]
    Dlq(DlqCommand),
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// One JSON line per dead letter, oldest first, with its delivery status.
    List,
    /// One dead letter in full: headers and the original payload.
    Show {
        #[arg(long)]
        partition: i32,
        #[arg(long)]
        offset: i64,
    },
    /// Re-publish dead letters to their original topics, oldest first.
    Replay(ReplayArgs),
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false, id = "which")]
pub struct Which {
    /// Every dead letter.
    #[arg(long)]
    all: bool,
    /// Only these events (repeatable).
    #[arg(long = "event-id")]
    event_ids: Vec<Uuid>,
    /// An offset range `FROM-TO` (inclusive) of the partition given by --partition.
    #[arg(long, requires = "partition")]
    offsets: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    which: Which,
    /// DLQ partition for --offsets.
    #[arg(long)]
    partition: Option<i32>,
    /// Show what would be replayed; publish nothing.
    #[arg(long)]
    dry_run: bool,
    /// At most this many messages per second.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
}

impl ReplayArgs {
    fn selection(&self) -> anyhow::Result<Selection> {
        if self.which.all {
            return Ok(Selection::All);
        }
        if !self.which.event_ids.is_empty() {
            return Ok(Selection::EventIds(self.which.event_ids.clone()));
        }
        let (Some(range), Some(partition)) = (&self.which.offsets, self.partition) else {
            anyhow::bail!("choose --all, --event-id or --partition with --offsets");
        };
        let parsed = range
            .split_once('-')
            .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
        match parsed {
            Some((from, to)) if from <= to => Ok(Selection::Offsets {
                partition,
                from,
                to,
            }),
            _ => anyhow::bail!("--offsets must be FROM-TO with FROM <= TO, e.g. 10-20"),
        }
    }
}

use medbook_service_kit::cli::print_json_line as print_json;
use medbook_service_kit::runner::{Plan, Service};
use std::process::ExitCode;

const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The notification-service binary: its commands over the shared start-up
/// ([`medbook_service_kit::runner`]).
pub struct Binary;

impl Service for Binary {
    type Cli = Cli;
    type Command = Command;
    type Settings = Settings;

    fn plan(cli: Cli) -> Plan<Command> {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => Plan::Serve(Command::Serve),
            Command::CheckConfig => Plan::CheckConfig,
            Command::Healthcheck { timeout_ms } => Plan::Healthcheck { timeout_ms },
            command => Plan::Command(command),
        }
    }

    async fn run(command: Command, settings: Settings) -> anyhow::Result<ExitCode> {
        match command {
            Command::Serve => {
                let (app, stop) = NotificationApp::build(&settings).await?;
                tokio::spawn(async move {
                    let signal = medbook_service_kit::signals::wait_for_stop_signal().await;
                    tracing::info!(
                        signal,
                        "shutdown signal received; finishing the message in hand"
                    );
                    stop.stop();
                });
                app.run_until_stopped().await?;
            }
            Command::Migrate => {
                let db = settings.database.connect().await?;
                medbook_service_kit::startup::migrate(
                    &db,
                    crate::repository::MIGRATIONS,
                    crate::repository::MIGRATION_LOCK,
                )
                .await?;
            }
            Command::Dlq(cmd) => dlq_command(cmd, &settings).await?,
            Command::Healthcheck { .. } | Command::CheckConfig => {
                anyhow::bail!(
                    "healthcheck and check-config are answered by the runner, before start-up"
                )
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

async fn sent_events(
    settings: &Settings,
    ids: Vec<Uuid>,
) -> anyhow::Result<std::collections::HashMap<Uuid, crate::repository::deliveries::DeliveryRecord>>
{
    let db = startup::database(settings)?;
    PgDeliveryLog::new(db).lookup(ids).await
}

/// Adds what the delivery log says of the entry's event (`sent`, `sending`, `not_sent`).
fn with_delivery(entry: &mut serde_json::Value, status: &str) {
    if let Some(fields) = entry.as_object_mut() {
        fields.insert("delivery".into(), status.into());
    }
}

async fn dlq_command(cmd: DlqCommand, settings: &Settings) -> anyhow::Result<()> {
    let entries = dlq::read_all(&settings.kafka, READ_TIMEOUT).await?;
    let ids: Vec<Uuid> = entries.iter().filter_map(|e| e.event_id).collect();
    let records = sent_events(settings, ids).await?;
    let status = |id: Option<Uuid>| {
        id.and_then(|id| records.get(&id)).map_or("not_sent", |r| {
            if r.status == "sent" {
                "sent"
            } else {
                "sending"
            }
        })
    };
    match cmd {
        DlqCommand::List => {
            for e in &entries {
                let mut v = serde_json::to_value(e)?;
                with_delivery(&mut v, status(e.event_id));
                print_json(&v)?;
            }
            tracing::info!(count = entries.len(), "dead letters listed");
        }
        DlqCommand::Show { partition, offset } => {
            let Some(e) = entries
                .iter()
                .find(|e| e.partition == partition && e.offset == offset)
            else {
                anyhow::bail!("no dead letter at partition {partition}, offset {offset}");
            };
            let mut v = e.detail();
            with_delivery(&mut v, status(e.event_id));
            print_json(&v)?;
        }
        DlqCommand::Replay(args) => {
            let selection = args.selection()?;
            if args.rate.is_nan() || args.rate <= 0.0 {
                anyhow::bail!("--rate must be greater than 0");
            }
            let chosen: Vec<_> = entries
                .into_iter()
                .filter(|e| selection.matches(e))
                .collect();
            let sent: HashSet<Uuid> = records
                .iter()
                .filter(|(_, r)| r.status == "sent")
                .map(|(id, _)| *id)
                .collect();
            let mut failed = None;
            let n = dlq::replay(
                &settings.kafka,
                &chosen,
                &sent,
                args.dry_run,
                args.rate,
                |line| {
                    if let Err(e) = print_json(line) {
                        failed.get_or_insert(e);
                    }
                },
            )
            .await?;
            if let Some(e) = failed {
                return Err(e);
            }
            tracing::info!(
                selected = chosen.len(),
                replayed = n,
                dry_run = args.dry_run,
                "replay finished"
            );
        }
    }
    Ok(())
}
