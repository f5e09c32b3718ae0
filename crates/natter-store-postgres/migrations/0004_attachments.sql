-- Attachments (CONTRACT §7.6). As in SQLite's 0008_attachments.sql: metadata here, bytes in
-- `attachment_blobs`. Ids are unique across the store; every read also checks the org.
CREATE TABLE attachments (
    id              TEXT COLLATE "C" PRIMARY KEY,
    org             TEXT COLLATE "C" NOT NULL,
    chat_id         TEXT COLLATE "C" NOT NULL,
    name            TEXT NOT NULL,
    mime_type       TEXT NOT NULL,
    size            BIGINT NOT NULL,
    sha256          TEXT COLLATE "C" NOT NULL,
    created_by      TEXT COLLATE "C" NOT NULL,
    created_at      BIGINT NOT NULL,
    width           BIGINT,
    height          BIGINT,
    -- none | processing | complete | error
    status          TEXT NOT NULL,
    chars           BIGINT,
    pages           BIGINT,
    error_code      TEXT,
    error_message   TEXT,
    text            TEXT,
    referenced      BOOLEAN NOT NULL DEFAULT FALSE
);

-- The same bytes are stored once per chat.
CREATE UNIQUE INDEX attachments_chat_sha256 ON attachments (org, chat_id, sha256);
-- The orphan sweep.
CREATE INDEX attachments_orphans ON attachments (created_at) WHERE NOT referenced;
-- Documents to process again after a restart.
CREATE INDEX attachments_processing ON attachments (created_at) WHERE status = 'processing';

CREATE TABLE attachment_blobs (
    id      TEXT COLLATE "C" PRIMARY KEY,
    bytes   BYTEA NOT NULL
);
