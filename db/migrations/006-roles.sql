-- natter migration: roles. A server admin is a user with admin = 1: the
-- first account of a fresh server (the store's INSERT makes it so), more by
-- natterctl. On an existing server the oldest account becomes the admin,
-- as it would have been on a fresh one. A room's owner is its creator
-- (rooms.created_by; the lobby, created by the system, has none). Room
-- moderators are named by the owner (or an admin): one row each here, kept
-- while the user is a member; a user who leaves or is removed stops being
-- one (a trigger deletes the row with the membership).

ALTER TABLE users ADD COLUMN admin INTEGER NOT NULL DEFAULT 0
	CHECK (admin IN (0, 1));
UPDATE users SET admin = 1 WHERE id = (SELECT min(id) FROM users);

CREATE TABLE moderators (
	room_id    INTEGER NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
	user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	granted_by INTEGER REFERENCES users (id) ON DELETE SET NULL,
	granted_ms INTEGER NOT NULL,
	PRIMARY KEY (room_id, user_id)
) WITHOUT ROWID;

CREATE TRIGGER members_moderator_delete AFTER DELETE ON members
BEGIN
	DELETE FROM moderators
	WHERE room_id = old.room_id AND user_id = old.user_id;
END;

-- Moderation. subject_id: the user an event acts on (a kick or a ban
-- names the user removed), whose membership the event changes; NULL for
-- events that act on their sender. A ban keeps its user out of its room
-- until it is lifted.
ALTER TABLE events ADD COLUMN subject_id INTEGER REFERENCES users (id);
CREATE INDEX events_subject ON events (subject_id, id)
	WHERE subject_id IS NOT NULL;

CREATE TABLE bans (
	room_id    INTEGER NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
	user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	by_id      INTEGER REFERENCES users (id) ON DELETE SET NULL,
	reason     TEXT    NOT NULL DEFAULT '',
	created_ms INTEGER NOT NULL,
	PRIMARY KEY (room_id, user_id)
) WITHOUT ROWID;

-- A mute: the user's sends in the room are refused until until_ms.
CREATE TABLE mutes (
	room_id    INTEGER NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
	user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	until_ms   INTEGER NOT NULL,
	by_id      INTEGER REFERENCES users (id) ON DELETE SET NULL,
	reason     TEXT    NOT NULL DEFAULT '',
	created_ms INTEGER NOT NULL,
	PRIMARY KEY (room_id, user_id)
) WITHOUT ROWID;

-- A disabled account: NULL while enabled. Disabling also deletes the
-- account's sessions; logging in is refused while it lasts.
ALTER TABLE users ADD COLUMN disabled_ms INTEGER;
ALTER TABLE users ADD COLUMN disabled_reason TEXT NOT NULL DEFAULT '';

-- The audit log: every moderation and admin action, newest last. Names,
-- not ids, so that a row outlives the accounts and rooms it names.
CREATE TABLE audit (
	id     INTEGER PRIMARY KEY AUTOINCREMENT,
	ts_ms  INTEGER NOT NULL,
	actor  TEXT    NOT NULL,  -- who: a user name, or "natterctl"
	action TEXT    NOT NULL,  -- kick, ban, unban, mute, unmute, ...
	target TEXT    NOT NULL DEFAULT '', -- the user acted on
	room   TEXT    NOT NULL DEFAULT '', -- "" when not about a room
	reason TEXT    NOT NULL DEFAULT '',
	detail TEXT    NOT NULL DEFAULT ''  -- e.g. a mute's seconds
);
