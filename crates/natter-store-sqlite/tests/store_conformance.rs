//! `SqliteStore` keeps the Store contract: the conformance suite (natter-store-tests), each
//! case on its own fresh database file.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use natter_core::store::Store;
use natter_store_sqlite::{Durability, SqliteStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_store_keeps_the_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let next = AtomicUsize::new(0);
    natter_store_tests::run_all(|| {
        let url = format!(
            "sqlite://{}/case-{}.db",
            dir.path().display(),
            next.fetch_add(1, Ordering::Relaxed)
        );
        async move {
            Arc::new(SqliteStore::open(&url, Durability::Normal).await.unwrap()) as Arc<dyn Store>
        }
    })
    .await;
}
