//! Lists from URLs against a real HTTP server on loopback (a small std server the test
//! starts): conditional requests (ETag, If-Modified-Since → 304), the failure cases (500,
//! redirect loop, body cut, HTML page, shrink guard) keeping the last good copy, and the
//! running server downloading at start and serving the cached copy without network.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use sinkhole::blocklist::fetch::{FetchError, Updated, cache_path, update};

use crate::fake_upstream::{FakeUpstream, a};
use crate::harness::{TestServer, first_answer};

/// A tiny HTTP/1.1 server: one thread per connection, `Connection: close`.
struct Http {
    addr: SocketAddr,
    body: Arc<Mutex<String>>,
    not_modified: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
}

impl Http {
    fn start(body: &str) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let s = Self {
            addr,
            body: Arc::new(Mutex::new(body.to_string())),
            not_modified: Arc::default(),
            down: Arc::default(),
        };
        let (body, nm, down) = (s.body.clone(), s.not_modified.clone(), s.down.clone());
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut c) = conn else { continue };
                if down.load(Ordering::SeqCst) {
                    continue; // dropped: connection closed without an answer
                }
                let (body, nm) = (body.clone(), nm.clone());
                std::thread::spawn(move || {
                    let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut r = BufReader::new(c.try_clone().unwrap());
                    let mut first = String::new();
                    let _ = r.read_line(&mut first);
                    let mut headers = HashMap::new();
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                        }
                    }
                    let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let body = body.lock().unwrap().clone();
                    let etag = format!("\"{}\"", body.len());
                    let resp = match path.as_str() {
                        "/list" if headers.get("if-none-match") == Some(&etag) => {
                            nm.fetch_add(1, Ordering::SeqCst);
                            "HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n".to_string()
                        }
                        "/list" => format!(
                            "HTTP/1.1 200 OK\r\nETag: {etag}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        ),
                        "/lm" if headers.get("if-modified-since").map(String::as_str)
                            == Some("Wed, 21 Oct 2015 07:28:00 GMT") =>
                        {
                            nm.fetch_add(1, Ordering::SeqCst);
                            "HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n".to_string()
                        }
                        "/lm" => format!(
                            "HTTP/1.1 200 OK\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        ),
                        "/500" => "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nConnection: close\r\n\r\noops".into(),
                        "/loop" => "HTTP/1.1 302 Found\r\nLocation: /loop\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
                        "/cut" => format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                            body.len() + 5000,
                            body
                        ),
                        "/html" => {
                            let page = "<!DOCTYPE html><html><body>Log in to the hotel wifi</body></html>";
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                                page.len()
                            )
                        }
                        "/html-as-text" => {
                            let page = "<!doctype html>\n<html><body>not a list</body></html>\n";
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                                page.len()
                            )
                        }
                        _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
                    };
                    let _ = c.write_all(resp.as_bytes());
                });
            }
        });
        s
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

fn list_of(n: usize) -> String {
    let mut s = String::from("# test list\n");
    for i in 0..n {
        s.push_str(&format!("blocked{i}.example.com\n"));
    }
    s
}

fn get(url: &str, dir: &Path) -> Result<Updated, FetchError> {
    update(url, dir, 50, Duration::from_secs(10), &mut |_, _| {})
}

#[test]
fn conditional_requests_and_failures_keep_the_last_good_copy() {
    let http = Http::start(&list_of(100));
    let dir = tempfile::tempdir().unwrap();
    let url = http.url("/list");
    assert_eq!(get(&url, dir.path()).unwrap(), Updated::Stored(100));
    let cached = cache_path(dir.path(), &url);
    assert_eq!(std::fs::read_to_string(&cached).unwrap(), list_of(100));

    // ETag → If-None-Match → 304.
    assert_eq!(get(&url, dir.path()).unwrap(), Updated::NotModified);
    assert_eq!(http.not_modified.load(Ordering::SeqCst), 1);

    // Last-Modified → If-Modified-Since → 304.
    let lm = http.url("/lm");
    assert_eq!(get(&lm, dir.path()).unwrap(), Updated::Stored(100));
    assert_eq!(get(&lm, dir.path()).unwrap(), Updated::NotModified);
    assert_eq!(http.not_modified.load(Ordering::SeqCst), 2);

    // A growth is applied; a shrink by more than max_shrink is not.
    *http.body.lock().unwrap() = list_of(120);
    assert_eq!(get(&url, dir.path()).unwrap(), Updated::Stored(120));
    *http.body.lock().unwrap() = list_of(10);
    let e = get(&url, dir.path()).unwrap_err();
    assert!(
        matches!(
            e,
            FetchError::Shrunk {
                old: 120,
                new: 10,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("keeping the last good copy"), "{e}");
    assert_eq!(std::fs::read_to_string(&cached).unwrap(), list_of(120));
    // With max_shrink = 100 the same update goes through.
    assert_eq!(
        update(
            &url,
            dir.path(),
            100,
            Duration::from_secs(10),
            &mut |_, _| {}
        )
        .unwrap(),
        Updated::Stored(10)
    );

    for (path, want) in [
        ("/500", "500"),
        ("/loop", "redirect"),
        ("/cut", "cut short"),
        ("/html", "HTML"),
        ("/html-as-text", "HTML"),
    ] {
        let u = http.url(path);
        let e = get(&u, dir.path()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with(&u), "{path}: names the source: {msg}");
        assert!(
            msg.to_lowercase().contains(&want.to_lowercase()),
            "{path}: {msg}"
        );
        assert!(
            !cache_path(dir.path(), &u).exists(),
            "{path}: nothing cached"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn server_downloads_at_start_and_serves_the_cache_without_network() {
    let up = FakeUpstream::start(vec![a("blocked3.example.com.", "192.0.2.3", 300)]).await;
    let http = Http::start(&list_of(5));
    let cache = tempfile::tempdir().unwrap();
    let toml = format!(
        "[upstream]\nservers = [\"{}\"]\n[cache]\nmax_entries = 0\n[blocking]\nlists = [{{ source = \"{}\" }}]\nrefresh = \"1h\"\ncache_dir = \"{}\"\n",
        up.addr,
        http.url("/list"),
        cache.path().display()
    );
    let s = TestServer::start(&toml, &[]).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while first_answer(&s.query("blocked3.example.com.", RecordType::A).await) != "0.0.0.0" {
        assert!(Instant::now() < deadline, "URL list never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(s);

    // The list server goes away: a new start serves the cached copy at once.
    http.down.store(true, Ordering::SeqCst);
    let s = TestServer::start(&toml, &[]).await;
    assert_eq!(
        first_answer(&s.query("blocked3.example.com.", RecordType::A).await),
        "0.0.0.0"
    );
}

#[test]
fn lists_update_downloads_and_reports_failures() {
    let http = Http::start(&list_of(7));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        format!(
            "[blocking]\nlists = [\"{}\", \"{}\"]\ncache_dir = \"cache\"\n",
            http.url("/list"),
            http.url("/500")
        ),
    )
    .unwrap();
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_sinkhole"))
            .args(["lists", "update", "--config", "c.toml"])
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let out = run();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(out.status.code(), Some(1), "{o}{e}");
    assert!(
        o.contains(&format!("{}: updated, 7 rules", http.url("/list"))),
        "{o}"
    );
    assert!(
        e.contains(&format!("{}: download failed", http.url("/500"))),
        "{e}"
    );
    assert!(cache_path(&dir.path().join("cache"), &http.url("/list")).exists());
    let out = run();
    let o = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        o.contains(&format!("{}: not modified", http.url("/list"))),
        "{o}"
    );
}
