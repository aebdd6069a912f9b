//! Entry point: parse the command line, load configuration, start telemetry, run.

use clap::Parser;
use medbook_shared::telemetry::LogOutput;
use notification_service::{cli, settings::Settings};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if matches!(cli.command, Some(cli::Command::CheckConfig)) {
        return cli::check_config();
    }
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("notification-service: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(code) = cli::probe_command(cli.command.as_ref(), &settings) {
        return code;
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
    match Settings::unknown_keys() {
        Ok(keys) => medbook_service_kit::probe::warn_unknown(&keys),
        Err(e) => tracing::warn!(error = %e, "could not list unknown configuration keys"),
    }
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
