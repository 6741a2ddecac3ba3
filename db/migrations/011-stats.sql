-- natter migration 011: metric samples for the admin statistics page.
--
-- natterd writes one row a minute (and one for the part of a minute left
-- at shutdown, so a minute may have two rows: readers sum counts and take
-- the largest peak): peak concurrent connections by transport within the
-- minute, sends received, events delivered, the transports browser
-- clients reported ending on with their reasons, and the send-to-
-- delivery times as histogram bucket counts (util/histo.h's bounds, which
-- add up across rows and give percentiles for any range). Rows older than
-- stats-retention are pruned.
CREATE TABLE stat_samples (
	id         INTEGER PRIMARY KEY,
	minute     INTEGER NOT NULL,             -- unix seconds, a multiple of 60
	conn_ws    INTEGER NOT NULL DEFAULT 0,   -- peaks within the minute
	conn_sse   INTEGER NOT NULL DEFAULT 0,
	conn_poll  INTEGER NOT NULL DEFAULT 0,
	sends      INTEGER NOT NULL DEFAULT 0,
	deliveries INTEGER NOT NULL DEFAULT 0,
	fallback   TEXT    NOT NULL DEFAULT '{}', -- {"sse/ws_failed": n, ...}
	latency    TEXT    NOT NULL DEFAULT '[]'  -- bucket counts, not cumulative
);
CREATE INDEX stat_samples_minute ON stat_samples (minute);

-- rooms-per-day counts a user's rooms created in the last 24 hours.
CREATE INDEX rooms_creator ON rooms (created_by, created_ms)
	WHERE created_by IS NOT NULL;
