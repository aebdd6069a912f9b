//! Entry point: parse the command line, load configuration, start telemetry, run.

use clap::Parser;
use medbook_service_kit::probe;
use medbook_shared::telemetry::LogOutput;
use notification_service::{cli, settings::Settings};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if matches!(cli.command, Some(cli::Command::CheckConfig)) {
        return probe::check_config_command::<Settings>();
    }
    let (settings, unknown_keys) = match probe::load::<Settings>() {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("notification-service: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(cli::Command::Healthcheck { timeout_ms }) = cli.command {
        return probe::healthcheck_command(&settings, timeout_ms);
    }
    // The service logs to stdout; commands that print a result log to stderr.
    let output = match cli.command {
        None | Some(cli::Command::Serve) => LogOutput::Stdout,
        Some(_) => LogOutput::Stderr,
    };
    let telemetry = match medbook_shared::telemetry::init_traced(
        "notification-service",
        &settings.log.level,
        output,
        &settings.tracing,
    ) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("notification-service: tracing: {e:#}");
            return ExitCode::from(2);
        }
    };
    // A typo, or another service's setting, is ignored, but never silently.
    probe::warn_unknown(&unknown_keys);
    let code = match cli::run(cli, settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "notification-service failed");
            eprintln!("notification-service: {e:#}");
            ExitCode::FAILURE
        }
    };
    // Spans still queued (the last requests', the shutdown's) go out before exit.
    telemetry.shutdown().await;
    code
}
