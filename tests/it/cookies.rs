//! DNS cookies toward upstreams (RFC 7873): a client cookie in every query, the server's
//! cookie learned and sent back, answers with a wrong client cookie ignored, BADCOOKIE
//! retried once with the fresh server cookie.

use std::net::Ipv4Addr;
use std::time::Duration;

use hickory_proto::rr::RecordType;

use crate::harness::{TestServer, first_answer};
use crate::raw_upstream::{RawUpstream, answer_a, bad_cookie, cookie_of, with_cookie};

const SERVER_COOKIE: &[u8] = b"server-cookie-01";
const GOOD: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const FORGED: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 66);

fn cfg(up: &RawUpstream) -> String {
    format!(
        "[upstream]\nservers = [\"{}\"]\ntimeout_ms = 1500\n",
        up.addr
    )
}

/// A cookie-aware upstream: echoes the client cookie with its own server cookie. For names
/// starting with `forged`, an off-path forgery (right ID and question, wrong or missing
/// client cookie, another address) arrives 30 ms before the real answer.
async fn cookie_upstream() -> RawUpstream {
    RawUpstream::start(|q| {
        let client = cookie_of(q).map(|(c, _)| c).unwrap_or_default();
        let real = with_cookie(answer_a(q, GOOD), &client, SERVER_COOKIE);
        let name = q.queries[0].name().to_ascii();
        let late = Duration::from_millis(30);
        if name.starts_with("forged-wrong") {
            let forged = with_cookie(answer_a(q, FORGED), b"12345678", SERVER_COOKIE);
            vec![(Duration::ZERO, forged), (late, real)]
        } else if name.starts_with("forged-none") {
            vec![(Duration::ZERO, answer_a(q, FORGED)), (late, real)]
        } else {
            vec![(Duration::ZERO, real)]
        }
    })
    .await
}

// See: #10
#[tokio::test(flavor = "multi_thread")]
async fn r10_server_cookie_is_learned_and_sent_back() {
    let up = cookie_upstream().await;
    let s = TestServer::start(&cfg(&up), &[]).await;
    assert_eq!(
        first_answer(&s.query("a.test.", RecordType::A).await),
        "192.0.2.1"
    );
    assert_eq!(
        first_answer(&s.query("b.test.", RecordType::AAAA).await),
        "192.0.2.1"
    );
    let seen = up.queries();
    assert_eq!(seen.len(), 2);
    let (c1, s1) = cookie_of(&seen[0]).expect("first query carries a client cookie");
    assert_eq!(c1.len(), 8);
    assert!(s1.is_empty(), "no server cookie known yet: {s1:?}");
    let (c2, s2) = cookie_of(&seen[1]).expect("second query carries the cookies");
    assert_eq!(c2, c1, "the client cookie is stable per server");
    assert_eq!(s2, SERVER_COOKIE, "the learned server cookie is sent back");
}

// See: #10
#[tokio::test(flavor = "multi_thread")]
async fn r10_answers_with_a_wrong_or_missing_client_cookie_are_ignored() {
    let up = cookie_upstream().await;
    let s = TestServer::start(&cfg(&up), &[]).await;
    // Wrong client cookie: dropped like any spoofed answer; the real one is taken.
    let m = s.query("forged-wrong.test.", RecordType::A).await;
    assert_eq!(first_answer(&m), "192.0.2.1");
    // Now the server is known to support cookies: an answer without one is a forgery too.
    let m = s.query("forged-none.test.", RecordType::A).await;
    assert_eq!(first_answer(&m), "192.0.2.1");
    assert_eq!(up.queries().len(), 2);
}

// See: #10
#[tokio::test(flavor = "multi_thread")]
async fn r10_badcookie_is_retried_once_with_the_new_server_cookie() {
    // Insists on its current server cookie: anything else gets BADCOOKIE and the cookie.
    let up = RawUpstream::start(|q| {
        let (client, server) = cookie_of(q).unwrap_or_default();
        let reply = if server == SERVER_COOKIE {
            answer_a(q, GOOD)
        } else {
            bad_cookie(q)
        };
        vec![(Duration::ZERO, with_cookie(reply, &client, SERVER_COOKIE))]
    })
    .await;
    let s = TestServer::start(&cfg(&up), &[]).await;
    let m = s.query("www.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code.low(), 0, "{m:?}");
    assert_eq!(first_answer(&m), "192.0.2.1");
    let seen = up.queries();
    assert_eq!(seen.len(), 2, "one retry");
    assert_eq!(cookie_of(&seen[1]).unwrap().1, SERVER_COOKIE);
}

/// A server that stops doing cookies (a new instance behind the address) costs one
/// timeout, not every query from then on.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_stops_doing_cookies_is_trusted_again_after_one_timeout() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = AtomicUsize::new(0);
    let up = RawUpstream::start(move |q| {
        let reply = answer_a(q, GOOD);
        if calls.fetch_add(1, Ordering::SeqCst) == 0 {
            let client = cookie_of(q).map(|(c, _)| c).unwrap_or_default();
            vec![(Duration::ZERO, with_cookie(reply, &client, SERVER_COOKIE))]
        } else {
            vec![(Duration::ZERO, reply)]
        }
    })
    .await;
    let s = TestServer::start(
        &format!(
            "[upstream]\nservers = [\"{}\"]\ntimeout_ms = 300\n",
            up.addr
        ),
        &[],
    )
    .await;
    assert_eq!(
        first_answer(&s.query("a.test.", RecordType::A).await),
        "192.0.2.1"
    );
    // Answered without a cookie by a server known to do cookies: dropped, SERVFAIL.
    let m = s.query("b.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code.low(), 2, "{m:?}");
    // Then trusted without one.
    assert_eq!(
        first_answer(&s.query("c.test.", RecordType::A).await),
        "192.0.2.1"
    );
}
