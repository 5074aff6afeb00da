/* log: the one logger of every component.  It knows whether it may own
 * syslog (a daemon), must stay a polite guest (slapd, PAM) or talks to a
 * terminal; and it builds key=value lines no directory value can forge. */
#ifdef HAVE_CONFIG_H
#include "or_build.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define LOG_MSG_MAX 4096
#define LOG_IDENT_MAX 64

/* Set by log_setup.  The header asks for one setup before threads start,
 * but a PAM application may call into us again from another thread while
 * a worker logs, so output holds the read side of a lock and setup the
 * write side: a line never goes to a descriptor being closed.  The
 * default is the guest mode: a library that logs before anyone set it up
 * must not rename its host's syslog lines. */
static pthread_rwlock_t log_lock = PTHREAD_RWLOCK_INITIALIZER;
static enum log_mode log_mode_cur = LOG_MODE_HOSTED;
static char log_ident[LOG_IDENT_MAX] = "openai-revoke";
static int log_facility = LOG_AUTHPRIV;
static int log_level = LOG_INFO;
static int log_fd = -1;
static int log_opened;

static const struct {
	const char *name;
	int value;
} facilities[] = {
	{ "auth", LOG_AUTH },     { "authpriv", LOG_AUTHPRIV }, { "daemon", LOG_DAEMON },
	{ "user", LOG_USER },     { "local0", LOG_LOCAL0 },     { "local1", LOG_LOCAL1 },
	{ "local2", LOG_LOCAL2 }, { "local3", LOG_LOCAL3 },     { "local4", LOG_LOCAL4 },
	{ "local5", LOG_LOCAL5 }, { "local6", LOG_LOCAL6 },     { "local7", LOG_LOCAL7 },
};

static const char *const level_names[] = {
	"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"
};

int log_facility_from_name(const char *name)
{
	if (!name)
		return -1;
	for (size_t i = 0; i < sizeof(facilities) / sizeof(facilities[0]); i++)
		if (strcasecmp(name, facilities[i].name) == 0)
			return facilities[i].value;
	return -1;
}

int log_level_from_name(const char *name)
{
	if (!name)
		return -1;
	for (int i = 0; i < 8; i++)
		if (strcasecmp(name, level_names[i]) == 0)
			return i;
	return -1;
}

const char *log_level_name(int level)
{
	level = LOG_PRI(level);
	return level >= 0 && level < 8 ? level_names[level] : "unknown";
}

static void teardown_locked(void)
{
	if (log_fd >= 0) {
		close(log_fd);
		log_fd = -1;
	}
	if (log_opened) {
		closelog();
		log_opened = 0;
	}
}

void log_setup(enum log_mode mode, const char *ident, int facility, int level,
               const char *file)
{
	int fd = -1, open_errno = 0;

	/* open first, outside the lock: a slow file system stalls nobody */
	if (file && *file) {
		fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
		open_errno = errno;
	}
	pthread_rwlock_wrlock(&log_lock);
	teardown_locked();
	log_mode_cur = mode;
	snprintf(log_ident, sizeof(log_ident), "%s", ident && *ident ? ident : "openai-revoke");
	log_facility = facility >= 0 ? LOG_FAC(facility) << 3 : LOG_AUTHPRIV;
	__atomic_store_n(&log_level, LOG_PRI(level), __ATOMIC_RELAXED);
	log_fd = fd;
	if (mode == LOG_MODE_DAEMON) {
		/* ident must outlive openlog: it points at our static copy */
		openlog(log_ident, LOG_PID | LOG_NDELAY, log_facility);
		log_opened = 1;
	}
	pthread_rwlock_unlock(&log_lock);
	if (file && *file && fd < 0) {
		char eb[128];
		log_msg(LOG_ERR, "cannot open log_file %s: %s", file, strerror_r(open_errno, eb, sizeof(eb)));
	}
}

void log_teardown(void)
{
	pthread_rwlock_wrlock(&log_lock);
	teardown_locked();
	pthread_rwlock_unlock(&log_lock);
}

int log_enabled(int prio)
{
	return LOG_PRI(prio) <= __atomic_load_n(&log_level, __ATOMIC_RELAXED);
}

/* Control bytes never reach an output, whoever formatted the message: a
 * caller that forgot the logline builder still cannot split a line. */
static size_t defang(char *dst, size_t dstlen, const char *src)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	for (const unsigned char *p = (const unsigned char *)src; *p; p++) {
		if (*p < 0x20 || *p == 0x7f) {
			if (o + 4 >= dstlen)
				break;
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[*p >> 4];
			dst[o++] = hex[*p & 15];
		} else {
			if (o + 1 >= dstlen)
				break;
			dst[o++] = (char)*p;
		}
	}
	dst[o] = '\0';
	return o;
}

static void write_all(int fd, const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

void log_vmsg(int prio, const char *fmt, va_list ap)
{
	char raw[LOG_MSG_MAX], msg[LOG_MSG_MAX];
	int level = LOG_PRI(prio);
	int saved = errno;

	if (!log_enabled(level) || !fmt)
		return;
	vsnprintf(raw, sizeof(raw), fmt, ap);
	defang(msg, sizeof(msg), raw);

	pthread_rwlock_rdlock(&log_lock);
	switch (log_mode_cur) {
	case LOG_MODE_DAEMON:
		syslog(log_facility | level, "%s", msg);
		break;
	case LOG_MODE_HOSTED:
		syslog(log_facility | level, "%s: %s", log_ident, msg);
		break;
	case LOG_MODE_STDERR:
		fprintf(stderr, "openai-revoke: %s: %s\n", log_level_name(level), msg);
		break;
	}
	if (log_fd >= 0) {
		char line[LOG_MSG_MAX + 64];
		struct tm tm;
		time_t now = time(NULL);
		size_t n;
		int k;

		if (!gmtime_r(&now, &tm))
			memset(&tm, 0, sizeof(tm));
		n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%SZ ", &tm);
		k = snprintf(line + n, sizeof(line) - n, "%s %s\n", log_level_name(level), msg);
		if (k > 0) {
			n += (size_t)k < sizeof(line) - n ? (size_t)k : sizeof(line) - n - 1;
			line[n - 1] = '\n';
			/* one write per line: O_APPEND keeps lines whole across threads */
			write_all(log_fd, line, n);
		}
	}
	pthread_rwlock_unlock(&log_lock);
	errno = saved;
}

void log_msg(int prio, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(prio, fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------- key=value lines */

#define TRUNC_MARK " truncated=1"
#define TRUNC_LEN (sizeof(TRUNC_MARK) - 1)

void logline_init(struct logline *l)
{
	l->len = 0;
	l->cut = 0;
	l->buf[0] = '\0';
}

/* Length of the UTF-8 character at S (N bytes left) if it is valid and not
 * a C1 control or a line/paragraph separator; 0 otherwise. */
static size_t utf8_char_ok(const unsigned char *s, size_t n)
{
	size_t k;
	uint32_t cp;

	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		k = 2;
		cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		k = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		k = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (n < k)
		return 0;
	for (size_t j = 1; j < k; j++) {
		if ((s[j] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[j] & 0x3f);
	}
	if ((k == 3 && cp < 0x800) || (k == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp <= 0x9f) ||
	    cp == 0x2028 || cp == 0x2029)
		return 0;
	return k;
}

static int needs_quotes(const unsigned char *v, size_t n)
{
	if (n == 0)
		return 1;
	for (size_t i = 0; i < n;) {
		unsigned char c = v[i];
		if (c <= 0x20 || c == '"' || c == '=' || c == '\\' || c == 0x7f)
			return 1;
		if (c >= 0x80) {
			size_t k = utf8_char_ok(v + i, n - i);
			if (!k)
				return 1;
			i += k;
			continue;
		}
		i++;
	}
	return 0;
}

/* Append " key=value" to L, using at most LIMIT bytes of buf in total.  A
 * value that does not fit is cut between escape units; returns 1 if cut. */
static int append_pair(struct logline *l, const char *key, const char *value, size_t limit)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *v = (const unsigned char *)(value ? value : "");
	size_t vn = strlen((const char *)v);
	int quote = needs_quotes(v, vn);
	size_t o = l->len;
	char *b = l->buf;
	size_t keylen = 0;

	/* separator, key and '=' first; if even that does not fit, nothing */
	for (const char *k = key; k && *k; k++)
		keylen++;
	if (keylen == 0)
		keylen = 1;
	if (o + (o ? 1 : 0) + keylen + 1 + (quote ? 2 : 0) > limit)
		return 1;
	if (o)
		b[o++] = ' ';
	if (key && *key) {
		for (const char *k = key; *k; k++) {
			char c = *k;
			if (c >= 'A' && c <= 'Z')
				c = (char)(c - 'A' + 'a');
			b[o++] = ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_') ? c : '_';
		}
	} else {
		b[o++] = '_';
	}
	b[o++] = '=';
	if (quote)
		b[o++] = '"';
	for (size_t i = 0; i < vn;) {
		char unit[16];
		size_t un = 0, used = 1;
		unsigned char c = v[i];

		switch (c) {
		case '"': unit[un++] = '\\'; unit[un++] = '"'; break;
		case '\\': unit[un++] = '\\'; unit[un++] = '\\'; break;
		case '\n': unit[un++] = '\\'; unit[un++] = 'n'; break;
		case '\r': unit[un++] = '\\'; unit[un++] = 'r'; break;
		case '\t': unit[un++] = '\\'; unit[un++] = 't'; break;
		default:
			if (c < 0x20 || c == 0x7f) {
				unit[un++] = '\\';
				unit[un++] = 'x';
				unit[un++] = hex[c >> 4];
				unit[un++] = hex[c & 15];
			} else if (c >= 0x80) {
				size_t k = utf8_char_ok(v + i, vn - i);
				if (k) {
					memcpy(unit, v + i, k);
					un = k;
					used = k;
				} else {
					unit[un++] = '\\';
					unit[un++] = 'x';
					unit[un++] = hex[c >> 4];
					unit[un++] = hex[c & 15];
				}
			} else {
				unit[un++] = (char)c;
			}
		}
		if (o + un + (quote ? 1 : 0) > limit) {
			if (quote)
				b[o++] = '"';
			l->len = o;
			b[o] = '\0';
			return 1;
		}
		memcpy(b + o, unit, un);
		o += un;
		i += used;
	}
	if (quote)
		b[o++] = '"';
	l->len = o;
	b[o] = '\0';
	return 0;
}

void logline_add(struct logline *l, const char *key, const char *value)
{
	size_t before;

	if (!l || l->cut)
		return;
	/* try whole; if it does not fit, redo it cut, leaving room for the mark */
	before = l->len;
	if (append_pair(l, key, value, LOG_LINE_MAX) == 0)
		return;
	l->len = before;
	l->buf[l->len] = '\0';
	append_pair(l, key, value, LOG_LINE_MAX - TRUNC_LEN);
	l->cut = 1;
}

void logline_addf(struct logline *l, const char *key, const char *fmt, ...)
{
	char v[LOG_LINE_MAX + 1];
	va_list ap;
	int n;

	if (!l || l->cut)
		return;
	va_start(ap, fmt);
	n = vsnprintf(v, sizeof(v), fmt, ap);
	va_end(ap);
	if (n < 0)
		v[0] = '\0';
	logline_add(l, key, v);
	if (n >= (int)sizeof(v))
		l->cut = 1;
}

void logline_addi(struct logline *l, const char *key, long long value)
{
	char v[32];

	snprintf(v, sizeof(v), "%lld", value);
	logline_add(l, key, v);
}

/* cut: 1 = cut, mark not yet written; 2 = mark written */
const char *logline_str(struct logline *l)
{
	if (!l)
		return "";
	if (l->cut == 1) {
		const char *mark = l->len ? TRUNC_MARK : &TRUNC_MARK[1];
		size_t n = strlen(mark);
		memcpy(l->buf + l->len, mark, n + 1);
		l->len += n;
		l->cut = 2;
	}
	return l->buf;
}

void log_line(int prio, struct logline *l)
{
	if (!l)
		return;
	log_msg(prio, "%s", logline_str(l));
}
