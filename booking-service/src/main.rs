//! Entry point: parse the command line, load configuration, start telemetry, run.

use booking_service::{cli, settings::Settings};
use clap::Parser;
use medbook_service_kit::probe;
use medbook_shared::telemetry::LogOutput;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if matches!(cli.command, Some(cli::Command::Openapi)) {
        return match cli::print_openapi() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("booking-service: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if matches!(cli.command, Some(cli::Command::CheckConfig)) {
        return probe::check_config_command::<Settings>();
    }
    let (settings, unknown_keys) = match probe::load::<Settings>() {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("booking-service: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(cli::Command::Healthcheck { timeout_ms }) = cli.command {
        return probe::healthcheck_command(&settings, timeout_ms);
    }
    // The server logs to stdout; commands that print a result log to stderr.
    let output = match cli.command {
        None | Some(cli::Command::Serve) => LogOutput::Stdout,
        Some(_) => LogOutput::Stderr,
    };
    let telemetry = match medbook_shared::telemetry::init_traced(
        "booking-service",
        &settings.log.level,
        output,
        &settings.tracing,
    ) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("booking-service: tracing: {e:#}");
            return ExitCode::from(2);
        }
    };
    // A typo, or another service's setting, is ignored, but never silently.
    probe::warn_unknown(&unknown_keys);
    let code = match cli::run(cli, settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "booking-service failed");
            eprintln!("booking-service: {e:#}");
            ExitCode::FAILURE
        }
    };
    // Spans still queued (the last requests', the shutdown's) go out before exit.
    telemetry.shutdown().await;
    code
}
