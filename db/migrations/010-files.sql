-- natter migration 010 (schema version 9 -> 10): files.
--
-- One row per upload (tus): while received < length it is unfinished and
-- expires at expires_ms; once every byte arrived the content is hashed and
-- stored under the state directory by its SHA-256 (sha256 set, type, width
-- and height from the bytes), and the row is a file a message may carry.
-- Identical content is stored once: a blob on disk lives while any row
-- names its sha256. A finished file nothing uses (no message in file_uses)
-- is removed by the sweep once it is older than the upload expiry.
CREATE TABLE files (
	id         TEXT PRIMARY KEY,
	owner_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	length     INTEGER NOT NULL,
	received   INTEGER NOT NULL DEFAULT 0,
	name       TEXT NOT NULL DEFAULT '',
	metadata   TEXT NOT NULL DEFAULT '',
	created_ms INTEGER NOT NULL,
	expires_ms INTEGER NOT NULL,
	sha256     TEXT,
	type       TEXT,
	width      INTEGER,
	height     INTEGER
) WITHOUT ROWID;
CREATE INDEX files_owner ON files (owner_id);
CREATE INDEX files_sha256 ON files (sha256) WHERE sha256 IS NOT NULL;
CREATE INDEX files_expires ON files (expires_ms);

-- Which message carries which file, written by the store's writer in the
-- message's own transaction; deleting the message removes its rows.
-- Downloads are allowed to members of a room listed here.
CREATE TABLE file_uses (
	file_id  TEXT NOT NULL REFERENCES files (id) ON DELETE CASCADE,
	event_id INTEGER NOT NULL,
	room_id  INTEGER NOT NULL,
	PRIMARY KEY (file_id, event_id)
) WITHOUT ROWID;
CREATE INDEX file_uses_event ON file_uses (event_id);
CREATE INDEX file_uses_room ON file_uses (room_id);

-- A message is found by the names of its files as well as by its text: the
-- search index holds both (the names from the envelope's "files"), so the
-- triggers that keep it in step with edits and deletes take both out.
DROP TRIGGER events_search_delete;
DROP TRIGGER events_search_update;

CREATE TRIGGER events_search_delete AFTER DELETE ON events
WHEN old.type = 'message' AND old.text IS NOT NULL
BEGIN
	INSERT INTO events_search (events_search, rowid, text)
	VALUES ('delete', old.id, natter_search_text(old.text || coalesce(
		(SELECT ' ' || group_concat(json_extract(f.value, '$.name'), ' ')
		 FROM json_each(old.json, '$.files') f), '')));
END;

CREATE TRIGGER events_search_update AFTER UPDATE OF text ON events
BEGIN
	INSERT INTO events_search (events_search, rowid, text)
	SELECT 'delete', old.id, natter_search_text(old.text || coalesce(
		(SELECT ' ' || group_concat(json_extract(f.value, '$.name'), ' ')
		 FROM json_each(old.json, '$.files') f), ''))
	WHERE old.type = 'message' AND old.text IS NOT NULL;
	INSERT INTO events_search (rowid, text)
	SELECT new.id, natter_search_text(new.text || coalesce(
		(SELECT ' ' || group_concat(json_extract(f.value, '$.name'), ' ')
		 FROM json_each(new.json, '$.files') f), ''))
	WHERE new.type = 'message' AND new.text IS NOT NULL;
END;

-- A user's avatar is one of their finished files: it counts as used (the
-- sweep keeps it) and any user may read it; deleting the file clears it.
ALTER TABLE users ADD COLUMN avatar TEXT REFERENCES files (id)
	ON DELETE SET NULL;
CREATE INDEX users_avatar ON users (avatar) WHERE avatar IS NOT NULL;
