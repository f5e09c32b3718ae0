//! The PostgreSQL [`Store`]: one database shared by any number of Natter nodes.
//!
//! - **Sequencing.** An append is one READ COMMITTED transaction that starts with
//!   `UPDATE chats SET head_seq = head_seq + 1 … RETURNING head_seq`: the chat row's lock
//!   orders the writers of one chat across every node and connection, and a transaction that
//!   is refused or fails rolls the increment back, so `seq` has no gaps. Commits of one chat
//!   are serialized by that lock, hence visible in `seq` order.
//! - **Idempotency** is checked after the row lock is taken: a concurrent writer of the same
//!   `messageId` has committed by then, so the check sees it (one `New`, the others
//!   `Duplicate`). The unique index `events_user_message_id` backs it up; if it ever fires, the
//!   append is retried once and finds the stored event.
//! - **Durability.** `append` returns after `COMMIT` (with the server's `synchronous_commit`,
//!   on by default).
//! - **Fencing and the turn queue** live in the same row and transaction: `claim_turns` raises
//!   `chats.turn_fence`, guarded appends and `start_turn` compare it under the row lock.
//! - Every write transaction locks the chat row first, so writers of one chat never deadlock.
//! - **Migrations** (`migrations/`) run at [`PgStore::connect`] under sqlx's Postgres
//!   migrator, which holds a session-level `pg_advisory_lock` (key derived from the database
//!   name) for the whole run (sqlx-postgres 0.9 `migrate.rs`, `Migrate::lock`, taken by
//!   `Migrator::run_direct` before it creates `_sqlx_migrations` and applies anything), so
//!   several nodes starting at once apply each migration exactly once and the others wait.
//!   They run on a connection of their own that is closed afterwards: sqlx does not unlock
//!   when a migration fails, and closing the session is what releases the lock then.
//!
//! Text that names things uses the "C" collation (byte order, like SQLite); JSON is stored as
//! TEXT exactly as serialized. PostgreSQL cannot store the NUL character in TEXT: titles drop
//! it, and an id containing it is refused with a [`StoreError::Backend`].

mod attachments;

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use natter_core::attachments::{Attachment, Processing};
use natter_core::chat::{
    ChatInfo, ChatKey, ChatPage, ChatScope, ChatStatus, ChatSummary, NewChat, title_from_text,
};
use natter_core::event::{Csat, EventBody, HandoffState, Reaction, StoredEvent, apply_handoff};
use natter_core::store::{Appended, Guard, OpenTurn, PutAttachment, Store, StoreError};
use sqlx::SqlStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, Connection, PgConnection, Row};

pub mod testing;
mod transfer;

/// The schema's migrations, embedded in the binary. Listed by hand rather than with
/// `sqlx::migrate!`: that macro needs sqlx's `macros` feature, whose proc macro builds sqlx,
/// SQLite's C and ring a second time for the build host (issue 20). The test
/// `embedded_migrations_are_the_directorys` keeps this list equal to `migrations/` as sqlx's
/// own resolver reads it (version, description, checksum, transaction).
fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        embedded(1, "schema", include_str!("../migrations/0001_schema.sql")),
        embedded(2, "handoff", include_str!("../migrations/0002_handoff.sql")),
        embedded(
            3,
            "reactions csat",
            include_str!("../migrations/0003_reactions_csat.sql"),
        ),
        embedded(
            4,
            "attachments",
            include_str!("../migrations/0004_attachments.sql"),
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

/// Connection settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgOptions {
    /// Connections this node keeps at most (each append holds one for its transaction).
    pub max_connections: u32,
    /// How long a request waits for a free connection before it fails.
    pub acquire_timeout: Duration,
    /// Run the migrations at connect (the default). Off: the schema must already be current.
    pub migrate: bool,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
            migrate: true,
        }
    }
}

/// The Postgres store. Cheap to share behind an `Arc`; one pool per instance.
pub struct PgStore {
    pool: PgPool,
}

/// The URL with its password replaced by `***`, for logs and errors.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            if u.set_password(Some("***")).is_ok() {
                u.to_string()
            } else {
                "<unprintable database URL>".to_owned()
            }
        }
        Ok(u) => u.to_string(),
        Err(_) => "<unparsable database URL>".to_owned(),
    }
}

/// Postgres integers are i64: larger values (a client's huge `after` or `offset`) are capped,
/// never wrapped to negative ones.
fn sql_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A `seq`, fence or count read back: never negative in our tables.
fn from_sql(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn describe(what: &str, e: &sqlx::Error) -> String {
    match e.as_database_error() {
        Some(db) => match db.code() {
            Some(code) => format!("postgres: {what}: {} (SQLSTATE {code})", db.message()),
            None => format!("postgres: {what}: {}", db.message()),
        },
        None => format!("postgres: {what}: {e}"),
    }
}

/// Adds what was being done to a sqlx error.
trait Ctx<T> {
    fn ctx(self, what: &str) -> Result<T, StoreError>;
}

impl<T> Ctx<T> for Result<T, sqlx::Error> {
    fn ctx(self, what: &str) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::Backend(describe(what, &e)))
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|db| db.kind() == sqlx::error::ErrorKind::UniqueViolation)
}

/// A title as Postgres can store it (no NUL characters).
fn pg_title(title: &str) -> String {
    title.replace('\0', "")
}

fn row_to_event(row: &PgRow) -> Result<StoredEvent, StoreError> {
    let seq: i64 = row.try_get("seq").ctx("read seq")?;
    let created_at: i64 = row.try_get("created_at").ctx("read created_at")?;
    let body: String = row.try_get("body").ctx("read body")?;
    let body: EventBody = serde_json::from_str(&body)
        .map_err(|e| StoreError::Backend(format!("unreadable event at seq {seq}: {e}")))?;
    Ok(StoredEvent {
        seq: from_sql(seq),
        created_at,
        body,
    })
}

/// The `message_id` column: the message the event creates, or a tool event's turn.
fn message_id_column(body: &EventBody) -> Option<&str> {
    match body {
        EventBody::ToolCall { message_id, .. } | EventBody::ToolResult { message_id, .. } => {
            Some(message_id)
        }
        _ => body.message_id(),
    }
}

/// The `members` column: a JSON array, or NULL for an org-wide chat (also for an empty list).
fn members_column(members: Option<&Vec<String>>) -> Option<String> {
    members
        .filter(|m| !m.is_empty())
        .and_then(|m| serde_json::to_string(m).ok())
}

const SUMMARY_COLUMNS: &str = "chat_id, epoch, head_seq, created_at, title, pinned, status, \
                               created_by, metadata, updated_at, members, \
                               csat_rating, csat_comment, csat_user, csat_at, \
                               waiting_since, human_agents";

fn row_to_summary(org: &str, r: &PgRow) -> Result<ChatSummary, StoreError> {
    let chat_id: String = r.try_get("chat_id").ctx("read chat_id")?;
    let metadata: Option<String> = r.try_get("metadata").ctx("read metadata")?;
    let members: Option<String> = r.try_get("members").ctx("read members")?;
    let status: String = r.try_get("status").ctx("read status")?;
    Ok(ChatSummary {
        key: ChatKey::new(org, chat_id),
        title: r.try_get("title").ctx("read title")?,
        pinned: r.try_get("pinned").ctx("read pinned")?,
        status: ChatStatus::parse(&status),
        created_by: r.try_get("created_by").ctx("read created_by")?,
        metadata: metadata.and_then(|m| serde_json::from_str(&m).ok()),
        created_at: r.try_get("created_at").ctx("read created_at")?,
        updated_at: r.try_get("updated_at").ctx("read updated_at")?,
        head_seq: from_sql(r.try_get("head_seq").ctx("read head_seq")?),
        epoch: r.try_get("epoch").ctx("read epoch")?,
        members: members.and_then(|m| serde_json::from_str(&m).ok()),
        csat: csat_from_row(r)?,
        waiting_since: r.try_get("waiting_since").ctx("read waiting_since")?,
        human_agents: r
            .try_get::<Option<String>, _>("human_agents")
            .ctx("read human_agents")?
            .and_then(|m| serde_json::from_str(&m).ok())
            .unwrap_or_default(),
    })
}

/// The summary's latest CSAT answer, from the `csat_*` columns.
fn csat_from_row(r: &PgRow) -> Result<Option<Csat>, StoreError> {
    let rating: Option<i16> = r.try_get("csat_rating").ctx("read csat_rating")?;
    let Some(rating) = rating else {
        return Ok(None);
    };
    let user: Option<String> = r.try_get("csat_user").ctx("read csat_user")?;
    let at: Option<i64> = r.try_get("csat_at").ctx("read csat_at")?;
    Ok(Some(Csat {
        user_id: user.unwrap_or_default(),
        rating: u8::try_from(rating).unwrap_or(0),
        comment: r.try_get("csat_comment").ctx("read csat_comment")?,
        submitted_at: at.unwrap_or(0),
    }))
}

fn row_to_open_turn(chat: &ChatKey, r: &PgRow) -> Result<OpenTurn, StoreError> {
    let started: Option<i64> = r.try_get("started_fence").ctx("read started_fence")?;
    Ok(OpenTurn {
        chat: chat.clone(),
        request_id: r.try_get("request_id").ctx("read request_id")?,
        trace_id: r.try_get("trace_id").ctx("read trace_id")?,
        opened_seq: from_sql(r.try_get("opened_seq").ctx("read opened_seq")?),
        context_seq: from_sql(r.try_get("context_seq").ctx("read context_seq")?),
        started_fence: started.map(from_sql),
    })
}

/// What an append changes in the `chats` row besides the head (see the module docs of
/// natter-core's store: the summary is kept with the log).
#[derive(Default)]
struct SummaryChange {
    /// Sets the title (a rename).
    title_set: Option<String>,
    /// Sets the title only if the chat has none (from the first user message).
    title_default: Option<String>,
    pinned: Option<bool>,
    status: Option<&'static str>,
    /// `Some(column)`: replace the member list (`None` inside: open to the org).
    members: Option<Option<String>>,
}

impl SummaryChange {
    fn of(body: &EventBody) -> Self {
        match body {
            EventBody::UserMessage { text, .. } => Self {
                title_default: Some(pg_title(&title_from_text(text))),
                ..Self::default()
            },
            EventBody::ChatUpdated {
                title,
                pinned,
                members,
                ..
            } => Self {
                title_set: title.as_deref().map(pg_title),
                pinned: *pinned,
                members: members.as_ref().map(|m| members_column(Some(m))),
                ..Self::default()
            },
            EventBody::ChatEnded { .. } => Self {
                status: Some(ChatStatus::Closed.as_str()),
                ..Self::default()
            },
            _ => Self::default(),
        }
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`), runs the
    /// migrations (unless [`PgOptions::migrate`] is off) and opens the pool.
    pub async fn connect(url: &str, options: PgOptions) -> Result<Self, StoreError> {
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| {
                StoreError::Backend(format!("bad PostgreSQL URL {}: {e}", redact_url(url)))
            })?
            .application_name("natter");
        // One plain connection first: the pool would retry a refused connection until its
        // timeout and report only that, this reports why.
        let probe = tokio::time::timeout(options.acquire_timeout, connect.connect())
            .await
            .map_err(|_| {
                StoreError::Backend(format!(
                    "postgres: connect: no answer within {:?}",
                    options.acquire_timeout
                ))
            })?
            .ctx("connect")?;
        let _ = probe.close().await;
        if options.migrate {
            Self::migrate(&connect).await?;
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .ctx("connect")?;
        Ok(Self { pool })
    }

    /// Applies pending migrations on a connection of its own (see the module docs on the
    /// advisory lock that makes this safe with several nodes starting at once).
    async fn migrate(connect: &PgConnectOptions) -> Result<(), StoreError> {
        // A pool of one connection (sqlx's `Migrator::run` on a bare `&mut PgConnection`
        // cannot be moved into a spawned task).
        // Without the notice "relation _sqlx_migrations already exists" at every start.
        let quiet = connect
            .clone()
            .options([("client_min_messages", "warning")]);
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(quiet)
            .await
            .ctx("connect (migrations)")?;
        let result = migrator().run(&pool).await;
        // Closing ends the session, which releases the advisory lock even if a migration
        // failed half-way (sqlx unlocks only on success).
        pool.close().await;
        result.map_err(|e| StoreError::Backend(format!("postgres: migrations failed: {e}")))
    }

    /// The pool (for tests and tools).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes every connection of the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Runs `sql` (binding org, chat id, a `seq` bound and a limit) and reads events.
    async fn events_where(
        &self,
        sql: &'static str,
        chat: &ChatKey,
        seq: u64,
        limit: usize,
        what: &str,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(sql)
            .bind(&*chat.org)
            .bind(&*chat.chat_id)
            .bind(sql_int(seq))
            .bind(sql_int(limit as u64))
            .fetch_all(&self.pool)
            .await
            .ctx(what)?;
        rows.iter().map(row_to_event).collect()
    }

    async fn find_chat(&self, chat: &ChatKey) -> Result<Option<ChatInfo>, StoreError> {
        let row = sqlx::query(
            "SELECT epoch, head_seq, created_at FROM chats WHERE org = $1 AND chat_id = $2",
        )
        .bind(&*chat.org)
        .bind(&*chat.chat_id)
        .fetch_optional(&self.pool)
        .await
        .ctx("read chat")?;
        row.map(|r| {
            Ok(ChatInfo {
                epoch: r.try_get("epoch").ctx("read epoch")?,
                head_seq: from_sql(r.try_get("head_seq").ctx("read head_seq")?),
                created_at: r.try_get("created_at").ctx("read created_at")?,
            })
        })
        .transpose()
    }

    /// One attempt at an append, in one transaction. `None`: the messageId's unique index
    /// fired (a writer that raced this one stored it), nothing was changed.
    async fn try_append(
        &self,
        chat: &ChatKey,
        body: &EventBody,
        json: &str,
        created_at: i64,
        guard: &Guard,
    ) -> Result<Option<Appended>, StoreError> {
        let mut tx = self.pool.begin().await.ctx("begin append")?;
        // The row lock: from here until commit no other writer of this chat gets past this
        // statement. The summary changes ride along; a refusal below rolls all of it back.
        let change = SummaryChange::of(body);
        let (members_changed, members) = match change.members {
            Some(m) => (true, m),
            None => (false, None),
        };
        let head = sqlx::query(
            "UPDATE chats SET head_seq = head_seq + 1,
                    updated_at = GREATEST(updated_at, $3),
                    title = COALESCE($4, title, $5),
                    pinned = COALESCE($6, pinned),
                    status = COALESCE($7, status),
                    members = CASE WHEN $8 THEN $9 ELSE members END
             WHERE org = $1 AND chat_id = $2
             RETURNING head_seq, turn_fence, waiting_since, human_agents",
        )
        .bind(&*chat.org)
        .bind(&*chat.chat_id)
        .bind(created_at)
        .bind(change.title_set)
        .bind(change.title_default)
        .bind(change.pinned)
        .bind(change.status)
        .bind(members_changed)
        .bind(members)
        .fetch_optional(&mut *tx)
        .await
        .ctx("append: lock the chat")?;
        let Some(head) = head else {
            return Err(StoreError::NoSuchChat(chat.to_string()));
        };
        let seq: i64 = head.try_get("head_seq").ctx("read head_seq")?;
        let fence: i64 = head.try_get("turn_fence").ctx("read turn_fence")?;

        // Under the lock: a concurrent writer of the same messageId has committed by now.
        if let Some(key) = body.idempotency_key() {
            let existing = sqlx::query(
                "SELECT seq, created_at, body FROM events
                 WHERE org = $1 AND chat_id = $2 AND message_id = $3 AND kind = $4",
            )
            .bind(&*chat.org)
            .bind(&*chat.chat_id)
            .bind(key)
            .bind(body.kind())
            .fetch_optional(&mut *tx)
            .await
            .ctx("append: idempotency check")?;
            if let Some(row) = existing {
                let stored = row_to_event(&row)?;
                tx.rollback().await.ctx("append: roll back")?;
                return Ok(Some(Appended::Duplicate(stored)));
            }
        }

        match guard {
            Guard::None => {}
            Guard::Fence(held) => {
                if sql_int(*held) != fence {
                    tx.rollback().await.ctx("append: roll back")?;
                    return Err(StoreError::Fenced {
                        chat: chat.to_string(),
                        held: *held,
                        current: from_sql(fence),
                    });
                }
            }
            Guard::Queued(request_id) => {
                let queued: Option<bool> = sqlx::query_scalar(
                    "SELECT started_fence IS NULL FROM open_turns
                     WHERE org = $1 AND chat_id = $2 AND request_id = $3",
                )
                .bind(&*chat.org)
                .bind(&*chat.chat_id)
                .bind(request_id)
                .fetch_optional(&mut *tx)
                .await
                .ctx("append: read the turn queue")?;
                if queued != Some(true) {
                    tx.rollback().await.ctx("append: roll back")?;
                    return Err(StoreError::NotQueued {
                        chat: chat.to_string(),
                        request_id: request_id.clone(),
                    });
                }
            }
        }

        // A reaction event gets its message's list after it, computed under the lock.
        let filled = fill_reactions(&mut tx, chat, seq, body, created_at).await?;
        let (body, json) = match &filled {
            Some((b, j)) => (b, j.as_str()),
            None => (body, json),
        };
        // A handoff event gets the chat's handoff state after it, from the row as locked
        // above (the UPDATE leaves these columns alone), not from the caller's stale read.
        let handed = fill_handoff(&head, body)?;
        let (body, json) = match &handed {
            Some((b, j)) => (b, j.as_str()),
            None => (body, json),
        };
        match insert_event(&mut tx, chat, seq, body, json, created_at).await {
            Ok(()) => {}
            // Another writer stored this messageId (see `append_guarded`): try again.
            Err(e) if is_unique_violation(&e) => {
                tracing::warn!(chat = %chat, error = %e, "append raced on a messageId; retrying");
                tx.rollback().await.ctx("append: roll back")?;
                return Ok(None);
            }
            Err(e) => return Err(e).ctx("append: insert the event"),
        }
        apply_to_tables(&mut tx, chat, seq, body).await?;
        tx.commit().await.ctx("append: commit")?;
        Ok(Some(Appended::New(StoredEvent {
            seq: from_sql(seq),
            created_at,
            body: body.clone(),
        })))
    }
}

async fn insert_event(
    conn: &mut PgConnection,
    chat: &ChatKey,
    seq: i64,
    body: &EventBody,
    json: &str,
    created_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO events (org, chat_id, seq, kind, is_message, message_id, body, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&*chat.org)
    .bind(&*chat.chat_id)
    .bind(seq)
    .bind(body.kind())
    .bind(body.is_message())
    .bind(message_id_column(body))
    .bind(json)
    .bind(created_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A handoff event with the chat's handoff state after it (and its JSON), computed from the
/// locked chat row `head` (its `waiting_since` and `human_agents` before the event); `None`
/// for any other event.
fn fill_handoff(
    head: &sqlx::postgres::PgRow,
    body: &EventBody,
) -> Result<Option<(EventBody, String)>, StoreError> {
    if body.handoff().is_none() {
        return Ok(None);
    }
    let before = HandoffState {
        waiting_since: head.try_get("waiting_since").ctx("read waiting_since")?,
        agents: head
            .try_get::<Option<String>, _>("human_agents")
            .ctx("read human_agents")?
            .and_then(|m| serde_json::from_str(&m).ok())
            .unwrap_or_default(),
    };
    let mut body = body.clone();
    apply_handoff(&before, &mut body);
    let json = serde_json::to_string(&body)
        .map_err(|e| StoreError::Backend(format!("cannot serialize an event: {e}")))?;
    Ok(Some((body, json)))
}

/// Applies a reaction event to the `reactions` table and returns the event with the
/// message's list after it (and its JSON); `None` for any other event.
async fn fill_reactions(
    conn: &mut PgConnection,
    chat: &ChatKey,
    seq: i64,
    body: &EventBody,
    created_at: i64,
) -> Result<Option<(EventBody, String)>, StoreError> {
    let (message_id, user_id, emoji, add) = match body {
        EventBody::ReactionAdded {
            message_id,
            user_id,
            emoji,
            ..
        } => (message_id, user_id, emoji, true),
        EventBody::ReactionRemoved {
            message_id,
            user_id,
            emoji,
            ..
        } => (message_id, user_id, emoji, false),
        _ => return Ok(None),
    };
    let sql = if add {
        "INSERT INTO reactions (org, chat_id, message_id, user_id, emoji, created_at, added_seq)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING"
    } else {
        "DELETE FROM reactions
         WHERE org = $1 AND chat_id = $2 AND message_id = $3 AND user_id = $4 AND emoji = $5"
    };
    let mut q = sqlx::query(sql)
        .bind(&*chat.org)
        .bind(&*chat.chat_id)
        .bind(message_id)
        .bind(user_id)
        .bind(emoji);
    if add {
        q = q.bind(created_at).bind(seq);
    }
    q.execute(&mut *conn)
        .await
        .ctx("append: update reactions")?;
    let list = reactions_of(&mut *conn, chat, std::slice::from_ref(message_id))
        .await?
        .into_iter()
        .next()
        .map(|(_, l)| l)
        .unwrap_or_default();
    let mut body = body.clone();
    if let EventBody::ReactionAdded { reactions, .. }
    | EventBody::ReactionRemoved { reactions, .. } = &mut body
    {
        *reactions = list;
    }
    let json = serde_json::to_string(&body)
        .map_err(|e| StoreError::Backend(format!("cannot serialize an event: {e}")))?;
    Ok(Some((body, json)))
}

/// The reactions of `message_ids` that have any, each list in the order first added.
async fn reactions_of(
    conn: &mut PgConnection,
    chat: &ChatKey,
    message_ids: &[String],
) -> Result<Vec<(String, Vec<Reaction>)>, StoreError> {
    let rows = sqlx::query(
        "SELECT message_id, user_id, emoji, created_at FROM reactions
         WHERE org = $1 AND chat_id = $2 AND message_id = ANY($3::text[])
         ORDER BY message_id, added_seq, user_id, emoji",
    )
    .bind(&*chat.org)
    .bind(&*chat.chat_id)
    .bind(message_ids)
    .fetch_all(&mut *conn)
    .await
    .ctx("read reactions")?;
    let mut by_id: std::collections::HashMap<String, Vec<Reaction>> =
        std::collections::HashMap::new();
    for r in &rows {
        let id: String = r.try_get("message_id").ctx("read message_id")?;
        by_id.entry(id).or_default().push(Reaction {
            user_id: r.try_get("user_id").ctx("read user_id")?,
            emoji: r.try_get("emoji").ctx("read emoji")?,
            created_at: r.try_get("created_at").ctx("read created_at")?,
        });
    }
    // In the order asked for.
    Ok(message_ids
        .iter()
        .filter_map(|id| by_id.remove(id).map(|l| (id.clone(), l)))
        .collect())
}

/// Members, receipts, superseded marks and the turn queue, in step with the log.
async fn apply_to_tables(
    conn: &mut PgConnection,
    chat: &ChatKey,
    seq: i64,
    body: &EventBody,
) -> Result<(), StoreError> {
    let org = &*chat.org;
    let chat_id = &*chat.chat_id;
    match body {
        EventBody::UserMessage {
            user_id,
            request_id,
            trace_id,
            ..
        } => {
            sqlx::query(
                "INSERT INTO chat_members (org, chat_id, user_id) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
            )
            .bind(org)
            .bind(chat_id)
            .bind(user_id)
            .execute(&mut *conn)
            .await
            .ctx("append: add the member")?;
            if let Some(request_id) = request_id {
                open_turn(conn, chat, request_id, trace_id.as_deref(), seq, seq).await?;
            }
        }
        EventBody::MessageSuperseded {
            message_id,
            request_id,
            context_seq,
            ..
        } => {
            // The reply and its turn's tool events leave history together.
            sqlx::query(
                "UPDATE events SET superseded = TRUE
                 WHERE org = $1 AND chat_id = $2 AND message_id = $3
                   AND kind IN ('assistant_message', 'turn_failed', 'tool_call', 'tool_result')",
            )
            .bind(org)
            .bind(chat_id)
            .bind(message_id)
            .execute(&mut *conn)
            .await
            .ctx("append: mark superseded")?;
            let context = context_seq.map(sql_int).unwrap_or(seq);
            open_turn(conn, chat, request_id, None, seq, context).await?;
        }
        EventBody::AssistantMessage { request_id, .. }
        | EventBody::TurnFailed { request_id, .. } => {
            sqlx::query(
                "DELETE FROM open_turns WHERE org = $1 AND chat_id = $2 AND request_id = $3",
            )
            .bind(org)
            .bind(chat_id)
            .bind(request_id)
            .execute(&mut *conn)
            .await
            .ctx("append: close the turn")?;
        }
        EventBody::ReadReceipt {
            user_id,
            message_ids,
            read_at,
            ..
        } => {
            let mut ids: Vec<&str> = message_ids.iter().map(String::as_str).collect();
            // One row per message: ON CONFLICT DO UPDATE may not touch a row twice.
            ids.sort_unstable();
            ids.dedup();
            sqlx::query(
                "INSERT INTO read_receipts (org, chat_id, user_id, message_id, read_at)
                 SELECT $1, $2, $3, m, $5 FROM UNNEST($4::text[]) AS m
                 ON CONFLICT (org, chat_id, user_id, message_id)
                 DO UPDATE SET read_at = excluded.read_at",
            )
            .bind(org)
            .bind(chat_id)
            .bind(user_id)
            .bind(ids)
            .bind(read_at)
            .execute(&mut *conn)
            .await
            .ctx("append: store read receipts")?;
        }
        EventBody::CsatSubmitted {
            user_id,
            rating,
            comment,
            ..
        } => {
            sqlx::query(
                "UPDATE chats SET csat_rating = $3, csat_comment = $4, csat_user = $5,
                        csat_at = (SELECT created_at FROM events
                                   WHERE org = $1 AND chat_id = $2 AND seq = $6)
                 WHERE org = $1 AND chat_id = $2",
            )
            .bind(org)
            .bind(chat_id)
            .bind(i16::from(*rating))
            .bind(comment)
            .bind(user_id)
            .bind(seq)
            .execute(&mut *conn)
            .await
            .ctx("append: store the CSAT answer")?;
        }
        EventBody::HumanAgentRequested { handoff, .. }
        | EventBody::HumanAgentJoined { handoff, .. }
        | EventBody::HumanAgentLeft { handoff, .. } => {
            sqlx::query(
                "UPDATE chats SET waiting_since = $3, human_agents = $4
                 WHERE org = $1 AND chat_id = $2",
            )
            .bind(org)
            .bind(chat_id)
            .bind(handoff.waiting_since)
            .bind(members_column(Some(&handoff.agents)))
            .execute(&mut *conn)
            .await
            .ctx("append: store the handoff state")?;
        }
        _ => {}
    }
    Ok(())
}

/// Opens turn `request_id` (queued); a turn the chat already has open keeps its first opening.
async fn open_turn(
    conn: &mut PgConnection,
    chat: &ChatKey,
    request_id: &str,
    trace_id: Option<&str>,
    opened_seq: i64,
    context_seq: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO open_turns (org, chat_id, request_id, trace_id, opened_seq, context_seq)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (org, chat_id, request_id) DO NOTHING",
    )
    .bind(&*chat.org)
    .bind(&*chat.chat_id)
    .bind(request_id)
    .bind(trace_id)
    .bind(opened_seq)
    .bind(context_seq)
    .execute(&mut *conn)
    .await
    .ctx("open a turn")?;
    Ok(())
}

/// Locks the chat row for the rest of the transaction and reads its head and fence.
async fn lock_chat(
    conn: &mut PgConnection,
    chat: &ChatKey,
    what: &str,
) -> Result<(i64, i64), StoreError> {
    let row = sqlx::query(
        "SELECT head_seq, turn_fence FROM chats WHERE org = $1 AND chat_id = $2 FOR UPDATE",
    )
    .bind(&*chat.org)
    .bind(&*chat.chat_id)
    .fetch_optional(&mut *conn)
    .await
    .ctx(what)?;
    let Some(row) = row else {
        return Err(StoreError::NoSuchChat(chat.to_string()));
    };
    Ok((
        row.try_get("head_seq").ctx("read head_seq")?,
        row.try_get("turn_fence").ctx("read turn_fence")?,
    ))
}

#[async_trait]
impl Store for PgStore {
    async fn open_chat(
        &self,
        chat: &ChatKey,
        create: Option<&NewChat>,
    ) -> Result<Option<ChatInfo>, StoreError> {
        if let Some(info) = self.find_chat(chat).await? {
            return Ok(Some(info));
        }
        let Some(new) = create else {
            return Ok(None);
        };
        let now = natter_protocol::time::now_millis();
        let info = ChatInfo {
            epoch: uuid::Uuid::new_v4().simple().to_string(),
            head_seq: 1,
            created_at: now,
        };
        let body = EventBody::ChatCreated {
            created_by: new.created_by.clone(),
            metadata: new.metadata.clone(),
            members: new.members.clone().filter(|m| !m.is_empty()),
        };
        let json = serde_json::to_string(&body)
            .map_err(|e| StoreError::Backend(format!("cannot serialize an event: {e}")))?;
        let mut tx = self.pool.begin().await.ctx("begin create chat")?;
        // Waits for a concurrent creator of the same chat, then does nothing.
        let inserted = sqlx::query(
            "INSERT INTO chats (org, chat_id, epoch, head_seq, created_at, updated_at,
                                created_by, metadata, members)
             VALUES ($1, $2, $3, 1, $4, $4, $5, $6, $7)
             ON CONFLICT (org, chat_id) DO NOTHING",
        )
        .bind(&*chat.org)
        .bind(&*chat.chat_id)
        .bind(&info.epoch)
        .bind(now)
        .bind(&new.created_by)
        .bind(new.metadata.as_ref().map(|m| m.to_string()))
        .bind(members_column(new.members.as_ref()))
        .execute(&mut *tx)
        .await
        .ctx("create chat")?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await.ctx("create chat: roll back")?;
            // Another request created it since we looked (and has committed).
            return self.find_chat(chat).await;
        }
        if let Some(user) = &new.created_by {
            sqlx::query("INSERT INTO chat_members (org, chat_id, user_id) VALUES ($1, $2, $3)")
                .bind(&*chat.org)
                .bind(&*chat.chat_id)
                .bind(user)
                .execute(&mut *tx)
                .await
                .ctx("create chat: add the creator")?;
        }
        insert_event(&mut tx, chat, 1, &body, &json, now)
            .await
            .ctx("create chat: insert the first event")?;
        tx.commit().await.ctx("create chat: commit")?;
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
        let json = serde_json::to_string(&body)
            .map_err(|e| StoreError::Backend(format!("cannot serialize an event: {e}")))?;
        // The idempotency check runs under the chat's row lock, so the unique index should
        // never fire; if it does, the other writer has committed by then: look again.
        for _ in 0..3 {
            if let Some(done) = self
                .try_append(chat, &body, &json, created_at, &guard)
                .await?
            {
                return Ok(done);
            }
        }
        Err(StoreError::Backend(format!(
            "postgres: append to {chat}: messageId kept conflicting"
        )))
    }

    async fn events_after(
        &self,
        chat: &ChatKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.events_where(
            "SELECT seq, created_at, body FROM events
             WHERE org = $1 AND chat_id = $2 AND seq > $3 ORDER BY seq LIMIT $4",
            chat,
            after,
            limit,
            "read events",
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
                 WHERE org = $1 AND chat_id = $2 AND is_message AND NOT superseded
                   AND seq <= $3
                 ORDER BY seq DESC LIMIT $4",
                chat,
                up_to,
                limit,
                "read recent messages",
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
             WHERE org = $1 AND chat_id = $2 AND NOT superseded AND seq > $3
               AND (is_message OR kind IN ('tool_call', 'tool_result'))
             ORDER BY seq LIMIT $4",
            chat,
            after,
            limit,
            "read history",
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
             WHERE org = $1 AND chat_id = $2 AND message_id = $3
               AND kind IN ('user_message', 'assistant_message', 'turn_failed')
             ORDER BY seq LIMIT 1",
        )
        .bind(&*chat.org)
        .bind(&*chat.chat_id)
        .bind(message_id)
        .fetch_optional(&self.pool)
        .await
        .ctx("find a message")?;
        row.as_ref().map(row_to_event).transpose()
    }

    async fn chat_summary(&self, chat: &ChatKey) -> Result<Option<ChatSummary>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SUMMARY_COLUMNS} FROM chats WHERE org = $1 AND chat_id = $2"
        )))
        .bind(&*chat.org)
        .bind(&*chat.chat_id)
        .fetch_optional(&self.pool)
        .await
        .ctx("read chat summary")?;
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
        // Dynamic SQL here only splices our own constant column list and filter; every value
        // is bound.
        let filter = " AND ($2::text IS NULL OR chat_id IN \
                      (SELECT chat_id FROM chat_members WHERE org = $1 AND user_id = $2))";
        let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM chats WHERE org = $1{filter}"
        )))
        .bind(org)
        .bind(member)
        .fetch_one(&self.pool)
        .await
        .ctx("count chats")?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SUMMARY_COLUMNS} FROM chats WHERE org = $1{filter}
             ORDER BY pinned DESC, updated_at DESC, chat_id LIMIT $3 OFFSET $4"
        )))
        .bind(org)
        .bind(member)
        .bind(sql_int(limit as u64))
        .bind(sql_int(offset as u64))
        .fetch_all(&self.pool)
        .await
        .ctx("list chats")?;
        Ok(ChatPage {
            chats: rows
                .iter()
                .map(|r| row_to_summary(org, r))
                .collect::<Result<_, _>>()?,
            total: from_sql(total),
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
        let filter = " AND waiting_since IS NOT NULL AND ($2::text IS NULL OR chat_id IN \
                      (SELECT chat_id FROM chat_members WHERE org = $1 AND user_id = $2))";
        let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM chats WHERE org = $1{filter}"
        )))
        .bind(org)
        .bind(member)
        .fetch_one(&self.pool)
        .await
        .ctx("count waiting chats")?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SUMMARY_COLUMNS} FROM chats WHERE org = $1{filter}
             ORDER BY waiting_since, chat_id LIMIT $3 OFFSET $4"
        )))
        .bind(org)
        .bind(member)
        .bind(sql_int(limit as u64))
        .bind(sql_int(offset as u64))
        .fetch_all(&self.pool)
        .await
        .ctx("list waiting chats")?;
        Ok(ChatPage {
            chats: rows
                .iter()
                .map(|r| row_to_summary(org, r))
                .collect::<Result<_, _>>()?,
            total: from_sql(total),
        })
    }

    async fn delete_chat(&self, chat: &ChatKey) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.ctx("begin delete chat")?;
        // The chat row first: appenders of this chat wait on its lock, then find no chat.
        let deleted = sqlx::query("DELETE FROM chats WHERE org = $1 AND chat_id = $2")
            .bind(&*chat.org)
            .bind(&*chat.chat_id)
            .execute(&mut *tx)
            .await
            .ctx("delete chat")?
            .rows_affected();
        for sql in [
            "DELETE FROM events WHERE org = $1 AND chat_id = $2",
            "DELETE FROM read_receipts WHERE org = $1 AND chat_id = $2",
            "DELETE FROM chat_members WHERE org = $1 AND chat_id = $2",
            "DELETE FROM open_turns WHERE org = $1 AND chat_id = $2",
            "DELETE FROM reactions WHERE org = $1 AND chat_id = $2",
        ] {
            sqlx::query(sql)
                .bind(&*chat.org)
                .bind(&*chat.chat_id)
                .execute(&mut *tx)
                .await
                .ctx("delete chat")?;
        }
        attachments::delete_chat_attachments(&mut tx, chat).await?;
        tx.commit().await.ctx("delete chat: commit")?;
        Ok(deleted > 0)
    }

    async fn open_turns(&self, chat: &ChatKey) -> Result<Vec<OpenTurn>, StoreError> {
        let rows = sqlx::query(
            "SELECT request_id, trace_id, opened_seq, context_seq, started_fence
             FROM open_turns WHERE org = $1 AND chat_id = $2
             ORDER BY opened_seq, position",
        )
        .bind(&*chat.org)
        .bind(&*chat.chat_id)
        .fetch_all(&self.pool)
        .await
        .ctx("read the turn queue")?;
        rows.iter().map(|r| row_to_open_turn(chat, r)).collect()
    }

    async fn chats_with_open_turns(&self, limit: usize) -> Result<Vec<ChatKey>, StoreError> {
        let rows = sqlx::query(
            // In random order: a sweep that takes `limit` of more chats than that must not
            // keep seeing the same ones.
            "SELECT org, chat_id FROM open_turns GROUP BY org, chat_id
             ORDER BY random() LIMIT $1",
        )
        .bind(sql_int(limit as u64))
        .fetch_all(&self.pool)
        .await
        .ctx("find chats with open turns")?;
        rows.iter()
            .map(|r| {
                let org: String = r.try_get("org").ctx("read org")?;
                let chat_id: String = r.try_get("chat_id").ctx("read chat_id")?;
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
        let mut tx = self.pool.begin().await.ctx("begin request turn")?;
        let (head, _) = lock_chat(&mut tx, chat, "request turn: lock the chat").await?;
        open_turn(
            &mut tx,
            chat,
            request_id,
            trace_id,
            head,
            sql_int(context_seq),
        )
        .await?;
        tx.commit().await.ctx("request turn: commit")?;
        Ok(())
    }

    async fn claim_turns(&self, chat: &ChatKey) -> Result<u64, StoreError> {
        let fence: Option<i64> = sqlx::query_scalar(
            "UPDATE chats SET turn_fence = turn_fence + 1 WHERE org = $1 AND chat_id = $2
             RETURNING turn_fence",
        )
        .bind(&*chat.org)
        .bind(&*chat.chat_id)
        .fetch_optional(&self.pool)
        .await
        .ctx("claim turns")?;
        fence
            .map(from_sql)
            .ok_or_else(|| StoreError::NoSuchChat(chat.to_string()))
    }

    async fn start_turn(
        &self,
        chat: &ChatKey,
        request_id: &str,
        fence: u64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.ctx("begin start turn")?;
        let (_, current) = lock_chat(&mut tx, chat, "start turn: lock the chat").await?;
        if current != sql_int(fence) {
            tx.rollback().await.ctx("start turn: roll back")?;
            return Err(StoreError::Fenced {
                chat: chat.to_string(),
                held: fence,
                current: from_sql(current),
            });
        }
        let started = sqlx::query(
            "UPDATE open_turns SET started_fence = $4
             WHERE org = $1 AND chat_id = $2 AND request_id = $3 AND started_fence IS NULL",
        )
        .bind(&*chat.org)
        .bind(&*chat.chat_id)
        .bind(request_id)
        .bind(sql_int(fence))
        .execute(&mut *tx)
        .await
        .ctx("start turn")?
        .rows_affected();
        tx.commit().await.ctx("start turn: commit")?;
        Ok(started > 0)
    }

    async fn reactions(
        &self,
        chat: &ChatKey,
        message_ids: &[String],
    ) -> Result<Vec<(String, Vec<Reaction>)>, StoreError> {
        if message_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.pool.acquire().await.ctx("acquire")?;
        reactions_of(&mut conn, chat, message_ids).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .ctx("ping")?;
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

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://ann:secret@db:5432/natter"),
            "postgres://ann:***@db:5432/natter"
        );
        assert_eq!(
            redact_url("postgres://ann@db/natter"),
            "postgres://ann@db/natter"
        );
        assert!(!redact_url("postgres://a:secret@[bad").contains("secret"));
    }

    #[test]
    fn summary_changes_follow_events() {
        let c = SummaryChange::of(&EventBody::ChatUpdated {
            title: Some("a\0b".into()),
            pinned: Some(true),
            members: Some(vec![]),
            updated_by: None,
        });
        assert_eq!(c.title_set.as_deref(), Some("ab"));
        assert_eq!(c.pinned, Some(true));
        assert_eq!(c.members, Some(None));
    }
}
