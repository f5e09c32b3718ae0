-- One row per chat: its epoch and the head of its log.
CREATE TABLE chats (
    org         TEXT    NOT NULL,
    chat_id     TEXT    NOT NULL,
    epoch       TEXT    NOT NULL,
    head_seq    INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (org, chat_id)
) WITHOUT ROWID;

-- The per-chat event log. `body` is the event as JSON (natter_core::event::EventBody).
CREATE TABLE events (
    org         TEXT    NOT NULL,
    chat_id     TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    is_message  INTEGER NOT NULL,
    message_id  TEXT,
    body        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (org, chat_id, seq)
) WITHOUT ROWID;

-- Idempotency: a client's messageId is stored once per chat.
CREATE UNIQUE INDEX events_user_message_id
    ON events (org, chat_id, message_id) WHERE kind = 'user_message';

-- History and LLM context read the latest messages of a chat.
CREATE INDEX events_messages ON events (org, chat_id, is_message, seq);

-- Read receipts, per user and message (the log keeps the receipt events too).
CREATE TABLE read_receipts (
    org         TEXT    NOT NULL,
    chat_id     TEXT    NOT NULL,
    user_id     TEXT    NOT NULL,
    message_id  TEXT    NOT NULL,
    read_at     INTEGER NOT NULL,
    PRIMARY KEY (org, chat_id, user_id, message_id)
) WITHOUT ROWID;
