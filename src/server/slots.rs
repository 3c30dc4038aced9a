//! `ClientSlots`: a count of what each client holds right now (TCP connections, forwards in
//! flight), with a limit per client and one for all clients together, so that one client's
//! flood takes its own slots only and never another client's.
//!
//! A slot is a guard: dropping it (also while unwinding from a panic) gives it back. The
//! map holds only clients that hold a slot, so it is bounded by the total limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Why a slot was not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// This client holds its limit already.
    Client,
    /// All clients together hold the total limit.
    Total,
}

impl Full {
    /// The `[server]` key whose limit was reached, for the warning that says so.
    pub fn limit_key(self) -> &'static str {
        match self {
            Self::Client => "tcp_max_per_client",
            Self::Total => "tcp_max_connections",
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

/// Per-client and total counts of held slots.
#[derive(Debug)]
pub struct ClientSlots {
    per_client: usize,
    total: usize,
    counts: Mutex<Counts>,
}

/// One held slot; given back on drop.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<ClientSlots>,
    client: IpAddr,
}

impl ClientSlots {
    /// Slots with at most `per_client` per client address and `total` in all (each at least 1).
    pub fn new(per_client: usize, total: usize) -> Arc<Self> {
        Arc::new(Self {
            per_client: per_client.max(1),
            total: total.max(1),
            counts: Mutex::new(Counts::default()),
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // A panic while holding this lock cannot leave the counts half-updated (each update
        // is one step), so a poisoned lock is still good.
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot for `client`, or says which limit is reached.
    pub fn try_take(self: &Arc<Self>, client: IpAddr) -> Result<Slot, Full> {
        let mut c = self.counts();
        if c.total >= self.total {
            return Err(Full::Total);
        }
        let n = c.by_client.entry(client).or_insert(0);
        if *n >= self.per_client {
            return Err(Full::Client);
        }
        *n += 1;
        c.total += 1;
        Ok(Slot {
            slots: Arc::clone(self),
            client,
        })
    }

    /// Slots held by all clients together.
    pub fn held(&self) -> usize {
        self.counts().total
    }

    /// Slots held by `client`.
    pub fn held_by(&self, client: IpAddr) -> usize {
        self.counts().by_client.get(&client).copied().unwrap_or(0)
    }

    /// The total limit.
    pub fn limit(&self) -> usize {
        self.total
    }

    /// The limit per client.
    pub fn per_client(&self) -> usize {
        self.per_client
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.slots.counts();
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.by_client.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.by_client.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_client_cannot_take_another_clients_slots() {
        let s = ClientSlots::new(2, 3);
        let a1 = s.try_take(ip("10.0.0.1")).unwrap();
        let _a2 = s.try_take(ip("10.0.0.1")).unwrap();
        assert_eq!(s.try_take(ip("10.0.0.1")).unwrap_err(), Full::Client);
        let _b1 = s.try_take(ip("10.0.0.2")).unwrap();
        assert_eq!(s.try_take(ip("10.0.0.3")).unwrap_err(), Full::Total);
        assert_eq!(s.held(), 3);
        drop(a1);
        assert_eq!(s.held_by(ip("10.0.0.1")), 1);
        assert!(s.try_take(ip("10.0.0.3")).is_ok());
    }

    #[test]
    fn released_clients_leave_the_map() {
        let s = ClientSlots::new(4, 100);
        let slots: Vec<_> = (0..50)
            .map(|i| s.try_take(IpAddr::from([10, 0, 0, i])).unwrap())
            .collect();
        assert_eq!(s.held(), 50);
        drop(slots);
        assert_eq!(s.held(), 0);
        assert!(s.counts().by_client.is_empty());
    }

    #[test]
    fn a_slot_is_given_back_when_its_holder_panics() {
        let s = ClientSlots::new(1, 1);
        let s2 = Arc::clone(&s);
        let r = std::panic::catch_unwind(move || {
            let _slot = s2.try_take(ip("10.0.0.1")).unwrap();
            panic!("holder dies");
        });
        assert!(r.is_err());
        assert_eq!(s.held(), 0);
    }
}
