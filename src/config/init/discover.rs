//! What this machine's network looks like, from the kernel: each interface's addresses and
//! prefix lengths (`getifaddrs`), and which interfaces carry the default routes
//! (`/proc/net/route`, `/proc/net/ipv6_route`).

use std::net::IpAddr;

/// One interface and its addresses (with prefix lengths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Its name (`eth0`).
    pub name: String,
    /// Its addresses, each with its prefix length.
    pub addrs: Vec<(IpAddr, u8)>,
}

/// This machine's interfaces and default routes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Host {
    /// Every interface that has an address.
    pub interfaces: Vec<Interface>,
    /// The interfaces the IPv4 and IPv6 default routes leave by.
    pub default_routes: Vec<String>,
}

/// Reads the kernel's interfaces and default routes.
pub fn discover() -> std::io::Result<Host> {
    let mut interfaces: Vec<Interface> = Vec::new();
    for a in nix::ifaddrs::getifaddrs().map_err(std::io::Error::from)? {
        let (Some(addr), Some(mask)) = (&a.address, &a.netmask) else {
            continue;
        };
        let (ip, prefix) =
            if let (Some(ip), Some(m)) = (addr.as_sockaddr_in(), mask.as_sockaddr_in()) {
                (IpAddr::V4(ip.ip()), u32::from(m.ip()).count_ones())
            } else if let (Some(ip), Some(m)) = (addr.as_sockaddr_in6(), mask.as_sockaddr_in6()) {
                (IpAddr::V6(ip.ip()), u128::from(m.ip()).count_ones())
            } else {
                continue;
            };
        let prefix = u8::try_from(prefix).unwrap_or(0);
        match interfaces.iter_mut().find(|i| i.name == a.interface_name) {
            Some(i) => i.addrs.push((ip, prefix)),
            None => interfaces.push(Interface {
                name: a.interface_name.clone(),
                addrs: vec![(ip, prefix)],
            }),
        }
    }
    let v4 = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let v6 = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
    let mut default_routes = default_route_ifaces(&v4, &v6);
    default_routes.dedup();
    Ok(Host {
        interfaces,
        default_routes,
    })
}

/// The interfaces of the default routes in the text of `/proc/net/route` (`v4`) and
/// `/proc/net/ipv6_route` (`v6`).
pub fn default_route_ifaces(v4: &str, v6: &str) -> Vec<String> {
    let mut out = Vec::new();
    for l in v4.lines().skip(1) {
        let f: Vec<&str> = l.split_whitespace().collect();
        // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
        if let (Some(iface), Some(&"00000000"), Some(&"00000000")) = (f.first(), f.get(1), f.get(7))
            && !out.iter().any(|o: &String| o == iface)
        {
            out.push((*iface).to_string());
        }
    }
    for l in v6.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        // dest prefix src prefix next-hop metric refcnt use flags iface
        let zero = "00000000000000000000000000000000";
        if f.len() == 10
            && f.first() == Some(&zero)
            && f.get(1) == Some(&"00")
            && f.get(9).is_some_and(|i| *i != "lo")
            && f.get(4) != Some(&zero)
            && let Some(iface) = f.get(9)
            && !out.iter().any(|o: &String| o == iface)
        {
            out.push((*iface).to_string());
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn default_routes_are_read_from_both_tables() {
        let v4 = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                  eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
                  eth0\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n\
                  eth1\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        let v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 wan0\n\
                  00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo\n";
        assert_eq!(default_route_ifaces(v4, v6), ["eth0", "wan0"]);
        assert!(default_route_ifaces("Iface\n", "").is_empty());
    }

    #[test]
    fn this_machine_has_at_least_loopback() {
        let host = discover().unwrap();
        assert!(
            host.interfaces
                .iter()
                .any(|i| i.addrs.iter().any(|(ip, _)| ip.is_loopback())),
            "{host:?}"
        );
    }
}
