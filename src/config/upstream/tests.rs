use super::*;
use crate::config::Config;

fn errs(text: &str) -> Vec<String> {
    Config::parse(text, "t.toml", None)
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn plain_entries_stay_as_they_were() {
    let s = parse_server("9.9.9.9").unwrap();
    assert_eq!(s, UpstreamServer::plain("9.9.9.9:53".parse().unwrap()));
    assert_eq!(s.to_string(), "9.9.9.9:53");
    assert!(!s.is_encrypted());
    assert!(parse_server("[2620:fe::fe]:5353").is_ok());
    assert!(
        parse_server("9.9.9.9:5x")
            .unwrap_err()
            .contains("invalid port")
    );
}

#[test]
fn tls_entries_take_an_ip_a_default_port_and_a_name() {
    let s = parse_server("tls://9.9.9.9#DNS.Quad9.net").unwrap();
    assert_eq!(s.addr, "9.9.9.9:853".parse().unwrap());
    assert_eq!(
        s.transport,
        Transport::Tls {
            name: "dns.quad9.net".into()
        }
    );
    assert_eq!(s.to_string(), "tls://9.9.9.9:853#dns.quad9.net");
    assert!(s.is_encrypted());
    let s = parse_server("tls://[2620:fe::fe]:8853#dns.quad9.net").unwrap();
    assert_eq!(s.addr, "[2620:fe::fe]:8853".parse().unwrap());
    let e = parse_server("tls://9.9.9.9:853").unwrap_err();
    assert!(
        e.contains("after '#'") && e.contains("tls://9.9.9.9:853#dns.quad9.net"),
        "{e}"
    );
    let e = parse_server("tls://dns.quad9.net:853#dns.quad9.net").unwrap_err();
    assert!(
        e.contains("not an IP address") && e.contains("host names"),
        "{e}"
    );
    let e = parse_server("tls://9.9.9.9#bad name").unwrap_err();
    assert!(e.contains("not a host name"), "{e}");
    assert!(parse_server("tls://9.9.9.9:99999#x.test").is_err());
}

#[test]
fn https_entries_take_a_url_and_an_address() {
    let s = parse_server("https://dns.quad9.net/dns-query@9.9.9.9").unwrap();
    assert_eq!(s.addr, "9.9.9.9:443".parse().unwrap());
    assert_eq!(
        s.transport,
        Transport::Https {
            name: "dns.quad9.net".into(),
            authority: "dns.quad9.net".into(),
            path: "/dns-query".into()
        }
    );
    assert_eq!(s.to_string(), "https://dns.quad9.net/dns-query@9.9.9.9:443");
    // The URL's port is where to connect unless the address names one.
    let s = parse_server("https://doh.test:8443/q?x=1@[::1]").unwrap();
    assert_eq!(s.addr, "[::1]:8443".parse().unwrap());
    let Transport::Https {
        authority, path, ..
    } = &s.transport
    else {
        panic!()
    };
    assert_eq!(
        (authority.as_str(), path.as_str()),
        ("doh.test:8443", "/q?x=1")
    );
    let s = parse_server("https://doh.test@127.0.0.1:9443").unwrap();
    assert_eq!(s.addr, "127.0.0.1:9443".parse().unwrap());
    assert!(s.to_string().ends_with("/dns-query@127.0.0.1:9443"));
    // An IP in the URL needs no '@'.
    let s = parse_server("https://1.1.1.1/dns-query").unwrap();
    assert_eq!(s.addr, "1.1.1.1:443".parse().unwrap());
    let s = parse_server("https://[2606:4700::1111]/dns-query").unwrap();
    assert_eq!(s.addr, "[2606:4700::1111]:443".parse().unwrap());
    let e = parse_server("https://dns.quad9.net/dns-query").unwrap_err();
    assert!(e.contains("after '@'") && e.contains("@9.9.9.9"), "{e}");
    let e = parse_server("https://dns.quad9.net/dns-query@dns9.quad9.net").unwrap_err();
    assert!(e.contains("after '@' is not an IP address"), "{e}");
    assert!(
        parse_server("https://doh.test:x/q@1.2.3.4")
            .unwrap_err()
            .contains("invalid port")
    );
}

#[test]
fn quic_entries_are_written_as_tls_ones_are() {
    let s = parse_server("quic://9.9.9.9#DNS.Quad9.net").unwrap();
    assert_eq!(s.addr, "9.9.9.9:853".parse().unwrap());
    assert_eq!(
        s.transport,
        Transport::Quic {
            name: "dns.quad9.net".into()
        }
    );
    assert_eq!(s.to_string(), "quic://9.9.9.9:853#dns.quad9.net");
    assert!(s.is_encrypted());
    let s = parse_server(" quic://[2a10:50c0::ad1:ff]:8853#dns.adguard-dns.com ").unwrap();
    assert_eq!(s.addr, "[2a10:50c0::ad1:ff]:8853".parse().unwrap());
    let e = parse_server("quic://9.9.9.9:853").unwrap_err();
    assert!(
        e.contains("after '#'") && e.contains("quic://9.9.9.9:853#dns.quad9.net"),
        "{e}"
    );
    let e = parse_server("quic://dns.adguard-dns.com#dns.adguard-dns.com").unwrap_err();
    assert!(
        e.contains("not an IP address") && e.contains("host names"),
        "{e}"
    );
    let e = parse_server("quic://9.9.9.9#").unwrap_err();
    assert!(e.contains("not a host name"), "{e}");
    let e = parse_server("quic://9.9.9.9#bad name").unwrap_err();
    assert!(e.contains("not a host name"), "{e}");
    assert!(parse_server("quic://9.9.9.9:99999#x.test").is_err());
    assert!(parse_server("quic://9.9.9.9:x#x.test").is_err());
}

#[test]
fn other_schemes_are_refused_with_what_to_write() {
    let e = parse_server("udp://9.9.9.9").unwrap_err();
    assert!(
        e.contains("unknown scheme") && e.contains("quic://IP:853#name"),
        "{e}"
    );
}

#[test]
fn config_errors_name_line_and_key() {
    let e = errs("[upstream]\nservers = [\"9.9.9.9\",\n  \"tls://9.9.9.9\"]\n");
    assert!(
        e[0].starts_with("t.toml:3:3: upstream.servers: \"tls://9.9.9.9\": write the name"),
        "{e:?}"
    );
    let e = errs(
        "[[forward]]\ndomains = [\"corp.test\"]\nservers = [\"https://dns.corp.test/dns-query\"]\n",
    );
    assert!(
        e[0].starts_with(
            "t.toml:3:12: forward.servers: \"https://dns.corp.test/dns-query\": write the address"
        ),
        "{e:?}"
    );
    let e = errs("[upstream]\nservers = [\"9.9.9.9\", \"quic://9.9.9.9:853\"]\n");
    assert!(
        e[0].starts_with("t.toml:2:23: upstream.servers: \"quic://9.9.9.9:853\": write the name"),
        "{e:?}"
    );
    let e = errs("[[forward]]\ndomains = [\"corp.test\"]\nservers = [\"quic://dns.corp.test\"]\n");
    assert!(
        e[0].starts_with("t.toml:3:12: forward.servers: \"quic://dns.corp.test\"")
            && e[0].contains("write the name"),
        "{e:?}"
    );
    let e = errs("[upstream]\ntls_ca = \"/nonexistent/ca.pem\"\n");
    assert!(
        e[0].starts_with("t.toml:2:10: upstream.tls_ca: /nonexistent/ca.pem: cannot read"),
        "{e:?}"
    );
}

#[test]
fn tls_ca_is_read_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let pair = crate::tls::selfsigned::generate("ca.test", std::time::SystemTime::now()).unwrap();
    std::fs::write(dir.path().join("ca.pem"), &pair.cert_pem).unwrap();
    std::fs::write(dir.path().join("empty.pem"), "nothing here\n").unwrap();
    let text = "[upstream]\nservers = [\"tls://192.0.2.1#dns.test\"]\ntls_ca = \"ca.pem\"\n\
                [[forward]]\ndomains = [\"corp.test\"]\nservers = [\"https://dns.corp.test/q@10.0.0.1\"]\n";
    let c = Config::parse(text, "t.toml", Some(dir.path())).unwrap();
    let ca = c.upstream.tls_ca.as_ref().unwrap();
    assert_eq!(ca.path, dir.path().join("ca.pem"));
    assert_eq!(ca.certs.len(), 1);
    assert_eq!(
        c.forward[0].upstream.tls_ca, c.upstream.tls_ca,
        "[[forward]] servers trust the same CA"
    );
    assert!(c.forward[0].upstream.servers[0].is_encrypted());
    let e = Config::parse(
        "[upstream]\ntls_ca = \"empty.pem\"\n",
        "t.toml",
        Some(dir.path()),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("upstream.tls_ca: ") && e.contains("no certificate in the file"),
        "{e}"
    );
}
