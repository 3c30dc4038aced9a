//! Giving up root once every socket is bound: `sinkhole serve` started as root (to bind
//! 53, 853, 443) becomes `server.user` (default `sinkhole` when that user exists), with
//! its primary group only and no capability left, for the rest of its life; every thread
//! changes at once (glibc applies `setresuid` to all of a process's threads). It happens
//! in `Service::start`'s `before_serving` step, after the last bind and before any
//! listener runs, so that no query or request is ever handled as root.
//!
//! Started without root (systemd's `User=sinkhole` with `CAP_NET_BIND_SERVICE`), nothing
//! changes here. The decision ([`plan`]) is pure and tested; [`apply`] makes the calls and
//! then checks that they held: root cannot be taken back and no capability is effective.

use thiserror::Error;

/// What happens to the process's identity after binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Keep running as now; the reason, for the log.
    Stay(&'static str),
    /// Become this user (and its primary group).
    Drop {
        /// The user's name.
        name: String,
        /// Its user ID.
        uid: u32,
        /// Its primary group.
        gid: u32,
    },
}

/// Why the identity could not be changed.
#[derive(Debug, Error)]
pub enum PrivError {
    /// `server.user` names no user of this system.
    #[error(
        "server.user: no user {0:?} on this system; create it (useradd --system --no-create-home {0}) or name another"
    )]
    NoSuchUser(String),
    /// A call failed.
    #[error("cannot become user {name:?} (uid {uid}): {what} failed: {err}")]
    Call {
        /// The user.
        name: String,
        /// Its ID.
        uid: u32,
        /// The call.
        what: &'static str,
        /// The error.
        err: nix::Error,
    },
    /// The change did not hold.
    #[error("after becoming user {name:?}: {what}; refusing to serve")]
    Kept {
        /// The user.
        name: String,
        /// What was still there.
        what: String,
    },
}

/// The user taken when `server.user` is not set, if it exists.
pub const DEFAULT_USER: &str = "sinkhole";

/// The plan for a process whose effective user ID is `euid`, given `server.user`
/// (`configured`) and a way to find a user's IDs.
pub fn plan(
    configured: Option<&str>,
    euid: u32,
    lookup: impl Fn(&str) -> Option<(u32, u32)>,
) -> Result<Plan, PrivError> {
    if euid != 0 {
        return Ok(Plan::Stay("not started as root"));
    }
    let (name, explicit) = match configured {
        Some("root") => return Ok(Plan::Stay("server.user = \"root\"")),
        Some(name) => (name, true),
        None => (DEFAULT_USER, false),
    };
    match lookup(name) {
        Some((uid, gid)) => Ok(Plan::Drop {
            name: name.to_string(),
            uid,
            gid,
        }),
        None if explicit => Err(PrivError::NoSuchUser(name.to_string())),
        None => Ok(Plan::Stay("no user \"sinkhole\" on this system")),
    }
}

/// The user and primary group IDs of `name` on this system.
pub fn lookup(name: &str) -> Option<(u32, u32)> {
    let user = nix::unistd::User::from_name(name).ok()??;
    Some((user.uid.as_raw(), user.gid.as_raw()))
}

/// Carries out `plan`: supplementary groups, then the group, then the user (real,
/// effective and saved, so that root cannot be taken back); then checks.
pub fn apply(plan: &Plan) -> Result<(), PrivError> {
    use nix::unistd::{Gid, Uid, setgroups, setresgid, setresuid};
    let Plan::Drop { name, uid, gid } = plan else {
        return Ok(());
    };
    let call = |what: &'static str, r: nix::Result<()>| {
        r.map_err(|err| PrivError::Call {
            name: name.clone(),
            uid: *uid,
            what,
            err,
        })
    };
    let (u, g) = (Uid::from_raw(*uid), Gid::from_raw(*gid));
    call("setgroups", setgroups(&[g]))?;
    call("setresgid", setresgid(g, g, g))?;
    call("setresuid", setresuid(u, u, u))?;
    let kept = |what: String| PrivError::Kept {
        name: name.clone(),
        what,
    };
    if *uid != 0 && nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(kept("root could be taken back".into()));
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if let Some(caps) = effective_caps(&status)
        && caps != 0
        && *uid != 0
    {
        return Err(kept(format!("capabilities {caps:#x} still effective")));
    }
    Ok(())
}

/// The folders the running process must be able to write in (`key`, folder): the query
/// log's (rotation makes new files there) and, with URL lists or `[sync] postgres`
/// (the shared entries' copy), `blocking.cache_dir`.
pub fn writable_folders(cfg: &crate::config::Config) -> Vec<(&'static str, std::path::PathBuf)> {
    let mut out = Vec::new();
    if let Some(dir) = cfg.log.as_ref().and_then(|l| l.path.as_deref()?.parent()) {
        out.push(("log.path", dir.to_path_buf()));
    }
    let urls = cfg.blocking.lists.iter().any(|l| l.is_copy());
    if urls {
        out.push(("blocking.cache_dir", cfg.blocking.cache_dir.clone()));
    }
    out
}

/// One line per folder of `folders` this process cannot write in (as the user it now
/// runs as), naming the key, the folder, the user and what to do. The service keeps
/// running: the query log drops records it cannot write, list downloads keep the last copy.
pub fn unwritable(folders: &[(&'static str, std::path::PathBuf)], user: &str) -> Vec<String> {
    use nix::unistd::{AccessFlags, access};
    folders
        .iter()
        .filter(|(_, dir)| {
            // A folder that does not exist yet is made by whoever writes first: judge its
            // nearest existing parent.
            let existing = dir.ancestors().find(|d| d.exists()).unwrap_or(dir);
            access(existing, AccessFlags::W_OK | AccessFlags::X_OK).is_err()
        })
        .map(|(key, dir)| {
            format!(
                "{key}: {} is not writable by user {user}: {what} will fail; give the folder to {user} (chown) or use one under /var/lib/sinkhole",
                dir.display(),
                what = if *key == "log.path" {
                    "rotating the query log"
                } else {
                    "saving downloaded lists"
                }
            )
        })
        .collect()
}

/// The `CapEff` mask of a `/proc/PID/status` text.
pub fn effective_caps(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn users(name: &str) -> Option<(u32, u32)> {
        match name {
            "sinkhole" => Some((998, 997)),
            "nobody" => Some((65534, 65534)),
            _ => None,
        }
    }

    #[test]
    fn unwritable_folders_are_named_with_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().to_path_buf();
        let missing = dir.path().join("not/yet");
        let folders = vec![("log.path", ok), ("blocking.cache_dir", missing)];
        assert!(
            unwritable(&folders, "me").is_empty(),
            "writable, or made on first use"
        );
        let cfg = crate::config::Config::parse(
            "[log]\npath = \"/var/log/x/q.jsonl\"\n[blocking]\nlists = [\"https://l.test/a.txt\"]\ncache_dir = \"/var/cache/x\"\n",
            "t.toml",
            None,
        )
        .unwrap();
        let f = writable_folders(&cfg);
        assert_eq!(
            f,
            [
                ("log.path", std::path::PathBuf::from("/var/log/x")),
                (
                    "blocking.cache_dir",
                    std::path::PathBuf::from("/var/cache/x")
                )
            ]
        );
    }

    #[test]
    fn root_drops_to_the_configured_user_or_sinkhole_when_it_exists() {
        let drop = |name: &str, uid, gid| Plan::Drop {
            name: name.into(),
            uid,
            gid,
        };
        assert_eq!(plan(None, 0, users).unwrap(), drop("sinkhole", 998, 997));
        assert_eq!(
            plan(Some("nobody"), 0, users).unwrap(),
            drop("nobody", 65534, 65534)
        );
        assert!(matches!(
            plan(Some("root"), 0, users).unwrap(),
            Plan::Stay(_)
        ));
        // Without a user `sinkhole`, root stays root (the start WARNs).
        assert!(matches!(plan(None, 0, |_| None).unwrap(), Plan::Stay(_)));
        // A named user that does not exist stops the start with one line saying what to do.
        let e = plan(Some("dnsd"), 0, users).unwrap_err().to_string();
        assert!(
            e.starts_with("server.user: no user \"dnsd\"") && e.contains("useradd"),
            "{e}"
        );
    }

    #[test]
    fn a_process_that_is_not_root_stays_as_it_is() {
        assert!(matches!(plan(None, 1000, users).unwrap(), Plan::Stay(_)));
        assert!(matches!(
            plan(Some("dnsd"), 1000, users).unwrap(),
            Plan::Stay(_)
        ));
        assert!(apply(&Plan::Stay("test")).is_ok());
    }

    #[test]
    fn cap_eff_is_read_from_proc_status() {
        let s = "Name:\tsinkhole\nCapInh:\t0000000000000000\nCapEff:\t0000000000000400\n";
        assert_eq!(effective_caps(s), Some(0x400));
        assert_eq!(effective_caps("Name: x\n"), None);
    }
}
