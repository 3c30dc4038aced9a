//! `sinkhole pause DURATION`, `sinkhole resume`, `sinkhole status`: the running server's
//! HTTP API (`/api/v1/pause|resume|status`), at the first `[http] listen` address of the
//! config (a wildcard address is reached on loopback), with its `http.token`.
//!
//! Exit codes: 0 done, 1 the server cannot be reached or refused the call, 2 a config
//! without `[http] listen` or a bad duration.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::common::{Error, load_config};
use crate::config::parse_duration;
use crate::pipeline::pause::MAX_PAUSE;

/// What to ask the running server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Control {
    /// Pause blocking for this long.
    Pause(String),
    /// End a pause.
    Resume,
    /// Show whether blocking is on.
    Status,
}

/// Runs one control command against the server of `config`.
pub(super) fn run(what: Control, config: Option<PathBuf>) -> Result<(), Error> {
    let cfg = load_config(config.as_deref())?;
    let Some(&listen) = cfg.http.listen.first() else {
        return Err(Error::usage(format_args!(
            "{}: [http] listen is not set, so the server has no API to talk to",
            cfg.file
        )));
    };
    let base = format!("http://{}", reachable(listen));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let auth = cfg.http.token.as_ref().map(|t| format!("Bearer {t}"));
    let (path, body) = match &what {
        Control::Pause(d) => {
            let ok = parse_duration(d).is_some_and(|d| !d.is_zero() && d <= MAX_PAUSE);
            if !ok {
                return Err(Error::usage(format_args!(
                    "{d:?}: write a duration from 1s to 7d, such as 30s, 5m or 2h"
                )));
            }
            (
                "/api/v1/pause",
                Some(serde_json::json!({ "duration": d }).to_string()),
            )
        }
        Control::Resume => ("/api/v1/resume", Some(String::new())),
        Control::Status => ("/api/v1/status", None),
    };
    let url = format!("{base}{path}");
    let result = match body {
        Some(b) => {
            let mut r = agent.post(&url).header("Content-Type", "application/json");
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.send(b)
        }
        None => {
            let mut r = agent.get(&url);
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.call()
        }
    };
    let mut resp = result
        .map_err(|e| Error::runtime(format_args!("cannot reach the server at {base}: {e}")))?;
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_string()
        .map_err(|e| Error::runtime(format_args!("{url}: cannot read the answer: {e}")))?;
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    if status != 200 {
        let msg = v["error"].as_str().unwrap_or(text.as_str());
        return Err(Error::runtime(format_args!("{url}: {status}: {msg}")));
    }
    print_status(&v);
    Ok(())
}

/// `0.0.0.0:8080` is reached at `127.0.0.1:8080` (`[::]` at `[::1]`).
fn reachable(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), a.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), a.port())
        }
        _ => a,
    }
}

/// `blocking: enabled`, or `blocking: paused, 4m 59s left (until …)`.
fn print_status(v: &serde_json::Value) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if v["paused"].as_bool() == Some(true) {
        let left = v["pause_remaining_secs"].as_u64().unwrap_or(0);
        let _ = writeln!(
            out,
            "blocking: paused, {} left (until {})",
            human(left),
            v["paused_until"].as_str().unwrap_or("?")
        );
    } else {
        let _ = writeln!(out, "blocking: enabled");
    }
    if let Some(r) = v["rules"].as_u64() {
        let _ = writeln!(out, "rules: {r}");
    }
}

/// `4m 59s`, `2h 0m 5s`, `42s`.
fn human(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s}s"),
        _ => format!("{h}h {m}m {s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_are_reached_on_loopback_and_times_read_well() {
        assert_eq!(
            reachable("0.0.0.0:8080".parse().unwrap()),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            reachable("[::]:80".parse().unwrap()),
            "[::1]:80".parse().unwrap()
        );
        assert_eq!(
            reachable("192.0.2.1:80".parse().unwrap()),
            "192.0.2.1:80".parse().unwrap()
        );
        assert_eq!(human(299), "4m 59s");
        assert_eq!(human(42), "42s");
        assert_eq!(human(7205), "2h 0m 5s");
    }
}
