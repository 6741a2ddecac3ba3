-- natter migration 009 (schema version 8 -> 9): reactions.
--
-- Who reacted to which message with which emoji: one row each, kept by the
-- store's writer as the reaction events (add / remove) commit, so that a
-- history page aggregates a message's reactions without replaying events.
-- A deleted message loses its rows (the delete's store effect). emoji is
-- the emoji itself (a shortcode is stored as the emoji it stands for);
-- event_id is the reaction event that added the row (emoji are listed in
-- the order of their first use).

CREATE TABLE reactions (
	message_id INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
	emoji      TEXT NOT NULL,
	user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	event_id   INTEGER NOT NULL,
	ts_ms      INTEGER NOT NULL,
	PRIMARY KEY (message_id, emoji, user_id)
) WITHOUT ROWID;
