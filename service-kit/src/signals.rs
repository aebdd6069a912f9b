//! Graceful shutdown: every service stops on SIGTERM (orchestrators) or SIGINT (Ctrl-C).

/// Waits for SIGTERM or SIGINT and returns its name. If the handlers cannot be
/// installed, logs it and never returns (the process can still be killed).
pub async fn wait_for_stop_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
