/* ctl: what natterctl does, one function per subcommand, for operators.
 * Accounts (create, disable, enable, reset-password, grant-admin,
 * revoke-admin) go through the store interface natterd uses (store.h), so
 * the rules are the same (the first account is an admin, disabling ends
 * the account's sessions) and each is written to the audit log with the
 * actor "natterctl". Backup, export, import, room list and stats read and
 * write the SQLite file directly: the backup API, and a table-by-table
 * copy that keeps every id.
 *
 * Safe while natterd runs: SQLite in WAL mode with a busy timeout, reads
 * in one snapshot. A change natterd caches (a disabled account's sessions)
 * reaches a running natterd within its session cache's lifetime
 * (session-cache-ms), not at once.
 *
 * Each function returns an exit status (enum ctl_exit) and prints what
 * went wrong on stderr, one line, prefixed "natterctl: ". */
#ifndef NATTER_CTL_H
#define NATTER_CTL_H

#include <stdbool.h>
#include <stdio.h>

/* Exit statuses (documented in natterctl(8)). */
enum ctl_exit {
	CTL_OK = 0,
	CTL_EUSAGE = 1,	   /* bad command line */
	CTL_EDB = 2,	   /* the database cannot be opened, read or written */
	CTL_ENOTFOUND = 3, /* no such user or room */
	CTL_ECONFLICT = 4, /* name taken; a backup file exists; import into a
			      database that is not empty */
	CTL_EINPUT = 5,	   /* bad input: password, import line, reason */
	CTL_EIO = 6	   /* a file (backup target, import source) failed */
};

struct ctl {
	const char *db;		   /* the database file */
	const char *db_dir;	   /* schema.sql and migrations/ */
	FILE *out;		   /* stdout */
	FILE *in;		   /* stdin, for passwords */
	const char *password_file; /* NULL: read the password from in */
	/* Argon2id cost, as natterd's defaults unless given */
	unsigned argon2_memory_kib, argon2_time;
};

int ctl_user_create(struct ctl *c, const char *name, bool admin);
int ctl_user_disable(struct ctl *c, const char *name, bool disabled,
		     const char *reason);
int ctl_user_reset_password(struct ctl *c, const char *name);
int ctl_user_admin(struct ctl *c, const char *name, bool admin);
int ctl_room_list(struct ctl *c);
/* The room named (any case) and everything of it (its events, their
 * mentions and reactions, members, roles, bans, mutes, invitations, read
 * markers, its files' uses) gone in one transaction, with an audit row;
 * the lobby cannot be deleted (CTL_EINPUT). A running natterd forgets the
 * room at its next start; until then its members' open streams get
 * nothing more from it and a send to it is refused. */
int ctl_room_delete(struct ctl *c, const char *name, const char *reason);
/* A consistent copy of the live database into file (which must not
 * exist), checked with PRAGMA integrity_check. */
int ctl_backup(struct ctl *c, const char *file);
/* JSON Lines on c->out, streamed, one snapshot: users (no password hash
 * unless secrets), rooms, members, moderators, bans, events with their
 * ids; room (NULL: all) limits it to one room and the users it names. */
int ctl_export(struct ctl *c, const char *room, bool secrets);
/* What ctl_export wrote, into a database with no users and no events
 * (created if missing), ids kept, in one transaction. */
int ctl_import(struct ctl *c, const char *file);
/* Counts as one JSON object on c->out. */
int ctl_stats(struct ctl *c);
/* The SQLite database (c->db) copied into the PostgreSQL database at url,
 * which must hold no users and no events, every id, session and file row
 * kept, in one transaction (ctl/migrate.c); the rows copied per table as
 * one JSON object on c->out. */
int ctl_migrate(struct ctl *c, const char *url);

#endif
