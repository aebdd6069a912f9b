//! Entry point: the shared start-up ([`medbook_service_kit::runner`]) running this
//! service's commands ([`notification_service::cli`]).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    medbook_service_kit::runner::run::<notification_service::cli::Binary>().await
}
