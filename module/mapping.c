/* mapping: from a directory user (a job) to an OpenAI user, DESIGN.md
 * section 6.  The static map file lives in a hash table (reconcile looks up
 * every member); struct mapping reloads it when the file changes. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "mapping.h"
#include "rules.h"

#define MAPFILE_MAX_LINE 8192
#define MAPFILE_MAX_SIZE (16u * 1024 * 1024)

/* Keys carry their kind ("d:" DN, "a:" address, "u:" uid) so a uid can
 * never collide with an address or a DN of the same spelling. */
struct mapent {
	char *key;
	char *right;
	int line;
};

struct mapfile {
	struct mapent *slots;  /* open addressing, linear probing */
	size_t cap;            /* power of two */
	size_t n;
};

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull;  /* FNV-1a */
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ull;
	}
	return h;
}

static struct mapent *mf_slot(const struct mapfile *m, const char *key)
{
	size_t i;
	if (!m || m->cap == 0)
		return NULL;
	i = (size_t)hash_str(key) & (m->cap - 1);
	while (m->slots[i].key) {
		if (strcmp(m->slots[i].key, key) == 0)
			return &m->slots[i];
		i = (i + 1) & (m->cap - 1);
	}
	return &m->slots[i];
}

static int mf_grow(struct mapfile *m)
{
	size_t cap = m->cap ? m->cap * 2 : 64, i;
	struct mapent *old = m->slots;
	size_t oldcap = m->cap;

	m->slots = calloc(cap, sizeof(*m->slots));
	if (!m->slots) {
		m->slots = old;
		return -1;
	}
	m->cap = cap;
	for (i = 0; i < oldcap; i++)
		if (old[i].key)
			*mf_slot(m, old[i].key) = old[i];
	free(old);
	return 0;
}

static char *lower_dup(const char *s, const char *prefix)
{
	size_t lp = strlen(prefix), ls = strlen(s), i;
	char *r = malloc(lp + ls + 1);
	if (!r)
		return NULL;
	memcpy(r, prefix, lp);
	for (i = 0; i < ls; i++)
		r[lp + i] = (char)tolower((unsigned char)s[i]);
	r[lp + ls] = '\0';
	return r;
}

/* The hash key for a left side or a lookup; NULL when a DN does not parse
 * (or no memory). */
static char *mf_key(const char *s)
{
	if (strchr(s, '=')) {
		char *n = rules_dn_normalize(s), *r;
		if (!n)
			return NULL;
		r = malloc(strlen(n) + 3);
		if (r) {
			memcpy(r, "d:", 2);
			strcpy(r + 2, n);
		}
		free(n);
		return r;
	}
	return lower_dup(s, strchr(s, '@') ? "a:" : "u:");
}

/* Appends one "NAME:LINE: what" line to err; keeps going when full. */
__attribute__((format(printf, 5, 6)))
static void add_err(char *err, size_t errlen, const char *name, int line,
                    const char *fmt, ...)
{
	size_t used;
	va_list ap;
	int n;

	if (!err || errlen == 0)
		return;
	used = strlen(err);
	if (used + 1 >= errlen)
		return;
	if (used)
		err[used++] = '\n', err[used] = '\0';
	if (line > 0)
		n = snprintf(err + used, errlen - used, "%s:%d: ", name, line);
	else
		n = snprintf(err + used, errlen - used, "%s: ", name);
	if (n < 0 || (size_t)n >= errlen - used)
		return;
	used += (size_t)n;
	va_start(ap, fmt);
	vsnprintf(err + used, errlen - used, fmt, ap);
	va_end(ap);
}

static int valid_user_id(const char *s)
{
	const char *p;
	if (strncmp(s, "user-", 5) != 0 || s[5] == '\0')
		return 0;
	for (p = s + 5; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
			return 0;
	return 1;
}

static int valid_address(const char *s)
{
	const char *at = strchr(s, '@');
	return at && at != s && at[1] && !strchr(at + 1, '@');
}

static int is_space(char c)
{
	return c == ' ' || c == '\t';
}

/* Directory values are UTF-8, so a line in another encoding could never
 * match; and a control byte would reach terminals and logs through the
 * error messages that quote the line.  1 if the N bytes at S are valid
 * UTF-8 (no overlong forms, no surrogates) without control characters but
 * tab and a final CR; else 0 with *why set. */
static int mf_text_ok(const char *s, size_t n, const char **why)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	while (i < n) {
		unsigned char c = p[i];
		size_t k;
		uint32_t cp;

		if (c < 0x80) {
			if ((c < 0x20 && c != '\t' && !(c == '\r' && i + 1 == n)) || c == 0x7f) {
				*why = "control character in line";
				return 0;
			}
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			k = 2, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			k = 3, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			k = 4, cp = c & 0x07;
		else
			goto bad;
		if (n - i < k)
			goto bad;
		for (size_t j = 1; j < k; j++) {
			if ((p[i + j] & 0xc0) != 0x80)
				goto bad;
			cp = (cp << 6) | (p[i + j] & 0x3f);
		}
		if ((k == 3 && cp < 0x800) || (k == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			goto bad;
		if (cp < 0xa0) {   /* C1 controls */
			*why = "control character in line";
			return 0;
		}
		i += k;
	}
	return 1;
bad:
	*why = "line is not valid UTF-8";
	return 0;
}

/* One line (no newline, no NUL inside).  0 ok, -1 an error was reported. */
static int mf_line(struct mapfile *m, const char *name, int lineno, char *line,
                   char *err, size_t errlen)
{
	char *s = line, *e, *right, *left, *key = NULL;
	struct mapent *slot;
	int rc = -1;

	e = s + strlen(s);
	if (e > s && e[-1] == '\r')
		*--e = '\0';
	/* '#' opening a field starts a comment ("cn=Team #5" needs "\#5") */
	for (e = s; *e; e++)
		if (*e == '#' && (e == s || is_space(e[-1]))) {
			*e = '\0';
			break;
		}
	while (is_space(*s))
		s++;
	while (e > s && is_space(e[-1]))
		*--e = '\0';
	if (*s == '\0')
		return 0;

	/* The right side is the last field; a DN on the left may hold spaces. */
	right = e;
	while (right > s && !is_space(right[-1]))
		right--;
	if (right == s) {
		add_err(err, errlen, name, lineno, "missing right side for \"%s\"", s);
		return -1;
	}
	left = s;
	e = right;
	while (e > left && is_space(e[-1]))
		e--;
	*e = '\0';

	if (strchr(left, '=')) {
		if (strchr(right, '=') || strchr(right, ',')) {
			add_err(err, errlen, name, lineno, "missing right side for \"%s %s\"", left, right);
			return -1;
		}
		{
			/* "DN user-1 user-2" would parse as a DN ending in " user-1":
			 * a right-hand side inside the left one is a field too many */
			const char *last = left + strlen(left);
			while (last > left && !is_space(last[-1]))
				last--;
			if (last > left && !strpbrk(last, "=,") &&
			    (strcmp(last, "-") == 0 || valid_user_id(last) || valid_address(last))) {
				add_err(err, errlen, name, lineno, "too many fields (want: <uid, DN or address> <user id, address or ->)");
				return -1;
			}
		}
		key = mf_key(left);
		if (!key) {
			add_err(err, errlen, name, lineno, "left side is not a valid DN: %s", left);
			return -1;
		}
	} else {
		if (strpbrk(left, " \t")) {
			add_err(err, errlen, name, lineno, "too many fields (want: <uid, DN or address> <user id, address or ->)");
			return -1;
		}
		key = mf_key(left);
		if (!key) {
			add_err(err, errlen, name, lineno, "out of memory");
			return -1;
		}
	}
	if (!(strcmp(right, "-") == 0 || valid_user_id(right) || valid_address(right))) {
		add_err(err, errlen, name, lineno,
		        "right side \"%s\" is not an OpenAI user id (user-...), an address or -%s",
		        right, strpbrk(left, " \t") ? " (too many fields?)" : "");
		goto out;
	}
	if ((m->n + 1) * 2 > m->cap && mf_grow(m) != 0) {
		add_err(err, errlen, name, lineno, "out of memory");
		goto out;
	}
	slot = mf_slot(m, key);
	if (slot->key) {
		add_err(err, errlen, name, lineno, "duplicate left side \"%s\" (first on line %d)",
		        left, slot->line);
		goto out;
	}
	slot->right = strdup(right);
	if (!slot->right) {
		add_err(err, errlen, name, lineno, "out of memory");
		goto out;
	}
	slot->key = key;
	slot->line = lineno;
	key = NULL;
	m->n++;
	rc = 0;
out:
	free(key);
	return rc;
}

int mapfile_parse(const char *name, const char *buf, size_t len,
                  struct mapfile **out, char *err, size_t errlen)
{
	struct mapfile *m = NULL;
	char *line = NULL;
	const char *why;
	size_t pos = 0;
	int lineno = 0, bad = 0;

	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	if (!name)
		name = "map_file";
	if (len > MAPFILE_MAX_SIZE) {
		add_err(err, errlen, name, 0, "larger than %u bytes", MAPFILE_MAX_SIZE);
		return -1;
	}
	m = calloc(1, sizeof(*m));
	line = malloc(MAPFILE_MAX_LINE + 1);
	if (!m || !line) {
		add_err(err, errlen, name, 0, "out of memory");
		bad = 1;
		goto out;
	}
	while (pos < len) {
		const char *nl = memchr(buf + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - buf) : len, n = end - pos;

		lineno++;
		if (memchr(buf + pos, '\0', n)) {
			add_err(err, errlen, name, lineno, "NUL byte in line");
			bad = 1;
		} else if (n > MAPFILE_MAX_LINE) {
			add_err(err, errlen, name, lineno, "line longer than %d bytes", MAPFILE_MAX_LINE);
			bad = 1;
		} else if (!mf_text_ok(buf + pos, n, &why)) {
			add_err(err, errlen, name, lineno, "%s", why);
			bad = 1;
		} else {
			memcpy(line, buf + pos, n);
			line[n] = '\0';
			if (mf_line(m, name, lineno, line, err, errlen) != 0)
				bad = 1;
		}
		pos = end + 1;
	}
out:
	free(line);
	if (bad) {
		mapfile_free(m);
		return -1;
	}
	*out = m;
	return 0;
}

int mapfile_load(const char *path, struct mapfile **out, char *err, size_t errlen)
{
	struct stat st;
	char *buf = NULL;
	size_t got = 0;
	int fd, rc = -1;

	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	/* O_NONBLOCK: a FIFO there must not hang the host; S_ISREG refuses it */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		add_err(err, errlen, path, 0, "%s", strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0) {
		add_err(err, errlen, path, 0, "%s", strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		add_err(err, errlen, path, 0, "not a regular file");
		goto out;
	}
	if ((uintmax_t)st.st_size > MAPFILE_MAX_SIZE) {
		add_err(err, errlen, path, 0, "larger than %u bytes", MAPFILE_MAX_SIZE);
		goto out;
	}
	/* read to the cap + 1 whatever fstat said: the file may be growing */
	buf = malloc(MAPFILE_MAX_SIZE + 1);
	if (!buf) {
		add_err(err, errlen, path, 0, "out of memory");
		goto out;
	}
	for (;;) {
		ssize_t r = read(fd, buf + got, MAPFILE_MAX_SIZE + 1 - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			add_err(err, errlen, path, 0, "%s", strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		got += (size_t)r;
		if (got > MAPFILE_MAX_SIZE) {
			add_err(err, errlen, path, 0, "larger than %u bytes", MAPFILE_MAX_SIZE);
			goto out;
		}
	}
	rc = mapfile_parse(path, buf, got, out, err, errlen);
out:
	free(buf);
	close(fd);
	return rc;
}

void mapfile_free(struct mapfile *m)
{
	size_t i;
	if (!m)
		return;
	for (i = 0; i < m->cap; i++) {
		free(m->slots[i].key);
		free(m->slots[i].right);
	}
	free(m->slots);
	free(m);
}

const char *mapfile_get(const struct mapfile *m, const char *key)
{
	struct mapent *slot;
	char *k;

	if (!m || !key || !*key)
		return NULL;
	k = mf_key(key);
	if (!k && strchr(key, '@'))  /* "a=b@c" that is no DN: try it as an address */
		k = lower_dup(key, "a:");
	if (!k)
		return NULL;
	slot = mf_slot(m, k);
	free(k);
	return slot && slot->key ? slot->right : NULL;
}

size_t mapfile_size(const struct mapfile *m)
{
	return m ? m->n : 0;
}

/* ---- struct mapping: the reloading holder -------------------------------- */

struct mapping {
	const struct config *cfg;
	char *path;              /* NULL: no map file */
	pthread_mutex_t mu;
	struct mapfile *map;     /* last good one */
	struct stat seen;        /* the version we last tried (good or bad) */
	int seen_missing;        /* last stat failed */
	time_t checked;          /* monotonic seconds of the last stat */
};

static time_t mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static int same_version(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_dev == b->st_dev &&
	       a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	       a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* With m->mu held.  Looks at the file at most once a second; a bad new
 * version is reported once and the last good map stays in use. */
static void mapping_refresh(struct mapping *m)
{
	struct stat st;
	struct mapfile *nm = NULL;
	char err[1024];
	time_t now;

	if (!m->path)
		return;
	now = mono_now();
	if (now == m->checked)
		return;
	m->checked = now;
	if (stat(m->path, &st) != 0) {
		if (!m->seen_missing) {
			struct logline l;
			logline_init(&l);
			logline_add(&l, "map_file", m->path);
			logline_add(&l, "map_reload", "failed_keeping_previous");
			logline_addi(&l, "entries", (long long)mapfile_size(m->map));
			logline_add(&l, "error", strerror(errno));
			log_line(LOG_ERR, &l);
		}
		m->seen_missing = 1;
		return;
	}
	if (!m->seen_missing && same_version(&st, &m->seen))
		return;
	m->seen_missing = 0;
	m->seen = st;
	if (mapfile_load(m->path, &nm, err, sizeof(err)) != 0) {
		struct logline l;
		char *nl;
		/* one line in the log per problem, the first is enough to act */
		if ((nl = strchr(err, '\n')))
			*nl = '\0';
		logline_init(&l);
		logline_add(&l, "map_file", m->path);
		logline_add(&l, "map_reload", "failed_keeping_previous");
		logline_addi(&l, "entries", (long long)mapfile_size(m->map));
		logline_add(&l, "error", err);
		log_line(LOG_ERR, &l);
		return;
	}
	mapfile_free(m->map);
	m->map = nm;
	{
		struct logline l;
		logline_init(&l);
		logline_add(&l, "map_file", m->path);
		logline_add(&l, "map_reload", "ok");
		logline_addi(&l, "entries", (long long)mapfile_size(nm));
		log_line(LOG_INFO, &l);
	}
}

struct mapping *mapping_new(const struct config *cfg, char *err, size_t errlen)
{
	struct mapping *m = calloc(1, sizeof(*m));

	if (err && errlen)
		err[0] = '\0';
	if (!m) {
		if (err)
			snprintf(err, errlen, "out of memory");
		return NULL;
	}
	m->cfg = cfg;
	pthread_mutex_init(&m->mu, NULL);
	if (cfg && cfg->map_file) {
		m->path = strdup(cfg->map_file);
		if (!m->path) {
			if (err)
				snprintf(err, errlen, "out of memory");
			goto fail;
		}
		if (stat(m->path, &m->seen) != 0) {
			if (err)
				snprintf(err, errlen, "%s: %s", m->path, strerror(errno));
			goto fail;
		}
		/* a bad map file at start-up is a configuration error */
		if (mapfile_load(m->path, &m->map, err, errlen) != 0)
			goto fail;
		m->checked = mono_now();
	}
	return m;
fail:
	mapping_free(m);
	return NULL;
}

void mapping_free(struct mapping *m)
{
	if (!m)
		return;
	mapfile_free(m->map);
	free(m->path);
	pthread_mutex_destroy(&m->mu);
	free(m);
}

char *mapping_static_dup(struct mapping *m, const struct job *j)
{
	const char *r = NULL;
	char *copy = NULL;
	size_t i;

	if (!m || !j || !m->path)
		return NULL;
	pthread_mutex_lock(&m->mu);
	mapping_refresh(m);
	if (j->dn && *j->dn)
		r = mapfile_get(m->map, j->dn);
	if (!r && j->uid && *j->uid)
		r = mapfile_get(m->map, j->uid);
	for (i = 0; !r && j->emails && j->emails[i]; i++)
		r = mapfile_get(m->map, j->emails[i]);
	if (r)
		copy = strdup(r);
	pthread_mutex_unlock(&m->mu);
	return copy;
}

void mapping_result_clear(struct mapping_result *r)
{
	if (!r)
		return;
	openai_user_clear(&r->user);
	openai_users_free(r->more, r->nmore);
	memset(r, 0, sizeof(*r));
	r->kind = MAPPING_NOT_MEMBER;
}

static int user_copy(struct openai_user *dst, const struct openai_user *src)
{
	memset(dst, 0, sizeof(*dst));
	if (!(dst->id = strdup(src->id)) ||
	    (src->email && !(dst->email = strdup(src->email))) ||
	    (src->role && !(dst->role = strdup(src->role))) ||
	    (src->name && !(dst->name = strdup(src->name)))) {
		openai_user_clear(dst);
		return -1;
	}
	return 0;
}

static int result_has(const struct mapping_result *r, const char *id)
{
	size_t i;
	if (r->user.id && strcmp(r->user.id, id) == 0)
		return 1;
	for (i = 0; i < r->nmore; i++)
		if (strcmp(r->more[i].id, id) == 0)
			return 1;
	return 0;
}

/* Adds the users V found for one address, skipping ones already there. */
static int result_add(struct mapping_result *r, const struct openai_user *v, size_t n)
{
	size_t i;
	for (i = 0; i < n; i++) {
		if (!v[i].id || result_has(r, v[i].id))
			continue;
		if (!r->user.id) {
			if (user_copy(&r->user, &v[i]) != 0)
				return -1;
		} else {
			struct openai_user *nv = realloc(r->more, (r->nmore + 1) * sizeof(*nv));
			if (!nv)
				return -1;
			r->more = nv;
			if (user_copy(&r->more[r->nmore], &v[i]) != 0)
				return -1;
			r->nmore++;
		}
	}
	return 0;
}

static void res_local_error(struct openai_result *res, const char *msg)
{
	memset(res, 0, sizeof(*res));
	res->status = OPENAI_TRANSIENT;
	res->retry_after = -1;
	snprintf(res->message, sizeof(res->message), "%s", msg);
}

/* By ID: GET confirms membership and fills role and address. */
static int resolve_id(struct openai_client *c, const char *id, const char *via,
                      struct mapping_result *out, struct openai_result *res)
{
	struct openai_user u;
	int st;

	memset(&u, 0, sizeof(u));
	if (!c) {
		res_local_error(res, "no API client");
		res->status = OPENAI_PERMANENT;
		out->kind = MAPPING_ERROR;
		out->via = via;
		return -1;
	}
	st = openai_get_user(c, id, &u, res);
	if (st == OPENAI_OK) {
		out->kind = MAPPING_FOUND;
		out->user = u;
		out->via = via;
		return 0;
	}
	openai_user_clear(&u);
	if (st == OPENAI_NOT_FOUND) {
		out->kind = MAPPING_NOT_MEMBER;
		out->via = via;
		return 0;
	}
	out->kind = MAPPING_ERROR;
	out->via = via;
	return -1;
}

/* By addresses: every member whose address is one of them. */
static int resolve_emails(struct openai_client *c, char *const *emails, const char *via,
                          struct mapping_result *out, struct openai_result *res)
{
	size_t i;

	out->via = via;
	for (i = 0; emails && emails[i]; i++) {
		struct openai_user *v = NULL;
		size_t n = 0;
		int st;

		if (!*emails[i])
			continue;
		if (!c) {
			mapping_result_clear(out);
			res_local_error(res, "no API client");
			res->status = OPENAI_PERMANENT;
			out->kind = MAPPING_ERROR;
			out->via = via;
			return -1;
		}
		st = openai_find_users_by_email(c, emails[i], &v, &n, res);
		if (st != OPENAI_OK) {
			openai_users_free(v, n);
			mapping_result_clear(out);
			out->kind = MAPPING_ERROR;
			out->via = via;
			return -1;
		}
		if (result_add(out, v, n) != 0) {
			openai_users_free(v, n);
			mapping_result_clear(out);
			out->kind = MAPPING_ERROR;
			out->via = via;
			res_local_error(res, "out of memory");
			return -1;
		}
		openai_users_free(v, n);
	}
	out->kind = out->user.id ? MAPPING_FOUND : MAPPING_NOT_MEMBER;
	return 0;
}

int mapping_resolve(struct mapping *m, struct openai_client *c, const struct job *j,
                    struct mapping_result *out, struct openai_result *res)
{
	char *rhs = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	memset(res, 0, sizeof(*res));
	res->status = OPENAI_OK;
	res->retry_after = -1;
	out->kind = MAPPING_NOT_MEMBER;

	if (!j) {
		out->kind = MAPPING_ERROR;
		res->status = OPENAI_PERMANENT;
		snprintf(res->message, sizeof(res->message), "no job to resolve");
		return -1;
	}
	/* 1. the map file: the first of dn, uid, addresses it knows wins */
	rhs = mapping_static_dup(m, j);
	if (rhs) {
		if (strcmp(rhs, "-") == 0) {
			out->kind = MAPPING_EXEMPT;
			out->via = "map_file";
			rc = 0;
		} else if (strchr(rhs, '@')) {
			char *one[2] = { rhs, NULL };
			rc = resolve_emails(c, one, "map_file", out, res);
		} else {
			rc = resolve_id(c, rhs, "map_file", out, res);
		}
		goto out;
	}
	/* 2. the ID stored on the entry, or given on the command line */
	if (j->openai_user_id && *j->openai_user_id) {
		rc = resolve_id(c, j->openai_user_id,
		                j->source && strcmp(j->source, "cli") == 0 ? "id" : "attribute",
		                out, res);
		goto out;
	}
	/* 3. the addresses, looked up in the organization */
	rc = resolve_emails(c, j->emails, "email", out, res);
out:
	free(rhs);
	return rc;
}
