//! The one helper that runs blocking work (Diesel queries, bcrypt) on tokio's blocking
//! pool instead of the async executor, carrying the caller's tracing span and request
//! id (`context`) along.

/// Runs `f` on the blocking thread pool. A panic inside `f` becomes an error.
pub async fn run<T, F>(f: F) -> anyhow::Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let span = tracing::Span::current();
    let context = crate::context::current();
    tokio::task::spawn_blocking(move || span.in_scope(|| crate::context::in_blocking(context, f)))
        .await
        .map_err(|e| anyhow::anyhow!("blocking task failed: {e}"))
}
