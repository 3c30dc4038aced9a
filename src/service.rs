//! A whole running resolver: pipeline, listeners, and the list watcher, started from a
//! validated config and pre-bound sockets, stopped by [`Service::shutdown`]. `serve` and
//! the integration tests both run exactly this.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::pipeline::Pipeline;
use crate::pipeline::blocking::Blocking;
use crate::querylog::{self, LogTask, QueryLog};
use crate::reload::Reloader;
use crate::server::{Server, Sockets, Tuning};

/// Knobs that are not config keys.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// How often list files are checked for changes.
    pub watch_interval: Duration,
    /// The config file, for SIGHUP re-reads (`None` = embedded default).
    pub config_path: Option<PathBuf>,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            watch_interval: Duration::from_secs(1),
            config_path: None,
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
}

impl Service {
    /// Starts serving. Call from within the tokio runtime `rt`.
    pub fn start(
        cfg: Config,
        blocking: Blocking,
        sockets: Sockets,
        rt: &tokio::runtime::Handle,
        opts: ServiceOptions,
    ) -> std::io::Result<Self> {
        let pipeline = Arc::new(Pipeline::new(&cfg, blocking));
        let log = cfg.log.as_ref().map(querylog::start).transpose()?;
        let server = Server::start(
            sockets,
            Arc::clone(&pipeline),
            log.as_ref().map(|(l, _)| l.clone()),
            rt,
            Tuning {
                tcp_idle: cfg.server.tcp_idle,
                udp_batch_wait: cfg.server.udp_batch_wait,
                tcp_max_connections: cfg.server.tcp_max_connections,
                tcp_max_per_client: cfg.server.tcp_max_per_client,
                max_forwards_per_client: cfg.server.max_forwards_per_client,
            },
        )?;
        let reloader = Arc::new(Reloader::new(Arc::clone(&pipeline), cfg, opts.config_path));
        let (watch, refresh) = {
            let _g = rt.enter();
            (
                reloader.spawn_watch(opts.watch_interval),
                reloader.spawn_refresh(),
            )
        };
        Ok(Self {
            pipeline,
            server,
            reloader,
            watch,
            log,
            refresh,
        })
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

    /// The reloader (SIGHUP calls it).
    pub fn reloader(&self) -> &Arc<Reloader> {
        &self.reloader
    }

    /// Stops the listeners, the watcher and the list downloads, then writes out and flushes
    /// the queued query log records (waiting at most 5 s for the disk).
    pub fn shutdown(self) {
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
        self.server.shutdown();
        if let Some((_, task)) = self.log {
            task.finish(std::time::Duration::from_secs(5));
        }
    }
}
