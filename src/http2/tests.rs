//! The client against frames a server could send, written by hand: answers (padded, in
//! pieces, with CONTINUATION and trailers), failures of one stream, the server's limits and
//! windows, GOAWAY, and the violations that end the connection.

use super::client::{CONNECTION_WINDOW, Client, Error, Event, MAX_ANSWER};
use super::frame::{self, PREFACE};
use super::hpack;

/// A frame as a server sends it.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    frame::put_head(&mut out, payload.len(), kind, flags, stream);
    out.extend_from_slice(payload);
    out
}

/// A 200 response's header block with `content-type: application/dns-message`, coded.
fn ok_block() -> Vec<u8> {
    let coded = hpack::dns_message_coded();
    let mut b = vec![0x88, 0x5f, 0x80 | coded.len() as u8];
    b.extend_from_slice(&coded);
    b
}

fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    let mut p = Vec::new();
    for (id, v) in pairs {
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&v.to_be_bytes());
    }
    frame(frame::SETTINGS, 0, 0, &p)
}

/// The frames in what the client wrote (after its preface): (type, flags, stream, payload).
fn written(c: &mut Client<u32>) -> Vec<(u8, u8, u32, Vec<u8>)> {
    let out = std::mem::take(c.output());
    let mut b = out.strip_prefix(PREFACE).unwrap_or(&out);
    let mut frames = Vec::new();
    while let Some(h) = frame::head(b) {
        frames.push((
            h.kind,
            h.flags,
            h.stream,
            b[frame::HEAD_LEN..frame::HEAD_LEN + h.len].to_vec(),
        ));
        b = &b[frame::HEAD_LEN + h.len..];
    }
    assert!(b.is_empty(), "a partial frame written");
    frames
}

fn feed(c: &mut Client<u32>, bytes: &[u8]) -> Result<Vec<Event<u32>>, Error> {
    let mut events = Vec::new();
    let n = c.receive(bytes, &mut events)?;
    assert_eq!(n, bytes.len(), "whole frames all read");
    Ok(events)
}

fn client() -> Client<u32> {
    let mut c = Client::new("dns.example", "/dns-query");
    let first = written(&mut c);
    let kinds: Vec<u8> = first.iter().map(|f| f.0).collect();
    assert_eq!(kinds, [frame::SETTINGS, frame::WINDOW_UPDATE]);
    c
}

#[test]
fn a_query_is_one_headers_and_one_data_frame_and_its_answer_comes_back() {
    let mut c = client();
    c.ask(7, b"query-bytes".to_vec());
    let out = written(&mut c);
    assert_eq!(out.len(), 2);
    assert_eq!(
        (out[0].0, out[0].1, out[0].2),
        (frame::HEADERS, frame::END_HEADERS, 1)
    );
    assert_eq!(
        (out[1].0, out[1].1, out[1].2, out[1].3.as_slice()),
        (frame::DATA, frame::END_STREAM, 1, &b"query-bytes"[..])
    );
    // The answer in two DATA frames, the first padded.
    let mut bytes = frame(frame::HEADERS, frame::END_HEADERS, 1, &ok_block());
    bytes.extend(frame(frame::DATA, frame::PADDED, 1, b"\x03ansXXX"));
    bytes.extend(frame(frame::DATA, frame::END_STREAM, 1, b"wer"));
    assert_eq!(
        feed(&mut c, &bytes).unwrap(),
        [Event::Answer(7, b"answer".to_vec())]
    );
    assert!(c.is_empty());
    // A frame cut short is left for later.
    c.ask(8, b"q".to_vec());
    let head = frame(
        frame::HEADERS,
        frame::END_HEADERS | frame::END_STREAM,
        3,
        &ok_block(),
    );
    let mut events = Vec::new();
    assert_eq!(c.receive(&head[..head.len() - 1], &mut events).unwrap(), 0);
    assert!(events.is_empty());
    assert_eq!(c.receive(&head, &mut events).unwrap(), head.len());
    assert_eq!(events, [Event::Answer(8, Vec::new())]);
}

#[test]
fn continuation_informational_heads_and_trailers_are_read() {
    let mut c = client();
    c.ask(1, b"q".to_vec());
    written(&mut c);
    let block = ok_block();
    let (a, b) = block.split_at(2);
    let mut bytes = frame(frame::HEADERS, 0, 1, &[0x08, 0x03, b'1', b'0', b'3']);
    bytes.extend(frame(frame::CONTINUATION, frame::END_HEADERS, 1, &[]));
    bytes.extend(frame(
        frame::HEADERS,
        frame::PRIORITY_FLAG,
        1,
        &[[0; 5].as_slice(), a].concat(),
    ));
    bytes.extend(frame(frame::CONTINUATION, frame::END_HEADERS, 1, b));
    bytes.extend(frame(frame::DATA, 0, 1, b"body"));
    bytes.extend(frame(
        frame::HEADERS,
        frame::END_HEADERS | frame::END_STREAM,
        1,
        &[0x40, 1, b'x', 1, b'y'],
    ));
    assert_eq!(
        feed(&mut c, &bytes).unwrap(),
        [Event::Answer(1, b"body".to_vec())]
    );
}

#[test]
fn one_streams_failure_is_its_own_and_resets_it() {
    let mut c = client();
    for i in 0..4 {
        c.ask(i, b"q".to_vec());
    }
    written(&mut c);
    let mut bytes = frame(frame::HEADERS, frame::END_HEADERS, 1, &[0x8e]); // 500
    bytes.extend(frame(
        frame::HEADERS,
        frame::END_HEADERS | frame::END_STREAM,
        3,
        &[0x88, 0x0f, 0x10, 0x04, b't', b'e', b'x', b't'],
    ));
    bytes.extend(frame(
        frame::RST_STREAM,
        0,
        5,
        &frame::REFUSED_STREAM.to_be_bytes(),
    ));
    bytes.extend(frame(frame::RST_STREAM, 0, 7, &2u32.to_be_bytes()));
    let events = feed(&mut c, &bytes).unwrap();
    assert_eq!(
        events,
        [
            Event::Failed(0, "HTTP status 500".into()),
            Event::Failed(
                1,
                "answer of type \"text\", not application/dns-message".into()
            ),
            Event::Retry(2),
            Event::Failed(3, "stream reset by the server (HTTP/2 error 0x2)".into()),
        ]
    );
    // Only the stream the server left open is reset by us.
    let resets: Vec<(u32, Vec<u8>)> = written(&mut c)
        .into_iter()
        .filter(|f| f.0 == frame::RST_STREAM)
        .map(|f| (f.2, f.3))
        .collect();
    assert_eq!(resets, [(1, frame::CANCEL.to_be_bytes().to_vec())]);
    // Frames for streams closed since are ignored; one never opened ends the connection.
    assert!(
        feed(&mut c, &frame(frame::DATA, frame::END_STREAM, 1, b"late"))
            .unwrap()
            .is_empty()
    );
    assert!(feed(&mut c, &frame(frame::DATA, 0, 9, b"x")).is_err());
}

#[test]
fn an_answer_larger_than_a_dns_message_fails() {
    let mut c = client();
    c.ask(1, b"q".to_vec());
    written(&mut c);
    let mut bytes = frame(frame::HEADERS, frame::END_HEADERS, 1, &ok_block());
    let chunk = vec![0u8; 16_384];
    for _ in 0..(MAX_ANSWER / chunk.len() + 1) {
        bytes.extend(frame(frame::DATA, 0, 1, &chunk));
    }
    let events = feed(&mut c, &bytes).unwrap();
    assert_eq!(
        events,
        [Event::Failed(1, "answer larger than a DNS message".into())]
    );
}

#[test]
fn the_servers_stream_limit_and_windows_hold() {
    let mut c = client();
    // One stream at a time, ten bytes of window per stream.
    let mut s = settings(&[
        (frame::MAX_CONCURRENT_STREAMS, 1),
        (frame::INITIAL_WINDOW_SIZE, 10),
    ]);
    s.extend(frame(frame::PING, 0, 0, b"12345678"));
    assert!(feed(&mut c, &s).unwrap().is_empty());
    let acks: Vec<(u8, u8)> = written(&mut c).iter().map(|f| (f.0, f.1)).collect();
    assert_eq!(
        acks,
        [(frame::SETTINGS, frame::ACK), (frame::PING, frame::ACK)]
    );
    c.ask(1, vec![b'a'; 25]);
    c.ask(2, b"second".to_vec());
    let out = written(&mut c);
    assert_eq!(out.len(), 2, "one stream, ten bytes of its body");
    assert_eq!((out[1].0, out[1].1, out[1].3.len()), (frame::DATA, 0, 10));
    // More window: the rest of the body; the answer frees the stream for the second query.
    let more = frame(frame::WINDOW_UPDATE, 0, 1, &100u32.to_be_bytes());
    feed(&mut c, &more).unwrap();
    let out = written(&mut c);
    assert_eq!(
        (out[0].0, out[0].1, out[0].3.len()),
        (frame::DATA, frame::END_STREAM, 15)
    );
    let answer = frame(
        frame::HEADERS,
        frame::END_HEADERS | frame::END_STREAM,
        1,
        &ok_block(),
    );
    assert_eq!(
        feed(&mut c, &answer).unwrap(),
        [Event::Answer(1, Vec::new())]
    );
    let out = written(&mut c);
    assert_eq!((out[0].0, out[0].2), (frame::HEADERS, 3));
    assert_eq!(
        (out[1].0, out[1].1, out[1].3.as_slice()),
        (frame::DATA, frame::END_STREAM, &b"second"[..])
    );
}

#[test]
fn goaway_hands_back_what_the_server_will_not_process() {
    let mut c = client();
    feed(&mut c, &settings(&[(frame::MAX_CONCURRENT_STREAMS, 2)])).unwrap();
    for i in 0..3 {
        c.ask(i, b"q".to_vec());
    }
    written(&mut c);
    let mut goaway = 1u32.to_be_bytes().to_vec();
    goaway.extend(frame::NO_ERROR.to_be_bytes());
    let events = feed(&mut c, &frame(frame::GOAWAY, 0, 0, &goaway)).unwrap();
    assert_eq!(events, [Event::Retry(1), Event::Retry(2)]);
    assert!(c.spent() && !c.finished());
    let answer = frame(
        frame::HEADERS,
        frame::END_HEADERS | frame::END_STREAM,
        1,
        &ok_block(),
    );
    assert_eq!(
        feed(&mut c, &answer).unwrap(),
        [Event::Answer(0, Vec::new())]
    );
    assert!(c.finished());
}

#[test]
fn expired_queries_are_reset_and_the_connection_window_is_given_back() {
    let mut c = client();
    c.ask(1, b"q".to_vec());
    c.ask(2, b"q".to_vec());
    written(&mut c);
    let mut gone = Vec::new();
    c.cancel_where(|&e| e == 1, &mut gone);
    assert_eq!(gone, [1]);
    let out = written(&mut c);
    assert_eq!(
        (out[0].0, out[0].2, out[0].3.as_slice()),
        (frame::RST_STREAM, 1, &frame::CANCEL.to_be_bytes()[..])
    );
    // DATA still coming for the cancelled stream counts against the connection's window,
    // which is given back once half of it is used.
    let chunk = frame(frame::DATA, 0, 1, &[0u8; 16_384]);
    let n = (CONNECTION_WINDOW / 2) as usize / 16_384;
    feed(&mut c, &chunk.repeat(n)).unwrap();
    let out = written(&mut c);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].0, out[0].2), (frame::WINDOW_UPDATE, 0));
    assert_eq!(out[0].3, (n as u32 * 16_384).to_be_bytes());
    // Beyond the window, the connection is over.
    assert!(feed(&mut c, &chunk.repeat(2 * n + 1)).is_err());
}

#[test]
fn violations_end_the_connection() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "oversized frame",
            frame(frame::DATA, 0, 1, &vec![0; 16_385]),
        ),
        (
            "push",
            frame(frame::PUSH_PROMISE, frame::END_HEADERS, 1, &[0, 0, 0, 2]),
        ),
        ("data on stream 0", frame(frame::DATA, 0, 0, b"x")),
        (
            "headers on stream 0",
            frame(frame::HEADERS, frame::END_HEADERS, 0, &[0x88]),
        ),
        ("bad padding", frame(frame::DATA, frame::PADDED, 1, &[5, 1])),
        ("bad settings", frame(frame::SETTINGS, 0, 0, &[0, 4, 0])),
        (
            "window too large",
            settings(&[(frame::INITIAL_WINDOW_SIZE, 1 << 31)]),
        ),
        (
            "frame size too small",
            settings(&[(frame::MAX_FRAME_SIZE, 100)]),
        ),
        ("short ping", frame(frame::PING, 0, 0, b"1234")),
        (
            "window update of 0",
            frame(frame::WINDOW_UPDATE, 0, 0, &[0; 4]),
        ),
        (
            "continuation alone",
            frame(frame::CONTINUATION, frame::END_HEADERS, 1, &[0x88]),
        ),
        (
            "interrupted header block",
            [
                frame(frame::HEADERS, 0, 1, &[0x88]),
                frame(frame::PING, 0, 0, &[0; 8]),
            ]
            .concat(),
        ),
        (
            "dynamic index",
            frame(frame::HEADERS, frame::END_HEADERS, 1, &[0xbe]),
        ),
        (
            "even stream",
            frame(frame::HEADERS, frame::END_HEADERS, 2, &[0x88]),
        ),
    ];
    for (what, bytes) in cases {
        let mut c = client();
        c.ask(1, b"q".to_vec());
        let mut events = Vec::new();
        assert!(c.receive(&bytes, &mut events).is_err(), "{what}");
    }
}

#[test]
fn a_body_waits_for_the_stream_and_connection_windows_and_a_larger_initial_window() {
    let mut c = client();
    // The server's initial stream window, 10, applies to streams already open too.
    feed(&mut c, &settings(&[(frame::INITIAL_WINDOW_SIZE, 10)])).unwrap();
    written(&mut c);
    c.ask(1, vec![b'a'; 25]);
    let out = written(&mut c);
    assert_eq!(out[1].3.len(), 10);
    feed(&mut c, &settings(&[(frame::INITIAL_WINDOW_SIZE, 100)])).unwrap();
    let out = written(&mut c);
    let data: Vec<(u8, usize)> = out
        .iter()
        .filter(|f| f.0 == frame::DATA)
        .map(|f| (f.1, f.3.len()))
        .collect();
    assert_eq!(data, [(frame::END_STREAM, 15)]);

    // The connection's window (65,535 before the server's updates), in frames of at most
    // 16 KiB; the stream's own window must open too.
    let mut c = client();
    c.ask(2, vec![b'b'; 70_000]);
    let sizes: Vec<usize> = written(&mut c)
        .iter()
        .filter(|f| f.0 == frame::DATA)
        .map(|f| f.3.len())
        .collect();
    assert_eq!(sizes, [16_384, 16_384, 16_384, 16_383]);
    feed(
        &mut c,
        &frame(frame::WINDOW_UPDATE, 0, 0, &10_000u32.to_be_bytes()),
    )
    .unwrap();
    assert!(
        written(&mut c).is_empty(),
        "the stream's window is still shut"
    );
    feed(
        &mut c,
        &frame(frame::WINDOW_UPDATE, 0, 1, &10_000u32.to_be_bytes()),
    )
    .unwrap();
    let out = written(&mut c);
    assert_eq!(
        (out[0].0, out[0].1, out[0].3.len()),
        (frame::DATA, frame::END_STREAM, 70_000 - 65_535)
    );
}

#[test]
fn a_reset_from_the_server_is_not_answered_with_a_reset() {
    let mut c = client();
    feed(&mut c, &settings(&[(frame::INITIAL_WINDOW_SIZE, 5)])).unwrap();
    c.ask(1, vec![b'a'; 20]);
    written(&mut c);
    // Half sent, the server resets it: no reset back (RFC 9113 §5.4.2).
    let rst = frame(frame::RST_STREAM, 0, 1, &frame::CANCEL.to_be_bytes());
    let events = feed(&mut c, &rst).unwrap();
    assert!(matches!(events.as_slice(), [Event::Failed(1, _)]));
    assert!(written(&mut c).is_empty());
    // Half sent, the server answers: our side is reset with NO_ERROR (§8.1).
    c.ask(2, vec![b'a'; 20]);
    written(&mut c);
    let answer = frame(
        frame::HEADERS,
        frame::END_HEADERS | frame::END_STREAM,
        3,
        &ok_block(),
    );
    assert_eq!(
        feed(&mut c, &answer).unwrap(),
        [Event::Answer(2, Vec::new())]
    );
    let out = written(&mut c);
    assert_eq!(
        (out[0].0, out[0].2, out[0].3.as_slice()),
        (frame::RST_STREAM, 3, &frame::NO_ERROR.to_be_bytes()[..])
    );
}

#[test]
fn a_cancelled_stream_frees_its_place_for_a_queued_query() {
    let mut c = client();
    feed(&mut c, &settings(&[(frame::MAX_CONCURRENT_STREAMS, 1)])).unwrap();
    c.ask(1, b"q".to_vec());
    c.ask(2, b"q".to_vec());
    written(&mut c);
    let mut gone = Vec::new();
    c.cancel_where(|&e| e == 1, &mut gone);
    assert_eq!(gone, [1]);
    let kinds: Vec<(u8, u32)> = written(&mut c).iter().map(|f| (f.0, f.2)).collect();
    assert_eq!(
        kinds,
        [
            (frame::RST_STREAM, 1),
            (frame::HEADERS, 3),
            (frame::DATA, 3)
        ]
    );
    assert_eq!(c.len(), 1);
}

/// How the fixed fields of a request's header block went: `plain` (a size update to 0 and
/// literals), `index` (updates to 0 and to their size, literals added to the table) or
/// `indexed` (an update to their size, then indices).
fn how(block: &[u8]) -> &'static str {
    match block {
        [0x20, 0x83, ..] => "plain",
        [0x20, 0x3f, _, _, 0x83, ..] => "index",
        [0x3f, _, _, 0x83, ..] => "indexed",
        _ => panic!("unexpected block {block:02x?}"),
    }
}

/// Asks a query and returns how its header block went.
fn ask_how(c: &mut Client<u32>, item: u32) -> &'static str {
    c.ask(item, b"q".to_vec());
    let out = written(c);
    let head = out.iter().find(|f| f.0 == frame::HEADERS).unwrap();
    how(&head.3)
}

#[test]
fn requests_index_their_fields_after_the_servers_settings_and_its_ack() {
    let mut c = client();
    assert_eq!(ask_how(&mut c, 1), "plain", "before the server's SETTINGS");
    feed(&mut c, &settings(&[])).unwrap();
    c.ask(2, b"q".to_vec());
    let out = written(&mut c);
    let kinds: Vec<(u8, u8)> = out.iter().map(|f| (f.0, f.1)).collect();
    assert_eq!(
        kinds[..2],
        [
            (frame::SETTINGS, frame::ACK),
            (frame::HEADERS, frame::END_HEADERS)
        ],
        "the acknowledgement goes before the first block that adds to the table"
    );
    assert_eq!(how(&out[1].3), "index");
    assert_eq!(ask_how(&mut c, 3), "indexed");
    assert_eq!(ask_how(&mut c, 4), "indexed");
}

#[test]
fn a_server_table_of_0_keeps_literals_through_later_settings_without_one() {
    let mut c = client();
    feed(&mut c, &settings(&[(frame::HEADER_TABLE_SIZE, 0)])).unwrap();
    assert_eq!(ask_how(&mut c, 1), "plain");
    // Its setting stands until it sends another.
    feed(&mut c, &settings(&[(frame::MAX_CONCURRENT_STREAMS, 50)])).unwrap();
    assert_eq!(ask_how(&mut c, 2), "plain");
    feed(&mut c, &settings(&[(frame::HEADER_TABLE_SIZE, 4096)])).unwrap();
    assert_eq!(ask_how(&mut c, 3), "index");
    assert_eq!(ask_how(&mut c, 4), "indexed");
}

#[test]
fn a_table_lowered_and_raised_in_one_settings_frame_signals_the_lower_size_first() {
    let mut c = client();
    feed(&mut c, &settings(&[])).unwrap();
    assert_eq!(ask_how(&mut c, 1), "index");
    // A decoder applying both in order takes 100 first (below the entries' size): the next
    // block must start with an update to at most 100, and adds the entries again.
    feed(
        &mut c,
        &settings(&[
            (frame::HEADER_TABLE_SIZE, 100),
            (frame::HEADER_TABLE_SIZE, 4096),
        ]),
    )
    .unwrap();
    assert_eq!(ask_how(&mut c, 2), "index");
    assert_eq!(ask_how(&mut c, 3), "indexed");
}

#[test]
fn buffers_of_settled_queries_and_answers_are_reused_and_large_ones_are_not_kept() {
    let mut c = client();
    let answer_of = |c: &mut Client<u32>, stream: u32, data: &[u8]| -> Vec<u8> {
        let mut bytes = frame(frame::HEADERS, frame::END_HEADERS, stream, &ok_block());
        bytes.extend(frame(frame::DATA, frame::END_STREAM, stream, data));
        match feed(c, &bytes).unwrap().pop() {
            Some(Event::Answer(_, a)) => a,
            other => panic!("no answer: {other:?}"),
        }
    };
    let mut body = c.body_buffer();
    body.extend_from_slice(b"query-bytes");
    let body_at = body.as_ptr();
    c.ask(1, body);
    written(&mut c);
    let answer = answer_of(&mut c, 1, b"answer");
    assert_eq!(answer, b"answer");
    let answer_at = answer.as_ptr();
    c.give_back(answer);
    let mut body = c.body_buffer();
    assert!(body.is_empty());
    assert_eq!(body.as_ptr(), body_at, "the closed stream's body, reused");
    body.extend_from_slice(b"q2");
    c.ask(2, body);
    written(&mut c);
    let answer = answer_of(&mut c, 3, b"answer2");
    assert_eq!(answer, b"answer2");
    assert_eq!(answer.as_ptr(), answer_at, "the answer given back, reused");
    // A large answer goes back to the allocator.
    let big = vec![0u8; 10_000];
    c.give_back(big);
    c.ask(3, b"q3".to_vec());
    written(&mut c);
    let answer = answer_of(&mut c, 5, b"a3");
    assert!(answer.capacity() < 10_000);
}
