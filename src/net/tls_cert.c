/* tls_cert: the certificate side of natter's TLS. It loads a PEM chain and
 * key into one immutable, refcounted struct tls_cert holding the ready
 * mbedtls_ssl_config built around them (TLS 1.2, ECDHE with AEAD ciphers in
 * the server's order, ALPN, tickets, session cache) and its SHA-256
 * fingerprint, and it makes the --tls-self-signed pair. tls.c holds the
 * pair in use and swaps it on reload; connections keep a reference to the
 * pair they started with.
 *
 * It deliberately does no I/O on sockets, keeps no "current" pair of its
 * own, and verifies no client certificates. Thread safety: a struct
 * tls_cert is read-only after tls_cert_load, so any thread may use it; the
 * reference count is atomic. The RNG, ticket keys and session cache the
 * config points to are tls.c's and lock themselves
 * (MBEDTLS_THREADING_PTHREAD). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/asn1write.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>
#include <mbedtls/x509_crt.h>

#include "net/tls_cert.h"
#include "util/log.h"
#include "util/util.h"

#define TLS_SELF_CERT "natter-selfsigned-cert.pem"
#define TLS_SELF_KEY "natter-selfsigned-key.pem"
#define TLS_SELF_DAYS 365

/* Server order (mbedTLS 2.28 servers ignore the client's preference unless
 * built with MBEDTLS_SSL_SRV_RESPECT_CLIENT_PREFERENCE, which Debian's is
 * not): Mozilla's "intermediate" list for TLS 1.2. */
static const int suites[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    0,
};
static const mbedtls_ecp_group_id curves[] = {
    MBEDTLS_ECP_DP_CURVE25519,
    MBEDTLS_ECP_DP_SECP256R1,
    MBEDTLS_ECP_DP_SECP384R1,
    MBEDTLS_ECP_DP_NONE,
};
static const int sig_hashes[] = {
    MBEDTLS_MD_SHA256,
    MBEDTLS_MD_SHA384,
    MBEDTLS_MD_SHA512,
    MBEDTLS_MD_NONE,
};
static const char *alpn[] = {"http/1.1", NULL};

struct tls_cert {
	atomic_uint refs;
	mbedtls_ssl_config conf;
	mbedtls_x509_crt chain;
	mbedtls_pk_context key;
	char sha256[96];
};

static const char *tls_strerror(int rc, char *buf, size_t len)
{
	mbedtls_strerror(rc, buf, len);
	return buf;
}

/* --- a loaded pair ----------------------------------------------------- */

static void fingerprint_of(const mbedtls_x509_crt *crt, char out[96])
{
	unsigned char d[32];

	mbedtls_sha256_ret(crt->raw.p, crt->raw.len, d, 0);
	for (int i = 0; i < 32; i++)
		snprintf(out + 3 * i, 4, "%02X%s", d[i], i < 31 ? ":" : "");
}

struct tls_cert *tls_cert_ref(struct tls_cert *cr)
{
	atomic_fetch_add(&cr->refs, 1);
	return cr;
}

void tls_cert_unref(struct tls_cert *cr)
{
	if (!cr || atomic_fetch_sub(&cr->refs, 1) != 1)
		return;
	mbedtls_ssl_config_free(&cr->conf);
	mbedtls_x509_crt_free(&cr->chain);
	mbedtls_pk_free(&cr->key); /* zeroizes the key */
	free(cr);
}

struct tls_cert *tls_cert_load(const char *cert_file, const char *key_file,
			       mbedtls_ctr_drbg_context *drbg,
			       mbedtls_ssl_ticket_context *ticket,
			       mbedtls_ssl_cache_context *cache, char *err,
			       size_t errlen)
{
	char why[128];
	struct tls_cert *cr = xcalloc(1, sizeof(*cr));
	int rc;

	atomic_init(&cr->refs, 1);
	mbedtls_ssl_config_init(&cr->conf);
	mbedtls_x509_crt_init(&cr->chain);
	mbedtls_pk_init(&cr->key);

	rc = mbedtls_x509_crt_parse_file(&cr->chain, cert_file);
	if (rc != 0) {
		snprintf(err, errlen, "tls-cert '%s': %s", cert_file,
			 rc > 0 ? "some certificates in it cannot be parsed"
				: tls_strerror(rc, why, sizeof(why)));
		goto fail;
	}
	if (mbedtls_x509_time_is_past(&cr->chain.valid_to)) {
		snprintf(err, errlen, "tls-cert '%s': the certificate expired",
			 cert_file);
		goto fail;
	}
	rc = mbedtls_pk_parse_keyfile(&cr->key, key_file, NULL);
	if (rc != 0) {
		snprintf(err, errlen, "tls-key '%s': %s", key_file,
			 tls_strerror(rc, why, sizeof(why)));
		goto fail;
	}
	if (!mbedtls_pk_can_do(&cr->key, MBEDTLS_PK_ECDSA) &&
	    !mbedtls_pk_can_do(&cr->key, MBEDTLS_PK_RSA)) {
		snprintf(err, errlen, "tls-key '%s': not an ECDSA or RSA key",
			 key_file);
		goto fail;
	}
	if (mbedtls_pk_check_pair(&cr->chain.pk, &cr->key) != 0) {
		snprintf(err, errlen,
			 "tls-key '%s' does not belong to tls-cert '%s'",
			 key_file, cert_file);
		goto fail;
	}

	rc = mbedtls_ssl_config_defaults(&cr->conf, MBEDTLS_SSL_IS_SERVER,
					 MBEDTLS_SSL_TRANSPORT_STREAM,
					 MBEDTLS_SSL_PRESET_DEFAULT);
	if (rc == 0)
		rc = mbedtls_ssl_conf_own_cert(&cr->conf, &cr->chain, &cr->key);
	if (rc == 0)
		rc = mbedtls_ssl_conf_alpn_protocols(&cr->conf, alpn);
	if (rc != 0) {
		snprintf(err, errlen, "tls: cannot configure mbedTLS: %s",
			 tls_strerror(rc, why, sizeof(why)));
		goto fail;
	}
	mbedtls_ssl_conf_rng(&cr->conf, mbedtls_ctr_drbg_random, drbg);
	mbedtls_ssl_conf_min_version(&cr->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
				     MBEDTLS_SSL_MINOR_VERSION_3);
	mbedtls_ssl_conf_max_version(&cr->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
				     MBEDTLS_SSL_MINOR_VERSION_3);
	mbedtls_ssl_conf_ciphersuites(&cr->conf, suites);
	mbedtls_ssl_conf_curves(&cr->conf, curves);
	mbedtls_ssl_conf_sig_hashes(&cr->conf, sig_hashes);
	mbedtls_ssl_conf_renegotiation(&cr->conf,
				       MBEDTLS_SSL_RENEGOTIATION_DISABLED);
	mbedtls_ssl_conf_session_tickets_cb(&cr->conf, mbedtls_ssl_ticket_write,
					    mbedtls_ssl_ticket_parse, ticket);
	mbedtls_ssl_conf_session_cache(&cr->conf, cache, mbedtls_ssl_cache_get,
				       mbedtls_ssl_cache_set);
	fingerprint_of(&cr->chain, cr->sha256);
	return cr;
fail:
	tls_cert_unref(cr);
	return NULL;
}

const mbedtls_ssl_config *tls_cert_conf(const struct tls_cert *cr)
{
	return &cr->conf;
}

const char *tls_cert_fingerprint(const struct tls_cert *cr)
{
	return cr->sha256;
}

void tls_cert_log(const struct tls_cert *cr, const char *cert_file)
{
	char subject[256];

	if (mbedtls_x509_dn_gets(subject, sizeof(subject), &cr->chain.subject) <
	    0)
		snprintf(subject, sizeof(subject), "?");
	log_info("tls certificate loaded path=%s subject=\"%s\" "
		 "not_after=%04d-%02d-%02d sha256=%s",
		 cert_file, subject, cr->chain.valid_to.year,
		 cr->chain.valid_to.mon, cr->chain.valid_to.day, cr->sha256);
}

/* --- self-signed pair -------------------------------------------------- */

/* subjectAltName: DNS:localhost, IP:127.0.0.1; DER at the end of buf.
 * Returns its length, or a negative mbedTLS error. */
static int san_der(unsigned char *buf, size_t size)
{
	static const unsigned char ip[4] = {127, 0, 0, 1};
	static const char dns[] = "localhost";
	unsigned char *p = buf + size;
	size_t len = 0;
	int ret;

	MBEDTLS_ASN1_CHK_ADD(
	    len, mbedtls_asn1_write_raw_buffer(&p, buf, ip, sizeof(ip)));
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(&p, buf, sizeof(ip)));
	MBEDTLS_ASN1_CHK_ADD(
	    len,
	    mbedtls_asn1_write_tag(&p, buf, MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7));
	MBEDTLS_ASN1_CHK_ADD(
	    len, mbedtls_asn1_write_raw_buffer(
		     &p, buf, (const unsigned char *)dns, strlen(dns)));
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(&p, buf, strlen(dns)));
	MBEDTLS_ASN1_CHK_ADD(
	    len,
	    mbedtls_asn1_write_tag(&p, buf, MBEDTLS_ASN1_CONTEXT_SPECIFIC | 2));
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(&p, buf, len));
	MBEDTLS_ASN1_CHK_ADD(len,
			     mbedtls_asn1_write_tag(&p, buf,
						    MBEDTLS_ASN1_CONSTRUCTED |
							MBEDTLS_ASN1_SEQUENCE));
	return (int)len;
}

/* extKeyUsage: serverAuth. */
static int eku_der(unsigned char *buf, size_t size)
{
	unsigned char *p = buf + size;
	size_t len = 0;
	int ret;

	MBEDTLS_ASN1_CHK_ADD(
	    len,
	    mbedtls_asn1_write_oid(&p, buf, MBEDTLS_OID_SERVER_AUTH,
				   MBEDTLS_OID_SIZE(MBEDTLS_OID_SERVER_AUTH)));
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(&p, buf, len));
	MBEDTLS_ASN1_CHK_ADD(len,
			     mbedtls_asn1_write_tag(&p, buf,
						    MBEDTLS_ASN1_CONSTRUCTED |
							MBEDTLS_ASN1_SEQUENCE));
	return (int)len;
}

/* A non-critical extension whose DER value der() writes at the end of a
 * buffer (returning its length, or an mbedTLS error). */
static int add_extension(mbedtls_x509write_cert *crt, const char *oid,
			 size_t oid_len, int (*der)(unsigned char *, size_t))
{
	unsigned char buf[128];
	int n = der(buf, sizeof(buf));
	if (n < 0)
		return n;
	return mbedtls_x509write_crt_set_extension(
	    crt, oid, oid_len, 0, buf + sizeof(buf) - n, (size_t)n);
}

/* Write data to path through a temporary file and rename, with mode. */
static int write_file(const char *path, const unsigned char *data, size_t len,
		      mode_t mode, char *err, size_t errlen)
{
	char tmp[PATH_MAX];
	int fd = -1;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
		errno = ENAMETOOLONG;
		goto fail;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
		  mode);
	if (fd < 0 || fchmod(fd, mode) < 0)
		goto fail;
	for (size_t off = 0; off < len;) {
		ssize_t n = write(fd, data + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto fail;
		off += (size_t)n;
	}
	if (fsync(fd) < 0 || close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) < 0)
		goto fail;
	return 0;
fail:
	snprintf(err, errlen, "tls-self-signed: cannot write '%s': %s", path,
		 strerror(errno));
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return -1;
}

/* An existing pair is kept when both files parse, belong together and the
 * certificate has not expired. */
static bool self_signed_usable(const char *cert_path, const char *key_path)
{
	mbedtls_x509_crt crt;
	mbedtls_pk_context key;
	bool ok;

	mbedtls_x509_crt_init(&crt);
	mbedtls_pk_init(&key);
	ok = mbedtls_x509_crt_parse_file(&crt, cert_path) == 0 &&
	     !mbedtls_x509_time_is_past(&crt.valid_to) &&
	     mbedtls_pk_parse_keyfile(&key, key_path, NULL) == 0 &&
	     mbedtls_pk_check_pair(&crt.pk, &key) == 0;
	mbedtls_pk_free(&key);
	mbedtls_x509_crt_free(&crt);
	return ok;
}

static int self_signed_create(const char *cert_path, const char *key_path,
			      char *err, size_t errlen)
{
	static const char pers[] = "natterd self-signed";
	static const char name[] = "CN=localhost,O=natter self-signed";
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
	mbedtls_pk_context key;
	mbedtls_x509write_cert crt;
	mbedtls_mpi serial;
	unsigned char sbytes[16], pem[4096];
	char from[16], to[16], why[128];
	time_t now = time(NULL);
	struct tm tm;
	int rc, ret = -1;

	mbedtls_entropy_init(&entropy);
	mbedtls_ctr_drbg_init(&drbg);
	mbedtls_pk_init(&key);
	mbedtls_x509write_crt_init(&crt);
	mbedtls_mpi_init(&serial);

	rc = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy,
				   (const unsigned char *)pers, sizeof(pers));
	if (rc == 0)
		rc = mbedtls_pk_setup(
		    &key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
	if (rc == 0)
		rc = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1,
					 mbedtls_pk_ec(key),
					 mbedtls_ctr_drbg_random, &drbg);
	if (rc == 0)
		rc = mbedtls_ctr_drbg_random(&drbg, sbytes, sizeof(sbytes));
	if (rc != 0)
		goto mbed_fail;
	sbytes[0] &= 0x7f; /* a positive serial */
	sbytes[0] |= 0x01;
	rc = mbedtls_mpi_read_binary(&serial, sbytes, sizeof(sbytes));
	if (rc != 0)
		goto mbed_fail;

	time_t t0 = now - 86400, t1 = now + (time_t)TLS_SELF_DAYS * 86400;
	strftime(from, sizeof(from), "%Y%m%d%H%M%S", gmtime_r(&t0, &tm));
	strftime(to, sizeof(to), "%Y%m%d%H%M%S", gmtime_r(&t1, &tm));

	mbedtls_x509write_crt_set_version(&crt, MBEDTLS_X509_CRT_VERSION_3);
	mbedtls_x509write_crt_set_md_alg(&crt, MBEDTLS_MD_SHA256);
	mbedtls_x509write_crt_set_subject_key(&crt, &key);
	mbedtls_x509write_crt_set_issuer_key(&crt, &key);
	rc = mbedtls_x509write_crt_set_serial(&crt, &serial);
	if (rc == 0)
		rc = mbedtls_x509write_crt_set_validity(&crt, from, to);
	if (rc == 0)
		rc = mbedtls_x509write_crt_set_subject_name(&crt, name);
	if (rc == 0)
		rc = mbedtls_x509write_crt_set_issuer_name(&crt, name);
	if (rc == 0)
		rc = mbedtls_x509write_crt_set_basic_constraints(&crt, 0, -1);
	if (rc == 0)
		rc = mbedtls_x509write_crt_set_key_usage(
		    &crt, MBEDTLS_X509_KU_DIGITAL_SIGNATURE);
	if (rc == 0)
		rc = mbedtls_x509write_crt_set_subject_key_identifier(&crt);
	if (rc == 0)
		rc = add_extension(
		    &crt, MBEDTLS_OID_SUBJECT_ALT_NAME,
		    MBEDTLS_OID_SIZE(MBEDTLS_OID_SUBJECT_ALT_NAME), san_der);
	if (rc == 0)
		rc = add_extension(
		    &crt, MBEDTLS_OID_EXTENDED_KEY_USAGE,
		    MBEDTLS_OID_SIZE(MBEDTLS_OID_EXTENDED_KEY_USAGE), eku_der);
	if (rc != 0)
		goto mbed_fail;

	/* The key first: a certificate without its key is useless. */
	rc = mbedtls_pk_write_key_pem(&key, pem, sizeof(pem));
	if (rc != 0)
		goto mbed_fail;
	if (write_file(key_path, pem, strlen((char *)pem), 0600, err, errlen) <
	    0)
		goto fail;
	rc = mbedtls_x509write_crt_pem(&crt, pem, sizeof(pem),
				       mbedtls_ctr_drbg_random, &drbg);
	if (rc != 0)
		goto mbed_fail;
	if (write_file(cert_path, pem, strlen((char *)pem), 0644, err, errlen) <
	    0)
		goto fail;
	ret = 0;
	goto fail;
mbed_fail:
	snprintf(err, errlen,
		 "tls-self-signed: cannot create a certificate: %s",
		 tls_strerror(rc, why, sizeof(why)));
fail:
	secure_zero(pem, sizeof(pem));
	mbedtls_mpi_free(&serial);
	mbedtls_x509write_crt_free(&crt);
	mbedtls_pk_free(&key);
	mbedtls_ctr_drbg_free(&drbg);
	mbedtls_entropy_free(&entropy);
	return ret;
}

int tls_cert_self_signed(const char *dir, char **cert_path, char **key_path,
			 char *err, size_t errlen)
{
	size_t n = strlen(dir) + sizeof(TLS_SELF_CERT) + sizeof(TLS_SELF_KEY);
	char *cert = xmalloc(n), *key = xmalloc(n);

	snprintf(cert, n, "%s/%s", dir, TLS_SELF_CERT);
	snprintf(key, n, "%s/%s", dir, TLS_SELF_KEY);
	*cert_path = cert;
	*key_path = key;
	if (self_signed_usable(cert, key))
		return 0;
	if (self_signed_create(cert, key, err, errlen) < 0) {
		free(cert);
		free(key);
		*cert_path = *key_path = NULL;
		return -1;
	}
	return 1;
}
