-- natter migration 007 (schema version 6 -> 7): private rooms, direct
-- conversations, invitations, mentions and read markers.
--
-- A room has a kind: 'public' (listed to everyone, anyone may join),
-- 'private' (listed to its members only, joined by invitation) or 'dm' (a
-- direct conversation: a fixed set of people, all members from the start,
-- nobody else ever). dm_key is a direct conversation's canonical key, its
-- people's user ids sorted and joined by commas: unique, so one set of
-- people has one conversation however often and from wherever it is asked
-- for.

ALTER TABLE rooms ADD COLUMN kind TEXT NOT NULL DEFAULT 'public'
	CHECK (kind IN ('public', 'private', 'dm'));
ALTER TABLE rooms ADD COLUMN dm_key TEXT;
CREATE UNIQUE INDEX rooms_dm_key ON rooms (dm_key) WHERE dm_key IS NOT NULL;

-- An invitation to a room: accepted by joining (the join deletes it).
CREATE TABLE invites (
	room_id    INTEGER NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
	user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	invited_by INTEGER REFERENCES users (id) ON DELETE SET NULL,
	created_ms INTEGER NOT NULL,
	PRIMARY KEY (room_id, user_id)
) WITHOUT ROWID;
CREATE INDEX invites_user ON invites (user_id);

-- Who an event mentions (`@name`, or every member for `@room`), written by
-- the store's writer in the event's own transaction: unread-mention counts
-- are counted from here.
CREATE TABLE mentions (
	event_id INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
	user_id  INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	PRIMARY KEY (user_id, event_id)
) WITHOUT ROWID;
CREATE INDEX mentions_event ON mentions (event_id);

-- How far each user has read each room: the newest event id read. Only
-- ever moves forward. Unread counts are the messages by others after it.
CREATE TABLE read_markers (
	user_id  INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	room_id  INTEGER NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
	event_id INTEGER NOT NULL,
	PRIMARY KEY (user_id, room_id)
) WITHOUT ROWID;
