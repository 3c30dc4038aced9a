//! Snapshot tests of the rendered rule sets (golden files in `tests/data/golden/`,
//! rewritten by `UPDATE_GOLDEN=1 cargo test`), the `[firewall]` config errors, and the real
//! DoH and country lists from `../shared/data`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::model::{Proto, Topology};
use super::*;

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> Ruleset {
    let path = manifest().join("tests/data/firewall").join(name);
    let cfg = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut rs = Ruleset::from_config(&cfg).unwrap();
    // The header names the config file; keep goldens independent of the checkout path.
    rs.source = name.to_string();
    rs
}

fn golden(name: &str, actual: &str) {
    let path = manifest().join("tests/data/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run UPDATE_GOLDEN=1 cargo test)", path.display()));
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the rendered text at line {}:\n  golden:   {:?}\n  rendered: {:?}\n\
             (review, then UPDATE_GOLDEN=1 cargo test)",
            path.display(),
            first + 1,
            expected.lines().nth(first),
            actual.lines().nth(first)
        );
    }
}

#[test]
fn gateway_nftables_golden() {
    golden(
        "gateway.nft",
        &render(&fixture("gateway.toml"), Backend::Nftables, None),
    );
}

#[test]
fn gateway_iptables_golden() {
    golden(
        "gateway.iptables",
        &render(&fixture("gateway.toml"), Backend::Iptables, None),
    );
}

#[test]
fn lan_host_nftables_golden() {
    golden(
        "lan-host.nft",
        &render(&fixture("lan-host.toml"), Backend::Nftables, None),
    );
}

#[test]
fn lan_host_iptables_golden() {
    golden(
        "lan-host.iptables",
        &render(&fixture("lan-host.toml"), Backend::Iptables, None),
    );
}

#[test]
fn iptables_family_prints_one_part() {
    let rs = fixture("gateway.toml");
    let both = render(&rs, Backend::Iptables, None);
    let v4 = render(&rs, Backend::Iptables, Some(Family::V4));
    let v6 = render(&rs, Backend::Iptables, Some(Family::V6));
    assert_eq!(both, format!("{v4}# ip6tables-restore\n{v6}"));
    assert!(v4.contains("icmp-port-unreachable") && !v4.contains("fd00:"));
    assert!(v6.contains("icmp6-port-unreachable") && !v6.contains("192.168."));
}

#[test]
fn every_rule_carries_a_comment() {
    for name in ["gateway.toml", "lan-host.toml"] {
        let rs = fixture(name);
        let nft = render(&rs, Backend::Nftables, None);
        for l in nft.lines().map(str::trim) {
            let is_rule = l.contains(" accept")
                || l.contains(" drop")
                || l.contains("reject")
                || l.contains(" dnat ")
                || l.contains("redirect to")
                || l.contains("masquerade");
            if is_rule && !l.starts_with('#') && !l.starts_with("type ") {
                assert!(l.contains(" comment \""), "{name}: {l}");
            }
        }
        let ipt = render(&rs, Backend::Iptables, None);
        for l in ipt
            .lines()
            .filter(|l| l.starts_with("-A ") || l.starts_with("-I "))
        {
            assert!(l.contains("-m comment --comment \""), "{name}: {l}");
        }
    }
}

#[test]
fn dns_port_follows_server_listen() {
    let text = "[server]\nlisten = [\"127.0.0.1:5300\", \"10.0.0.1:5353\"]\n[firewall]\n\
                lan_interfaces = [\"eth1\"]\nlan_subnets = [\"10.0.0.0/24\"]\nredirect = true\n";
    let cfg = Config::parse(text, "t.toml", Some(Path::new("."))).unwrap();
    let rs = Ruleset::from_config(&cfg).unwrap();
    assert_eq!(rs.dns_port, 5353);
    assert!(render(&rs, Backend::Nftables, None).contains("redirect to :5353"));
    assert!(render(&rs, Backend::Iptables, None).contains("--to-ports 5353"));
}

#[test]
fn no_firewall_section_is_an_error() {
    let cfg = Config::parse("", "t.toml", Some(Path::new("."))).unwrap();
    assert!(cfg.firewall.is_none());
    let e = Ruleset::from_config(&cfg).unwrap_err().to_string();
    assert!(e.starts_with("t.toml: no [firewall] section"), "{e}");
}

/// Parses a `[firewall]` section with files in a temp folder; returns the error lines.
fn fw_errors(section: &str, files: &[(&str, &str)]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let text = format!("[firewall]\n{section}");
    match Config::parse(&text, "t.toml", Some(dir.path())) {
        Ok(_) => vec![],
        Err(e) => {
            let prefix = format!("{}/", dir.path().display());
            e.0.iter()
                .map(|e| e.to_string().replace(&prefix, ""))
                .collect()
        }
    }
}

const BASE: &str = "lan_interfaces = [\"eth1\"]\nlan_subnets = [\"192.168.1.0/24\"]\n";

#[test]
fn minimal_section_gets_defaults() {
    let cfg = Config::parse(
        &format!("[firewall]\n{BASE}"),
        "t.toml",
        Some(Path::new(".")),
    )
    .unwrap();
    let fw = cfg.firewall.unwrap();
    assert_eq!(fw.backend, Backend::Nftables);
    assert_eq!(fw.topology, Topology::Gateway);
    assert!(fw.block_dot && !fw.redirect && !fw.masquerade);
    assert_eq!(fw.origin("firewall.block_dot").at, "default");
    assert_eq!(fw.origin("firewall.lan_subnets").at, "t.toml:3");
}

#[test]
fn err_unknown_key_in_firewall() {
    let e = fw_errors(&format!("{BASE}redirekt = true\n"), &[]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("t.toml:4:1: firewall.redirekt: unknown field `redirekt`"),
        "{e:?}"
    );
}

#[test]
fn err_bad_interface_name() {
    let e = fw_errors(
        "lan_interfaces = [\"eth1\", \"eth 2\"]\nlan_subnets = [\"192.168.1.0/24\"]\n",
        &[],
    );
    assert_eq!(
        e,
        [
            "t.toml:2:27: firewall.lan_interfaces: \"eth 2\": not an interface name: ' ' is not allowed (letters, digits, _ - . and a final +)"
        ]
    );
    let e = fw_errors(
        &format!("{BASE}wan_interfaces = [\"averyveryverylongname0\"]\n"),
        &[],
    );
    assert!(
        e[0].starts_with("t.toml:4:19: firewall.wan_interfaces: \"averyveryverylongname0\": not an interface name: at most 15"),
        "{e:?}"
    );
}

#[test]
fn err_missing_lan_interfaces_and_subnets() {
    let e = fw_errors("redirect = true\n", &[]);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].starts_with("t.toml: firewall.lan_interfaces: at least one"));
    assert!(e[1].starts_with("t.toml: firewall.lan_subnets: at least one"));
}

#[test]
fn err_bad_lan_subnet() {
    let e = fw_errors(
        "lan_interfaces = [\"eth1\"]\nlan_subnets = [\"192.168.1.1/24\", \"lan\"]\n",
        &[],
    );
    assert_eq!(
        e,
        [
            "t.toml:3:16: firewall.lan_subnets: \"192.168.1.1/24\": host bits set; did you mean 192.168.1.0/24?",
            "t.toml:3:34: firewall.lan_subnets: \"lan\" is not a CIDR (e.g. 192.168.1.0/24)",
        ]
    );
}

#[test]
fn err_resolver_outside_lan_subnets() {
    let e = fw_errors(
        &format!("{BASE}topology = \"lan-host\"\nresolver = [\"10.0.0.2\"]\n"),
        &[],
    );
    assert_eq!(
        e,
        ["t.toml:5:13: firewall.resolver: 10.0.0.2 is outside lan_subnets (192.168.1.0/24)"]
    );
}

#[test]
fn err_lan_host_needs_resolver_and_gateway_refuses_it() {
    let e = fw_errors(&format!("{BASE}topology = \"lan-host\"\n"), &[]);
    assert!(e[0].starts_with("t.toml: firewall.resolver: topology = \"lan-host\" needs"));
    let e = fw_errors(&format!("{BASE}resolver = [\"192.168.1.2\"]\n"), &[]);
    assert!(e[0].starts_with("t.toml:4:12: firewall.resolver: only used with"));
}

#[test]
fn err_unknown_backend_topology_reject_with() {
    let e = fw_errors(
        &format!("{BASE}backend = \"pf\"\ntopology = \"router\"\nreject_with = \"icmp\"\n"),
        &[],
    );
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e[0].starts_with("t.toml:4:11: firewall.backend: unknown backend \"pf\""));
    assert!(e[1].starts_with("t.toml:5:12: firewall.topology: unknown topology \"router\""));
    assert!(e[2].starts_with("t.toml:6:15: firewall.reject_with: unknown value \"icmp\""));
}

#[test]
fn err_bad_allow_inbound() {
    let e = fw_errors(
        &format!("{BASE}allow_inbound = [\"22\", \"sctp/9\"]\n"),
        &[],
    );
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].starts_with("t.toml:4:18: firewall.allow_inbound: \"22\": write PROTO/PORT"));
    assert!(e[1].contains("unknown protocol \"sctp\""));
}

#[test]
fn err_bad_port_forwards() {
    let e = fw_errors(
        &format!(
            "{BASE}wan_interfaces = [\"eth0\"]\nport_forwards = [\"tcp/7070=192.168.1.43\", \"tcp/8080=10.1.1.1:80\"]\n"
        ),
        &[],
    );
    assert_eq!(
        e,
        [
            "t.toml:5:18: firewall.port_forwards: \"tcp/7070=192.168.1.43\": \"192.168.1.43\" is not IP:PORT (IPv6 as [addr]:port)",
            "t.toml:5:43: firewall.port_forwards: 10.1.1.1 is outside lan_subnets (192.168.1.0/24)",
        ]
    );
}

#[test]
fn err_port_forwards_and_masquerade_need_wan() {
    let e = fw_errors(
        &format!("{BASE}port_forwards = [\"tcp/7070=192.168.1.43:80\"]\nmasquerade = true\n"),
        &[],
    );
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].starts_with("t.toml:4:18: firewall.port_forwards: needs firewall.wan_interfaces"));
    assert!(e[1].starts_with("t.toml:5:14: firewall.masquerade: needs firewall.wan_interfaces"));
}

#[test]
fn err_app_blocks_line_names_file_and_line() {
    let e = fw_errors(
        &format!("{BASE}app_blocks = \"ip_ports_blocked\"\n"),
        &[(
            "ip_ports_blocked",
            "# blocks\n192.168.1.10:1863\n192.168.1.11\n10.0.0.5:80\n[fd00::1]:x/udp\n",
        )],
    );
    assert_eq!(
        e,
        [
            "ip_ports_blocked:3:1: firewall.app_blocks: \"192.168.1.11\": not IP:PORT (or IP:PORT/udp, CIDR:PORT, [IPv6]:PORT)",
            "ip_ports_blocked:4:1: firewall.app_blocks: \"10.0.0.5:80\": 10.0.0.5/32 is outside lan_subnets",
            "ip_ports_blocked:5:1: firewall.app_blocks: \"[fd00::1]:x/udp\": invalid port \"x\" (1-65535)",
        ]
    );
}

#[test]
fn err_doh_and_deny_files_name_file_and_line() {
    let e = fw_errors(
        &format!(
            "{BASE}doh_servers = \"doh.txt\"\ndeny_sources = [\"a.zone\", \"missing.zone\"]\n"
        ),
        &[
            ("doh.txt", "1.1.1.1 # ok\ndns.google\n"),
            ("a.zone", "10.0.0.0/8\n\n10.0.0.0/33\n"),
        ],
    );
    assert_eq!(e.len(), 3, "{e:?}");
    assert_eq!(
        e[0],
        "doh.txt:2:1: firewall.doh_servers: \"dns.google\" is not an IP address or CIDR"
    );
    assert_eq!(
        e[1],
        "a.zone:3:1: firewall.deny_sources: \"10.0.0.0/33\" is not an IP address or CIDR"
    );
    assert!(
        e[2].starts_with("t.toml:5:27: firewall.deny_sources: \"missing.zone\": cannot read"),
        "{e:?}"
    );
}

#[test]
fn app_blocks_parse_protocols_and_ipv6() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("b"),
        "192.168.1.10:1863\n192.168.1.0/28:5000/udp # games\n[fd00::10]:443/tcp\n",
    )
    .unwrap();
    let text = "[firewall]\nlan_interfaces = [\"eth1\"]\nlan_subnets = [\"192.168.1.0/24\", \"fd00::/64\"]\napp_blocks = \"b\"\n";
    let cfg = Config::parse(text, "t.toml", Some(dir.path())).unwrap();
    let b = cfg.firewall.unwrap().app_blocks;
    assert_eq!(b.len(), 3);
    assert_eq!((b[0].port, b[0].proto), (1863, Proto::Tcp));
    assert_eq!((b[1].port, b[1].proto), (5000, Proto::Udp));
    assert_eq!(b[1].origin.at, "b:2");
    assert_eq!(b[2].client.to_string(), "fd00::10/128");
}

/// A folder of the real data beside the checkout; the tests need it (CI provides it).
fn shared(rel: &str) -> PathBuf {
    let p = manifest().join("../shared/data").join(rel);
    assert!(
        p.exists(),
        "{} is missing: these tests read the real lists in ../shared/data",
        p.display()
    );
    p
}

#[test]
fn real_doh_lists_load() {
    let dir = shared("doh");
    let text = "[firewall]\nlan_interfaces = [\"eth1\"]\nlan_subnets = [\"192.168.1.0/24\"]\n\
                doh_servers = \"doh_ipv4_dibdot.txt\"\n";
    let cfg = Config::parse(text, "t.toml", Some(&dir)).unwrap_or_else(|e| panic!("{e}"));
    let doh = cfg.firewall.unwrap().doh_servers;
    assert!(doh.v4().count() > 1000, "{}", doh.nets.len());
    for (file, min_v6) in [
        ("doh_ipv6_dibdot.txt", 500),
        ("doh_ips_oneoffdallas.txt", 0),
    ] {
        let text = text.replace("doh_ipv4_dibdot.txt", file);
        let cfg = Config::parse(&text, "t.toml", Some(&dir)).unwrap_or_else(|e| panic!("{e}"));
        let doh = cfg.firewall.unwrap().doh_servers;
        assert!(doh.v6().count() >= min_v6 && !doh.nets.is_empty(), "{file}");
    }
    // The shipped list is valid too.
    let text = text.replace("doh_ipv4_dibdot.txt", "blocklists/doh-servers.txt");
    let cfg = Config::parse(&text, "t.toml", Some(&manifest())).unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.firewall.unwrap().doh_servers.nets.len() > 30);
}

#[test]
fn country_zones_load_fast_as_one_set() {
    let dir = shared("country_cidr");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".cidr"))
        .collect();
    files.sort();
    // All eight files twice over (as v4 and v6 the same lines again): ~135k lines.
    let mut quoted: Vec<String> = files.iter().map(|f| format!("\"{f}\"")).collect();
    quoted.extend(quoted.clone());
    let text = format!(
        "[firewall]\nlan_interfaces = [\"eth1\"]\nlan_subnets = [\"192.168.1.0/24\"]\ndeny_sources = [{}]\n",
        quoted.join(", ")
    );
    let t = Instant::now();
    let cfg = Config::parse(&text, "t.toml", Some(&dir)).unwrap_or_else(|e| panic!("{e}"));
    let load = t.elapsed();
    let cfg = Config {
        firewall: cfg.firewall,
        ..Config::embedded_default()
    };
    let rs = Ruleset::from_config(&cfg).unwrap();
    let t = Instant::now();
    let nft = render(&rs, Backend::Nftables, None);
    let rendered = t.elapsed();
    let n = rs.fw.deny_sources.nets.len();
    assert!(n > 30_000, "{n}");
    assert_eq!(nft.matches("set deny_v").count(), 2);
    assert!(nft.matches("saddr @deny_v4 drop").count() == 2);
    eprintln!("deny_sources: {n} aggregated nets, loaded in {load:?}, rendered in {rendered:?}");
    assert!(load.as_secs() < 10 && rendered.as_secs() < 5);
}
