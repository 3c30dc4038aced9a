//! `[cache]`'s resilience keys: `serve_stale` (how long past expiry an answer is kept to be
//! served when every upstream fails, RFC 8767), `prefetch` (refresh popular answers before
//! they expire) and `failure_ttl_s` (how long a failed name answers SERVFAIL at once,
//! RFC 9520). The size and TTL bounds are checked with the rest of the config in `mod.rs`.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::parse_secs;

/// Longest `cache.serve_stale`: RFC 8767 §5 suggests a stale window of one to three days
/// and at most seven.
pub const MAX_SERVE_STALE: Duration = Duration::from_secs(7 * 86_400);

/// Longest `cache.failure_ttl_s`: RFC 9520 §3.2, a failure MUST NOT be cached for longer
/// than five minutes.
pub const MAX_FAILURE_TTL_S: u64 = 300;

/// `cache.serve_stale` as written: `"1d"`, `"12h"`, `"0"`, `"off"`, or a number of seconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawStale {
    /// Seconds.
    Number(i64),
    /// A duration (`30m`, `24h`, `7d`, bare seconds) or `off`.
    Text(String),
}

impl Default for RawStale {
    fn default() -> Self {
        Self::Text("1d".into())
    }
}

/// The `[cache]` resilience part of the config's validator.
impl super::Validator<'_> {
    /// `cache.serve_stale`: zero when off.
    pub(super) fn serve_stale(&mut self, raw: &Spanned<RawStale>) -> Duration {
        let secs = match raw.get_ref() {
            RawStale::Number(n) => u64::try_from(*n).ok(),
            RawStale::Text(t) if t.trim().eq_ignore_ascii_case("off") => Some(0),
            RawStale::Text(t) => parse_secs(t),
        };
        match secs.map(Duration::from_secs) {
            Some(d) if d <= MAX_SERVE_STALE => d,
            got => {
                let shown = match raw.get_ref() {
                    RawStale::Number(n) => n.to_string(),
                    RawStale::Text(t) => format!("{t:?}"),
                };
                let why = if got.is_some() {
                    ": longer than 7d (RFC 8767 §5)"
                } else {
                    ""
                };
                self.err(
                    raw.span(),
                    "cache.serve_stale",
                    format!(
                        "{shown}{why}: write a duration such as \"1d\", \"12h\" or \"30m\" (at most 7d), or \"off\""
                    ),
                );
                Duration::ZERO
            }
        }
    }

    /// `cache.failure_ttl_s`: zero when off.
    pub(super) fn failure_ttl(&mut self, raw: &Spanned<u64>) -> Duration {
        let s = *raw.get_ref();
        if s > MAX_FAILURE_TTL_S {
            self.err(
                raw.span(),
                "cache.failure_ttl_s",
                format!(
                    "{s}: at most {MAX_FAILURE_TTL_S} seconds (RFC 9520 §3.2), or 0 to cache no failures"
                ),
            );
            return Duration::ZERO;
        }
        Duration::from_secs(s)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::time::Duration;

    fn cache(text: &str) -> Result<crate::config::CacheConfig, String> {
        Config::parse(&format!("[cache]\n{text}"), "t.toml", None)
            .map(|c| c.cache)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_keep_a_day_of_stale_answers_prefetch_and_five_second_failures() {
        let c = Config::parse("", "t.toml", None).unwrap().cache;
        assert_eq!(c.serve_stale, Duration::from_secs(86_400));
        assert!(c.prefetch);
        assert_eq!(c.failure_ttl, Duration::from_secs(5));
    }

    #[test]
    fn serve_stale_takes_durations_numbers_and_off() {
        for (v, secs) in [
            ("\"12h\"", 43_200),
            ("\"30m\"", 1800),
            ("\"7d\"", 604_800),
            ("\"0\"", 0),
            ("\"off\"", 0),
            ("\"OFF\"", 0),
            ("0", 0),
            ("3600", 3600),
        ] {
            let c = cache(&format!("serve_stale = {v}\n")).unwrap();
            assert_eq!(c.serve_stale, Duration::from_secs(secs), "{v}");
        }
    }

    #[test]
    fn bad_values_name_file_line_and_key() {
        for (text, start) in [
            (
                "serve_stale = \"soon\"\n",
                "t.toml:2:15: cache.serve_stale: \"soon\": write",
            ),
            (
                "serve_stale = \"8d\"\n",
                "t.toml:2:15: cache.serve_stale: \"8d\": longer than 7d",
            ),
            (
                "serve_stale = -1\n",
                "t.toml:2:15: cache.serve_stale: -1: write",
            ),
            (
                "failure_ttl_s = 301\n",
                "t.toml:2:17: cache.failure_ttl_s: 301: at most 300",
            ),
        ] {
            let m = cache(&format!("max_entries = 10\n{text}")).unwrap_err();
            assert!(m.starts_with(&start.replace(":2:", ":3:")), "{m}");
        }
        let m = cache("prefetch = \"yes\"\n").unwrap_err();
        assert!(m.starts_with("t.toml:2:"), "{m}");
    }

    #[test]
    fn failure_ttl_and_prefetch_can_be_turned_off() {
        let c = cache("failure_ttl_s = 0\nprefetch = false\n").unwrap();
        assert_eq!(c.failure_ttl, Duration::ZERO);
        assert!(!c.prefetch);
    }
}
