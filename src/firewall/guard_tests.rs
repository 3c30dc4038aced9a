//! Unit tests of the confirm window's state files and of the systemd-run command line; no
//! firewall tool runs here (the namespace tests in `tests/it/firewall_rollback.rs` do).

use super::*;
use crate::firewall::timer::systemd_run_args;

fn saved(id: &str) -> Saved {
    Saved {
        id: id.into(),
        armed_unix: 1,
        window_ms: 2000,
        previous: Snapshot::Nftables { table: None },
    }
}

fn put(files: &Files, s: &Saved) {
    write_new(&files.saved, serde_json::to_string(s).unwrap().as_bytes()).unwrap();
}

#[test]
fn systemd_run_arms_a_one_shot_timer_that_runs_rollback() {
    let args = systemd_run_args(
        Path::new("/usr/bin/sinkhole"),
        Path::new("/run/sinkhole/firewall.saved"),
        "42-abc",
        Duration::from_millis(31_000),
    );
    let args: Vec<&str> = args.iter().map(|a| a.to_str().unwrap()).collect();
    assert_eq!(
        args,
        [
            "--unit=sinkhole-firewall-rollback-42-abc",
            "--description=sinkhole: roll back firewall rules unless confirmed",
            "--on-active=31000ms",
            "--timer-property=AccuracySec=100ms",
            "--collect",
            "--quiet",
            "--",
            "/usr/bin/sinkhole",
            "firewall",
            "rollback",
            "--state",
            "/run/sinkhole/firewall.saved",
            "--id",
            "42-abc",
        ]
    );
}

#[test]
fn saved_state_round_trips_through_json() {
    let s = Saved {
        previous: Snapshot::Iptables {
            families: vec![system::SavedFamily {
                family: crate::firewall::Family::V6,
                rules: "*filter\n:SINKHOLE-INPUT - [0:0]\nCOMMIT\n".into(),
            }],
        },
        ..saved("1-a")
    };
    let text = serde_json::to_string_pretty(&s).unwrap();
    assert!(text.contains("\"backend\": \"iptables\""), "{text}");
    assert!(text.contains("\"family\": \"v6\""), "{text}");
    assert_eq!(serde_json::from_str::<Saved>(&text).unwrap(), s);
}

#[test]
fn second_arm_is_refused_while_one_is_saved() {
    let dir = tempfile::tempdir().unwrap();
    let files = Files::in_dir(dir.path());
    put(&files, &saved("1-a"));
    let e = write_new(&files.saved, b"{}").unwrap_err();
    assert!(matches!(e, GuardError::Armed(_)), "{e}");
    assert!(e.to_string().contains("sinkhole firewall rollback"), "{e}");
    assert_eq!(read_saved(&files.saved).unwrap().id, "1-a");
    // No temporary file is left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn confirm_wins_once_and_a_later_rollback_finds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let files = Files::in_dir(dir.path());
    assert!(!confirm(&files, Expect::Any).unwrap(), "nothing armed");
    put(&files, &saved("1-a"));
    assert!(confirm(&files, Expect::Any).unwrap());
    assert!(!files.saved.exists());
    assert!(!confirm(&files, Expect::Any).unwrap());
    // The guard's rollback loses: it never reaches the firewall tools.
    assert!(!rollback(&files, Expect::Id("1-a")).unwrap());
}

#[test]
fn a_guard_leaves_another_applys_state_alone() {
    let dir = tempfile::tempdir().unwrap();
    let files = Files::in_dir(dir.path());
    put(&files, &saved("2-b"));
    let ino = inode(&files.saved).unwrap();
    assert!(!rollback(&files, Expect::Id("1-a")).unwrap());
    assert!(!rollback(&files, Expect::Inode(ino + 1)).unwrap());
    assert!(!confirm(&files, Expect::Inode(ino + 1)).unwrap());
    assert_eq!(read_saved(&files.saved).unwrap().id, "2-b");
    assert_eq!(inode(&files.saved), Some(ino));
    // A detached guard whose window was decided (its id is gone) exits at once.
    assert!(!watch(&files, "1-a", Duration::from_secs(60)).unwrap());
}

#[test]
fn unreadable_state_is_reported_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let files = Files::in_dir(dir.path());
    std::fs::write(&files.saved, "{ not json").unwrap();
    let e = rollback(&files, Expect::Any).unwrap_err().to_string();
    assert!(e.contains("firewall.saved: not a saved rule set"), "{e}");
    assert!(files.saved.exists(), "kept for the administrator");
}
