/* openai: the Administration API client.  Requests go through one libcurl
 * easy handle per client and a process-wide rate limiter; answers are parsed
 * with jansson, leniently, and every outcome is classified for the worker. */
#ifdef __has_include
# if __has_include("or_build.h")
#  include "or_build.h"
# endif
#endif
#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0.1.0"
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include "openai.h"
#include "log.h"

#define PAGE_LIMIT "100"
#define ID_MAX 256
#define EMAIL_MAX 320
/* A Retry-After beyond a day is read as a day: the worker re-asks then, and
 * no arithmetic downstream has to fear a huge value. */
#define RETRY_AFTER_MAX 86400L
#define CONNECT_TIMEOUT_MAX 10L

struct body {
	char *data;
	size_t len, cap;
	int overflow;
};

struct openai_client {
	CURL *curl;
	char *base;        /* api_url without trailing slash */
	char *key;         /* secret_dup'd: wiped when freed */
	long timeout;
	struct body body;
	char retry_after[64];
	int have_retry_after;
	char errbuf[CURL_ERROR_SIZE];
};

/* ---- small helpers ---------------------------------------------------- */


static void res_reset(struct openai_result *res)
{
	res->status = OPENAI_OK;
	res->http_status = 0;
	res->retry_after = -1;
	res->message[0] = '\0';
}

/* Messages end up in syslog: no control characters, bounded length. */
static void sanitise(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = ' ';
}

__attribute__((format(printf, 3, 4)))
static int fail(struct openai_result *res, enum openai_status st, const char *fmt, ...)
{
	va_list ap;

	res->status = st;
	va_start(ap, fmt);
	vsnprintf(res->message, sizeof(res->message), fmt, ap);
	va_end(ap);
	sanitise(res->message);
	return st;
}

/* ASCII case-fold: addresses are compared the way the organization's own
 * filter compares them; non-ASCII bytes must match exactly. */
static int ascii_casecmp(const char *a, const char *b)
{
	for (;; a++, b++) {
		int ca = (unsigned char)*a, cb = (unsigned char)*b;
		if (ca >= 'A' && ca <= 'Z')
			ca += 'a' - 'A';
		if (cb >= 'A' && cb <= 'Z')
			cb += 'a' - 'A';
		if (ca != cb || ca == 0)
			return ca - cb;
	}
}

const char *openai_status_name(enum openai_status s)
{
	switch (s) {
	case OPENAI_OK: return "ok";
	case OPENAI_NOT_FOUND: return "not_found";
	case OPENAI_RATE_LIMITED: return "rate_limited";
	case OPENAI_AUTH: return "auth";
	case OPENAI_PERMANENT: return "permanent";
	case OPENAI_TRANSIENT: return "transient";
	case OPENAI_PROTOCOL: return "protocol";
	}
	return "unknown";
}

/* ---- IDs and URLs ------------------------------------------------------ */

int openai_id_check(const char *id, struct openai_result *res)
{
	size_t n;
	const unsigned char *p;

	if (!id || !*id)
		return fail(res, OPENAI_PERMANENT, "empty ID refused");
	n = strlen(id);
	if (n > ID_MAX)
		return fail(res, OPENAI_PERMANENT, "ID longer than %d bytes refused", ID_MAX);
	for (p = (const unsigned char *)id; *p; p++)
		if (*p <= 0x20 || *p == 0x7f || *p == '/' || *p == '?' || *p == '#' ||
		    *p == '%' || *p == '\\')
			return fail(res, OPENAI_PERMANENT,
			            "ID with '/', '?', '#', '%%', '\\', white space or control characters refused");
	return OPENAI_OK;
}

/* RFC 3986: everything but the unreserved characters is percent-encoded, so
 * a value can never add a path segment or a query parameter. */
static int url_escape(char **p, char *end, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char *o = *p;

	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		/* not isalnum(): the host process's locale must not widen the set */
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		    ch == '-' || ch == '.' || ch == '_' || ch == '~') {
			if (o + 1 >= end)
				return -1;
			*o++ = (char)ch;
		} else {
			if (o + 3 >= end)
				return -1;
			*o++ = '%';
			*o++ = hex[ch >> 4];
			*o++ = hex[ch & 15];
		}
	}
	*o = '\0';
	*p = o;
	return 0;
}

static int url_put(char **p, char *end, const char *s)
{
	size_t n = strlen(s);
	if (*p + n >= end)
		return -1;
	memcpy(*p, s, n + 1);
	*p += n;
	return 0;
}

char *openai_url_new(const char *api_url, const char *path, const char *id,
                     const char *const *params)
{
	size_t cap, base_len;
	char *url = NULL, *p, *end;
	const char *const *q;

	if (!api_url || !path)
		return NULL;
	base_len = strlen(api_url);
	while (base_len > 0 && api_url[base_len - 1] == '/')
		base_len--;
	/* Worst case every byte of a value becomes %XX. */
	cap = base_len + strlen(path) + 2 + (id ? 3 * strlen(id) + 1 : 0);
	for (q = params; q && q[0]; q += 2) {
		if (!q[1])
			return NULL;
		cap += strlen(q[0]) + 3 * strlen(q[1]) + 2;
	}
	url = malloc(cap + 1);
	if (!url)
		return NULL;
	p = url;
	end = url + cap + 1;
	memcpy(p, api_url, base_len);
	p += base_len;
	*p = '\0';
	if (url_put(&p, end, path) < 0)
		goto bad;
	if (id && (url_put(&p, end, "/") < 0 || url_escape(&p, end, id) < 0))
		goto bad;
	for (q = params; q && q[0]; q += 2) {
		if (url_put(&p, end, q == params ? "?" : "&") < 0 || url_put(&p, end, q[0]) < 0 ||
		    url_put(&p, end, "=") < 0 || url_escape(&p, end, q[1]) < 0)
			goto bad;
	}
	return url;
bad:
	free(url);
	return NULL;
}

static int host_is_loopback(const char *host)
{
	unsigned char a4[4];
	struct in6_addr a6;

	if (strcasecmp(host, "localhost") == 0 || strcasecmp(host, "localhost.") == 0)
		return 1;
	if (inet_pton(AF_INET, host, a4) == 1)
		return a4[0] == 127;
	if (inet_pton(AF_INET6, host, &a6) == 1) {
		if (IN6_IS_ADDR_LOOPBACK(&a6))
			return 1;
		return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
	}
	return 0;
}

/* The key must not cross a network in clear: http:// only to this host.
 * Credentials in the URL are refused too (they would hide the real host). */
int openai_check_api_url(const char *url, char *err, size_t errlen)
{
	const char *auth, *end, *h, *hend;
	char host[256];
	int https;
	size_t n;

	if (!url || !*url) {
		snprintf(err, errlen, "api_url: empty");
		return -1;
	}
	if (strncasecmp(url, "https://", 8) == 0)
		https = 1;
	else if (strncasecmp(url, "http://", 7) == 0)
		https = 0;
	else {
		snprintf(err, errlen, "api_url: only https:// (or http:// to a loopback address) is allowed");
		return -1;
	}
	auth = url + (https ? 8 : 7);
	end = auth + strcspn(auth, "/?#");
	for (h = auth; h < end; h++)
		if (*h == '@' || (unsigned char)*h <= 0x20 || *h == 0x7f) {
			snprintf(err, errlen, "api_url: user information or white space in the host part is not allowed");
			return -1;
		}
	if (auth == end) {
		snprintf(err, errlen, "api_url: no host");
		return -1;
	}
	if (https)
		return 0;
	if (*auth == '[') {
		h = auth + 1;
		hend = memchr(h, ']', (size_t)(end - h));
		if (!hend) {
			snprintf(err, errlen, "api_url: unterminated IPv6 address");
			return -1;
		}
	} else {
		h = auth;
		hend = memchr(h, ':', (size_t)(end - h));
		if (!hend)
			hend = end;
	}
	n = (size_t)(hend - h);
	if (n == 0 || n >= sizeof(host)) {
		snprintf(err, errlen, "api_url: bad host");
		return -1;
	}
	memcpy(host, h, n);
	host[n] = '\0';
	if (!host_is_loopback(host)) {
		snprintf(err, errlen,
		         "api_url: refusing to send the admin key in clear to %s: http:// is only "
		         "allowed to loopback (127.0.0.0/8, ::1, localhost); use https://", host);
		return -1;
	}
	return 0;
}

/* ---- Retry-After ------------------------------------------------------- */

static const char *const month_names[12] = {
	"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"
};
static const char *const day_names[7] = { "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun" };
static const char *const long_day_names[7] = {
	"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"
};

/* Days since 1970-01-01 of a proleptic Gregorian date (month 1..12). */
static long long days_from_civil(long long y, int m, int d)
{
	long long era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int month_days(long long y, int m)
{
	static const int md[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return 29;
	return md[m - 1];
}

/* Reads exactly n digits. */
static int digits(const char **s, int n, int *out)
{
	int v = 0;
	while (n--) {
		if (**s < '0' || **s > '9')
			return -1;
		v = v * 10 + (*(*s)++ - '0');
	}
	*out = v;
	return 0;
}

static int lit(const char **s, const char *word)
{
	size_t n = strlen(word);
	if (strncmp(*s, word, n) != 0)
		return -1;
	*s += n;
	return 0;
}

static int name_of(const char **s, const char *const *names, int count)
{
	int i;
	for (i = 0; i < count; i++)
		if (lit(s, names[i]) == 0)
			return i;
	return -1;
}

static int hms(const char **s, int *h, int *mi, int *se)
{
	if (digits(s, 2, h) < 0 || lit(s, ":") < 0 || digits(s, 2, mi) < 0 ||
	    lit(s, ":") < 0 || digits(s, 2, se) < 0)
		return -1;
	return 0;
}

/* RFC 7231 7.1.1.1: IMF-fixdate, and the two obsolete forms recipients
 * must accept (RFC 850 and asctime).  Returns seconds since the epoch. */
static int http_date(const char *s, long long *out)
{
	const char *p = s;
	int d, mo, y, h, mi, se, y2;
	long long year;

	if (name_of(&p, long_day_names, 7) >= 0) {
		/* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT */
		if (lit(&p, ", ") < 0 || digits(&p, 2, &d) < 0 || lit(&p, "-") < 0 ||
		    (mo = name_of(&p, month_names, 12)) < 0 || lit(&p, "-") < 0 ||
		    digits(&p, 2, &y2) < 0 || lit(&p, " ") < 0 || hms(&p, &h, &mi, &se) < 0 ||
		    lit(&p, " GMT") < 0)
			return -1;
		year = y2 < 70 ? 2000 + y2 : 1900 + y2;
	} else {
		p = s;
		if (name_of(&p, day_names, 7) < 0)
			return -1;
		if (*p == ',') {
			/* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
			if (lit(&p, ", ") < 0 || digits(&p, 2, &d) < 0 || lit(&p, " ") < 0 ||
			    (mo = name_of(&p, month_names, 12)) < 0 || lit(&p, " ") < 0 ||
			    digits(&p, 4, &y) < 0 || lit(&p, " ") < 0 || hms(&p, &h, &mi, &se) < 0 ||
			    lit(&p, " GMT") < 0)
				return -1;
		} else {
			/* asctime: Sun Nov  6 08:49:37 1994 */
			if (lit(&p, " ") < 0 || (mo = name_of(&p, month_names, 12)) < 0 ||
			    lit(&p, " ") < 0)
				return -1;
			if (*p == ' ') {
				p++;
				if (digits(&p, 1, &d) < 0)
					return -1;
			} else if (digits(&p, 2, &d) < 0)
				return -1;
			if (lit(&p, " ") < 0 || hms(&p, &h, &mi, &se) < 0 || lit(&p, " ") < 0 ||
			    digits(&p, 4, &y) < 0)
				return -1;
		}
		year = y;
	}
	if (*p != '\0')
		return -1;
	mo += 1;
	if (d < 1 || d > month_days(year, mo) || h > 23 || mi > 59 || se > 60)
		return -1;
	*out = days_from_civil(year, mo, d) * 86400 + h * 3600L + mi * 60L + se;
	return 0;
}

long openai_parse_retry_after(const char *value, long now)
{
	char buf[64];
	size_t n;
	const char *p;
	long long v = 0, when;

	if (!value)
		return -1;
	while (*value == ' ' || *value == '\t')
		value++;
	n = strlen(value);
	while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t' ||
	                 value[n - 1] == '\r' || value[n - 1] == '\n'))
		n--;
	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, value, n);
	buf[n] = '\0';
	if (buf[0] >= '0' && buf[0] <= '9') {
		for (p = buf; *p; p++) {
			if (*p < '0' || *p > '9')
				return -1;
			if (v <= RETRY_AFTER_MAX)
				v = v * 10 + (*p - '0');
		}
		return v > RETRY_AFTER_MAX ? RETRY_AFTER_MAX : (long)v;
	}
	if (http_date(buf, &when) < 0)
		return -1;
	if (when <= (long long)now)
		return 0;
	when -= now;
	return when > RETRY_AFTER_MAX ? RETRY_AFTER_MAX : (long)when;
}

/* ---- parsers ----------------------------------------------------------- */

static json_t *load(const char *body, size_t len, struct openai_result *res)
{
	json_error_t e;
	json_t *j;

	if (!body || len == 0) {
		fail(res, OPENAI_PROTOCOL, "empty answer where JSON was expected");
		return NULL;
	}
	j = json_loadb(body, len, 0, &e);
	if (!j) {
		fail(res, OPENAI_PROTOCOL, "malformed JSON at line %d column %d: %.200s",
		     e.line, e.column, e.text);
		return NULL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		fail(res, OPENAI_PROTOCOL, "answer is not a JSON object");
		return NULL;
	}
	return j;
}

/* A string, null or absent (*out NULL); anything else is a protocol error. */
static int opt_string(json_t *o, const char *key, char **out, const char *what,
                      struct openai_result *res)
{
	json_t *v = json_object_get(o, key);

	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return fail(res, OPENAI_PROTOCOL, "%s: %s is not a string", what, key);
	*out = strdup(json_string_value(v));
	if (!*out)
		return fail(res, OPENAI_PROTOCOL, "out of memory");
	return 0;
}

/* An ID we may later put into a path: a non-empty string passing the same
 * check as IDs the caller gives us. */
static int req_id(json_t *o, char **out, const char *what, struct openai_result *res)
{
	json_t *v = json_object_get(o, "id");
	struct openai_result tmp;

	*out = NULL;
	if (!v)
		return fail(res, OPENAI_PROTOCOL, "%s: id missing", what);
	if (!json_is_string(v))
		return fail(res, OPENAI_PROTOCOL, "%s: id is not a string", what);
	if (openai_id_check(json_string_value(v), &tmp) != OPENAI_OK)
		return fail(res, OPENAI_PROTOCOL, "%s: id unusable: %s", what, tmp.message);
	*out = strdup(json_string_value(v));
	if (!*out)
		return fail(res, OPENAI_PROTOCOL, "out of memory");
	return 0;
}

void openai_user_clear(struct openai_user *u)
{
	if (!u)
		return;
	free(u->id);
	free(u->email);
	free(u->role);
	free(u->name);
	memset(u, 0, sizeof(*u));
}

void openai_users_free(struct openai_user *v, size_t n)
{
	size_t i;

	if (!v)
		return;
	for (i = 0; i < n; i++)
		openai_user_clear(&v[i]);
	free(v);
}

void openai_invite_clear(struct openai_invite *inv)
{
	if (!inv)
		return;
	free(inv->id);
	free(inv->email);
	free(inv->role);
	free(inv->status);
	memset(inv, 0, sizeof(*inv));
}

static int user_from_json(json_t *o, struct openai_user *u, struct openai_result *res)
{
	json_t *nested;

	memset(u, 0, sizeof(*u));
	if (!json_is_object(o))
		return fail(res, OPENAI_PROTOCOL, "user is not an object");
	if (req_id(o, &u->id, "user", res) || opt_string(o, "email", &u->email, "user", res) ||
	    opt_string(o, "role", &u->role, "user", res) ||
	    opt_string(o, "name", &u->name, "user", res))
		goto bad;
	/* Some answers carry the address only in the nested user object. */
	nested = json_object_get(o, "user");
	if (!u->email && json_is_object(nested) &&
	    opt_string(nested, "email", &u->email, "user.user", res))
		goto bad;
	return 0;
bad:
	openai_user_clear(u);
	return res->status;
}

static int invite_from_json(json_t *o, struct openai_invite *inv, struct openai_result *res)
{
	memset(inv, 0, sizeof(*inv));
	if (!json_is_object(o))
		return fail(res, OPENAI_PROTOCOL, "invite is not an object");
	if (req_id(o, &inv->id, "invite", res) ||
	    opt_string(o, "email", &inv->email, "invite", res) ||
	    opt_string(o, "role", &inv->role, "invite", res) ||
	    opt_string(o, "status", &inv->status, "invite", res))
		goto bad;
	/* Callers compare these: an invite without them is not one we can judge. */
	if (!inv->email) {
		fail(res, OPENAI_PROTOCOL, "invite %s: email missing", inv->id);
		goto bad;
	}
	if (!inv->status) {
		fail(res, OPENAI_PROTOCOL, "invite %s: status missing", inv->id);
		goto bad;
	}
	return 0;
bad:
	openai_invite_clear(inv);
	return res->status;
}

int openai_parse_user(const char *body, size_t len, struct openai_user *out,
                      struct openai_result *res)
{
	struct openai_result local;
	json_t *j;
	int rc;

	if (!res)
		res = &local;
	memset(out, 0, sizeof(*out));
	j = load(body, len, res);
	if (!j)
		return res->status;
	rc = user_from_json(j, out, res);
	json_decref(j);
	if (rc == 0)
		res->status = OPENAI_OK;
	return rc ? (int)res->status : OPENAI_OK;
}

/* The common part of a list page: data (array), has_more, the cursor. */
static int page_head(json_t *j, json_t **data, int *has_more, char **last_id,
                     struct openai_result *res)
{
	json_t *hm, *li;

	*data = json_object_get(j, "data");
	if (!*data)
		return fail(res, OPENAI_PROTOCOL, "list: data missing");
	if (!json_is_array(*data))
		return fail(res, OPENAI_PROTOCOL, "list: data is not an array");
	hm = json_object_get(j, "has_more");
	if (!hm)
		return fail(res, OPENAI_PROTOCOL, "list: has_more missing");
	if (!json_is_boolean(hm))
		return fail(res, OPENAI_PROTOCOL, "list: has_more is not a boolean");
	*has_more = json_is_true(hm);
	li = json_object_get(j, "last_id");
	if (li && !json_is_null(li) && !json_is_string(li))
		return fail(res, OPENAI_PROTOCOL, "list: last_id is not a string");
	*last_id = NULL;
	if (json_is_string(li) && json_string_length(li) > 0) {
		*last_id = strdup(json_string_value(li));
		if (!*last_id)
			return fail(res, OPENAI_PROTOCOL, "out of memory");
	}
	return 0;
}

/* When has_more is set the next page starts after last_id, or failing that
 * after the last item; with neither we cannot go on. */
static int page_cursor(int has_more, char **last_id, const char *last_item,
                       struct openai_result *res)
{
	struct openai_result tmp;

	if (!has_more)
		return 0;
	if (!*last_id && last_item) {
		*last_id = strdup(last_item);
		if (!*last_id)
			return fail(res, OPENAI_PROTOCOL, "out of memory");
	}
	if (!*last_id)
		return fail(res, OPENAI_PROTOCOL, "list: has_more without last_id or items");
	if (openai_id_check(*last_id, &tmp) != OPENAI_OK)
		return fail(res, OPENAI_PROTOCOL, "list: last_id unusable: %s", tmp.message);
	return 0;
}

/* What differs between a page of users and a page of invites. */
struct page_kind {
	size_t size;                                   /* of one item */
	int (*parse)(json_t *o, void *item, struct openai_result *res);
	void (*clear)(void *item);
	const char *(*id)(const void *item);
	const char *what;
};

/* Parses a page into a new array, then appends it to *vp / *n: on any
 * error the caller's vector is left as it was. */
static int parse_page(const struct page_kind *k, const char *body, size_t len, void **vp,
                      size_t *n, int *has_more, char **last_id, struct openai_result *res)
{
	struct openai_result local;
	char *nv = NULL, *grown;
	size_t cnt = 0, i, total;
	json_t *j, *data;
	char *cursor = NULL;
	int more = 0;

	if (!res)
		res = &local;
	j = load(body, len, res);
	if (!j)
		return res->status;
	if (page_head(j, &data, &more, &cursor, res))
		goto out;
	total = json_array_size(data);
	if (total > 0) {
		nv = calloc(total, k->size);
		if (!nv) {
			fail(res, OPENAI_PROTOCOL, "out of memory");
			goto out;
		}
	}
	for (i = 0; i < total; i++, cnt++)
		if (k->parse(json_array_get(data, i), nv + i * k->size, res))
			goto out;
	if (page_cursor(more, &cursor, cnt ? k->id(nv + (cnt - 1) * k->size) : NULL, res))
		goto out;
	if (cnt) {
		if (*n > SIZE_MAX / k->size - cnt) {
			fail(res, OPENAI_PROTOCOL, "too many %s", k->what);
			goto out;
		}
		grown = realloc(*vp, (*n + cnt) * k->size);
		if (!grown) {
			fail(res, OPENAI_PROTOCOL, "out of memory");
			goto out;
		}
		*vp = grown;
		memcpy(grown + *n * k->size, nv, cnt * k->size);
		*n += cnt;
		cnt = 0; /* moved: nothing left to clear */
	}
	*has_more = more;
	*last_id = cursor;
	cursor = NULL;
	res->status = OPENAI_OK;
out:
	json_decref(j);
	for (i = 0; i < cnt; i++)
		k->clear(nv + i * k->size);
	free(nv);
	free(cursor);
	return res->status;
}

static int user_item(json_t *o, void *item, struct openai_result *res)
{
	return user_from_json(o, item, res);
}

static void user_item_clear(void *item)
{
	openai_user_clear(item);
}

static const char *user_item_id(const void *item)
{
	return ((const struct openai_user *)item)->id;
}

static int invite_item(json_t *o, void *item, struct openai_result *res)
{
	return invite_from_json(o, item, res);
}

static void invite_item_clear(void *item)
{
	openai_invite_clear(item);
}

static const char *invite_item_id(const void *item)
{
	return ((const struct openai_invite *)item)->id;
}

static const struct page_kind user_page = {
	sizeof(struct openai_user), user_item, user_item_clear, user_item_id, "users"
};
static const struct page_kind invite_page = {
	sizeof(struct openai_invite), invite_item, invite_item_clear, invite_item_id, "invites"
};

int openai_parse_user_page(const char *body, size_t len, struct openai_user **v,
                           size_t *n, int *has_more, char **last_id,
                           struct openai_result *res)
{
	void *p = *v;
	int rc = parse_page(&user_page, body, len, &p, n, has_more, last_id, res);

	*v = p;
	return rc;
}

int openai_parse_invite_page(const char *body, size_t len, struct openai_invite **v,
                             size_t *n, int *has_more, char **last_id,
                             struct openai_result *res)
{
	void *p = *v;
	int rc = parse_page(&invite_page, body, len, &p, n, has_more, last_id, res);

	*v = p;
	return rc;
}

int openai_parse_deleted(const char *body, size_t len, const char *object,
                         struct openai_result *res)
{
	struct openai_result local;
	json_t *j, *v;

	if (!res)
		res = &local;
	j = load(body, len, res);
	if (!j)
		return res->status;
	v = json_object_get(j, "object");
	if (object && v && !(json_is_string(v) && strcmp(json_string_value(v), object) == 0)) {
		fail(res, OPENAI_PROTOCOL, "delete: object is not %s", object);
		goto out;
	}
	v = json_object_get(j, "deleted");
	if (!v) {
		fail(res, OPENAI_PROTOCOL, "delete: deleted missing");
		goto out;
	}
	if (!json_is_boolean(v)) {
		fail(res, OPENAI_PROTOCOL, "delete: deleted is not a boolean");
		goto out;
	}
	if (!json_is_true(v)) {
		fail(res, OPENAI_PROTOCOL, "delete: answered deleted=false");
		goto out;
	}
	res->status = OPENAI_OK;
out:
	json_decref(j);
	return res->status;
}

/* The message of an error answer ({"error":{"message":...}}), if any. */
static void error_message(const char *body, size_t len, char *out, size_t outlen)
{
	json_t *j, *e, *m;

	out[0] = '\0';
	if (!body || len == 0)
		return;
	j = json_loadb(body, len, 0, NULL);
	if (!j)
		return;
	e = json_object_get(j, "error");
	m = json_is_object(e) ? json_object_get(e, "message") : NULL;
	if (json_is_string(m))
		snprintf(out, outlen, "%s", json_string_value(m));
	else if (json_is_string(e))
		snprintf(out, outlen, "%s", json_string_value(e));
	json_decref(j);
	sanitise(out);
}

/* ---- rate limiter ------------------------------------------------------ */

/* One token bucket for the process: every client draws from it, so several
 * worker threads together stay under api_rate.  The rate is the one of the
 * client created last (every component of a process reads the same file;
 * a reload brings the new value).  Burst = max(1, rate).  A request reserves
 * its token at once (the balance may go negative) and sleeps off the debt
 * outside the lock, so waiters are served in order.
 *
 * A 429 is the organization's limit, not ours, and it counts every request
 * of the key: after one, no request of the process goes out before
 * Retry-After has passed (PAUSE_DEFAULT when the server gave none, 0 or an
 * unreadable value).  A request waits out at most PAUSE_WAIT_MAX seconds of
 * such a pause, like the bucket's own short waits; a longer pause is not
 * slept through, so that a worker being stopped is never stuck behind it:
 * the request is not sent and comes back OPENAI_RATE_LIMITED with the
 * seconds left, which the worker honours like any Retry-After. */
#define PAUSE_DEFAULT 1.0
#define PAUSE_WAIT_MAX 5.0

static pthread_mutex_t rl_lock = PTHREAD_MUTEX_INITIALIZER;
static double rl_rate = 10.0, rl_burst = 10.0, rl_tokens = 10.0;
static struct timespec rl_last;
static int rl_started;
static double rl_pause_until; /* CLOCK_MONOTONIC seconds; 0: no pause */

static double ts_diff(const struct timespec *a, const struct timespec *b)
{
	return (double)(a->tv_sec - b->tv_sec) + (double)(a->tv_nsec - b->tv_nsec) / 1e9;
}

static double mono_secs(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_secs(double s)
{
	struct timespec ts;

	if (s <= 0.0)
		return;
	ts.tv_sec = (time_t)s;
	ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9) + 1000;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void rl_configure(int rate)
{
	if (rate < 1)
		rate = 1;
	pthread_mutex_lock(&rl_lock);
	rl_rate = rate;
	rl_burst = rate;
	if (!rl_started) {
		clock_gettime(CLOCK_MONOTONIC, &rl_last);
		rl_tokens = rl_burst;
		rl_started = 1;
	} else if (rl_tokens > rl_burst)
		rl_tokens = rl_burst;
	pthread_mutex_unlock(&rl_lock);
}

/* A 429 answered at AT (monotonic): extend the pause, never shorten it. */
static void rl_pause(double at, long retry_after)
{
	double until = at + (retry_after > 0 ? (double)retry_after : PAUSE_DEFAULT);

	pthread_mutex_lock(&rl_lock);
	if (until > rl_pause_until)
		rl_pause_until = until;
	pthread_mutex_unlock(&rl_lock);
}

static double rl_pause_left(void)
{
	double left;

	pthread_mutex_lock(&rl_lock);
	left = rl_pause_until > 0.0 ? rl_pause_until - mono_secs() : 0.0;
	pthread_mutex_unlock(&rl_lock);
	return left > 0.0 ? left : 0.0;
}

long openai_pause_left_ms(void)
{
	double left = rl_pause_left();
	long ms = (long)(left * 1000.0);

	return (double)ms < left * 1000.0 ? ms + 1 : ms;
}

void openai_pause_reset(void)
{
	pthread_mutex_lock(&rl_lock);
	rl_pause_until = 0.0;
	pthread_mutex_unlock(&rl_lock);
}

/* 0 when the request may go out now; otherwise the whole seconds of pause
 * left, and the request must not be sent. */
static long rl_acquire(void)
{
	double wait = 0.0, waited, left;
	struct timespec now;
	long s;

	left = rl_pause_left();
	if (left > PAUSE_WAIT_MAX)
		goto refuse;
	pthread_mutex_lock(&rl_lock);
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (!rl_started) {
		rl_last = now;
		rl_tokens = rl_burst;
		rl_started = 1;
	}
	rl_tokens += ts_diff(&now, &rl_last) * rl_rate;
	if (rl_tokens > rl_burst)
		rl_tokens = rl_burst;
	rl_last = now;
	rl_tokens -= 1.0;
	if (rl_tokens < 0.0)
		wait = -rl_tokens / rl_rate;
	pthread_mutex_unlock(&rl_lock);
	sleep_secs(wait);
	waited = wait;
	/* Checked again after the bucket's wait: another thread may have got a
	 * 429 meanwhile, or extended the pause while this one slept. */
	while ((left = rl_pause_left()) > 0.0) {
		if (waited + left > PAUSE_WAIT_MAX)
			goto refuse;
		sleep_secs(left);
		waited += left;
	}
	return 0;
refuse:
	s = (long)left;
	return (double)s < left ? s + 1 : s;
}

/* ---- HTTP -------------------------------------------------------------- */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_OK;

static void global_init_once(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int openai_global_init(void)
{
	pthread_once(&global_once, global_init_once);
	return global_rc == CURLE_OK ? 0 : -1;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct body *b = arg;
	size_t n = size * nmemb, cap;
	char *grown;

	if (n > OPENAI_MAX_BODY || b->len + n > OPENAI_MAX_BODY) {
		b->overflow = 1;
		return 0; /* curl stops with CURLE_WRITE_ERROR */
	}
	if (b->len + n + 1 > b->cap) {
		cap = b->cap ? b->cap : 16384;
		while (cap < b->len + n + 1)
			cap *= 2;
		if (cap > OPENAI_MAX_BODY + 1)
			cap = OPENAI_MAX_BODY + 1;
		grown = realloc(b->data, cap);
		if (!grown)
			return 0;
		b->data = grown;
		b->cap = cap;
	}
	memcpy(b->data + b->len, ptr, n);
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct openai_client *c = arg;
	size_t n = size * nmemb, vlen;
	const char *v;

	/* A new status line (after 100 Continue, say): forget the previous. */
	if (n >= 5 && strncmp(ptr, "HTTP/", 5) == 0) {
		c->have_retry_after = 0;
		c->retry_after[0] = '\0';
		return n;
	}
	if (n > 12 && strncasecmp(ptr, "Retry-After:", 12) == 0) {
		v = ptr + 12;
		vlen = n - 12;
		while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n'))
			vlen--;
		if (vlen < sizeof(c->retry_after)) {
			memcpy(c->retry_after, v, vlen);
			c->retry_after[vlen] = '\0';
			c->have_retry_after = 1;
		}
	}
	return n;
}

struct openai_client *openai_client_new(const struct config *cfg, const char *key,
                                        char *err, size_t errlen)
{
	struct openai_client *c = NULL;
	int loopback_http;
	long t;

	if (!cfg || !cfg->api_url) {
		snprintf(err, errlen, "openai: no configuration");
		return NULL;
	}
	if (!key || !*key) {
		snprintf(err, errlen, "openai: no admin key");
		return NULL;
	}
	if (strpbrk(key, "\r\n") != NULL) {
		snprintf(err, errlen, "openai: the admin key contains a line break");
		return NULL;
	}
	if (openai_check_api_url(cfg->api_url, err, errlen) < 0)
		return NULL;
	if (openai_global_init() < 0) {
		snprintf(err, errlen, "openai: curl_global_init failed");
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		goto nomem;
	c->base = strdup(cfg->api_url);
	c->key = secret_dup(key);
	c->curl = curl_easy_init();
	if (!c->base || !c->key || !c->curl)
		goto nomem;
	{
		size_t bl = strlen(c->base);
		while (bl > 0 && c->base[bl - 1] == '/')
			c->base[--bl] = '\0';
	}
	t = cfg->http_timeout > 0 ? cfg->http_timeout : 30;
	c->timeout = t;
	loopback_http = strncasecmp(c->base, "http://", 7) == 0;

	curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, t);
	curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT, t < CONNECT_TIMEOUT_MAX ? t : CONNECT_TIMEOUT_MAX);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(c->curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c->curl, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c->curl, CURLOPT_SSL_VERIFYHOST, 2L);
	if (cfg->ca_file) {
		/* ca_file replaces the system store: a site that names its CA trusts it alone. */
		curl_easy_setopt(c->curl, CURLOPT_CAINFO, cfg->ca_file);
		curl_easy_setopt(c->curl, CURLOPT_CAPATH, NULL);
	}
	/* Plain HTTP is allowed to loopback only; a proxy from the environment
	 * would carry the key off this host in clear, so go direct. */
	if (loopback_http)
		curl_easy_setopt(c->curl, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c->curl, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)OPENAI_MAX_BODY);
	curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &c->body);
	curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, c);
	curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, c->errbuf);
	curl_easy_setopt(c->curl, CURLOPT_USERAGENT, "openai-revoke/" PACKAGE_VERSION);

	rl_configure(cfg->api_rate);
	return c;
nomem:
	snprintf(err, errlen, "openai: out of memory");
	openai_client_free(c);
	return NULL;
}

void openai_client_free(struct openai_client *c)
{
	if (!c)
		return;
	if (c->curl)
		curl_easy_cleanup(c->curl);
	free(c->base);
	secret_free(c->key);
	free(c->body.data);
	free(c);
}

/* The key must never reach a message; an API that echoes it gets it masked. */
static void redact(struct openai_client *c, char *msg)
{
	size_t kl = strlen(c->key);
	char *p = msg;

	if (kl == 0)
		return;
	while ((p = strstr(p, c->key)) != NULL) {
		memset(p, '*', kl);
		p += kl;
	}
}

static int classify_curl(struct openai_client *c, CURLcode rc, struct openai_result *res)
{
	const char *why = c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc);

	switch (rc) {
	case CURLE_WRITE_ERROR:
	case CURLE_FILESIZE_EXCEEDED:
		if (c->body.overflow || rc == CURLE_FILESIZE_EXCEEDED)
			return fail(res, OPENAI_PROTOCOL, "response larger than 4 MiB");
		return fail(res, OPENAI_TRANSIENT, "receiving the answer failed: %s", why);
	case CURLE_OPERATION_TIMEDOUT:
		return fail(res, OPENAI_TRANSIENT, "timeout after %ld s: %s", c->timeout, why);
	case CURLE_PARTIAL_FILE:
		return fail(res, OPENAI_TRANSIENT, "answer truncated: %s", why);
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
		/* Kept transient: the job waits for a fixed ca_file instead of failing. */
		return fail(res, OPENAI_TRANSIENT, "TLS certificate not trusted: %s", why);
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
		return fail(res, OPENAI_PERMANENT, "bad URL: %s", why);
	default:
		return fail(res, OPENAI_TRANSIENT, "connection failed: %s", why);
	}
}

/* One request.  On return res is classified; for a 2xx the body is in
 * c->body (NUL-terminated) and the caller parses it.  The one resend is
 * libcurl's own: a reused keep-alive connection that closes before any byte
 * of an answer gets the request once more on a fresh connection. */
static int request(struct openai_client *c, const char *method, const char *url,
                   struct openai_result *res)
{
	struct curl_slist *hdrs = NULL, *h;
	struct timespec t0, t1;
	char *auth = NULL, apimsg[400];
	const char *path;
	size_t alen;
	CURLcode rc;
	long code = 0, ms, paused;

	res_reset(res);
	c->body.len = 0;
	c->body.overflow = 0;
	if (c->body.data)
		c->body.data[0] = '\0';
	c->have_retry_after = 0;
	c->retry_after[0] = '\0';
	c->errbuf[0] = '\0';

	alen = strlen("Authorization: Bearer ") + strlen(c->key) + 1;
	auth = malloc(alen);
	if (!auth)
		return fail(res, OPENAI_TRANSIENT, "out of memory");
	snprintf(auth, alen, "Authorization: Bearer %s", c->key);
	hdrs = curl_slist_append(hdrs, auth);
	secret_wipe(auth, alen);
	free(auth);
	h = hdrs ? curl_slist_append(hdrs, "Accept: application/json") : NULL;
	if (!h) {
		fail(res, OPENAI_TRANSIENT, "out of memory");
		goto out;
	}

	curl_easy_setopt(c->curl, CURLOPT_URL, url);
	curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, strcmp(method, "GET") ? method : NULL);
	curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, hdrs);

	paused = rl_acquire();
	if (paused > 0) {
		res->retry_after = paused;
		fail(res, OPENAI_RATE_LIMITED, "not sent: after an HTTP 429 the organization "
		     "asked for a pause, %ld s left", paused);
		if (log_enabled(LOG_DEBUG))
			log_msg(LOG_DEBUG, "api method=%s path=%s not sent: paused after a 429, "
			        "%ld s left", method, url + strlen(c->base), paused);
		goto out;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	rc = curl_easy_perform(c->curl);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (long)(ts_diff(&t1, &t0) * 1000.0);
	curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
	if (rc == CURLE_OK)
		curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &code);
	res->http_status = code;

	if (log_enabled(LOG_DEBUG)) {
		path = url + strlen(c->base);
		if (rc == CURLE_OK)
			log_msg(LOG_DEBUG, "api method=%s path=%s status=%ld ms=%ld", method, path, code, ms);
		else
			log_msg(LOG_DEBUG, "api method=%s path=%s status=0 error=\"%s\" ms=%ld", method,
			        path, curl_easy_strerror(rc), ms);
	}

	if (c->have_retry_after)
		res->retry_after = openai_parse_retry_after(c->retry_after, (long)time(NULL));

	if (rc != CURLE_OK) {
		classify_curl(c, rc, res);
		goto out;
	}
	if (code >= 200 && code < 300)
		goto out;
	error_message(c->body.data, c->body.len, apimsg, sizeof(apimsg));
	if (code == 404)
		fail(res, OPENAI_NOT_FOUND, "HTTP 404%s%s", apimsg[0] ? ": " : "", apimsg);
	else if (code == 429) {
		rl_pause((double)t1.tv_sec + (double)t1.tv_nsec / 1e9, res->retry_after);
		fail(res, OPENAI_RATE_LIMITED, "HTTP 429%s%s", apimsg[0] ? ": " : "", apimsg);
	}
	else if (code == 401 || code == 403)
		fail(res, OPENAI_AUTH, "%s", apimsg[0] ? apimsg :
		     code == 401 ? "HTTP 401: the admin key was not accepted"
		                 : "HTTP 403: the admin key lacks the permission");
	else if (code >= 400 && code < 500)
		fail(res, OPENAI_PERMANENT, "HTTP %ld%s%s", code, apimsg[0] ? ": " : "", apimsg);
	else if (code >= 500 && code < 600)
		fail(res, OPENAI_TRANSIENT, "HTTP %ld%s%s", code, apimsg[0] ? ": " : "", apimsg);
	else if (code >= 300 && code < 400)
		fail(res, OPENAI_PROTOCOL, "HTTP %ld: unexpected redirect, not followed", code);
	else
		fail(res, OPENAI_PROTOCOL, "unexpected HTTP status %ld", code);
out:
	for (h = hdrs; h; h = h->next)
		if (h->data)
			secret_wipe(h->data, strlen(h->data));
	curl_slist_free_all(hdrs);
	redact(c, res->message);
	return res->status;
}

static int parse_fail_msg(struct openai_client *c, struct openai_result *res)
{
	redact(c, res->message);
	return res->status;
}

int openai_get_user(struct openai_client *c, const char *user_id,
                    struct openai_user *out, struct openai_result *res)
{
	char *url = NULL;
	long code;

	memset(out, 0, sizeof(*out));
	res_reset(res);
	if (openai_id_check(user_id, res) != OPENAI_OK)
		return res->status;
	url = openai_url_new(c->base, "/organization/users", user_id, NULL);
	if (!url)
		return fail(res, OPENAI_PERMANENT, "cannot build the URL");
	if (request(c, "GET", url, res) == OPENAI_OK) {
		code = res->http_status;
		if (openai_parse_user(c->body.data, c->body.len, out, res) != OPENAI_OK)
			parse_fail_msg(c, res);
		res->http_status = code;
	}
	free(url);
	return res->status;
}

int openai_delete_user(struct openai_client *c, const char *user_id,
                       int *already_gone, struct openai_result *res)
{
	char *url = NULL;

	*already_gone = 0;
	res_reset(res);
	if (openai_id_check(user_id, res) != OPENAI_OK)
		return res->status;
	url = openai_url_new(c->base, "/organization/users", user_id, NULL);
	if (!url)
		return fail(res, OPENAI_PERMANENT, "cannot build the URL");
	request(c, "DELETE", url, res);
	if (res->status == OPENAI_OK) {
		if (openai_parse_deleted(c->body.data, c->body.len, "organization.user.deleted",
		                         res) != OPENAI_OK)
			parse_fail_msg(c, res);
	} else if (res->status == OPENAI_NOT_FOUND) {
		*already_gone = 1;
		res->status = OPENAI_OK;
		snprintf(res->message, sizeof(res->message), "already gone (HTTP 404)");
	}
	free(url);
	return res->status;
}

static int email_ok(const char *email, struct openai_result *res)
{
	const unsigned char *p;

	if (!email || !*email)
		return fail(res, OPENAI_PERMANENT, "empty address refused");
	if (strlen(email) > EMAIL_MAX)
		return fail(res, OPENAI_PERMANENT, "address longer than %d bytes refused", EMAIL_MAX);
	for (p = (const unsigned char *)email; *p; p++)
		if (*p <= 0x20 || *p == 0x7f)
			return fail(res, OPENAI_PERMANENT, "address with white space or control characters refused");
	return OPENAI_OK;
}

/* Walks every page of a list; each page is handed to on_page.  A cursor
 * that does not move, or more than OPENAI_MAX_PAGES pages, is a protocol
 * error: a server repeating has_more must not keep us busy forever. */
typedef int (*page_fn)(struct openai_client *c, void *arg, int *more, char **cursor,
                       int *stop, struct openai_result *res);

static int walk(struct openai_client *c, const char *path, const char *email,
                page_fn on_page, void *arg, struct openai_result *res)
{
	const char *params[7];
	char *url = NULL, *cursor = NULL, *prev = NULL;
	int more = 1, stop = 0, pages = 0, k;
	long code;

	res_reset(res);
	while (more && !stop) {
		if (++pages > OPENAI_MAX_PAGES) {
			fail(res, OPENAI_PROTOCOL, "has_more never ended (%d pages)", OPENAI_MAX_PAGES);
			goto out;
		}
		k = 0;
		if (email) {
			/* The SDK's array form, brackets escaped as RFC 3986 wants. */
			params[k++] = "emails%5B%5D";
			params[k++] = email;
		}
		params[k++] = "limit";
		params[k++] = PAGE_LIMIT;
		if (cursor) {
			params[k++] = "after";
			params[k++] = cursor;
		}
		params[k] = NULL;
		free(url);
		url = openai_url_new(c->base, path, NULL, params);
		if (!url) {
			fail(res, OPENAI_PERMANENT, "cannot build the URL");
			goto out;
		}
		if (request(c, "GET", url, res) != OPENAI_OK)
			goto out;
		code = res->http_status;
		free(prev);
		prev = cursor;
		cursor = NULL;
		if (on_page(c, arg, &more, &cursor, &stop, res) != OPENAI_OK) {
			parse_fail_msg(c, res);
			goto out;
		}
		res->http_status = code;
		if (more && prev && cursor && strcmp(prev, cursor) == 0) {
			fail(res, OPENAI_PROTOCOL, "has_more never ended (cursor %s repeats)", cursor);
			goto out;
		}
	}
	res->status = OPENAI_OK;
out:
	free(url);
	free(cursor);
	free(prev);
	return res->status;
}

struct find_arg {
	const char *email;
	struct openai_user *v;
	size_t n;
};

static int find_page(struct openai_client *c, void *arg, int *more, char **cursor,
                     int *stop, struct openai_result *res)
{
	struct find_arg *fa = arg;
	struct openai_user *page = NULL, *grown;
	size_t n = 0, i;

	if (openai_parse_user_page(c->body.data, c->body.len, &page, &n, more, cursor, res))
		return res->status;
	/* Never trust the filter: a server that ignores it still gives the
	 * right answer, only slower. */
	for (i = 0; i < n; i++) {
		if (!page[i].email || ascii_casecmp(page[i].email, fa->email) != 0) {
			openai_user_clear(&page[i]);
			continue;
		}
		grown = realloc(fa->v, (fa->n + 1) * sizeof(*grown));
		if (!grown) {
			for (; i < n; i++)
				openai_user_clear(&page[i]);
			free(page);
			return fail(res, OPENAI_PROTOCOL, "out of memory");
		}
		fa->v = grown;
		fa->v[fa->n++] = page[i];
		memset(&page[i], 0, sizeof(page[i]));
	}
	free(page);
	return OPENAI_OK;
}

int openai_find_users_by_email(struct openai_client *c, const char *email,
                               struct openai_user **out, size_t *n,
                               struct openai_result *res)
{
	struct find_arg fa = { email, NULL, 0 };

	*out = NULL;
	*n = 0;
	res_reset(res);
	if (email_ok(email, res) != OPENAI_OK)
		return res->status;
	if (walk(c, "/organization/users", email, find_page, &fa, res) != OPENAI_OK) {
		openai_users_free(fa.v, fa.n);
		return res->status;
	}
	*out = fa.v;
	*n = fa.n;
	return OPENAI_OK;
}

struct list_arg {
	openai_user_cb ucb;
	openai_invite_cb icb;
	void *arg;
};

static int users_page(struct openai_client *c, void *arg, int *more, char **cursor,
                      int *stop, struct openai_result *res)
{
	struct list_arg *la = arg;
	struct openai_user *page = NULL;
	size_t n = 0, i;

	if (openai_parse_user_page(c->body.data, c->body.len, &page, &n, more, cursor, res))
		return res->status;
	for (i = 0; i < n && !*stop; i++)
		if (la->ucb(&page[i], la->arg))
			*stop = 1;
	openai_users_free(page, n);
	return OPENAI_OK;
}

static int invites_page(struct openai_client *c, void *arg, int *more, char **cursor,
                        int *stop, struct openai_result *res)
{
	struct list_arg *la = arg;
	struct openai_invite *page = NULL;
	size_t n = 0, i;

	if (openai_parse_invite_page(c->body.data, c->body.len, &page, &n, more, cursor, res))
		return res->status;
	for (i = 0; i < n && !*stop; i++)
		if (la->icb(&page[i], la->arg))
			*stop = 1;
	for (i = 0; i < n; i++)
		openai_invite_clear(&page[i]);
	free(page);
	return OPENAI_OK;
}

int openai_list_users(struct openai_client *c, openai_user_cb cb, void *arg,
                      struct openai_result *res)
{
	struct list_arg la = { cb, NULL, arg };

	return walk(c, "/organization/users", NULL, users_page, &la, res);
}

int openai_list_invites(struct openai_client *c, openai_invite_cb cb, void *arg,
                        struct openai_result *res)
{
	struct list_arg la = { NULL, cb, arg };

	return walk(c, "/organization/invites", NULL, invites_page, &la, res);
}

int openai_delete_invite(struct openai_client *c, const struct openai_invite *inv,
                         struct openai_result *res)
{
	char *url = NULL;

	res_reset(res);
	if (!inv)
		return fail(res, OPENAI_PERMANENT, "no invite");
	if (!inv->status || strcmp(inv->status, "pending") != 0)
		return fail(res, OPENAI_PERMANENT, "invite is %s, left in place",
		            inv->status ? inv->status : "of unknown status");
	if (openai_id_check(inv->id, res) != OPENAI_OK)
		return res->status;
	url = openai_url_new(c->base, "/organization/invites", inv->id, NULL);
	if (!url)
		return fail(res, OPENAI_PERMANENT, "cannot build the URL");
	if (request(c, "DELETE", url, res) == OPENAI_OK &&
	    openai_parse_deleted(c->body.data, c->body.len, "organization.invite.deleted",
	                         res) != OPENAI_OK)
		parse_fail_msg(c, res);
	free(url);
	return res->status;
}
