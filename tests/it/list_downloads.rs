//! URL list downloads against a real HTTP server on loopback: redirects are followed (http
//! to http here; https to http is refused, see the unit test in `blocklist::fetch`), and a
//! big list is streamed to the cache folder, not held in memory. See: #10.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::Duration;

use sinkhole::blocklist::fetch::{Updated, cache_path, update};

use crate::harness::bin;

/// One 1 KiB block of a generated list: a rule line and a comment line.
fn block() -> Vec<u8> {
    let mut b = b"r.big.example\n#".to_vec();
    b.resize(1023, b'x');
    b.push(b'\n');
    b
}

/// A tiny HTTP/1.1 server: `/big/N` streams a generated list of N KiB (never held whole),
/// `/small` is a 3-rule list, `/moved` and `/moved-abs` redirect to it.
fn start() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            std::thread::spawn(move || {
                let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
                let mut r = BufReader::new(c.try_clone().unwrap());
                let mut first = String::new();
                let _ = r.read_line(&mut first);
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                }
                let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
                let small = "a.small.test\nb.small.test\nc.small.test\n";
                let head = match path.as_str() {
                    "/small" => format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{small}",
                        small.len()
                    ),
                    "/moved" => "HTTP/1.1 301 Moved Permanently\r\nLocation: /small\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
                    "/moved-abs" => format!("HTTP/1.1 302 Found\r\nLocation: http://{addr}/moved\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
                    p if p.starts_with("/big/") => {
                        let kib: usize = p[5..].parse().unwrap_or(0);
                        let _ = c.write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                kib * 1024
                            )
                            .as_bytes(),
                        );
                        let chunk = block().repeat(64);
                        for _ in 0..kib / 64 {
                            if c.write_all(&chunk).is_err() {
                                return;
                            }
                        }
                        return;
                    }
                    _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
                };
                let _ = c.write_all(head.as_bytes());
            });
        }
    });
    addr
}

#[test]
fn r10_redirects_within_http_are_followed_and_cached_under_the_configured_url() {
    let addr = start();
    let dir = tempfile::tempdir().unwrap();
    for path in ["/moved", "/moved-abs"] {
        let url = format!("http://{addr}{path}");
        let got = update(
            &url,
            dir.path(),
            50,
            Duration::from_secs(10),
            &mut |_, _| {},
        );
        assert_eq!(got.unwrap(), Updated::Stored(3), "{path}");
        let cached = std::fs::read_to_string(cache_path(dir.path(), &url)).unwrap();
        assert_eq!(cached, "a.small.test\nb.small.test\nc.small.test\n");
    }
}

/// Peak resident memory (VmHWM, KiB) of `sinkhole lists update` downloading `url`, sampled
/// from /proc until it exits.
fn update_peak_kib(url: &str, dir: &Path) -> u64 {
    std::fs::write(
        dir.join("c.toml"),
        format!("[blocking]\nlists = [\"{url}\"]\ncache_dir = \"cache\"\n"),
    )
    .unwrap();
    let mut child = bin()
        .args(["lists", "update", "--config", "c.toml"])
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(s) = std::fs::read_to_string(&status)
            && let Some(kib) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kib);
        }
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "lists update failed for {url}");
            return peak;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn r10_a_big_download_is_streamed_to_disk_in_bounded_memory() {
    let addr = start();
    let small_dir = tempfile::tempdir().unwrap();
    let small = update_peak_kib(&format!("http://{addr}/big/1024"), small_dir.path());
    let big_dir = tempfile::tempdir().unwrap();
    let url = format!("http://{addr}/big/{}", 96 * 1024);
    let big = update_peak_kib(&url, big_dir.path());
    let cached = cache_path(&big_dir.path().join("cache"), &url);
    assert_eq!(std::fs::metadata(&cached).unwrap().len(), 96 << 20);
    eprintln!("peak RSS: {small} KiB (1 MiB list), {big} KiB (96 MiB list)");
    // 95 MiB more list must not cost (anywhere near) 95 MiB more memory.
    assert!(
        big < small + 24 * 1024,
        "peak RSS {big} KiB for a 96 MiB list vs {small} KiB for 1 MiB"
    );
    // No temporary file left in the cache folder.
    let left: Vec<_> = std::fs::read_dir(big_dir.path().join("cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
