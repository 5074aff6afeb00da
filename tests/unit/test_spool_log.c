/* test_spool_log: a stand-in for module/log.c in the spool tests, so that
 * they can assert what the spool logged (and do not depend on syslog).
 * TEST_VERBOSE=1 also prints each line on stderr. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

const char *testlog_text(void);
void testlog_clear(void);

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static char text[65536];
static size_t used;

void log_vmsg(int prio, const char *fmt, va_list ap)
{
	char line[2048];
	size_t n;

	vsnprintf(line, sizeof(line), fmt, ap);
	n = strlen(line);
	pthread_mutex_lock(&mu);
	if (used + n + 2 < sizeof(text)) {
		memcpy(text + used, line, n);
		used += n;
		text[used++] = '\n';
		text[used] = '\0';
	}
	pthread_mutex_unlock(&mu);
	if (getenv("TEST_VERBOSE"))
		fprintf(stderr, "log<%d>: %s\n", prio, line);
}

void log_msg(int prio, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(prio, fmt, ap);
	va_end(ap);
}

/* The lines logged since the last clear (a copy: stable while tests read it). */
const char *testlog_text(void)
{
	static char copy[sizeof(text)];

	pthread_mutex_lock(&mu);
	memcpy(copy, text, used + 1);
	pthread_mutex_unlock(&mu);
	return copy;
}

void testlog_clear(void)
{
	pthread_mutex_lock(&mu);
	used = 0;
	text[0] = '\0';
	pthread_mutex_unlock(&mu);
}
