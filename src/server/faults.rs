//! `Faults`: what went wrong inside the listeners, counted, so that no failure is silent.
//!
//! A panic while handling one packet or one connection is caught, logged at error level
//! with the client's address and counted in `panics`; the listener goes on. A listener
//! (a UDP thread's loop, a TCP accept loop) that ends for any reason is started again,
//! logged and counted in `restarts`.

use std::any::Any;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts of caught panics and listener restarts since start.
#[derive(Debug, Default)]
pub struct Faults {
    panics: AtomicU64,
    restarts: AtomicU64,
}

impl Faults {
    /// Panics caught while handling a packet, a connection or a forward.
    pub fn panics(&self) -> u64 {
        self.panics.load(Ordering::Relaxed)
    }

    /// Listener loops started again after they ended.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Logs and counts a panic caught while handling `what` for `client`.
    pub(crate) fn panicked(&self, what: &str, client: Option<SocketAddr>, payload: &dyn Any) {
        self.panics.fetch_add(1, Ordering::Relaxed);
        let client = client.map_or_else(|| "-".to_string(), |c| c.to_string());
        tracing::error!(
            %client,
            panic = panic_text(payload),
            "panic while handling {what}; the listener goes on"
        );
    }

    /// Logs and counts a listener loop that ended and is started again.
    pub(crate) fn restarted(&self, listener: &str, why: &str) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
        tracing::error!(listener, why, "listener ended; restarting it");
    }
}

/// The message of a panic payload (`panic!` with a literal or a formatted string).
pub(crate) fn panic_text(payload: &dyn Any) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

/// Logs and counts a panic of the task that owns it: dropped while unwinding, it reports
/// the panic (tokio catches a task's panic and would otherwise say nothing).
pub(crate) struct PanicWatch {
    /// What the task was doing.
    pub(crate) what: &'static str,
    /// The client it was doing it for.
    pub(crate) client: SocketAddr,
    /// Where to count.
    pub(crate) faults: Arc<Faults>,
}

impl Drop for PanicWatch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.faults.panicked(
                self.what,
                Some(self.client),
                &"(see the panic message above)",
            );
        }
    }
}
