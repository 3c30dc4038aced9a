//! Integration tests: the real server on ephemeral loopback ports, a real authoritative
//! upstream (hickory-server) on another, and real DNS messages over UDP and TCP.

mod browser; // headless Chromium over the DevTools protocol (a pipe), for the dashboard
mod fake_upstream; // the in-process authoritative upstream, with query counters
mod harness; // TestServer (the real service on 127.0.0.1:0) and a small DNS client
mod hierarchy; // a root, TLDs and authoritative servers on 127.53.N.x:53, for recursion
mod pg; // a real PostgreSQL cluster of the test's own (initdb, pg_ctl as the user postgres)
mod raw_upstream; // a scripted UDP upstream: delays, forged answers, DNS cookies

mod access; // access control: allow, deny (nets and files), refuse or drop, reload
mod answer_checks; // upstream answers: CNAME chains to blocked names, response IPs, rebinding
mod any; // ANY answered locally with RFC 8482 HINFO
mod block_page; // the HTTP block page: rule and list named, groups, hostile Host headers, limits
mod blocking; // block modes, suffix and allow precedence, EDE
mod cache; // hits, TTL countdown, negative caching
mod cli; // the real binary: --version/--help, config check, SIGHUP reload
mod conditional; // [[forward]]: names under a domain go to its own servers only
mod cookies;
mod counters; // service-wide counters; `serve` prints them on SIGUSR1 and at exit
mod dashboard; // the dashboard in headless Chromium: live log, one-click block, discovery view
mod ddr; // DNS cookies toward upstreams (RFC 7873), forged answers, BADCOOKIE
mod differential; // recursion next to a real unbound on the same test hierarchy: rcode, answers, AD, EDE
mod dnssec; // DNSSEC validation against a signed test hierarchy: AD, DO, CD, NSEC/NSEC3, bogus and expired zones, EDE
mod docs; // README.md and docs/*.md: relative links and anchors resolve; the README's command lines are real
mod doh; // DNS over HTTPS: curl over HTTP/2 and HTTP/1.1, GET and POST, status codes, slow clients, limits
mod doq; // DNS over QUIC: hickory's DoQ client, protocol errors, certificate reload, quic:// upstreams (hickory's DoQ server)
mod ede_text; // the EDE text a blocked answer carries: list file name, char-safe cut
mod firewall; // `sinkhole firewall` on a real kernel: namespaces, nft and iptables
mod firewall_rollback; // `apply --confirm` killed in its window: the guard rolls back; confirm disarms
mod forward; // forwarding, rcodes, flags, failover, SERVFAIL deadline, TCP fallback
mod groups; // [[groups]] by source address, schedules, `lists check --client`, overlap warnings
mod groups_mac; // a group naming a MAC address: veth pairs, namespaces, ARP and NDP
mod hostile; // hostile clients: TCP limits and deadlines, per-client forward limits
mod http; // [http]: the API over real HTTP, auth, bad input, /metrics, pause, the CLI's pause/resume/status
mod http_lists; // [http] list edits: block/allow over the API, the next query sees it; only configured files
mod http_log; // /api/v1/log (filters, paging), stats/top|series, the SSE stream (bounded, slow readers dropped)
mod limits; // [limits]: per-client rates and bans, exempt nets, spoofed floods, RRL slips
mod list_downloads; // URL list downloads: redirects, streaming to disk in bounded memory
mod list_edits; // `lists add|remove`: owner, mode, symlinks, raw bytes, concurrent edits
mod lists_cli; // `sinkhole lists check|lint|convert|add|remove` on files
mod local; // [local] records and hosts files, private reverse zones: AA answers no upstream sees
mod malformed; // bad packets never hurt other clients
mod postgres_log; // [log.postgres]: the query log in a real PostgreSQL: fields, migrations, outages, wrong password, names, retention
mod postgres_read; // the query log read back from PostgreSQL: same reports as the file, two instances, tail -f, the API
mod postgres_sync; // [sync] postgres: two instances on one real PostgreSQL share list entries and pause
mod querylog; // the JSONL query log, sessions, `sinkhole log` reports, rotation, drops, SIGTERM
mod real_lists; // the real community lists in ../shared/data
mod recursive; // upstream.mode = "recursive": resolving from a test root; loops, long chains, dead delegations
mod reload; // file-change reload under a query loop; whole-config reload ([upstream], [cache], [log])
mod reload_memory; // a big list reloaded: peak RSS at the serving list plus one new list
mod scrub; // out-of-bailiwick records stripped before caching and relaying
mod serve_stale; // upstream outages: stale answers (RFC 8767), prefetch, cached failures (RFC 9520)
mod systemd; // sd_notify READY/RELOADING/WATCHDOG/STOPPING on a socket of the test's; journal-format logs; privileges; the unit
mod tls; // DNS over TLS: a real rustls client, certificate reload, handshake timeout, limits, `cert self-signed`
mod udp_load; // bursts through the batched UDP path and its pause
mod upstream_pool;
mod upstream_tls; // encrypted upstreams: DoT and DoH servers with a test CA, shared connections, failover
mod url_lists; // URL lists against a loopback HTTP server // a slow-query flood: bounded upstream sockets, fd limit raised at start
