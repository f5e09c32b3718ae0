//! The Bus conformance suite against the in-process `MemoryBus` (one node).

use std::sync::Arc;

use async_trait::async_trait;
use natter_bus_tests::Cluster;
use natter_core::bus::Bus;
use natter_core::bus_memory::MemoryBus;

struct OneNode(Arc<MemoryBus>);

const CAPACITY: usize = 4096;

#[async_trait]
impl Cluster for OneNode {
    async fn node(&self, _i: usize) -> Arc<dyn Bus> {
        self.0.clone()
    }

    fn capacity(&self) -> usize {
        CAPACITY
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bus_meets_the_bus_contract() {
    let cluster = OneNode(Arc::new(MemoryBus::new(CAPACITY)));
    let seen = natter_bus_tests::run_all(&cluster).await;
    // One process subscribes atomically: never a token twice.
    assert!(seen.iter().all(|s| s.duplicates == 0), "{seen:?}");
}
