//! The SQLite [`Store`]: Natter's embedded default.
//!
//! - WAL mode, so readers never wait for the writer.
//! - One writer connection: SQLite allows one writer at a time anyway, and a single
//!   connection with `BEGIN IMMEDIATE` never meets `SQLITE_BUSY` from our own process.
//! - `synchronous = FULL` by default: an acked message survives power loss, not only a
//!   crash of the process. `NORMAL` (crash-safe, faster) is available for benchmarks.
//! - Appends are group-committed ([`group_commit`]): those waiting for the writer share one
//!   transaction and one commit, each in its own savepoint.
//! - The turn queue (table `open_turns`: turns asked for and not ended, with the fence of
//!   the owner that started them) is kept in the same transaction as the log, and each chat's
//!   turn fence is a column of its `chats` row. A guarded append ([`Guard`]) and
//!   [`Store::start_turn`] read the fence or the turn inside their `BEGIN IMMEDIATE`
//!   transaction, so the check and the write are one step even with several processes
//!   writing to the file.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use natter_core::attachments::{Attachment, Processing};
use natter_core::chat::{
    ChatInfo, ChatKey, ChatPage, ChatScope, ChatStatus, ChatSummary, NewChat, title_from_text,
};
use natter_core::event::{
    Csat, EventBody, HandoffState, Reaction, StoredEvent, apply_handoff, apply_reaction,
};
use natter_core::store::{Appended, Guard, OpenTurn, PutAttachment, Store, StoreError};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
// Dynamic SQL here only splices our own constant column lists and table names; every
// value is bound.
use sqlx::{AssertSqlSafe, Row, SqlStr, SqliteConnection};

mod attachments;
mod group_commit;
mod transfer;

/// The store's metrics (`docs/operations.md`).
pub mod telemetry {
    /// Appends written per commit by the group commit (1 when the writer was idle).
    pub const APPENDS_PER_COMMIT: &str = "natter_sqlite_appends_per_commit";

    /// Registers descriptions so `/metrics` explains itself.
    pub fn describe() {
        metrics::describe_histogram!(
            APPENDS_PER_COMMIT,
            "Appends the SQLite store wrote in one commit (group commit; 1 when it was idle)"
        );
    }

    /// The histogram's buckets: batches go up to the group commit's most, 64.
    pub const BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

    #[cfg(test)]
    #[test]
    fn the_last_bucket_is_the_largest_batch() {
        assert_eq!(
            BUCKETS.last(),
            Some(&(super::group_commit::MAX_BATCH as f64))
        );
    }
}

/// Durability of commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// fsync on every commit: survives power loss.
    #[default]
    Full,
    /// Survives a crash of the process, may lose the last commits on power loss.
    Normal,
}

pub struct SqliteStore {
    writer: SqlitePool,
    appends: group_commit::GroupCommit,
    readers: SqlitePool,
}

/// The schema's migrations, embedded in the binary. Listed by hand rather than with
/// `sqlx::migrate!`: that macro needs sqlx's `macros` feature, whose proc macro builds sqlx,
/// SQLite's C and ring a second time for the build host (issue 20). The test
/// `embedded_migrations_are_the_directorys` keeps this list equal to `migrations/` as sqlx's
/// own resolver reads it (version, description, checksum, transaction).
fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        embedded(
            1,
            "event log",
            include_str!("../migrations/0001_event_log.sql"),
        ),
        embedded(
            2,
            "chat summary",
            include_str!("../migrations/0002_chat_summary.sql"),
        ),
        embedded(
            3,
            "chat members only",
            include_str!("../migrations/0003_chat_members_only.sql"),
        ),
        embedded(
            4,
            "open turns",
            include_str!("../migrations/0004_open_turns.sql"),
        ),
        embedded(
            5,
            "turn queue",
            include_str!("../migrations/0005_turn_queue.sql"),
        ),
        embedded(6, "handoff", include_str!("../migrations/0006_handoff.sql")),
        embedded(
            7,
            "reactions csat",
            include_str!("../migrations/0007_reactions_csat.sql"),
        ),
        embedded(
            8,
            "attachments",
            include_str!("../migrations/0008_attachments.sql"),
        ),
    ])
}

/// One migration as `sqlx::migrate!` builds it from `NNNN_description_words.sql`.
fn embedded(version: i64, description: &'static str, sql: &'static str) -> Migration {
    Migration::new(
        version,
        Cow::Borrowed(description),
        MigrationType::Simple,
        SqlStr::from_static(sql),
        sql.starts_with("-- no-transaction"),
    )
}

/// SQLite integers are i64: larger values (a client's huge `after` or `offset`) are capped,
/// never wrapped to negative ones.
fn sql_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn backend(e: sqlx::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn row_to_event(row: &sqlx::sqlite::SqliteRow) -> Result<StoredEvent, StoreError> {
    let seq: i64 = row.try_get("seq").map_err(backend)?;
    let created_at: i64 = row.try_get("created_at").map_err(backend)?;
    let body: String = row.try_get("body").map_err(backend)?;
    let body: EventBody = serde_json::from_str(&body)
        .map_err(|e| StoreError::Backend(format!("unreadable event at seq {seq}: {e}")))?;
    Ok(StoredEvent {
        seq: seq as u64,
        created_at,
        body,
    })
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://path/to/file.db`) and
    /// runs the migrations. The file's directory is created too.
    pub async fn open(url: &str, durability: Durability) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Backend(format!("bad database url {url:?}: {e}")))?;
        if let Some(dir) = options.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Backend(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match durability {
                Durability::Full => SqliteSynchronous::Full,
                Durability::Normal => SqliteSynchronous::Normal,
            })
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        // sqlx pings a pooled connection before handing it out (`test_before_acquire`), a
        // round trip to the connection's worker thread on every read and every commit. A
        // SQLite file cannot hang up the way a server connection can, so it is off: under the
        // heavy fan-out bench that was 10 % of the process's futex calls (bench/README.md).
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(backend)?;
        migrator()
            .run(&writer)
            .await
            .map_err(|e| StoreError::Backend(format!("migrations failed: {e}")))?;
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_with(options.read_only(true))
            .await
            .map_err(backend)?;
        let appends = group_commit::GroupCommit::start(writer.clone());
        Ok(Self {
            writer,
            appends,
            readers,
        })
    }

    /// Runs `sql` (binding org, chat id, `seq` bound, limit) and reads its rows as events.
    async fn events_where(
        &self,
        sql: &'static str,
        chat: &ChatKey,
        seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(sql)
            .bind(&*chat.org)
            .bind(&*chat.chat_id)
            .bind(sql_int(seq))
            .bind(sql_int(limit as u64))
            .fetch_all(&self.readers)
            .await
            .map_err(backend)?;
        rows.iter().map(row_to_event).collect()
    }

    async fn find_chat(
        conn: &mut SqliteConnection,
        chat: &ChatKey,
    ) -> Result<Option<ChatInfo>, StoreError> {
        let row = sqlx::query(
            "SELECT epoch, head_seq, created_at FROM chats WHERE org = ? AND chat_id = ?",
        )
        .bind(&*chat.org)
        .bind(&*chat.chat_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend)?;
        row.map(|r| {
            Ok(ChatInfo {
                epoch: r.try_get("epoch").map_err(backend)?,
                head_seq: r.try_get::<i64, _>("head_seq").map_err(backend)? as u64,
                created_at: r.try_get("created_at").map_err(backend)?,
            })
        })
        .transpose()
    }
}

async fn insert_event(
    conn: &mut SqliteConnection,
    chat: &ChatKey,
    seq: u64,
    body: &EventBody,
    created_at: i64,
) -> Result<(), StoreError> {
    let json = serde_json::to_string(body).map_err(|e| StoreError::Backend(e.to_string()))?;
    sqlx::query(
        "INSERT INTO events (org, chat_id, seq, kind, is_message, message_id, body, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&*chat.org)
    .bind(&*chat.chat_id)
    .bind(seq as i64)
    .bind(body.kind())
    .bind(body.is_message())
    .bind(body.message_id())
    .bind(json)
    .bind(created_at)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    apply_to_summary(conn, chat, body, created_at).await?;
    track_open_turns(conn, chat, seq, body).await?;
    if let EventBody::ReadReceipt {
        user_id,
        message_ids,
        read_at,
        ..
    } = body
    {
        for id in message_ids {
            sqlx::query(
                "INSERT INTO read_receipts (org, chat_id, user_id, message_id, read_at) VALUES (?, ?, ?, ?, ?)
                 ON CONFLICT (org, chat_id, user_id, message_id) DO UPDATE SET read_at = excluded.read_at",
            )
            .bind(&*chat.org)
            .bind(&*chat.chat_id)
            .bind(user_id)
            .bind(id)
            .bind(read_at)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
        }
    }
    Ok(())
}

/// One append inside the caller's transaction ([`group_commit`] commits it): the
/// idempotency check, the guard, the chat's next `seq`, and the event with everything kept in
/// step with it. On an error the caller must roll back what it wrote.
async fn append_in(
    conn: &mut SqliteConnection,
    chat: &ChatKey,
    body: EventBody,
    created_at: i64,
    guard: &Guard,
) -> Result<Appended, StoreError> {
    if let Some(key) = body.idempotency_key() {
        let existing = sqlx::query(
            "SELECT seq, created_at, body FROM events
                 WHERE org = ? AND chat_id = ? AND message_id = ? AND kind = ?",
        )
        .bind(&*chat.org)
        .bind(&*chat.chat_id)
        .bind(key)
        .bind(body.kind())
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend)?;
        if let Some(row) = existing {
            return Ok(Appended::Duplicate(row_to_event(&row)?));
        }
    }
    // A refused write returns here; the caller rolls its transaction back.
    check_guard(conn, chat, guard).await?;
    let head: Option<i64> = sqlx::query_scalar(
        "UPDATE chats SET head_seq = head_seq + 1 WHERE org = ? AND chat_id = ? RETURNING head_seq",
    )
    .bind(&*chat.org)
    .bind(&*chat.chat_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(backend)?;
    let Some(seq) = head else {
        return Err(StoreError::NoSuchChat(chat.to_string()));
    };
    let seq = seq as u64;
    let body = apply_reaction_event(conn, chat, seq, body, created_at).await?;
    let body = fill_handoff(conn, chat, body).await?;
    insert_event(conn, chat, seq, &body, created_at).await?;
    Ok(Appended::New(StoredEvent {
        seq,
        created_at,
        body,
    }))
}

/// Opens a turn when an event asks for one and closes it when an event ends it (see
/// [`Store`]'s "open turns").
async fn track_open_turns(
    conn: &mut SqliteConnection,
    chat: &ChatKey,
    seq: u64,
    body: &EventBody,
) -> Result<(), StoreError> {
    let (opened, trace_id, context_seq) = match body {
        EventBody::UserMessage {
            request_id: Some(request_id),
            trace_id,
            ..
        } => (request_id, trace_id.as_deref(), seq),
        EventBody::MessageSuperseded {
            request_id,
            context_seq,
            ..
        } => (request_id, None, context_seq.unwrap_or(seq)),
        EventBody::AssistantMessage { request_id, .. }
        | EventBody::TurnFailed { request_id, .. } => {
            sqlx::query("DELETE FROM open_turns WHERE org = ? AND chat_id = ? AND request_id = ?")
                .bind(&*chat.org)
                .bind(&*chat.chat_id)
                .bind(request_id)
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
            return Ok(());
        }
        _ => return Ok(()),
    };
    open_turn(conn, chat, opened, trace_id, seq, context_seq).await
}

/// Queues turn `request_id`, opened at `opened_seq`, unless the chat has it open already (a
/// requestId keeps its first opening). `asked` orders turns opened at the same `seq`.
async fn open_turn(
    conn: &mut SqliteConnection,
    chat: &ChatKey,
    request_id: &str,
    trace_id: Option<&str>,
    opened_seq: u64,
    context_seq: u64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT OR IGNORE INTO open_turns
             (org, chat_id, request_id, trace_id, opened_seq, context_seq, started_fence, asked)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL,
             (SELECT COALESCE(MAX(asked), 0) + 1 FROM open_turns WHERE org = ?1 AND chat_id = ?2))",
    )
    .bind(&*chat.org)
    .bind(&*chat.chat_id)
    .bind(request_id)
    .bind(trace_id)
    .bind(sql_int(opened_seq))
    .bind(sql_int(context_seq))
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(())
}

/// The chat's turn fence, read in the caller's transaction; `NoSuchChat` if it is absent.
async fn turn_fence(conn: &mut SqliteConnection, chat: &ChatKey) -> Result<u64, StoreError> {
    let fence: Option<i64> =
        sqlx::query_scalar("SELECT turn_fence FROM chats WHERE org = ? AND chat_id = ?")
            .bind(&*chat.org)
            .bind(&*chat.chat_id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(backend)?;
    fence
        .map(|f| f as u64)
        .ok_or_else(|| StoreError::NoSuchChat(chat.to_string()))
}

/// Refuses, inside the caller's transaction, a write by an owner whose fence `held` is not
/// the chat's.
async fn check_fence(
    conn: &mut SqliteConnection,
    chat: &ChatKey,
    held: u64,
) -> Result<(), StoreError> {
    let current = turn_fence(conn, chat).await?;
    if current == held {
        Ok(())
    } else {
        Err(StoreError::Fenced {
            chat: chat.to_string(),
            held,
            current,
        })
    }
}

/// Refuses, inside the caller's transaction, what `guard` does not allow.
async fn check_guard(
    conn: &mut SqliteConnection,
    chat: &ChatKey,
    guard: &Guard,
) -> Result<(), StoreError> {
    match guard {
        Guard::None => Ok(()),
        Guard::Fence(held) => check_fence(conn, chat, *held).await,
        Guard::Queued(request_id) => {
            // The chat must exist (NoSuchChat, as for any append) before the turn is asked.
            turn_fence(conn, chat).await?;
            let started: Option<Option<i64>> = sqlx::query_scalar(
                "SELECT started_fence FROM open_turns
                 WHERE org = ? AND chat_id = ? AND request_id = ?",
            )
            .bind(&*chat.org)
            .bind(&*chat.chat_id)
            .bind(request_id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(backend)?;
            match started {
                Some(None) => Ok(()),
                _ => Err(StoreError::NotQueued {
                    chat: chat.to_string(),
                    request_id: request_id.clone(),
                }),
            }
        }
    }
}

/// Keeps a message's reactions in step with a reaction event and writes the list after it
/// into the event (see [`Store`]'s "Reactions and CSAT kept with the log").
async fn apply_reaction_event(
    conn: &mut SqliteConnection,
    chat: &ChatKey,
    seq: u64,
    mut body: EventBody,
    created_at: i64,
) -> Result<EventBody, StoreError> {
    let (message_id, user_id, emoji, add) = match &body {
        EventBody::ReactionAdded {
            message_id,
            user_id,
            emoji,
            ..
        } => (message_id.clone(), user_id.clone(), emoji.clone(), true),
        EventBody::ReactionRemoved {
            message_id,
            user_id,
            emoji,
            ..
        } => (message_id.clone(), user_id.clone(), emoji.clone(), false),
        _ => return Ok(body),
    };
    let sql = if add {
        "INSERT OR IGNORE INTO reactions (org, chat_id, message_id, user_id, emoji, created_at, added_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
    } else {
        "DELETE FROM reactions
         WHERE org = ?1 AND chat_id = ?2 AND message_id = ?3 AND user_id = ?4 AND emoji = ?5"
    };
    let mut q = sqlx::query(sql)
        .bind(&*chat.org)
        .bind(&*chat.chat_id)
        .bind(&message_id)
        .bind(&user_id)
        .bind(&emoji);
    if add {
        q = q.bind(created_at).bind(sql_int(seq));
    }
    q.execute(&mut *conn).await.map_err(backend)?;
    let list = reactions_of(&mut *conn, chat, std::slice::from_ref(&message_id))
        .await?
        .into_iter()
        .next()
        .map(|(_, l)| l)
        .unwrap_or_default();
    // The table is the truth; `apply_reaction` is how every store agrees on it.
    debug_assert!({
        let mut check = list.clone();
        apply_reaction(&mut check, &body, created_at);
        check == list
    });
    if let EventBody::ReactionAdded { reactions, .. }
    | EventBody::ReactionRemoved { reactions, .. } = &mut body
    {
        *reactions = list;
    }
    Ok(body)
}

/// Writes into a handoff event the chat's handoff state after it, computed from the chat
/// row inside the append's transaction (`BEGIN IMMEDIATE`, so no other writer is between
/// the read and the write): two agents joining at once from stale reads both end up in it.
async fn fill_handoff(
    conn: &mut SqliteConnection,
    chat: &ChatKey,
    mut body: EventBody,
) -> Result<EventBody, StoreError> {
    if body.handoff().is_none() {
        return Ok(body);
    }
    let row = sqlx::query(
        "SELECT waiting_since, human_agents FROM chats WHERE org = ?1 AND chat_id = ?2",
    )
    .bind(&*chat.org)
    .bind(&*chat.chat_id)
    .fetch_one(&mut *conn)
    .await
    .map_err(backend)?;
    let before = HandoffState {
        waiting_since: row.try_get("waiting_since").map_err(backend)?,
        agents: row
            .try_get::<Option<String>, _>("human_agents")
            .map_err(backend)?
            .and_then(|m| serde_json::from_str(&m).ok())
            .unwrap_or_default(),
    };
    apply_handoff(&before, &mut body);
    Ok(body)
}

/// The reactions of `message_ids` that have any, each list in the order first added.
async fn reactions_of(
    conn: &mut SqliteConnection,
    chat: &ChatKey,
    message_ids: &[String],
) -> Result<Vec<(String, Vec<Reaction>)>, StoreError> {
    let mut out: Vec<(String, Vec<Reaction>)> = Vec::new();
    for id in message_ids {
        let rows = sqlx::query(
            "SELECT user_id, emoji, created_at FROM reactions
             WHERE org = ? AND chat_id = ? AND message_id = ? ORDER BY added_seq, user_id, emoji",
        )
        .bind(&*chat.org)
        .bind(&*chat.chat_id)
        .bind(id)
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
        if rows.is_empty() {
            continue;
        }
        let list = rows
            .iter()
            .map(|r| {
                Ok(Reaction {
                    user_id: r.try_get("user_id").map_err(backend)?,
                    emoji: r.try_get("emoji").map_err(backend)?,
                    created_at: r.try_get("created_at").map_err(backend)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.push((id.clone(), list));
    }
    Ok(out)
}

/// Keeps the `chats` row (what lists show) and the member list in step with the log.
async fn apply_to_summary(
    conn: &mut SqliteConnection,
    chat: &ChatKey,
    body: &EventBody,
    created_at: i64,
) -> Result<(), StoreError> {
    let run = |sql: &'static str| sqlx::query(sql).bind(&*chat.org).bind(&*chat.chat_id);
    run("UPDATE chats SET updated_at = MAX(updated_at, ?3) WHERE org = ?1 AND chat_id = ?2")
        .bind(created_at)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    match body {
        EventBody::UserMessage { user_id, text, .. } => {
            run("UPDATE chats SET title = ?3 WHERE org = ?1 AND chat_id = ?2 AND title IS NULL")
                .bind(title_from_text(text))
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
            run("INSERT OR IGNORE INTO chat_members (org, chat_id, user_id) VALUES (?1, ?2, ?3)")
                .bind(user_id)
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
        }
        EventBody::ChatUpdated {
            title,
            pinned,
            members,
            ..
        } => {
            run(
                "UPDATE chats SET title = COALESCE(?3, title), pinned = COALESCE(?4, pinned)
                 WHERE org = ?1 AND chat_id = ?2",
            )
            .bind(title)
            .bind(pinned)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
            if let Some(members) = members {
                run("UPDATE chats SET members = ?3 WHERE org = ?1 AND chat_id = ?2")
                    .bind(members_column(Some(members)))
                    .execute(&mut *conn)
                    .await
                    .map_err(backend)?;
            }
        }
        EventBody::CsatSubmitted {
            user_id,
            rating,
            comment,
            ..
        } => {
            run(
                "UPDATE chats SET csat_rating = ?3, csat_comment = ?4, csat_user = ?5, csat_at = ?6
                 WHERE org = ?1 AND chat_id = ?2",
            )
            .bind(i64::from(*rating))
            .bind(comment)
            .bind(user_id)
            .bind(created_at)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
        }
        EventBody::HumanAgentRequested { handoff, .. }
        | EventBody::HumanAgentJoined { handoff, .. }
        | EventBody::HumanAgentLeft { handoff, .. } => {
            run("UPDATE chats SET waiting_since = ?3, human_agents = ?4 WHERE org = ?1 AND chat_id = ?2")
                .bind(handoff.waiting_since)
                .bind(members_column(Some(&handoff.agents)))
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
        }
        EventBody::ChatEnded { .. } => {
            run("UPDATE chats SET status = ?3 WHERE org = ?1 AND chat_id = ?2")
                .bind(ChatStatus::Closed.as_str())
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
        }
        EventBody::MessageSuperseded { message_id, .. } => {
            // The reply and its turn's tool events leave history together.
            run("UPDATE events SET superseded = 1
                 WHERE org = ?1 AND chat_id = ?2
                   AND ((message_id = ?3 AND kind IN ('assistant_message', 'turn_failed'))
                     OR (kind IN ('tool_call', 'tool_result')
                         AND json_extract(body, '$.messageId') = ?3))")
            .bind(message_id)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
        }
        _ => {}
    }
    Ok(())
}

const SUMMARY_COLUMNS: &str = "chat_id, epoch, head_seq, created_at, title, pinned, status, \
                               created_by, metadata, updated_at, members, \
                               csat_rating, csat_comment, csat_user, csat_at, \
                               waiting_since, human_agents";

/// The `members` column: a JSON array, or NULL for an org-wide chat (also for an empty list).
fn members_column(members: Option<&Vec<String>>) -> Option<String> {
    members
        .filter(|m| !m.is_empty())
        .and_then(|m| serde_json::to_string(m).ok())
}

fn row_to_summary(org: &str, r: &sqlx::sqlite::SqliteRow) -> Result<ChatSummary, StoreError> {
    let chat_id: String = r.try_get("chat_id").map_err(backend)?;
    let metadata: Option<String> = r.try_get("metadata").map_err(backend)?;
    Ok(ChatSummary {
        key: ChatKey::new(org, chat_id),
        title: r.try_get("title").map_err(backend)?,
        pinned: r.try_get::<i64, _>("pinned").map_err(backend)? != 0,
        status: ChatStatus::parse(&r.try_get::<String, _>("status").map_err(backend)?),
        created_by: r.try_get("created_by").map_err(backend)?,
        metadata: metadata.and_then(|m| serde_json::from_str(&m).ok()),
        created_at: r.try_get("created_at").map_err(backend)?,
        updated_at: r.try_get("updated_at").map_err(backend)?,
        head_seq: r.try_get::<i64, _>("head_seq").map_err(backend)? as u64,
        epoch: r.try_get("epoch").map_err(backend)?,
        members: r
            .try_get::<Option<String>, _>("members")
            .map_err(backend)?
            .and_then(|m| serde_json::from_str(&m).ok()),
        csat: csat_from_row(r)?,
        waiting_since: r.try_get("waiting_since").map_err(backend)?,
        human_agents: r
            .try_get::<Option<String>, _>("human_agents")
            .map_err(backend)?
            .and_then(|m| serde_json::from_str(&m).ok())
            .unwrap_or_default(),
    })
}

/// The summary's latest CSAT answer, from the `csat_*` columns.
fn csat_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Option<Csat>, StoreError> {
    let rating: Option<i64> = r.try_get("csat_rating").map_err(backend)?;
    let Some(rating) = rating else {
        return Ok(None);
    };
    Ok(Some(Csat {
        user_id: r
            .try_get::<Option<String>, _>("csat_user")
            .map_err(backend)?
            .unwrap_or_default(),
        rating: u8::try_from(rating).unwrap_or(0),
        comment: r.try_get("csat_comment").map_err(backend)?,
        submitted_at: r
            .try_get::<Option<i64>, _>("csat_at")
            .map_err(backend)?
            .unwrap_or(0),
    }))
}

#[async_trait]
impl Store for SqliteStore {
    async fn open_chat(
        &self,
        chat: &ChatKey,
        create: Option<&NewChat>,
    ) -> Result<Option<ChatInfo>, StoreError> {
        let mut conn = self.readers.acquire().await.map_err(backend)?;
        if let Some(info) = Self::find_chat(&mut conn, chat).await? {
            return Ok(Some(info));
        }
        drop(conn);
        let Some(new) = create else {
            return Ok(None);
        };
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        // Another request may have created it since we looked.
        if let Some(info) = Self::find_chat(&mut tx, chat).await? {
            return Ok(Some(info));
        }
        let now = natter_protocol::time::now_millis();
        let info = ChatInfo {
            epoch: uuid::Uuid::new_v4().simple().to_string(),
            head_seq: 1,
            created_at: now,
        };
        let metadata = new.metadata.as_ref().map(|m| m.to_string());
        sqlx::query(
            "INSERT INTO chats (org, chat_id, epoch, head_seq, created_at, updated_at, created_by, metadata, members)
             VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?)",
        )
        .bind(&*chat.org)
        .bind(&*chat.chat_id)
        .bind(&info.epoch)
        .bind(now)
        .bind(now)
        .bind(&new.created_by)
        .bind(metadata)
        .bind(members_column(new.members.as_ref()))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if let Some(user) = &new.created_by {
            sqlx::query("INSERT INTO chat_members (org, chat_id, user_id) VALUES (?, ?, ?)")
                .bind(&*chat.org)
                .bind(&*chat.chat_id)
                .bind(user)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        let body = EventBody::ChatCreated {
            created_by: new.created_by.clone(),
            metadata: new.metadata.clone(),
            members: new.members.clone().filter(|m| !m.is_empty()),
        };
        insert_event(&mut tx, chat, 1, &body, now).await?;
        tx.commit().await.map_err(backend)?;
        Ok(Some(info))
    }

    // A span per append (a child of the request's or turn's span, exported with
    // --otlp-endpoint).
    #[tracing::instrument(name = "store.append", skip_all, fields(chatId = %chat.chat_id))]
    async fn append_guarded(
        &self,
        chat: &ChatKey,
        body: EventBody,
        created_at: i64,
        guard: Guard,
    ) -> Result<Appended, StoreError> {
        self.appends.append(chat, body, created_at, guard).await
    }

    async fn events_after(
        &self,
        chat: &ChatKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.events_where(
            "SELECT seq, created_at, body FROM events
             WHERE org = ? AND chat_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            chat,
            after,
            limit,
        )
        .await
    }

    async fn recent_messages(
        &self,
        chat: &ChatKey,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut events = self
            .events_where(
                "SELECT seq, created_at, body FROM events
                 WHERE org = ? AND chat_id = ? AND is_message = 1 AND superseded = 0 AND seq <= ?
                 ORDER BY seq DESC LIMIT ?",
                chat,
                up_to,
                limit,
            )
            .await?;
        events.reverse();
        Ok(events)
    }

    async fn messages_after(
        &self,
        chat: &ChatKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.events_where(
            "SELECT seq, created_at, body FROM events
             WHERE org = ? AND chat_id = ? AND superseded = 0 AND seq > ?
               AND (is_message = 1 OR kind IN ('tool_call', 'tool_result'))
             ORDER BY seq LIMIT ?",
            chat,
            after,
            limit,
        )
        .await
    }

    async fn find_message(
        &self,
        chat: &ChatKey,
        message_id: &str,
    ) -> Result<Option<StoredEvent>, StoreError> {
        let row = sqlx::query(
            "SELECT seq, created_at, body FROM events
             WHERE org = ? AND chat_id = ? AND message_id = ?
               AND kind IN ('user_message', 'assistant_message', 'turn_failed')
             ORDER BY seq LIMIT 1",
        )
        .bind(&*chat.org)
        .bind(&*chat.chat_id)
        .bind(message_id)
        .fetch_optional(&self.readers)
        .await
        .map_err(backend)?;
        row.as_ref().map(row_to_event).transpose()
    }

    async fn chat_summary(&self, chat: &ChatKey) -> Result<Option<ChatSummary>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {SUMMARY_COLUMNS} FROM chats WHERE org = ? AND chat_id = ?"
        )))
        .bind(&*chat.org)
        .bind(&*chat.chat_id)
        .fetch_optional(&self.readers)
        .await
        .map_err(backend)?;
        row.map(|r| row_to_summary(&chat.org, &r)).transpose()
    }

    async fn list_chats(
        &self,
        org: &str,
        scope: &ChatScope,
        limit: usize,
        offset: usize,
    ) -> Result<ChatPage, StoreError> {
        let member = match scope {
            ChatScope::Org => None,
            ChatScope::Member(user) => Some(&**user),
        };
        let filter = " AND (?2 IS NULL OR chat_id IN \
                      (SELECT chat_id FROM chat_members WHERE org = ?1 AND user_id = ?2))";
        let mut conn = self.readers.acquire().await.map_err(backend)?;
        let total: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM chats WHERE org = ?1{filter}"
        )))
        .bind(org)
        .bind(member)
        .fetch_one(&mut *conn)
        .await
        .map_err(backend)?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {SUMMARY_COLUMNS} FROM chats WHERE org = ?1{filter}
             ORDER BY pinned DESC, updated_at DESC, chat_id LIMIT ?3 OFFSET ?4"
        )))
        .bind(org)
        .bind(member)
        .bind(sql_int(limit as u64))
        .bind(sql_int(offset as u64))
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
        Ok(ChatPage {
            chats: rows
                .iter()
                .map(|r| row_to_summary(org, r))
                .collect::<Result<_, _>>()?,
            total: total as u64,
        })
    }

    async fn list_waiting_chats(
        &self,
        org: &str,
        scope: &ChatScope,
        limit: usize,
        offset: usize,
    ) -> Result<ChatPage, StoreError> {
        let member = match scope {
            ChatScope::Org => None,
            ChatScope::Member(user) => Some(&**user),
        };
        let filter = " AND waiting_since IS NOT NULL AND (?2 IS NULL OR chat_id IN \
                      (SELECT chat_id FROM chat_members WHERE org = ?1 AND user_id = ?2))";
        let mut conn = self.readers.acquire().await.map_err(backend)?;
        let total: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM chats WHERE org = ?1{filter}"
        )))
        .bind(org)
        .bind(member)
        .fetch_one(&mut *conn)
        .await
        .map_err(backend)?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {SUMMARY_COLUMNS} FROM chats WHERE org = ?1{filter}
             ORDER BY waiting_since, chat_id LIMIT ?3 OFFSET ?4"
        )))
        .bind(org)
        .bind(member)
        .bind(sql_int(limit as u64))
        .bind(sql_int(offset as u64))
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
        Ok(ChatPage {
            chats: rows
                .iter()
                .map(|r| row_to_summary(org, r))
                .collect::<Result<_, _>>()?,
            total: total as u64,
        })
    }

    async fn delete_chat(&self, chat: &ChatKey) -> Result<bool, StoreError> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        for table in [
            "events",
            "read_receipts",
            "chat_members",
            "open_turns",
            "reactions",
        ] {
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE org = ? AND chat_id = ?"
            )))
            .bind(&*chat.org)
            .bind(&*chat.chat_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        attachments::delete_chat_attachments(&mut tx, chat).await?;
        let deleted = sqlx::query("DELETE FROM chats WHERE org = ? AND chat_id = ?")
            .bind(&*chat.org)
            .bind(&*chat.chat_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        tx.commit().await.map_err(backend)?;
        Ok(deleted > 0)
    }

    async fn open_turns(&self, chat: &ChatKey) -> Result<Vec<OpenTurn>, StoreError> {
        let rows = sqlx::query(
            "SELECT request_id, trace_id, opened_seq, context_seq, started_fence FROM open_turns
             WHERE org = ? AND chat_id = ? ORDER BY opened_seq, asked",
        )
        .bind(&*chat.org)
        .bind(&*chat.chat_id)
        .fetch_all(&self.readers)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(OpenTurn {
                    chat: chat.clone(),
                    request_id: r.try_get("request_id").map_err(backend)?,
                    trace_id: r.try_get("trace_id").map_err(backend)?,
                    opened_seq: r.try_get::<i64, _>("opened_seq").map_err(backend)? as u64,
                    context_seq: r.try_get::<i64, _>("context_seq").map_err(backend)? as u64,
                    started_fence: r
                        .try_get::<Option<i64>, _>("started_fence")
                        .map_err(backend)?
                        .map(|f| f as u64),
                })
            })
            .collect()
    }

    async fn chats_with_open_turns(&self, limit: usize) -> Result<Vec<ChatKey>, StoreError> {
        let rows = sqlx::query(
            // In random order: a sweep that takes `limit` of more chats than that must not
            // keep seeing the same ones.
            "SELECT org, chat_id FROM (SELECT DISTINCT org, chat_id FROM open_turns)
             ORDER BY random() LIMIT ?",
        )
        .bind(sql_int(limit as u64))
        .fetch_all(&self.readers)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                let org: String = r.try_get("org").map_err(backend)?;
                let chat_id: String = r.try_get("chat_id").map_err(backend)?;
                Ok(ChatKey::new(org, chat_id))
            })
            .collect()
    }

    async fn request_turn(
        &self,
        chat: &ChatKey,
        request_id: &str,
        trace_id: Option<&str>,
        context_seq: u64,
    ) -> Result<(), StoreError> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        let Some(info) = Self::find_chat(&mut tx, chat).await? else {
            return Err(StoreError::NoSuchChat(chat.to_string()));
        };
        open_turn(
            &mut tx,
            chat,
            request_id,
            trace_id,
            info.head_seq,
            context_seq,
        )
        .await?;
        tx.commit().await.map_err(backend)?;
        Ok(())
    }

    async fn claim_turns(&self, chat: &ChatKey) -> Result<u64, StoreError> {
        // One statement: its own write transaction, serialized with every other writer.
        let fence: Option<i64> = sqlx::query_scalar(
            "UPDATE chats SET turn_fence = turn_fence + 1 WHERE org = ? AND chat_id = ?
             RETURNING turn_fence",
        )
        .bind(&*chat.org)
        .bind(&*chat.chat_id)
        .fetch_optional(&self.writer)
        .await
        .map_err(backend)?;
        fence
            .map(|f| f as u64)
            .ok_or_else(|| StoreError::NoSuchChat(chat.to_string()))
    }

    async fn start_turn(
        &self,
        chat: &ChatKey,
        request_id: &str,
        fence: u64,
    ) -> Result<bool, StoreError> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        check_fence(&mut tx, chat, fence).await?;
        let started = sqlx::query(
            "UPDATE open_turns SET started_fence = ?
             WHERE org = ? AND chat_id = ? AND request_id = ? AND started_fence IS NULL",
        )
        .bind(sql_int(fence))
        .bind(&*chat.org)
        .bind(&*chat.chat_id)
        .bind(request_id)
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected();
        tx.commit().await.map_err(backend)?;
        Ok(started > 0)
    }

    async fn reactions(
        &self,
        chat: &ChatKey,
        message_ids: &[String],
    ) -> Result<Vec<(String, Vec<Reaction>)>, StoreError> {
        let mut conn = self.readers.acquire().await.map_err(backend)?;
        reactions_of(&mut conn, chat, message_ids).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.readers)
            .await
            .map_err(backend)?;
        Ok(())
    }
    async fn put_attachment(
        &self,
        attachment: &Attachment,
        bytes: &[u8],
        quota: Option<u64>,
    ) -> Result<PutAttachment, StoreError> {
        self.put_attachment_impl(attachment, bytes, quota).await
    }

    async fn attachment(&self, org: &str, id: &str) -> Result<Option<Attachment>, StoreError> {
        self.attachment_impl(org, id).await
    }

    async fn attachment_bytes(&self, org: &str, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.attachment_bytes_impl(org, id).await
    }

    async fn attachment_text(&self, org: &str, id: &str) -> Result<Option<String>, StoreError> {
        self.attachment_text_impl(org, id).await
    }

    async fn set_attachment_processing(
        &self,
        org: &str,
        id: &str,
        processing: &Processing,
        text: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.set_attachment_processing_impl(org, id, processing, text)
            .await
    }

    async fn attachments_processing(&self, limit: usize) -> Result<Vec<Attachment>, StoreError> {
        self.attachments_processing_impl(limit).await
    }

    async fn mark_attachments_referenced(
        &self,
        chat: &ChatKey,
        ids: &[String],
    ) -> Result<(), StoreError> {
        self.mark_attachments_referenced_impl(chat, ids).await
    }

    async fn delete_orphan_attachments(
        &self,
        created_before: i64,
        limit: usize,
    ) -> Result<u64, StoreError> {
        self.delete_orphan_attachments_impl(created_before, limit)
            .await
    }

    async fn chat_attachment_bytes(&self, chat: &ChatKey) -> Result<u64, StoreError> {
        self.chat_attachment_bytes_impl(chat).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `migrator()` is what `sqlx::migrate!("./migrations")` built.
    #[tokio::test]
    async fn embedded_migrations_are_the_directorys() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        natter_store_tests::assert_embedded_migrations_match(&migrator(), &dir).await;
    }

    fn user_message(id: &str, text: &str) -> EventBody {
        EventBody::UserMessage {
            message_id: id.into(),
            user_id: "u".into(),
            text: text.into(),
            parts: None,
            request_id: None,
            trace_id: None,
            origin: None,
            tools: None,
            attachments: None,
            role: None,
        }
    }

    async fn store(dir: &std::path::Path) -> SqliteStore {
        let url = format!("sqlite://{}/t.db", dir.display());
        SqliteStore::open(&url, Durability::Normal).await.unwrap()
    }

    #[tokio::test]
    async fn sequences_dedupes_and_isolates_orgs() {
        let dir = tempdir();
        let s = store(&dir).await;
        let a = ChatKey::new("org-a", "c1");
        let b = ChatKey::new("org-b", "c1");
        assert!(s.open_chat(&a, None).await.unwrap().is_none());
        let info = s.open_chat(&a, Some(&creator("u"))).await.unwrap().unwrap();
        assert_eq!(info.head_seq, 1);
        s.open_chat(&b, Some(&NewChat::default())).await.unwrap();

        let first = s.append(&a, user_message("m1", "hi"), 1).await.unwrap();
        assert!(matches!(first, Appended::New(ref e) if e.seq == 2));
        let again = s.append(&a, user_message("m1", "hi"), 2).await.unwrap();
        assert!(matches!(again, Appended::Duplicate(ref e) if e.seq == 2));
        // Same messageId in another org's chat of the same id is a different message.
        let other = s.append(&b, user_message("m1", "yo"), 3).await.unwrap();
        assert!(matches!(other, Appended::New(ref e) if e.seq == 2));

        let events = s.events_after(&a, 0, 10).await.unwrap();
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
        let msgs = s.recent_messages(&a, 2, 10).await.unwrap();
        assert_eq!(msgs.len(), 1);
        assert!(matches!(
            s.append(&ChatKey::new("org-a", "nope"), user_message("x", "x"), 0)
                .await,
            Err(StoreError::NoSuchChat(_))
        ));
        // Reopening keeps epoch and head.
        drop(s);
        let s = store(&dir).await;
        let again = s.open_chat(&a, None).await.unwrap().unwrap();
        assert_eq!(again.epoch, info.epoch);
        assert_eq!(again.head_seq, 2);
    }

    #[tokio::test]
    async fn a_batch_commits_together_and_undoes_a_refused_append_alone() {
        let dir = tempdir();
        let s = store(&dir).await;
        let a = ChatKey::new("org", "a");
        let b = ChatKey::new("org", "b");
        s.open_chat(&a, Some(&NewChat::default())).await.unwrap();
        s.open_chat(&b, Some(&NewChat::default())).await.unwrap();
        let fence = s.claim_turns(&a).await.unwrap();
        // An append that fails after it has taken the chat's next seq: only its savepoint's
        // rollback gives the seq back.
        sqlx::raw_sql(
            "CREATE TRIGGER boom BEFORE INSERT ON events WHEN NEW.message_id = 'boom'
             BEGIN SELECT RAISE(ABORT, 'boom'); END",
        )
        .execute(&s.writer)
        .await
        .unwrap();
        let append = |chat: &ChatKey, id: &str, guard: Guard| group_commit::Append {
            chat: chat.clone(),
            body: user_message(id, id),
            created_at: 1,
            guard,
        };
        let outcomes = group_commit::commit(
            &s.writer,
            vec![
                append(&a, "m1", Guard::None),
                append(&a, "stale", Guard::Fence(fence + 1)),
                append(&a, "m1", Guard::None),
                append(&b, "m2", Guard::None),
                append(&ChatKey::new("org", "nope"), "m3", Guard::None),
                append(&a, "boom", Guard::None),
                append(&a, "m4", Guard::Fence(fence)),
            ],
        )
        .await
        .unwrap();
        let seq = |o: &Result<Appended, StoreError>| match o {
            Ok(Appended::New(e)) => format!("new {}", e.seq),
            Ok(Appended::Duplicate(e)) => format!("duplicate {}", e.seq),
            Err(StoreError::Fenced { .. }) => "fenced".into(),
            Err(StoreError::NoSuchChat(_)) => "no such chat".into(),
            Err(StoreError::Backend(e)) if e.contains("boom") => "failed".into(),
            Err(e) => format!("{e}"),
        };
        assert_eq!(
            outcomes.iter().map(seq).collect::<Vec<_>>(),
            [
                "new 2",
                "fenced",
                "duplicate 2",
                "new 2",
                "no such chat",
                "failed",
                "new 3"
            ]
        );
        let ids = |events: Vec<StoredEvent>| {
            events
                .iter()
                .map(|e| (e.seq, e.body.message_id().map(str::to_owned)))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(s.events_after(&a, 1, 10).await.unwrap()),
            [(2, Some("m1".into())), (3, Some("m4".into()))]
        );
        assert_eq!(
            ids(s.events_after(&b, 1, 10).await.unwrap()),
            [(2, Some("m2".into()))]
        );
        assert_eq!(s.open_chat(&a, None).await.unwrap().unwrap().head_seq, 3);
    }

    #[tokio::test]
    async fn concurrent_appends_each_get_their_own_seq() {
        let dir = tempdir();
        let s = std::sync::Arc::new(store(&dir).await);
        let chat = ChatKey::new("org", "busy");
        s.open_chat(&chat, Some(&NewChat::default())).await.unwrap();
        let tasks: Vec<_> = (0..100)
            .map(|i| {
                let (s, chat) = (s.clone(), chat.clone());
                // Every tenth asks again for an earlier message: a duplicate, wherever its
                // batch falls.
                let id = if i % 10 == 9 { i - 1 } else { i };
                tokio::spawn(async move {
                    s.append(&chat, user_message(&format!("m{id}"), "x"), 1)
                        .await
                })
            })
            .collect();
        let mut new = Vec::new();
        for task in tasks {
            if let Appended::New(e) = task.await.unwrap().unwrap() {
                new.push(e.seq);
            }
        }
        new.sort_unstable();
        assert_eq!(new, (2..=91).collect::<Vec<_>>());
        let stored = s.events_after(&chat, 1, 200).await.unwrap();
        assert_eq!(stored.len(), 90);
    }

    fn creator(user: &str) -> NewChat {
        NewChat {
            created_by: Some(user.into()),
            metadata: Some(serde_json::json!({"agentName": "helper"})),
            members: None,
        }
    }

    #[tokio::test]
    async fn member_lists_are_kept_with_the_chat() {
        let dir = tempdir();
        let s = store(&dir).await;
        let a = ChatKey::new("org", "private");
        let new = NewChat {
            members: Some(vec!["bob".into()]),
            ..creator("ann")
        };
        s.open_chat(&a, Some(&new)).await.unwrap();
        let sum = s.chat_summary(&a).await.unwrap().unwrap();
        assert_eq!(sum.members, Some(vec!["bob".to_owned()]));
        let ann = natter_core::Identity::new("org", "ann");
        let bob = natter_core::Identity::new("org", "bob");
        let cat = natter_core::Identity::new("org", "cat");
        assert!(sum.admits(&ann) && sum.admits(&bob) && !sum.admits(&cat));
        assert!(sum.admits(&cat.clone().with_admin(true)));
        let change = |members: Vec<String>| EventBody::ChatUpdated {
            title: None,
            pinned: None,
            members: Some(members),
            updated_by: Some("ann".into()),
        };
        s.append(&a, change(vec!["cat".into()]), 20).await.unwrap();
        let sum = s.chat_summary(&a).await.unwrap().unwrap();
        assert!(sum.admits(&cat) && !sum.admits(&bob));
        // An empty list opens the chat to the org again.
        s.append(&a, change(vec![]), 21).await.unwrap();
        let sum = s.chat_summary(&a).await.unwrap().unwrap();
        assert_eq!(sum.members, None);
        assert!(sum.admits(&bob));
    }

    #[tokio::test]
    async fn summaries_follow_the_log_and_delete_is_real() {
        let dir = tempdir();
        let s = store(&dir).await;
        let a = ChatKey::new("org", "a");
        let b = ChatKey::new("org", "b");
        s.open_chat(&a, Some(&creator("ann"))).await.unwrap();
        s.open_chat(&b, Some(&creator("bob"))).await.unwrap();
        s.open_chat(&ChatKey::new("other", "c"), Some(&creator("ann")))
            .await
            .unwrap();
        s.append(
            &a,
            user_message("m1", "What is the refund policy?\nmore"),
            10,
        )
        .await
        .unwrap();
        s.append(&a, user_message("m2", "second"), 11)
            .await
            .unwrap();

        let sum = s.chat_summary(&a).await.unwrap().unwrap();
        assert_eq!(sum.title.as_deref(), Some("What is the refund policy?"));
        assert_eq!(sum.created_by.as_deref(), Some("ann"));
        assert_eq!(
            sum.metadata,
            Some(serde_json::json!({"agentName": "helper"}))
        );
        assert_eq!(sum.head_seq, 3);
        let later = sum.created_at + 1000;
        s.append(&a, user_message("m2b", "later"), later)
            .await
            .unwrap();
        assert_eq!(s.chat_summary(&a).await.unwrap().unwrap().updated_at, later);

        let rename = EventBody::ChatUpdated {
            title: Some("Refunds".into()),
            pinned: None,
            members: None,
            updated_by: None,
        };
        s.append(&b, rename, 12).await.unwrap();
        let pin = EventBody::ChatUpdated {
            title: None,
            pinned: Some(true),
            members: None,
            updated_by: None,
        };
        s.append(&b, pin, 13).await.unwrap();
        let sum_b = s.chat_summary(&b).await.unwrap().unwrap();
        assert_eq!(
            (sum_b.title.as_deref(), sum_b.pinned),
            (Some("Refunds"), true)
        );
        // A later first message does not override a title that was set.
        s.append(&b, user_message("m3", "hello"), 14).await.unwrap();
        assert_eq!(
            s.chat_summary(&b).await.unwrap().unwrap().title.as_deref(),
            Some("Refunds")
        );

        // Pinned first; the member scope holds the chats a user created or posted in.
        let page = s.list_chats("org", &ChatScope::Org, 10, 0).await.unwrap();
        assert_eq!(page.total, 2);
        assert_eq!(page.chats[0].key, b);
        let second = s.list_chats("org", &ChatScope::Org, 1, 1).await.unwrap();
        assert_eq!((second.total, second.chats[0].key.clone()), (2, a.clone()));
        let anns = s
            .list_chats("org", &ChatScope::Member("ann".into()), 10, 0)
            .await
            .unwrap();
        assert_eq!(anns.total, 1);
        // m3 was posted by "u" (user_message's author), so "u" is a member of both.
        let us = s
            .list_chats("org", &ChatScope::Member("u".into()), 10, 0)
            .await
            .unwrap();
        assert_eq!(us.total, 2);

        // Superseding hides an assistant message from history but keeps it in the log.
        let reply = EventBody::AssistantMessage {
            message_id: "r1".into(),
            request_id: "q1".into(),
            text: "old".into(),
            finish_reason: "stop".into(),
            usage: None,
            model: None,
            trace_id: None,
            token_count: None,
            warnings: None,
        };
        let call = EventBody::ToolCall {
            request_id: "q1".into(),
            message_id: "r1".into(),
            token_index: 0,
            tool_call_id: "c1".into(),
            name: "current_time".into(),
            arguments: serde_json::json!({}),
            executor: "server".into(),
            trace_id: None,
        };
        s.append(&a, call, 14).await.unwrap();
        s.append(&a, reply, 15).await.unwrap();
        // History pages hold messages and tool events; context and the join ack only messages.
        assert_eq!(s.messages_after(&a, 0, 10).await.unwrap().len(), 5);
        assert_eq!(s.recent_messages(&a, 99, 10).await.unwrap().len(), 4);
        assert!(s.find_message(&a, "r1").await.unwrap().is_some());
        let sup = EventBody::MessageSuperseded {
            message_id: "r1".into(),
            request_id: "q2".into(),
            superseded_by: None,
            context_seq: None,
            tools: None,
        };
        s.append(&a, sup, 16).await.unwrap();
        // The reply and its tool call left history together; the log keeps all.
        assert_eq!(s.messages_after(&a, 0, 10).await.unwrap().len(), 3);
        assert_eq!(s.recent_messages(&a, 99, 10).await.unwrap().len(), 3);
        assert_eq!(s.events_after(&a, 0, 99).await.unwrap().len(), 7);

        assert!(s.delete_chat(&a).await.unwrap());
        assert!(!s.delete_chat(&a).await.unwrap());
        assert!(s.chat_summary(&a).await.unwrap().is_none());
        assert!(s.events_after(&a, 0, 99).await.unwrap().is_empty());
        assert_eq!(
            s.list_chats("org", &ChatScope::Org, 10, 0)
                .await
                .unwrap()
                .total,
            1
        );
        // The other org's chat is untouched.
        assert_eq!(
            s.list_chats("other", &ChatScope::Org, 10, 0)
                .await
                .unwrap()
                .total,
            1
        );
    }

    /// The turn queue and the fence are durable and shared by every process on the file:
    /// only turns asked for open (duplicates and AI-off messages open none), ends close,
    /// a restart finds the queue and the fence as they were, and with two stores open on one
    /// file at once (two server processes) the older owner's fenced writes are refused.
    #[tokio::test]
    async fn turn_queue_and_fence_are_durable_and_shared_by_processes() {
        let dir = tempdir();
        let chat = ChatKey::new("org", "c1");
        let asked = |id: &str, request: &str| EventBody::UserMessage {
            message_id: id.into(),
            user_id: "u".into(),
            text: "hi".into(),
            parts: None,
            request_id: Some(request.into()),
            trace_id: Some(format!("trace-{request}")),
            origin: None,
            tools: None,
            attachments: None,
            role: None,
        };
        let ended = |request: &str| EventBody::AssistantMessage {
            message_id: format!("reply-{request}"),
            request_id: request.into(),
            text: "hello".into(),
            finish_reason: "stop".into(),
            usage: None,
            model: None,
            trace_id: None,
            token_count: None,
            warnings: None,
        };
        let failed = |request: &str| EventBody::TurnFailed {
            message_id: format!("reply-{request}"),
            request_id: request.into(),
            code: "interrupted".into(),
            message: "cut".into(),
            retryable: true,
            partial_text: String::new(),
            trace_id: None,
            token_count: None,
        };
        let first_run = store(&dir).await;
        first_run
            .open_chat(&chat, Some(&creator("u")))
            .await
            .unwrap();
        let r1_seq = first_run
            .append(&chat, asked("m1", "r1"), 1)
            .await
            .unwrap()
            .event()
            .seq;
        // AI off: the message asks for no turn.
        first_run
            .append(&chat, user_message("m2", "no AI"), 2)
            .await
            .unwrap();
        // A resent message is a duplicate and opens nothing more.
        let again = first_run
            .append(&chat, asked("m1", "r1-resent"), 3)
            .await
            .unwrap();
        assert!(matches!(again, Appended::Duplicate(_)));
        let m3_seq = first_run
            .append(&chat, asked("m3", "r2"), 4)
            .await
            .unwrap()
            .event()
            .seq;
        first_run.append(&chat, ended("r2"), 5).await.unwrap();
        let r3_seq = first_run
            .append(
                &chat,
                EventBody::MessageSuperseded {
                    message_id: "reply-r2".into(),
                    request_id: "r3".into(),
                    superseded_by: Some("u".into()),
                    context_seq: Some(m3_seq),
                    tools: None,
                },
                6,
            )
            .await
            .unwrap()
            .event()
            .seq;
        first_run.append(&chat, asked("m4", "r4"), 7).await.unwrap();
        first_run.append(&chat, failed("r4"), 8).await.unwrap();
        first_run
            .request_turn(&chat, "r5", Some("trace-r5"), r1_seq)
            .await
            .unwrap();
        let fence = first_run.claim_turns(&chat).await.unwrap();
        assert!(first_run.start_turn(&chat, "r1", fence).await.unwrap());
        drop(first_run);

        // A restart finds the queue as it was, and the fence only grows.
        let next_run = store(&dir).await;
        let head = next_run
            .open_chat(&chat, None)
            .await
            .unwrap()
            .unwrap()
            .head_seq;
        let open = next_run.open_turns(&chat).await.unwrap();
        assert_eq!(
            open,
            vec![
                OpenTurn {
                    chat: chat.clone(),
                    request_id: "r1".into(),
                    trace_id: Some("trace-r1".into()),
                    opened_seq: r1_seq,
                    context_seq: r1_seq,
                    started_fence: Some(fence),
                },
                OpenTurn {
                    chat: chat.clone(),
                    request_id: "r3".into(),
                    trace_id: None,
                    opened_seq: r3_seq,
                    context_seq: m3_seq,
                    started_fence: None,
                },
                OpenTurn {
                    chat: chat.clone(),
                    request_id: "r5".into(),
                    trace_id: Some("trace-r5".into()),
                    opened_seq: head,
                    context_seq: r1_seq,
                    started_fence: None,
                },
            ]
        );
        assert_eq!(
            next_run.chats_with_open_turns(10).await.unwrap(),
            vec![chat.clone()]
        );
        let second = next_run.claim_turns(&chat).await.unwrap();
        assert_eq!(second, fence + 1);

        // A second process on the same file takes the chat over; the first one's fenced
        // writes are refused from then on and change nothing.
        let other_process = store(&dir).await;
        let third = other_process.claim_turns(&chat).await.unwrap();
        assert_eq!(third, second + 1);
        let refused = next_run
            .append_guarded(&chat, failed("r1"), 9, Guard::Fence(second))
            .await;
        assert!(
            matches!(refused, Err(StoreError::Fenced { held, current, .. }) if held == second && current == third),
            "{refused:?}"
        );
        assert!(matches!(
            next_run.start_turn(&chat, "r3", second).await,
            Err(StoreError::Fenced { .. })
        ));
        assert_eq!(next_run.open_turns(&chat).await.unwrap().len(), 3);
        assert_eq!(
            next_run
                .open_chat(&chat, None)
                .await
                .unwrap()
                .unwrap()
                .head_seq,
            head
        );
        other_process
            .append_guarded(&chat, failed("r1"), 9, Guard::Fence(third))
            .await
            .unwrap();
        assert!(other_process.start_turn(&chat, "r3", third).await.unwrap());
        // An abort of a queued turn races its start: only one of them wins.
        assert!(matches!(
            next_run
                .append_guarded(&chat, failed("r3"), 10, Guard::Queued("r3".into()))
                .await,
            Err(StoreError::NotQueued { .. })
        ));
        next_run
            .append_guarded(&chat, failed("r5"), 10, Guard::Queued("r5".into()))
            .await
            .unwrap();
        let open = next_run.open_turns(&chat).await.unwrap();
        assert_eq!(
            open.iter()
                .map(|t| (t.request_id.as_str(), t.started_fence))
                .collect::<Vec<_>>(),
            vec![("r3", Some(third))]
        );
        assert!(next_run.delete_chat(&chat).await.unwrap());
        assert!(other_process.open_turns(&chat).await.unwrap().is_empty());
        assert!(
            other_process
                .chats_with_open_turns(10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    /// Turns open when 0005 runs were left by an older server that was cut: they become
    /// started by fence 0 (so the first owner ends them as interrupted), their context ends
    /// where they were opened, and every chat's fence starts at 0.
    #[tokio::test]
    async fn migration_0005_marks_turns_left_open_as_started() {
        let dir = tempdir();
        let url = format!("sqlite://{}/t.db", dir.display());
        {
            let options = SqliteConnectOptions::from_str(&url)
                .unwrap()
                .create_if_missing(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await
                .unwrap();
            let mut before = migrator();
            let upto_0004: Vec<_> = before
                .migrations
                .iter()
                .filter(|m| m.version <= 4)
                .cloned()
                .collect();
            before.migrations = upto_0004.into();
            before.run(&pool).await.unwrap();
            sqlx::raw_sql(
                "INSERT INTO chats (org, chat_id, epoch, head_seq, created_at) VALUES ('o', 'c', 'e', 2, 0);
                 INSERT INTO events (org, chat_id, seq, kind, is_message, message_id, body, created_at) VALUES
                   ('o', 'c', 1, 'chat_created', 0, NULL, '{\"kind\":\"chat_created\",\"createdBy\":null}', 0),
                   ('o', 'c', 2, 'user_message', 1, 'm1',
                    '{\"kind\":\"user_message\",\"messageId\":\"m1\",\"userId\":\"u\",\"text\":\"hi\",\"requestId\":\"r1\"}', 0);
                 INSERT INTO open_turns (org, chat_id, request_id, trace_id, opened_seq, opened_by)
                   VALUES ('o', 'c', 'r1', 't1', 2, 'some-old-run');",
            )
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
        let s = SqliteStore::open(&url, Durability::Normal).await.unwrap();
        let chat = ChatKey::new("o", "c");
        assert_eq!(
            s.open_turns(&chat).await.unwrap(),
            vec![OpenTurn {
                chat: chat.clone(),
                request_id: "r1".into(),
                trace_id: Some("t1".into()),
                opened_seq: 2,
                context_seq: 2,
                started_fence: Some(0),
            }]
        );
        assert_eq!(s.claim_turns(&chat).await.unwrap(), 1);
        assert!(!s.start_turn(&chat, "r1", 1).await.unwrap());
        let end = EventBody::TurnFailed {
            message_id: "a1".into(),
            request_id: "r1".into(),
            code: "interrupted".into(),
            message: "cut".into(),
            retryable: true,
            partial_text: String::new(),
            trace_id: None,
            token_count: None,
        };
        let ended = s
            .append_guarded(&chat, end, 1, Guard::Fence(1))
            .await
            .unwrap();
        assert_eq!(ended.event().seq, 3);
        assert!(s.open_turns(&chat).await.unwrap().is_empty());
    }

    fn tempdir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("natter-sqlite-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
