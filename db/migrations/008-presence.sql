-- natter migration 008 (schema version 7 -> 8): presence kept across
-- restarts. Whether a user is online is never stored (it is what their
-- live connections say); what they chose is:
--   status       'online' (automatic: online or away by activity), 'away'
--                or 'dnd', as set with PATCH /api/me;
--   status_text  up to 100 characters (emoji welcome), NULL for none;
--   last_seen_ms when their last connection went (kept when they go
--                offline and at shutdown), NULL: never seen.
ALTER TABLE users ADD COLUMN status TEXT NOT NULL DEFAULT 'online'
	CHECK (status IN ('online', 'away', 'dnd'));
ALTER TABLE users ADD COLUMN status_text TEXT;
ALTER TABLE users ADD COLUMN last_seen_ms INTEGER;
