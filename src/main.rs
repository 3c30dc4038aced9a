//! The `sinkhole` binary: parse the command line, set up logging, run the command, print an
//! error once and exit with its code (0 ok, 1 runtime, 2 config or usage).

use std::process::ExitCode;

use clap::Parser;
use sinkhole::cli::{Cli, Error, run};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match init_tracing(cli.log_level.as_deref()).and_then(|()| run(cli)) {
        Ok(status) => status.exit_code(),
        Err(err) => {
            eprintln!("{err}");
            err.exit_code()
        }
    }
}

/// Logs to stderr at `--log-level`, else `RUST_LOG`, else `info`; in the journal's format
/// when stderr is the journal. hickory's resolver and network crates log only errors unless
/// the filter names them: in recursive mode they warn about what is routine for a resolver
/// (every minimised NS query answered NODATA, every authoritative server that times out),
/// once or more per cold resolution.
fn init_tracing(level: Option<&str>) -> Result<(), Error> {
    let (text, mut filter) = match level {
        Some(level) => (
            level.to_string(),
            EnvFilter::try_new(level)
                .map_err(|e| Error::usage(format_args!("invalid --log-level/RUST_LOG: {e}")))?,
        ),
        // An unset or unusable RUST_LOG means `info`, as before.
        None => match std::env::var(EnvFilter::DEFAULT_ENV) {
            Ok(t) if !t.trim().is_empty() && EnvFilter::try_new(&t).is_ok() => {
                let f = EnvFilter::try_new(&t).unwrap_or_else(|_| EnvFilter::new("info"));
                (t, f)
            }
            _ => ("info".to_string(), EnvFilter::new("info")),
        },
    };
    if !text.contains("hickory") {
        for quiet in ["hickory_resolver=error", "hickory_net=error"] {
            if let Ok(d) = quiet.parse() {
                filter = filter.add_directive(d);
            }
        }
    }
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if sinkhole::systemd::stderr_is_journal() {
        // The journal stamps each line and takes the level from its `<N>` prefix.
        let plain = tracing_subscriber::fmt::format()
            .without_time()
            .with_level(false)
            .with_ansi(false);
        fmt.with_ansi(false)
            .event_format(sinkhole::systemd::JournalFormat(plain))
            .init();
    } else {
        fmt.init();
    }
    Ok(())
}
