//! `Upstreams`: which servers a forwarded name goes to. The main `[upstream]` set, and one
//! set per `[[forward]]` rule for the names under its domains (conditional forwarding: the
//! company's own domain to its internal DNS). The most specific domain wins; a name under
//! no rule goes to the main set. Swapped whole by a reload, like the sets it holds.

use super::upstream::Upstream;
use crate::config::Config;
use crate::counters::Counters;

/// Every upstream set, and which names go where.
#[derive(Debug)]
pub struct Upstreams {
    main: Upstream,
    /// (domain, its set), the longest domains first, so that the first match is the most
    /// specific.
    zones: Vec<(String, Upstream)>,
}

impl Upstreams {
    /// The sets of `cfg` (`[upstream]` and `[[forward]]`); each server counts into
    /// `counters`. Opens nothing.
    pub fn new(cfg: &Config, counters: &Counters) -> Self {
        Self::renew(cfg, counters, None)
    }

    /// As [`Upstreams::new`], keeping `prev`'s recursive resolver when its config is
    /// unchanged (a reload does not empty its cache of delegations).
    pub fn renew(cfg: &Config, counters: &Counters, prev: Option<&Self>) -> Self {
        let mut zones = Vec::new();
        for rule in &cfg.forward {
            let set = Upstream::new(&rule.upstream, &cfg.cache, counters);
            for d in &rule.domains {
                zones.push((d.clone(), set.clone()));
            }
        }
        zones.sort_by_key(|(d, _)| std::cmp::Reverse(d.len()));
        Self {
            main: Upstream::renew(&cfg.upstream, &cfg.cache, counters, prev.map(|p| &p.main)),
            zones,
        }
    }

    /// The set that answers `name` (lower case, dotted, as the query has it).
    pub fn for_name(&self, name: &[u8]) -> &Upstream {
        self.zones
            .iter()
            .find(|(d, _)| under(name, d.as_bytes()))
            .map_or(&self.main, |(_, set)| set)
    }
}

/// True when `name` is `domain` or a name below it.
fn under(name: &[u8], domain: &[u8]) -> bool {
    match name.len().checked_sub(domain.len()) {
        Some(0) => name == domain,
        Some(n) => name.ends_with(domain) && name.get(n - 1) == Some(&b'.'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn names_go_to_the_most_specific_rule() {
        let cfg = Config::parse(
            "[upstream]\nservers = [\"192.0.2.1:53\"]\n\
             [[forward]]\ndomains = [\"corp.test\"]\nservers = [\"10.0.0.1:53\"]\n\
             [[forward]]\ndomains = [\"lab.corp.test\", \"10.in-addr.arpa\"]\nservers = [\"10.0.0.2:53\"]\n",
            "t.toml",
            None,
        )
        .unwrap();
        let u = Upstreams::new(&cfg, &Counters::new());
        let first = |name: &str| u.for_name(name.as_bytes()).servers()[0].to_string();
        assert_eq!(first("www.example.com"), "192.0.2.1:53");
        assert_eq!(first("corp.test"), "10.0.0.1:53");
        assert_eq!(first("intranet.corp.test"), "10.0.0.1:53");
        assert_eq!(first("pc1.lab.corp.test"), "10.0.0.2:53");
        assert_eq!(first("5.0.0.10.in-addr.arpa"), "10.0.0.2:53");
        assert_eq!(
            first("notcorp.test"),
            "192.0.2.1:53",
            "label boundaries count"
        );
        assert_eq!(first("test"), "192.0.2.1:53");
    }

    #[test]
    fn recursive_mode_keeps_its_resolver_across_reloads_that_leave_it_alone() {
        let cfg = |extra: &str| {
            Config::parse(
                &format!("[upstream]\nmode = \"recursive\"\n{extra}[[forward]]\ndomains = [\"corp.test\"]\nservers = [\"10.0.0.1:53\"]\n"),
                "t.toml",
                None,
            )
            .unwrap()
        };
        let counters = Counters::new();
        let u = Upstreams::new(&cfg(""), &counters);
        let main = u.for_name(b"www.example.com");
        assert!(main.is_recursive() && main.servers().is_empty());
        assert!(
            !u.for_name(b"pc.corp.test").is_recursive(),
            "forward zones still forward"
        );
        let kept = Upstreams::renew(&cfg(""), &counters, Some(&u));
        let same = |a: &Upstreams, b: &Upstreams| {
            let r = |x: &Upstreams| x.main.recursive().map(Arc::as_ptr);
            r(a).is_some() && r(a) == r(b)
        };
        assert!(
            same(&u, &kept),
            "unchanged: the same resolver and its cache"
        );
        let changed = Upstreams::renew(&cfg("recursion_timeout_ms = 900\n"), &counters, Some(&u));
        assert!(!same(&u, &changed));
        let fwd = Config::parse("", "t.toml", None).unwrap();
        assert!(
            !Upstreams::renew(&fwd, &counters, Some(&u))
                .main
                .is_recursive()
        );
    }
}
