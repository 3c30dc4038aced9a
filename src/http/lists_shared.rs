//! The list edits of the HTTP API with `[sync] postgres = true`: which edits go to the
//! entries shared through the database ([`shared_target`]), making them
//! ([`edit_shared`]: the database, then this instance's lists reloaded), and how a failure
//! of the shared state is answered ([`shared_error`]: 503 when the database cannot be
//! reached, nothing changed).

use std::path::PathBuf;

use axum::Json;
use serde_json::json;

use super::State;
use super::auth::ApiError;
use super::lists::{Answer, Edit, kind_name};
use crate::blocklist::Kind;
use crate::blocklist::domain::normalize;
use crate::blocklist::edit::remove_from_list;
use crate::blocklist::load::{Location, shared_name};
use crate::blocklist::rewrite::{EditError, checked_name};
use crate::config::Config;
use crate::postgres::sync::{Shared, SyncError};

/// With `[sync] postgres = true`, whether an edit goes to the shared entries: with no
/// `list`, the shared name of `kind`, or a local file of `blocking.lists` (`Some(Some(path))`:
/// a removal also takes the names out of it). A group's file stays a file edit (`None`).
pub(super) fn shared_target(
    cfg: &Config,
    kind: Kind,
    list: Option<&str>,
) -> Option<Option<PathBuf>> {
    let Some(name) = list else {
        return Some(None);
    };
    if name == shared_name(kind) {
        return Some(None);
    }
    cfg.blocking.lists.iter().find_map(|s| match &s.location {
        Location::File(p) if s.kind == kind && s.display == name => Some(Some(p.clone())),
        _ => None,
    })
}

/// A failure of the shared state, as the API answers it: 503 when the database cannot be
/// reached (nothing changed), 500 otherwise; `what` says what did not happen.
pub(super) fn shared_error(e: &SyncError, what: &str) -> ApiError {
    let closed =
        matches!(e, SyncError::Db(d) if d.is_closed()) || matches!(e, SyncError::Lost { .. });
    let msg = format!(
        "{e}; {what} ([sync] postgres = true: list edits and pause are made in the database)"
    );
    if closed {
        ApiError::unavailable(msg)
    } else {
        ApiError::internal(msg)
    }
}

/// An edit of the shared entries of `kind` (`[sync] postgres = true`): the database, then
/// this instance's lists reloaded; a removal also edits `file` when given.
pub(super) async fn edit_shared(
    state: &State,
    shared: &Shared,
    kind: Kind,
    add: bool,
    e: Edit,
    file: Option<PathBuf>,
) -> Answer {
    let mut names: Vec<String> = Vec::with_capacity(e.names.len());
    for n in &e.names {
        let n = if add {
            checked_name(n)
        } else {
            normalize(n).map_err(|why| EditError::InvalidName {
                name: n.clone(),
                why,
            })
        }
        .map_err(|e| ApiError::bad_request(format!("names: {e}; nothing written")))?;
        if !names.contains(&n) {
            names.push(n);
        }
    }
    if e.comment
        .as_deref()
        .is_some_and(|c| c.contains(['\n', '\r']))
    {
        return Err(ApiError::bad_request(
            "comment: must be one line; nothing written",
        ));
    }
    let permit = state
        .edit_busy
        .acquire()
        .await
        .map_err(|_| ApiError::unavailable("shutting down"))?;
    let list = shared_name(kind);
    let nothing = if add {
        "nothing added"
    } else {
        "nothing removed"
    };
    // The database first: when it is down, the call fails with nothing changed.
    let (mut changed, mut unchanged) = if add {
        shared.add(kind, &names, e.comment.as_deref()).await
    } else {
        shared.remove(kind, &names).await
    }
    .map_err(|e| shared_error(&e, nothing))?;
    let mut from_file = Vec::new();
    if !add && let Some(path) = file.filter(|p| p.exists()) {
        let ns = names.clone();
        let done = format!("{list}: {} removed, but the file", changed.len());
        from_file = tokio::task::spawn_blocking(move || remove_from_list(&path, &ns))
            .await
            .map_err(|e| ApiError::internal(format!("{done}: edit failed: {e}")))?
            .map_err(|e| ApiError::internal(format!("{done}: {e}")))?
            .removed;
    }
    if !from_file.is_empty() {
        unchanged.retain(|n| !from_file.contains(n));
        for n in from_file {
            if !changed.contains(&n) {
                changed.push(n);
            }
        }
        state.reloader.reload(false).await.map_err(|e| {
            ApiError::internal(format!(
                "the list file was edited, but the reload failed: {e:#}"
            ))
        })?;
    }
    drop(permit);
    tracing::info!(
        list,
        kind = kind_name(kind),
        names = ?changed,
        action = if add { "added" } else { "removed" },
        database = %shared.describe(),
        "shared list entries edited through the HTTP API"
    );
    let (done_key, other_key) = if add {
        ("added", "already_present")
    } else {
        ("removed", "not_found")
    };
    Ok(Json(json!({
        "list": list,
        "kind": kind_name(kind),
        "shared": true,
        done_key: changed,
        other_key: unchanged,
        "reloaded": !changed.is_empty(),
        "rules": state.pipeline.policy().blocking.list().len(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_and_blocking_files_are_shared_and_group_files_are_not() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["a.txt", "allow.txt", "kids.txt"] {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        let toml = "[blocking]\nlists = [\"a.txt\"]\nallow = [\"allow.txt\"]\n\
                    [[groups]]\nname = \"kids\"\nclients = [\"127.0.0.2\"]\nlists = [\"kids.txt\"]\n\
                    [log.postgres]\nurl = \"postgresql://u:p@127.0.0.1/db\"\n[sync]\npostgres = true\n";
        let path = dir.path().join("sinkhole.toml");
        std::fs::write(&path, toml).unwrap();
        let cfg = Config::load(&path).unwrap();
        let t = |k, l| shared_target(&cfg, k, l);
        assert_eq!(t(Kind::Block, None), Some(None));
        assert_eq!(t(Kind::Block, Some("postgres:shared-block")), Some(None));
        assert_eq!(t(Kind::Allow, Some("postgres:shared-allow")), Some(None));
        assert_eq!(
            t(Kind::Block, Some("a.txt")),
            Some(Some(dir.path().join("a.txt")))
        );
        assert!(t(Kind::Allow, Some("allow.txt")).is_some());
        // A group's file, a list of the other kind, a file the config lacks: not shared
        // (the file edit's own checks answer them).
        assert_eq!(t(Kind::Block, Some("kids.txt")), None);
        assert_eq!(t(Kind::Block, Some("allow.txt")), None);
        assert_eq!(t(Kind::Block, Some("postgres:shared-allow")), None);
        assert_eq!(t(Kind::Block, Some("other.txt")), None);
    }
}
