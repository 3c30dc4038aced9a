//! The upstream of the peer benchmark (`benches/peers/run.py`): answers every query at once
//! with one A record (192.0.2.1, TTL 3600), so that a forwarded query costs the resolver
//! under test its own work and nothing waits on the upstream. Two threads on one
//! `SO_REUSEPORT` address, plain `recv_from`/`send_to`: it is not what is measured. The
//! same port over TCP (a thread per connection, pipelined queries answered in order), for
//! peers that forward what came over TCP, DoT or DoH over TCP (dnsdist does).
//!
//! `cargo run --release --example bench_upstream -- 127.0.0.1:5399`

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};

/// The end of the question section (its first name, type and class), if the message has
/// one.
fn question_end(q: &[u8]) -> Option<usize> {
    let mut i = 12;
    loop {
        let len = usize::from(*q.get(i)?);
        if len == 0 {
            return Some(i + 1 + 4).filter(|&e| e <= q.len());
        }
        if len & 0xC0 != 0 {
            return None;
        }
        i += 1 + len;
    }
}

/// The answer to query `q` in `out`: the header and question, one A record.
fn answer(q: &[u8], out: &mut Vec<u8>) -> bool {
    let Some(end) = question_end(q) else {
        return false;
    };
    if q.get(2).is_none_or(|f| f & 0x80 != 0) || q.get(4..6) != Some(&[0, 1]) {
        return false;
    }
    out.clear();
    out.extend_from_slice(&q[..end]);
    out[2] = 0x80 | (q[2] & 0x01); // QR, RD copied
    out[3] = 0x80; // RA, NOERROR
    out[6..12].copy_from_slice(&[0, 1, 0, 0, 0, 0]);
    let qtype = &q[end - 4..end - 2];
    if qtype == [0, 1] {
        out.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0x0E, 0x10, 0, 4, 192, 0, 2, 1]);
    } else {
        out[7] = 0; // NODATA for other types
    }
    true
}

fn serve(sock: UdpSocket) {
    let mut buf = [0u8; 4096];
    let mut out = Vec::with_capacity(512);
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        if answer(&buf[..n], &mut out) {
            let _ = sock.send_to(&out, from);
        }
    }
}

/// Answers the length-prefixed queries of one TCP connection until it closes.
fn serve_tcp(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut len = [0u8; 2];
    let mut out = Vec::with_capacity(512);
    while s.read_exact(&mut len).is_ok() {
        let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if s.read_exact(&mut q).is_err() || !answer(&q, &mut out) {
            return;
        }
        let mut msg = (out.len() as u16).to_be_bytes().to_vec();
        msg.extend_from_slice(&out);
        if s.write_all(&msg).is_err() {
            return;
        }
    }
}

fn main() {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5399".into())
        .parse()
        .expect("usage: bench_upstream ADDR:PORT");
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let s = socket2::Socket::new(
                socket2::Domain::for_address(addr),
                socket2::Type::DGRAM,
                None,
            )
            .expect("socket");
            s.set_reuse_port(true).expect("SO_REUSEPORT");
            let _ = s.set_recv_buffer_size(4 << 20);
            s.bind(&addr.into()).expect("bind");
            let sock: UdpSocket = s.into();
            std::thread::spawn(move || serve(sock))
        })
        .collect();
    let tcp = TcpListener::bind(addr).expect("bind tcp");
    std::thread::spawn(move || {
        for s in tcp.incoming().flatten() {
            std::thread::spawn(move || serve_tcp(s));
        }
    });
    eprintln!("bench_upstream: answering on {addr} (udp and tcp)");
    for t in threads {
        let _ = t.join();
    }
}
