//! `sinkhole serve`: load the config and the lists, bind the listeners, run the service until
//! SIGTERM or Ctrl-C, reloading on SIGHUP. The service itself is `crate::service`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;

use super::common::{Error, load_config};
use crate::blocklist::load::log_reports;
use crate::config::{Config, DEFAULT_NAME};
use crate::pipeline::Policy;
use crate::privdrop::{self, Plan};
use crate::service::{BeforeServing, Service, ServiceOptions};
use crate::systemd::{self, Notifier};

/// Runs `serve`: exit 2 on a bad config, 1 when it cannot start or fails while serving.
pub(super) fn run(path: Option<PathBuf>) -> Result<(), Error> {
    let cfg = load_config(path.as_deref())?;
    serve_config(cfg, path)?;
    Ok(())
}

fn serve_config(cfg: Config, path: Option<PathBuf>) -> anyhow::Result<()> {
    let started = Instant::now();
    // Under systemd (Type=notify): READY once everything answers, RELOADING/READY around a
    // SIGHUP reload, STOPPING at exit, and the watchdog's keep-alives.
    let notify = Notifier::from_env()
        .context("cannot use the systemd notification socket ($NOTIFY_SOCKET)")?
        .map(std::sync::Arc::new);
    tracing::info!(
        config = path.as_ref().map_or(DEFAULT_NAME.to_string(), |p| p.display().to_string()),
        listen = ?cfg.server.listen,
        upstreams = %match &cfg.upstream.recursive {
            Some(r) => format!(
                "recursive from {} root servers ({})",
                r.roots.len(),
                r.hints_file.as_ref().map_or("built-in hints".into(), |p| p.display().to_string())
            ),
            None => cfg.upstream.servers.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
        },
        timeout_ms = cfg.upstream.timeout.as_millis() as u64,
        cache_max_entries = cfg.cache.max_entries,
        mode = ?cfg.blocking.mode,
        "starting sinkhole {}",
        env!("CARGO_PKG_VERSION")
    );
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    // Before any socket: a soft limit of 1,024 is easily reached by TCP clients.
    crate::fdlimit::raise_nofile_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sinkhole-rt")
        .build()
        .context("cannot start the async runtime")?;
    let (policy, reports) = Policy::load(&cfg).context("loading blocklists")?;
    log_reports(&reports);
    // Each error is one line naming the address, the reason and the remedy
    // (`server::bind_error`).
    let sockets =
        crate::server::bind(&cfg.server.listen, cfg.server.udp_threads).context("server.listen")?;
    let tls_listen = cfg.server.tls.as_ref().map_or(&[][..], |t| &t.listen);
    let sockets = sockets.with_tls(tls_listen)?;
    let https_listen = cfg.server.tls.as_ref().map_or(&[][..], |t| &t.https_listen);
    let sockets = sockets.with_https(https_listen)?;
    let quic_listen = cfg.server.tls.as_ref().map_or(&[][..], |t| &t.quic_listen);
    let sockets = sockets.with_quic(quic_listen)?;
    let tls_addrs = sockets.tls_addrs();
    let https_addrs = sockets.https_addrs();
    let quic_addrs = sockets.quic_addrs();
    let addrs = sockets.local_addrs();
    let rules = policy.blocking.list().len();
    // Root is given up once every socket is bound (DNS, TLS, HTTPS, QUIC, the API, the
    // block page) and before the first answer: no query is ever handled as root.
    let user = cfg.server.user.clone();
    let opts = ServiceOptions {
        config_path: path,
        before_serving: Some(BeforeServing(std::sync::Arc::new(move || {
            give_up_root(user.as_deref()).map_err(|e| std::io::Error::other(format!("{e:#}")))
        }))),
        ..ServiceOptions::default()
    };
    // The signal handlers go in before the first answer: a SIGTERM sent as soon as the
    // server answers (a supervisor, a test) must stop it cleanly, not kill it.
    let (mut hup, mut term, mut usr1, ctrl_c) = {
        use tokio::signal::unix::{SignalKind, signal};
        let _rt = rt.enter();
        let what = "cannot install the signal handlers";
        (
            signal(SignalKind::hangup()).context(what)?,
            signal(SignalKind::terminate()).context(what)?,
            signal(SignalKind::user_defined1()).context(what)?,
            rt.spawn(tokio::signal::ctrl_c()),
        )
    };
    let folders = privdrop::writable_folders(&cfg);
    let service =
        Service::start(cfg, policy, sockets, rt.handle(), opts).context("cannot start serving")?;
    // As the user it now is: the folders it must write in, one line each if it cannot.
    let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map_or_else(|| nix::unistd::geteuid().to_string(), |u| u.name);
    for line in privdrop::unwritable(&folders, &me) {
        tracing::error!("{line}");
    }
    tracing::info!(
        listen = ?addrs,
        rules,
        startup_ms = started.elapsed().as_millis() as u64,
        "serving DNS on UDP and TCP"
    );
    if !tls_addrs.is_empty() {
        tracing::info!(listen = ?tls_addrs, "serving DNS over TLS");
    }
    if !https_addrs.is_empty() {
        tracing::info!(listen = ?https_addrs, path = crate::server::DOH_PATH, "serving DNS over HTTPS");
    }
    if !quic_addrs.is_empty() {
        tracing::info!(listen = ?quic_addrs, "serving DNS over QUIC");
    }
    if let Some(n) = &notify {
        n.ready(&format!("serving DNS on {addrs:?}, {rules} rules"));
        if let Some(every) = systemd::watchdog_interval() {
            // Kept alive from the runtime: a runtime that stops running tasks stops them.
            let n = std::sync::Arc::clone(n);
            rt.spawn(async move {
                let mut tick = tokio::time::interval(every / 2);
                loop {
                    tick.tick().await;
                    n.watchdog();
                }
            });
        }
    }
    rt.block_on(async {
        let mut ctrl_c = ctrl_c;
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading config and lists");
                    if let Some(n) = &notify {
                        n.reloading();
                    }
                    service.reload_tls();
                    let r = std::sync::Arc::clone(service.reloader());
                    let n = notify.clone();
                    tokio::spawn(async move {
                        let ok = r.reload_logged(true).await;
                        if let Some(n) = n {
                            n.ready(if ok { "serving DNS; reloaded" } else { "serving DNS; the reload failed, previous config kept" });
                        }
                    });
                }
                _ = usr1.recv() => print_counters(&service.counters_text()),
                _ = term.recv() => break,
                _ = &mut ctrl_c => break,
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .context("signal handling failed")?;
    tracing::info!("shutting down");
    if let Some(n) = &notify {
        n.stopping();
    }
    let counters = service.shutdown();
    print_counters(&counters);
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    Ok(())
}

/// Prints the counters to stdout, one line per counter (SIGUSR1 and exit).
fn print_counters(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Becomes `server.user` (default `sinkhole`) when started as root; see `crate::privdrop`.
fn give_up_root(user: Option<&str>) -> anyhow::Result<()> {
    let euid = nix::unistd::geteuid().as_raw();
    let plan = privdrop::plan(user, euid, privdrop::lookup)?;
    match &plan {
        Plan::Stay(why) if euid == 0 && user.is_none() => tracing::warn!(
            "running as root ({why}): create it (useradd --system --no-create-home sinkhole) or set server.user"
        ),
        Plan::Stay(why) => tracing::debug!("keeping the user ({why})"),
        Plan::Drop { name, uid, gid } => {
            privdrop::apply(&plan)?;
            tracing::info!(user = %name, uid, gid, "gave up root: running as {name}, no capabilities");
        }
    }
    Ok(())
}
