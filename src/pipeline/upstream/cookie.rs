//! `Jar`: our DNS cookies with one upstream server (RFC 7873 §5.1): the client cookie we
//! send it, and the server cookie it last gave us.
//!
//! The client cookie is 8 random bytes per server, drawn once per process from the OS-seeded
//! CSPRNG: unguessable off-path, which is all RFC 7873 §4.1 asks of it, and different per
//! server so that servers cannot link our queries to one another. (RFC 7873 also derives it
//! from the client address; our sockets are bound to the wildcard address, so the address
//! is not known here, and a restart draws new cookies.)

use std::sync::Mutex;

use crate::dns::wire::Cookie;

/// Cookies for one server.
pub(super) struct Jar {
    client: [u8; 8],
    server: Mutex<Option<Cookie>>,
}

impl std::fmt::Debug for Jar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The cookies are secrets toward the server: not for logs.
        f.debug_struct("Jar").finish_non_exhaustive()
    }
}

impl Jar {
    /// A new client cookie, no server cookie yet.
    pub(super) fn new() -> Self {
        Self {
            client: rand::random(),
            server: Mutex::new(None),
        }
    }

    /// The client cookie, and the server's last cookie (with that client cookie) if any.
    pub(super) fn get(&self) -> ([u8; 8], Option<Cookie>) {
        let server = *self
            .server
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (self.client, server)
    }

    /// Keeps the server cookie of an answer that echoed our client cookie.
    pub(super) fn learn(&self, c: &Cookie) {
        if c.client != self.client {
            return;
        }
        let mut s = self
            .server
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if s.as_ref() != Some(c) {
            *s = Some(*c);
        }
    }

    /// Forgets the server cookie (the server seems to have stopped doing cookies).
    pub(super) fn forget(&self) {
        *self
            .server
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::wire::{
        CookieOption, RCODE_BADCOOKIE, parse_query, response_cookie, write_upstream_query,
        write_upstream_query_cookie,
    };

    fn query() -> crate::dns::wire::Query {
        let mut pkt = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        pkt.extend_from_slice(b"\x03www\x04test\x00\x00\x01\x00\x01");
        parse_query(&pkt).unwrap()
    }

    #[test]
    fn jar_learns_only_its_own_cookie_and_forgets() {
        let jar = Jar::new();
        let other = Jar::new();
        assert_ne!(jar.get().0, other.get().0, "a client cookie per server");
        let (client, none) = jar.get();
        assert!(none.is_none());
        jar.learn(&Cookie::new([0xAA; 8], b"servercookie").unwrap());
        assert!(jar.get().1.is_none(), "not our client cookie");
        let c = Cookie::new(client, b"servercookie").unwrap();
        jar.learn(&c);
        assert_eq!(jar.get().1.unwrap().server(), b"servercookie");
        jar.forget();
        assert!(jar.get().1.is_none());
    }

    #[test]
    fn cookie_option_round_trips_through_hickory_and_our_reader() {
        use hickory_proto::op::Message;
        use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
        let q = query();
        let mut plain = Vec::new();
        write_upstream_query(&mut plain, &q, 7);
        let mut out = Vec::new();
        write_upstream_query_cookie(&mut out, &q, 7, b"ABCDEFGH", Some(b"0123456789abcdef"));
        assert_eq!(out.len(), plain.len() + 4 + 24);
        let m = Message::from_vec(&out).unwrap();
        let Some(EdnsOption::Unknown(10, data)) = m.edns.as_ref().unwrap().option(EdnsCode::Cookie)
        else {
            panic!("no cookie in {m:?}");
        };
        assert_eq!(&data[..], b"ABCDEFGH0123456789abcdef");

        // Our own query, turned into a BADCOOKIE answer, read back.
        let mut resp = out.clone();
        resp[2] |= 0x80;
        resp[3] = (resp[3] & 0xF0) | 7;
        let opt = 12 + q.question_len();
        resp[opt + 5] = 1; // upper rcode bits
        let o = response_cookie(&resp).unwrap();
        assert_eq!(o.rcode, RCODE_BADCOOKIE);
        let CookieOption::Present(c) = o.cookie else {
            panic!("{o:?}");
        };
        assert_eq!(c.client, *b"ABCDEFGH");
        assert_eq!(c.server(), b"0123456789abcdef");

        // Client cookie only (a query, or a bad answer): malformed in an answer.
        write_upstream_query_cookie(&mut out, &q, 7, b"ABCDEFGH", None);
        assert_eq!(
            response_cookie(&out).unwrap().cookie,
            CookieOption::Malformed
        );
        // No cookie at all.
        assert_eq!(
            response_cookie(&plain).unwrap().cookie,
            CookieOption::Absent
        );
        // Cut short: unreadable, never a panic.
        for n in 0..out.len() {
            let _ = response_cookie(&out[..n]);
        }
        assert!(response_cookie(&out[..out.len() - 3]).is_none());
    }

    #[test]
    fn a_query_asked_for_validation_carries_rd_cd_and_do_and_its_cookie() {
        use crate::dns::wire::ask_for_validation;
        use hickory_proto::op::Message;
        use hickory_proto::rr::rdata::opt::EdnsCode;
        let q = query();
        let mut out = Vec::new();
        write_upstream_query_cookie(&mut out, &q, 7, b"ABCDEFGH", Some(b"0123456789abcdef"));
        // As a client without RD and with AD would have it asked.
        out[2] &= !0x01;
        out[3] |= 0x20;
        let before = Message::from_vec(&out).unwrap();
        assert!(!before.metadata.checking_disabled && !before.metadata.recursion_desired);
        assert!(!before.edns.as_ref().unwrap().flags().dnssec_ok);
        ask_for_validation(&mut out, &q);
        let m = Message::from_vec(&out).unwrap();
        assert!(m.metadata.checking_disabled && m.metadata.recursion_desired);
        assert!(!m.metadata.authentic_data);
        let edns = m.edns.as_ref().unwrap();
        assert!(edns.flags().dnssec_ok);
        assert!(edns.option(EdnsCode::Cookie).is_some());
        assert_eq!(m.queries, before.queries);
        // A buffer too short is left alone, never a panic.
        ask_for_validation(&mut out[..3], &q);
    }
}
