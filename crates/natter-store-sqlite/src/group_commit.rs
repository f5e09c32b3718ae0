//! Group commit for appends: the appends waiting for the writer when it frees up share one
//! transaction and one commit (one WAL write and, at `synchronous = FULL`, one fsync).
//!
//! Why: every chat's messages and replies go through the one writer connection, and each
//! append was its own `BEGIN IMMEDIATE … COMMIT`: under many busy chats, appends queue for the
//! writer anyway, and each paid its own commit. Now a task owns the queue: it takes the first
//! append and every one already waiting behind it (up to [`MAX_BATCH`]), runs each in a
//! savepoint of one transaction, commits once, and answers each. An append that arrives
//! while the writer is idle is written at once, alone, as before; nothing waits for a batch
//! to fill.
//!
//! Each append keeps its own outcome: one refused (fence, queue, no such chat) or failed is
//! rolled back to its savepoint and the others go on. If the commit fails, none of them is
//! durable and every one of them gets the error.

use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use natter_core::chat::ChatKey;
use natter_core::event::EventBody;
use natter_core::store::{Appended, Guard, StoreError};
use sqlx::{Connection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use crate::append_in;

/// Most appends committed together. A bound so that one commit (and the callers waiting for
/// it) stays short however deep the queue.
pub const MAX_BATCH: usize = 64;

/// Appends waiting for the writer task before callers wait to queue theirs.
const QUEUE: usize = 1024;

/// What an append writes.
pub(crate) struct Append {
    pub chat: ChatKey,
    pub body: EventBody,
    pub created_at: i64,
    pub guard: Guard,
}

/// One append waiting for its commit.
struct Job {
    append: Append,
    done: oneshot::Sender<Result<Appended, StoreError>>,
}

/// The handle appends go through; the writer task ends when it is dropped.
#[derive(Clone)]
pub struct GroupCommit {
    jobs: mpsc::Sender<Job>,
}

impl GroupCommit {
    /// Starts the writer task on `writer` (the store's one write connection).
    pub fn start(writer: SqlitePool) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE);
        tokio::spawn(run(writer, queue));
        Self { jobs }
    }

    /// Appends `body` to `chat` under `guard`, committed with whatever else is waiting.
    pub async fn append(
        &self,
        chat: &ChatKey,
        body: EventBody,
        created_at: i64,
        guard: Guard,
    ) -> Result<Appended, StoreError> {
        let (done, outcome) = oneshot::channel();
        let append = Append {
            chat: chat.clone(),
            body,
            created_at,
            guard,
        };
        self.jobs
            .send(Job { append, done })
            .await
            .map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Backend("the SQLite store's writer task has stopped".into())
}

async fn run(writer: SqlitePool, mut queue: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let (appends, dones): (Vec<_>, Vec<_>) = jobs.drain(..).map(|j| (j.append, j.done)).unzip();
        metrics::histogram!(crate::telemetry::APPENDS_PER_COMMIT).record(appends.len() as f64);
        // A panic is caught so that it fails this batch, not every later append: the task
        // is the store's only way to append. Unwinding drops the open transaction, which
        // rolls it back.
        let committed = AssertUnwindSafe(commit(&writer, appends))
            .catch_unwind()
            .await;
        let failed = |message: String| -> Vec<Result<Appended, StoreError>> {
            // Nothing of the batch is durable: each caller gets the error.
            dones
                .iter()
                .map(|_| Err(StoreError::Backend(message.clone())))
                .collect()
        };
        let outcomes = match committed {
            Ok(Ok(outcomes)) => outcomes,
            Ok(Err(e)) => failed(e.to_string()),
            Err(_) => {
                tracing::error!("an append batch panicked; its appends failed");
                failed("the append failed inside the store".into())
            }
        };
        for (done, outcome) in dones.into_iter().zip(outcomes) {
            // The caller may have gone; its append stands either way.
            let _ = done.send(outcome);
        }
    }
}

/// Writes `appends` in one transaction: one outcome per append, in order, or an error for
/// all of them when the transaction itself failed (then nothing was written).
pub(crate) async fn commit(
    writer: &SqlitePool,
    appends: Vec<Append>,
) -> Result<Vec<Result<Appended, StoreError>>, sqlx::Error> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    let alone = appends.len() == 1;
    let mut outcomes = Vec::with_capacity(appends.len());
    for a in appends {
        let outcome = if alone {
            // The transaction is the append's own: a refused one is rolled back whole.
            let outcome = append_in(&mut tx, &a.chat, a.body, a.created_at, &a.guard).await;
            if outcome.is_err() {
                tx.rollback().await?;
                return Ok(vec![outcome]);
            }
            outcome
        } else {
            // A savepoint each, so that one refused or failed append is undone alone.
            let mut savepoint = tx.begin().await?;
            let outcome = append_in(&mut savepoint, &a.chat, a.body, a.created_at, &a.guard).await;
            if outcome.is_ok() {
                savepoint.commit().await?;
            } else {
                savepoint.rollback().await?;
            }
            outcome
        };
        outcomes.push(outcome);
    }
    tx.commit().await?;
    Ok(outcomes)
}
