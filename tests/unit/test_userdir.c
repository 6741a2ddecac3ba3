/* test_userdir: the user directory through its header: names found in
 * any case with their canonical spelling, a re-added name keeps one
 * entry, invalid names and lengths are refused, and the table keeps every
 * entry across its growth. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/userdir.h"

static void test_find_any_case(void **state)
{
	(void)state;
	struct userdir *d = userdir_new();
	int64_t id = 0;
	char canon[33];

	userdir_add(d, 7, "Bob");
	assert_int_equal(userdir_find(d, "bob", 3, &id, canon), 0);
	assert_int_equal(id, 7);
	assert_string_equal(canon, "Bob");
	assert_int_equal(userdir_find(d, "BOBBY", 3, &id, NULL), 0);
	assert_int_equal(userdir_find(d, "bo", 2, &id, canon), -1);
	assert_int_equal(userdir_find(d, "bobby", 5, &id, canon), -1);
	userdir_add(d, 7, "Bob");
	assert_int_equal(userdir_count(d), 1);
	userdir_free(d);
	userdir_free(NULL);
}

static void test_refuses_bad_names(void **state)
{
	(void)state;
	struct userdir *d = userdir_new();
	int64_t id;

	userdir_add(d, 1, "has space");
	userdir_add(d, 2, "");
	userdir_add(d, 3, NULL);
	assert_int_equal(userdir_count(d), 0);
	userdir_add(d, 4, "ok");
	assert_int_equal(userdir_find(d, "ok ", 3, &id, NULL), -1);
	assert_int_equal(userdir_find(d, "", 0, &id, NULL), -1);
	char longname[40];
	memset(longname, 'a', sizeof(longname));
	assert_int_equal(userdir_find(d, longname, sizeof(longname), &id, NULL),
			 -1);
	userdir_free(d);
}

static void test_grows(void **state)
{
	(void)state;
	struct userdir *d = userdir_new();
	char name[33];
	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "user%d", i);
		userdir_add(d, i + 1, name);
	}
	assert_int_equal(userdir_count(d), 5000);
	for (int i = 0; i < 5000; i++) {
		int64_t id = 0;
		snprintf(name, sizeof(name), "USER%d", i);
		assert_int_equal(userdir_find(d, name, strlen(name), &id, NULL),
				 0);
		assert_int_equal(id, i + 1);
	}
	userdir_free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_find_any_case),
	    cmocka_unit_test(test_refuses_bad_names),
	    cmocka_unit_test(test_grows),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
