//! The HTTP side of URL lists: a GET that follows redirects itself, so that each hop is
//! checked. A redirect from `https://` to `http://` is refused (the list would travel
//! unprotected), as is one to any other scheme; at most five are followed.

use thiserror::Error;

/// Most redirects followed for one download.
pub const MAX_REDIRECTS: usize = 5;

/// Why a GET gave no response to use.
#[derive(Debug, Error)]
pub enum GetError {
    /// A redirect from `https://` to `http://`.
    #[error(
        "redirected from https to http ({to}); refused, a list must not lose its encryption on the way"
    )]
    Downgrade {
        /// Where the redirect pointed.
        to: String,
    },
    /// A redirect to something that is not an `http://` or `https://` URL.
    #[error("redirected to {to:?}, not an http or https URL")]
    Scheme {
        /// Where the redirect pointed.
        to: String,
    },
    /// A redirect status without a `Location` header.
    #[error("HTTP status {status} (a redirect) without a Location header")]
    NoLocation {
        /// The status.
        status: u16,
    },
    /// More than [`MAX_REDIRECTS`] redirects.
    #[error("more than {MAX_REDIRECTS} redirects (a redirect loop?)")]
    TooManyRedirects,
    /// Connection, TLS, timeout, or a malformed response.
    #[error(transparent)]
    Transport(#[from] ureq::Error),
}

/// Where a redirect from `from` to `location` (a `Location` header) leads: the absolute URL,
/// or why it is not followed. A redirect from `https://` to `http://` is refused: the list
/// would then travel unprotected, open to change on the way.
pub fn redirect_target(from: &str, location: &str) -> Result<String, GetError> {
    let loc = location.trim();
    let (scheme, rest) = from.split_once("://").unwrap_or(("", from));
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let path_end = rest.find(['?', '#']).unwrap_or(rest.len());
    let is_scheme = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    };
    let target = match loc.split_once("://") {
        Some((s, _)) if is_scheme(s) => loc.to_string(),
        _ if loc.starts_with("//") => format!("{scheme}:{loc}"),
        _ if loc.starts_with('/') => format!("{scheme}://{}{loc}", &rest[..host_end]),
        _ => {
            let path = &rest[host_end..path_end];
            let folder = path.rfind('/').map_or("/", |i| &path[..=i]);
            format!("{scheme}://{}{folder}{loc}", &rest[..host_end])
        }
    };
    let target = target.split('#').next().unwrap_or_default().to_string();
    let to = target
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase());
    match (scheme.to_ascii_lowercase().as_str(), to.as_deref()) {
        ("https", Some("http")) => Err(GetError::Downgrade { to: target }),
        (_, Some("http" | "https")) => Ok(target),
        _ => Err(GetError::Scheme { to: target }),
    }
}

/// Sends the GET for `url`, following redirects under [`redirect_target`]'s policy; the
/// conditional headers (`If-None-Match`, `If-Modified-Since`) go with every hop. The
/// agent must not follow redirects itself (`max_redirects(0)`).
pub(crate) fn get(
    agent: &ureq::Agent,
    url: &str,
    etag: Option<&str>,
    modified: Option<&str>,
) -> Result<ureq::http::Response<ureq::Body>, GetError> {
    let mut at = url.to_string();
    for _ in 0..=MAX_REDIRECTS {
        let mut req = agent.get(&at);
        if let Some(e) = etag {
            req = req.header("If-None-Match", e);
        }
        if let Some(m) = modified {
            req = req.header("If-Modified-Since", m);
        }
        let resp = req.call()?;
        let status = resp.status().as_u16();
        if !matches!(status, 301 | 302 | 303 | 307 | 308) {
            return Ok(resp);
        }
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or(GetError::NoLocation { status })?;
        at = redirect_target(&at, location)?;
    }
    Err(GetError::TooManyRedirects)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r10_https_is_never_redirected_to_http() {
        // See: #10
        let e = redirect_target("https://l.example/a.txt", "http://l.example/a.txt").unwrap_err();
        assert!(matches!(e, GetError::Downgrade { .. }), "{e}");
        assert!(e.to_string().contains("from https to http"), "{e}");
        assert!(redirect_target("HTTPS://l.example/a", "HTTP://m.example/a").is_err());
        assert!(redirect_target("https://l.example/a", "//m.example/b").is_ok());
        assert!(redirect_target("https://l.example/a", "ftp://m.example/b").is_err());
        for (from, loc, want) in [
            (
                "http://l.example/a",
                "https://m.example/b#x",
                "https://m.example/b",
            ),
            (
                "https://l.example/x/a.txt",
                "//m.example/b",
                "https://m.example/b",
            ),
            (
                "https://l.example/x/a.txt?q=1",
                "/b.txt",
                "https://l.example/b.txt",
            ),
            (
                "https://l.example/x/a.txt",
                "b.txt?v=2",
                "https://l.example/x/b.txt?v=2",
            ),
            ("https://l.example", "b.txt", "https://l.example/b.txt"),
            (
                "http://l.example/x/",
                "b?u=http://y",
                "http://l.example/x/b?u=http://y",
            ),
        ] {
            assert_eq!(redirect_target(from, loc).unwrap(), want, "{from} {loc}");
        }
    }
}
