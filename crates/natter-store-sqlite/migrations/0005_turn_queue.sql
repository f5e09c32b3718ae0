-- The durable per-chat turn queue and the turn fence (natter-core's Store: "The turn queue
-- kept with the log", "Fencing"). Turns are no longer tagged with the server run that opened
-- them: whichever node owns a chat's turns reads its queue.

-- A number that only grows: `claim_turns` raises it, and fenced writes by an older owner are
-- refused in the same transaction as the append.
ALTER TABLE chats ADD COLUMN turn_fence INTEGER NOT NULL DEFAULT 0;

-- `open_turns` without `opened_by`, plus:
--   context_seq    the turn's context ends at this seq (the message it answers);
--   started_fence  the fence of the owner that started it, NULL while it is queued;
--   asked          the order turns were asked for within the chat, breaking ties between
--                  turns opened at the same head (a `request_turn` after a message).
CREATE TABLE open_turns_queue (
    org            TEXT    NOT NULL,
    chat_id        TEXT    NOT NULL,
    request_id     TEXT    NOT NULL,
    trace_id       TEXT,
    opened_seq     INTEGER NOT NULL,
    context_seq    INTEGER NOT NULL,
    started_fence  INTEGER,
    asked          INTEGER NOT NULL,
    PRIMARY KEY (org, chat_id, request_id)
) WITHOUT ROWID;

-- Turns open now were left by a run of an older server that was cut (it ran them itself, or
-- had them queued in memory): they count as started by fence 0, so the chat's first owner
-- ends them as interrupted instead of running them again.
INSERT INTO open_turns_queue
    (org, chat_id, request_id, trace_id, opened_seq, context_seq, started_fence, asked)
    SELECT org, chat_id, request_id, trace_id, opened_seq, opened_seq, 0, opened_seq
    FROM open_turns;

DROP TABLE open_turns;
ALTER TABLE open_turns_queue RENAME TO open_turns;
