//! The schema: versioned migrations, kept in the repository (`migrations/NNNN_name.sql`)
//! and built into the binary. [`migrate`] (`sinkhole db migrate`) applies the ones the
//! database has not seen, each in a transaction, under an advisory lock so that two
//! instances upgrading at once do not race; applied twice, it does nothing. [`check`] is
//! what `serve` asks before it writes: the schema it knows, or a clear error (too old: run
//! the migration; too new: upgrade sinkhole).

use tokio_postgres::Client;

use super::DbError;

/// One migration: version, name, SQL.
pub struct Migration {
    /// Its number, from 1, in order.
    pub version: i32,
    /// The file name's words.
    pub name: &'static str,
    /// The statements.
    pub sql: &'static str,
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "initial",
    sql: include_str!("../../migrations/0001_initial.sql"),
}];

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: i32 = 1;

/// The advisory lock `migrate` holds (any fixed number; "sinkhole" in ASCII).
const LOCK: i64 = 0x73_69_6e_6b_68_6f_6c_65;

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now())";

/// The database's schema version: 0 when it has none.
pub async fn version(client: &Client) -> Result<i32, DbError> {
    // Two statements: one naming a table that does not exist fails as a whole, even in a
    // branch not taken.
    let exists = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await
        .map_err(DbError::query("reading the schema version"))?;
    if !exists.get::<_, bool>(0) {
        return Ok(0);
    }
    let row = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .map_err(DbError::query("reading the schema version"))?;
    Ok(row.get(0))
}

/// Applies the migrations the database lacks; returns the ones applied (none when it was
/// up to date). A schema newer than this build is an error and is left alone.
pub async fn migrate(client: &mut Client) -> Result<Vec<&'static Migration>, DbError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK])
        .await
        .map_err(DbError::query("taking the migration lock"))?;
    let res = apply(client).await;
    // The lock also ends with the session; an error here changes nothing.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK])
        .await;
    res
}

async fn apply(client: &mut Client) -> Result<Vec<&'static Migration>, DbError> {
    client
        .batch_execute(CREATE_TABLE)
        .await
        .map_err(DbError::query("creating schema_migrations"))?;
    let found = version(client).await?;
    if found > SCHEMA_VERSION {
        return Err(DbError::SchemaTooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| m.version > found) {
        let what = || format!("migration {:04}_{}", m.version, m.name);
        let tx = client.transaction().await.map_err(DbError::query(what()))?;
        tx.batch_execute(m.sql)
            .await
            .map_err(DbError::query(what()))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&m.version, &m.name],
        )
        .await
        .map_err(DbError::query(what()))?;
        tx.commit().await.map_err(DbError::query(what()))?;
        applied.push(m);
    }
    Ok(applied)
}

/// Whether this build may use the database: its schema at [`SCHEMA_VERSION`].
pub async fn check(client: &Client) -> Result<(), DbError> {
    let found = version(client).await?;
    match found.cmp(&SCHEMA_VERSION) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Greater => Err(DbError::SchemaTooNew {
            found,
            known: SCHEMA_VERSION,
        }),
        std::cmp::Ordering::Less => Err(DbError::SchemaTooOld {
            found,
            known: SCHEMA_VERSION,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_and_end_at_the_schema_version() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i32 + 1, "{}", m.name);
            assert!(!m.sql.trim().is_empty());
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.version), Some(SCHEMA_VERSION));
    }
}
