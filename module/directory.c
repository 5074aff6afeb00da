/* directory: the libldap side of the command line (and later reconcile and
 * PAM): connect through ldap_uri, find one account safely, and capture in a
 * job what the worker needs.  Values from users reach filters only escaped. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "directory.h"
#include "config.h"
#include "job.h"
#include "log.h"
#include "rules.h"

#define DIRECTORY_PW_MAX 1024
#define DIRECTORY_VALUE_MAX 4096   /* longer directory values are ignored */
#define DIRECTORY_EMAILS_MAX 64
#define DIRECTORY_USER_MAX 1024    /* a longer USER is refused, never searched */

/* cyrus-sasl's sasl_interact_t, whose layout has been stable since SASL v2;
 * declared here so the build does not need libsasl2-dev for one callback. */
struct directory_sasl_interact {
	unsigned long id;
	const char *challenge;
	const char *prompt;
	const char *defresult;
	const void *result;
	unsigned len;
};


static void directory_ld_error(LDAP *ld, int rc, const char *what, char *err, size_t errlen)
{
	char *diag = NULL;

	if (ld)
		ldap_get_option(ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &diag);
	if (diag && *diag)
		snprintf(err, errlen, "%s: %s (%s)", what, ldap_err2string(rc), diag);
	else
		snprintf(err, errlen, "%s: %s", what, ldap_err2string(rc));
	if (diag)
		ldap_memfree(diag);
}

/* SASL EXTERNAL (and other mechanisms that need no secret) asks at most for
 * an authorization identity: answer every prompt with its default, never
 * with anything typed. */
static int directory_sasl_interact(LDAP *ld, unsigned flags, void *defaults, void *in)
{
	struct directory_sasl_interact *it = in;

	(void)ld;
	(void)flags;
	(void)defaults;
	for (; it && it->id != 0; it++) {
		const char *v = it->defresult ? it->defresult : "";
		it->result = v;
		it->len = (unsigned)strlen(v);
	}
	return LDAP_SUCCESS;
}

/* The bind password file gets the checks of the key file, except that the
 * directory server's group may read it. */
static int directory_read_password(const char *path, char *buf, size_t buflen,
                                   size_t *len, char *err, size_t errlen)
{
	struct stat st;
	ssize_t n;
	size_t got = 0;
	int fd, rc = -1;

	fd = open(path, O_RDONLY | O_NOCTTY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		snprintf(err, errlen, "ldap_bindpw_file %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "ldap_bindpw_file %s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "ldap_bindpw_file %s: not a regular file", path);
		goto out;
	}
	if (st.st_mode & (S_IROTH | S_IWOTH | S_IWGRP)) {
		snprintf(err, errlen, "ldap_bindpw_file %s: mode %04o is readable by others or "
		         "writable by group/others (chmod 0600 or 0640)", path,
		         (unsigned)(st.st_mode & 07777));
		goto out;
	}
	for (;;) {
		if (got == buflen) {
			snprintf(err, errlen, "ldap_bindpw_file %s: longer than %zu bytes", path,
			         buflen - 1);
			goto out;
		}
		n = read(fd, buf + got, buflen - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "ldap_bindpw_file %s: %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	/* Only the line end goes: a password may begin or end with a space. */
	while (got > 0 && (buf[got - 1] == '\n' || buf[got - 1] == '\r'))
		got--;
	if (got == 0) {
		snprintf(err, errlen, "ldap_bindpw_file %s: empty password", path);
		goto out;
	}
	if (memchr(buf, '\0', got) || memchr(buf, '\n', got)) {
		snprintf(err, errlen, "ldap_bindpw_file %s: more than one line or a NUL byte", path);
		goto out;
	}
	*len = got;
	rc = 0;
out:
	if (rc < 0)
		secret_wipe(buf, buflen);
	close(fd);
	return rc;
}

int directory_connect(const struct config *cfg, LDAP **out, char *err, size_t errlen)
{
	LDAP *ld = NULL;
	struct timeval tv;
	struct berval cred = { 0, NULL };
	char pw[DIRECTORY_PW_MAX];
	size_t pwlen = 0;
	int version = LDAP_VERSION3;
	int rc, ret = -1;

	*out = NULL;
	memset(pw, 0, sizeof(pw));
	if (!cfg->ldap_uri || !*cfg->ldap_uri) {
		snprintf(err, errlen, "ldap_uri is not set");
		return -1;
	}
	rc = ldap_initialize(&ld, cfg->ldap_uri);
	if (rc != LDAP_SUCCESS) {
		snprintf(err, errlen, "ldap_uri %s: %s", cfg->ldap_uri, ldap_err2string(rc));
		goto out;
	}
	tv.tv_sec = cfg->ldap_timeout > 0 ? cfg->ldap_timeout : 10;
	tv.tv_usec = 0;
	if (ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &version) != LDAP_OPT_SUCCESS ||
	    ldap_set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, &tv) != LDAP_OPT_SUCCESS ||
	    ldap_set_option(ld, LDAP_OPT_TIMEOUT, &tv) != LDAP_OPT_SUCCESS ||
	    ldap_set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF) != LDAP_OPT_SUCCESS) {
		snprintf(err, errlen, "ldap_uri %s: cannot set connection options", cfg->ldap_uri);
		goto out;
	}

	if (cfg->ldap_sasl_mech && *cfg->ldap_sasl_mech) {
		rc = ldap_sasl_interactive_bind_s(ld, NULL, cfg->ldap_sasl_mech, NULL, NULL,
		                                  LDAP_SASL_QUIET, directory_sasl_interact, NULL);
		if (rc != LDAP_SUCCESS) {
			char what[512];
			snprintf(what, sizeof(what), "%s: SASL %s bind", cfg->ldap_uri,
			         cfg->ldap_sasl_mech);
			directory_ld_error(ld, rc, what, err, errlen);
			goto out;
		}
	} else if (cfg->ldap_binddn && *cfg->ldap_binddn) {
		if (!cfg->ldap_bindpw_file || !*cfg->ldap_bindpw_file) {
			snprintf(err, errlen, "ldap_binddn is set but ldap_bindpw_file is not");
			goto out;
		}
		if (directory_read_password(cfg->ldap_bindpw_file, pw, sizeof(pw), &pwlen,
		                            err, errlen) < 0)
			goto out;
		cred.bv_val = pw;
		cred.bv_len = pwlen;
		rc = ldap_sasl_bind_s(ld, cfg->ldap_binddn, LDAP_SASL_SIMPLE, &cred,
		                      NULL, NULL, NULL);
		if (rc != LDAP_SUCCESS) {
			char what[512];
			snprintf(what, sizeof(what), "%s: bind as %s", cfg->ldap_uri, cfg->ldap_binddn);
			directory_ld_error(ld, rc, what, err, errlen);
			goto out;
		}
	} else {
		/* An explicit anonymous bind opens the connection now, so an
		 * unreachable server is reported here and not at the first read. */
		rc = ldap_sasl_bind_s(ld, NULL, LDAP_SASL_SIMPLE, &cred, NULL, NULL, NULL);
		if (rc != LDAP_SUCCESS) {
			char what[512];
			snprintf(what, sizeof(what), "%s: anonymous bind", cfg->ldap_uri);
			directory_ld_error(ld, rc, what, err, errlen);
			goto out;
		}
	}
	*out = ld;
	ld = NULL;
	ret = 0;
out:
	secret_wipe(pw, sizeof(pw));
	if (ld)
		ldap_unbind_ext_s(ld, NULL, NULL);
	return ret;
}

void directory_close(LDAP *ld)
{
	if (ld)
		ldap_unbind_ext_s(ld, NULL, NULL);
}

char *directory_filter_escape(const char *value)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = 0;
	const unsigned char *p;
	char *out, *o;

	if (!value)
		return NULL;
	for (p = (const unsigned char *)value; *p; p++)
		n += (*p == '*' || *p == '(' || *p == ')' || *p == '\\') ? 3 : 1;
	out = malloc(n + 1);
	if (!out)
		return NULL;
	o = out;
	for (p = (const unsigned char *)value; *p; p++) {
		if (*p == '*' || *p == '(' || *p == ')' || *p == '\\') {
			*o++ = '\\';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 0xf];
		} else {
			*o++ = (char)*p;
		}
	}
	*o = '\0';
	return out;
}

static int directory_list_add(char ***list, size_t *n, const char *s)
{
	char **v;
	size_t i;

	for (i = 0; i < *n; i++)
		if (strcasecmp((*list)[i], s) == 0)
			return 0;
	v = realloc(*list, (*n + 2) * sizeof(*v));
	if (!v)
		return -1;
	*list = v;
	v[*n] = strdup(s);
	if (!v[*n])
		return -1;
	(*n)++;
	v[*n] = NULL;
	return 0;
}

char **directory_job_attrs(const struct config *cfg)
{
	char **list = NULL;
	size_t n = 0;
	int bad = 0;
	char *const *e;

	bad |= directory_list_add(&list, &n, "uid");
	bad |= directory_list_add(&list, &n, "entryUUID");
	if (cfg->login_attribute && *cfg->login_attribute)
		bad |= directory_list_add(&list, &n, cfg->login_attribute);
	if (cfg->user_id_attribute && *cfg->user_id_attribute)
		bad |= directory_list_add(&list, &n, cfg->user_id_attribute);
	for (e = cfg->email_attributes; e && *e; e++)
		bad |= directory_list_add(&list, &n, *e);
	if (bad) {
		config_list_free(list);
		return NULL;
	}
	return list;
}

/* A copy of a directory value, or NULL when it is not text we can carry
 * (embedded NUL, absurd length): such values are skipped, not truncated. */
static char *directory_value_dup(const struct berval *bv)
{
	char *s;

	if (!bv || !bv->bv_val || bv->bv_len == 0 || bv->bv_len > DIRECTORY_VALUE_MAX)
		return NULL;
	if (memchr(bv->bv_val, '\0', bv->bv_len))
		return NULL;
	s = malloc(bv->bv_len + 1);
	if (!s)
		return NULL;
	memcpy(s, bv->bv_val, bv->bv_len);
	s[bv->bv_len] = '\0';
	return s;
}

/* The first usable value of ATTR into *field (left alone when none). */
static int directory_first_value(LDAP *ld, LDAPMessage *e, const char *attr, char **field)
{
	struct berval **vals;
	int i, rc = 0;

	vals = ldap_get_values_len(ld, e, attr);
	if (!vals)
		return 0;
	for (i = 0; vals[i]; i++) {
		char *s = directory_value_dup(vals[i]);
		if (s) {
			rc = job_set(field, s);
			free(s);
			break;
		}
	}
	ldap_value_free_len(vals);
	return rc;
}

static int directory_fill_job(LDAP *ld, LDAPMessage *e, const struct config *cfg,
                              struct job *j, char *err, size_t errlen)
{
	char *dn = NULL;
	char *const *a;
	const char *login = cfg->login_attribute && *cfg->login_attribute ?
	                    cfg->login_attribute : "uid";
	int rc = -1, nmail = 0;

	dn = ldap_get_dn(ld, e);
	if (!dn || job_set(&j->dn, dn) < 0) {
		snprintf(err, errlen, "cannot read the entry's DN");
		goto out;
	}
	if (directory_first_value(ld, e, "uid", &j->uid) < 0 ||
	    (!j->uid && directory_first_value(ld, e, login, &j->uid) < 0) ||
	    directory_first_value(ld, e, "entryUUID", &j->entry_uuid) < 0)
		goto nomem;
	if (cfg->user_id_attribute && *cfg->user_id_attribute &&
	    directory_first_value(ld, e, cfg->user_id_attribute, &j->openai_user_id) < 0)
		goto nomem;
	for (a = cfg->email_attributes; a && *a; a++) {
		struct berval **vals = ldap_get_values_len(ld, e, *a);
		int i, bad = 0;

		for (i = 0; vals && vals[i] && nmail < DIRECTORY_EMAILS_MAX; i++) {
			char *s = directory_value_dup(vals[i]);
			if (!s)
				continue;
			if (job_add_email(j, s) < 0)
				bad = 1;
			free(s);
			nmail++;
		}
		if (vals)
			ldap_value_free_len(vals);
		if (bad)
			goto nomem;
	}
	rc = 0;
	goto out;
nomem:
	snprintf(err, errlen, "out of memory");
out:
	if (dn)
		ldap_memfree(dn);
	return rc;
}

/* Does the entry at DN match FILTER?  The server decides, so every matching
 * rule and syntax it knows applies.  1, 0, or -1. */
static int directory_entry_matches(LDAP *ld, const char *dn, const char *filter,
                                   struct timeval *tv, char *err, size_t errlen)
{
	LDAPMessage *res = NULL;
	char *noattrs[] = { LDAP_NO_ATTRS, NULL };
	int rc, n;

	rc = ldap_search_ext_s(ld, dn, LDAP_SCOPE_BASE, filter, noattrs, 0, NULL, NULL,
	                       tv, 1, &res);
	if (rc == LDAP_NO_SUCH_OBJECT) {
		if (res)
			ldap_msgfree(res);
		return 0;
	}
	if (rc != LDAP_SUCCESS) {
		directory_ld_error(ld, rc, "search", err, errlen);
		if (res)
			ldap_msgfree(res);
		return -1;
	}
	n = ldap_count_entries(ld, res);
	ldap_msgfree(res);
	return n > 0;
}

int directory_read_user(LDAP *ld, const struct config *cfg, const char *user,
                        const char *source, struct job **out, int *disabled,
                        char *err, size_t errlen)
{
	LDAPMessage *res = NULL, *e;
	struct timeval tv;
	char **attrs = NULL;
	char *filter = NULL, *esc = NULL;
	const char *login = cfg->login_attribute && *cfg->login_attribute ?
	                    cfg->login_attribute : "uid";
	const char *user_filter = cfg->user_filter ? cfg->user_filter : "(objectClass=*)";
	struct job *j = NULL;
	int rc, n, ret = -1, m;

	*out = NULL;
	if (disabled)
		*disabled = 0;
	if (!user || !*user) {
		snprintf(err, errlen, "empty user");
		return 0;
	}
	if (strlen(user) > DIRECTORY_USER_MAX) {
		snprintf(err, errlen, "user longer than %d bytes", DIRECTORY_USER_MAX);
		return 0;
	}
	if (!cfg->base) {
		snprintf(err, errlen, "base is not set");
		return -1;
	}
	tv.tv_sec = cfg->ldap_timeout > 0 ? cfg->ldap_timeout : 10;
	tv.tv_usec = 0;
	attrs = directory_job_attrs(cfg);
	if (!attrs) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}

	if (strchr(user, '=')) {
		LDAPDN parsed = NULL;

		if (ldap_str2dn(user, &parsed, LDAP_DN_FORMAT_LDAPV3) != LDAP_SUCCESS) {
			snprintf(err, errlen, "not a valid DN");
			ret = 0;
			goto out;
		}
		ldap_dnfree(parsed);
		if (!rules_dn_is_below(user, cfg->base)) {
			snprintf(err, errlen, "not below base %s", cfg->base);
			ret = 0;
			goto out;
		}
		rc = ldap_search_ext_s(ld, user, LDAP_SCOPE_BASE, user_filter, attrs, 0,
		                       NULL, NULL, &tv, 2, &res);
		if (rc == LDAP_NO_SUCH_OBJECT) {
			snprintf(err, errlen, "no such entry");
			ret = 0;
			goto out;
		}
	} else {
		size_t len;

		esc = directory_filter_escape(user);
		if (!esc) {
			snprintf(err, errlen, "out of memory");
			goto out;
		}
		len = strlen(user_filter) + strlen(login) + strlen(esc) + 8;
		filter = malloc(len);
		if (!filter) {
			snprintf(err, errlen, "out of memory");
			goto out;
		}
		snprintf(filter, len, "(&%s(%s=%s))", user_filter, login, esc);
		if (log_enabled(LOG_DEBUG)) {
			struct logline l;

			logline_init(&l);
			logline_add(&l, "ldap", "search");
			logline_add(&l, "base", cfg->base);
			logline_add(&l, "filter", filter);
			log_line(LOG_DEBUG, &l);
		}
		/* Size limit 2: one is an answer, two is a refusal. */
		rc = ldap_search_ext_s(ld, cfg->base, LDAP_SCOPE_SUBTREE, filter, attrs, 0,
		                       NULL, NULL, &tv, 2, &res);
		if (rc == LDAP_SIZELIMIT_EXCEEDED) {
			snprintf(err, errlen, "matches several entries under %s: refused", cfg->base);
			ret = 0;
			goto out;
		}
	}
	if (rc != LDAP_SUCCESS) {
		directory_ld_error(ld, rc, "search", err, errlen);
		goto out;
	}
	n = ldap_count_entries(ld, res);
	if (n == 0) {
		if (filter)
			snprintf(err, errlen, "no account with %s=%s below %s", login, user, cfg->base);
		else
			snprintf(err, errlen, "entry does not match user_filter %s", user_filter);
		ret = 0;
		goto out;
	}
	if (n > 1) {
		snprintf(err, errlen, "matches several entries under %s: refused", cfg->base);
		ret = 0;
		goto out;
	}
	e = ldap_first_entry(ld, res);
	j = job_new(source ? source : "cli", "manual");
	if (!j) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (directory_fill_job(ld, e, cfg, j, err, errlen) < 0)
		goto out;
	if (cfg->disabled_filter && *cfg->disabled_filter) {
		m = directory_entry_matches(ld, j->dn, cfg->disabled_filter, &tv, err, errlen);
		if (m < 0)
			goto out;
		if (disabled)
			*disabled = m;
	}
	*out = j;
	j = NULL;
	ret = 1;
out:
	if (res)
		ldap_msgfree(res);
	if (j)
		job_free(j);
	free(filter);
	free(esc);
	if (attrs)
		config_list_free(attrs);
	return ret;
}
