-- natter migration 002 (schema version 1 -> 2): full-text search over
-- message text for store_search().
--
-- An external-content FTS5 table: the text lives once, in events; the
-- index is kept in step by triggers inside the writer's own transaction,
-- so an event is searchable exactly when it is committed. Only messages
-- are indexed (joins, leaves and room events carry no text).

CREATE VIRTUAL TABLE events_fts USING fts5 (
	text,
	content = 'events',
	content_rowid = 'id',
	tokenize = 'unicode61 remove_diacritics 2',
	prefix = '2 3'
);

CREATE TRIGGER events_fts_insert AFTER INSERT ON events
WHEN new.type = 'message' AND new.text IS NOT NULL
BEGIN
	INSERT INTO events_fts (rowid, text) VALUES (new.id, new.text);
END;

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

-- Index what a version-1 database already holds.
INSERT INTO events_fts (rowid, text)
SELECT id, text FROM events WHERE type = 'message' AND text IS NOT NULL;
