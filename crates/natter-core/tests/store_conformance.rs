//! `MemoryStore` keeps the Store contract: the conformance suite (natter-store-tests), each
//! case on a fresh store.

use std::sync::Arc;

use natter_core::store::Store;
use natter_core::store_memory::MemoryStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_keeps_the_store_contract() {
    natter_store_tests::run_all(|| async { Arc::new(MemoryStore::new()) as Arc<dyn Store> }).await;
}

/// The fuzzer's flavour (fixed clock, counted epochs) keeps it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_with_a_fixed_clock_keeps_the_store_contract() {
    natter_store_tests::run_all(|| async {
        Arc::new(MemoryStore::with_fixed_clock(1_763_790_000_000)) as Arc<dyn Store>
    })
    .await;
}
