//! The kernel's neighbour table (ARP for IPv4, NDP for IPv6): which MAC address each LAN
//! address belongs to, so that a group can name a laptop by its MAC address and catch its
//! IPv4 address and its changing IPv6 privacy addresses as one client.
//!
//! The query path never waits for the kernel: it reads a snapshot ([`NeighbourTable::mac`]).
//! A background thread dumps the table over rtnetlink every [`REFRESH`], and sooner (at most
//! once per [`MIN_GAP`]) when a query came from an address the snapshot does not know. A
//! new device's first queries may therefore get the default policy, until the next dump.
//! The thread starts only when a config names a MAC address.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use arc_swap::ArcSwap;
use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::config::groups::MacAddr;

/// How often the table is read even when nothing asks.
pub const REFRESH: Duration = Duration::from_secs(10);
/// The shortest time between two reads.
pub const MIN_GAP: Duration = Duration::from_secs(1);

/// Looks up the MAC address of a client address.
pub trait MacLookup: Send + Sync + std::fmt::Debug {
    /// The MAC address `ip` had when last seen, if known. Never blocks.
    fn mac(&self, ip: IpAddr) -> Option<MacAddr>;
}

/// A snapshot of the neighbour table, refreshed in the background.
#[derive(Debug)]
pub struct NeighbourTable {
    snapshot: ArcSwap<HashMap<IpAddr, MacAddr>>,
    wanted: AtomicBool,
    refresher: OnceLock<Thread>,
}

impl NeighbourTable {
    /// The process's table, with its refresher thread started on first use.
    pub fn shared() -> Arc<Self> {
        static TABLE: OnceLock<Arc<NeighbourTable>> = OnceLock::new();
        Arc::clone(TABLE.get_or_init(|| {
            let t = Arc::new(Self {
                snapshot: ArcSwap::from_pointee(dump().unwrap_or_default()),
                wanted: AtomicBool::new(false),
                refresher: OnceLock::new(),
            });
            let me = Arc::clone(&t);
            match std::thread::Builder::new()
                .name("sinkhole-neigh".into())
                .spawn(move || me.refresh_loop())
            {
                Ok(h) => {
                    let _ = t.refresher.set(h.thread().clone());
                }
                Err(e) => tracing::error!(error = %e, "cannot start the neighbour-table thread; MAC addresses are read once"),
            }
            t
        }))
    }

    fn refresh_loop(&self) {
        let mut failing = false;
        loop {
            std::thread::park_timeout(REFRESH);
            self.wanted.store(false, Ordering::Relaxed);
            match dump() {
                Ok(t) => {
                    failing = false;
                    self.snapshot.store(Arc::new(t));
                }
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "cannot read the kernel's neighbour table; MAC-addressed groups keep the last one read");
                }
                Err(_) => {}
            }
            std::thread::sleep(MIN_GAP);
        }
    }
}

impl MacLookup for NeighbourTable {
    fn mac(&self, ip: IpAddr) -> Option<MacAddr> {
        let ip = ip.to_canonical();
        let found = self.snapshot.load().get(&ip).copied();
        // An unknown LAN address: ask for a read soon (one wake-up until it is done).
        if found.is_none()
            && !ip.is_loopback()
            // A load first: while a read is already asked for, a miss writes nothing
            // (no cache line bounced between the UDP threads).
            && !self.wanted.load(Ordering::Relaxed)
            && !self.wanted.swap(true, Ordering::Relaxed)
            && let Some(t) = self.refresher.get()
        {
            t.unpark();
        }
        found
    }
}

/// Reads the kernel's neighbour table: every IPv4 and IPv6 neighbour with an Ethernet
/// address that is not incomplete or failed.
pub fn dump() -> io::Result<HashMap<IpAddr, MacAddr>> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    set_timeout(&socket)?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_DUMP | NLM_F_REQUEST;
    let mut req = NetlinkMessage::new(
        header,
        NetlinkPayload::from(RouteNetlinkMessage::GetNeighbour(
            NeighbourMessage::default(),
        )),
    );
    req.finalize();
    let mut buf = vec![0; req.header.length as usize];
    req.serialize(&mut buf[..]);
    socket.send(&buf, 0)?;

    let mut table = HashMap::new();
    let mut rx = vec![0u8; 1 << 16];
    // A dump ends with Done; the bound only guards against a kernel that never says so.
    for _ in 0..100_000 {
        let n = socket.recv(&mut &mut rx[..], 0)?;
        let mut rest = rx.get(..n).unwrap_or_default();
        while !rest.is_empty() {
            let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            match msg.payload {
                NetlinkPayload::Done(_) => return Ok(table),
                NetlinkPayload::Error(e) => {
                    return Err(io::Error::other(format!("netlink: {e:?}")));
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(m)) => {
                    if let Some((ip, mac)) = entry(&m) {
                        table.insert(ip, mac);
                    }
                }
                _ => {}
            }
            let len = msg.header.length as usize;
            if len == 0 {
                break;
            }
            rest = rest.get(len..).unwrap_or_default();
        }
    }
    Ok(table)
}

/// The address and MAC address of one neighbour, when it has both and is usable.
fn entry(m: &NeighbourMessage) -> Option<(IpAddr, MacAddr)> {
    if matches!(
        m.header.state,
        NeighbourState::Incomplete | NeighbourState::Failed | NeighbourState::None
    ) {
        return None;
    }
    let mut ip = None;
    let mut mac = None;
    for a in &m.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => ip = Some(IpAddr::V4(*a)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                ip = Some(IpAddr::V6(*a));
            }
            NeighbourAttribute::LinkLayerAddress(l) => mac = <[u8; 6]>::try_from(l.as_slice()).ok(),
            _ => {}
        }
    }
    Some((ip?.to_canonical(), MacAddr(mac?)))
}

fn set_timeout(socket: &Socket) -> io::Result<()> {
    nix::sys::socket::setsockopt(
        socket,
        nix::sys::socket::sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(2, 0),
    )
    .map_err(io::Error::from)
}

/// A fixed table, for tests.
#[derive(Debug, Default)]
pub struct FixedTable(pub HashMap<IpAddr, MacAddr>);

impl MacLookup for FixedTable {
    fn mac(&self, ip: IpAddr) -> Option<MacAddr> {
        self.0.get(&ip.to_canonical()).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_table_can_be_read() {
        // Whatever it holds here (maybe nothing), reading it must work: the loopback
        // interface has no neighbours, so no entry may be a loopback address.
        let t = dump().expect("rtnetlink neighbour dump");
        assert!(t.keys().all(|ip| !ip.is_loopback()), "{t:?}");
    }
}
