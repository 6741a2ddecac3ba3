-- natter's PostgreSQL schema, version 3: what SQLite's migration 008
-- (presence) added. Whether a user is online is never stored (their live
-- connections say it); what they chose is: status 'online' (automatic),
-- 'away' or 'dnd'; status_text (NULL: none); last_seen_ms when their last
-- connection went (NULL: never seen).
ALTER TABLE users ADD COLUMN status text NOT NULL DEFAULT 'online'
	CHECK (status IN ('online', 'away', 'dnd'));
ALTER TABLE users ADD COLUMN status_text text;
ALTER TABLE users ADD COLUMN last_seen_ms bigint;
