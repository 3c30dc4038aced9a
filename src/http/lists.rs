//! `POST` / `DELETE /api/v1/lists/block` and `/api/v1/lists/allow`: names added to or
//! removed from a local list file of the config, with the code of `sinkhole lists
//! add/remove` ([`add_to_list`], [`remove_from_list`]), then the lists reloaded, so that the
//! answer comes once the new policy is live.
//!
//! Which file: the body's `list`, which must be spelled as the config writes one of its
//! local files of that kind (`blocking.lists` or a group's `lists`; `GET /api/v1/lists`
//! shows the names); without it, the first local file of that kind in `blocking.lists`.
//! Only paths the config names can be written: a `list` that is not one of them (a path of
//! its own, `..`, a URL or embedded list, a list of the other kind) is a 400.
//!
//! With `[sync] postgres = true`, an edit without `list`, or of a `blocking.lists` /
//! `blocking.allow` file, or of `postgres:shared-block|allow`, goes to the shared entries in
//! the database instead (every instance applies it; a removal also takes the names out of
//! the file named); a group's file is still edited as a file. A database that cannot be
//! reached is a 503, and nothing changes.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State as Extract;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::State;
use super::api::{Params, RawQuery};
use super::auth::{Access, ApiError, authorize};
use super::lists_shared::{edit_shared, shared_target};
use crate::blocklist::Kind;
use crate::blocklist::edit::{add_to_list, remove_from_list};
use crate::blocklist::load::Location;
use crate::blocklist::rewrite::EditError;
use crate::config::Config;

/// Most names one edit call takes.
pub const MAX_EDIT_NAMES: usize = 100;

pub(super) type Answer = Result<Json<Value>, ApiError>;
type Body = Result<Bytes, BytesRejection>;

/// The JSON body of an edit.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Edit {
    pub(super) names: Vec<String>,
    #[serde(default)]
    pub(super) list: Option<String>,
    #[serde(default)]
    pub(super) comment: Option<String>,
}

/// `POST /api/v1/lists/block`: adds names to a local block list.
pub(super) async fn add_block(
    s: Extract<Arc<State>>,
    h: HeaderMap,
    q: RawQuery,
    b: Body,
) -> Answer {
    edit(s, h, q, b, Kind::Block, true).await
}

/// `DELETE /api/v1/lists/block`: removes names from a local block list.
pub(super) async fn remove_block(
    s: Extract<Arc<State>>,
    h: HeaderMap,
    q: RawQuery,
    b: Body,
) -> Answer {
    edit(s, h, q, b, Kind::Block, false).await
}

/// `POST /api/v1/lists/allow`: adds names to a local allow list.
pub(super) async fn add_allow(
    s: Extract<Arc<State>>,
    h: HeaderMap,
    q: RawQuery,
    b: Body,
) -> Answer {
    edit(s, h, q, b, Kind::Allow, true).await
}

/// `DELETE /api/v1/lists/allow`: removes names from a local allow list.
pub(super) async fn remove_allow(
    s: Extract<Arc<State>>,
    h: HeaderMap,
    q: RawQuery,
    b: Body,
) -> Answer {
    edit(s, h, q, b, Kind::Allow, false).await
}

pub(super) fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Block => "block",
        Kind::Allow => "allow",
    }
}

/// The body, checked: names (1 to [`MAX_EDIT_NAMES`]), a one-line comment when adding.
fn parse(body: Body, add: bool) -> Result<Edit, ApiError> {
    // Too large (413) or cut off: the rejection's own status.
    let body = body.map_err(|e| ApiError::new(e.status(), format!("body: {}", e.body_text())))?;
    let e: Edit = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "body: {e}; send {{\"names\": [\"example.com\"], \"list\": \"(optional)\", \"comment\": \"(optional)\"}}"
        ))
    })?;
    if e.names.is_empty() {
        return Err(ApiError::bad_request(
            "names: empty; give at least one name",
        ));
    }
    if e.names.len() > MAX_EDIT_NAMES {
        return Err(ApiError::bad_request(format!(
            "names: at most {MAX_EDIT_NAMES} names per call"
        )));
    }
    if !add && e.comment.is_some() {
        return Err(ApiError::bad_request(
            "comment: only when adding (POST); a removal takes names and list",
        ));
    }
    Ok(e)
}

/// The file to edit: `list` if it is one of the config's local files of `kind`, else the
/// first such file of `blocking.lists`. Returns (its name as configured, its path).
fn target(cfg: &Config, kind: Kind, list: Option<&str>) -> Result<(String, PathBuf), ApiError> {
    let local = |s: &crate::blocklist::load::ListSource| match &s.location {
        Location::File(p) if s.kind == kind => Some((s.display.clone(), p.clone())),
        _ => None,
    };
    let k = kind_name(kind);
    match list {
        Some(name) => cfg
            .all_lists()
            .filter(|s| s.display == name)
            .find_map(local)
            .ok_or_else(|| {
                let name: String = name.chars().take(100).collect();
                let mut choices: Vec<String> = cfg
                    .all_lists()
                    .filter_map(local)
                    .map(|(d, _)| format!("{d:?}"))
                    .collect();
                choices.dedup();
                ApiError::bad_request(format!(
                    "list: {name:?} is not a local {k} list file of the config; choose one of: {}",
                    if choices.is_empty() {
                        "(none)".to_string()
                    } else {
                        choices.join(", ")
                    }
                ))
            }),
        None => cfg.blocking.lists.iter().find_map(local).ok_or_else(|| {
            ApiError::bad_request(format!(
                "list: missing, and blocking.{} has no local file to default to; name one of the config's {k} list files",
                if kind == Kind::Block { "lists" } else { "allow" },
            ))
        }),
    }
}

/// Adds (`add`) or removes the body's names in a list of `kind`, then reloads the lists.
async fn edit(
    Extract(state): Extract<Arc<State>>,
    headers: HeaderMap,
    q: RawQuery,
    body: Body,
    kind: Kind,
    add: bool,
) -> Answer {
    authorize(&state, &headers, Access::Write)?;
    Params::new(q, &[])?;
    let e = parse(body, add)?;
    let cfg = state.reloader.config();
    if let Some(shared) = &state.shared
        && let Some(file) = shared_target(&cfg, kind, e.list.as_deref())
    {
        let shared = Arc::clone(shared);
        return edit_shared(&state, &shared, kind, add, e, file).await;
    }
    let (list, path) = target(&cfg, kind, e.list.as_deref())?;
    // One edit at a time: each reads and writes a whole list (up to MAX_LIST_BYTES).
    let permit = state
        .edit_busy
        .acquire()
        .await
        .map_err(|_| ApiError::unavailable("shutting down"))?;
    let (names, comment) = (e.names, e.comment);
    let done = tokio::task::spawn_blocking(move || {
        if add {
            add_to_list(&path, &names, comment.as_deref()).map(|a| (a.added, a.present))
        } else {
            remove_from_list(&path, &names).map(|r| (r.removed, r.missing))
        }
    })
    .await
    .map_err(|e| ApiError::internal(format!("list edit failed: {e}")))?;
    let (changed, unchanged) = done.map_err(|e| match e {
        EditError::InvalidName { .. } | EditError::PublicSuffix { .. } => {
            ApiError::bad_request(format!("names: {e}; nothing written"))
        }
        EditError::Comment => ApiError::bad_request("comment: must be one line; nothing written"),
        e => ApiError::internal(format!("{list}: {e}")),
    })?;
    tracing::info!(
        list = %list,
        kind = kind_name(kind),
        names = ?changed,
        action = if add { "added" } else { "removed" },
        "list edited through the HTTP API"
    );
    // Reload now, on a task of its own (a client that goes away does not cut it short),
    // so that the answer comes once the edit is live. The file watch sees the change too
    // and reloads once more.
    let reloaded = if changed.is_empty() {
        false
    } else {
        let r = Arc::clone(&state.reloader);
        tokio::spawn(async move { r.reload(false).await })
            .await
            .map_err(|e| ApiError::internal(format!("reload task failed: {e}")))?
            .map_err(|e| {
                ApiError::internal(format!(
                    "{list} was edited, but the reload failed; still serving the previous lists: {e:#}"
                ))
            })?;
        true
    };
    drop(permit);
    let (done_key, other_key) = if add {
        ("added", "already_present")
    } else {
        ("removed", "not_found")
    };
    Ok(Json(json!({
        "list": list,
        "kind": kind_name(kind),
        done_key: changed,
        other_key: unchanged,
        "reloaded": reloaded,
        "rules": state.pipeline.policy().blocking.list().len(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_files_of_the_config_can_be_targets() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["a.txt", "b.txt", "allow.txt", "kids.txt"] {
            std::fs::write(dir.path().join(f), "x.test\n").unwrap();
        }
        let toml = "[blocking]\nlists = [\"a.txt\", \"b.txt\"]\nallow = [\"allow.txt\"]\n\
                    [[groups]]\nname = \"kids\"\nclients = [\"127.0.0.2\"]\nlists = [\"kids.txt\"]\n";
        let path = dir.path().join("sinkhole.toml");
        std::fs::write(&path, toml).unwrap();
        let cfg = Config::load(&path).unwrap();
        let t = |k, l| target(&cfg, k, l).map(|(d, p)| (d, p.file_name().unwrap().to_owned()));
        assert_eq!(t(Kind::Block, None).unwrap().0, "a.txt");
        assert_eq!(t(Kind::Block, Some("b.txt")).unwrap().0, "b.txt");
        assert_eq!(t(Kind::Block, Some("kids.txt")).unwrap().0, "kids.txt");
        assert_eq!(t(Kind::Allow, None).unwrap().0, "allow.txt");
        for bad in [
            "allow.txt",
            "../a.txt",
            "./a.txt",
            "/etc/passwd",
            "c.txt",
            "",
        ] {
            let e = t(Kind::Block, Some(bad)).unwrap_err();
            assert_eq!(e.status, 400, "{bad}");
            assert!(e.message.starts_with("list: "), "{}", e.message);
        }
        assert!(t(Kind::Allow, Some("a.txt")).is_err());
    }
}
