/* tap.h: the few TAP helpers the C unit tests use (automake's tap-driver
 * reads their output).  Header-only: each test program is one file. */
#ifndef OR_TAP_H
#define OR_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_n, tap_failed;

static void tap_vresult(int ok, const char *fmt, va_list ap)
{
	printf("%s %d - ", ok ? "ok" : "not ok", ++tap_n);
	vprintf(fmt, ap);
	putchar('\n');
	fflush(stdout);
	if (!ok)
		tap_failed++;
}

__attribute__((format(printf, 2, 3), unused))
static int ok(int cond, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	tap_vresult(cond, fmt, ap);
	va_end(ap);
	return cond;
}

__attribute__((format(printf, 1, 2), unused))
static void diag(const char *fmt, ...)
{
	va_list ap;
	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

#define is_int(got, want, ...) \
	do { long long g_ = (got), w_ = (want); \
	     if (!ok(g_ == w_, __VA_ARGS__)) diag("  got %lld, want %lld", g_, w_); } while (0)
#define is_str(got, want, ...) \
	do { const char *g_ = (got), *w_ = (want); \
	     int m_ = (g_ && w_) ? strcmp(g_, w_) == 0 : g_ == w_; \
	     if (!ok(m_, __VA_ARGS__)) diag("  got \"%s\", want \"%s\"", g_ ? g_ : "(null)", w_ ? w_ : "(null)"); } while (0)
#define contains(hay, needle, ...) \
	do { const char *h_ = (hay), *n_ = (needle); \
	     if (!ok(h_ && strstr(h_, n_) != NULL, __VA_ARGS__)) diag("  \"%s\" does not contain \"%s\"", h_ ? h_ : "(null)", n_); } while (0)

/* Print the plan at the end ("done_testing") and return the exit status. */
__attribute__((unused))
static int tap_done(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}

__attribute__((unused, noreturn))
static void tap_skip_all(const char *why)
{
	printf("1..0 # SKIP %s\n", why);
	exit(0);
}

#endif
