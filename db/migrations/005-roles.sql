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
