//! Replacing a list file without losing it: [`Replacement`] writes a temporary file beside
//! the one it replaces, syncs it, renames it over the original and syncs the folder, so a
//! crash leaves the old copy or the new one, never half of either. [`edit_file`] is the
//! read-modify-write of `lists add` / `lists remove` on top of it: under an exclusive lock,
//! on a symlink's target, on raw bytes, keeping the original's owner, group and mode.
//!
//! What to change is decided by `rewrite::add_names` / `rewrite::remove_names`;
//! [`add_to_list`] and [`remove_from_list`] put the two together with the checks of the
//! names: the one implementation of `sinkhole lists add/remove` and of the HTTP API's
//! list edits.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::domain::normalize;
use super::load::MAX_LIST_BYTES;
use super::rewrite::{EditError, add_names, checked_name, remove_names};

/// A temporary file beside `target` that becomes `target` on [`Replacement::commit`], or
/// is removed when dropped before.
#[derive(Debug)]
pub struct Replacement {
    tmp: PathBuf,
    target: PathBuf,
    file: File,
    committed: bool,
}

impl Replacement {
    /// Creates the temporary file in `target`'s folder. With `like` (the file it will
    /// replace), it is created readable by its owner only, until [`Self::keep_mode`] gives
    /// it the original's mode; else with the default mode (0666 less the umask).
    pub fn beside(target: &Path, like: Option<&Metadata>) -> std::io::Result<Self> {
        let dir = parent(target);
        let base = target
            .file_name()
            .map_or_else(|| "list".into(), |n| n.to_string_lossy().into_owned());
        for i in 0..100u32 {
            let tmp = dir.join(format!(".{base}.{}.{i}.tmp", std::process::id()));
            let mut o = OpenOptions::new();
            o.write(true).create_new(true);
            if like.is_some() {
                o.mode(0o600);
            }
            match o.open(&tmp) {
                Ok(file) => {
                    return Ok(Self {
                        tmp,
                        target: target.to_path_buf(),
                        file,
                        committed: false,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other(format!(
            "no free temporary file name in {}",
            dir.display()
        )))
    }

    /// Gives the temporary file the owner and group of `like` (a no-op when they are
    /// already the same). Fails when this user may not (not root, not the owner).
    pub fn keep_owner(&self, like: &Metadata) -> std::io::Result<()> {
        let now = self.file.metadata()?;
        if (now.uid(), now.gid()) == (like.uid(), like.gid()) {
            return Ok(());
        }
        std::os::unix::fs::fchown(&self.file, Some(like.uid()), Some(like.gid()))
    }

    /// Gives the temporary file the permission bits of `like` (after [`Self::keep_owner`]:
    /// a change of owner clears set-id bits).
    pub fn keep_mode(&self, like: &Metadata) -> std::io::Result<()> {
        let mode = like.permissions().mode() & 0o7777;
        self.file
            .set_permissions(std::fs::Permissions::from_mode(mode))
    }

    /// Where the temporary file is (to read back what was written).
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// The temporary file, to write the new content to.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Syncs the new content, renames it over the target and syncs the folder, so that the
    /// rename itself survives a crash.
    pub fn commit(mut self) -> std::io::Result<()> {
        self.file.sync_all()?;
        std::fs::rename(&self.tmp, &self.target)?;
        self.committed = true;
        File::open(parent(&self.target))?.sync_all()
    }
}

impl Drop for Replacement {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// The folder of `path` (`.` for a bare file name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// What [`edit_file`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edited {
    /// The edit changed nothing; the file was not rewritten.
    Unchanged,
    /// The file was replaced with the new content.
    Written,
}

/// Edits the list at `path` in place: `edit` gets the current bytes (empty for a file that
/// does not exist yet, created when `create`) and returns the new ones, or `None` for no
/// change. A symlink's target is edited (the link stays); the replacement keeps the
/// original's owner, group and mode, or nothing is written. An exclusive `flock` on the file
/// is held from the read to the rename, so concurrent edits apply one after another.
pub fn edit_file(
    path: &Path,
    create: bool,
    edit: impl FnOnce(&[u8]) -> Option<Vec<u8>>,
) -> Result<Edited, EditError> {
    let io = |source: std::io::Error| EditError::Io {
        path: path.display().to_string(),
        source,
    };
    let target = resolve(path, create).map_err(io)?;
    let (locked, meta) = lock_current(&target, create).map_err(io)?;
    if meta.len() > MAX_LIST_BYTES {
        return Err(EditError::TooLarge {
            path: path.display().to_string(),
            size: meta.len(),
        });
    }
    let mut old = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    (&*locked).read_to_end(&mut old).map_err(io)?;
    let Some(new) = edit(&old) else {
        return Ok(Edited::Unchanged);
    };
    let mut r = Replacement::beside(&target, Some(&meta)).map_err(io)?;
    r.keep_owner(&meta).map_err(|source| EditError::Owner {
        path: path.display().to_string(),
        uid: meta.uid(),
        gid: meta.gid(),
        source,
    })?;
    r.keep_mode(&meta).map_err(io)?;
    r.file().write_all(&new).map_err(io)?;
    r.commit().map_err(io)?;
    // The lock is released only now, after the rename: a waiting edit then finds that the
    // file it locked was replaced and starts again on the new one.
    drop(locked);
    Ok(Edited::Written)
}

/// What [`add_to_list`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    /// The names written, normalised, in the order given.
    pub added: Vec<String>,
    /// The names that were there already (nothing written for them).
    pub present: Vec<String>,
}

/// Appends `names` to the list file at `path` (created when missing), in the style of its
/// last rule, each with the inline `comment`; names already there are skipped. Refuses,
/// writing nothing, an invalid name, a public suffix or a comment of several lines.
pub fn add_to_list(
    path: &Path,
    names: &[String],
    comment: Option<&str>,
) -> Result<Added, EditError> {
    let checked = dedup(
        names
            .iter()
            .map(|n| checked_name(n))
            .collect::<Result<Vec<_>, _>>()?,
    );
    if comment.is_some_and(|c| c.contains(['\n', '\r'])) {
        return Err(EditError::Comment);
    }
    let mut present = Vec::new();
    edit_file(path, true, |old| {
        let (new, there) = add_names(old, &checked, comment);
        present = there;
        (new != old).then_some(new)
    })?;
    let added = checked
        .into_iter()
        .filter(|c| !present.contains(c))
        .collect();
    Ok(Added { added, present })
}

/// `names` without repeats, in first-seen order.
fn dedup(names: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for n in names {
        if !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

/// What [`remove_from_list`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// The names taken out, normalised.
    pub removed: Vec<String>,
    /// The names the file did not hold.
    pub missing: Vec<String>,
}

/// Removes `names` from the list file at `path` (comments, order and other names of a
/// hosts line kept). Refuses, writing nothing, a name that is not a valid domain name.
pub fn remove_from_list(path: &Path, names: &[String]) -> Result<Removed, EditError> {
    let checked = dedup(
        names
            .iter()
            .map(|n| {
                normalize(n).map_err(|why| EditError::InvalidName {
                    name: n.clone(),
                    why,
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
    );
    let mut missing = Vec::new();
    edit_file(path, false, |old| {
        let (new, absent) = remove_names(old, &checked);
        missing = absent;
        (new != old).then_some(new)
    })?;
    let removed = checked
        .into_iter()
        .filter(|c| !missing.contains(c))
        .collect();
    Ok(Removed { removed, missing })
}

/// The file to edit: `path` with every symlink resolved. A file that does not exist yet
/// (with `create`) is named in its folder, resolved; a symlink to nothing is refused.
fn resolve(path: &Path, create: bool) -> std::io::Result<PathBuf> {
    match std::fs::canonicalize(path) {
        Ok(p) => Ok(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if std::fs::symlink_metadata(path).is_ok() {
                return Err(std::io::Error::new(
                    e.kind(),
                    "a symlink to a file that does not exist; fix or remove the link",
                ));
            }
            if !create {
                return Err(e);
            }
            let name = path
                .file_name()
                .ok_or_else(|| std::io::Error::other("not a file name"))?;
            Ok(std::fs::canonicalize(parent(path))?.join(name))
        }
        Err(e) => Err(e),
    }
}

/// Opens `target` and takes an exclusive lock on it, starting again when the file was
/// replaced while waiting (the lock was then on the old copy). Creates it when `create`.
fn lock_current(target: &Path, create: bool) -> std::io::Result<(Flock<File>, Metadata)> {
    for _ in 0..1000 {
        let file = match File::open(target) {
            Ok(f) => f,
            Err(e) if create && e.kind() == std::io::ErrorKind::NotFound => {
                match OpenOptions::new().write(true).create_new(true).open(target) {
                    Ok(_) => continue, // reopened for reading on the next round
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        let locked = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| {
            std::io::Error::new(
                std::io::Error::from(errno).kind(),
                format!("cannot lock the file: {errno}"),
            )
        })?;
        let meta = locked.metadata()?;
        match std::fs::metadata(target) {
            Ok(now) if (now.dev(), now.ino()) == (meta.dev(), meta.ino()) => {
                return Ok((locked, meta));
            }
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(
        "the file kept being replaced while waiting for its lock",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacement_is_removed_unless_committed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.txt");
        let mut r = Replacement::beside(&p, None).unwrap();
        r.file().write_all(b"a.test\n").unwrap();
        drop(r);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let mut r = Replacement::beside(&p, None).unwrap();
        r.file().write_all(b"a.test\n").unwrap();
        r.commit().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"a.test\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn edit_creates_refuses_dangling_links_and_skips_no_change() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("new.txt");
        assert!(matches!(
            edit_file(&p, false, |_| None),
            Err(EditError::Io { .. })
        ));
        let got = edit_file(&p, true, |old| {
            assert!(old.is_empty());
            Some(b"a.test\n".to_vec())
        });
        assert_eq!(got.unwrap(), Edited::Written);
        assert_eq!(edit_file(&p, false, |_| None).unwrap(), Edited::Unchanged);
        let link = dir.path().join("dangling.txt");
        std::os::unix::fs::symlink("nowhere.txt", &link).unwrap();
        let e = edit_file(&link, true, |_| Some(Vec::new())).unwrap_err();
        assert!(
            e.to_string()
                .contains("symlink to a file that does not exist"),
            "{e}"
        );
        assert!(!dir.path().join("nowhere.txt").exists());
    }
}
