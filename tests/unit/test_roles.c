/* test_roles: the role cache through roles.h: owners stay owners (a
 * leave does not end ownership, naming an owner moderator changes
 * nothing), moderators come and go (named, revoked, gone with a leave),
 * rooms and users are kept apart, the admin set is replaced whole, and
 * many threads may read and write at once. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/roles.h"

static void test_owner_and_moderators(void **state)
{
	(void)state;
	struct roles *r = roles_new();
	assert_int_equal(roles_room(r, 1, 10), ROLES_NONE);
	roles_owner_set(r, 1, 10);
	roles_moderator_set(r, 1, 11, true);
	assert_int_equal(roles_room(r, 1, 10), ROLES_OWNER);
	assert_int_equal(roles_room(r, 1, 11), ROLES_MODERATOR);
	/* other rooms, other users: nothing */
	assert_int_equal(roles_room(r, 2, 10), ROLES_NONE);
	assert_int_equal(roles_room(r, 1, 12), ROLES_NONE);
	/* an owner named moderator, revoked, or leaving stays owner */
	roles_moderator_set(r, 1, 10, true);
	assert_int_equal(roles_room(r, 1, 10), ROLES_OWNER);
	roles_moderator_set(r, 1, 10, false);
	roles_member_left(r, 1, 10);
	assert_int_equal(roles_room(r, 1, 10), ROLES_OWNER);
	/* a moderator revoked, or leaving, is no longer one */
	roles_moderator_set(r, 1, 11, false);
	assert_int_equal(roles_room(r, 1, 11), ROLES_NONE);
	roles_moderator_set(r, 1, 11, true);
	roles_member_left(r, 1, 11);
	assert_int_equal(roles_room(r, 1, 11), ROLES_NONE);
	/* idempotent */
	roles_moderator_set(r, 1, 11, false);
	roles_member_left(r, 1, 11);
	assert_int_equal(roles_room(r, 1, 11), ROLES_NONE);
	roles_free(r);
	roles_free(NULL);
}

static void test_admins_replaced(void **state)
{
	(void)state;
	struct roles *r = roles_new();
	assert_false(roles_is_admin(r, 1));
	const int64_t a[] = {1, 7};
	roles_admins_replace(r, a, 2);
	assert_true(roles_is_admin(r, 1));
	assert_true(roles_is_admin(r, 7));
	assert_false(roles_is_admin(r, 2));
	const int64_t b[] = {2};
	roles_admins_replace(r, b, 1);
	assert_false(roles_is_admin(r, 1));
	assert_true(roles_is_admin(r, 2));
	roles_admins_replace(r, NULL, 0);
	assert_false(roles_is_admin(r, 2));
	roles_free(r);
}

/* Many rooms (more than buckets) and writers on several threads: every
 * entry lands where it belongs. */
#define THREADS 4
#define ROOMS 3000
struct job {
	struct roles *r;
	int id;
};

static void *writer(void *arg)
{
	struct job *j = arg;
	for (int64_t room = 1; room <= ROOMS; room++) {
		roles_owner_set(j->r, room, 100 + j->id);
		roles_moderator_set(j->r, room, 200 + j->id, true);
		roles_moderator_set(j->r, room, 300 + j->id, true);
		roles_member_left(j->r, room, 300 + j->id);
		(void)roles_is_admin(j->r, j->id);
	}
	return NULL;
}

static void test_many_threads(void **state)
{
	(void)state;
	struct roles *r = roles_new();
	pthread_t t[THREADS];
	struct job j[THREADS];
	for (int i = 0; i < THREADS; i++) {
		j[i] = (struct job){r, i};
		pthread_create(&t[i], NULL, writer, &j[i]);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	for (int64_t room = 1; room <= ROOMS; room++)
		for (int i = 0; i < THREADS; i++) {
			assert_int_equal(roles_room(r, room, 100 + i),
					 ROLES_OWNER);
			assert_int_equal(roles_room(r, room, 200 + i),
					 ROLES_MODERATOR);
			assert_int_equal(roles_room(r, room, 300 + i),
					 ROLES_NONE);
		}
	roles_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_owner_and_moderators),
	    cmocka_unit_test(test_admins_replaced),
	    cmocka_unit_test(test_many_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
