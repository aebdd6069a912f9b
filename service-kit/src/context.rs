//! The request a piece of work belongs to, without passing it through every call: who
//! asked (the actor), through which door (the source: HTTP, gRPC, the CLI, a system
//! job) and under which request id. The transport layers run each request inside
//! [`with_context`] (and narrow it with [`with_actor`] once the caller is known);
//! [`current`] reads it anywhere below, including inside [`crate::blocking::run`] (the
//! database thread), so a repository can store it with the outbox and audit rows its
//! transaction writes.

use std::cell::RefCell;
use std::future::Future;

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A signed-in user: its id and role name.
    User { id: String, role: String },
    /// A named system job (the CLI, the reminder scheduler, ...).
    System(String),
}

/// What the current work is part of.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    pub request_id: Option<String>,
    pub actor: Option<Actor>,
    /// `http`, `grpc`, `cli`, `scheduler`.
    pub source: Option<&'static str>,
}

tokio::task_local! {
    static CONTEXT: Context;
}

thread_local! {
    /// Set while a blocking task runs on behalf of a request.
    static BLOCKING_CONTEXT: RefCell<Option<Context>> = const { RefCell::new(None) };
}

/// Runs `fut` within `context`.
pub async fn with_context<F: Future>(context: Context, fut: F) -> F::Output {
    CONTEXT.scope(context, fut).await
}

/// Runs `fut` as part of HTTP request `id`.
pub async fn with_request_id<F: Future>(id: String, fut: F) -> F::Output {
    let context = Context {
        request_id: Some(id),
        source: current().source.or(Some("http")),
        ..current()
    };
    with_context(context, fut).await
}

/// Runs `fut` on behalf of `actor`, keeping the rest of the current context.
pub async fn with_actor<F: Future>(actor: Actor, fut: F) -> F::Output {
    let context = Context {
        actor: Some(actor),
        ..current()
    };
    with_context(context, fut).await
}

/// The current context (empty outside any).
pub fn current() -> Context {
    CONTEXT
        .try_with(Clone::clone)
        .ok()
        .or_else(|| BLOCKING_CONTEXT.with(|c| c.borrow().clone()))
        .unwrap_or_default()
}

/// The current request's id, when there is one.
pub fn request_id() -> Option<String> {
    current().request_id
}

/// Runs `f` (on a blocking thread) within `context`.
pub(crate) fn in_blocking<T>(context: Context, f: impl FnOnce() -> T) -> T {
    struct Reset(Option<Context>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let previous = self.0.take();
            BLOCKING_CONTEXT.with(|slot| *slot.borrow_mut() = previous);
        }
    }
    let previous = BLOCKING_CONTEXT.with(|slot| slot.replace(Some(context)));
    let _reset = Reset(previous);
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_context_reaches_blocking_work() {
        assert_eq!(request_id(), None);
        let seen = with_request_id("req-42".into(), async {
            with_actor(
                Actor::User {
                    id: "u1".into(),
                    role: "admin".into(),
                },
                async { crate::blocking::run(current).await.unwrap() },
            )
            .await
        })
        .await;
        assert_eq!(seen.request_id.as_deref(), Some("req-42"));
        assert_eq!(seen.source, Some("http"));
        assert_eq!(
            seen.actor,
            Some(Actor::User {
                id: "u1".into(),
                role: "admin".into()
            })
        );
        // And does not stay behind on the blocking thread.
        assert_eq!(
            crate::blocking::run(current).await.unwrap(),
            Context::default()
        );
    }

    #[tokio::test]
    async fn a_source_set_outside_is_kept() {
        let ctx = Context {
            source: Some("grpc"),
            ..Context::default()
        };
        let seen = with_context(ctx, with_request_id("r".into(), async { current() })).await;
        assert_eq!(seen.source, Some("grpc"));
    }
}
