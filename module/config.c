/* config: the one parser of openai-revoke.conf for every component.  It
 * validates each value as it is set (DN, RFC 4515 filter, URL, ranges) and
 * collects every problem as "FILE:LINE: keyword: what is wrong". */
#ifdef HAVE_CONFIG_H
#include "or_build.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "config.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ldap.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#define CONFIG_FILE_MAX (1024 * 1024)
#define CONFIG_LINE_MAX 8192
#define CONFIG_ERRORS_MAX 50
#define CONFIG_KEY_MAX 4096
#define CONFIG_LIST_MAX 256
#define FILTER_DEPTH_MAX 64
#define FILTER_ATTRS_MAX 256
#define MSG_MAX 512

/* ---------------------------------------------------------------- utils */

static void errf(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Errors are collected one per line; a message that does not fit is cut and
 * nothing after it is added, so err always ends in a whole NUL. */
struct errlist {
	char *buf;
	size_t len, cap;
	int count;
	int full;
};

static void errlist_add(struct errlist *e, const char *msg)
{
	static const char more[] = "...";
	size_t sep, n, room;

	e->count++;
	if (!e->buf || e->cap == 0 || e->full)
		return;
	sep = e->len ? 1 : 0;
	n = strlen(msg);
	room = e->cap - 1 - e->len; /* bytes left before the NUL */
	if (sep + n > room) {
		/* cut on a byte boundary: messages carry only sanitized ASCII */
		e->full = 1;
		if (room < sep + sizeof(more))
			return;
		n = room - sep - (sizeof(more) - 1);
	}
	if (sep)
		e->buf[e->len++] = '\n';
	memcpy(e->buf + e->len, msg, n);
	e->len += n;
	if (e->full) {
		memcpy(e->buf + e->len, more, sizeof(more) - 1);
		e->len += sizeof(more) - 1;
	}
	e->buf[e->len] = '\0';
}

/* Values shown in messages: short, printable ASCII only, so an error can
 * never carry a control sequence to a terminal or a log. */
static void sanitize(char *out, size_t outlen, const char *s, size_t n)
{
	size_t keep = n, o;

	if (outlen == 0)
		return;
	if (n > outlen - 1)
		keep = outlen > 4 ? outlen - 4 : 0;
	for (o = 0; o < keep; o++) {
		unsigned char c = (unsigned char)s[o];
		out[o] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	if (keep < n && outlen > 4) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
}

static const char *errstr(int e, char *buf, size_t len)
{
	/* GNU strerror_r: thread-safe, may return a static string */
	return strerror_r(e, buf, len);
}

/* Strict UTF-8: no overlongs, no surrogates, nothing above U+10FFFF. */
static int utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = s[i];
		size_t k;
		uint32_t cp;

		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
			k = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			k = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			k = 3;
			cp = c & 0x07;
		} else {
			return 0;
		}
		if (n - i <= k)
			return 0;
		for (size_t j = 1; j <= k; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + j] & 0x3f);
		}
		if ((k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += k + 1;
	}
	return 1;
}

static int is_ws(char c)
{
	return c == ' ' || c == '\t';
}

static char *xstrndup(const char *s, size_t n)
{
	char *p = malloc(n + 1);

	if (p) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

static void lower(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

/* --------------------------------------------------------------- secrets */

/* A secret is preceded by a marker and its allocation size, so that
 * secret_free wipes every byte, whatever was written into the string since,
 * and can tell a pointer that never came from secret_dup. */
#define SECRET_MAGIC ((size_t)0x5ec12e7a5ec12e7aULL)
#define SECRET_HDR (2 * sizeof(size_t))

void secret_wipe(void *p, size_t n)
{
#ifdef HAVE_EXPLICIT_BZERO
	explicit_bzero(p, n);
#else
	volatile unsigned char *v = p;
	while (n--)
		*v++ = 0;
#endif
}

/* For the unit test only: sees the wiped bytes just before they are freed. */
void (*config_secret_free_observer)(const unsigned char *p, size_t n);

char *secret_dup(const char *s)
{
	size_t n, total, magic = SECRET_MAGIC;
	unsigned char *p;

	if (!s)
		return NULL;
	n = strlen(s);
	if (n > ((size_t)-1) / 2)
		return NULL;
	total = SECRET_HDR + n + 1;
	p = malloc(total);
	if (!p)
		return NULL;
	memcpy(p, &magic, sizeof(size_t));
	memcpy(p + sizeof(size_t), &total, sizeof(size_t));
	memcpy(p + SECRET_HDR, s, n + 1);
	return (char *)p + SECRET_HDR;
}

void secret_free(char *s)
{
	unsigned char *p;
	size_t total, magic;

	if (!s)
		return;
	p = (unsigned char *)s - SECRET_HDR;
	memcpy(&magic, p, sizeof(size_t));
	memcpy(&total, p + sizeof(size_t), sizeof(size_t));
	if (magic != SECRET_MAGIC || total < SECRET_HDR + 1) {
		/* not ours: a caller bug, but never a crash inside a host; the
		 * memory is not freed, as its start is unknown; wipe the text */
		secret_wipe(s, strlen(s));
		return;
	}
	secret_wipe(p, total);
	if (config_secret_free_observer)
		config_secret_free_observer(p, total);
	free(p);
}

/* ----------------------------------------------------------------- lists */

void config_list_free(char **list)
{
	if (!list)
		return;
	for (char **p = list; *p; p++)
		free(*p);
	free(list);
}

int config_list_contains(char *const *list, const char *s)
{
	if (!list || !s)
		return 0;
	for (; *list; list++)
		if (strcasecmp(*list, s) == 0)
			return 1;
	return 0;
}

static char **list_empty(void)
{
	return calloc(1, sizeof(char *));
}

/* Append a copy unless present (case-insensitively).  0, or -1 on ENOMEM. */
static int list_add_unique(char ***list, size_t *n, const char *s, size_t len)
{
	char **nl;
	char *copy;

	for (size_t i = 0; i < *n; i++)
		if (strlen((*list)[i]) == len && strncasecmp((*list)[i], s, len) == 0)
			return 0;
	copy = xstrndup(s, len);
	if (!copy)
		return -1;
	nl = realloc(*list, (*n + 2) * sizeof(char *));
	if (!nl) {
		free(copy);
		return -1;
	}
	nl[(*n)++] = copy;
	nl[*n] = NULL;
	*list = nl;
	return 0;
}

/* ------------------------------------------------------- name validation */

static int is_keychar(char c)
{
	return isalnum((unsigned char)c) || c == '-';
}

/* RFC 4512 descr: ALPHA *(ALPHA / DIGIT / "-") */
static int is_descr(const char *s, size_t n)
{
	if (n == 0 || !isalpha((unsigned char)s[0]))
		return 0;
	for (size_t i = 1; i < n; i++)
		if (!is_keychar(s[i]))
			return 0;
	return 1;
}

/* RFC 4512 numericoid: number 1*( DOT number ), no leading zeros */
static int is_numericoid(const char *s, size_t n)
{
	size_t i = 0, parts = 0;

	while (i < n) {
		size_t start = i;
		while (i < n && isdigit((unsigned char)s[i]))
			i++;
		if (i == start || (s[start] == '0' && i - start > 1))
			return 0;
		parts++;
		if (i < n) {
			if (s[i] != '.' || i + 1 == n)
				return 0;
			i++;
		}
	}
	return parts >= 2;
}

static int is_oid(const char *s, size_t n)
{
	return is_descr(s, n) || is_numericoid(s, n);
}

/* attributedescription = attributetype options; returns the length of the
 * type (without options) or 0 when S is not one. */
static size_t attrdesc_type_len(const char *s, size_t n)
{
	size_t t = 0;

	while (t < n && s[t] != ';')
		t++;
	if (!is_oid(s, t))
		return 0;
	for (size_t i = t; i < n;) {
		size_t start = ++i; /* skip ';' */
		while (i < n && s[i] != ';')
			i++;
		if (i == start)
			return 0;
		for (size_t j = start; j < i; j++)
			if (!is_keychar(s[j]))
				return 0;
	}
	return t;
}

/* ---------------------------------------------------------------- filter */

struct fparse {
	const char *s;
	size_t len, pos;
	int depth;
	char **attrs;
	size_t nattrs;
	int want_attrs;
	char msg[160];
	int failed;
};

static int fp_fail(struct fparse *p, size_t at, const char *what)
{
	if (!p->failed) {
		snprintf(p->msg, sizeof(p->msg), "%s at character %zu", what, at + 1);
		p->failed = 1;
	}
	return -1;
}

static int is_hex(char c)
{
	return isxdigit((unsigned char)c) != 0;
}

/* Check an assertion value; star: 0 no '*' allowed, 1 substring rules. */
static int fp_value(struct fparse *p, size_t start, size_t end, int star)
{
	const char *s = p->s;
	size_t i = start, run = start;
	int prev_star = 0;

	while (i < end) {
		char c = s[i];
		if (c == '\\') {
			if (i + 2 >= end || !is_hex(s[i + 1]) || !is_hex(s[i + 2]))
				return fp_fail(p, i, "bad escape (\\ must be followed by two hex digits)");
			i += 3;
			prev_star = 0;
			continue;
		}
		if (c == '*') {
			if (!star)
				return fp_fail(p, i, "unescaped '*' (write \\2a)");
			if (prev_star)
				return fp_fail(p, i, "two '*' in a row");
			if (!utf8_valid((const unsigned char *)s + run, i - run))
				return fp_fail(p, run, "value is not valid UTF-8");
			run = i + 1;
			prev_star = 1;
			i++;
			continue;
		}
		prev_star = 0;
		i++;
	}
	if (!utf8_valid((const unsigned char *)s + run, end - run))
		return fp_fail(p, run, "value is not valid UTF-8");
	return 0;
}

static int fp_add_attr(struct fparse *p, const char *a, size_t n)
{
	if (!p->want_attrs)
		return 0;
	if (p->nattrs >= FILTER_ATTRS_MAX)
		return fp_fail(p, p->pos, "too many attributes");
	if (list_add_unique(&p->attrs, &p->nattrs, a, n) < 0)
		return fp_fail(p, p->pos, "out of memory");
	lower(p->attrs[p->nattrs - 1]);
	return 0;
}

static int fp_attr(struct fparse *p, size_t start, size_t end)
{
	size_t t = attrdesc_type_len(p->s + start, end - start);

	if (t == 0)
		return fp_fail(p, start, "bad attribute description");
	/* lower-cased and de-duplicated case-insensitively */
	return fp_add_attr(p, p->s + start, t);
}

/* extensible = ( attr [":dn"] [":" oid] ":=" value ) / ( [":dn"] ":" oid ":=" value )
 * LHS is everything before ":=". */
static int fp_extensible(struct fparse *p, size_t start, size_t end)
{
	const char *s = p->s;
	size_t i = start, tok;
	int have_attr = 0, have_rule = 0;

	if (i < end && s[i] != ':') {
		tok = i;
		while (i < end && s[i] != ':')
			i++;
		if (fp_attr(p, tok, i) < 0)
			return -1;
		have_attr = 1;
	}
	if (i < end) { /* at ':' */
		tok = ++i;
		while (i < end && s[i] != ':')
			i++;
		if (i - tok == 2 && strncasecmp(s + tok, "dn", 2) == 0) {
			if (i < end) {
				tok = ++i;
				while (i < end && s[i] != ':')
					i++;
				if (!is_oid(s + tok, i - tok))
					return fp_fail(p, tok, "bad matching rule");
				have_rule = 1;
			}
		} else {
			if (!is_oid(s + tok, i - tok))
				return fp_fail(p, tok, "bad matching rule");
			have_rule = 1;
		}
		if (i < end)
			return fp_fail(p, i, "unexpected ':' in extensible match");
	}
	if (!have_attr && !have_rule)
		return fp_fail(p, start, "extensible match needs an attribute or a matching rule");
	return 0;
}

static int fp_item(struct fparse *p)
{
	const char *s = p->s;
	size_t start = p->pos, end = start, eq;
	char op;

	while (end < p->len && s[end] != ')' && s[end] != '(')
		end++;
	if (end >= p->len)
		return fp_fail(p, end, "missing ')'");
	if (s[end] == '(')
		return fp_fail(p, end, "unescaped '(' (write \\28)");
	for (eq = start; eq < end && s[eq] != '='; eq++)
		;
	if (eq == end)
		return fp_fail(p, start, "missing '=' in filter item");
	op = eq > start ? s[eq - 1] : '=';
	if (op == '~' || op == '<' || op == '>' || op == ':') {
		if (op == ':') {
			if (fp_extensible(p, start, eq - 1) < 0)
				return -1;
		} else if (fp_attr(p, start, eq - 1) < 0) {
			return -1;
		}
		if (fp_value(p, eq + 1, end, 0) < 0)
			return -1;
	} else {
		if (fp_attr(p, start, eq) < 0)
			return -1;
		if (fp_value(p, eq + 1, end, 1) < 0)
			return -1;
	}
	p->pos = end;
	return 0;
}

static int fp_filter(struct fparse *p)
{
	if (p->pos >= p->len)
		return fp_fail(p, p->pos, "missing '('");
	if (p->s[p->pos] != '(')
		return fp_fail(p, p->pos, "expected '('");
	if (++p->depth > FILTER_DEPTH_MAX)
		return fp_fail(p, p->pos, "filter nested too deeply");
	p->pos++;
	if (p->pos >= p->len)
		return fp_fail(p, p->pos, "missing ')'");
	switch (p->s[p->pos]) {
	case '&':
	case '|': {
		int n = 0;
		p->pos++;
		while (p->pos < p->len && p->s[p->pos] == '(') {
			if (fp_filter(p) < 0)
				return -1;
			n++;
		}
		if (n == 0)
			return fp_fail(p, p->pos, "'&' and '|' need at least one filter");
		break;
	}
	case '!':
		p->pos++;
		if (fp_filter(p) < 0)
			return -1;
		break;
	case ')':
		return fp_fail(p, p->pos, "empty filter item");
	default:
		if (fp_item(p) < 0)
			return -1;
	}
	if (p->pos >= p->len)
		return fp_fail(p, p->pos, "missing ')'");
	if (p->s[p->pos] != ')')
		return fp_fail(p, p->pos, "expected ')'");
	p->pos++;
	p->depth--;
	return 0;
}

int config_filter_parse(const char *filter, char ***attrs, char *err, size_t errlen)
{
	struct fparse p;
	int rc = -1;

	memset(&p, 0, sizeof(p));
	if (attrs)
		*attrs = NULL;
	if (!filter) {
		errf(err, errlen, "no filter");
		return -1;
	}
	p.s = filter;
	p.len = strlen(filter);
	p.want_attrs = attrs != NULL;
	if (p.want_attrs && !(p.attrs = list_empty())) {
		errf(err, errlen, "out of memory");
		return -1;
	}
	if (p.len == 0) {
		errf(err, errlen, "empty filter");
		goto out;
	}
	if (fp_filter(&p) < 0)
		goto fail;
	if (p.pos != p.len) {
		fp_fail(&p, p.pos, "unexpected text after the filter");
		goto fail;
	}
	if (attrs) {
		*attrs = p.attrs;
		p.attrs = NULL;
	}
	rc = 0;
	goto out;
fail:
	errf(err, errlen, "invalid LDAP filter: %s", p.msg);
out:
	config_list_free(p.attrs);
	return rc;
}

/* --------------------------------------------------------- keyword table */

enum ctype {
	T_TOKEN,    /* one word: ident, SASL mechanism */
	T_PATH,     /* absolute path */
	T_URL,      /* api_url */
	T_LDAPURI,  /* one or more ldap[si]:// URIs */
	T_DN,
	T_FILTER,
	T_ATTR,
	T_ATTRLIST,
	T_LIST,
	T_BOOL,
	T_INT,
	T_DURATION, /* seconds, with an optional unit */
	T_ROLES,    /* organization roles */
	T_BREAKER,
	T_WORKER,
	T_FACILITY,
	T_LEVEL
};

struct keyword {
	const char *name;
	enum ctype type;
	size_t off;
	int min, max; /* numbers: the range */
};

#define F(m) offsetof(struct config, m)

static const struct keyword keywords[] = {
	{ "api_url", T_URL, F(api_url), 0, 0 },
	{ "admin_key_file", T_PATH, F(admin_key_file), 0, 0 },
	{ "ca_file", T_PATH, F(ca_file), 0, 0 },
	{ "http_timeout", T_DURATION, F(http_timeout), 1, 600 },
	{ "api_rate", T_INT, F(api_rate), 1, 1000 },
	{ "base", T_DN, F(base), 0, 0 },
	{ "user_filter", T_FILTER, F(user_filter), 0, 0 },
	{ "disabled_filter", T_FILTER, F(disabled_filter), 0, 0 },
	{ "revoke_on_delete", T_BOOL, F(revoke_on_delete), 0, 0 },
	{ "disabled_subtree", T_DN, F(disabled_subtree), 0, 0 },
	{ "map_file", T_PATH, F(map_file), 0, 0 },
	{ "user_id_attribute", T_ATTR, F(user_id_attribute), 0, 0 },
	{ "email_attributes", T_ATTRLIST, F(email_attributes), 0, 0 },
	{ "protect_roles", T_ROLES, F(protect_roles), 0, 0 },
	{ "protect_users", T_LIST, F(protect_users), 0, 0 },
	{ "revoke_invites", T_BOOL, F(revoke_invites), 0, 0 },
	{ "dry_run", T_BOOL, F(dry_run), 0, 0 },
	{ "breaker", T_BREAKER, 0, 0, 0 },
	{ "spool_dir", T_PATH, F(spool_dir), 0, 0 },
	{ "worker", T_WORKER, F(worker), 0, 0 },
	{ "ldap_uri", T_LDAPURI, F(ldap_uri), 0, 0 },
	{ "ldap_binddn", T_DN, F(ldap_binddn), 0, 0 },
	{ "ldap_bindpw_file", T_PATH, F(ldap_bindpw_file), 0, 0 },
	{ "ldap_sasl_mech", T_TOKEN, F(ldap_sasl_mech), 0, 0 },
	{ "login_attribute", T_ATTR, F(login_attribute), 0, 0 },
	{ "ldap_timeout", T_DURATION, F(ldap_timeout), 1, 300 },
	{ "syslog_facility", T_FACILITY, F(syslog_facility), 0, 0 },
	{ "syslog_ident", T_TOKEN, F(syslog_ident), 0, 0 },
	{ "log_level", T_LEVEL, F(log_level), 0, 0 },
	{ "log_file", T_PATH, F(log_file), 0, 0 },
};

#define NKEYWORDS (sizeof(keywords) / sizeof(keywords[0]))

static const char *const facility_names[] = {
	"auth", "authpriv", "daemon", "user", "local0", "local1", "local2",
	"local3", "local4", "local5", "local6", "local7"
};

static const struct keyword *keyword_find(const char *name, size_t n)
{
	for (size_t i = 0; i < NKEYWORDS; i++)
		if (strlen(keywords[i].name) == n && strncasecmp(keywords[i].name, name, n) == 0)
			return &keywords[i];
	return NULL;
}

#define FIELD(cfg, kw, type) ((type *)(void *)((char *)(cfg) + (kw)->off))

/* --------------------------------------------------------------- values */

static int parse_int(const char *v, int min, int max, int *out)
{
	long n = 0;

	if (!*v)
		return -1;
	for (const char *p = v; *p; p++) {
		if (!isdigit((unsigned char)*p))
			return -1;
		n = n * 10 + (*p - '0');
		if (n > max)
			return -2;
	}
	if (n < min)
		return -2;
	*out = (int)n;
	return 0;
}

/* seconds, or a number with one unit: 90, 90s, 15m, 2h, 7d */
static int parse_duration(const char *v, int min, int max, int *out)
{
	long long n = 0, mul = 1;
	const char *p = v;

	if (!isdigit((unsigned char)*p))
		return -1;
	while (isdigit((unsigned char)*p)) {
		n = n * 10 + (*p++ - '0');
		if (n > max)
			n = (long long)max + 1; /* keep reading digits, no overflow */
	}
	if (*p) {
		switch (tolower((unsigned char)*p)) {
		case 's': mul = 1; break;
		case 'm': mul = 60; break;
		case 'h': mul = 3600; break;
		case 'd': mul = 86400; break;
		default: return -1;
		}
		if (p[1])
			return -1;
	}
	n *= mul;
	if (n < min || n > max)
		return -2;
	*out = (int)n;
	return 0;
}

static int parse_bool(const char *v, int *out)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcasecmp(v, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return -1;
}

static int check_dn(const char *v)
{
	LDAPDN dn = NULL;
	int rc = ldap_str2dn(v, &dn, LDAP_DN_FORMAT_LDAPV3);

	if (dn)
		ldap_dnfree(dn);
	return rc == LDAP_SUCCESS && dn != NULL ? 0 : -1;
}

static int host_is_loopback(const char *h, size_t n)
{
	if ((n == 9 && strncasecmp(h, "localhost", 9) == 0) ||
	    (n == 5 && memcmp(h, "[::1]", 5) == 0))
		return 1;
	if (n >= 4 && memcmp(h, "127.", 4) == 0) {
		for (size_t i = 4; i < n; i++)
			if (!isdigit((unsigned char)h[i]) && h[i] != '.')
				return 0;
		return 1;
	}
	return 0;
}

/* http(s)://host[:port][/path]; plain http only to loopback (the key would
 * cross the network in clear). */
static int check_url(char *v, char *why, size_t whylen)
{
	const char *h, *p;
	size_t hl, n;
	int https;

	if (strncasecmp(v, "https://", 8) == 0) {
		https = 1;
		h = v + 8;
	} else if (strncasecmp(v, "http://", 7) == 0) {
		https = 0;
		h = v + 7;
	} else {
		snprintf(why, whylen, "must start with https:// (or http:// to a loopback address)");
		return -1;
	}
	for (p = v; *p; p++) {
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
			snprintf(why, whylen, "must not contain spaces or non-ASCII characters");
			return -1;
		}
	}
	if (strpbrk(v, "?#")) {
		snprintf(why, whylen, "must not contain a query or fragment");
		return -1;
	}
	p = h;
	while (*p && *p != '/' && *p != '@')
		p++;
	if (*p == '@') {
		snprintf(why, whylen, "must not contain a user name or password (the key comes from admin_key_file)");
		return -1;
	}
	p = h;
	if (*p == '[') {
		while (*p && *p != ']')
			p++;
		if (*p != ']') {
			snprintf(why, whylen, "unterminated IPv6 address");
			return -1;
		}
		p++;
	} else {
		while (*p && *p != '/' && *p != ':') {
			if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.' && *p != '_') {
				snprintf(why, whylen, "bad character in host name (user names and passwords do not belong in the URL)");
				return -1;
			}
			p++;
		}
	}
	hl = (size_t)(p - h);
	if (hl == 0) {
		snprintf(why, whylen, "missing host");
		return -1;
	}
	if (*p == ':') {
		long port = 0;
		const char *q = ++p;
		while (isdigit((unsigned char)*p) && port <= 65535)
			port = port * 10 + (*p++ - '0');
		if (p == q || port < 1 || port > 65535 || (*p && *p != '/')) {
			snprintf(why, whylen, "bad port");
			return -1;
		}
	}
	if (!https && !host_is_loopback(h, hl)) {
		snprintf(why, whylen, "http:// is allowed only to a loopback address: the admin key would cross the network in clear; use https://");
		return -1;
	}
	n = strlen(v);
	if (n > 0 && v[n - 1] == '/' && (size_t)(p - v) < n)
		v[n - 1] = '\0';
	return 0;
}

static int check_ldap_uris(const char *v, char *why, size_t whylen)
{
	const char *p = v;
	int count = 0;

	while (*p) {
		const char *start;
		char *one;
		LDAPURLDesc *ud = NULL;
		int rc;

		while (*p && (is_ws(*p) || *p == ','))
			p++;
		if (!*p)
			break;
		start = p;
		while (*p && !is_ws(*p) && *p != ',')
			p++;
		one = xstrndup(start, (size_t)(p - start));
		if (!one) {
			snprintf(why, whylen, "out of memory");
			return -1;
		}
		rc = ldap_url_parse(one, &ud);
		if (ud)
			ldap_free_urldesc(ud);
		if (rc != LDAP_URL_SUCCESS ||
		    (strncasecmp(one, "ldap://", 7) != 0 && strncasecmp(one, "ldaps://", 8) != 0 &&
		     strncasecmp(one, "ldapi://", 8) != 0)) {
			char shown[80];
			sanitize(shown, sizeof(shown), one, strlen(one));
			snprintf(why, whylen, "\"%s\" is not an ldap://, ldaps:// or ldapi:// URI", shown);
			free(one);
			return -1;
		}
		free(one);
		count++;
	}
	if (count == 0) {
		snprintf(why, whylen, "no URI");
		return -1;
	}
	return 0;
}

/* Split on commas and white space; each item must pass CHECK if given. */
static int parse_list(const char *v, int attrs, char ***out, char *why, size_t whylen)
{
	char **list = list_empty();
	size_t n = 0;
	const char *p = v;

	if (!list) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	if (strcasecmp(v, "none") == 0)
		goto done;
	while (*p) {
		const char *start;
		size_t len;

		while (*p && (is_ws(*p) || *p == ','))
			p++;
		if (!*p)
			break;
		start = p;
		while (*p && !is_ws(*p) && *p != ',')
			p++;
		len = (size_t)(p - start);
		if (attrs && attrdesc_type_len(start, len) == 0) {
			char shown[80];
			sanitize(shown, sizeof(shown), start, len);
			snprintf(why, whylen, "\"%s\" is not an attribute name", shown);
			goto fail;
		}
		if (n >= CONFIG_LIST_MAX) {
			snprintf(why, whylen, "more than %d items", CONFIG_LIST_MAX);
			goto fail;
		}
		if (list_add_unique(&list, &n, start, len) < 0) {
			snprintf(why, whylen, "out of memory");
			goto fail;
		}
	}
	if (n == 0) {
		snprintf(why, whylen, "empty list (write \"none\" for no items)");
		goto fail;
	}
done:
	*out = list;
	return 0;
fail:
	config_list_free(list);
	return -1;
}

static int has_ctl(const char *v)
{
	for (; *v; v++)
		if ((unsigned char)*v < 0x20 || (unsigned char)*v == 0x7f)
			return 1;
	return 0;
}

/* Validate VALUE for KW and store it.  WHY gets the reason on failure. */
static int set_value(struct config *cfg, const struct keyword *kw, const char *value,
                     char *why, size_t whylen)
{
	char *copy = NULL;
	char **list = NULL;
	char **attrs = NULL;
	int n, rc = -1;

	if (!utf8_valid((const unsigned char *)value, strlen(value))) {
		snprintf(why, whylen, "value is not valid UTF-8");
		return -1;
	}
	if (has_ctl(value)) {
		snprintf(why, whylen, "value contains a control character");
		return -1;
	}
	switch (kw->type) {
	case T_TOKEN:
	case T_PATH:
	case T_URL:
	case T_LDAPURI:
	case T_DN:
	case T_FILTER:
	case T_ATTR:
		if (!(copy = strdup(value))) {
			snprintf(why, whylen, "out of memory");
			goto out;
		}
		break;
	default:
		break;
	}

	switch (kw->type) {
	case T_TOKEN:
		for (const char *p = value; *p; p++) {
			if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.') {
				snprintf(why, whylen, "must be one word of letters, digits, '-', '_' or '.'");
				goto out;
			}
		}
		if (strlen(value) > 64) {
			snprintf(why, whylen, "longer than 64 characters");
			goto out;
		}
		break;
	case T_PATH:
		if (copy[0] != '/') {
			snprintf(why, whylen, "must be an absolute path");
			goto out;
		}
		if (strlen(copy) >= 4096) {
			snprintf(why, whylen, "path too long");
			goto out;
		}
		break;
	case T_URL:
		if (check_url(copy, why, whylen) < 0)
			goto out;
		break;
	case T_LDAPURI:
		if (check_ldap_uris(copy, why, whylen) < 0)
			goto out;
		break;
	case T_DN:
		if (check_dn(copy) < 0) {
			snprintf(why, whylen, "not a valid DN (RFC 4514), e.g. ou=people,dc=example,dc=com");
			goto out;
		}
		break;
	case T_FILTER: {
		char ferr[200];
		if (config_filter_parse(copy, &attrs, ferr, sizeof(ferr)) < 0) {
			snprintf(why, whylen, "%s", ferr);
			goto out;
		}
		break;
	}
	case T_ATTR:
		if (attrdesc_type_len(copy, strlen(copy)) == 0) {
			snprintf(why, whylen, "not an attribute name");
			goto out;
		}
		break;
	case T_ATTRLIST:
	case T_LIST:
	case T_ROLES:
		if (parse_list(value, kw->type == T_ATTRLIST, &list, why, whylen) < 0)
			goto out;
		/* a typo here would leave owners unprotected: only known roles */
		for (char **r = list; kw->type == T_ROLES && *r; r++) {
			if (strcasecmp(*r, "owner") != 0 && strcasecmp(*r, "reader") != 0) {
				char shown[80];
				sanitize(shown, sizeof(shown), *r, strlen(*r));
				snprintf(why, whylen, "\"%s\" is not an organization role (owner, reader)", shown);
				goto out;
			}
			lower(*r);
		}
		config_list_free(*FIELD(cfg, kw, char **));
		*FIELD(cfg, kw, char **) = list;
		list = NULL;
		rc = 0;
		goto out;
	case T_BOOL:
		if (parse_bool(value, &n) < 0) {
			snprintf(why, whylen, "not a boolean (use yes or no)");
			goto out;
		}
		*FIELD(cfg, kw, int) = n;
		rc = 0;
		goto out;
	case T_INT:
	case T_DURATION:
		switch (kw->type == T_INT ? parse_int(value, kw->min, kw->max, &n)
		                          : parse_duration(value, kw->min, kw->max, &n)) {
		case 0:
			*FIELD(cfg, kw, int) = n;
			rc = 0;
			goto out;
		case -1:
			snprintf(why, whylen, kw->type == T_INT ? "not a number"
			                                         : "not a duration (seconds, or a number with s, m, h or d)");
			goto out;
		default:
			snprintf(why, whylen, kw->type == T_INT ? "out of range (%d..%d)"
			                                         : "out of range (%d..%d seconds)", kw->min, kw->max);
			goto out;
		}
	case T_BREAKER: {
		char a[32], b[32];
		const char *p = value, *s;
		int nmax, win;
		size_t l;

		s = p;
		while (*p && !is_ws(*p))
			p++;
		l = (size_t)(p - s);
		if (l >= sizeof(a))
			l = sizeof(a) - 1;
		memcpy(a, s, l);
		a[l] = '\0';
		while (is_ws(*p))
			p++;
		s = p;
		while (*p && !is_ws(*p))
			p++;
		l = (size_t)(p - s);
		if (l >= sizeof(b))
			l = sizeof(b) - 1;
		memcpy(b, s, l);
		b[l] = '\0';
		while (is_ws(*p))
			p++;
		if (!a[0] || !b[0] || *p) {
			snprintf(why, whylen, "expected two numbers: REMOVALS SECONDS (e.g. 50 3600)");
			goto out;
		}
		switch (parse_int(a, 1, 1000000, &nmax)) {
		case 0:
			break;
		case -1:
			snprintf(why, whylen, "removals: not a number");
			goto out;
		default:
			snprintf(why, whylen, "removals out of range (1..1000000)");
			goto out;
		}
		switch (parse_duration(b, 1, 604800, &win)) {
		case 0:
			break;
		case -1:
			snprintf(why, whylen, "seconds: not a duration (seconds, or a number with s, m, h or d)");
			goto out;
		default:
			snprintf(why, whylen, "seconds out of range (1..604800)");
			goto out;
		}
		cfg->breaker_max = nmax;
		cfg->breaker_window = win;
		rc = 0;
		goto out;
	}
	case T_WORKER:
		if (strcasecmp(value, "thread") == 0)
			*FIELD(cfg, kw, enum config_worker) = CONFIG_WORKER_THREAD;
		else if (strcasecmp(value, "none") == 0)
			*FIELD(cfg, kw, enum config_worker) = CONFIG_WORKER_NONE;
		else {
			snprintf(why, whylen, "must be thread or none");
			goto out;
		}
		rc = 0;
		goto out;
	case T_FACILITY:
		n = log_facility_from_name(value);
		if (n < 0) {
			snprintf(why, whylen, "unknown facility (use auth, authpriv, daemon, user or local0..local7)");
			goto out;
		}
		*FIELD(cfg, kw, int) = n;
		rc = 0;
		goto out;
	case T_LEVEL:
		n = log_level_from_name(value);
		if (n < 0) {
			snprintf(why, whylen, "unknown level (use debug, info, notice, warning, err, crit, alert or emerg)");
			goto out;
		}
		*FIELD(cfg, kw, int) = n;
		rc = 0;
		goto out;
	}

	/* string kinds */
	free(*FIELD(cfg, kw, char *));
	*FIELD(cfg, kw, char *) = copy;
	copy = NULL;
	if (kw->type == T_FILTER && kw->off == F(disabled_filter)) {
		config_list_free(cfg->disabled_attrs);
		cfg->disabled_attrs = attrs;
		attrs = NULL;
	}
	rc = 0;
out:
	free(copy);
	config_list_free(list);
	config_list_free(attrs);
	return rc;
}

/* "FILE:LINE: keyword: why" with whatever parts are known. */
static void format_msg(char *out, size_t outlen, const char *file, int line,
                       const char *kw, size_t kwlen, const char *why)
{
	char shownfile[256], shownkw[80];
	size_t o = 0;

	out[0] = '\0';
	if (file) {
		sanitize(shownfile, sizeof(shownfile), file, strlen(file));
		if (line > 0)
			o += (size_t)snprintf(out, outlen, "%s:%d: ", shownfile, line);
		else
			o += (size_t)snprintf(out, outlen, "%s: ", shownfile);
	}
	if (o >= outlen)
		return;
	if (kw && kwlen) {
		sanitize(shownkw, sizeof(shownkw), kw, kwlen);
		o += (size_t)snprintf(out + o, outlen - o, "%s: ", shownkw);
	}
	if (o >= outlen)
		return;
	snprintf(out + o, outlen - o, "%s", why);
}

int config_set(struct config *cfg, const char *keyword, const char *value,
               const char *file, int line, char *err, size_t errlen)
{
	const struct keyword *kw;
	char why[300];
	char msg[MSG_MAX];
	char *v = NULL;
	size_t a, b;
	int rc = -1;

	if (err && errlen)
		err[0] = '\0';
	if (!cfg || !keyword) {
		errf(err, errlen, "config_set: no config or keyword");
		return -1;
	}
	kw = keyword_find(keyword, strlen(keyword));
	if (!kw) {
		format_msg(msg, sizeof(msg), file, line, keyword, strlen(keyword), "unknown keyword");
		errf(err, errlen, "%s", msg);
		goto out;
	}
	/* the same trimming as a file line: "dry_run= yes" from a PAM option */
	a = 0;
	b = value ? strlen(value) : 0;
	while (a < b && is_ws(value[a]))
		a++;
	while (b > a && is_ws(value[b - 1]))
		b--;
	if (a == b) {
		format_msg(msg, sizeof(msg), file, line, kw->name, strlen(kw->name), "missing value");
		errf(err, errlen, "%s", msg);
		goto out;
	}
	if (!(v = xstrndup(value + a, b - a))) {
		format_msg(msg, sizeof(msg), file, line, kw->name, strlen(kw->name), "out of memory");
		errf(err, errlen, "%s", msg);
		goto out;
	}
	if (set_value(cfg, kw, v, why, sizeof(why)) < 0) {
		format_msg(msg, sizeof(msg), file, line, kw->name, strlen(kw->name), why);
		errf(err, errlen, "%s", msg);
		goto out;
	}
	rc = 0;
out:
	free(v);
	return rc;
}

/* --------------------------------------------------------- new / free */

static int set_default(struct config *cfg, const char *k, const char *v)
{
	char why[200];
	const struct keyword *kw = keyword_find(k, strlen(k));

	return kw ? set_value(cfg, kw, v, why, sizeof(why)) : -1;
}

struct config *config_new_defaults(void)
{
	struct config *cfg = calloc(1, sizeof(*cfg));

	if (!cfg)
		return NULL;
	cfg->http_timeout = 30;
	cfg->api_rate = 10;
	cfg->revoke_on_delete = 1;
	cfg->revoke_invites = 1;
	cfg->dry_run = 0;
	cfg->breaker_max = 50;
	cfg->breaker_window = 3600;
	cfg->worker = CONFIG_WORKER_THREAD;
	cfg->ldap_timeout = 5;
	cfg->syslog_facility = LOG_AUTHPRIV;
	cfg->log_level = LOG_INFO;
	cfg->protect_users = list_empty();
	if (!cfg->protect_users ||
	    set_default(cfg, "api_url", "https://api.openai.com/v1") < 0 ||
	    set_default(cfg, "admin_key_file", CONFIG_DEFAULT_KEY_FILE) < 0 ||
	    set_default(cfg, "user_filter", "(objectClass=person)") < 0 ||
	    set_default(cfg, "disabled_filter", "(pwdAccountLockedTime=000001010000Z)") < 0 ||
	    set_default(cfg, "email_attributes", "mail") < 0 ||
	    set_default(cfg, "protect_roles", "owner") < 0 ||
	    set_default(cfg, "spool_dir", CONFIG_DEFAULT_SPOOL) < 0 ||
	    set_default(cfg, "ldap_uri", "ldapi:///") < 0 ||
	    set_default(cfg, "login_attribute", "uid") < 0 ||
	    set_default(cfg, "syslog_ident", "openai-revoke") < 0) {
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	free(cfg->path);
	for (size_t i = 0; i < NKEYWORDS; i++) {
		const struct keyword *kw = &keywords[i];
		switch (kw->type) {
		case T_TOKEN:
		case T_PATH:
		case T_URL:
		case T_LDAPURI:
		case T_DN:
		case T_FILTER:
		case T_ATTR:
			free(*FIELD(cfg, kw, char *));
			break;
		case T_LIST:
		case T_ATTRLIST:
		case T_ROLES:
			config_list_free(*FIELD(cfg, kw, char **));
			break;
		default:
			break;
		}
	}
	config_list_free(cfg->disabled_attrs);
	free(cfg);
}

/* ------------------------------------------------------------- finish */

static int finish(struct config *cfg, struct errlist *e)
{
	char msg[MSG_MAX], ferr[200];
	const char *file = cfg->path ? cfg->path : "configuration";
	int before = e->count;
	char **attrs = NULL;

	if (!cfg->base) {
		format_msg(msg, sizeof(msg), file, 0, "base", 4,
		           "required keyword is missing (the subtree holding the accounts)");
		errlist_add(e, msg);
	}
	if (config_filter_parse(cfg->disabled_filter, &attrs, ferr, sizeof(ferr)) < 0) {
		format_msg(msg, sizeof(msg), file, 0, "disabled_filter", 15, ferr);
		errlist_add(e, msg);
	} else {
		config_list_free(cfg->disabled_attrs);
		cfg->disabled_attrs = attrs;
	}
	if (cfg->disabled_subtree && check_dn(cfg->disabled_subtree) < 0) {
		format_msg(msg, sizeof(msg), file, 0, "disabled_subtree", 16, "not a valid DN");
		errlist_add(e, msg);
	}
	return e->count == before ? 0 : -1;
}

int config_finish(struct config *cfg, char *err, size_t errlen)
{
	struct errlist e = { err, 0, errlen, 0, 0 };

	if (err && errlen)
		err[0] = '\0';
	if (!cfg) {
		errf(err, errlen, "no configuration");
		return -1;
	}
	return finish(cfg, &e);
}

/* -------------------------------------------------------------- parsing */

int config_parse_buffer(const char *name, const char *buf, size_t len,
                        struct config **out, char *err, size_t errlen)
{
	struct errlist e = { err, 0, errlen, 0, 0 };
	struct config *cfg = NULL;
	int seen[NKEYWORDS];
	char msg[MSG_MAX];
	char *line = NULL;
	size_t pos = 0;
	int lineno = 0;
	int rc = -1;

	if (err && errlen)
		err[0] = '\0';
	if (out)
		*out = NULL;
	if (!name)
		name = "configuration";
	memset(seen, 0, sizeof(seen));
	if (!buf && len) {
		format_msg(msg, sizeof(msg), name, 0, NULL, 0, "no data");
		errlist_add(&e, msg);
		goto out;
	}
	if (len > CONFIG_FILE_MAX) {
		format_msg(msg, sizeof(msg), name, 0, NULL, 0, "file larger than 1 MiB, refused");
		errlist_add(&e, msg);
		goto out;
	}
	cfg = config_new_defaults();
	line = malloc(CONFIG_LINE_MAX + 1);
	if (!cfg || !line || !(cfg->path = strdup(name))) {
		format_msg(msg, sizeof(msg), name, 0, NULL, 0, "out of memory");
		errlist_add(&e, msg);
		goto out;
	}
	/* a UTF-8 byte order mark is not part of the first keyword */
	if (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0)
		pos = 3;

	while (pos < len) {
		const char *start = buf + pos, *nl, *k, *v, *end;
		size_t n, kl;
		const struct keyword *kw;
		char why[300];

		lineno++;
		nl = memchr(start, '\n', len - pos);
		n = nl ? (size_t)(nl - start) : len - pos;
		pos += n + (nl ? 1 : 0);
		if (n > 0 && start[n - 1] == '\r')
			n--;

		/* keyword = first word, whatever else is wrong with the line */
		k = start;
		end = start + n;
		while (k < end && is_ws(*k))
			k++;
		if (k == end || *k == '#')
			continue;
		kl = 0;
		while (k + kl < end && !is_ws(k[kl]) && k[kl] != '\0' && kl <= 64)
			kl++;

		if (e.count >= CONFIG_ERRORS_MAX) {
			format_msg(msg, sizeof(msg), name, lineno, NULL, 0, "too many errors, stopping here");
			errlist_add(&e, msg);
			break;
		}
		if (n > CONFIG_LINE_MAX) {
			format_msg(msg, sizeof(msg), name, lineno, k, kl > 64 ? 0 : kl,
			           "line longer than 8192 bytes");
			errlist_add(&e, msg);
			continue;
		}
		if (memchr(start, '\0', n)) {
			format_msg(msg, sizeof(msg), name, lineno, k, kl > 64 ? 0 : kl,
			           "line contains a NUL byte");
			errlist_add(&e, msg);
			continue;
		}
		kw = kl <= 64 ? keyword_find(k, kl) : NULL;
		if (!kw) {
			const char *eq = memchr(k, '=', kl);
			if (eq && eq > k && keyword_find(k, (size_t)(eq - k))) {
				format_msg(msg, sizeof(msg), name, lineno, k, (size_t)(eq - k),
				           "separate the value with a blank, not '='");
				errlist_add(&e, msg);
				continue;
			}
			format_msg(msg, sizeof(msg), name, lineno, k, kl, "unknown keyword");
			errlist_add(&e, msg);
			continue;
		}
		v = k + kl;
		while (v < end && is_ws(*v))
			v++;
		while (end > v && is_ws(end[-1]))
			end--;
		if (v == end) {
			format_msg(msg, sizeof(msg), name, lineno, kw->name, strlen(kw->name), "missing value");
			errlist_add(&e, msg);
			continue;
		}
		if (seen[kw - keywords]) {
			snprintf(why, sizeof(why), "duplicate keyword (first set on line %d)", seen[kw - keywords]);
			format_msg(msg, sizeof(msg), name, lineno, kw->name, strlen(kw->name), why);
			errlist_add(&e, msg);
			continue;
		}
		seen[kw - keywords] = lineno;
		memcpy(line, v, (size_t)(end - v));
		line[end - v] = '\0';
		if (set_value(cfg, kw, line, why, sizeof(why)) < 0) {
			format_msg(msg, sizeof(msg), name, lineno, kw->name, strlen(kw->name), why);
			errlist_add(&e, msg);
		}
	}
	if (e.count == 0)
		finish(cfg, &e);
	else if (!seen[keyword_find("base", 4) - keywords]) {
		/* report a missing base too, so one run shows every problem */
		finish(cfg, &e);
	}
	if (e.count == 0) {
		if (out) {
			*out = cfg;
			cfg = NULL;
		}
		rc = 0;
	}
out:
	free(line);
	config_free(cfg);
	return rc;
}

int config_load(const char *path, struct config **out, char *err, size_t errlen)
{
	char msg[MSG_MAX], eb[128];
	char *buf = NULL;
	struct stat st;
	size_t len = 0;
	int fd = -1, rc = -1;

	if (err && errlen)
		err[0] = '\0';
	if (out)
		*out = NULL;
	if (!path) {
		errf(err, errlen, "no configuration file given");
		return -1;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		snprintf(eb, sizeof(eb), "cannot open: %s", errstr(errno, msg, sizeof(msg)));
		format_msg(msg, sizeof(msg), path, 0, NULL, 0, eb);
		errf(err, errlen, "%s", msg);
		goto out;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(eb, sizeof(eb), "cannot stat: %s", errstr(errno, msg, sizeof(msg)));
		format_msg(msg, sizeof(msg), path, 0, NULL, 0, eb);
		errf(err, errlen, "%s", msg);
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		format_msg(msg, sizeof(msg), path, 0, NULL, 0, "is a directory, not a configuration file");
		errf(err, errlen, "%s", msg);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		format_msg(msg, sizeof(msg), path, 0, NULL, 0, "not a regular file");
		errf(err, errlen, "%s", msg);
		goto out;
	}
	/* whoever can write it can point api_url elsewhere and catch the key */
	if (st.st_mode & S_IWOTH) {
		snprintf(eb, sizeof(eb), "mode %04o is too open: the configuration must not be writable by others (chmod o-w)",
		         (unsigned)(st.st_mode & 07777));
		format_msg(msg, sizeof(msg), path, 0, NULL, 0, eb);
		errf(err, errlen, "%s", msg);
		goto out;
	}
	if (st.st_size > CONFIG_FILE_MAX) {
		format_msg(msg, sizeof(msg), path, 0, NULL, 0, "file larger than 1 MiB, refused");
		errf(err, errlen, "%s", msg);
		goto out;
	}
	buf = malloc(CONFIG_FILE_MAX + 1);
	if (!buf) {
		format_msg(msg, sizeof(msg), path, 0, NULL, 0, "out of memory");
		errf(err, errlen, "%s", msg);
		goto out;
	}
	/* read to EOF: the file may have grown since fstat */
	for (;;) {
		ssize_t r = read(fd, buf + len, CONFIG_FILE_MAX + 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(eb, sizeof(eb), "cannot read: %s", errstr(errno, msg, sizeof(msg)));
			format_msg(msg, sizeof(msg), path, 0, NULL, 0, eb);
			errf(err, errlen, "%s", msg);
			goto out;
		}
		if (r == 0)
			break;
		len += (size_t)r;
		if (len > CONFIG_FILE_MAX) {
			format_msg(msg, sizeof(msg), path, 0, NULL, 0, "file larger than 1 MiB, refused");
			errf(err, errlen, "%s", msg);
			goto out;
		}
	}
	rc = config_parse_buffer(path, buf, len, out, err, errlen);
out:
	free(buf);
	if (fd >= 0)
		close(fd);
	return rc;
}

/* ------------------------------------------------------------- the key */

int config_read_key(const struct config *cfg, char **key_out, char *err, size_t errlen)
{
	char buf[CONFIG_KEY_MAX + 2];
	char msg[MSG_MAX], eb[200], tmp[128];
	const char *path;
	struct stat st;
	size_t len = 0, a, b;
	int fd = -1, rc = -1;

	if (err && errlen)
		err[0] = '\0';
	if (key_out)
		*key_out = NULL;
	if (!cfg || !cfg->admin_key_file || !key_out) {
		errf(err, errlen, "admin_key_file: not set");
		return -1;
	}
	path = cfg->admin_key_file;
	/* O_NONBLOCK: a FIFO planted there must not hang the host */
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		int e = errno;
		if (e == ELOOP)
			snprintf(eb, sizeof(eb), "is a symbolic link: refused (point admin_key_file at the file itself)");
		else
			snprintf(eb, sizeof(eb), "cannot open the key file: %s", errstr(e, tmp, sizeof(tmp)));
		format_msg(msg, sizeof(msg), path, 0, NULL, 0, eb);
		errf(err, errlen, "%s", msg);
		goto out;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(eb, sizeof(eb), "cannot stat the key file: %s", errstr(errno, tmp, sizeof(tmp)));
		format_msg(msg, sizeof(msg), path, 0, NULL, 0, eb);
		errf(err, errlen, "%s", msg);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		format_msg(msg, sizeof(msg), path, 0, NULL, 0,
		           S_ISDIR(st.st_mode) ? "is a directory, not a key file"
		                               : "the key file is not a regular file");
		errf(err, errlen, "%s", msg);
		goto out;
	}
	if (st.st_mode & (S_IRGRP | S_IWGRP | S_IROTH | S_IWOTH)) {
		snprintf(eb, sizeof(eb),
		         "mode %04o is too open: the key file must not be readable or writable by group or others (chmod 600)",
		         (unsigned)(st.st_mode & 07777));
		format_msg(msg, sizeof(msg), path, 0, NULL, 0, eb);
		errf(err, errlen, "%s", msg);
		goto out;
	}
	if (st.st_size > CONFIG_KEY_MAX) {
		format_msg(msg, sizeof(msg), path, 0, NULL, 0, "the key file is larger than 4 KiB");
		errf(err, errlen, "%s", msg);
		goto out;
	}
	for (;;) {
		ssize_t r = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(eb, sizeof(eb), "cannot read the key file: %s", errstr(errno, tmp, sizeof(tmp)));
			format_msg(msg, sizeof(msg), path, 0, NULL, 0, eb);
			errf(err, errlen, "%s", msg);
			goto out;
		}
		if (r == 0)
			break;
		len += (size_t)r;
		if (len > CONFIG_KEY_MAX) {
			format_msg(msg, sizeof(msg), path, 0, NULL, 0, "the key file is larger than 4 KiB");
			errf(err, errlen, "%s", msg);
			goto out;
		}
	}
	buf[len] = '\0';
	a = 0;
	b = len;
	while (a < b && isspace((unsigned char)buf[a]))
		a++;
	while (b > a && isspace((unsigned char)buf[b - 1]))
		b--;
	if (a == b) {
		format_msg(msg, sizeof(msg), path, 0, NULL, 0, "the key file is empty");
		errf(err, errlen, "%s", msg);
		goto out;
	}
	/* the key goes into an HTTP header: nothing that could end or split it */
	for (size_t i = a; i < b; i++) {
		unsigned char c = (unsigned char)buf[i];
		if (c <= 0x20 || c >= 0x7f) {
			format_msg(msg, sizeof(msg), path, 0, NULL, 0,
			           "the key contains white space, control or non-ASCII characters (one key, on one line)");
			errf(err, errlen, "%s", msg);
			goto out;
		}
	}
	buf[b] = '\0';
	*key_out = secret_dup(buf + a);
	if (!*key_out) {
		format_msg(msg, sizeof(msg), path, 0, NULL, 0, "out of memory");
		errf(err, errlen, "%s", msg);
		goto out;
	}
	rc = 0;
out:
	secret_wipe(buf, sizeof(buf));
	if (fd >= 0)
		close(fd);
	return rc;
}

/* --------------------------------------------------------------- dump */

static void dump_str(FILE *fp, const char *k, const char *v, const char *unset)
{
	if (v)
		fprintf(fp, "%s %s\n", k, v);
	else
		fprintf(fp, "# %s (%s)\n", k, unset);
}

static void dump_list(FILE *fp, const char *k, char *const *l)
{
	fprintf(fp, "%s ", k);
	if (!l || !l[0])
		fputs("none", fp);
	for (size_t i = 0; l && l[i]; i++)
		fprintf(fp, "%s%s", i ? ", " : "", l[i]);
	fputc('\n', fp);
}

void config_dump(const struct config *cfg, FILE *fp)
{
	const char *fac = "?";

	if (!cfg || !fp)
		return;
	for (size_t i = 0; i < sizeof(facility_names) / sizeof(facility_names[0]); i++)
		if (log_facility_from_name(facility_names[i]) == cfg->syslog_facility)
			fac = facility_names[i];
	dump_str(fp, "api_url", cfg->api_url, "unset");
	dump_str(fp, "admin_key_file", cfg->admin_key_file, "unset");
	dump_str(fp, "ca_file", cfg->ca_file, "system store");
	fprintf(fp, "http_timeout %d\n", cfg->http_timeout);
	fprintf(fp, "api_rate %d\n", cfg->api_rate);
	dump_str(fp, "base", cfg->base, "required, unset");
	dump_str(fp, "user_filter", cfg->user_filter, "unset");
	dump_str(fp, "disabled_filter", cfg->disabled_filter, "unset");
	fprintf(fp, "revoke_on_delete %s\n", cfg->revoke_on_delete ? "yes" : "no");
	dump_str(fp, "disabled_subtree", cfg->disabled_subtree, "none");
	dump_str(fp, "map_file", cfg->map_file, "none");
	dump_str(fp, "user_id_attribute", cfg->user_id_attribute, "none");
	dump_list(fp, "email_attributes", cfg->email_attributes);
	dump_list(fp, "protect_roles", cfg->protect_roles);
	dump_list(fp, "protect_users", cfg->protect_users);
	fprintf(fp, "revoke_invites %s\n", cfg->revoke_invites ? "yes" : "no");
	fprintf(fp, "dry_run %s\n", cfg->dry_run ? "yes" : "no");
	fprintf(fp, "breaker %d %d\n", cfg->breaker_max, cfg->breaker_window);
	dump_str(fp, "spool_dir", cfg->spool_dir, "unset");
	fprintf(fp, "worker %s\n", cfg->worker == CONFIG_WORKER_NONE ? "none" : "thread");
	dump_str(fp, "ldap_uri", cfg->ldap_uri, "unset");
	dump_str(fp, "ldap_binddn", cfg->ldap_binddn, "none");
	dump_str(fp, "ldap_bindpw_file", cfg->ldap_bindpw_file, "none");
	dump_str(fp, "ldap_sasl_mech", cfg->ldap_sasl_mech, "none");
	dump_str(fp, "login_attribute", cfg->login_attribute, "unset");
	fprintf(fp, "ldap_timeout %d\n", cfg->ldap_timeout);
	fprintf(fp, "syslog_facility %s\n", fac);
	dump_str(fp, "syslog_ident", cfg->syslog_ident, "unset");
	fprintf(fp, "log_level %s\n", log_level_name(cfg->log_level));
	dump_str(fp, "log_file", cfg->log_file, "none");
}
