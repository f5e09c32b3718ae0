//! The stores embed their migrations by hand (no `sqlx::migrate!`, see their READMEs); this
//! checks such a list against the migrations directory.

use std::path::Path;

use sqlx::migrate::Migrator;

/// Panics unless `embedded` is what `sqlx::migrate!(dir)` would build: the same migrations as
/// sqlx's own resolver reads `dir`, with the same checksums (a database migrated by an older
/// binary must not see a changed migration), types, transaction flags and SQL.
pub async fn assert_embedded_migrations_match(embedded: &Migrator, dir: &Path) {
    let from_dir = Migrator::new(dir.to_path_buf())
        .await
        .unwrap_or_else(|e| panic!("{} does not resolve: {e}", dir.display()));
    let shape = |m: &Migrator| -> Vec<_> {
        m.iter()
            .map(|m| {
                (
                    m.version,
                    m.description.to_string(),
                    m.migration_type,
                    m.checksum.to_vec(),
                    m.no_tx,
                    m.sql.as_str().to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(
        shape(embedded),
        shape(&from_dir),
        "the embedded migrations differ from {}",
        dir.display()
    );
}
