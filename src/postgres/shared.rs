//! The state `[sync] postgres = true` shares, in the database: the local block and allow
//! entries (`shared_entries`) and the pause (`shared_pause`, its end as wall-clock time).
//! Each write runs in a transaction that also sends a NOTIFY on [`CHANNEL`], delivered at
//! commit, so that every instance listening reads the new state (`sync.rs`).
//!
//! Also how the entries become a list: [`render`] writes those of one kind as the text of
//! this host's copy (`blocking.cache_dir`), one name per line with its comment, which the
//! policy reads like any list file. A name that is not a valid domain name in its normal
//! form (a row edited by hand) is left out there, with a warning.

use std::time::SystemTime;

use tokio_postgres::Client;

use super::DbError;
use crate::blocklist::Kind;
use crate::blocklist::domain::normalize;

/// The NOTIFY channel of every change to the shared state.
pub const CHANNEL: &str = "sinkhole_shared";

/// Most shared entries read; more are left out of the copy, with a warning.
pub const MAX_SHARED_ENTRIES: i64 = 1_000_000;

/// One shared entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Block or allow.
    pub kind: Kind,
    /// The name, normalised.
    pub name: String,
    /// The comment given when it was added.
    pub comment: Option<String>,
}

/// The column value of `kind`.
pub fn kind_text(kind: Kind) -> &'static str {
    match kind {
        Kind::Block => "block",
        Kind::Allow => "allow",
    }
}

async fn notify(tx: &tokio_postgres::Transaction<'_>, what: &str) -> Result<(), DbError> {
    tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &what])
        .await
        .map_err(DbError::query("notifying the other instances"))?;
    Ok(())
}

/// Adds `names` (already checked and normalised) as entries of `kind`, changed by
/// `by` (the instance or host); returns (added, already there).
pub async fn add(
    client: &mut Client,
    kind: Kind,
    names: &[String],
    comment: Option<&str>,
    by: &str,
) -> Result<(Vec<String>, Vec<String>), DbError> {
    let what = "adding shared list entries";
    let tx = client.transaction().await.map_err(DbError::query(what))?;
    let (mut added, mut present) = (Vec::new(), Vec::new());
    for n in names {
        let rows = tx
            .execute(
                "INSERT INTO shared_entries (kind, name, comment, changed_by)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (kind, name) DO NOTHING",
                &[&kind_text(kind), n, &comment, &by],
            )
            .await
            .map_err(DbError::query(what))?;
        if rows == 1 {
            added.push(n.clone());
        } else {
            present.push(n.clone());
        }
    }
    if !added.is_empty() {
        notify(&tx, "entries").await?;
    }
    tx.commit().await.map_err(DbError::query(what))?;
    Ok((added, present))
}

/// Removes the entries `names` of `kind`; returns (removed, not there).
pub async fn remove(
    client: &mut Client,
    kind: Kind,
    names: &[String],
) -> Result<(Vec<String>, Vec<String>), DbError> {
    let what = "removing shared list entries";
    let tx = client.transaction().await.map_err(DbError::query(what))?;
    let (mut removed, mut missing) = (Vec::new(), Vec::new());
    for n in names {
        let rows = tx
            .execute(
                "DELETE FROM shared_entries WHERE kind = $1 AND name = $2",
                &[&kind_text(kind), n],
            )
            .await
            .map_err(DbError::query(what))?;
        if rows == 1 {
            removed.push(n.clone());
        } else {
            missing.push(n.clone());
        }
    }
    if !removed.is_empty() {
        notify(&tx, "entries").await?;
    }
    tx.commit().await.map_err(DbError::query(what))?;
    Ok((removed, missing))
}

/// Every shared entry (at most [`MAX_SHARED_ENTRIES`]), by kind and name.
pub async fn entries(client: &Client) -> Result<Vec<Entry>, DbError> {
    let rows = client
        .query(
            "SELECT kind, name, comment FROM shared_entries ORDER BY kind, name LIMIT $1",
            &[&(MAX_SHARED_ENTRIES + 1)],
        )
        .await
        .map_err(DbError::query("reading the shared list entries"))?;
    if rows.len() as i64 > MAX_SHARED_ENTRIES {
        tracing::warn!(
            max = MAX_SHARED_ENTRIES,
            "more shared list entries than sinkhole reads; the rest are left out (keep long lists in list files)"
        );
    }
    Ok(rows
        .iter()
        .take(usize::try_from(MAX_SHARED_ENTRIES).unwrap_or(usize::MAX))
        .filter_map(|r| {
            let kind = match r.get::<_, &str>(0) {
                "block" => Kind::Block,
                "allow" => Kind::Allow,
                _ => return None,
            };
            Some(Entry {
                kind,
                name: r.get(1),
                comment: r.get(2),
            })
        })
        .collect())
}

/// Sets the end of the pause (`None`: not paused), changed by `by`.
pub async fn set_pause(
    client: &mut Client,
    until: Option<SystemTime>,
    by: &str,
) -> Result<(), DbError> {
    let what = "writing the shared pause";
    let tx = client.transaction().await.map_err(DbError::query(what))?;
    tx.execute(
        "INSERT INTO shared_pause (id, until, changed_at, changed_by) VALUES (true, $1, now(), $2)
         ON CONFLICT (id) DO UPDATE SET until = EXCLUDED.until, changed_at = now(),
             changed_by = EXCLUDED.changed_by",
        &[&until, &by],
    )
    .await
    .map_err(DbError::query(what))?;
    notify(&tx, "pause").await?;
    tx.commit().await.map_err(DbError::query(what))
}

/// The end of the pause as stored (`None`: not paused; a time past means over).
pub async fn pause_until(client: &Client) -> Result<Option<SystemTime>, DbError> {
    let row = client
        .query_opt("SELECT until FROM shared_pause WHERE id", &[])
        .await
        .map_err(DbError::query("reading the shared pause"))?;
    Ok(row.and_then(|r| r.get(0)))
}

/// The text of this host's copy of the entries of `kind`: a header, then one name per
/// line with its comment. Rows that are not a valid name in its normal form are left out
/// and counted in the second value.
pub fn render(entries: &[Entry], kind: Kind) -> (String, usize) {
    let mut out = format!(
        "# the {} entries shared through PostgreSQL ([sync] postgres = true);\n# written by sinkhole from the database: edit with `sinkhole lists add/remove` or the API\n",
        kind_text(kind)
    );
    let mut bad = 0;
    for e in entries.iter().filter(|e| e.kind == kind) {
        if normalize(&e.name).ok().as_deref() != Some(e.name.as_str()) {
            bad += 1;
            continue;
        }
        out.push_str(&e.name);
        if let Some(c) = e.comment.as_deref().filter(|c| !c.trim().is_empty()) {
            let c: String = c
                .chars()
                .map(|ch| if ch.is_control() { ' ' } else { ch })
                .collect();
            out.push_str("  # ");
            out.push_str(c.trim());
        }
        out.push('\n');
    }
    (out, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(kind: Kind, name: &str, comment: Option<&str>) -> Entry {
        Entry {
            kind,
            name: name.into(),
            comment: comment.map(Into::into),
        }
    }

    #[test]
    fn the_copy_holds_valid_names_of_its_kind_with_one_line_comments() {
        let all = [
            e(Kind::Block, "ads.example", Some("seen\non tv")),
            e(Kind::Allow, "ok.example", None),
            e(Kind::Block, "Bad..Name", None),
            e(Kind::Block, "x.example\n||evil.example^", None),
            e(Kind::Block, "t.example", Some("  ")),
        ];
        let (text, bad) = render(&all, Kind::Block);
        let rules: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(rules, ["ads.example  # seen on tv", "t.example"]);
        assert_eq!(bad, 2);
        let (text, bad) = render(&all, Kind::Allow);
        assert!(text.ends_with("\nok.example\n"), "{text}");
        assert_eq!(bad, 0);
    }
}
