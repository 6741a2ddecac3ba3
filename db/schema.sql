-- natter schema, version 1: accounts, sessions, rooms, memberships and the
-- persistent event log. store.c runs this file on an empty database inside
-- one transaction and then sets PRAGMA user_version = 1; later changes are
-- numbered migrations in db/migrations/ (NNN-name.sql upgrades NNN-1 to NNN).
-- Never edit this file once released: add a migration instead.
--
-- Names (users, rooms) are unique ignoring case: stored as given, compared
-- with COLLATE NOCASE. Times are milliseconds since the epoch (UTC).

CREATE TABLE users (
	id           INTEGER PRIMARY KEY,
	username     TEXT    NOT NULL COLLATE NOCASE UNIQUE,
	display_name TEXT    NOT NULL,
	settings     TEXT    NOT NULL DEFAULT '{}', -- a JSON object
	pwhash       TEXT    NOT NULL,              -- encoded Argon2id
	created_ms   INTEGER NOT NULL
);

-- A login session, keyed by the SHA-256 of its token (never the token).
CREATE TABLE sessions (
	hash       BLOB    NOT NULL PRIMARY KEY CHECK (length(hash) = 32),
	user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	created_ms INTEGER NOT NULL,
	expires_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_ms);

CREATE TABLE rooms (
	id         INTEGER PRIMARY KEY,
	name       TEXT    NOT NULL COLLATE NOCASE UNIQUE,
	topic      TEXT    NOT NULL DEFAULT '',
	created_ms INTEGER NOT NULL,
	created_by INTEGER REFERENCES users (id) ON DELETE SET NULL -- NULL: system
);

CREATE TABLE members (
	room_id   INTEGER NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
	user_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	joined_ms INTEGER NOT NULL,
	PRIMARY KEY (room_id, user_id)
) WITHOUT ROWID;
CREATE INDEX members_user ON members (user_id, room_id);

-- The persistent event log. id is the server-wide event id: assigned by the
-- store's single writer thread (strictly increasing); AUTOINCREMENT keeps
-- the high-water mark in sqlite_sequence so an id is never reused, even once
-- old events are pruned. json is the envelope exactly as clients saw it live.
CREATE TABLE events (
	id        INTEGER PRIMARY KEY AUTOINCREMENT,
	room_id   INTEGER NOT NULL REFERENCES rooms (id),
	type      TEXT    NOT NULL
	          CHECK (type IN ('message', 'join', 'leave', 'room')),
	user_id   INTEGER NOT NULL REFERENCES users (id),
	ts_ms     INTEGER NOT NULL,
	client_id TEXT,   -- messages only, optional: the sender's retry key
	text      TEXT,   -- messages only
	json      TEXT    NOT NULL
);
CREATE INDEX events_room ON events (room_id, id);
-- A retried send (same user, same client_id) is stored once.
CREATE UNIQUE INDEX events_client ON events (user_id, client_id)
	WHERE client_id IS NOT NULL;

-- Every fresh database has the lobby, created by the system. Users join it
-- explicitly like any other room.
INSERT INTO rooms (name, topic, created_ms, created_by)
VALUES ('lobby', 'Say hello',
	CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER), NULL);
