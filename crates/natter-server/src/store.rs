//! The store `--database` names, chosen by the URL's scheme: `sqlite://path` (the embedded
//! default) or `postgres://` / `postgresql://` (a database several nodes can share).

use std::sync::Arc;

use anyhow::Context;
use natter_core::store::Store;
use natter_core::store_transfer::Transfer;
use natter_store_postgres::{PgOptions, PgStore};
use natter_store_sqlite::{Durability, SqliteStore};

use crate::ServerConfig;

/// Which backend a database URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    Sqlite,
    Postgres,
}

impl DatabaseKind {
    /// The backend for `url`, by scheme; an unknown scheme is an error naming the ones known.
    pub fn of(url: &str) -> anyhow::Result<Self> {
        let scheme = url.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("sqlite") => Ok(Self::Sqlite),
            Some("postgres" | "postgresql") => Ok(Self::Postgres),
            _ => anyhow::bail!(
                "unsupported database URL `{}`: expected sqlite://path/to/file.db or \
                 postgres://user:password@host:port/database",
                redact(url)
            ),
        }
    }
}

/// The URL as logs may show it: a Postgres password is replaced by `***`.
pub fn redact(url: &str) -> String {
    if url.contains('@') {
        natter_store_postgres::redact_url(url)
    } else {
        url.to_owned()
    }
}

/// How to open a database.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// SQLite commit durability.
    pub sqlite_durability: Durability,
    /// Postgres pool size (`None`: the driver's default of [`PgOptions`]).
    pub max_connections: Option<u32>,
}

impl StoreOptions {
    pub fn of(config: &ServerConfig) -> Self {
        Self {
            sqlite_durability: config.sqlite_durability,
            max_connections: config.database_max_connections,
        }
    }
}

/// Opens the store the server runs on.
pub async fn open_store(config: &ServerConfig) -> anyhow::Result<Arc<dyn Store>> {
    let store: Arc<dyn Store> = open_transfer(&config.database, &StoreOptions::of(config)).await?;
    Ok(store)
}

/// Opens the database at `url` as a store whose chats can also be exported and imported
/// (what `natter store copy` needs).
pub async fn open_transfer(url: &str, options: &StoreOptions) -> anyhow::Result<Arc<dyn Transfer>> {
    let shown = redact(url);
    Ok(match DatabaseKind::of(url)? {
        DatabaseKind::Sqlite => {
            natter_store_sqlite::telemetry::describe();
            Arc::new(
                SqliteStore::open(url, options.sqlite_durability)
                    .await
                    .with_context(|| format!("opening the SQLite database {shown}"))?,
            )
        }
        DatabaseKind::Postgres => {
            let defaults = PgOptions::default();
            let pg = PgOptions {
                max_connections: options.max_connections.unwrap_or(defaults.max_connections),
                ..defaults
            };
            Arc::new(
                PgStore::connect(url, pg)
                    .await
                    .with_context(|| format!("opening the PostgreSQL database {shown}"))?,
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_pick_the_backend() {
        assert_eq!(
            DatabaseKind::of("sqlite://./x.db").unwrap(),
            DatabaseKind::Sqlite
        );
        assert_eq!(
            DatabaseKind::of("postgres://a@h/d").unwrap(),
            DatabaseKind::Postgres
        );
        assert_eq!(
            DatabaseKind::of("PostgreSQL://a@h/d").unwrap(),
            DatabaseKind::Postgres
        );
        let e = DatabaseKind::of("mysql://root:hunter2@h/d")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unsupported database URL") && !e.contains("hunter2"),
            "{e}"
        );
        assert!(DatabaseKind::of("natter.db").is_err());
    }

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            redact("postgres://ann:s3cret@db:5432/natter"),
            "postgres://ann:***@db:5432/natter"
        );
        assert_eq!(
            redact("sqlite://./natter-data/natter.db"),
            "sqlite://./natter-data/natter.db"
        );
    }
}
