/* store_contract: the behaviour every store backend must show, as one cmocka
 * group that runs against any implementation of store.h. A test program
 * gives a factory that opens a fresh, empty store (the schema's seed only)
 * and closes it; test_store runs the suite for SQLite, and another backend
 * runs the same file with its own factory. */
#ifndef NATTER_STORE_CONTRACT_H
#define NATTER_STORE_CONTRACT_H

#include "store/store.h"

struct store_contract_factory {
	const char *name; /* the backend, for cmocka's report */
	/* A fresh store, or NULL (the case fails). */
	struct store *(*open)(void *arg);
	/* Close it and remove what it left behind. */
	void (*close)(void *arg, struct store *st);
	void *arg;
};

/* Run every case against stores from f: cmocka's result (0: all passed). */
int store_contract_run(const struct store_contract_factory *f);

#endif
