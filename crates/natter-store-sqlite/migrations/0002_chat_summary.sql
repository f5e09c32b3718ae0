-- What chat lists show, kept up to date in the same transaction as each append.
ALTER TABLE chats ADD COLUMN title      TEXT;
ALTER TABLE chats ADD COLUMN pinned     INTEGER NOT NULL DEFAULT 0;
ALTER TABLE chats ADD COLUMN status     TEXT    NOT NULL DEFAULT 'active';
ALTER TABLE chats ADD COLUMN created_by TEXT;
ALTER TABLE chats ADD COLUMN metadata   TEXT;
ALTER TABLE chats ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;
UPDATE chats SET updated_at = COALESCE(
    (SELECT MAX(e.created_at) FROM events e WHERE e.org = chats.org AND e.chat_id = chats.chat_id),
    created_at);
UPDATE chats SET created_by = (
    SELECT json_extract(e.body, '$.createdBy') FROM events e
    WHERE e.org = chats.org AND e.chat_id = chats.chat_id AND e.kind = 'chat_created');
UPDATE chats SET title = (
    SELECT substr(json_extract(e.body, '$.text'), 1, 60) FROM events e
    WHERE e.org = chats.org AND e.chat_id = chats.chat_id AND e.kind = 'user_message'
    ORDER BY e.seq LIMIT 1);

CREATE INDEX chats_by_activity ON chats (org, pinned DESC, updated_at DESC);

-- Assistant messages are looked up by id too (regenerate supersedes one).
UPDATE events SET message_id = json_extract(body, '$.messageId')
    WHERE kind IN ('assistant_message', 'turn_failed');
CREATE INDEX events_message_id ON events (org, chat_id, message_id);

-- A regenerated assistant message stays in the log but leaves history and context.
ALTER TABLE events ADD COLUMN superseded INTEGER NOT NULL DEFAULT 0;

-- Who takes part in a chat (its creator and every user who posted): a user's chat list.
CREATE TABLE chat_members (
    org         TEXT    NOT NULL,
    chat_id     TEXT    NOT NULL,
    user_id     TEXT    NOT NULL,
    PRIMARY KEY (org, chat_id, user_id)
) WITHOUT ROWID;
CREATE INDEX chat_members_by_user ON chat_members (org, user_id);
INSERT OR IGNORE INTO chat_members (org, chat_id, user_id)
    SELECT org, chat_id, json_extract(body, '$.userId') FROM events WHERE kind = 'user_message';
INSERT OR IGNORE INTO chat_members (org, chat_id, user_id)
    SELECT org, chat_id, created_by FROM chats WHERE created_by IS NOT NULL;
