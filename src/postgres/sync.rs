//! `[sync] postgres = true`: the shared list entries and pause kept applied on this
//! instance ([`Shared`]).
//!
//! A listener task holds one connection with `LISTEN` on the shared channel. Each time it
//! connects (at start, after an outage) and at each notification it catches up: it reads
//! every shared entry and the pause, writes this host's copy of the entries in
//! `blocking.cache_dir` when it changed and reloads the lists (the copy is a list source of
//! the policy, `postgres:shared-block` / `postgres:shared-allow`), and applies the pause
//! (its end is wall-clock time; what is left of it runs on this instance's clock). The copy
//! is what an instance started while the database is down serves. A lost connection is
//! retried with backoff (1 s doubling to [`MAX_BACKOFF`]); a connection that went silent is
//! found by a ping every [`PING_EVERY`]. DNS answering never waits on any of it.
//!
//! Edits (the API, `pause`/`resume`) write the database on a connection of their own, then
//! catch up at once, so that the answer comes once the edit is live here; the others get
//! it from the notification. A database that is down fails the edit, with its error;
//! nothing is queued, and nothing changes here either.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_postgres::AsyncMessage;

use super::shared::{self, CHANNEL, Entry};
use super::{DbError, migrate};
use crate::blocklist::Kind;
use crate::blocklist::edit::Replacement;
use crate::blocklist::load::shared_copy_path;
use crate::config::postgres::DbUrl;
use crate::pipeline::{Clock, Pipeline};
use crate::reload::Reloader;

/// The longest wait between two connection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// How often the listening connection is checked while no notification comes.
pub const PING_EVERY: Duration = Duration::from_secs(30);

/// What failed keeping or changing the shared state.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The database.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Writing this host's copy of the entries.
    #[error("{path}: cannot write the copy of the shared list entries: {source}")]
    Copy {
        /// The copy.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The listening connection ended or went silent.
    #[error("PostgreSQL at {target}: {why}")]
    Lost {
        /// `user@host:port/db`.
        target: String,
        /// What happened.
        why: &'static str,
    },
    /// The reload after the copy changed.
    #[error("the shared list entries were read, but the reload failed: {0}")]
    Reload(String),
}

/// The shared state of one instance: where the database is, and what applies it here.
pub struct Shared {
    url: DbUrl,
    instance: String,
    reloader: Arc<Reloader>,
    pipeline: Arc<Pipeline>,
    clock: Clock,
    /// One catch-up, pause or resume at a time: a slower one must not apply an older state
    /// over a newer.
    busy: tokio::sync::Mutex<()>,
}

impl Shared {
    /// The shared state of the instance `instance`, in the database at `url`.
    pub fn new(
        url: DbUrl,
        instance: String,
        reloader: Arc<Reloader>,
        pipeline: Arc<Pipeline>,
        clock: Clock,
    ) -> Self {
        Self {
            url,
            instance,
            reloader,
            pipeline,
            clock,
            busy: tokio::sync::Mutex::new(()),
        }
    }

    /// Where the database is, for messages (`user@host:port/db`).
    pub fn describe(&self) -> String {
        self.url.describe()
    }

    fn lost(&self, why: &'static str) -> SyncError {
        SyncError::Lost {
            target: self.url.describe(),
            why,
        }
    }

    /// A connection to a database whose schema this build knows.
    async fn connect(&self) -> Result<tokio_postgres::Client, DbError> {
        let client = super::connect(&self.url).await?;
        migrate::check(&client).await?;
        Ok(client)
    }

    /// Reads the shared state and applies it here: the copy of the entries written and
    /// the lists reloaded when they changed (returns whether they did), the pause set.
    pub async fn catch_up(&self, client: &tokio_postgres::Client) -> Result<bool, SyncError> {
        let _one = self.busy.lock().await;
        let entries = shared::entries(client).await?;
        let until = shared::pause_until(client).await?;
        let cache_dir = self.reloader.config().blocking.cache_dir;
        let changed = tokio::task::spawn_blocking(move || write_copies(&cache_dir, &entries))
            .await
            .map_err(|e| SyncError::Reload(format!("copy task failed: {e}")))??;
        if changed {
            self.reloader
                .reload(false)
                .await
                .map_err(|e| SyncError::Reload(format!("{e:#}")))?;
        }
        self.apply_pause(until);
        Ok(changed)
    }

    /// Pauses until `until` (wall clock), or resumes when it is `None` or past.
    fn apply_pause(&self, until: Option<SystemTime>) {
        let now = self.clock.now();
        let pause = self.pipeline.pause();
        match until.and_then(|u| u.duration_since(now.wall).ok()) {
            Some(left) if !left.is_zero() => {
                // The same end again (our own notification): left as it runs.
                let same = pause
                    .remaining(&now)
                    .is_some_and(|r| r.abs_diff(left) < Duration::from_secs(1));
                if !same {
                    pause.pause(&now, left);
                    tracing::info!(
                        secs = left.as_secs(),
                        "blocking paused through the shared state"
                    );
                }
            }
            _ => {
                if pause.resume(&now) {
                    tracing::info!("blocking resumed through the shared state");
                }
            }
        }
    }

    /// Adds `names` (checked, normalised) as shared entries of `kind`, then applies them
    /// here; returns (added, already there).
    pub async fn add(
        &self,
        kind: Kind,
        names: &[String],
        comment: Option<&str>,
    ) -> Result<(Vec<String>, Vec<String>), SyncError> {
        let mut client = self.connect().await?;
        let done = shared::add(&mut client, kind, names, comment, &self.instance).await?;
        self.catch_up(&client).await?;
        Ok(done)
    }

    /// Removes the shared entries `names` of `kind`, then applies that here; returns
    /// (removed, not there).
    pub async fn remove(
        &self,
        kind: Kind,
        names: &[String],
    ) -> Result<(Vec<String>, Vec<String>), SyncError> {
        let mut client = self.connect().await?;
        let done = shared::remove(&mut client, kind, names).await?;
        self.catch_up(&client).await?;
        Ok(done)
    }

    /// Pauses every instance for `d` from now (wall clock), this one at once.
    pub async fn pause(&self, d: Duration) -> Result<(), SyncError> {
        let d = d.min(crate::pipeline::pause::MAX_PAUSE);
        let mut client = self.connect().await?;
        // After a catch-up in progress, which may have read the state before this write:
        // applied after ours, its read would resume what was just paused.
        let _one = self.busy.lock().await;
        let until = self.clock.now().wall + d;
        shared::set_pause(&mut client, Some(until), &self.instance).await?;
        self.apply_pause(Some(until));
        Ok(())
    }

    /// Ends the pause on every instance, this one at once.
    pub async fn resume(&self) -> Result<(), SyncError> {
        let mut client = self.connect().await?;
        // As in `pause`: not overtaken by a catch-up that read the state before.
        let _one = self.busy.lock().await;
        shared::set_pause(&mut client, None, &self.instance).await?;
        self.apply_pause(None);
        Ok(())
    }

    /// Keeps the shared state applied until aborted: listens, catches up at each
    /// connection and notification, reconnects with backoff.
    pub fn spawn_listener(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut backoff = Duration::from_secs(1);
            let mut down_since: Option<String> = None;
            loop {
                match me.listen(&mut down_since, &mut backoff).await {
                    Ok(()) => {}
                    Err(e) => {
                        let msg = e.to_string();
                        if down_since.as_deref() != Some(msg.as_str()) {
                            tracing::warn!(
                                "shared state: {msg}; retrying (this instance keeps its last copy of the shared entries)"
                            );
                            down_since = Some(msg);
                        }
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        })
    }

    /// One connection's life: connect, `LISTEN`, catch up, then catch up again at each
    /// notification until the connection ends.
    async fn listen(
        &self,
        down: &mut Option<String>,
        backoff: &mut Duration,
    ) -> Result<(), SyncError> {
        let (client, mut conn) = super::connect_raw(&self.url).await?;
        // Notifications wake the loop below; one waiting is enough (each catch-up reads
        // everything), so the channel is small and a full one drops the rest.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(_))) => {
                        let _ = tx.try_send(());
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "shared state: connection ended");
                        break;
                    }
                    None => break,
                }
            }
        });
        migrate::check(&client).await?;
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(DbError::query("listening for changes of the shared state"))?;
        self.catch_up(&client).await?;
        if down.take().is_some() {
            tracing::info!(
                database = %self.url.describe(),
                "shared state: connected again; caught up"
            );
        }
        *backoff = Duration::from_secs(1);
        loop {
            tokio::select! {
                got = rx.recv() => {
                    if got.is_none() {
                        return Err(self.lost("the connection ended"));
                    }
                    self.catch_up(&client).await?;
                }
                () = tokio::time::sleep(PING_EVERY) => {
                    let ping = tokio::time::timeout(Duration::from_secs(10), client.simple_query("SELECT 1"));
                    match ping.await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return Err(DbError::query("checking the connection")(e).into()),
                        Err(_) => return Err(self.lost("no answer for 10 s")),
                    }
                }
            }
        }
    }
}

/// Writes the copy of each kind whose text changed; true when one did.
fn write_copies(cache_dir: &Path, entries: &[Entry]) -> Result<bool, SyncError> {
    let mut changed = false;
    for kind in [Kind::Block, Kind::Allow] {
        let path = shared_copy_path(cache_dir, kind);
        let (text, bad) = shared::render(entries, kind);
        if bad > 0 {
            tracing::warn!(
                count = bad,
                kind = shared::kind_text(kind),
                "shared list entries that are not valid names were left out"
            );
        }
        if std::fs::read(&path).ok().as_deref() == Some(text.as_bytes()) {
            continue;
        }
        let io = |source| SyncError::Copy {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(cache_dir).map_err(io)?;
        let mut r = Replacement::beside(&path, None).map_err(io)?;
        std::io::Write::write_all(r.file(), text.as_bytes()).map_err(io)?;
        r.commit().map_err(io)?;
        changed = true;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_written_only_when_their_text_changes() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let block = |name: &str| Entry {
            kind: Kind::Block,
            name: name.into(),
            comment: None,
        };
        assert!(write_copies(&cache, &[]).unwrap(), "first: both written");
        assert!(!write_copies(&cache, &[]).unwrap(), "same text: untouched");
        assert!(write_copies(&cache, &[block("a.example")]).unwrap());
        let text = std::fs::read_to_string(shared_copy_path(&cache, Kind::Block)).unwrap();
        assert!(text.ends_with("\na.example\n"), "{text}");
        assert!(!write_copies(&cache, &[block("a.example")]).unwrap());
        assert!(write_copies(&cache, &[]).unwrap(), "a removal rewrites");
        let n = std::fs::read_dir(&cache).unwrap().count();
        assert_eq!(n, 2, "no temporary files left");
    }
}
