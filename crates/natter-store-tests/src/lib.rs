//! The conformance suite of natter-core's [`Store`] seam: one case per guarantee of the
//! module docs of [`natter_core::store`], run against any implementation.
//!
//! ```ignore
//! #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
//! async fn my_store_keeps_the_store_contract() {
//!     natter_store_tests::run_all(|| async { Arc::new(MyStore::new().await) as Arc<dyn Store> })
//!         .await;
//! }
//! ```
//!
//! Each case gets a fresh, empty store from `make` and panics with a message naming the
//! guarantee that broke (`Sequencing: …`, `Fencing: …`); `run_all` runs every case and then
//! fails listing all the broken ones. Run it on a multi-threaded runtime:
//! the concurrency cases spawn tasks that must really race. [`cases`] lists the cases by name,
//! for a store that wants one test per case; each is also a `pub async fn` here.
//!
//! Where the trait leaves a corner open (a read or a turn call on a chat that does not
//! exist), the suite accepts every reasonable answer but checks that nothing is left behind.

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use natter_core::store::Store;

mod attachments;
mod fixtures;
mod handoff;
mod log;
mod migrations;
mod reactions;
mod summary;
mod turns;

pub use attachments::attachments_are_kept_with_their_chat;
pub use handoff::{handoff_state_counts_concurrent_changes, handoff_state_follows_the_log};
pub use migrations::assert_embedded_migrations_match;
pub use reactions::reactions_and_csat_follow_the_log;

pub use log::{
    epoch_is_fixed_and_new_after_recreate, find_message_finds_what_created_a_message,
    idempotency_stores_a_message_once, idempotency_under_concurrent_duplicates, orgs_are_isolated,
    reads_page_by_seq_and_limit, sequencing_is_gapless_under_concurrency,
    visibility_has_no_holes_for_readers,
};
pub use summary::{
    delete_is_real, list_chats_orders_scopes_and_pages, read_receipts_are_stored,
    summaries_follow_the_log, superseded_messages_leave_history,
};
pub use turns::{
    chats_with_open_turns_finds_every_queue, fencing_is_atomic_with_the_append,
    fencing_refuses_stale_owners, start_turn_and_queued_guard, turn_queue_follows_the_log,
    turn_queue_request_turn_and_order,
};

/// One case of the suite.
#[derive(Clone, Copy)]
pub struct Case {
    /// The case's function name.
    pub name: &'static str,
    pub run: fn(Arc<dyn Store>) -> BoxFuture<'static, ()>,
}

macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        vec![$(Case {
            name: stringify!($case),
            run: |store| Box::pin($case(store)),
        }),*]
    };
}

/// Every case, in the order [`run_all`] runs them.
pub fn cases() -> Vec<Case> {
    cases![
        sequencing_is_gapless_under_concurrency,
        idempotency_stores_a_message_once,
        idempotency_under_concurrent_duplicates,
        visibility_has_no_holes_for_readers,
        epoch_is_fixed_and_new_after_recreate,
        orgs_are_isolated,
        reads_page_by_seq_and_limit,
        find_message_finds_what_created_a_message,
        summaries_follow_the_log,
        list_chats_orders_scopes_and_pages,
        superseded_messages_leave_history,
        read_receipts_are_stored,
        delete_is_real,
        turn_queue_follows_the_log,
        turn_queue_request_turn_and_order,
        fencing_refuses_stale_owners,
        fencing_is_atomic_with_the_append,
        start_turn_and_queued_guard,
        chats_with_open_turns_finds_every_queue,
        handoff_state_follows_the_log,
        handoff_state_counts_concurrent_changes,
        reactions_and_csat_follow_the_log,
        attachments_are_kept_with_their_chat,
    ]
}

/// Runs every case, each on a fresh, empty store from `make` and in its own task, and panics
/// at the end naming every case that failed (each failure's message, naming the guarantee,
/// is printed when it happens). Must run inside a Tokio runtime, best a multi-threaded one.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    let mut failed = Vec::new();
    let all = cases();
    for case in &all {
        eprintln!("store conformance: {}", case.name);
        let store = make().await;
        if let Err(e) = tokio::spawn((case.run)(store)).await {
            let why = match e.try_into_panic() {
                Ok(p) => p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "panicked".into()),
                Err(e) => e.to_string(),
            };
            failed.push(format!("{}: {why}", case.name));
        }
    }
    assert!(
        failed.is_empty(),
        "the store broke {} of {} conformance cases:\n{}",
        failed.len(),
        all.len(),
        failed.join("\n")
    );
}
