//! Reloading without losing a query: on SIGHUP (config and lists re-read) or when a list
//! file or a `local.files` hosts file changes on disk (lists and hosts files re-read), everything the new config needs is built first,
//! off the query path: the policy snapshot (lists, answer settings) on a low-priority
//! thread, the upstream set, the query log's new file. Only when every part is ready is it
//! applied: the policy swapped whole, `[upstream]` for the queries that start after the
//! swap, `[cache]` bounds (and the cache emptied when the checks of upstream answers
//! changed), `[log]` path and rotation (records already queued are written
//! first). A reload that fails in any part applies none of it. Keys that only a restart can
//! apply (`[server]`: listen addresses, thread counts, limits; turning the log on or off)
//! are named in a WARN.
//! URL lists are downloaded at start and every `blocking.refresh` (SIGHUP does not download).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;

use crate::blocklist::fetch::{self, Updated};
use crate::blocklist::load::{Location, log_reports};
use crate::config::Config;
use crate::pipeline::{Pipeline, Policy};
use crate::querylog::QueryLog;

/// What identifies a version of a file: modification time, size, inode.
type Stamp = Option<(SystemTime, u64, u64)>;

/// The previous snapshot being freed on a thread of its own; done when it is gone.
type Freeing = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

fn stamp(path: &PathBuf) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// Rebuilds and swaps the policy snapshot and applies the rest of a changed config.
pub struct Reloader {
    pipeline: Arc<Pipeline>,
    log: Option<QueryLog>,
    config_path: Option<PathBuf>,
    config: Mutex<Config>,
    /// Held by the reload running; holds the freeing of the snapshot the last one replaced,
    /// which the next reload awaits before it builds, so that memory never holds more than
    /// the serving snapshot and the one being built (a big list is tens of MiB).
    busy: tokio::sync::Mutex<Option<Freeing>>,
    /// The stamps of the files as the last reload found them before reading them, for the
    /// file watch: a change that a reload (SIGHUP, the API) has already read is not
    /// reloaded a second time.
    read: Mutex<Option<Vec<(PathBuf, Stamp)>>>,
    /// How the last reload ended: when, and its error if it failed (the HTTP API's list
    /// status).
    last: Mutex<Option<(SystemTime, Option<String>)>>,
}

/// The `[server]` keys (and the log's on/off, the rate limits' table size) that differ
/// between `old` and `new`: only a restart applies them (sockets, threads and the limits'
/// tables are made at start).
pub fn restart_keys(old: &Config, new: &Config) -> Vec<&'static str> {
    let (a, b) = (&old.server, &new.server);
    [
        ("server.listen", a.listen != b.listen),
        ("server.udp_threads", a.udp_threads != b.udp_threads),
        (
            "server.udp_batch_wait_us",
            a.udp_batch_wait != b.udp_batch_wait,
        ),
        ("server.tcp_idle_ms", a.tcp_idle != b.tcp_idle),
        (
            "server.tcp_max_connections",
            a.tcp_max_connections != b.tcp_max_connections,
        ),
        (
            "server.tcp_max_per_client",
            a.tcp_max_per_client != b.tcp_max_per_client,
        ),
        (
            "server.max_forwards_per_client",
            a.max_forwards_per_client != b.max_forwards_per_client,
        ),
        // The DoT, DoH and DoQ listeners and the files' names are taken at start (the files' contents
        // are re-read when they change, and on SIGHUP).
        // DDR's answer is made at start, from the listeners as bound.
        ("server.name", a.name != b.name),
        (
            "server.tls_listen",
            a.tls.as_ref().map(|t| &t.listen) != b.tls.as_ref().map(|t| &t.listen),
        ),
        (
            "server.https_listen",
            a.tls.as_ref().map(|t| &t.https_listen) != b.tls.as_ref().map(|t| &t.https_listen),
        ),
        (
            "server.quic_listen",
            a.tls.as_ref().map(|t| &t.quic_listen) != b.tls.as_ref().map(|t| &t.quic_listen),
        ),
        (
            "server.tls_cert",
            a.tls.as_ref().map(|t| &t.cert) != b.tls.as_ref().map(|t| &t.cert),
        ),
        (
            "server.tls_key",
            a.tls.as_ref().map(|t| &t.key) != b.tls.as_ref().map(|t| &t.key),
        ),
        (
            "server.tls_handshake_timeout_ms",
            a.tls.as_ref().map(|t| t.handshake_timeout)
                != b.tls.as_ref().map(|t| t.handshake_timeout),
        ),
        ("log.enabled", old.log.is_some() != new.log.is_some()),
        // The database writer's connection, instance name and batching are set at start.
        (
            "log.postgres",
            old.log.as_ref().and_then(|l| l.postgres.as_ref())
                != new.log.as_ref().and_then(|l| l.postgres.as_ref()),
        ),
        // The shared state's listener is started with the service.
        ("sync.postgres", old.sync_postgres != new.sync_postgres),
        // The HTTP server's sockets and its token are taken at start.
        ("http.listen", old.http.listen != new.http.listen),
        (
            "http.block_page_listen",
            old.http.block_page_listen != new.http.block_page_listen,
        ),
        ("http.token", old.http.token != new.http.token),
        (
            "http.public_read",
            old.http.public_read != new.http.public_read,
        ),
        (
            "limits.max_clients",
            old.limits.max_clients != new.limits.max_clients,
        ),
    ]
    .into_iter()
    .filter_map(|(key, changed)| changed.then_some(key))
    .collect()
}

impl Reloader {
    /// A reloader for `pipeline` (and the query log `log`, when on), serving `config` read
    /// from `config_path` (`None` for the embedded default, which SIGHUP cannot re-read).
    pub fn new(
        pipeline: Arc<Pipeline>,
        log: Option<QueryLog>,
        config: Config,
        config_path: Option<PathBuf>,
    ) -> Self {
        Self {
            pipeline,
            log,
            config_path,
            config: Mutex::new(config),
            busy: tokio::sync::Mutex::new(None),
            read: Mutex::new(None),
            last: Mutex::new(None),
        }
    }

    /// The config being served.
    pub fn config(&self) -> Config {
        self.config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The current stamp of every list file.
    fn stamps(&self) -> Vec<(PathBuf, Stamp)> {
        self.files()
            .into_iter()
            .map(|p| {
                let s = stamp(&p);
                (p, s)
            })
            .collect()
    }

    fn files(&self) -> Vec<PathBuf> {
        let cfg = self.config.lock().unwrap_or_else(|p| p.into_inner());
        cfg.all_lists()
            // A URL list's cached copy: a download (the refresh task, or `sinkhole lists
            // update` while serving) is picked up like an edited list file.
            .filter_map(|s| s.path(&cfg.blocking.cache_dir))
            // Hosts files of `local.files` are watched the same way.
            .chain(cfg.local.files.iter().map(|f| f.path.clone()))
            .collect()
    }

    /// How the last reload (SIGHUP, a changed file, the API) ended: when, and its error
    /// if it failed; `None` before the first.
    pub fn last_reload(&self) -> Option<(SystemTime, Option<String>)> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reloads the lists (and, with `reread_config`, the whole config file first). On any
    /// error nothing is applied, the running snapshot stays, and the error is returned.
    pub async fn reload(&self, reread_config: bool) -> anyhow::Result<()> {
        let mut one_at_a_time = self.busy.lock().await;
        if let Some(freeing) = one_at_a_time.take()
            && let Err(e) = freeing.await
        {
            tracing::debug!("freeing the previous lists: {e:#}");
        }
        let read = self.stamps();
        let r = self.reload_now(reread_config, &mut one_at_a_time).await;
        *self.read.lock().unwrap_or_else(|p| p.into_inner()) = Some(read);
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((
            SystemTime::now(),
            r.as_ref().err().map(|e| format!("{e:#}")),
        ));
        r
    }

    async fn reload_now(
        &self,
        reread_config: bool,
        freeing: &mut Option<Freeing>,
    ) -> anyhow::Result<()> {
        let start = Instant::now();
        let old = self.config();
        let new = match &self.config_path {
            Some(path) if reread_config => {
                let path = path.clone();
                let new = tokio::task::spawn_blocking(move || Config::load(&path))
                    .await
                    .context("config reload task failed")??;
                for w in &new.warnings {
                    tracing::warn!("{w}");
                }
                new
            }
            _ => old.clone(),
        };
        // Build: the policy snapshot (every list read again).
        let for_build = new.clone();
        let (policy, reports) = low_priority("sinkhole-reload", move || Policy::load(&for_build))
            .await
            .context("list reload thread failed")??;
        log_reports(&reports);
        // The query log's new file is opened now: the last step that can fail. Records
        // queued before this point still go to the old file.
        if let (Some(log), Some(new_log)) = (&self.log, &new.log)
            && old.log.as_ref() != Some(new_log)
        {
            let (log, new_log) = (log.clone(), new_log.clone());
            let what = format!(
                "{}: [log] path = \"{}\" cannot be used",
                new.file,
                new_log
                    .path
                    .as_deref()
                    .map_or_else(String::new, |p| p.display().to_string())
            );
            // It waits for the writer to switch files: not on a runtime thread.
            tokio::task::spawn_blocking(move || log.reconfigure(new_log))
                .await
                .context("query log reconfigure task failed")?
                .context(what)?;
        }
        // Apply: nothing below can fail.
        let rules = policy.blocking.list().len();
        self.pipeline.counters().set_lists(policy.lists.clone());
        let old_policy = self.pipeline.swap_policy(policy);
        // Freeing a big list takes milliseconds: do it on a low-priority thread, after
        // queries that started with it have finished. The next reload waits for it.
        *freeing = Some(Box::pin(low_priority("sinkhole-free", move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(old_policy);
        })));
        if new.upstream != old.upstream || new.forward != old.forward || new.cache != old.cache {
            self.pipeline.apply(&new);
        }
        // Cached answers passed the old response-IP and rebinding checks, which run only
        // before an answer is stored (forward domains are exempt from rebinding): judge
        // them again by asking anew.
        if new.blocking.answers != old.blocking.answers || new.forward != old.forward {
            self.pipeline.cache().clear();
        }
        let restart = restart_keys(&old, &new);
        if !restart.is_empty() {
            tracing::warn!(
                keys = %restart.join(", "),
                "changed keys that take effect only after a restart; everything else was reloaded"
            );
        }
        *self.config.lock().unwrap_or_else(|p| p.into_inner()) = new;
        tracing::info!(
            rules,
            elapsed_ms = start.elapsed().as_millis() as u64,
            "config and lists reloaded"
        );
        Ok(())
    }

    /// Reloads and logs the outcome; a failure keeps the old set. True when it succeeded.
    pub async fn reload_logged(&self, reread_config: bool) -> bool {
        match self.reload(reread_config).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(
                    "reload failed, still serving the previous config and lists: {e:#}"
                );
                false
            }
        }
    }

    /// Downloads every URL list whose copy changed (conditional requests, guards in
    /// `blocklist::fetch`); the file watch then reloads. Failures are logged and keep the
    /// last good copy. Returns how many lists were updated.
    pub async fn refresh_urls(&self) -> usize {
        let cfg = self.config();
        let blocking = &cfg.blocking;
        let mut updated = 0;
        for src in cfg.all_lists() {
            let Location::Url(url) = &src.location else {
                continue;
            };
            let (url, dir, max_shrink) =
                (url.clone(), blocking.cache_dir.clone(), blocking.max_shrink);
            let r = tokio::task::spawn_blocking(move || {
                let r = fetch::update(
                    &url,
                    &dir,
                    max_shrink,
                    Duration::from_secs(120),
                    &mut |_, _| {},
                );
                (url, r)
            })
            .await;
            match r {
                Ok((url, Ok(Updated::Stored(rules)))) => {
                    tracing::info!(list = %url, rules, "list downloaded");
                    updated += 1;
                }
                Ok((url, Ok(Updated::NotModified))) => {
                    tracing::debug!(list = %url, "list not modified");
                }
                Ok((_, Err(e))) => {
                    tracing::warn!("{e}; still serving the last good copy");
                }
                Err(e) => tracing::error!("list download task failed: {e}"),
            }
        }
        // The file watch sees the new cached copies and reloads.
        updated
    }

    /// Downloads the URL lists now and then every `blocking.refresh` (re-read each round,
    /// so a SIGHUP that changes it takes effect after the current wait).
    pub fn spawn_refresh(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let (has_urls, every) = {
                    let cfg = me.config.lock().unwrap_or_else(|p| p.into_inner());
                    (
                        cfg.blocking
                            .lists
                            .iter()
                            .any(|s| matches!(s.location, Location::Url(_))),
                        cfg.blocking.refresh,
                    )
                };
                if has_urls {
                    me.refresh_urls().await;
                }
                tokio::time::sleep(every).await;
            }
        })
    }

    /// Polls the list files every `interval`; a file whose stamp changed and then stayed
    /// the same for one interval (so a write in progress is not read half-way) triggers a
    /// reload.
    pub fn spawn_watch(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut seen: Vec<(PathBuf, Stamp)> = me.stamps();
            let mut pending = false;
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                // A reload ran since (SIGHUP, the API, this watch): what it read is seen.
                if let Some(read) = me.read.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    seen = read;
                    pending = false;
                }
                let now: Vec<(PathBuf, Stamp)> = me.stamps();
                let changed = now != seen;
                seen = now;
                if changed {
                    pending = true;
                } else if pending {
                    // A reload running now may be reading this very change: judge after it.
                    if me.busy.try_lock().is_err() {
                        continue;
                    }
                    pending = false;
                    tracing::info!("list file changed on disk; reloading");
                    let _ = me.reload_logged(false).await;
                }
            }
        })
    }
}

/// Runs `f` on a thread of its own at the lowest CPU priority (nice 19), so that building
/// or freeing a big list never takes a core from the threads that answer queries: on a
/// 2-core box, a reload at normal priority delays answers by a scheduler slice (10+ ms).
/// The thread still runs on an idle core at full speed.
fn low_priority<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> impl std::future::Future<Output = anyhow::Result<T>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            if let Err(e) =
                thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min)
            {
                tracing::debug!(error = ?e, "cannot lower the reload thread's priority");
            }
            let _ = tx.send(f());
        });
    async move {
        spawned.context("cannot start a reload thread")?;
        rx.await.context("reload thread ended without a result")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        Config::parse(text, "t.toml", None).unwrap()
    }

    #[test]
    fn restart_keys_name_exactly_the_server_keys_that_changed() {
        let base = "[server]\nlisten = [\"127.0.0.1:5300\"]\n";
        let old = cfg(base);
        assert!(restart_keys(&old, &old).is_empty());
        let new = cfg("[server]\nlisten = [\"127.0.0.1:5301\"]\nudp_threads = 3\n\
             [upstream]\nservers = [\"192.0.2.1:53\"]\n[cache]\nmax_entries = 5\n");
        assert_eq!(
            restart_keys(&old, &new),
            ["server.listen", "server.udp_threads"],
            "[upstream] and [cache] reload without a restart"
        );
        let logged = cfg(&format!("{base}[log]\npath = \"/tmp/q.jsonl\"\n"));
        assert_eq!(restart_keys(&old, &logged), ["log.enabled"]);
    }
}
