//! `sinkhole db migrate --config F`: creates or upgrades the PostgreSQL schema of
//! `[log.postgres]` (the work is `postgres::migrate`); prints what it applied. Exit codes:
//! 0 done (also when there was nothing to do), 1 the database failed or is newer than
//! this build, 2 a config without `[log.postgres]`.

use std::path::PathBuf;

use clap::Subcommand;

use super::common::{Error, load_config};
use crate::postgres::{self, migrate};

/// `sinkhole db …`
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Create or upgrade the schema in `[log.postgres]`'s database (safe to run again: what
    /// is applied is skipped).
    Migrate {
        /// Config file with a `[log.postgres]` section.
        #[arg(long, short, value_name = "FILE", default_value = "sinkhole.toml")]
        config: PathBuf,
    },
}

/// Runs one `db` subcommand.
pub(super) fn run(cmd: DbCommand) -> Result<(), Error> {
    match cmd {
        DbCommand::Migrate { config } => {
            let cfg = load_config(Some(&config))?;
            let Some(pg) = cfg.log.as_ref().and_then(|l| l.postgres.as_ref()) else {
                return Err(Error::usage(format_args!(
                    "{}: no [log.postgres] section (url or url_file): nothing to migrate",
                    config.display()
                )));
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let applied = rt.block_on(async {
                let mut client = postgres::connect(&pg.url).await?;
                migrate::migrate(&mut client).await
            });
            let applied = applied.map_err(Error::runtime)?;
            if applied.is_empty() {
                println!(
                    "{}: schema already at version {}; nothing to do",
                    pg.url.describe(),
                    migrate::SCHEMA_VERSION
                );
            } else {
                for m in &applied {
                    println!("applied {:04}_{}", m.version, m.name);
                }
                println!(
                    "{}: schema at version {}",
                    pg.url.describe(),
                    migrate::SCHEMA_VERSION
                );
            }
            Ok(())
        }
    }
}
