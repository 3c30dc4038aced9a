//! `sinkhole lists add|remove` when `--config` names a config with `[sync] postgres = true`
//! and the file is one of its `blocking.lists` / `blocking.allow` local files (or is
//! written `postgres:shared-block` / `postgres:shared-allow`): the names go to the shared
//! entries in the database, which every running instance applies (`postgres::sync`), and
//! the file is left as it is; a removal also takes them out of the file (after the
//! database), so that they stop applying. A group's file, or no `--config`, is a file edit as before. A database that
//! cannot be reached fails the command (exit 1), and nothing is written.

use std::path::Path;

use super::common::{Error, Status, load_config};
use super::lists::edit_error;
use crate::blocklist::Kind;
use crate::blocklist::domain::normalize;
use crate::blocklist::edit::remove_from_list;
use crate::blocklist::load::{Location, shared_name};
use crate::blocklist::rewrite::{EditError, checked_name};
use crate::config::postgres::PostgresLog;
use crate::postgres::{self, DbError, migrate, shared};

/// Where a shared edit goes.
pub(super) struct Target {
    db: PostgresLog,
    kind: Kind,
}

/// The shared entries `file` stands for under `config`, when the edit is a shared one.
pub(super) fn target(config: Option<&Path>, file: &Path) -> Result<Option<Target>, Error> {
    let Some(config) = config else {
        return Ok(None);
    };
    let cfg = load_config(Some(config))?;
    let Some(db) = cfg
        .log
        .as_ref()
        .and_then(|l| l.postgres.clone())
        .filter(|_| cfg.sync_postgres)
    else {
        return Ok(None);
    };
    if let Some(kind) = [Kind::Block, Kind::Allow]
        .into_iter()
        .find(|&k| file.as_os_str() == shared_name(k))
    {
        return Ok(Some(Target { db, kind }));
    }
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let wanted = canon(file);
    let kind = cfg.blocking.lists.iter().find_map(|s| match &s.location {
        Location::File(p) if canon(p) == wanted => Some(s.kind),
        _ => None,
    });
    Ok(kind.map(|kind| Target { db, kind }))
}

/// Runs `f` on a connection to the database (schema checked), on a runtime of its own;
/// a failure says that `nothing` was done.
fn with_db<T>(
    t: &Target,
    nothing: &str,
    f: impl AsyncFnOnce(&mut tokio_postgres::Client) -> Result<T, DbError>,
) -> Result<T, Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut client = postgres::connect(&t.db.url).await?;
        migrate::check(&client).await?;
        f(&mut client).await
    })
    .map_err(|e| Error::runtime(format_args!("{e}; {nothing}")))
}

/// The names checked (`add`: a valid name that is not a public suffix) and without repeats.
fn checked(names: &[String], add: bool) -> Result<Vec<String>, Error> {
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for n in names {
        let c = if add {
            checked_name(n)
        } else {
            normalize(n).map_err(|why| EditError::InvalidName {
                name: n.clone(),
                why,
            })
        }
        .map_err(edit_error)?;
        if !out.contains(&c) {
            out.push(c);
        }
    }
    Ok(out)
}

/// Adds the names to the shared entries.
pub(super) fn add(t: &Target, names: &[String], comment: Option<&str>) -> Result<Status, Error> {
    let names = checked(names, true)?;
    if comment.is_some_and(|c| c.contains(['\n', '\r'])) {
        return Err(edit_error(EditError::Comment));
    }
    let list = shared_name(t.kind);
    let (added, present) = with_db(t, "nothing added", async |c| {
        shared::add(c, t.kind, &names, comment, &t.db.instance).await
    })?;
    for a in &present {
        eprintln!("{a}: already in {list}");
    }
    println!(
        "{list}: {} added, {} already there (in PostgreSQL at {}: every instance applies it)",
        added.len(),
        present.len(),
        t.db.url.describe()
    );
    Ok(Status::Success)
}

/// Removes the names from the shared entries, and from `file` when it is a file that
/// holds them; [`Status::Findings`] when a name was in neither.
pub(super) fn remove(t: &Target, names: &[String], file: &Path) -> Result<Status, Error> {
    let names = checked(names, false)?;
    let list = shared_name(t.kind);
    // The database first: when it is down, the command fails with nothing changed.
    let nothing = format!("nothing removed from {list}");
    let (removed, missing) = with_db(t, &nothing, async |c| {
        shared::remove(c, t.kind, &names).await
    })?;
    let from_file = if file.as_os_str() != list && file.exists() {
        remove_from_list(file, &names)
            .map_err(|e| {
                Error::runtime(format_args!(
                    "{list}: {} removed, but {}: {e}",
                    removed.len(),
                    file.display()
                ))
            })?
            .removed
    } else {
        Vec::new()
    };
    let missing: Vec<&String> = missing.iter().filter(|n| !from_file.contains(n)).collect();
    for m in &missing {
        eprintln!("{m}: not in {list} nor in {}", file.display());
    }
    if !from_file.is_empty() {
        println!("{}: {} removed", file.display(), from_file.len());
    }
    println!(
        "{list}: {} removed (in PostgreSQL at {}: every instance applies it)",
        removed.len(),
        t.db.url.describe()
    );
    Ok(if missing.is_empty() {
        Status::Success
    } else {
        Status::Findings
    })
}
