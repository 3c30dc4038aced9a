//! Reverse names: the reverse zones of private and special-purpose address ranges, which
//! are answered here and never asked of a public resolver, and the reverse name of an
//! address (for the PTR records that local addresses get automatically).
//!
//! The list is IANA's registry of locally served zones (RFC 6303 §4, plus RFC 7793's
//! 100.64.0.0/10), and `c.f.ip6.arpa` so that all of fc00::/7 is covered, as unbound does.

use std::fmt::Write as _;
use std::net::IpAddr;

/// The private and special-purpose reverse zones, with the range each one covers (for the
/// docs and `config check`).
pub const PRIVATE_ZONES: &[(&str, &str)] = &[
    ("0.in-addr.arpa", "0.0.0.0/8 (this network)"),
    ("10.in-addr.arpa", "10.0.0.0/8 (RFC 1918)"),
    ("127.in-addr.arpa", "127.0.0.0/8 (loopback)"),
    ("254.169.in-addr.arpa", "169.254.0.0/16 (link-local)"),
    ("16.172.in-addr.arpa", "172.16.0.0/12 (RFC 1918)"),
    ("17.172.in-addr.arpa", "172.16.0.0/12 (RFC 1918)"),
    ("18.172.in-addr.arpa", "172.16.0.0/12 (RFC 1918)"),
    ("19.172.in-addr.arpa", "172.16.0.0/12 (RFC 1918)"),
    ("20.172.in-addr.arpa", "172.16.0.0/12 (RFC 1918)"),
    ("21.172.in-addr.arpa", "172.16.0.0/12 (RFC 1918)"),
    ("22.172.in-addr.arpa", "172.16.0.0/12 (RFC 1918)"),
    ("23.172.in-addr.arpa", "172.16.0.0/12 (RFC 1918)"),
    ("24.172.in-addr.arpa", "172.16.0.0/12 (RFC 1918)"),
    ("25.172.in-addr.arpa", "172.16.0.0/12 (RFC 1918)"),
    ("26.172.in-addr.arpa", "172.16.0.0/12 (RFC 1918)"),
    ("27.172.in-addr.arpa", "172.16.0.0/12 (RFC 1918)"),
    ("28.172.in-addr.arpa", "172.16.0.0/12 (RFC 1918)"),
    ("29.172.in-addr.arpa", "172.16.0.0/12 (RFC 1918)"),
    ("30.172.in-addr.arpa", "172.16.0.0/12 (RFC 1918)"),
    ("31.172.in-addr.arpa", "172.16.0.0/12 (RFC 1918)"),
    ("168.192.in-addr.arpa", "192.168.0.0/16 (RFC 1918)"),
    ("2.0.192.in-addr.arpa", "192.0.2.0/24 (documentation)"),
    ("100.51.198.in-addr.arpa", "198.51.100.0/24 (documentation)"),
    ("113.0.203.in-addr.arpa", "203.0.113.0/24 (documentation)"),
    (
        "255.255.255.255.in-addr.arpa",
        "255.255.255.255 (broadcast)",
    ),
    (
        "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa",
        ":: (unspecified)",
    ),
    (
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa",
        "::1 (loopback)",
    ),
    ("c.f.ip6.arpa", "fc00::/8 (unique local)"),
    ("d.f.ip6.arpa", "fd00::/8 (unique local)"),
    ("8.e.f.ip6.arpa", "fe80::/10 (link-local)"),
    ("9.e.f.ip6.arpa", "fe80::/10 (link-local)"),
    ("a.e.f.ip6.arpa", "fe80::/10 (link-local)"),
    ("b.e.f.ip6.arpa", "fe80::/10 (link-local)"),
    ("8.b.d.0.1.0.0.2.ip6.arpa", "2001:db8::/32 (documentation)"),
];

/// The 100.64.0.0/10 zones (shared address space, RFC 6598 and RFC 7793): 64 to 127.
pub fn shared_zones() -> impl Iterator<Item = String> {
    (64..128).map(|b| format!("{b}.100.in-addr.arpa"))
}

/// Every private reverse zone, as names.
pub fn private_zones() -> impl Iterator<Item = String> {
    PRIVATE_ZONES
        .iter()
        .map(|(z, _)| (*z).to_string())
        .chain(shared_zones())
}

/// The reverse name of an address: `10.1.168.192.in-addr.arpa`, or 32 nibbles then
/// `ip6.arpa`.
pub fn reverse_name(ip: IpAddr) -> String {
    let mut s = String::with_capacity(72);
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            let _ = write!(s, "{d}.{c}.{b}.{a}.in-addr.arpa");
        }
        IpAddr::V6(v6) => {
            for byte in v6.octets().iter().rev() {
                let _ = write!(s, "{:x}.{:x}.", byte & 0x0f, byte >> 4);
            }
            s.push_str("ip6.arpa");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names_of_both_families() {
        assert_eq!(
            reverse_name("192.168.1.10".parse().unwrap()),
            "10.1.168.192.in-addr.arpa"
        );
        assert_eq!(
            reverse_name("fd00::1".parse().unwrap()),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa"
        );
        assert_eq!(
            reverse_name("::1".parse().unwrap()),
            PRIVATE_ZONES
                .iter()
                .find(|(_, r)| r.starts_with("::1"))
                .unwrap()
                .0
        );
    }

    #[test]
    fn the_zones_cover_the_private_ranges() {
        let zones: Vec<String> = private_zones().collect();
        let covered = |ip: &str| {
            let r = reverse_name(ip.parse().unwrap());
            zones
                .iter()
                .any(|z| r == *z || r.ends_with(&format!(".{z}")))
        };
        for ip in [
            "10.9.8.7",
            "172.16.0.1",
            "172.31.255.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.3.4",
            "100.64.0.1",
            "100.127.255.254",
            "0.1.2.3",
            "fd12::1",
            "fc00::1",
            "fe80::1",
            "febf::1",
            "::1",
            "::",
            "2001:db8::5",
        ] {
            assert!(covered(ip), "{ip}");
        }
        for ip in [
            "172.32.0.1",
            "100.128.0.1",
            "8.8.8.8",
            "2001:4860::8888",
            "fec0::1",
        ] {
            assert!(!covered(ip), "{ip}");
        }
    }
}
