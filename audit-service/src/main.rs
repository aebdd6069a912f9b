//! Entry point: the shared start-up ([`medbook_service_kit::runner`]) running this
//! service's commands ([`audit_service::cli`]).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    medbook_service_kit::runner::run::<audit_service::cli::Binary>().await
}
