//! The request a piece of work belongs to, without passing it through every call: who
//! asked (the actor), through which door (the source: HTTP, gRPC, the CLI, a system
//! job) and under which request id. The transport layers run each request inside
//! [`with_context`] (and narrow it with [`with_actor`] once the caller is known);
//! [`current`] reads it anywhere below, including inside [`crate::blocking::run`] (the
//! database thread), so a repository can store it with the outbox and audit rows its
//! transaction writes.

use std::cell::RefCell;
use std::future::Future;
use std::sync::{Arc, OnceLock};

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
    /// Who the work is done for, when the transport named it up front (gRPC, the CLI,
    /// a system job). See [`Context::acting`] for the actor in effect.
    pub actor: Option<Actor>,
    /// `http`, `grpc`, `cli`, `scheduler`.
    pub source: Option<&'static str>,
    /// The caller the request authenticated, filled by [`authenticated`] wherever the
    /// token is checked (the access middleware or a handler's extractor alike).
    pub caller: CallerSlot,
}

impl Context {
    /// The actor in effect: the one named up front, else the authenticated caller.
    pub fn acting(&self) -> Option<Actor> {
        self.actor.clone().or_else(|| self.caller.get())
    }
}

/// The authenticated caller of one request, set once by whichever part of the request
/// checks its token first. Shared by every clone of the request's context, so a
/// caller authenticated below the transport's entry still reaches the records the
/// request writes.
#[derive(Debug, Clone, Default)]
pub struct CallerSlot(Option<Arc<OnceLock<Actor>>>);

impl CallerSlot {
    /// A slot for a new request.
    pub fn new() -> Self {
        Self(Some(Arc::new(OnceLock::new())))
    }

    pub fn get(&self) -> Option<Actor> {
        self.0.as_ref().and_then(|s| s.get().cloned())
    }
}

impl PartialEq for CallerSlot {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}
impl Eq for CallerSlot {}

/// Records the request's authenticated caller (the first one wins: a request has one
/// bearer token). Outside a request that has a slot this does nothing.
pub fn authenticated(actor: Actor) {
    if let Some(slot) = current().caller.0 {
        let _ = slot.set(actor);
    }
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

/// Runs `fut` as part of HTTP request `id`, with a fresh slot for its caller.
pub async fn with_request_id<F: Future>(id: String, fut: F) -> F::Output {
    let context = Context {
        request_id: Some(id),
        source: current().source.or(Some("http")),
        caller: CallerSlot::new(),
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
    async fn a_caller_authenticated_inside_the_request_is_its_actor() {
        let admin = Actor::User {
            id: "u1".into(),
            role: "admin".into(),
        };
        let seen = with_request_id("r".into(), async {
            assert_eq!(current().acting(), None);
            // Deep inside the request (an extractor), not around it.
            async { authenticated(admin.clone()) }.await;
            crate::blocking::run(|| current().acting()).await.unwrap()
        })
        .await;
        assert_eq!(seen, Some(admin.clone()));
        // Requests do not share a slot, and outside one nothing is recorded.
        authenticated(admin);
        assert_eq!(current().acting(), None);
        let next = with_request_id("r2".into(), async { current().acting() }).await;
        assert_eq!(next, None);
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
