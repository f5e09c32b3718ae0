//! Throwaway databases for tests (this crate's and natter-server's).
//!
//! The server to use comes from `NATTER_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`, a maintenance database the role may
//! `CREATE DATABASE` from). When it cannot be reached, [`TestDb::create`] prints a loud
//! `!!! SKIPPED` line and returns `None`, so the test passes, except with `CI=true`, where it
//! panics: CI must run Postgres.

use std::io::Write;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

use crate::redact_url;

pub const DEFAULT_TEST_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database created for one test, dropped by [`TestDb::drop_db`] or, failing that, when
/// the value is dropped (best effort, also after a panic).
pub struct TestDb {
    admin: String,
    name: String,
    url: String,
    dropped: bool,
}

fn admin_url() -> String {
    std::env::var("NATTER_TEST_POSTGRES")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_TEST_URL.to_owned())
}

async fn admin_connection(admin: &str) -> Result<PgConnection, String> {
    let options = PgConnectOptions::from_str(admin).map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(5), options.connect())
        .await
        .map_err(|_| "timed out after 5 s".to_owned())?
        .map_err(|e| e.to_string())
}

impl TestDb {
    /// Creates `natter_test_<uuid>`. `None` (after a loud line on stderr) when Postgres is
    /// unreachable and `CI` is not `true`.
    pub async fn create() -> Option<TestDb> {
        let admin = admin_url();
        let mut conn = match admin_connection(&admin).await {
            Ok(c) => c,
            Err(e) => {
                let shown = redact_url(&admin);
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("PostgreSQL not reachable at {shown} ({e}), and CI=true: failing");
                }
                // Straight to the process's stderr: the test harness captures `eprintln!`
                // of passing tests, and this line must be seen.
                let _ = writeln!(
                    std::io::stderr(),
                    "!!! SKIPPED: PostgreSQL not reachable at {shown} ({e}); set \
                     NATTER_TEST_POSTGRES to run the Postgres tests"
                );
                return None;
            }
        };
        let name = format!("natter_test_{}", uuid::Uuid::new_v4().simple());
        // An identifier cannot be bound; the name is ours (letters, digits, underscores).
        if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
        {
            panic!("CREATE DATABASE {name} failed: {e}");
        }
        let _ = conn.close().await;
        let mut url = match url::Url::parse(&admin) {
            Ok(u) => u,
            Err(e) => panic!("NATTER_TEST_POSTGRES is not a URL: {e}"),
        };
        url.set_path(&format!("/{name}"));
        Some(TestDb {
            admin,
            name,
            url: url.to_string(),
            dropped: false,
        })
    }

    /// The new database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Drops the database (closing its other sessions), best effort.
    pub async fn drop_db(mut self) {
        self.dropped = true;
        drop_database(&self.admin, &self.name).await;
    }
}

async fn drop_database(admin: &str, name: &str) {
    let Ok(mut conn) = admin_connection(admin).await else {
        return;
    };
    let forced = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await;
    if forced.is_err() {
        // Before PostgreSQL 13: end the sessions, then drop.
        let _ = sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
        )
        .bind(name)
        .execute(&mut conn)
        .await;
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name}"
        )))
        .execute(&mut conn)
        .await;
    }
    let _ = conn.close().await;
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // After a failed assertion: drop it from a thread with a runtime of its own.
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(drop_database(&admin, &name));
            }
        })
        .join();
    }
}
