-- natter's PostgreSQL schema, version 4: what SQLite's migration 010
-- (files) added.
--
-- files: one row per upload (tus). While received < length it is
-- unfinished and expires at expires_ms; once every byte arrived the content
-- is hashed and stored under the state directory by its SHA-256 (sha256
-- set, type, width and height from the bytes), and the row is a file a
-- message may carry. Identical content is stored once: a blob on disk lives
-- while any row names its sha256. A finished file nothing uses (no message
-- in file_uses, no user's avatar) is removed by the sweep once it is older
-- than the upload expiry.
CREATE TABLE files (
	id         text   PRIMARY KEY,
	owner_id   bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	length     bigint NOT NULL,
	received   bigint NOT NULL DEFAULT 0,
	name       text   NOT NULL DEFAULT '',
	metadata   text   NOT NULL DEFAULT '',
	created_ms bigint NOT NULL,
	expires_ms bigint NOT NULL,
	sha256     text,
	type       text,
	width      integer,
	height     integer
);
CREATE INDEX files_owner ON files (owner_id);
CREATE INDEX files_sha256 ON files (sha256) WHERE sha256 IS NOT NULL;
CREATE INDEX files_expires ON files (expires_ms);

-- file_uses: which message carries which file, written by the store's
-- writer in the message's own transaction; deleting the message removes its
-- rows. Downloads are allowed to members of a room listed here.
CREATE TABLE file_uses (
	file_id  text   NOT NULL REFERENCES files (id) ON DELETE CASCADE,
	event_id bigint NOT NULL,
	room_id  bigint NOT NULL,
	PRIMARY KEY (file_id, event_id)
);
CREATE INDEX file_uses_event ON file_uses (event_id);
CREATE INDEX file_uses_room ON file_uses (room_id);

-- A message is found by the names of its files as well as by its text: the
-- writer puts both into events.tsv (search_index_text() of the text and
-- the envelope's "files" names), on insert and on edit, so nothing here.

-- A user's avatar is one of their finished files: it counts as used (the
-- sweep keeps it) and any user may read it; deleting the file clears it.
ALTER TABLE users ADD COLUMN avatar text REFERENCES files (id)
	ON DELETE SET NULL;
CREATE INDEX users_avatar ON users (avatar) WHERE avatar IS NOT NULL;
