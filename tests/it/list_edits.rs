//! `sinkhole lists add|remove` through the real binary, on what a real install has: a list
//! owned by the service user with a restrictive mode, a symlinked list, bytes that are not
//! UTF-8, and several edits at once. See: #10.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::Output;

use crate::harness::bin;

fn sinkhole(args: &[&str], dir: &Path) -> Output {
    bin().args(args).current_dir(dir).output().unwrap()
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (uid, gid, permission bits) of a file, following symlinks.
fn owner_mode(p: &Path) -> (u32, u32, u32) {
    let m = std::fs::metadata(p).unwrap();
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

#[test]
fn r10_add_and_remove_keep_owner_group_and_mode() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ads.txt");
    std::fs::write(&p, "# service list\nads.test\n").unwrap();
    // The service user's list, readable only by it and its group (the tests run as root).
    std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();

    ok(&sinkhole(
        &["lists", "add", "x.test", "--to", "ads.txt"],
        dir.path(),
    ));
    assert_eq!(owner_mode(&p), (65534, 65534, 0o640), "after add");
    assert_eq!(
        std::fs::read_to_string(&p).unwrap(),
        "# service list\nads.test\nx.test\n"
    );

    ok(&sinkhole(
        &["lists", "remove", "ads.test", "--from", "ads.txt"],
        dir.path(),
    ));
    assert_eq!(owner_mode(&p), (65534, 65534, 0o640), "after remove");
    assert_eq!(
        std::fs::read_to_string(&p).unwrap(),
        "# service list\nx.test\n"
    );
}

#[test]
fn r10_an_edit_that_cannot_keep_the_owner_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let p = dir.path().join("ads.txt");
    std::fs::write(&p, "ads.test\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
    // An unprivileged user who may write the folder and the file, but not give a file to root.
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_sinkhole"))
        .args(["lists", "add", "x.test", "--to", "ads.txt"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("ads.txt: cannot give the edited copy the owner 0:0"),
        "{err}"
    );
    assert_eq!(owner_mode(&p), (0, 0, 0o666));
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "ads.test\n");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temp file left"
    );
}

#[test]
fn r10_edits_go_to_a_symlinks_target_and_keep_the_link() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("shared")).unwrap();
    let target = dir.path().join("shared/ads.txt");
    std::fs::write(&target, "ads.test\n").unwrap();
    let link = dir.path().join("ads.txt");
    std::os::unix::fs::symlink("shared/ads.txt", &link).unwrap();

    ok(&sinkhole(
        &["lists", "add", "x.test", "--to", "ads.txt"],
        dir.path(),
    ));
    ok(&sinkhole(
        &["lists", "remove", "ads.test", "--from", "ads.txt"],
        dir.path(),
    ));
    let meta = std::fs::symlink_metadata(&link).unwrap();
    assert!(meta.file_type().is_symlink(), "the link stays a link");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("shared/ads.txt")
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "x.test\n");
    // No temporary file left beside the link or the target.
    for d in [dir.path(), &dir.path().join("shared")] {
        let names: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    }
}

#[test]
fn r10_edits_keep_bytes_that_are_not_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ads.txt");
    // Latin-1 in a comment and in a rule line the edit does not touch.
    let before: &[u8] =
        b"# Liste f\xfcr das B\xfcro\nads.test\ncaf\xe9.example\nkeep.test # \xff\n";
    std::fs::write(&p, before).unwrap();

    ok(&sinkhole(
        &["lists", "add", "x.test", "--to", "ads.txt"],
        dir.path(),
    ));
    let mut want = before.to_vec();
    want.extend_from_slice(b"x.test\n");
    assert_eq!(std::fs::read(&p).unwrap(), want, "after add");

    ok(&sinkhole(
        &["lists", "remove", "ads.test", "--from", "ads.txt"],
        dir.path(),
    ));
    let want: &[u8] = b"# Liste f\xfcr das B\xfcro\ncaf\xe9.example\nkeep.test # \xff\nx.test\n";
    assert_eq!(std::fs::read(&p).unwrap(), want, "after remove");
}

#[test]
fn r10_concurrent_adds_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big.txt");
    // A list big enough that each read-modify-write takes a while: without a lock, edits
    // running at the same time overwrite each other.
    let mut text = String::with_capacity(4 << 20);
    for i in 0..150_000 {
        text.push_str(&format!("host{i}.blocked.example\n"));
    }
    std::fs::write(&p, &text).unwrap();
    let n = 12;
    let children: Vec<_> = (0..n)
        .map(|i| {
            bin()
                .args(["lists", "add", &format!("new{i}.test"), "--to", "big.txt"])
                .current_dir(dir.path())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        ok(&c.wait_with_output().unwrap());
    }
    let after = std::fs::read_to_string(&p).unwrap();
    let missing: Vec<String> = (0..n)
        .map(|i| format!("new{i}.test"))
        .filter(|name| !after.lines().any(|l| l == name))
        .collect();
    assert!(missing.is_empty(), "edits lost: {missing:?}");
    assert!(after.starts_with(&text), "the original lines stay");
    assert_eq!(after.lines().count(), 150_000 + n);
}
