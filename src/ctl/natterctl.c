/* natterctl: the operator's command line for a natter database. This
 * file parses the command line and dispatches to ctl.c, one function per
 * subcommand; it has no logic of its own. See natterctl(8). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/ctl.h"

static const char usage[] =
    "usage: natterctl [--db FILE] [--db-dir DIR] COMMAND ...\n"
    "  user create NAME [--admin] [--password-file F]  (else stdin)\n"
    "  user disable NAME [--reason R]\n"
    "  user enable NAME\n"
    "  user reset-password NAME [--password-file F]\n"
    "  user grant-admin NAME | user revoke-admin NAME\n"
    "  room list | room delete NAME [--reason R]\n"
    "  backup FILE\n"
    "  export [--room R] [--with-secrets]\n"
    "  import FILE             (- for stdin; a fresh database only)\n"
    "  stats\n"
    "  migrate postgresql://...  (into a fresh PostgreSQL database)\n"
    "Exit status: 0 ok, 1 usage, 2 database, 3 not found, 4 conflict,\n"
    "5 bad input, 6 file I/O. See natterctl(8).\n";

static int bad_usage(const char *why)
{
	fprintf(stderr, "natterctl: %s\n%s", why, usage);
	return CTL_EUSAGE;
}

/* The value of option name at argv[*i] (advancing *i), or NULL. */
static const char *opt_value(int argc, char **argv, int *i, const char *name)
{
	size_t n = strlen(name);
	if (strncmp(argv[*i], name, n) != 0)
		return NULL;
	if (argv[*i][n] == '=')
		return argv[*i] + n + 1;
	if (argv[*i][n] == '\0' && *i + 1 < argc)
		return argv[++*i];
	return NULL;
}

int main(int argc, char **argv)
{
	struct ctl c = {.db = "natter.db",
			.db_dir = NATTER_DATADIR "/db",
			.out = stdout,
			.in = stdin,
			.argon2_memory_kib = 19456,
			.argon2_time = 2};
	const char *reason = NULL, *room = NULL, *v;
	bool admin = false, secrets = false;
	char *words[4];
	int nwords = 0;

	for (int i = 1; i < argc; i++) {
		if ((v = opt_value(argc, argv, &i, "--db")))
			c.db = v;
		else if ((v = opt_value(argc, argv, &i, "--db-dir")))
			c.db_dir = v;
		else if ((v = opt_value(argc, argv, &i, "--password-file")))
			c.password_file = v;
		else if ((v = opt_value(argc, argv, &i, "--reason")))
			reason = v;
		else if ((v = opt_value(argc, argv, &i, "--room")))
			room = v;
		else if ((v = opt_value(argc, argv, &i, "--argon2-memory-kib")))
			c.argon2_memory_kib = (unsigned)strtoul(v, NULL, 10);
		else if ((v = opt_value(argc, argv, &i, "--argon2-time")))
			c.argon2_time = (unsigned)strtoul(v, NULL, 10);
		else if (strcmp(argv[i], "--admin") == 0)
			admin = true;
		else if (strcmp(argv[i], "--with-secrets") == 0)
			secrets = true;
		else if (strcmp(argv[i], "--help") == 0 ||
			 strcmp(argv[i], "-h") == 0) {
			fputs(usage, stdout);
			return CTL_OK;
		} else if (argv[i][0] == '-' && argv[i][1] == '-')
			return bad_usage("unknown option or missing value");
		else if (nwords == 4)
			return bad_usage("too many arguments");
		else
			words[nwords++] = argv[i];
	}
	if (c.argon2_memory_kib < 8 || c.argon2_time < 1)
		return bad_usage("bad Argon2 cost");
	if (nwords == 0)
		return bad_usage("no command");
	const char *cmd = words[0], *sub = nwords > 1 ? words[1] : "";
	const char *arg = nwords > 2 ? words[2] : NULL;

	if (strcmp(cmd, "user") == 0) {
		if (!arg || nwords != 3)
			return bad_usage("user needs a subcommand and a name");
		if (strcmp(sub, "create") == 0)
			return ctl_user_create(&c, arg, admin);
		if (strcmp(sub, "disable") == 0)
			return ctl_user_disable(&c, arg, true, reason);
		if (strcmp(sub, "enable") == 0)
			return ctl_user_disable(&c, arg, false, NULL);
		if (strcmp(sub, "reset-password") == 0)
			return ctl_user_reset_password(&c, arg);
		if (strcmp(sub, "grant-admin") == 0)
			return ctl_user_admin(&c, arg, true);
		if (strcmp(sub, "revoke-admin") == 0)
			return ctl_user_admin(&c, arg, false);
		return bad_usage("unknown user subcommand");
	}
	if (strcmp(cmd, "room") == 0 && strcmp(sub, "list") == 0 && nwords == 2)
		return ctl_room_list(&c);
	if (strcmp(cmd, "room") == 0 && strcmp(sub, "delete") == 0 && arg &&
	    nwords == 3)
		return ctl_room_delete(&c, arg, reason);
	if (strcmp(cmd, "backup") == 0 && nwords == 2)
		return ctl_backup(&c, sub);
	if (strcmp(cmd, "export") == 0 && nwords == 1)
		return ctl_export(&c, room, secrets);
	if (strcmp(cmd, "import") == 0 && nwords == 2)
		return ctl_import(&c, sub);
	if (strcmp(cmd, "stats") == 0 && nwords == 1)
		return ctl_stats(&c);
	if (strcmp(cmd, "migrate") == 0 && nwords == 2)
		return ctl_migrate(&c, sub);
	return bad_usage("unknown command or wrong arguments");
}
