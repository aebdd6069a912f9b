//! Entry point: the shared start-up ([`medbook_service_kit::runner`]) running this
//! service's commands ([`booking_service::cli`]).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    medbook_service_kit::runner::run::<booking_service::cli::Binary>().await
}
