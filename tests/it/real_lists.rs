//! The real community lists in `../shared/data/blocklists`: each loads as its authors meant
//! it (a handful of names per list checked against what the list says), the same list in
//! four formats gives the same set, and the 1.9M aggregate loads (decompressed with `xz`).

use std::path::{Path, PathBuf};

use sinkhole::blocklist::load::{ListReport, ListSource, load_all_with};
use sinkhole::blocklist::{Blocklist, Kind, SkipReason};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/blocklists")
        .join(name)
}

fn load(names: &[&str]) -> (Blocklist, Vec<ListReport>) {
    let srcs: Vec<ListSource> = names
        .iter()
        .map(|n| ListSource::file(n, data(n), Kind::Block))
        .collect();
    load_all_with(&srcs, Path::new("/nonexistent"), false).unwrap()
}

fn verdict(l: &Blocklist, name: &str) -> &'static str {
    match l.find(name.as_bytes()) {
        Some(m) if m.kind == Kind::Block => "blocked",
        Some(_) => "allowed",
        None => "-",
    }
}

#[track_caller]
fn expect(l: &Blocklist, cases: &[(&str, &str)]) {
    for (name, want) in cases {
        assert_eq!(verdict(l, name), *want, "{name}");
    }
}

#[test]
fn each_real_list_means_what_its_authors_meant() {
    let (l, r) = load(&["adblock_adguard_dns_filter.txt"]);
    expect(
        &l,
        &[
            ("wonsegax.net", "blocked"),
            ("x.clickintext.net", "blocked"),
            ("ads.doubleclick.net", "blocked"),
            ("ad.10010.com", "allowed"),       // @@||ad.10010.com^
            ("rcdn.pro", "-"),                 // ||rcdn.pro^ disabled by $badfilter
            ("adsrvmedia.adk2.co", "blocked"), // $important
            ("clk.rtpdn1.com", "blocked"),     // ||clk.rtpdn*.com^
            ("www.wikipedia.org", "-"),
        ],
    );
    // 116 `@@||name^` / `@@|name^|` rules, 9 `@@` globs; `@@-ds.metric.gstatic.com^` is a
    // substring rule DNS cannot express.
    assert_eq!(r[0].exceptions, 116, "{:?}", r[0].skipped);
    expect(
        &l,
        &[
            ("core.crazyegg.com", "allowed"), // @@|core.crazyegg.com^|: this name only
            ("mc.s7.exacttarget.com", "allowed"), // @@||mc.*.exacttarget.com^|
        ],
    );

    let (l, r) = load(&["adblock_easyprivacy_browser.txt"]);
    expect(
        &l,
        &[
            ("data.resources.ringcentral.com", "blocked"),
            ("localytics.com", "-"), // $third-party: browser only, skipped
            ("stats.britishbaseball.org.uk", "allowed"),
        ],
    );
    assert!(
        r[0].skipped[&SkipReason::BrowserModifier] > 3000,
        "{:?}",
        r[0].skipped
    );
    assert!(
        r[0].skipped[&SkipReason::UrlRule] > 3000,
        "{:?}",
        r[0].skipped
    );

    let (l, _) = load(&["hosts_adaway.txt"]);
    expect(
        &l,
        &[
            ("static.accesstrade.vn", "blocked"),
            ("localhost", "-"),
            ("www.google.com", "-"),
        ],
    );
    let (l, _) = load(&["wildcard_hagezi_multi.txt"]);
    expect(
        &l,
        &[
            ("pic.0597kk.com", "blocked"), // `*.x` means x too
            ("a.cen.acspubs.org", "blocked"),
            ("acspubs.org", "-"),
        ],
    );
    let (l, _) = load(&["dnsmasq_hagezi_light.txt"]);
    expect(
        &l,
        &[
            ("10000xing.cn", "blocked"),
            ("www.alphabay.link", "blocked"),
        ],
    );
    let (l, _) = load(&["stevenblack_unified_trimmed_domains.txt"]);
    expect(
        &l,
        &[
            ("insights.alphonso.tv", "blocked"),
            ("alphonso.tv", "blocked"),
            ("tv", "-"),
            ("example.com", "-"),
        ],
    );
    let (l, _) = load(&["domains_perflyst_smarttv.txt"]);
    expect(
        &l,
        &[
            ("device-metrics-us.amazon.com", "blocked"),
            ("connecttv.pelmorex.com", "blocked"), // inline comment after it
        ],
    );
    let (l, r) = load(&["mixed_urlhaus_filter_online.txt"]);
    assert!(
        r[0].skipped[&SkipReason::IpAddress] > 2000,
        "{:?}",
        r[0].skipped
    );
    assert!(l.len() > 500);
    let (l, r) = load(&["regex_mmotti_pihole.list", "regex_perflyst_pihole.list"]);
    assert_eq!(r[0].patterns + r[1].patterns, 28, "{r:?}");
    expect(
        &l,
        &[
            ("ads.example.com", "blocked"),
            ("telemetry.example.org", "blocked"),
            ("tv.lgsmartad.com", "blocked"),
            ("www.example.com", "-"),
        ],
    );
}

#[test]
fn the_same_list_in_four_formats_is_one_set() {
    let mut sets = Vec::new();
    for f in [
        "domains_blocklistproject_basic.txt",
        "hosts_blocklistproject_basic.txt",
        "adblock_blocklistproject_basic.txt",
        "dnsmasq_blocklistproject_basic.txt",
    ] {
        let (l, r) = load(&[f]);
        assert_eq!(r[0].skipped_total(), 0, "{f}: {:?}", r[0].errors);
        assert_eq!(l.len(), 76_036, "{f}");
        sets.push(l);
    }
    for name in [
        "070806142521.c.mystat-in.net",
        "ads.jokaroo.com",
        "x.elixmedia.com",
    ] {
        for (i, l) in sets.iter().enumerate() {
            assert_eq!(verdict(l, name), "blocked", "{name} in set {i}");
        }
    }
    let (a, _) = load(&["hosts_hagezi_light.txt"]);
    let (b, _) = load(&["domains_hagezi_light.txt"]);
    assert_eq!(a.len(), 89_931);
    assert_eq!(b.len(), 89_931);
}

#[test]
fn the_big_aggregate_loads() {
    let xz = data("domains_wallacebrf_aggregate_1.9M.txt.xz");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aggregate.txt");
    let out = std::process::Command::new("xz")
        .arg("-dc")
        .arg(&xz)
        .output()
        .expect("xz is installed (CI installs xz-utils)");
    assert!(out.status.success());
    std::fs::write(&path, &out.stdout).unwrap();
    let src = ListSource::file("aggregate.txt", &path, Kind::Block);
    let (l, r) = load_all_with(&[src], Path::new("/nonexistent"), false).unwrap();
    // 1,895,056 unique names after normalisation (SOURCES.md), less the skipped lines.
    assert!(l.len() > 1_880_000 && l.len() <= 1_895_056, "{}", l.len());
    assert!(
        r[0].skipped[&SkipReason::IpAddress] >= 590,
        "{:?}",
        r[0].skipped
    );
    assert!(
        r[0].duplicates > 24_000,
        "CRLF and case variants are duplicates"
    );
    expect(
        &l,
        &[
            ("checkra1n.cc", "blocked"),              // written `Checkra1n.cc`
            ("mishop.pandora.xiaomi.com", "blocked"), // written with a trailing dot
            ("hpyrdr.com", "blocked"),                // written `.hpyrdr.com`
            ("com", "-"),                             // `.com` refused as a public suffix
        ],
    );
}
