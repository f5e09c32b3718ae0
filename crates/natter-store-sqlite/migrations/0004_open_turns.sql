-- Turns asked for and not yet ended (a user message with a requestId, or a regenerate), kept in
-- the same transaction as the log, so that after a crash the next run can end them
-- (`ai:error` code `interrupted`). `opened_by` is the store instance (one server run) that
-- opened the turn; a run never ends its own.
CREATE TABLE open_turns (
    org         TEXT    NOT NULL,
    chat_id     TEXT    NOT NULL,
    request_id  TEXT    NOT NULL,
    trace_id    TEXT,
    opened_seq  INTEGER NOT NULL,
    opened_by   TEXT    NOT NULL,
    PRIMARY KEY (org, chat_id, request_id)
) WITHOUT ROWID;

-- Turns an earlier version left without an end are open too; '' is no live instance.
INSERT OR IGNORE INTO open_turns (org, chat_id, request_id, trace_id, opened_seq, opened_by)
    SELECT org, chat_id, json_extract(body, '$.requestId'), json_extract(body, '$.traceId'), seq, ''
    FROM events
    WHERE kind IN ('user_message', 'message_superseded')
      AND json_extract(body, '$.requestId') IS NOT NULL
    ORDER BY seq;
DELETE FROM open_turns WHERE (org, chat_id, request_id) IN (
    SELECT org, chat_id, json_extract(body, '$.requestId') FROM events
    WHERE kind IN ('assistant_message', 'turn_failed'));
