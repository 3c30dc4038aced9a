//! `Cuts`: the zone cuts a walk found (a zone's name and its servers' addresses), kept
//! until their NS records' TTL ends, so that the next name under a known zone is asked of
//! that zone's servers at once. The root's servers (the hints) never expire.
//!
//! Bounded by [`super::RECURSOR_ZONE_CUTS`]: when full, the expired cuts go, and if none
//! had, an eighth of the others (the walks that follow find them again from above).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hickory_resolver::proto::rr::Name;

/// The longest a cut is kept, whatever its TTL says.
pub(super) const MAX_CUT_TTL: Duration = Duration::from_secs(86_400);

/// One zone's servers.
#[derive(Debug)]
pub(super) struct Cut {
    /// The zone.
    pub zone: Name,
    /// Its servers' addresses (port 53), IPv4 first.
    pub servers: Box<[SocketAddr]>,
    /// The server that answered last: asked first next time.
    preferred: AtomicUsize,
    /// When the cut is forgotten; `None` for the root's.
    expires: Option<Instant>,
}

impl Cut {
    /// The cut of `zone` at `servers`, until `expires`.
    pub(super) fn new(zone: Name, servers: Vec<SocketAddr>, expires: Option<Instant>) -> Self {
        let mut servers = servers;
        servers.sort_by_key(|a| a.is_ipv6());
        servers.dedup();
        Self {
            zone,
            servers: servers.into_boxed_slice(),
            preferred: AtomicUsize::new(0),
            expires,
        }
    }

    /// The servers in the order to ask them: the one that answered last first.
    pub(super) fn order(&self) -> impl Iterator<Item = (usize, SocketAddr)> + '_ {
        let n = self.servers.len();
        let first = self.preferred.load(Ordering::Relaxed) % n.max(1);
        (0..n).filter_map(move |i| {
            let at = (first + i) % n;
            self.servers.get(at).map(|a| (at, *a))
        })
    }

    /// Notes that the server at `index` answered.
    pub(super) fn answered(&self, index: usize) {
        self.preferred.store(index, Ordering::Relaxed);
    }

    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|e| now < e)
    }
}

/// The cuts known, by zone name (lower case).
#[derive(Debug)]
pub(super) struct Cuts {
    root: Arc<Cut>,
    known: HashMap<Name, Arc<Cut>>,
    capacity: usize,
}

impl Cuts {
    /// No cuts but the root's, at `roots`; at most `capacity` others.
    pub(super) fn new(roots: Vec<SocketAddr>, capacity: usize) -> Self {
        Self {
            root: Arc::new(Cut::new(Name::root(), roots, None)),
            known: HashMap::new(),
            capacity,
        }
    }

    /// The deepest live cut at or above `name` (strictly above when `above`, as a DS
    /// record is asked of the parent's side of a cut).
    pub(super) fn closest(&self, name: &Name, above: bool, now: Instant) -> Arc<Cut> {
        let labels = usize::from(name.num_labels());
        let deepest = if above {
            labels.saturating_sub(1)
        } else {
            labels
        };
        for n in (1..=deepest).rev() {
            if let Some(c) = self.known.get(&name.trim_to(n))
                && c.live(now)
            {
                return Arc::clone(c);
            }
        }
        Arc::clone(&self.root)
    }

    /// Keeps `cut` (replacing what was known of its zone). When full, the expired cuts
    /// go, and if that is not enough, an eighth of the others, whichever the table holds
    /// first (its order is random: a zone that delegates every name cannot empty it for
    /// the rest).
    pub(super) fn insert(&mut self, cut: Arc<Cut>, now: Instant) {
        if cut.zone.is_root() {
            return;
        }
        if self.known.len() >= self.capacity && !self.known.contains_key(&cut.zone) {
            self.known.retain(|_, c| c.live(now));
            if self.known.len() >= self.capacity {
                let drop: Vec<Name> = self
                    .known
                    .keys()
                    .take((self.capacity / 8).max(1))
                    .cloned()
                    .collect();
                for z in drop {
                    self.known.remove(&z);
                }
            }
        }
        self.known.insert(cut.zone.clone(), cut);
    }

    /// Forgets `cut`, unless its zone is known anew since (or it is the root's).
    pub(super) fn forget(&mut self, cut: &Cut) {
        if self
            .known
            .get(&cut.zone)
            .is_some_and(|c| std::ptr::eq(Arc::as_ptr(c), cut))
        {
            self.known.remove(&cut.zone);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn n(s: &str) -> Name {
        Name::from_str(s).unwrap()
    }

    fn at(last: u8) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, last], 53))
    }

    #[test]
    fn the_deepest_live_cut_is_found_and_ds_asks_above() {
        let t0 = Instant::now();
        let mut cuts = Cuts::new(vec![at(1)], 8);
        let later = Some(t0 + Duration::from_secs(60));
        cuts.insert(Arc::new(Cut::new(n("test."), vec![at(2)], later)), t0);
        cuts.insert(
            Arc::new(Cut::new(n("example.test."), vec![at(3)], later)),
            t0,
        );
        assert_eq!(
            cuts.closest(&n("www.example.test."), false, t0).zone,
            n("example.test.")
        );
        assert_eq!(
            cuts.closest(&n("example.test."), false, t0).zone,
            n("example.test.")
        );
        assert_eq!(cuts.closest(&n("example.test."), true, t0).zone, n("test."));
        assert_eq!(cuts.closest(&n("other."), false, t0).zone, Name::root());
        let t1 = t0 + Duration::from_secs(61);
        assert!(
            cuts.closest(&n("www.example.test."), false, t1)
                .zone
                .is_root(),
            "expired"
        );
    }

    #[test]
    fn a_full_table_drops_the_expired_then_an_eighth() {
        let t0 = Instant::now();
        let mut cuts = Cuts::new(vec![at(1)], 2);
        let soon = Some(t0 + Duration::from_secs(1));
        let later = Some(t0 + Duration::from_secs(60));
        cuts.insert(Arc::new(Cut::new(n("a."), vec![at(2)], soon)), t0);
        cuts.insert(Arc::new(Cut::new(n("b."), vec![at(3)], later)), t0);
        let t1 = t0 + Duration::from_secs(2);
        cuts.insert(Arc::new(Cut::new(n("c."), vec![at(4)], later)), t1);
        assert_eq!(cuts.known.len(), 2);
        assert_eq!(cuts.closest(&n("x.b."), false, t1).zone, n("b."));
        cuts.insert(Arc::new(Cut::new(n("d."), vec![at(5)], later)), t1);
        assert_eq!(cuts.known.len(), 2, "none expired: one dropped, d. kept");
        assert_eq!(cuts.closest(&n("x.d."), false, t1).zone, n("d."));
    }

    #[test]
    fn a_cut_whose_servers_failed_is_forgotten_unless_renewed() {
        let t0 = Instant::now();
        let mut cuts = Cuts::new(vec![at(1)], 8);
        let later = Some(t0 + Duration::from_secs(60));
        let old = Arc::new(Cut::new(n("a."), vec![at(2)], later));
        cuts.insert(Arc::clone(&old), t0);
        let new = Arc::new(Cut::new(n("a."), vec![at(3)], later));
        cuts.insert(Arc::clone(&new), t0);
        cuts.forget(&old);
        assert_eq!(cuts.closest(&n("x.a."), false, t0).servers[..], [at(3)]);
        cuts.forget(&new);
        assert!(cuts.closest(&n("x.a."), false, t0).zone.is_root());
    }

    #[test]
    fn the_server_that_answered_is_asked_first() {
        let c = Cut::new(
            n("z."),
            vec![SocketAddr::from(([0u16; 8], 53)), at(1), at(2)],
            None,
        );
        let order: Vec<_> = c.order().map(|(_, a)| a).collect();
        assert_eq!(order[0], at(1), "IPv4 first");
        assert!(order[2].is_ipv6());
        c.answered(1);
        let order: Vec<_> = c.order().map(|(_, a)| a).collect();
        assert_eq!(order, vec![at(2), order[1], at(1)]);
    }
}
