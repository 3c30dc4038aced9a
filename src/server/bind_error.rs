//! One line that says why a listening socket could not be had and what to do: the
//! process holding an address in use (from `/proc`, when it tells), systemd-resolved's
//! stub listener on port 53 and how to turn it off, the capability a low port needs.

use std::io;
use std::net::{IpAddr, SocketAddr};

/// `e` (from binding `addr` over `proto`, "udp" or "tcp") with the reason and the remedy.
pub(super) fn explain(e: io::Error, addr: SocketAddr, proto: &str) -> io::Error {
    let why = match e.kind() {
        io::ErrorKind::AddrInUse => {
            let holder = holder(addr, proto);
            let who = holder
                .as_ref()
                .map_or_else(String::new, |(pid, comm)| format!(" by {comm} (pid {pid})"));
            let fix = match holder.as_ref().map(|(_, c)| c.as_str()) {
                Some("systemd-resolve" | "systemd-resolved") => {
                    "; that is systemd-resolved's stub listener: set DNSStubListener=no in \
                     /etc/systemd/resolved.conf and `systemctl restart systemd-resolved`, or \
                     listen on the LAN address only"
                }
                _ => "; stop that server or listen on another address",
            };
            format!("address in use{who}{fix}")
        }
        io::ErrorKind::PermissionDenied if addr.port() < 1024 => format!(
            "permission denied: port {} is below 1024; start as root (sinkhole gives root up \
             once bound, see server.user), or grant CAP_NET_BIND_SERVICE \
             (AmbientCapabilities=CAP_NET_BIND_SERVICE in the unit, or \
             `setcap cap_net_bind_service=+ep` on the binary)",
            addr.port()
        ),
        io::ErrorKind::AddrNotAvailable => {
            "no interface has this address (a typo, or the interface is not up yet)".into()
        }
        _ => e.to_string(),
    };
    io::Error::new(
        e.kind(),
        format!("cannot listen on {addr} ({proto}): {why}"),
    )
}

/// The process holding `addr` over `proto`, as `/proc` tells it: (pid, command name).
fn holder(addr: SocketAddr, proto: &str) -> Option<(u32, String)> {
    let mut inodes = Vec::new();
    for table in [proto.to_string(), format!("{proto}6")] {
        let text = std::fs::read_to_string(format!("/proc/net/{table}")).unwrap_or_default();
        inodes.extend(text.lines().skip(1).filter_map(|l| bound_inode(l, addr)));
    }
    if inodes.is_empty() {
        return None;
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let t = target.to_string_lossy();
            let Some(inode) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) else {
                continue;
            };
            if inode.parse::<u64>().is_ok_and(|i| inodes.contains(&i)) {
                let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                return Some((pid, comm.trim().to_string()));
            }
        }
    }
    None
}

/// The socket inode of a `/proc/net/{udp,tcp}[6]` line bound where `addr` would be
/// (the same port, on that address or a wildcard); a TCP connection holds none.
pub(super) fn bound_inode(line: &str, addr: SocketAddr) -> Option<u64> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let (local, state, inode) = (f.get(1)?, f.get(3)?, f.get(9)?);
    let (ip_hex, port_hex) = local.split_once(':')?;
    if u16::from_str_radix(port_hex, 16).ok()? != addr.port() {
        return None;
    }
    // TCP: only listening sockets (state 0A) hold a port for a listener.
    // 0A: a listening TCP socket; 07: a bound UDP one (or a bound, unconnected TCP one).
    if *state != "0A" && *state != "07" {
        return None;
    }
    let ip = parse_ip(ip_hex)?;
    (ip.is_unspecified()
        || addr.ip().is_unspecified()
        || ip == addr.ip()
        || mapped(ip) == Some(addr.ip()))
    .then(|| inode.parse().ok())
    .flatten()
}

/// An address in `/proc/net`'s hex: four bytes, or sixteen, in 32-bit host-order words.
fn parse_ip(hex: &str) -> Option<IpAddr> {
    let words: Vec<u32> = (0..hex.len() / 8)
        .map(|i| u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect::<Option<_>>()?;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    match bytes.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

fn mapped(ip: IpAddr) -> Option<IpAddr> {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
        IpAddr::V4(_) => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_lines_are_matched_by_port_and_address() {
        // 127.0.0.53:53 (systemd-resolved's stub), UDP state 07.
        let udp = "  12: 3500007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   991        0 23456 2 0000000000000000 0";
        let stub: SocketAddr = "127.0.0.53:53".parse().unwrap();
        assert_eq!(bound_inode(udp, stub), Some(23456));
        assert_eq!(bound_inode(udp, "0.0.0.0:53".parse().unwrap()), Some(23456));
        assert_eq!(bound_inode(udp, "127.0.0.1:53".parse().unwrap()), None);
        assert_eq!(bound_inode(udp, "127.0.0.53:54".parse().unwrap()), None);
        // A TCP connection (state 01) holds no listening port.
        let conn = "   3: 3500007F:0035 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 20 4 30 10 -1";
        assert_eq!(bound_inode(conn, stub), None);
        // IPv6 wildcard [::]:53 listening.
        let v6 = "   0: 00000000000000000000000000000000:0035 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0";
        assert_eq!(bound_inode(v6, "[::1]:53".parse().unwrap()), Some(4242));
        assert_eq!(parse_ip("0100007F"), Some("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn a_port_in_use_names_its_holder_and_a_low_port_the_capability() {
        let held = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let e = std::net::UdpSocket::bind(addr).unwrap_err();
        let msg = explain(e, addr, "udp").to_string();
        let me = std::process::id();
        assert!(
            msg.starts_with(&format!(
                "cannot listen on {addr} (udp): address in use by "
            )),
            "{msg}"
        );
        assert!(msg.contains(&format!("(pid {me})")), "{msg}");
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        let msg = explain(denied, "0.0.0.0:53".parse().unwrap(), "tcp").to_string();
        assert!(
            msg.contains("CAP_NET_BIND_SERVICE") && msg.contains("below 1024"),
            "{msg}"
        );
    }
}
