//! `sinkhole firewall show|check|apply|remove|confirm|rollback`: printing, exit codes and
//! the wait of `apply --confirm` around `firewall::system` (the tools) and `firewall::guard`
//! (the saved rules and the rollback armed apart from this process). Exit codes: 0 ok, 1 a
//! runtime failure or a rollback, 2 config or usage error.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::cli::{BackendArg, FamilyArg, FirewallCommand, FirewallOpts, RollbackArgs, load_config};
use crate::firewall::{Backend, Family, Ruleset, guard, render, system};

fn firewall_ruleset(opts: &FirewallOpts) -> Result<(Ruleset, Backend, Option<Family>), ExitCode> {
    let cfg = load_config(Some(&opts.config))?;
    let rs = Ruleset::from_config(&cfg).map_err(|e| {
        eprintln!("sinkhole: {e}");
        ExitCode::from(2)
    })?;
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
        eprintln!(
            "sinkhole: --family is for the iptables backend; the nftables table is inet (IPv4 and IPv6 together)"
        );
        return Err(ExitCode::from(2));
    }
    Ok((rs, backend, family))
}

/// Runs one `firewall` subcommand.
pub(crate) fn run(cmd: FirewallCommand) -> ExitCode {
    let opts = match &cmd {
        FirewallCommand::Show(o)
        | FirewallCommand::Check(o)
        | FirewallCommand::Remove(o)
        | FirewallCommand::Apply { opts: o, .. } => o.clone(),
        FirewallCommand::Confirm(_) => return firewall_confirm(),
        FirewallCommand::Rollback(a) => return firewall_rollback(a),
    };
    let (rs, backend, family) = match firewall_ruleset(&opts) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let result = match cmd {
        FirewallCommand::Show(_) => {
            print!("{}", render(&rs, backend, family));
            Ok(())
        }
        FirewallCommand::Check(_) => system::check(&rs, backend, family)
            .map(|()| println!("{}: rule set ok ({backend:?})", opts.config.display()))
            .map_err(anyhow::Error::from),
        FirewallCommand::Remove(_) => not_armed().and_then(|()| {
            system::remove(backend, family)
                .map(|any| {
                    if any {
                        println!("removed sinkhole's rules ({backend:?})");
                    } else {
                        println!("no sinkhole rules were loaded ({backend:?})");
                    }
                })
                .map_err(anyhow::Error::from)
        }),
        FirewallCommand::Apply { confirm, .. } => firewall_apply(&rs, backend, family, confirm),
        FirewallCommand::Confirm(_) | FirewallCommand::Rollback(_) => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sinkhole: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Refuses to change the rules while a rollback is armed: the guard would undo it.
fn not_armed() -> anyhow::Result<()> {
    let files = guard::Files::in_dir(&guard::run_dir());
    if files.saved.exists() {
        return Err(guard::GuardError::Armed(files.saved.display().to_string()).into());
    }
    Ok(())
}

fn firewall_confirm() -> ExitCode {
    let files = guard::Files::in_dir(&guard::run_dir());
    match guard::confirm(&files, guard::Expect::Any) {
        Ok(true) => {
            println!("confirmed: the pending rules are kept");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            eprintln!(
                "sinkhole: nothing to confirm (no {}): no `apply --confirm` is waiting, or it was rolled back",
                files.saved.display()
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("sinkhole: {e}");
            ExitCode::from(1)
        }
    }
}

fn firewall_rollback(args: &RollbackArgs) -> ExitCode {
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
            ExitCode::SUCCESS
        }
        // The guard's window was decided (confirmed, or rolled back by `apply`): fine.
        Ok(false) if args.id.is_some() => {
            println!("nothing to roll back: the window of {state} was decided");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            eprintln!(
                "sinkhole: nothing to roll back (no {state}): no `apply --confirm` is waiting"
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!(
                "sinkhole: ROLLBACK FAILED: {e}; the saved rules stay in {state}: fix the cause and run `sinkhole firewall rollback` again"
            );
            ExitCode::from(1)
        }
    }
}

/// Prints a line without panicking when the terminal is gone (SSH dropped meanwhile).
fn say(line: &str) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

fn firewall_apply(
    rs: &Ruleset,
    backend: Backend,
    family: Option<Family>,
    confirm: Option<Duration>,
) -> anyhow::Result<()> {
    not_armed()?;
    let snap = system::snapshot(backend, family).context("recording the current rules")?;
    let Some(timeout) = confirm else {
        system::apply(rs, &snap).context("applying the rule set")?;
        println!("applied ({backend:?})");
        return Ok(());
    };
    // The previous rules go to disk and the rollback is armed before anything changes:
    // from here on, any death of this process still ends in a rollback.
    let armed = guard::Armed::arm(&guard::run_dir(), snap.clone(), timeout)
        .context("not applied: cannot arm the rollback")?;
    let files = armed.files().clone();
    if let Err(e) = system::apply(rs, &snap) {
        armed
            .rollback()
            .context("ROLLBACK FAILED after a failed apply: check the rules by hand")?;
        return Err(anyhow::Error::from(e).context("applying the rule set (rolled back)"));
    }
    if let Err(e) = armed.mark_pending() {
        armed.rollback().context("rolling back")?;
        return Err(anyhow::Error::from(e).context("rolled back: cannot wait for confirmation"));
    }
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
        match &armed.guard {
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
    let interrupted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime (the rollback guard stays armed)")?;
    let flag = std::sync::Arc::clone(&interrupted);
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
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let deadline = Instant::now() + timeout;
    let decision = rt.block_on(async {
        loop {
            match armed.outcome() {
                guard::Outcome::Waiting => {}
                guard::Outcome::Confirmed => return Decision::Kept,
                guard::Outcome::RolledBack => return Decision::RolledBackElsewhere,
            }
            if let Some(rx) = &answers
                && let Ok(a) = rx.try_recv()
            {
                return if a == "y" || a == "yes" {
                    Decision::Yes
                } else {
                    Decision::No
                };
            }
            if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
                return Decision::Interrupted;
            }
            if Instant::now() >= deadline {
                return Decision::Timeout;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let why = match decision {
        Decision::Kept => "",
        Decision::Yes => match armed.confirm() {
            Ok(true) => "",
            Ok(false) if armed.outcome() == guard::Outcome::Confirmed => "",
            Ok(false) => "too late",
            Err(e) => return Err(anyhow::Error::from(e).context("confirming")),
        },
        Decision::No => "not confirmed",
        Decision::Timeout => "no confirmation in time",
        Decision::Interrupted => "interrupted",
        Decision::RolledBackElsewhere => "rolled back by the guard or `sinkhole firewall rollback`",
    };
    if why.is_empty() {
        say("confirmed: keeping the new rules");
        return Ok(());
    }
    if !matches!(decision, Decision::RolledBackElsewhere | Decision::Yes) {
        let done = armed
            .rollback()
            .context("ROLLBACK FAILED: check the rules by hand")?;
        if !done && armed.outcome() == guard::Outcome::Confirmed {
            say("confirmed: keeping the new rules");
            return Ok(());
        }
    }
    anyhow::bail!("{why}: rolled back to the previous rules")
}

/// How the wait of `apply --confirm` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// `sinkhole firewall confirm` from another shell.
    Kept,
    /// `yes` on the terminal.
    Yes,
    /// Another answer on the terminal.
    No,
    /// The window passed.
    Timeout,
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// The state was taken by a rollback that is not ours.
    RolledBackElsewhere,
}
