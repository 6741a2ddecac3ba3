/* testdir: scratch directories and source-tree paths shared by the unit
 * tests (linked from tests/unit/libtestdir.a). */
#ifndef NATTER_TESTDIR_H
#define NATTER_TESTDIR_H

#include <stddef.h>

/* A fresh directory $NATTER_TEST_TMP/NAME.XXXXXX (or under /tmp) in out:
 * 0, or -1 with the reason on stderr. */
int testdir_make(char *out, size_t cap, const char *name);
/* Removes dir and everything below it (best effort). */
void testdir_remove(const char *dir);
/* A source-tree directory: $VAR if set, else UP when PROBE is readable
 * (the tests run from the build directory), else HERE. */
const char *testdir_source(const char *var, const char *probe, const char *up,
			   const char *here);
/* db/ (schema.sql, migrations/) and web/ of the source tree. */
const char *testdir_db(void);
const char *testdir_web(void);

#endif
