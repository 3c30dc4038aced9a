//! A whole running resolver: pipeline, listeners, and the list watcher, started from a
//! validated config and pre-bound sockets, stopped by [`Service::shutdown`]. `serve` and
//! the integration tests both run exactly this. With DNS over TLS, HTTPS or QUIC, the
//! certificate files (one pair for all) are watched too (`tls::Certs`), on the list
//! watch's interval.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::block_page::BlockPage;
use crate::config::Config;
use crate::counters::{Counters, Gauges, Snapshot};
use crate::handler::Handler;
use crate::http::HttpServer;
use crate::pipeline::ddr::{self, Ddr};
use crate::pipeline::{Clock, Pipeline, Policy};
use crate::postgres::sync::Shared;
use crate::querylog::{self, LogTask, QueryLog};
use crate::reload::Reloader;
use crate::server::{MAX_FORWARDS, Server, Sockets, Tuning, slots::ClientSlots};
use crate::tls::Certs;

/// Knobs that are not config keys.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// How often list files (and the TLS certificate and key) are checked for changes.
    pub watch_interval: Duration,
    /// The config file, for SIGHUP re-reads (`None` = embedded default).
    pub config_path: Option<PathBuf>,
    /// The clock every decision reads (tests move it forward instead of sleeping).
    pub clock: Clock,
    /// Runs once every socket is bound and before anything is answered: `sinkhole serve`
    /// gives up root there. An error stops the start.
    pub before_serving: Option<BeforeServing>,
}

/// A step run between binding and serving (see [`ServiceOptions::before_serving`]).
#[derive(Clone)]
pub struct BeforeServing(pub Arc<dyn Fn() -> std::io::Result<()> + Send + Sync>);

impl std::fmt::Debug for BeforeServing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BeforeServing(..)")
    }
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            watch_interval: Duration::from_secs(1),
            config_path: None,
            clock: Clock::system(),
            before_serving: None,
        }
    }
}

/// A running resolver.
pub struct Service {
    pipeline: Arc<Pipeline>,
    server: Server,
    reloader: Arc<Reloader>,
    watch: tokio::task::JoinHandle<()>,
    log: Option<(QueryLog, LogTask)>,
    refresh: tokio::task::JoinHandle<()>,
    block_page: BlockPage,
    /// The HTTP API and `/metrics`, when `[http] listen` is set.
    http: Option<HttpServer>,
    /// DNS over TLS, HTTPS and QUIC, when any is on.
    tls: Option<Encrypted>,
    /// The listener of the shared state, with `[sync] postgres = true`.
    sync: Option<tokio::task::JoinHandle<()>>,
}

/// The encrypted listeners' addresses, their certificate, and the task watching its files.
struct Encrypted {
    /// DNS over TLS (port 0 resolved); may be empty.
    dot: Vec<std::net::SocketAddr>,
    /// DNS over HTTPS (port 0 resolved); may be empty.
    doh: Vec<std::net::SocketAddr>,
    /// DNS over QUIC (port 0 resolved); may be empty.
    doq: Vec<std::net::SocketAddr>,
    certs: Arc<Certs>,
    watch: tokio::task::JoinHandle<()>,
}

impl Service {
    /// Starts serving `policy` (loaded from `cfg` by the caller, who reports its lists).
    /// Call from within the tokio runtime `rt`. Every socket is bound (the DNS ones by the
    /// caller, the block page's and the API's here) before `opts.before_serving` runs, and
    /// nothing is answered before it has returned.
    pub fn start(
        cfg: Config,
        policy: Policy,
        sockets: Sockets,
        rt: &tokio::runtime::Handle,
        opts: ServiceOptions,
    ) -> std::io::Result<Self> {
        let mut sockets = sockets;
        let tls_listeners = std::mem::take(&mut sockets.tls);
        let https_listeners = std::mem::take(&mut sockets.https);
        let quic_sockets = std::mem::take(&mut sockets.quic);
        // The certificate is read before anything runs: a pair that went bad since the
        // config was checked stops the start.
        let none_bound =
            tls_listeners.is_empty() && https_listeners.is_empty() && quic_sockets.is_empty();
        let tls = match (&cfg.server.tls, none_bound) {
            (_, true) => None,
            (None, false) => {
                return Err(std::io::Error::other(
                    "tls sockets bound without server.tls_listen, https_listen or quic_listen in the config",
                ));
            }
            (Some(t), false) => {
                let certs = Certs::load(&t.cert, &t.key)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                let certs = Arc::new(certs);
                let setup = |e: rustls::Error| std::io::Error::other(format!("tls setup: {e}"));
                let dot = crate::tls::dot_config(Arc::clone(&certs)).map_err(setup)?;
                let doh = crate::tls::doh_config(Arc::clone(&certs)).map_err(setup)?;
                let doq = crate::tls::doq_config(Arc::clone(&certs)).map_err(setup)?;
                Some((certs, (dot, doh, doq), t.handshake_timeout))
            }
        };
        let counters = Arc::new(Counters::new());
        counters.set_lists(policy.lists.clone());
        // DDR names the encrypted listeners as bound (a configured port 0 gets one here).
        let bound = |l: &Vec<std::net::TcpListener>, kind| {
            let addrs = l.iter().filter_map(|t| t.local_addr().ok());
            addrs.map(move |a| (kind, a)).collect::<Vec<_>>()
        };
        let mut endpoints = bound(&tls_listeners, ddr::Kind::Tls);
        endpoints.extend(bound(&https_listeners, ddr::Kind::Https));
        let quic_addrs: Vec<std::net::SocketAddr> = quic_sockets
            .iter()
            .filter_map(|u| u.local_addr().ok())
            .collect();
        endpoints.extend(quic_addrs.iter().map(|&a| (ddr::Kind::Quic, a)));
        let ddr = Ddr::with(cfg.server.name.as_deref(), &endpoints);
        if !endpoints.is_empty() && !ddr.is_on() {
            tracing::info!(
                "server.name is not set: DDR (_dns.resolver.arpa) answers NODATA; set it to the certificate's name so that clients find the encrypted listeners"
            );
        }
        let pipeline = Pipeline::new(&cfg, policy, Arc::clone(&counters))
            .with_ddr(ddr)
            .with_runtime(rt.clone());
        let pipeline = Arc::new(pipeline);
        let log = cfg.log.as_ref().map(querylog::start).transpose()?;
        let query_log = log.as_ref().map(|(l, _)| l.clone());
        // Every socket is bound before anything runs: a port the block page or the API
        // cannot have stops the start before DNS is answered, and `before_serving` (giving
        // up root) comes after the last bind and before the first answer.
        let block_page_listeners =
            crate::block_page::bind(&cfg.http.block_page_listen).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("block page on {:?}: {e}", cfg.http.block_page_listen),
                )
            })?;
        let http_listeners = HttpServer::bind(&cfg.http.listen)?;
        if let Some(BeforeServing(step)) = &opts.before_serving {
            step()?;
        }
        let block_page = BlockPage::start(
            block_page_listeners,
            Arc::clone(&pipeline),
            opts.clock.clone(),
            rt,
        )?;
        let forwards = ClientSlots::new(cfg.server.max_forwards_per_client, MAX_FORWARDS);
        let handler = Arc::new(Handler::new(
            Arc::clone(&pipeline),
            forwards,
            query_log.is_some(),
        ));
        let mut server = Server::start(
            sockets,
            handler,
            query_log.clone(),
            rt,
            Tuning {
                tcp_idle: cfg.server.tcp_idle,
                udp_batch_wait: cfg.server.udp_batch_wait,
                tcp_max_connections: cfg.server.tcp_max_connections,
                tcp_max_per_client: cfg.server.tcp_max_per_client,
            },
            opts.clock.clone(),
        )?;
        let tls = match tls {
            None => None,
            Some((certs, (dot_config, doh_config, doq_config), handshake)) => {
                let addrs = |ls: &[std::net::TcpListener]| {
                    ls.iter().filter_map(|l| l.local_addr().ok()).collect()
                };
                let (dot, doh) = (addrs(&tls_listeners), addrs(&https_listeners));
                server.start_tls(tls_listeners, dot_config, handshake, rt)?;
                server.start_https(https_listeners, doh_config, handshake, rt)?;
                server.start_quic(quic_sockets, doq_config, handshake, rt)?;
                let watch = {
                    let _g = rt.enter();
                    certs.spawn_watch(opts.watch_interval)
                };
                Some(Encrypted {
                    dot,
                    doh,
                    doq: quic_addrs,
                    certs,
                    watch,
                })
            }
        };
        let http_cfg = cfg.http.clone();
        let query_log_for_http = query_log.clone();
        let sync_db = cfg
            .log
            .as_ref()
            .and_then(|l| l.postgres.clone())
            .filter(|_| cfg.sync_postgres);
        let reloader = Arc::new(Reloader::new(
            Arc::clone(&pipeline),
            query_log,
            cfg,
            opts.config_path,
        ));
        let shared = sync_db.map(|db| {
            Arc::new(Shared::new(
                db.url,
                db.instance,
                Arc::clone(&reloader),
                Arc::clone(&pipeline),
                opts.clock.clone(),
            ))
        });
        let (watch, refresh, http, sync) = {
            let _g = rt.enter();
            let sync = shared.as_ref().map(Shared::spawn_listener);
            let http = if http_listeners.is_empty() {
                None
            } else {
                Some(HttpServer::start(
                    http_listeners,
                    &http_cfg,
                    Arc::clone(&pipeline),
                    Arc::clone(&reloader),
                    query_log_for_http,
                    shared,
                    opts.clock,
                )?)
            };
            (
                reloader.spawn_watch(opts.watch_interval),
                reloader.spawn_refresh(),
                http,
                sync,
            )
        };
        Ok(Self {
            pipeline,
            server,
            reloader,
            watch,
            log,
            refresh,
            block_page,
            http,
            tls,
            sync,
        })
    }

    /// The DNS-over-TLS addresses (port 0 resolved); empty when it is off.
    pub fn tls_addrs(&self) -> &[std::net::SocketAddr] {
        self.tls.as_ref().map_or(&[], |e| &e.dot)
    }

    /// The DNS-over-HTTPS addresses (port 0 resolved); empty when it is off.
    pub fn https_addrs(&self) -> &[std::net::SocketAddr] {
        self.tls.as_ref().map_or(&[], |e| &e.doh)
    }

    /// The DNS-over-QUIC addresses (port 0 resolved); empty when it is off.
    pub fn quic_addrs(&self) -> &[std::net::SocketAddr] {
        self.tls.as_ref().map_or(&[], |e| &e.doq)
    }

    /// Reads the TLS certificate and key again now (SIGHUP), as the file watch does when
    /// they change; a bad pair is logged and the last good one stays.
    pub fn reload_tls(&self) {
        if let Some(e) = &self.tls {
            let certs = Arc::clone(&e.certs);
            tokio::task::spawn_blocking(move || certs.reload());
        }
    }

    /// The addresses the HTTP API listens on (with the ports chosen for port 0); empty when
    /// `[http] listen` is not set.
    pub fn http_addrs(&self) -> &[std::net::SocketAddr] {
        self.http.as_ref().map_or(&[], HttpServer::addrs)
    }

    /// The query log's handle, when the log is on (its counters: written, dropped).
    pub fn query_log(&self) -> Option<&QueryLog> {
        self.log.as_ref().map(|(l, _)| l)
    }

    /// The listeners (their fault counters and limits, for tests and metrics).
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// The pipeline (for tests and metrics).
    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipeline
    }

    /// The service's counters, with the gauges read now (cache size, query log), one line
    /// per counter: what `sinkhole serve` prints on SIGUSR1 and at exit.
    pub fn counters_text(&self) -> String {
        snapshot(&self.pipeline, self.query_log()).lines()
    }

    /// The service's counters as numbers, with the gauges read now (for the web issue's
    /// `/metrics` and dashboard, and for tests).
    pub fn counters(&self) -> Snapshot {
        snapshot(&self.pipeline, self.query_log())
    }

    /// The block page's addresses (port 0 resolved); empty when it is off.
    pub fn block_page_addrs(&self) -> &[std::net::SocketAddr] {
        self.block_page.local_addrs()
    }

    /// The reloader (SIGHUP calls it).
    pub fn reloader(&self) -> &Arc<Reloader> {
        &self.reloader
    }

    /// Stops the listeners, the watcher and the list downloads, then writes out and flushes
    /// the queued query log records (waiting at most 5 s for the disk). Returns the counters
    /// as they stand after the last record was written (see [`Service::counters_text`]).
    pub fn shutdown(self) -> String {
        let faults = self.server.faults();
        if faults.panics() > 0 || faults.restarts() > 0 {
            tracing::warn!(
                panics = faults.panics(),
                restarts = faults.restarts(),
                "listener faults since start (each was logged at error level when it happened)"
            );
        }
        self.watch.abort();
        self.refresh.abort();
        if let Some(s) = &self.sync {
            s.abort();
        }
        if let Some(e) = &self.tls {
            e.watch.abort();
        }
        self.block_page.shutdown();
        if let Some(h) = &self.http {
            h.shutdown();
        }
        self.server.shutdown();
        let log = self.log.map(|(log, task)| {
            task.finish(std::time::Duration::from_secs(5));
            log
        });
        snapshot(&self.pipeline, log.as_ref()).lines()
    }
}

/// The counters of `pipeline`, with the gauges read now.
pub(crate) fn snapshot(pipeline: &Pipeline, log: Option<&QueryLog>) -> Snapshot {
    let cache = pipeline.cache();
    let gauges = Gauges {
        cache_entries: cache.len() as u64,
        cache_bytes: cache.bytes() as u64,
        querylog_written: log.map_or(0, QueryLog::written),
        querylog_dropped: log.map_or(0, QueryLog::dropped),
        querylog_postgres: log.and_then(QueryLog::postgres),
    };
    pipeline.counters().snapshot(gauges)
}
