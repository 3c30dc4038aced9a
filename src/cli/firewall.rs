//! `sinkhole firewall show|check|apply|remove|confirm|rollback`: clap arguments, printing,
//! the terminal and signals of `apply --confirm`, and exit codes, around `firewall::system`
//! (the tools), `firewall::apply` (the confirm window's state machine) and `firewall::guard`
//! (the saved rules and the rollback armed apart from this process). Exit codes: 0 ok, 1 a
//! runtime failure or a rollback, 2 a config or usage error.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;

use super::common::{Error, load_config};
use crate::config::parse_duration;
use crate::firewall::apply::{self, Settled, Window};
use crate::firewall::{Backend, Family, Ruleset, guard, render, system};

/// Options every `sinkhole firewall` subcommand takes.
#[derive(Debug, Clone, clap::Args)]
pub struct FirewallOpts {
    /// Config file with a `[firewall]` section.
    #[arg(long, short, value_name = "FILE", default_value = "sinkhole.toml")]
    pub config: PathBuf,
    /// Rule set flavour; defaults to `firewall.backend`.
    #[arg(long, value_enum)]
    pub backend: Option<BackendArg>,
    /// Only one family (iptables backend): ipv4 → iptables-restore, ipv6 → ip6tables-restore.
    #[arg(long, value_enum)]
    pub family: Option<FamilyArg>,
}

/// `--backend`
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum BackendArg {
    /// One `table inet sinkhole` for `nft -f`.
    Nftables,
    /// `iptables-restore` / `ip6tables-restore` input.
    Iptables,
}

/// `--family`
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FamilyArg {
    /// IPv4 only.
    Ipv4,
    /// IPv6 only.
    Ipv6,
}

/// `sinkhole firewall …`
#[derive(Debug, Subcommand)]
pub enum FirewallCommand {
    /// Print the complete rule set.
    Show(FirewallOpts),
    /// Validate the rule set with the real tool (`nft -c`, `iptables-restore --test`).
    Check(FirewallOpts),
    /// Apply the rule set atomically; with --confirm, roll back unless confirmed in time.
    Apply {
        /// Common options.
        #[command(flatten)]
        opts: FirewallOpts,
        /// Roll back unless confirmed within this time (`30s`, `2m`), on the terminal or by
        /// `sinkhole firewall confirm` from another shell.
        #[arg(long, value_name = "DURATION", value_parser = confirm_window)]
        confirm: Option<Duration>,
    },
    /// Remove what sinkhole added (and nothing else).
    Remove(FirewallOpts),
    /// Confirm a pending `apply --confirm` (from another shell): keep its rules.
    Confirm(FirewallOpts),
    /// Restore the rules saved by a pending `apply --confirm` now (also what its rollback
    /// guard runs when the window passes).
    Rollback(RollbackArgs),
}

/// `sinkhole firewall rollback`
#[derive(Debug, Clone, clap::Args)]
pub struct RollbackArgs {
    /// The saved rules [default: $SINKHOLE_RUN_DIR/firewall.saved, /run/sinkhole/firewall.saved].
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Only the state armed by the `apply` with this id (the guard's own check).
    #[arg(long, hide = true)]
    pub id: Option<String>,
    /// Wait this long first, giving up once the window is decided (the detached guard).
    #[arg(long, hide = true, value_parser = confirm_window, requires = "id")]
    pub after: Option<Duration>,
}

/// `--confirm`: a duration (`config::parse_duration`) that is not zero.
fn confirm_window(s: &str) -> Result<Duration, String> {
    match parse_duration(s) {
        Some(d) if !d.is_zero() => Ok(d),
        _ => Err(format!(
            "{:?}: write a duration such as 30s, 2m or 500ms",
            s.trim()
        )),
    }
}

/// The rule set of `opts.config`, the backend and the family to work on; usage errors for
/// a config without `[firewall]` and for `--family` with nftables.
fn firewall_ruleset(opts: &FirewallOpts) -> Result<(Ruleset, Backend, Option<Family>), Error> {
    let cfg = load_config(Some(&opts.config))?;
    let rs = Ruleset::from_config(&cfg).map_err(Error::usage)?;
    let backend = match opts.backend {
        Some(BackendArg::Nftables) => Backend::Nftables,
        Some(BackendArg::Iptables) => Backend::Iptables,
        None => rs.fw.backend,
    };
    let family = opts.family.map(|f| match f {
        FamilyArg::Ipv4 => Family::V4,
        FamilyArg::Ipv6 => Family::V6,
    });
    if family.is_some() && backend == Backend::Nftables {
        return Err(Error::usage(
            "--family is for the iptables backend; the nftables table is inet (IPv4 and IPv6 together)",
        ));
    }
    Ok((rs, backend, family))
}

/// Runs one `firewall` subcommand.
pub(super) fn run(cmd: FirewallCommand) -> Result<(), Error> {
    let opts = match &cmd {
        FirewallCommand::Show(o)
        | FirewallCommand::Check(o)
        | FirewallCommand::Remove(o)
        | FirewallCommand::Apply { opts: o, .. } => o.clone(),
        FirewallCommand::Confirm(_) => return confirm(),
        FirewallCommand::Rollback(a) => return rollback(a),
    };
    let (rs, backend, family) = firewall_ruleset(&opts)?;
    match cmd {
        FirewallCommand::Show(_) => {
            print!("{}", render(&rs, backend, family));
        }
        FirewallCommand::Check(_) => {
            system::check(&rs, backend, family).map_err(anyhow::Error::from)?;
            println!("{}: rule set ok ({backend:?})", opts.config.display());
        }
        FirewallCommand::Remove(_) => {
            apply::not_armed(&guard::run_dir()).map_err(anyhow::Error::from)?;
            if system::remove(backend, family).map_err(anyhow::Error::from)? {
                println!("removed sinkhole's rules ({backend:?})");
            } else {
                println!("no sinkhole rules were loaded ({backend:?})");
            }
        }
        FirewallCommand::Apply { confirm, .. } => firewall_apply(&rs, backend, family, confirm)?,
        FirewallCommand::Confirm(_) | FirewallCommand::Rollback(_) => {}
    }
    Ok(())
}

/// `confirm`: keeps the rules of a pending `apply --confirm`.
fn confirm() -> Result<(), Error> {
    let files = guard::Files::in_dir(&guard::run_dir());
    match guard::confirm(&files, guard::Expect::Any) {
        Ok(true) => {
            println!("confirmed: the pending rules are kept");
            Ok(())
        }
        Ok(false) => Err(Error::runtime(format_args!(
            "nothing to confirm (no {}): no `apply --confirm` is waiting, or it was rolled back",
            files.saved.display()
        ))),
        Err(e) => Err(Error::runtime(e)),
    }
}

/// `rollback`: restores the saved rules now, or (the detached guard: `--id`, `--after`)
/// when the window has passed undecided.
fn rollback(args: &RollbackArgs) -> Result<(), Error> {
    let files = guard::Files::at(
        args.state
            .clone()
            .unwrap_or_else(|| guard::Files::in_dir(&guard::run_dir()).saved),
    );
    let state = files.saved.display();
    let result = match (&args.id, args.after) {
        (Some(id), Some(after)) => guard::watch(&files, id, after),
        (Some(id), None) => guard::rollback(&files, guard::Expect::Id(id)),
        (None, _) => guard::rollback(&files, guard::Expect::Any),
    };
    match result {
        Ok(true) => {
            println!("rolled back to the rules saved in {state}");
            Ok(())
        }
        // The guard's window was decided (confirmed, or rolled back by `apply`): fine.
        Ok(false) if args.id.is_some() => {
            println!("nothing to roll back: the window of {state} was decided");
            Ok(())
        }
        Ok(false) => Err(Error::runtime(format_args!(
            "nothing to roll back (no {state}): no `apply --confirm` is waiting"
        ))),
        Err(e) => Err(Error::runtime(format_args!(
            "ROLLBACK FAILED: {e}; the saved rules stay in {state}: fix the cause and run `sinkhole firewall rollback` again"
        ))),
    }
}

/// Prints a line without panicking when the terminal is gone (SSH dropped meanwhile).
fn say(line: &str) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// `apply`: at once, or with `--confirm` through a [`Window`]: this side prints, asks on the
/// terminal, turns Ctrl-C / SIGTERM into an interruption, and fails (exit 1) when the
/// previous rules came back.
fn firewall_apply(
    rs: &Ruleset,
    backend: Backend,
    family: Option<Family>,
    confirm: Option<Duration>,
) -> anyhow::Result<()> {
    let run_dir = guard::run_dir();
    let before = apply::prepare(&run_dir, backend, family)?;
    let Some(timeout) = confirm else {
        apply::apply_now(rs, &before)?;
        println!("applied ({backend:?})");
        return Ok(());
    };
    let window = Window::open(&run_dir, rs, before, timeout)?;
    let files = window.files();
    let tty = std::io::stdin().is_terminal();
    say(&format!(
        "applied ({backend:?}); rolling back in {}s unless confirmed{} or by `sinkhole firewall confirm` ({})",
        timeout.as_secs_f32(),
        if tty { " here (type yes)" } else { "" },
        files.pending.display()
    ));
    say(&format!(
        "previous rules saved in {}; rollback armed apart from this process ({})",
        files.saved.display(),
        match window.guard() {
            guard::Guard::Systemd(unit) => format!("systemd timer {unit}"),
            guard::Guard::Detached(pid) => format!("guard process {pid}"),
        }
    ));
    let answers = tty.then(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut out = std::io::stdout();
            let _ = write!(out, "keep the new rules? [yes/no] ");
            let _ = out.flush();
            let mut line = String::new();
            if std::io::stdin().read_line(&mut line).is_ok() {
                let _ = tx.send(line.trim().to_ascii_lowercase());
            }
        });
        rx
    });
    let interrupted = Arc::new(AtomicBool::new(false));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime (the rollback guard stays armed)")?;
    let flag = Arc::clone(&interrupted);
    // Ctrl-C and SIGTERM roll back at once. SIGHUP keeps its default (this process ends,
    // unless run under nohup): the guard rolls back when the window has passed.
    rt.spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            return;
        };
        tokio::select! {
            r = tokio::signal::ctrl_c() => if r.is_err() { return },
            _ = term.recv() => {}
        }
        flag.store(true, Ordering::SeqCst);
    });
    let decision = rt.block_on(window.wait(answers.as_ref(), &interrupted));
    match window.settle(decision)? {
        Settled::Kept => {
            say("confirmed: keeping the new rules");
            Ok(())
        }
        Settled::RolledBack(why) => anyhow::bail!("{why}: rolled back to the previous rules"),
    }
}
