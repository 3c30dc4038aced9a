//! What every command family shares: the one error type of the command line, with the exit
//! code it ends in ([`Error`]), how a command that ran to its end exits ([`Status`]), and
//! loading the config a command names ([`load_config`]). Depends on no other `cli` file.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::{Config, ConfigErrors};

/// How a command that ran to its end exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Exit 0.
    Success,
    /// Exit 1, with nothing more printed: the command found problems and has already printed
    /// each (`lists lint`: invalid lines; `lists remove`: names not in the file; `lists
    /// update`: downloads that failed).
    Findings,
}

impl Status {
    /// The process exit code.
    pub fn exit_code(self) -> ExitCode {
        match self {
            Self::Success => ExitCode::SUCCESS,
            Self::Findings => ExitCode::from(1),
        }
    }
}

/// Why a command failed, which decides its exit code: 2 for a config or usage error, 1 for
/// a failure while running. `main` prints it once (its `Display` is the whole report, the
/// `sinkhole: ` prefix included) and exits with [`Error::exit_code`].
#[derive(Debug)]
pub enum Error {
    /// A config file that does not validate (exit 2). Printed as each of its errors on a
    /// line of its own (`file:line:col: key: msg`), then
    /// `sinkhole: N error(s) in FILE; not starting`.
    Config {
        /// The file.
        path: PathBuf,
        /// Every error in it.
        errors: ConfigErrors,
    },
    /// A bad option value, or a config this command cannot use (exit 2). Printed as
    /// `sinkhole: {error:#}`: the message, then each cause.
    Usage(anyhow::Error),
    /// A failure while running (exit 1). Printed as `sinkhole: {error:#}`.
    Runtime(anyhow::Error),
}

impl Error {
    /// A usage error printed as `sinkhole: {msg}`. Takes the text only: an error whose
    /// message already names its cause (`{path}: {source}`) is not followed by the cause
    /// again, as `{:#}` of the error itself would.
    pub fn usage(msg: impl fmt::Display) -> Self {
        Self::Usage(anyhow::anyhow!("{msg}"))
    }

    /// A runtime error printed as `sinkhole: {msg}`; the text only, as [`Error::usage`].
    pub fn runtime(msg: impl fmt::Display) -> Self {
        Self::Runtime(anyhow::anyhow!("{msg}"))
    }

    /// The process exit code: 2 config or usage, 1 runtime.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Config { .. } | Self::Usage(_) => ExitCode::from(2),
            Self::Runtime(_) => ExitCode::from(1),
        }
    }
}

/// `?` on an `anyhow` result: a runtime failure, printed with its causes.
impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Self {
        Self::Runtime(e)
    }
}

/// `?` on an I/O result (writing the output): a runtime failure.
impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Self::Runtime(e.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config { path, errors } => {
                for e in &errors.0 {
                    writeln!(f, "{e}")?;
                }
                write!(
                    f,
                    "sinkhole: {} error(s) in {}; not starting",
                    errors.0.len(),
                    path.display()
                )
            }
            Self::Usage(e) | Self::Runtime(e) => write!(f, "sinkhole: {e:#}"),
        }
    }
}

/// The config at `path`, or the embedded default without one.
pub(super) fn load_config(path: Option<&Path>) -> Result<Config, Error> {
    match path {
        None => Ok(Config::embedded_default()),
        Some(p) => Config::load(p).map_err(|errors| Error::Config {
            path: p.to_path_buf(),
            errors,
        }),
    }
}
