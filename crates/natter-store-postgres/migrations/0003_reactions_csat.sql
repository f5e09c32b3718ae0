-- Reactions (CONTRACT §7.3) and CSAT (§7.4), kept with the log by `append` (natter-core's
-- Store: "Reactions and CSAT kept with the log"). As in SQLite's 0007_reactions_csat.sql.

-- One row per (user, message, emoji); `added_seq` (the event that added it) keeps a
-- message's reactions in the order they were first added.
CREATE TABLE reactions (
    org         TEXT COLLATE "C" NOT NULL,
    chat_id     TEXT COLLATE "C" NOT NULL,
    message_id  TEXT COLLATE "C" NOT NULL,
    user_id     TEXT COLLATE "C" NOT NULL,
    emoji       TEXT COLLATE "C" NOT NULL,
    created_at  BIGINT NOT NULL,
    added_seq   BIGINT NOT NULL,
    PRIMARY KEY (org, chat_id, message_id, user_id, emoji)
);

-- The chat's latest CSAT answer (the log holds every one).
ALTER TABLE chats ADD COLUMN csat_rating  SMALLINT;
ALTER TABLE chats ADD COLUMN csat_comment TEXT;
ALTER TABLE chats ADD COLUMN csat_user    TEXT COLLATE "C";
ALTER TABLE chats ADD COLUMN csat_at      BIGINT;
