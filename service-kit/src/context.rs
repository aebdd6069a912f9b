//! The request a piece of work belongs to, without passing it through every call: the
//! HTTP layer runs each request inside [`with_request_id`]; [`request_id`] reads it
//! anywhere below, including inside [`crate::blocking::run`] (the database thread), so a
//! repository can store it with the outbox row its transaction writes.

use std::cell::RefCell;
use std::future::Future;

tokio::task_local! {
    static REQUEST_ID: String;
}

thread_local! {
    /// Set while a blocking task runs on behalf of a request.
    static BLOCKING_REQUEST_ID: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `fut` as part of request `id`.
pub async fn with_request_id<F: Future>(id: String, fut: F) -> F::Output {
    REQUEST_ID.scope(id, fut).await
}

/// The current request's id, when there is one.
pub fn request_id() -> Option<String> {
    REQUEST_ID
        .try_with(Clone::clone)
        .ok()
        .or_else(|| BLOCKING_REQUEST_ID.with(|id| id.borrow().clone()))
}

/// Runs `f` (on a blocking thread) with `id` as the current request id.
pub(crate) fn in_blocking<T>(id: Option<String>, f: impl FnOnce() -> T) -> T {
    struct Reset(Option<String>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let previous = self.0.take();
            BLOCKING_REQUEST_ID.with(|slot| *slot.borrow_mut() = previous);
        }
    }
    let previous = BLOCKING_REQUEST_ID.with(|slot| slot.replace(id));
    let _reset = Reset(previous);
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_request_id_reaches_blocking_work() {
        assert_eq!(request_id(), None);
        let seen = with_request_id("req-42".into(), async {
            crate::blocking::run(request_id).await.unwrap()
        })
        .await;
        assert_eq!(seen.as_deref(), Some("req-42"));
        // And does not stay behind on the blocking thread.
        assert_eq!(crate::blocking::run(request_id).await.unwrap(), None);
    }
}
