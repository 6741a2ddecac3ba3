/* tls_cert: certificates for natter's TLS terminator (tls.c): load a PEM
 * chain and key into a refcounted, read-only pair with its ready mbedTLS
 * server configuration, and make the --tls-self-signed pair. */
#ifndef NATTER_TLS_CERT_H
#define NATTER_TLS_CERT_H

#include <stddef.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_cache.h>
#include <mbedtls/ssl_ticket.h>

struct tls_cert;

/* --- a loaded pair --- */

/* Parse cert_file (PEM chain, leaf first) and key_file (ECDSA or RSA),
 * check that they belong together and the certificate has not expired, and
 * build a server mbedtls_ssl_config on them that draws random numbers from
 * drbg and uses ticket and cache (borrowed: they must outlive the pair).
 * Returns the pair with one reference (tls_cert_unref), or NULL with err
 * naming the file and the problem. */
struct tls_cert *tls_cert_load(const char *cert_file, const char *key_file,
			       mbedtls_ctr_drbg_context *drbg,
			       mbedtls_ssl_ticket_context *ticket,
			       mbedtls_ssl_cache_context *cache, char *err,
			       size_t errlen);
/* One more reference (any thread): returns cr. */
struct tls_cert *tls_cert_ref(struct tls_cert *cr);
/* Drop one; the last frees (and zeroizes the key). NULL is fine. */
void tls_cert_unref(struct tls_cert *cr);
/* The configuration for mbedtls_ssl_setup: valid while a reference is. */
const mbedtls_ssl_config *tls_cert_conf(const struct tls_cert *cr);
/* SHA-256 of the leaf certificate, "AB:CD:..." (95 characters). */
const char *tls_cert_fingerprint(const struct tls_cert *cr);
/* Log "tls certificate loaded" with cert_file, subject, expiry, sha256. */
void tls_cert_log(const struct tls_cert *cr, const char *cert_file);

/* --- self-signed --- */

/* For --tls-self-signed: make sure dir holds a self-signed ECDSA P-256
 * certificate for DNS:localhost and IP:127.0.0.1 and its key, creating
 * both when either is missing or the certificate has expired. *cert_path
 * and *key_path get the files' paths (caller frees). Returns 1 when it
 * created them, 0 when it kept them, -1 with err. */
int tls_cert_self_signed(const char *dir, char **cert_path, char **key_path,
			 char *err, size_t errlen);

#endif
