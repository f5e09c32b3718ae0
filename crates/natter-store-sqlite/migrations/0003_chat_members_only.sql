-- Who may use a chat besides org admins and its creator: a JSON array of user ids, or NULL
-- for every user of the org (the default, and what every existing chat keeps).
ALTER TABLE chats ADD COLUMN members TEXT;
