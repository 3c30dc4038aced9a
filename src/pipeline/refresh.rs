//! Background refreshes of cached answers: a prefetch (a hit in the last tenth of an
//! answer's TTL) and the retry of a name served stale (once per [`RECHECK`] per entry).
//!
//! Both are a [`Forward`] with no client waiting: the same upstream exchange, answer checks
//! and cache store as a miss, run on the tokio runtime so that a UDP thread, which answers
//! hits inline, never waits for one. The cache marks the entry before a refresh is asked
//! for, so a burst of hits asks once. At most [`MAX_REFRESHES`] run at once; past that a
//! refresh is skipped (the entry then expires and is fetched as a miss).
//!
//! [`RECHECK`]: super::cache::RECHECK

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::Forward;

/// Most background refreshes in flight at once.
pub const MAX_REFRESHES: usize = 64;

/// Starts background refreshes on a runtime.
#[derive(Debug, Default)]
pub struct Refresher {
    /// Where refreshes run; `None` (a pipeline built outside a runtime, in unit tests):
    /// none run.
    rt: Option<tokio::runtime::Handle>,
    in_flight: Arc<AtomicUsize>,
}

/// One refresh in flight, counted until dropped.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Refresher {
    /// Refreshes on `rt`.
    pub fn new(rt: Option<tokio::runtime::Handle>) -> Self {
        Self {
            rt,
            in_flight: Arc::default(),
        }
    }

    /// Runs `f`'s upstream exchange in the background and caches what passes the answer
    /// checks. False when it was not started (no runtime, or too many in flight).
    pub fn start(&self, f: Box<Forward>) -> bool {
        let Some(rt) = &self.rt else { return false };
        if self.in_flight.fetch_add(1, Ordering::Relaxed) >= MAX_REFRESHES {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        let guard = InFlight(Arc::clone(&self.in_flight));
        rt.spawn(async move {
            let _guard = guard;
            let got = {
                let arrived = tokio::time::Instant::now();
                f.upstream().forward(f.query(), arrived).await
            };
            f.refresh(got);
        });
        true
    }

    /// Refreshes running now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}
