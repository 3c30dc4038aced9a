//! Unit tests of a relay's DNS-over-HTTPS connections against a loopback HTTP/2 server:
//! misses answered on one kept connection by the relay's own loop; an HTTP error fails the
//! server for that query only; a server that agrees to no HTTP/2 and a silent one settle the attempt
//! in time; a connection closed after answering hands its queries back for the same server.

use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::body::Bytes;
use tokio::time::Instant;

use super::super::super::encrypted::near::tests::{
    Act, Dot, NAME, a_record, answer_ip, tls_serving,
};
use super::super::super::{Step, Then, Upstream, UpstreamError};
use super::super::tests::{item, relay, settle, then, upstream_with_ca};

/// A DoH server that treats the `n`th request of each connection as `act(n)` says, and
/// answers HTTP 500 to a name that starts with `err`. `alpn`: what it agrees to (empty: none).
fn doh(act: fn(usize) -> Act, alpn: &'static [u8]) -> Dot {
    doh_with_table(4096, act, alpn)
}

/// [`doh`] with a header table of `table` bytes for the requests' fields
/// (`SETTINGS_HEADER_TABLE_SIZE`).
fn doh_with_table(table: u32, act: fn(usize) -> Act, alpn: &'static [u8]) -> Dot {
    tls_serving(alpn, move |tls| async move {
        let Ok(mut conn) = h2::server::Builder::new()
            .header_table_size(table)
            .handshake(tls)
            .await
        else {
            return;
        };
        let mut n = 0;
        while let Some(Ok((req, respond))) = conn.accept().await {
            let what = act(n);
            n += 1;
            if what == Act::Close {
                return;
            }
            tokio::spawn(respond_to(req, respond, what));
        }
    })
}

async fn respond_to(
    req: hyper::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    what: Act,
) {
    // What every request must say, however its header block was written: else a 400.
    let h = req.headers();
    let right = req.method() == hyper::Method::POST
        && req.uri().scheme_str() == Some("https")
        && req.uri().authority().map(|a| a.as_str()) == Some(NAME)
        && req.uri().path() == "/dns-query"
        && h.get("content-type")
            .is_some_and(|v| v == "application/dns-message")
        && h.get("accept")
            .is_some_and(|v| v == "application/dns-message");
    let mut body = req.into_body();
    let mut q = Vec::new();
    while let Some(Ok(chunk)) = body.data().await {
        q.extend_from_slice(&chunk);
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    if what == Act::Ignore {
        // Holds the stream open without an answer.
        tokio::time::sleep(Duration::from_secs(30)).await;
        return;
    }
    // The first label of the question starts after the header and its length byte.
    let status = if !right {
        400
    } else if q.get(13..16) == Some(b"err") {
        500
    } else {
        200
    };
    let head = hyper::Response::builder()
        .status(status)
        .header("content-type", "application/dns-message")
        .body(())
        .unwrap();
    let Ok(mut send) = respond.send_response(head, false) else {
        return;
    };
    let _ = send.send_data(Bytes::from(a_record(&q)), true);
}

/// An upstream set of `server` alone, trusting its CA, with a 3-second timeout.
fn upstream_of(server: &Dot) -> Upstream {
    upstream_with_ca(
        &[url(server)],
        Duration::from_secs(3),
        Some(server.ca.clone()),
    )
}

fn url(server: &Dot) -> String {
    format!("https://{NAME}/dns-query@{}", server.addr)
}

#[test]
fn misses_are_answered_over_http2_on_one_kept_connection() {
    let server = doh(|_| Act::Answer, b"h2");
    let up = upstream_of(&server);
    let (mut r, _listener) = relay();
    for i in 0..5 {
        assert!(r.start(item(&format!("n{i}.example.test"), &up)).is_ok());
    }
    let got = settle(&mut r, 5, Duration::from_secs(5));
    assert_eq!(got.len(), 5, "every attempt settled");
    assert!(got.iter().all(|s| answer_ip(s) == "192.0.2.7"));
    assert!(r.idle());
    for round in 0..3 {
        assert!(
            r.start(item(&format!("later{round}.example.test"), &up))
                .is_ok()
        );
        let got = settle(&mut r, 1, Duration::from_secs(5));
        assert_eq!(answer_ip(&got[0]), "192.0.2.7");
    }
    assert_eq!(server.conns.load(Ordering::Relaxed), 1, "one connection");
    assert_eq!(r.kept.len(), 1);
}

/// Misses on one connection to a server whose header table is `table` bytes, `n` at a time,
/// three times: each answered, and by one connection.
fn answered_in_rounds_with_table(table: u32) {
    let server = doh_with_table(table, |_| Act::Answer, b"h2");
    let up = upstream_of(&server);
    let (mut r, _listener) = relay();
    for round in 0..3 {
        for i in 0..4 {
            let name = format!("t{table}-{round}-{i}.example.test");
            assert!(r.start(item(&name, &up)).is_ok());
        }
        let got = settle(&mut r, 4, Duration::from_secs(5));
        assert_eq!(got.len(), 4, "round {round}: every attempt settled");
        for s in &got {
            assert_eq!(
                answer_ip(s),
                "192.0.2.7",
                "round {round}: answered, not failed"
            );
        }
    }
    assert_eq!(server.conns.load(Ordering::Relaxed), 1, "one connection");
}

#[test]
fn the_requests_fields_read_right_whatever_table_the_server_keeps_for_them() {
    // 4,096: the default, they are added to it and then named by index. 0 and 100: too
    // small, they go as literals (a size update above the server's setting, or an index it
    // does not have, would be a compression error and fail every query of the connection).
    for table in [4096, 0, 100] {
        answered_in_rounds_with_table(table);
    }
}

#[test]
fn an_http_error_fails_the_server_for_that_query_only() {
    let server = doh(|_| Act::Answer, b"h2");
    let up = upstream_of(&server);
    let (mut r, _listener) = relay();
    assert!(r.start(item("err.example.test", &up)).is_ok());
    let got = settle(&mut r, 1, Duration::from_secs(5));
    match then(&got[0]) {
        Then::Next(UpstreamError::Transport(a, why)) => {
            assert_eq!(*a, server.addr);
            assert!(why.contains("500"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    assert!(r.start(item("fine.example.test", &up)).is_ok());
    let got = settle(&mut r, 1, Duration::from_secs(5));
    assert_eq!(answer_ip(&got[0]), "192.0.2.7");
    assert_eq!(
        server.conns.load(Ordering::Relaxed),
        1,
        "the connection stayed"
    );
}

#[test]
fn a_server_without_http2_fails_and_a_silent_one_times_out() {
    // No ALPN at all: the handshake succeeds, and only our check of ALPN `h2` refuses it.
    let old = doh(|_| Act::Answer, b"");
    let up = upstream_with_ca(&[url(&old)], Duration::from_secs(3), Some(old.ca.clone()));
    let (mut r, _listener) = relay();
    let t0 = Instant::now();
    assert!(r.start(item("h1.example.test", &up)).is_ok());
    let got = settle(&mut r, 1, Duration::from_secs(5));
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert!(
        matches!(then(&got[0]), Then::Next(UpstreamError::Transport(..))),
        "{:?}",
        then(&got[0])
    );
    assert!(r.kept.is_empty());

    let silent = doh(|_| Act::Ignore, b"h2");
    let up = upstream_with_ca(
        &[url(&silent)],
        Duration::from_millis(300),
        Some(silent.ca.clone()),
    );
    let t0 = Instant::now();
    assert!(r.start(item("slow.example.test", &up)).is_ok());
    let got = settle(&mut r, 1, Duration::from_secs(5));
    let waited = t0.elapsed();
    assert!(
        matches!(then(&got[0]), Then::Next(UpstreamError::Timeout(a)) if *a == silent.addr),
        "{:?}",
        then(&got[0])
    );
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    assert_eq!(r.kept.len(), 1, "an open connection outlives a slow answer");
}

#[test]
fn a_connection_closed_after_answering_hands_its_queries_back_for_the_same_server() {
    let server = doh(|n| if n == 0 { Act::Answer } else { Act::Close }, b"h2");
    let up = upstream_of(&server);
    let (mut r, _listener) = relay();
    assert!(r.start(item("first.example.test", &up)).is_ok());
    let got = settle(&mut r, 1, Duration::from_secs(5));
    assert_eq!(answer_ip(&got[0]), "192.0.2.7");
    assert!(r.start(item("second.example.test", &up)).is_ok());
    let got = settle(&mut r, 1, Duration::from_secs(5));
    assert_eq!(got.len(), 1);
    assert!(
        matches!(then(&got[0]), Then::Again(Step::Link)),
        "{:?}",
        then(&got[0])
    );
    assert!(r.kept.is_empty());
}

#[test]
fn a_server_that_sends_pings_and_reads_nothing_is_cut_off() {
    use tokio::io::AsyncWriteExt;
    // SETTINGS, then PINGs without end, never reading: each asks for an acknowledgement,
    // and what our side owes grows by one frame per frame read until it is cut off.
    let server = tls_serving(b"h2", |mut s| async move {
        if s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.is_err() {
            return;
        }
        let ping = [0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        let flood = ping.repeat(4096);
        // 68 KiB of PINGs per write, up to 48 MiB.
        for _ in 0..720 {
            if s.write_all(&flood).await.is_err() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let up = upstream_with_ca(
        &[url(&server)],
        Duration::from_secs(20),
        Some(server.ca.clone()),
    );
    let (mut r, _listener) = relay();
    assert!(r.start(item("ping.example.test", &up)).is_ok());
    let got = settle(&mut r, 1, Duration::from_secs(25));
    match then(&got[0]) {
        Then::Next(UpstreamError::Transport(a, why)) => {
            assert_eq!(*a, server.addr);
            assert!(why.contains("more frames to answer"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    assert!(r.kept.is_empty());
}
