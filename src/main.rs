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
/// when stderr is the journal.
fn init_tracing(level: Option<&str>) -> Result<(), Error> {
    let filter = match level {
        Some(level) => EnvFilter::try_new(level),
        None => EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new("info")),
    };
    let filter =
        filter.map_err(|e| Error::usage(format_args!("invalid --log-level/RUST_LOG: {e}")))?;
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
