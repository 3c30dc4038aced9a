//! The dashboard: `GET /` and `GET /assets/<file>`, a single page (`dashboard/index.html`,
//! `app.js`, `app.css`) and the vendored uPlot chart library, all compiled into the binary
//! (`include_bytes!`), so it works offline on the LAN and needs no build step. The page
//! needs no token; the API calls it makes do (it asks for the token and keeps it in the
//! browser). Assets are revalidated on each load (`no-cache` with an `ETag`), so an upgraded
//! binary never serves a stale script, and an unchanged one answers 304.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::auth::ApiError;

/// One embedded file.
struct Asset {
    name: &'static str,
    mime: &'static str,
    body: &'static [u8],
}

const ASSETS: [Asset; 5] = [
    Asset {
        name: "index.html",
        mime: "text/html; charset=utf-8",
        body: include_bytes!("dashboard/index.html"),
    },
    Asset {
        name: "app.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("dashboard/app.js"),
    },
    Asset {
        name: "app.css",
        mime: "text/css; charset=utf-8",
        body: include_bytes!("dashboard/app.css"),
    },
    Asset {
        name: "uPlot.iife.min.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("dashboard/vendor/uPlot.iife.min.js"),
    },
    Asset {
        name: "uPlot.min.css",
        mime: "text/css; charset=utf-8",
        body: include_bytes!("dashboard/vendor/uPlot.min.css"),
    },
];

/// What the page may load and where it may connect: only this server.
const CSP: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Each asset's entity tag: a hash of its bytes (FNV-1a, 64 bits).
fn etags() -> &'static [String; ASSETS.len()] {
    static TAGS: OnceLock<[String; ASSETS.len()]> = OnceLock::new();
    TAGS.get_or_init(|| {
        ASSETS.each_ref().map(|a| {
            let h = a.body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
            });
            format!("\"{h:016x}\"")
        })
    })
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some((i, a)) = ASSETS.iter().enumerate().find(|(_, a)| a.name == name) else {
        return ApiError::new(StatusCode::NOT_FOUND, "no such dashboard file").into_response();
    };
    let tag = etags().get(i).map_or("", String::as_str);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut r = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, a.mime)], a.body).into_response()
    };
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(tag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    let html = a.mime.starts_with("text/html");
    super::security_headers(h, html.then_some(CSP), html);
    r
}

/// `GET /`: the page.
pub(super) async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `GET /assets/<file>`: its scripts, styles and the chart library.
pub(super) async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    serve(&file, &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_the_page_names_is_served() {
        let page = std::str::from_utf8(ASSETS[0].body).unwrap();
        for a in &ASSETS[1..] {
            assert!(page.contains(&format!("assets/{}", a.name)), "{}", a.name);
        }
        let tags = etags();
        assert!(tags.iter().all(|t| t.len() == 18));
        assert_ne!(tags[1], tags[2]);
    }

    #[test]
    fn the_log_filter_offers_every_action() {
        let page = std::str::from_utf8(ASSETS[0].body).unwrap();
        for a in crate::querylog::ACTION_NAMES {
            assert!(page.contains(&format!("<option>{a}</option>")), "{a}");
        }
    }
}
