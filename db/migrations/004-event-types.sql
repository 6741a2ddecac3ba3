-- natter migration 004 (schema version 3 -> 4): the events table no longer
-- lists the event types it accepts. Which types exist, and which are
-- persistent, is the event-type table's business (src/model/evtype.c); the
-- store's writer stores only persistent types from that table, so a new
-- type needs no migration of its own. Also adds target_id: the event an
-- event refers to (an edit, a deletion or a reaction names its message),
-- NULL for the rest.
--
-- SQLite cannot drop a CHECK constraint, so the table is rebuilt with the
-- same rows and ids. The AUTOINCREMENT high-water mark is carried over, so
-- an id is never reused; the search index (external content, keyed by id)
-- stays valid, and its triggers from 002 are made again for the new table.

CREATE TABLE events_new (
	id        INTEGER PRIMARY KEY AUTOINCREMENT,
	room_id   INTEGER NOT NULL REFERENCES rooms (id),
	type      TEXT    NOT NULL,
	user_id   INTEGER NOT NULL REFERENCES users (id),
	ts_ms     INTEGER NOT NULL,
	client_id TEXT,   -- optional: the sender's retry key
	text      TEXT,   -- searchable types only
	json      TEXT    NOT NULL,
	target_id INTEGER -- the event this one refers to, if any
);

INSERT INTO events_new (id, room_id, type, user_id, ts_ms, client_id, text, json)
SELECT id, room_id, type, user_id, ts_ms, client_id, text, json FROM events;

UPDATE sqlite_sequence
SET seq = max(seq, coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0))
WHERE name = 'events_new';

-- The search triggers go first: with foreign keys on, DROP TABLE deletes
-- every row before it drops the table, and the delete trigger would empty
-- the search index.
DROP TRIGGER events_fts_delete;
DROP TRIGGER events_fts_update;
DROP TABLE events;
ALTER TABLE events_new RENAME TO events;

CREATE INDEX events_room ON events (room_id, id);
CREATE UNIQUE INDEX events_client ON events (user_id, client_id)
	WHERE client_id IS NOT NULL;
CREATE INDEX events_target ON events (target_id) WHERE target_id IS NOT NULL;

CREATE TRIGGER events_fts_delete AFTER DELETE ON events
WHEN old.type = 'message' AND old.text IS NOT NULL
BEGIN
	INSERT INTO events_fts (events_fts, rowid, text)
	VALUES ('delete', old.id, old.text);
END;

CREATE TRIGGER events_fts_update AFTER UPDATE OF text ON events
BEGIN
	INSERT INTO events_fts (events_fts, rowid, text)
	SELECT 'delete', old.id, old.text
	WHERE old.type = 'message' AND old.text IS NOT NULL;
	INSERT INTO events_fts (rowid, text)
	SELECT new.id, new.text
	WHERE new.type = 'message' AND new.text IS NOT NULL;
END;
