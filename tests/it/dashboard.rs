//! The dashboard in a real headless Chromium against the real server: the token asked for
//! and typed in, the chart drawn, the top tables filled, a query sent during the test shown
//! by the live log, one click on "Block" blocking the next query for that name, and the
//! discovery view of a client that just started a scripted application listing that
//! application's first name, whose domain one more click blocks. The test also keeps the
//! screenshot of `docs/dashboard.png` (written there when `SINKHOLE_UPDATE_SCREENSHOT=1`,
//! otherwise under the target folder). Without a browser: the page and its assets are served
//! without a token, with their types, a Content-Security-Policy and 304 revalidation.

use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use crate::browser::{Browser, chromium};
use crate::fake_upstream::{FakeUpstream, a};
use crate::harness::{TestServer, first_answer};

const TOKEN: &str = "dashboard-token-0123456789";

/// The browser, or `None` outside CI when it is not installed (CI installs it).
fn browser() -> Option<Browser> {
    match chromium() {
        Some(exe) => Some(Browser::launch(exe, 1280, 1000)),
        None => {
            assert!(
                std::env::var_os("CI").is_none(),
                "chromium is not installed (.ci/run installs it)"
            );
            eprintln!("skipped: chromium is not installed (apt-get install chromium)");
            None
        }
    }
}

/// A rotated log file with the day before the test: three LAN clients, busier by day, a
/// quarter of their queries blocked (so the chart and the tables have something to show).
fn past_day() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let names = [
        ("www.news.test", "allowed"),
        ("mail.office.test", "allowed"),
        ("cdn.video.test", "cached"),
        ("ads.test", "blocked"),
        ("updates.os.test", "allowed"),
        ("metrics.tracker.test", "blocked"),
        ("www.search.test", "cached"),
        ("chat.vendor.test", "allowed"),
    ];
    let mut out = String::new();
    let mut seq = [0u64; 3];
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    for m in 0..(24 * 60 - 2) {
        let t = now - 24 * 3600 + m * 60;
        // More queries by day than by night (a smooth curve over the day).
        let phase = (m as f64 / (24.0 * 60.0)) * std::f64::consts::TAU;
        let per_minute = (7.0 + 5.0 * phase.sin() + (rng % 3) as f64) as u64;
        for k in 0..per_minute {
            let c = ((m + k) % 3) as usize;
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let (name, action) = names[(rng % names.len() as u64) as usize];
            seq[c] += 1;
            let ts = sinkhole::querylog::writer::format_ts(
                std::time::UNIX_EPOCH + Duration::from_secs(t + k * 7),
            );
            out.push_str(&format!(
                "{{\"ts\":\"{ts}\",\"client\":\"192.168.1.{}\",\"qname\":\"{name}\",\"qtype\":\"A\",\"action\":\"{action}\",\"rcode\":\"NOERROR\",\"elapsed_us\":{},\"session\":1,\"seq\":{}}}\n",
                10 + c,
                if action == "allowed" { 9000 } else { 60 },
                seq[c]
            ));
        }
    }
    out
}

async fn answer(s: &TestServer, src: &str, name: &str) -> String {
    first_answer(&s.query_from(src, name, RecordType::A).await)
}

/// Runs blocking browser work off the runtime, which the server needs.
async fn with<T: Send + 'static>(
    b: &mut Option<Browser>,
    f: impl FnOnce(&mut Browser) -> T + Send + 'static,
) -> T {
    let mut taken = b.take().unwrap();
    let (t, back) = tokio::task::spawn_blocking(move || {
        let t = f(&mut taken);
        (t, taken)
    })
    .await
    .unwrap();
    *b = Some(back);
    t
}

#[tokio::test(flavor = "multi_thread")]
async fn an_administrator_watches_queries_and_blocks_with_one_click() {
    let Some(browser) = browser() else { return };
    let mut b = Some(browser);
    let up = FakeUpstream::start(vec![
        a("www.news.test.", "192.0.2.10", 300),
        a("ads.test.", "192.0.2.20", 300),
        a("dash-live.test.", "192.0.2.30", 300),
        a("api.chatapp.test.", "192.0.2.40", 300),
        a("cdn.chatapp.test.", "192.0.2.41", 300),
        a("push.chatapp.test.", "192.0.2.42", 300),
    ])
    .await;
    let toml = format!(
        "[upstream]\nservers = [\"{}\"]\n\
         [blocking]\nlists = [\"ads.txt\"]\nallow = [\"allow.txt\"]\n\
         [log]\npath = \"{{dir}}/q.jsonl\"\n\
         [http]\nlisten = [\"127.0.0.1:0\"]\ntoken = \"{TOKEN}\"\n",
        up.addr
    );
    let history = past_day();
    let s = TestServer::start(
        &toml,
        &[
            ("ads.txt", "ads.test\n"),
            ("allow.txt", ""),
            ("q.jsonl.1", &history),
        ],
    )
    .await;
    for _ in 0..3 {
        assert_eq!(
            answer(&s, "127.0.0.1", "www.news.test.").await,
            "192.0.2.10"
        );
        assert_eq!(answer(&s, "127.0.0.1", "ads.test.").await, "0.0.0.0");
    }
    let base = format!("http://{}/", s.http_addr());

    // The page needs no token; its API calls do: it asks, the administrator types it.
    let url = format!("{base}#overview");
    with(&mut b, move |b| {
        b.navigate(&url);
        b.wait_for(
            "document.querySelector('#token-dialog').open",
            "the token dialog",
        );
        b.type_into("#token-input", TOKEN);
        b.click("#token-form button[value=save]");
        // The top tables come from the log, the cards from the counters.
        b.wait_for(
            "[...document.querySelectorAll('#top-blocked td')].some(t => t.textContent === 'ads.test')",
            "ads.test in the top blocked names",
        );
        b.wait_for(
            "document.querySelector('#c-total').textContent === '6'",
            "6 queries counted",
        );
        // The chart: uPlot's canvas, drawn on (pixels that are not transparent).
        let drawn = b.wait_for(
            "(() => { const c = document.querySelector('#chart canvas'); if (!c || !c.width) return 0;
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; })()",
            "the chart to be drawn",
        );
        assert!(drawn.as_u64().unwrap() > 1000, "chart pixels: {drawn}");
        assert_eq!(b.eval("document.querySelector('#blocking-state').textContent"), "Blocking on");
    })
    .await;

    // The live log: a query sent now appears without reloading the page.
    let url = format!("{base}#log");
    with(&mut b, move |b| {
        b.navigate(&url);
        b.wait_for(
            "document.querySelector('.live').dataset.state === 'open'",
            "the live log to connect",
        );
    })
    .await;
    let shown = "document.querySelector('#log-body tr[data-name=\"dash-live.test\"]') !== null";
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // Sent again until shown: the stream may start following the file just after it.
        assert_eq!(
            answer(&s, "127.0.0.1", "dash-live.test.").await,
            "192.0.2.30"
        );
        let seen = with(&mut b, move |b| {
            std::thread::sleep(Duration::from_millis(700));
            b.eval(shown) == serde_json::Value::Bool(true)
        })
        .await;
        if seen {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the live log never showed dash-live.test"
        );
    }

    // One click on its "Block": the next query for that name is blocked.
    let toast = with(&mut b, |b| {
        b.click("#log-body tr[data-name=\"dash-live.test\"] button[data-block]");
        b.wait_for(
            "[...document.querySelectorAll('.toast')].map(t => t.textContent).join(' | ')",
            "the block to be confirmed",
        )
    })
    .await;
    assert!(
        toast
            .as_str()
            .unwrap()
            .starts_with("Blocked dash-live.test (ads.txt)"),
        "{toast}"
    );
    assert_eq!(answer(&s, "127.0.0.1", "dash-live.test.").await, "0.0.0.0");
    let list = std::fs::read_to_string(s.path("ads.txt")).unwrap();
    assert!(list.lines().any(|l| l == "dash-live.test"), "{list}");

    // A client starts an application: a burst of its names, then the discovery view.
    for name in [
        "api.chatapp.test.",
        "cdn.chatapp.test.",
        "push.chatapp.test.",
    ] {
        answer(&s, "127.0.0.2", name).await;
    }
    // The view reads the log once when it opens: wait until the writer has the burst on
    // disk (it polls its queue; a loaded machine can take a while).
    let t = Instant::now();
    while !std::fs::read_to_string(s.path("q.jsonl"))
        .unwrap_or_default()
        .contains("push.chatapp.test")
    {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the burst never reached the log"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let url = format!("{base}#discovery?client=127.0.0.2");
    let (first, toast) = with(&mut b, move |b| {
        b.navigate(&url);
        b.wait_for(
            "document.querySelector('#disc-sessions li') !== null",
            "the client's sessions",
        );
        let first = b.eval("document.querySelector('#disc-sessions li').dataset.name");
        b.click("#disc-suggest button[data-block=\"chatapp.test\"]");
        let toast = b.wait_for(
            "[...document.querySelectorAll('.toast')].map(t => t.textContent).filter(t => !t.includes('dash-live')).join(' | ')",
            "chatapp.test to be blocked",
        );
        (first, toast)
    })
    .await;
    assert!(
        toast
            .as_str()
            .unwrap()
            .starts_with("Blocked chatapp.test (ads.txt)"),
        "{toast}"
    );
    assert_eq!(
        first,
        "api.chatapp.test",
        "the application's first name; the log:\n{}",
        std::fs::read_to_string(s.path("q.jsonl")).unwrap()
    );
    assert_eq!(
        answer(&s, "127.0.0.2", "cdn.chatapp.test.").await,
        "0.0.0.0"
    );

    // The overview once more, for the screenshot kept in docs/.
    let url = format!("{base}#overview");
    let (png, exceptions) = with(&mut b, move |b| {
        b.navigate(&url);
        b.wait_for(
            "[...document.querySelectorAll('#top-client a')].some(a => a.textContent === '127.0.0.2')",
            "both clients in the top clients",
        );
        std::thread::sleep(Duration::from_millis(500));
        (b.screenshot(), b.exceptions().to_vec())
    })
    .await;
    assert!(
        exceptions.is_empty(),
        "JavaScript exceptions: {exceptions:?}"
    );
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 20_000,
        "{}",
        png.len()
    );
    let out = if std::env::var_os("SINKHOLE_UPDATE_SCREENSHOT").is_some() {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/dashboard.png")
    } else {
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png")
    };
    std::fs::write(&out, png).unwrap();
    eprintln!("screenshot: {}", out.display());
}

/// `GET path` with optional `If-None-Match`: (status, content type, ETag, body).
fn fetch(url: &str, etag: Option<&str>) -> (u16, String, String, String) {
    let agent = crate::harness::http_agent();
    let mut r = agent.get(url);
    if let Some(t) = etag {
        r = r.header("If-None-Match", t);
    }
    let mut r = r.call().unwrap();
    let h = |k: &str| {
        r.headers()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (ct, tag, csp) = (h("content-type"), h("etag"), h("content-security-policy"));
    let status = r.status().as_u16();
    let body = r.body_mut().read_to_string().unwrap_or_default();
    (status, ct, tag, format!("{csp}\n{body}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_and_its_assets_need_no_token_and_revalidate() {
    let toml = format!(
        "[upstream]\nservers = [\"127.0.0.1:9\"]\n[http]\nlisten = [\"127.0.0.1:0\"]\ntoken = \"{TOKEN}\"\n"
    );
    let s = TestServer::start(&toml, &[]).await;
    let base = format!("http://{}", s.http_addr());
    tokio::task::spawn_blocking(move || {
        let (st, ct, _, body) = fetch(&format!("{base}/"), None);
        assert_eq!((st, ct.as_str()), (200, "text/html; charset=utf-8"));
        let (csp, html) = body.split_once('\n').unwrap();
        assert!(csp.starts_with("default-src 'self'"), "{csp}");
        assert!(html.contains("<title>sinkhole</title>"));
        for (asset, mime) in [
            ("app.js", "text/javascript"),
            ("app.css", "text/css"),
            ("uPlot.iife.min.js", "text/javascript"),
            ("uPlot.min.css", "text/css"),
        ] {
            assert!(html.contains(&format!("assets/{asset}")), "{asset}");
            let url = format!("{base}/assets/{asset}");
            let (st, ct, tag, body) = fetch(&url, None);
            assert_eq!(st, 200, "{asset}");
            assert!(ct.starts_with(mime), "{asset}: {ct}");
            assert!(body.len() > 1000, "{asset}");
            // Unchanged: 304, no body.
            let (st, _, again, body) = fetch(&url, Some(&tag));
            assert_eq!((st, again.as_str(), body.trim()), (304, tag.as_str(), ""));
        }
        let (st, _, _, body) = fetch(&format!("{base}/assets/..%2Fmod.rs"), None);
        assert_eq!(st, 404, "{body}");
        // The API it calls still needs the token.
        assert_eq!(fetch(&format!("{base}/api/v1/status"), None).0, 401);
    })
    .await
    .unwrap();
}
