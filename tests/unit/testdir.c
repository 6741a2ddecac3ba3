/* testdir: see testdir.h. */
#define _XOPEN_SOURCE 700 /* nftw, mkdtemp */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testdir.h"

int testdir_make(char *out, size_t cap, const char *name)
{
	const char *base = getenv("NATTER_TEST_TMP");

	if (!base || !*base)
		base = "/tmp";
	if (mkdir(base, 0700) != 0 && errno != EEXIST) {
		fprintf(stderr, "mkdir %s: %s\n", base, strerror(errno));
		return -1;
	}
	if ((size_t)snprintf(out, cap, "%s/%s.XXXXXX", base, name) >= cap) {
		fprintf(stderr, "testdir: path too long under %s\n", base);
		return -1;
	}
	if (!mkdtemp(out)) {
		fprintf(stderr, "mkdtemp %s: %s\n", out, strerror(errno));
		return -1;
	}
	return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag,
		    struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void testdir_remove(const char *dir)
{
	nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

const char *testdir_source(const char *var, const char *probe, const char *up,
			   const char *here)
{
	const char *d = getenv(var);
	if (d && *d)
		return d;
	return access(probe, R_OK) == 0 ? up : here;
}

const char *testdir_db(void)
{
	return testdir_source("NATTER_DB_DIR", "../db/schema.sql", "../db",
			      "db");
}

const char *testdir_web(void)
{
	return testdir_source("NATTER_WEB_ROOT", "../web/index.html", "../web",
			      "web");
}
