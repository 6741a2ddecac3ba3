/* auth: credentials and login tokens, with no SQL and no HTTP.
 *   - Argon2id password hashes (libargon2), verified in constant time;
 *   - 256-bit session tokens from mbedTLS's CTR-DRBG, and their SHA-256
 *     (only the hash is ever stored);
 *   - username and password rules;
 *   - slowing down repeated failed logins per address and per
 *     (account, address), and distributed guessing per account, without
 *     locking the owner out of an address they logged in from before;
 *   - a per-address registration rate and a cap on concurrent hashes.
 * Safe to use from any thread. */
#ifndef NATTER_AUTH_H
#define NATTER_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define AUTH_TOKEN_LEN 43      /* base64url of 32 bytes, no padding */
#define AUTH_HASH_MAX 128      /* encoded Argon2id string, with NUL */
#define AUTH_PASSWORD_MIN 8    /* characters */
#define AUTH_PASSWORD_MAX 1024 /* bytes */

struct auth;

struct auth_config {
	uint32_t memory_kib;	 /* Argon2id m (OWASP: 19456) */
	uint32_t time_cost;	 /* t (2) */
	uint32_t parallelism;	 /* p (1) */
	unsigned fail_max;	 /* failures tolerated per key per window */
	unsigned fail_window_s;	 /* window and longest lock-out */
	unsigned hash_max;	 /* concurrent Argon2 runs (0 is taken as 1) */
	unsigned register_burst; /* registrations at once per address */
	unsigned register_interval_s; /* then one per this; 0: no limit */
};

/* Too many Argon2 runs in progress: try again in a moment. */
#define AUTH_EBUSY (-2)

/* NULL if the random generator cannot be seeded. */
struct auth *auth_new(const struct auth_config *cfg);
void auth_free(struct auth *a);

/* Rules. */
bool auth_username_valid(const char *name);
/* At least AUTH_PASSWORD_MIN characters, at most AUTH_PASSWORD_MAX bytes,
 * valid UTF-8. */
bool auth_password_valid(const char *pw, size_t len);

/* Hash into out (AUTH_HASH_MAX bytes): 0, -1, or AUTH_EBUSY (hash_max
 * hashes running; nothing was done). */
int auth_password_hash(struct auth *a, const char *pw, size_t len,
		       char out[AUTH_HASH_MAX]);
/* 0 if pw matches encoded, -1 if not, AUTH_EBUSY as auth_password_hash.
 * encoded NULL (unknown user) runs a dummy verification of the same cost
 * and returns -1, so timing does not reveal which usernames exist. */
int auth_password_verify(struct auth *a, const char *encoded, const char *pw,
			 size_t len);

/* A fresh token (NUL-terminated, AUTH_TOKEN_LEN chars): 0 or -1. */
int auth_token_new(struct auth *a, char out[AUTH_TOKEN_LEN + 1]);
void auth_token_hash(const char *token, size_t len, uint8_t out[32]);
/* Random bytes from the CTR-DRBG: 0 or -1. */
int auth_random(struct auth *a, void *buf, size_t len);

/* Login throttling (the policy is in auth.c): keyed by client address, by
 * (account, address) and by account (case-insensitive). auth_login_check
 * returns 0 if a login may be tried now, or the number of seconds to wait
 * (for Retry-After). A success exempts its address from the account-wide
 * lock for 30 days. */
unsigned auth_login_check(struct auth *a, const char *user, const char *addr,
			  int64_t now_ms);
void auth_login_failed(struct auth *a, const char *user, const char *addr,
		       int64_t now_ms);
void auth_login_succeeded(struct auth *a, const char *user, const char *addr,
			  int64_t now_ms);
/* Registration rate per address: 0 and one registration counted, or the
 * seconds until the next is allowed (nothing counted). */
unsigned auth_register_check(struct auth *a, const char *addr, int64_t now_ms);

/* Sharing the throttles with other nodes (bus = redis://...): each failed
 * and each successful login, and each registration counted, is told to
 * fn (on the caller's thread, outside any lock; user may be NULL for a
 * registration, and for a failure without a name). The other nodes apply
 * it with auth_apply, as if it had happened there (without telling
 * again). So a guesser spreading tries over the nodes meets one count,
 * a few milliseconds late at most. Set fn before other threads use a. */
enum auth_share {
	AUTH_SHARE_FAILED = 'f',
	AUTH_SHARE_SUCCEEDED = 's',
	AUTH_SHARE_REGISTERED = 'r'
};
typedef void (*auth_share_fn)(void *arg, enum auth_share what, const char *user,
			      const char *addr);
void auth_share(struct auth *a, auth_share_fn fn, void *arg);
/* What another node told; a registration is counted without a refusal. */
void auth_apply(struct auth *a, enum auth_share what, const char *user,
		const char *addr, int64_t now_ms);

/* --- accounts and sessions in the store ---------------------------------
 * The API's way to them (it does not call the store itself): each has the
 * contract of the store_* call of the same name (store.h). */
int auth_user_create(struct store *st, const char *username, const char *pwhash,
		     int64_t *id);
int auth_user_by_name(struct store *st, const char *username,
		      struct store_user *out);
int auth_user_by_id(struct store *st, int64_t id, struct store_user *out);
int auth_user_update(struct store *st, int64_t id, const char *display_name,
		     const char *settings);
int auth_session_create(struct store *st, const uint8_t hash[32],
			int64_t user_id, int64_t expires_ms);
int auth_session_delete(struct store *st, const uint8_t hash[32]);
/* Who holds the session: STORE_OK with *user_id and username (answered
 * from the store's short cache), STORE_DISABLED (an admin disabled the
 * account: reason filled with why, "" when not said, cut to reason_len),
 * STORE_NOTFOUND, STORE_ERR. */
int auth_session_user(struct store *st, const uint8_t hash[32], int64_t now_ms,
		      int64_t *user_id, char username[33], char *reason,
		      size_t reason_len);

#endif
