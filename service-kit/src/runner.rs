//! The start-up of every service binary, written once: parse the command line, answer
//! the commands that need no configuration or only a look at it (`check-config`,
//! `healthcheck`), read the configuration, start telemetry, run the command, report its
//! error and flush the spans. A service says which of its commands is which
//! ([`Service::plan`]) and runs the rest ([`Service::run`]); its `main` is
//! `runner::run::<cli::Binary>().await`.
//!
//! Exit statuses, the same for every service: 2 when the configuration cannot be read
//! or is invalid (or tracing cannot start), 1 when the command fails, otherwise what
//! the command returns. Errors go to stderr as `<service>: <error>`.
//!
//! Stop signals stay with the service's `serve`: each stops its own kind of server
//! (drain the requests, finish the message in hand), and installs its handlers only
//! once there is something to stop, so a signal during start-up still ends the process
//! at once.

use crate::probe::{self, ServiceConfig};
use medbook_shared::telemetry::{self, LogOutput};
use std::future::Future;
use std::process::ExitCode;

/// A command that needs no configuration: it runs even where none is set.
pub type Standalone = Box<dyn FnOnce() -> anyhow::Result<ExitCode>>;

/// What start-up does with the parsed command line.
pub enum Plan<C> {
    /// The long-running service: its logs are its output (stdout).
    Serve(C),
    /// A command that reads the configuration and prints its result on stdout: logs
    /// go to stderr, so stdout stays its result alone.
    Command(C),
    /// A command that needs no configuration (`openapi`, `keygen`), run before it is
    /// read; only warnings are logged, to stderr.
    Standalone(Standalone),
    /// `check-config`: reports the configuration, invalid or not ([`probe::check_config_command`]).
    CheckConfig,
    /// `healthcheck`: asks the running process, from the settings alone, before
    /// telemetry starts ([`probe::healthcheck_command`]).
    Healthcheck { timeout_ms: u64 },
}

/// A service binary: its command line, its settings and how it runs its commands.
/// Its name is its settings' [`ServiceConfig::SERVICE`].
pub trait Service {
    /// The parsed command line.
    type Cli: clap::Parser;
    /// The commands [`Self::run`] runs.
    type Command;
    type Settings: ServiceConfig;

    /// Which kind of command the command line asks for.
    fn plan(cli: Self::Cli) -> Plan<Self::Command>;
    /// Runs a [`Plan::Serve`] or [`Plan::Command`] command with the checked settings,
    /// telemetry up. An error is reported by [`run`] (exit status 1).
    fn run(
        command: Self::Command,
        settings: Self::Settings,
    ) -> impl Future<Output = anyhow::Result<ExitCode>>;
}

/// The whole life of the process; `main` returns its exit status.
pub async fn run<S: Service>() -> ExitCode {
    let name = <S::Settings as ServiceConfig>::SERVICE;
    let (command, output) = match S::plan(clap::Parser::parse()) {
        Plan::Standalone(command) => {
            telemetry::init(name, "warn", LogOutput::Stderr);
            return command().unwrap_or_else(|e| {
                eprintln!("{name}: {e:#}");
                ExitCode::FAILURE
            });
        }
        Plan::CheckConfig => return probe::check_config_command::<S::Settings>(),
        Plan::Healthcheck { timeout_ms } => {
            return match probe::load::<S::Settings>() {
                Ok((settings, _)) => probe::healthcheck_command(&settings, timeout_ms),
                Err(e) => config_error(name, &e),
            };
        }
        Plan::Serve(command) => (command, LogOutput::Stdout),
        Plan::Command(command) => (command, LogOutput::Stderr),
    };
    let (settings, unknown_keys) = match probe::load::<S::Settings>() {
        Ok(loaded) => loaded,
        Err(e) => return config_error(name, &e),
    };
    let telemetry =
        match telemetry::init_traced(name, settings.log_level(), output, settings.tracing()) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{name}: tracing: {e:#}");
                return ExitCode::from(2);
            }
        };
    // A typo, or another service's setting, is ignored, but never silently.
    probe::warn_unknown(&unknown_keys);
    let code = match S::run(command, settings).await {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "{name} failed");
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    };
    // Spans still queued (the last requests', the shutdown's) go out before exit.
    telemetry.shutdown().await;
    code
}

/// The configuration cannot be read or is invalid: nothing was started.
fn config_error(name: &str, e: &impl std::fmt::Display) -> ExitCode {
    eprintln!("{name}: {e}");
    ExitCode::from(2)
}
