-- Handoff to a human agent (CONTRACT §7.2), kept on the chat's row from the latest
-- human_agent_* event (natter-core's Store: "Summary kept with the log"):
--   waiting_since  Unix ms since the chat waits for an agent; NULL when it does not
--   human_agents   the engaged agents, a JSON array; NULL when none
ALTER TABLE chats ADD COLUMN waiting_since INTEGER;
ALTER TABLE chats ADD COLUMN human_agents TEXT;

-- The agents' queue: an org's waiting chats, oldest first.
CREATE INDEX chats_waiting ON chats (org, waiting_since) WHERE waiting_since IS NOT NULL;
