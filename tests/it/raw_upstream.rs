#![allow(dead_code)]
//! A scripted UDP upstream for tests that need control over every datagram: answers after a
//! delay, several answers to one query (a forged one first), DNS cookies (RFC 7873) and
//! BADCOOKIE. Queries are parsed with hickory-proto; the script returns the replies, each
//! with the delay before it is sent. Every query received is kept, in order.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{RData, Record};
use tokio::net::UdpSocket;

/// What the script answers to one query: replies and the delay before each.
pub(crate) type Replies = Vec<(Duration, Message)>;

/// A running scripted upstream on 127.0.0.1; stops on drop.
pub(crate) struct RawUpstream {
    /// Its UDP address.
    pub(crate) addr: SocketAddr,
    queries: Arc<Mutex<Vec<Message>>>,
    /// Where each query came from, in the same order.
    sources: Arc<Mutex<Vec<SocketAddr>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RawUpstream {
    /// Starts the upstream; `script` is called for every query that parses.
    pub(crate) async fn start<F>(script: F) -> Self
    where
        F: Fn(&Message) -> Replies + Send + Sync + 'static,
    {
        let sock = Arc::new(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap());
        let addr = sock.local_addr().unwrap();
        let queries = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&queries);
        let sources = Arc::new(Mutex::new(Vec::new()));
        let from_seen = Arc::clone(&sources);
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                    continue;
                };
                let Ok(q) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                seen.lock().unwrap().push(q.clone());
                from_seen.lock().unwrap().push(from);
                for (delay, reply) in script(&q) {
                    let bytes = reply.to_vec().unwrap();
                    if delay.is_zero() {
                        let _ = sock.send_to(&bytes, from).await;
                    } else {
                        let sock = Arc::clone(&sock);
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            let _ = sock.send_to(&bytes, from).await;
                        });
                    }
                }
            }
        });
        Self {
            addr,
            queries,
            sources,
            task,
        }
    }

    /// Every query received so far, in order.
    pub(crate) fn queries(&self) -> Vec<Message> {
        self.queries.lock().unwrap().clone()
    }

    /// Where every query so far came from (address and source port), in order.
    pub(crate) fn sources(&self) -> Vec<SocketAddr> {
        self.sources.lock().unwrap().clone()
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The response to `q` with one A record (TTL 300), RD echoed, RA set; with an OPT (payload
/// 1232) when the query had one.
pub(crate) fn answer_a(q: &Message, ip: Ipv4Addr) -> Message {
    let mut m = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
    m.metadata.recursion_desired = q.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.add_query(q.queries[0].clone());
    m.add_answer(Record::from_rdata(
        q.queries[0].name().clone(),
        300,
        RData::A(A(ip)),
    ));
    if q.edns.is_some() {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.edns = Some(e);
    }
    m
}

/// The COOKIE option (code 10) of a message: (client cookie, server cookie).
pub(crate) fn cookie_of(m: &Message) -> Option<(Vec<u8>, Vec<u8>)> {
    match m.edns.as_ref()?.option(EdnsCode::Cookie)? {
        EdnsOption::Unknown(10, data) if data.len() >= 8 => {
            Some((data[..8].to_vec(), data[8..].to_vec()))
        }
        _ => None,
    }
}

/// Adds (or replaces) the COOKIE option `client ‖ server` in `m`'s OPT.
pub(crate) fn with_cookie(mut m: Message, client: &[u8], server: &[u8]) -> Message {
    let mut data = client.to_vec();
    data.extend_from_slice(server);
    let e = m.edns.get_or_insert_with(|| {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        e
    });
    e.options_mut().insert(EdnsOption::Unknown(10, data));
    m
}

/// A BADCOOKIE (extended rcode 23) answer to `q`, with no records.
pub(crate) fn bad_cookie(q: &Message) -> Message {
    let mut m = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
    m.metadata.recursion_desired = q.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.metadata.response_code = ResponseCode::BADCOOKIE;
    m.add_query(q.queries[0].clone());
    let mut e = Edns::new();
    e.set_max_payload(1232);
    m.edns = Some(e);
    m
}
