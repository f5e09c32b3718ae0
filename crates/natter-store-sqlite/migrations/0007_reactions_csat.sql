-- Reactions (CONTRACT §7.3) and CSAT (§7.4), kept with the log by `append` (natter-core's
-- Store: "Reactions and CSAT kept with the log").

-- One row per (user, message, emoji); `added_seq` (the event that added it) keeps a
-- message's reactions in the order they were first added.
CREATE TABLE reactions (
    org         TEXT    NOT NULL,
    chat_id     TEXT    NOT NULL,
    message_id  TEXT    NOT NULL,
    user_id     TEXT    NOT NULL,
    emoji       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    added_seq   INTEGER NOT NULL,
    PRIMARY KEY (org, chat_id, message_id, user_id, emoji)
) WITHOUT ROWID;

-- The chat's latest CSAT answer (the log holds every one).
ALTER TABLE chats ADD COLUMN csat_rating INTEGER;
ALTER TABLE chats ADD COLUMN csat_comment TEXT;
ALTER TABLE chats ADD COLUMN csat_user TEXT;
ALTER TABLE chats ADD COLUMN csat_at INTEGER;
