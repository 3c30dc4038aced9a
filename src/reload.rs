//! Reloading without losing a query: on SIGHUP (config and lists re-read) or when a list
//! file changes on disk (lists re-read), a new blocking stage is built on a blocking thread
//! and swapped in atomically. Until then, and if the reload fails, the old one keeps serving.
//! URL lists are downloaded at start and every `blocking.refresh` (SIGHUP does not download).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;

use crate::blocklist::fetch::{self, Updated};
use crate::blocklist::load::{Location, log_reports};
use crate::config::Config;
use crate::pipeline::Pipeline;
use crate::pipeline::blocking::Blocking;

/// What identifies a version of a file: modification time, size, inode.
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &PathBuf) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// Rebuilds and swaps the blocking stage.
pub struct Reloader {
    pipeline: Arc<Pipeline>,
    config_path: Option<PathBuf>,
    config: Mutex<Config>,
    busy: tokio::sync::Mutex<()>,
}

impl Reloader {
    /// A reloader for `pipeline`, serving `config` read from `config_path` (`None` for the
    /// embedded default, which SIGHUP cannot re-read).
    pub fn new(pipeline: Arc<Pipeline>, config: Config, config_path: Option<PathBuf>) -> Self {
        Self {
            pipeline,
            config_path,
            config: Mutex::new(config),
            busy: tokio::sync::Mutex::new(()),
        }
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
        cfg.blocking
            .lists
            .iter()
            // A URL list's cached copy: a download (the refresh task, or `sinkhole lists
            // update` while serving) is picked up like an edited list file.
            .filter_map(|s| s.path(&cfg.blocking.cache_dir))
            .collect()
    }

    /// Reloads the lists (and, with `reread_config`, the config file first). On any error
    /// the running set stays and the error is returned.
    pub async fn reload(&self, reread_config: bool) -> anyhow::Result<()> {
        let _one_at_a_time = self.busy.lock().await;
        let start = Instant::now();
        let mut cfg = self
            .config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if reread_config && let Some(path) = &self.config_path {
            let path = path.clone();
            let new = tokio::task::spawn_blocking(move || Config::load(&path))
                .await
                .context("config reload task failed")??;
            if new.server != cfg.server
                || new.upstream != cfg.upstream
                || new.cache != cfg.cache
                || new.log != cfg.log
            {
                tracing::warn!(
                    "[server], [upstream], [cache] and [log] changes take effect after a restart; only [blocking] was reloaded"
                );
            }
            cfg.blocking = new.blocking;
        }
        let bcfg = cfg.blocking.clone();
        let (blocking, reports) = low_priority("sinkhole-reload", move || Blocking::load(&bcfg))
            .await
            .context("list reload thread failed")??;
        log_reports(&reports);
        let rules = blocking.list().len();
        let old = self.pipeline.swap_blocking(blocking);
        // Freeing a big list takes milliseconds: do it on a low-priority thread, after
        // queries that started with it have finished.
        drop(low_priority("sinkhole-free", move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(old);
        }));
        *self.config.lock().unwrap_or_else(|p| p.into_inner()) = cfg;
        tracing::info!(
            rules,
            elapsed_ms = start.elapsed().as_millis() as u64,
            "lists reloaded"
        );
        Ok(())
    }

    /// Reloads and logs the outcome; a failure keeps the old set.
    pub async fn reload_logged(&self, reread_config: bool) {
        if let Err(e) = self.reload(reread_config).await {
            tracing::error!("reload failed, still serving the previous lists: {e:#}");
        }
    }

    /// Downloads every URL list whose copy changed (conditional requests, guards in
    /// `blocklist::fetch`); the file watch then reloads. Failures are logged and keep the
    /// last good copy. Returns how many lists were updated.
    pub async fn refresh_urls(&self) -> usize {
        let blocking = self
            .config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .blocking
            .clone();
        let mut updated = 0;
        for src in &blocking.lists {
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
                let now: Vec<(PathBuf, Stamp)> = me.stamps();
                let changed = now != seen;
                seen = now;
                if changed {
                    pending = true;
                } else if pending {
                    pending = false;
                    tracing::info!("list file changed on disk; reloading");
                    me.reload_logged(false).await;
                    seen = me.stamps();
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
