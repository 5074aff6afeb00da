/* test_log: the key=value builder (escaping, truncation), level filtering,
 * log_file output and the three modes.  syslog, openlog and closelog are
 * replaced below, so the test sees exactly what log.c hands to syslog. */
#include "tap.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

/* ---- syslog stand-ins (the executable's definitions win at link time) */
static int openlog_calls, closelog_calls, syslog_calls;
static char openlog_ident[64];
static int openlog_option, openlog_facility;
static int last_prio;
static char last_msg[8192];

void openlog(const char *ident, int option, int facility)
{
	openlog_calls++;
	snprintf(openlog_ident, sizeof(openlog_ident), "%s", ident ? ident : "(null)");
	openlog_option = option;
	openlog_facility = facility;
}

void closelog(void)
{
	closelog_calls++;
}

static pthread_mutex_t stub_lock = PTHREAD_MUTEX_INITIALIZER;

void vsyslog(int prio, const char *fmt, va_list ap)
{
	/* log.c calls syslog from many threads at once, as a host would */
	pthread_mutex_lock(&stub_lock);
	syslog_calls++;
	last_prio = prio;
	vsnprintf(last_msg, sizeof(last_msg), fmt, ap);
	pthread_mutex_unlock(&stub_lock);
}

void syslog(int prio, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsyslog(prio, fmt, ap);
	va_end(ap);
}

/* with _FORTIFY_SOURCE the calls become these */
void __syslog_chk(int prio, int flag, const char *fmt, ...);
void __syslog_chk(int prio, int flag, const char *fmt, ...)
{
	va_list ap;
	(void)flag;
	va_start(ap, fmt);
	vsyslog(prio, fmt, ap);
	va_end(ap);
}

static char tmpdir[256];

static char *slurp(const char *path)
{
	static char buf[1 << 20];
	int fd = open(path, O_RDONLY);
	ssize_t n, len = 0;

	buf[0] = '\0';
	if (fd < 0)
		return buf;
	while ((n = read(fd, buf + len, sizeof(buf) - 1 - (size_t)len)) > 0)
		len += n;
	buf[len] = '\0';
	close(fd);
	return buf;
}

static int count_lines(const char *s)
{
	int n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* --------------------------------------------------------- builder */

static const char *one(const char *key, const char *value)
{
	static struct logline l;

	logline_init(&l);
	logline_add(&l, key, value);
	return logline_str(&l);
}

static void test_escaping(void)
{
	struct logline l;

	is_str(one("uid", "jdoe"), "uid=jdoe", "plain value unquoted");
	is_str(one("email", "j.doe+x@example.com"), "email=j.doe+x@example.com", "address unquoted");
	is_str(one("dn", "uid=jdoe,ou=people"), "dn=\"uid=jdoe,ou=people\"", "'=' quotes");
	is_str(one("name", "John Doe"), "name=\"John Doe\"", "space quotes");
	is_str(one("v", ""), "v=\"\"", "empty value quoted");
	is_str(one("v", NULL), "v=\"\"", "NULL value is empty");
	is_str(one("v", "say \"hi\""), "v=\"say \\\"hi\\\"\"", "quotes escaped");
	is_str(one("v", "a\\b"), "v=\"a\\\\b\"", "backslash escaped");
	is_str(one("v", "a\tb\rc"), "v=\"a\\tb\\rc\"", "tab and CR escaped");
	is_str(one("v", "x\x01y\x1b[2J\x7f"), "v=\"x\\x01y\\x1b[2J\\x7f\"", "control bytes and DEL as \\xNN");
	is_str(one("v", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91"),
	       "v=\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91\"", "valid UTF-8 kept");
	is_str(one("v", "J\xc3\xbcrgen"), "v=J\xc3\xbcrgen", "valid UTF-8 alone needs no quotes");
	is_str(one("v", "a\xff\xfe"), "v=\"a\\xff\\xfe\"", "invalid bytes as \\xNN");
	is_str(one("v", "\xc3"), "v=\"\\xc3\"", "truncated UTF-8 sequence as \\xNN");
	is_str(one("v", "\xc0\xaf"), "v=\"\\xc0\\xaf\"", "overlong UTF-8 as \\xNN");
	is_str(one("v", "\xc2\x85"), "v=\"\\xc2\\x85\"", "C1 control (NEL) as \\xNN");
	is_str(one("v", "a\xe2\x80\xa8" "b"), "v=\"a\\xe2\\x80\\xa8b\"", "U+2028 line separator as \\xNN");
	is_str(one("Bad Key!", "x"), "bad_key_=x", "key reduced to [a-z0-9_]");
	is_str(one("", "x"), "_=x", "empty key");

	/* a forged second event must stay inside the value */
	logline_init(&l);
	logline_add(&l, "event", "1-2-3");
	logline_add(&l, "dn", "uid=x\nevent=999 action=removed");
	logline_add(&l, "action", "skipped");
	is_str(logline_str(&l), "event=1-2-3 dn=\"uid=x\\nevent=999 action=removed\" action=skipped",
	       "forged newline stays escaped on one line");
	ok(strchr(logline_str(&l), '\n') == NULL, "  no newline in the line");

	logline_init(&l);
	logline_addi(&l, "attempts", 3);
	logline_addi(&l, "n", -9223372036854775807LL - 1);
	logline_addf(&l, "latency_ms", "%d", 184);
	logline_addf(&l, "msg", "%s=%d", "a b", 1);
	is_str(logline_str(&l), "attempts=3 n=-9223372036854775808 latency_ms=184 msg=\"a b=1\"",
	       "addi and addf");
	is_str(logline_str(&l), "attempts=3 n=-9223372036854775808 latency_ms=184 msg=\"a b=1\"",
	       "logline_str is idempotent");
}

static void test_truncation(void)
{
	struct logline l;
	char big[3000];
	const char *s;
	size_t n;

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	logline_init(&l);
	logline_add(&l, "event", "e1");
	logline_add(&l, "big", big);
	logline_add(&l, "after", "x");
	s = logline_str(&l);
	n = strlen(s);
	ok(n <= LOG_LINE_MAX, "cut line within LOG_LINE_MAX (%zu)", n);
	ok(n > LOG_LINE_MAX - 40, "cut line uses the space it has (%zu)", n);
	ok(n >= 12 && strcmp(s + n - 12, " truncated=1") == 0, "cut line ends with truncated=1");
	ok(strncmp(s, "event=e1 big=aaa", 16) == 0, "the start is kept");
	ok(strstr(s, "after=") == NULL, "pairs after the cut are dropped");
	ok(strcmp(logline_str(&l), s) == 0 && strlen(logline_str(&l)) == n, "marker added once");

	/* a cut never splits an escape or a UTF-8 character, and closes the quote */
	for (int shift = 0; shift < 8; shift++) {
		struct logline m;
		char v[2200];
		size_t o = 0;
		const char *r;
		int bad = 0;

		for (int i = 0; i < shift; i++)
			v[o++] = 'p';
		while (o + 4 < sizeof(v)) {
			v[o++] = '\n';
			v[o++] = '\xc3';
			v[o++] = '\xa9';
			v[o++] = '\x01';
		}
		v[o] = '\0';
		logline_init(&m);
		logline_add(&m, "v", v);
		r = logline_str(&m);
		n = strlen(r);
		ok(n <= LOG_LINE_MAX && n > 12 && strcmp(r + n - 12, " truncated=1") == 0,
		   "escaped value cut (shift %d)", shift);
		ok(r[n - 13] == '"', "  quote closed before the marker (shift %d)", shift);
		/* walk the quoted value: every backslash starts a whole escape */
		for (size_t i = 3; i < n - 13; i++) {
			if (r[i] == '\\') {
				if (r[i + 1] == 'n' || r[i + 1] == '\\' || r[i + 1] == '"')
					i++;
				else if (r[i + 1] == 'x' && i + 3 < n - 13)
					i += 3;
				else
					bad = 1;
			} else if ((unsigned char)r[i] == 0xc3) {
				if ((unsigned char)r[i + 1] != 0xa9 || i + 1 >= n - 13)
					bad = 1;
				i++;
			}
		}
		ok(!bad, "  no escape or character split (shift %d)", shift);
	}

	/* even the key does not fit: the pair is dropped, the line is marked */
	logline_init(&l);
	memset(big, 'b', LOG_LINE_MAX - 20);
	big[LOG_LINE_MAX - 20] = '\0';
	logline_add(&l, "k", big);
	logline_add(&l, "a_rather_long_key_name_here", "value");
	s = logline_str(&l);
	ok(strlen(s) <= LOG_LINE_MAX && strstr(s, "a_rather") == NULL && strstr(s, " truncated=1"),
	   "pair that cannot start is dropped and marked");

	/* addf beyond its buffer is marked too */
	logline_init(&l);
	logline_addf(&l, "f", "%s%s", big, big);
	s = logline_str(&l);
	n = strlen(s);
	ok(n <= LOG_LINE_MAX && strcmp(s + n - 12, " truncated=1") == 0, "addf overflow marked");
}

/* ----------------------------------------------------------- output */

static void test_hosted(void)
{
	char path[512];
	const char *text;

	snprintf(path, sizeof(path), "%s/hosted.log", tmpdir);
	openlog_calls = closelog_calls = syslog_calls = 0;
	log_setup(LOG_MODE_HOSTED, "my-ident", LOG_LOCAL3, LOG_INFO, path);
	ok(openlog_calls == 0, "hosted: log_setup does not call openlog");
	log_msg(LOG_NOTICE, "action=%s user=%s", "removed", "u1");
	is_int(syslog_calls, 1, "hosted: one syslog call");
	is_int(last_prio, LOG_LOCAL3 | LOG_NOTICE, "hosted: facility passed in the priority");
	is_str(last_msg, "my-ident: action=removed user=u1", "hosted: message starts with the ident");
	log_msg(LOG_DEBUG, "not shown");
	is_int(syslog_calls, 1, "hosted: debug filtered at level info");
	log_teardown();
	ok(openlog_calls == 0 && closelog_calls == 0, "hosted: teardown does not call closelog");
	text = slurp(path);
	ok(strlen(text) > 21 && text[4] == '-' && text[10] == 'T' && text[19] == 'Z' && text[20] == ' ',
	   "log_file: line starts with a UTC timestamp");
	contains(text, "Z notice action=removed user=u1\n", "log_file: level and message");
	ok(strstr(text, "not shown") == NULL, "log_file: filtered lines absent too");
	is_int(count_lines(text), 1, "log_file: one line");
	{
		struct stat st;
		ok(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600, "log_file created with mode 0600");
	}
}

static void test_daemon(void)
{
	openlog_calls = closelog_calls = syslog_calls = 0;
	log_setup(LOG_MODE_DAEMON, "or-daemon", LOG_DAEMON, LOG_WARNING, NULL);
	is_int(openlog_calls, 1, "daemon: openlog called");
	is_str(openlog_ident, "or-daemon", "daemon: ident");
	is_int(openlog_option, LOG_PID | LOG_NDELAY, "daemon: LOG_PID|LOG_NDELAY");
	is_int(openlog_facility, LOG_DAEMON, "daemon: facility");
	log_msg(LOG_NOTICE, "below the level");
	is_int(syslog_calls, 0, "daemon: notice filtered at level warning");
	ok(!log_enabled(LOG_NOTICE) && log_enabled(LOG_WARNING) && log_enabled(LOG_ERR),
	   "log_enabled follows the level");
	log_msg(LOG_ERR, "bad %d", 7);
	is_int(syslog_calls, 1, "daemon: err logged");
	is_str(last_msg, "bad 7", "daemon: no ident prefix (openlog has it)");
	is_int(LOG_PRI(last_prio), LOG_ERR, "daemon: priority");
	log_teardown();
	is_int(closelog_calls, 1, "daemon: teardown calls closelog");
}

static void test_stderr(void)
{
	char path[512];
	int saved, fd;
	const char *text;

	snprintf(path, sizeof(path), "%s/stderr.txt", tmpdir);
	fflush(stderr);
	saved = dup(2);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	dup2(fd, 2);
	close(fd);
	syslog_calls = 0;
	log_setup(LOG_MODE_STDERR, "ignored", LOG_USER, LOG_NOTICE, NULL);
	log_msg(LOG_WARNING, "careful: %s", "x");
	log_msg(LOG_INFO, "hidden");
	log_msg(LOG_ERR, "two\nlines");
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	log_teardown();
	text = slurp(path);
	is_str(text, "openai-revoke: warning: careful: x\nopenai-revoke: err: two\\x0alines\n",
	       "stderr: prefix, level, message; newline in a message defanged");
	is_int(syslog_calls, 0, "stderr: syslog not used");
}

static void test_file_forging(void)
{
	char path[512];
	const char *text;
	struct logline l;

	snprintf(path, sizeof(path), "%s/forge.log", tmpdir);
	log_setup(LOG_MODE_HOSTED, "or", LOG_AUTHPRIV, LOG_DEBUG, path);
	logline_init(&l);
	logline_add(&l, "event", "e1");
	logline_add(&l, "dn", "uid=x\n2026-01-01T00:00:00Z notice event=e2 action=removed");
	log_line(LOG_NOTICE, &l);
	contains(last_msg, "or: event=e1", "log_line: one syslog message with the ident");
	log_msg(LOG_INFO, "raw %s", "a\r\nb");
	log_teardown();
	text = slurp(path);
	is_int(count_lines(text), 2, "log_file: two calls, two lines");
	contains(text, "event=e1 dn=\"uid=x\\n2026-01-01T00:00:00Z notice event=e2 action=removed\"\n",
	         "log_line: forged line stays inside the value");
	contains(text, " info raw a\\x0d\\x0ab\n", "log_msg: raw control bytes defanged");
}

struct thr {
	int id;
};

static void *thr_main(void *arg)
{
	struct thr *t = arg;
	for (int i = 0; i < 200; i++) {
		struct logline l;
		logline_init(&l);
		logline_addi(&l, "thread", t->id);
		logline_addi(&l, "i", i);
		logline_add(&l, "pad", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
		log_line(LOG_NOTICE, &l);
	}
	return NULL;
}

static void test_threads(void)
{
	char path[512];
	pthread_t th[4];
	struct thr args[4];
	const char *text, *p;
	int lines = 0, whole = 1;

	snprintf(path, sizeof(path), "%s/threads.log", tmpdir);
	log_setup(LOG_MODE_HOSTED, "or", LOG_AUTHPRIV, LOG_INFO, path);
	for (int i = 0; i < 4; i++) {
		args[i].id = i;
		pthread_create(&th[i], NULL, thr_main, &args[i]);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	log_teardown();
	text = slurp(path);
	for (p = text; *p;) {
		const char *nl = strchr(p, '\n');
		if (!nl)
			break;
		if (!strstr(p, " notice thread=") || (size_t)(nl - p) < 100)
			whole = 0;
		lines++;
		p = nl + 1;
	}
	is_int(lines, 800, "threads: every line written");
	ok(whole, "threads: no line interleaved");
}

#define RESETUP_LINES 3000
static int resetup_done;

static void *resetup_logger(void *arg)
{
	(void)arg;
	for (int i = 0; i < RESETUP_LINES; i++)
		log_msg(LOG_NOTICE, "line=%d pad=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", i);
	__atomic_store_n(&resetup_done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static int count_whole(const char *text, int *whole)
{
	int lines = 0;

	for (const char *p = text; *p;) {
		const char *nl = strchr(p, '\n');
		if (!nl) {
			*whole = 0;
			break;
		}
		if (nl - p < 21 || strncmp(p + 21, "notice line=", 12) != 0)
			*whole = 0;
		lines++;
		p = nl + 1;
	}
	return lines;
}

/* log_setup again while another thread logs (a PAM application may): no
 * line lost, none cut, none written to a closed descriptor */
static void test_resetup(void)
{
	char a[512], b[512];
	pthread_t th;
	int lines = 0, whole = 1, setups = 0;

	snprintf(a, sizeof(a), "%s/resetup-a.log", tmpdir);
	snprintf(b, sizeof(b), "%s/resetup-b.log", tmpdir);
	resetup_done = 0;
	log_setup(LOG_MODE_HOSTED, "or", LOG_AUTHPRIV, LOG_INFO, a);
	pthread_create(&th, NULL, resetup_logger, NULL);
	while (!__atomic_load_n(&resetup_done, __ATOMIC_ACQUIRE))
		log_setup(LOG_MODE_HOSTED, "or", LOG_AUTHPRIV, LOG_INFO, ++setups % 2 ? b : a);
	pthread_join(th, NULL);
	log_teardown();
	lines += count_whole(slurp(a), &whole);
	lines += count_whole(slurp(b), &whole);
	diag("%d setups while logging", setups);
	is_int(lines, RESETUP_LINES, "re-setup under load: every line in one of the files");
	ok(whole, "re-setup under load: every line whole");
}

static void test_names(void)
{
	is_int(log_facility_from_name("authpriv"), LOG_AUTHPRIV, "facility authpriv");
	is_int(log_facility_from_name("local7"), LOG_LOCAL7, "facility local7");
	is_int(log_facility_from_name("kern"), -1, "facility kern unknown");
	is_int(log_facility_from_name(NULL), -1, "facility NULL");
	is_int(log_level_from_name("warning"), LOG_WARNING, "level warning");
	is_int(log_level_from_name("err"), LOG_ERR, "level err");
	is_int(log_level_from_name("verbose"), -1, "level verbose unknown");
	is_str(log_level_name(LOG_NOTICE), "notice", "level name notice");
	is_str(log_level_name(LOG_AUTHPRIV | LOG_ALERT), "alert", "level name ignores facility");
}

static void test_default_mode(void)
{
	/* a library that logs before log_setup must not take over syslog: run
	 * it in a fresh process, where nothing was set up yet */
	pid_t pid;
	int status = 0;

	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		openlog_calls = syslog_calls = 0;
		log_msg(LOG_WARNING, "early");
		_exit(openlog_calls == 0 && syslog_calls == 1 && strcmp(last_msg, "openai-revoke: early") == 0 &&
		      last_prio == (LOG_AUTHPRIV | LOG_WARNING) ? 0 : 1);
	}
	ok(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	   "before log_setup: hosted mode, ident prefix, authpriv, no openlog");
}

int main(void)
{
	const char *t = getenv("TMPDIR");

	test_default_mode();
	snprintf(tmpdir, sizeof(tmpdir), "%s/test_log.XXXXXX", t && *t ? t : "/tmp");
	if (!mkdtemp(tmpdir)) {
		printf("Bail out! mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	test_names();
	test_escaping();
	test_truncation();
	test_hosted();
	test_daemon();
	test_stderr();
	test_file_forging();
	test_threads();
	test_resetup();
	{
		char cmd[600];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			diag("could not remove %s", tmpdir);
	}
	return tap_done();
}
