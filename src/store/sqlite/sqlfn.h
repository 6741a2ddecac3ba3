/* store/sqlite/sqlfn: the SQL functions natter's schema calls (the search
 * index's triggers call natter_search_text(), migration 005). Every
 * connection that writes a natter database must register them: natterd's
 * own (open.c) and natterctl's, which imports and backs up the file
 * directly. */
#ifndef NATTER_SQLFN_H
#define NATTER_SQLFN_H

#include <sqlite3.h>

/* SQLITE_OK, or SQLite's error code. */
int sqlite_functions_register(sqlite3 *db);

#endif
