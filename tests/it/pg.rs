//! Test support: a real PostgreSQL (Debian's package) in a cluster of the test's own: made
//! with `initdb` in a temporary folder, started with `pg_ctl` on a free loopback port as
//! the unprivileged user `postgres` (the server refuses to run as root), removed when
//! dropped. Password authentication over TCP (user `sinkhole`, password [`PASSWORD`]), so
//! that a wrong password is a real refusal. A test makes its cluster (about a second) and
//! its databases ([`PgCluster::database`]).
#![allow(dead_code)]

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The password of the cluster's superuser `sinkhole`.
pub(crate) const PASSWORD: &str = "test-pw";

/// A running cluster; stopped and removed on drop.
pub(crate) struct PgCluster {
    pub(crate) port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

/// The folder of Debian's PostgreSQL programs (the newest installed).
fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed (apt-get install postgresql; .ci/run does)")
        .filter_map(|e| {
            let e = e.ok()?;
            let v = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, p)| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("no /usr/lib/postgresql/N/bin/initdb")
        .1
}

/// Runs a PostgreSQL program as the user `postgres`.
fn as_postgres(bin: &Path, prog: &str, args: &[&str]) -> std::process::Output {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(bin.join(prog))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("runuser {prog}: {e}"));
    assert!(
        out.status.success(),
        "{prog} {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PgCluster {
    /// Makes and starts a new cluster.
    pub(crate) fn start() -> Self {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("sinkhole-pg")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, PASSWORD).unwrap();
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
        let data = dir.path().join("data");
        as_postgres(
            &bin,
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "sinkhole",
                "--pwfile",
                pw.to_str().unwrap(),
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        let c = Self {
            port: free_port(),
            dir,
            bin,
        };
        c.resume();
        c
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the server (again, after [`Self::stop`]) and waits until it takes connections.
    pub(crate) fn resume(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        as_postgres(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &opts,
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
    }

    /// Stops the server at once (connections are cut).
    pub(crate) fn stop(&self) {
        as_postgres(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    /// `postgresql://sinkhole:PASSWORD@127.0.0.1:PORT/DB`
    pub(crate) fn url(&self, db: &str) -> String {
        format!(
            "postgresql://sinkhole:{PASSWORD}@127.0.0.1:{}/{db}",
            self.port
        )
    }

    /// Creates a new empty database; returns its URL.
    pub(crate) async fn database(&self, name: &str) -> String {
        let admin = self.client("postgres").await;
        // One statement each: several in one string run as one transaction, which
        // DROP/CREATE DATABASE refuse.
        for sql in [
            format!("DROP DATABASE IF EXISTS {name}"),
            format!("CREATE DATABASE {name}"),
        ] {
            admin.batch_execute(&sql).await.unwrap();
        }
        self.url(name)
    }

    /// A client of database `db`.
    pub(crate) async fn client(&self, db: &str) -> tokio_postgres::Client {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match tokio_postgres::connect(&self.url(db), tokio_postgres::NoTls).await {
                Ok((client, conn)) => {
                    tokio::spawn(conn);
                    return client;
                }
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("connecting to {}: {e}", self.url(db)),
            }
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args([
                "-D",
                self.data().to_str().unwrap_or(""),
                "-m",
                "immediate",
                "stop",
            ])
            .output();
    }
}

/// Waits until `f` is true (checked every 50 ms), at most `limit`; returns whether it was.
pub(crate) async fn eventually<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if f().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
