-- Attachments (CONTRACT §7.6): metadata here, bytes in `attachment_blobs` (so listing and
-- sweeping never read the bytes). Ids are unique across the store; every read also checks
-- the org. Deleted with their chat (`delete_chat`) or by the orphan sweep.
CREATE TABLE attachments (
    id              TEXT    PRIMARY KEY NOT NULL,
    org             TEXT    NOT NULL,
    chat_id         TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    mime_type       TEXT    NOT NULL,
    size            INTEGER NOT NULL,
    sha256          TEXT    NOT NULL,
    created_by      TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    width           INTEGER,
    height          INTEGER,
    -- none | processing | complete | error
    status          TEXT    NOT NULL,
    chars           INTEGER,
    pages           INTEGER,
    error_code      TEXT,
    error_message   TEXT,
    text            TEXT,
    referenced      INTEGER NOT NULL DEFAULT 0
);

-- The same bytes are stored once per chat.
CREATE UNIQUE INDEX attachments_chat_sha256 ON attachments (org, chat_id, sha256);
-- The orphan sweep.
CREATE INDEX attachments_orphans ON attachments (created_at) WHERE referenced = 0;
-- Documents to process again after a restart.
CREATE INDEX attachments_processing ON attachments (created_at) WHERE status = 'processing';

CREATE TABLE attachment_blobs (
    id      TEXT PRIMARY KEY NOT NULL,
    bytes   BLOB NOT NULL
);
