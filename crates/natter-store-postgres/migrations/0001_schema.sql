-- Natter's Postgres schema: the same tables as the SQLite store (after its migrations), with
-- the turn queue and the fence. Text columns that name things (org, chat, user and message
-- ids) use the "C" collation, so lists sort byte-wise like SQLite whatever the database's
-- locale. JSON is kept as TEXT, exactly as serialized: JSONB would reject `\u0000` in a
-- message and may rewrite numbers, and the log must read back unchanged.

-- One row per chat: its epoch, the head of its log, its turn fence and what lists show.
-- `head_seq` is raised by every append in the appending transaction, so this row's lock
-- orders the writers of one chat across every node.
CREATE TABLE chats (
    org         TEXT COLLATE "C" NOT NULL,
    chat_id     TEXT COLLATE "C" NOT NULL,
    epoch       TEXT    NOT NULL,
    head_seq    BIGINT  NOT NULL,
    -- Raised by each new owner of the chat's turns (claim_turns); fenced writes carry it.
    turn_fence  BIGINT  NOT NULL DEFAULT 0,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    title       TEXT,
    pinned      BOOLEAN NOT NULL DEFAULT FALSE,
    status      TEXT    NOT NULL DEFAULT 'active',
    created_by  TEXT COLLATE "C",
    -- JSON (the creator's free-form metadata), or NULL.
    metadata    TEXT,
    -- Who may use the chat besides org admins and its creator: a JSON array of user ids, or
    -- NULL for every user of the org.
    members     TEXT,
    PRIMARY KEY (org, chat_id)
);
CREATE INDEX chats_by_activity ON chats (org, pinned DESC, updated_at DESC, chat_id);

-- The per-chat event log. `body` is the event as JSON (natter_core::event::EventBody).
-- `message_id` is the message an event creates (user, assistant, failed turn) or, for tool
-- events, the turn's assistant message (so superseding a reply finds its tool events).
CREATE TABLE events (
    org         TEXT COLLATE "C" NOT NULL,
    chat_id     TEXT COLLATE "C" NOT NULL,
    seq         BIGINT  NOT NULL,
    kind        TEXT    NOT NULL,
    is_message  BOOLEAN NOT NULL,
    message_id  TEXT COLLATE "C",
    body        TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    superseded  BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (org, chat_id, seq)
);

-- Idempotency: a client's messageId is stored once per chat.
CREATE UNIQUE INDEX events_user_message_id
    ON events (org, chat_id, message_id) WHERE kind = 'user_message';
-- Assistant messages and tool events are looked up by message id too.
CREATE INDEX events_message_id ON events (org, chat_id, message_id);
-- History and LLM context read the latest messages of a chat.
CREATE INDEX events_messages ON events (org, chat_id, is_message, seq);

-- Read receipts, per user and message (the log keeps the receipt events too).
CREATE TABLE read_receipts (
    org         TEXT COLLATE "C" NOT NULL,
    chat_id     TEXT COLLATE "C" NOT NULL,
    user_id     TEXT COLLATE "C" NOT NULL,
    message_id  TEXT COLLATE "C" NOT NULL,
    read_at     BIGINT NOT NULL,
    PRIMARY KEY (org, chat_id, user_id, message_id)
);

-- Who takes part in a chat (its creator and every user who posted): a user's chat list.
CREATE TABLE chat_members (
    org         TEXT COLLATE "C" NOT NULL,
    chat_id     TEXT COLLATE "C" NOT NULL,
    user_id     TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (org, chat_id, user_id)
);
CREATE INDEX chat_members_by_user ON chat_members (org, user_id);

-- The turn queue: turns asked for (a user message with a requestId, a regenerate) and not
-- yet ended, kept in the same transaction as the log. `started_fence` is the fence of the
-- owner that started the turn, NULL while it is queued. `position` breaks ties of
-- `opened_seq` (a turn requested with no event takes the head's seq) in the order asked for.
CREATE TABLE open_turns (
    org           TEXT COLLATE "C" NOT NULL,
    chat_id       TEXT COLLATE "C" NOT NULL,
    request_id    TEXT COLLATE "C" NOT NULL,
    trace_id      TEXT,
    opened_seq    BIGINT NOT NULL,
    context_seq   BIGINT NOT NULL,
    started_fence BIGINT,
    position      BIGINT GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (org, chat_id, request_id)
);
CREATE INDEX open_turns_queue ON open_turns (org, chat_id, opened_seq, position);
