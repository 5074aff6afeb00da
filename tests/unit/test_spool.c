/* test_spool: the spool's layout, write protocol, state moves, ordering,
 * quarantine of bad records, the drainer lock, operator commands, and many
 * concurrent enqueuers (threads and processes). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "job.h"
#include "spool.h"
#include "tap.h"

const char *testlog_text(void);
void testlog_clear(void);

static char base[256];
static const char *states[] = { "queue", "active", "deferred", "held", "failed" };

static char *pathf(char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static char *pathf(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	return buf;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st; (void)flag; (void)f;
	return remove(p);
}

static void rm_rf(const char *p)
{
	nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void cleanup(void)
{
	if (base[0])
		rm_rf(base);
}

static int mode_of(const char *p)
{
	struct stat st;

	if (lstat(p, &st) != 0)
		return -1;
	return (int)(st.st_mode & 07777);
}

static int exists(const char *dir, const char *sub, const char *name)
{
	char p[1024];

	pathf(p, sizeof(p), "%s/%s/%s", dir, sub, name);
	return access(p, F_OK) == 0;
}

/* Number of entries (any name but . and ..) in DIR/SUB. */
static int entries(const char *dir, const char *sub)
{
	char p[1024];
	struct dirent *de;
	DIR *d;
	int n = 0;

	d = opendir(pathf(p, sizeof(p), "%s/%s", dir, sub));
	if (!d)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	}
	closedir(d);
	return n;
}

static int write_file(const char *p, const char *text)
{
	FILE *f = fopen(p, "w");

	if (!f)
		return -1;
	fputs(text, f);
	return fclose(f);
}

static struct job *mkjob(const char *uid)
{
	struct job *j = job_new("cli", "manual");

	job_set(&j->uid, uid);
	job_add_email(j, "someone@example.com");
	return j;
}

static struct spool *open_ok(const char *dir)
{
	char err[512] = "";
	struct spool *s = NULL;

	if (spool_open(dir, &s, err, sizeof(err)) != 0)
		diag("spool_open(%s): %s", dir, err);
	return s;
}

/* ---- layout -------------------------------------------------------------- */

static void test_layout(mode_t mask)
{
	char dir[512], p[1024], err[512];
	struct spool *s;
	struct job *j;
	int i, good = 1;
	mode_t old = umask(mask);

	pathf(dir, sizeof(dir), "%s/layout-%03o", base, (unsigned)mask);
	s = open_ok(dir);
	ok(s != NULL, "umask %03o: spool_open creates %s", (unsigned)mask, dir);
	if (!s) {
		umask(old);
		return;
	}
	is_str(spool_dir(s), dir, "spool_dir() returns the path");
	is_int(mode_of(dir), 0700, "umask %03o: spool dir mode 0700", (unsigned)mask);
	is_int(mode_of(pathf(p, sizeof(p), "%s/tmp", dir)), 0700, "umask %03o: tmp/ 0700",
	       (unsigned)mask);
	for (i = 0; i < 5; i++) {
		if (mode_of(pathf(p, sizeof(p), "%s/%s", dir, states[i])) != 0700)
			good = 0;
	}
	ok(good, "umask %03o: queue active deferred held failed all 0700", (unsigned)mask);
	j = mkjob("layout");
	ok(spool_enqueue(s, j, err, sizeof(err)) == 0, "enqueue");
	is_int(mode_of(pathf(p, sizeof(p), "%s/queue/%s", dir, j->id)), 0600,
	       "umask %03o: job file 0600", (unsigned)mask);
	is_int(spool_lock(s), 1, "lock taken");
	is_int(mode_of(pathf(p, sizeof(p), "%s/lock", dir)), 0600,
	       "umask %03o: lock file 0600", (unsigned)mask);
	job_free(j);
	spool_close(s);
	/* opening again is fine and changes nothing */
	s = open_ok(dir);
	ok(s != NULL, "umask %03o: reopen an existing spool", (unsigned)mask);
	is_int(spool_count(s, SPOOL_QUEUE), 1, "the job is still there");
	spool_close(s);
	umask(old);
}

static void refuse(const char *dir, const char *want, const char *what)
{
	char err[512] = "";
	struct spool *s = (struct spool *)&err; /* must be reset to NULL */

	ok(spool_open(dir, &s, err, sizeof(err)) == -1 && s == NULL, "refused: %s", what);
	contains(err, want, "  message for %s", what);
	if (s == NULL)
		spool_close(s); /* harmless on NULL */
}

static void test_refusals(void)
{
	char dir[512], p[1024], p2[1024];
	struct spool *s;

	pathf(dir, sizeof(dir), "%s/ww", base);
	mkdir(dir, 0700);
	chmod(dir, 0777);
	refuse(dir, "writable by everyone", "world-writable spool dir");
	chmod(dir, 0770);
	refuse(dir, "writable by its group", "group-writable spool dir");
	chmod(dir, 0750);
	s = open_ok(dir);
	ok(s != NULL, "a group-readable (0750) spool dir is accepted");
	spool_close(s);
	chmod(pathf(p, sizeof(p), "%s/held", dir), 0777);
	refuse(dir, "held is writable", "world-writable held/");
	chmod(p, 0700);
	chmod(pathf(p, sizeof(p), "%s/tmp", dir), 0720);
	refuse(dir, "tmp is writable", "group-writable tmp/");
	chmod(p, 0700);

	pathf(p, sizeof(p), "%s/link", base);
	ok(symlink(dir, p) == 0, "make a symlink to a spool");
	refuse(p, "symbolic link", "spool dir is a symlink");

	pathf(p, sizeof(p), "%s/sublink", base);
	mkdir(p, 0700);
	pathf(p2, sizeof(p2), "%s/sublink/queue", base);
	ok(symlink(dir, p2) == 0, "make queue/ a symlink");
	refuse(p, "queue is a symbolic link", "queue/ is a symlink");

	pathf(p, sizeof(p), "%s/subfile", base);
	mkdir(p, 0700);
	write_file(pathf(p2, sizeof(p2), "%s/subfile/failed", base), "x");
	refuse(p, "failed is not a directory", "failed/ is a file");

	pathf(p, sizeof(p), "%s/plainfile", base);
	write_file(p, "x");
	refuse(p, "not a directory", "spool dir is a file");

	refuse(pathf(p, sizeof(p), "%s/no/such/parent", base), "cannot create",
	       "missing parent directory");
	refuse("", "no spool directory", "empty path");
}

/* ---- the life of a job ------------------------------------------------- */

static void test_lifecycle(void)
{
	char dir[512], err[512], id[JOB_ID_MAX];
	struct spool *s;
	struct job *j, *c = NULL;
	int64_t before = (int64_t)time(NULL) * 1000000000;

	s = open_ok(pathf(dir, sizeof(dir), "%s/life", base));
	if (!s)
		return;
	j = mkjob("jdoe");
	job_set(&j->dn, "uid=jdoe,ou=people,dc=example,dc=com");
	ok(spool_enqueue(s, j, err, sizeof(err)) == 0, "enqueue");
	ok(job_id_valid(j->id), "enqueue assigned an id (%s)", j->id);
	ok(j->created >= before, "enqueue set created (not before the test started)");
	ok(exists(dir, "queue", j->id), "the job is in queue/ under its id");
	is_int(entries(dir, "tmp"), 0, "tmp/ is empty");
	is_int(spool_count(s, SPOOL_QUEUE), 1, "count queue 1");

	is_int(spool_lock(s), 1, "lock");
	is_int(spool_claim(s, &c), 1, "claim");
	ok(c != NULL, "claimed a job");
	if (c) {
		is_str(c->id, j->id, "claimed the job just enqueued");
		is_str(c->dn, j->dn, "fields came back");
		ok(c->created == j->created, "created came back");
		ok(exists(dir, "active", c->id) && !exists(dir, "queue", c->id),
		   "claim moved it to active/");
		is_int(spool_done(s, c), 0, "done");
		ok(!exists(dir, "active", c->id), "done removed it");
	}
	job_free(c);
	c = NULL;
	is_int(spool_claim(s, &c), 0, "claim on an empty queue: 0");
	ok(c == NULL, "  and no job");

	/* enqueue refuses a job that cannot be written, leaving nothing behind */
	job_set(&j->uid, "bad\xff");
	snprintf(id, sizeof(id), "%s", j->id);
	err[0] = '\0';
	ok(spool_enqueue(s, j, err, sizeof(err)) == -1, "enqueue of a non-UTF-8 field fails");
	contains(err, "UTF-8", "  with a message");
	is_str(j->id, "", "  and no id");
	is_int(entries(dir, "tmp") + entries(dir, "queue"), 0, "  and no file");
	ok(spool_enqueue(NULL, j, err, sizeof(err)) == -1, "enqueue(NULL spool) fails");
	ok(spool_enqueue(s, NULL, err, sizeof(err)) == -1, "enqueue(NULL job) fails");
	job_free(j);
	ok(spool_claim(s, NULL) == -1, "claim(NULL out) fails");
	spool_close(s);

	/* a failing rename cleans up its tmp file */
	s = open_ok(pathf(dir, sizeof(dir), "%s/life2", base));
	if (!s)
		return;
	j = mkjob("x");
	{
		char p[1024];

		rmdir(pathf(p, sizeof(p), "%s/queue", dir));
	}
	err[0] = '\0';
	ok(spool_enqueue(s, j, err, sizeof(err)) == -1, "enqueue into a vanished queue/ fails");
	contains(err, "cannot rename", "  with a message");
	is_int(entries(dir, "tmp"), 0, "  and tmp/ is clean");
	job_free(j);
	spool_close(s);
}

static int64_t mtime_of(const char *dir, const char *sub, const char *name)
{
	char p[1024];
	struct stat st;

	if (stat(pathf(p, sizeof(p), "%s/%s/%s", dir, sub, name), &st) != 0)
		return -1;
	return (int64_t)st.st_mtime;
}

static struct job *load(const char *dir, const char *sub, const char *name)
{
	char p[1024], buf[JOB_MAX_RECORD], err[256];
	FILE *f = fopen(pathf(p, sizeof(p), "%s/%s/%s", dir, sub, name), "r");
	size_t n;
	struct job *j;

	if (!f)
		return NULL;
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	j = job_from_json(buf, n, err, sizeof(err));
	if (!j)
		diag("%s: %s", p, err);
	return j;
}

static void test_put(void)
{
	static const enum spool_state targets[] = { SPOOL_DEFERRED, SPOOL_HELD, SPOOL_FAILED,
	                                            SPOOL_QUEUE };
	char dir[512], err[512], p[1024];
	struct spool *s;
	struct job *j, *c, *back;
	int64_t now = (int64_t)time(NULL);
	size_t i;

	s = open_ok(pathf(dir, sizeof(dir), "%s/put", base));
	if (!s)
		return;
	spool_lock(s);
	j = mkjob("put");
	spool_enqueue(s, j, err, sizeof(err));
	for (i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
		enum spool_state st = targets[i];

		c = NULL;
		if (st != SPOOL_DEFERRED) {
			/* get it back into queue/ and claim it again */
			if (spool_move_id(s, j->id, SPOOL_QUEUE) != 1)
				diag("move back to queue failed");
		}
		if (spool_claim(s, &c) != 1 || !c) {
			ok(0, "claim before put into %s", spool_state_name(st));
			continue;
		}
		c->attempts = (int)i + 1;
		c->next_attempt = now + 600 + (int64_t)i;
		job_set(&c->last_error, spool_state_name(st));
		is_int(spool_put(s, c, st), 0, "put into %s", spool_state_name(st));
		ok(exists(dir, spool_state_name(st), c->id), "  the job is in %s/",
		   spool_state_name(st));
		is_int(entries(dir, "active"), 0, "  active/ is empty");
		is_int(entries(dir, "tmp"), 0, "  tmp/ is empty");
		back = load(dir, spool_state_name(st), c->id);
		ok(back && back->attempts == (int)i + 1 && back->last_error &&
		   !strcmp(back->last_error, spool_state_name(st)),
		   "  the record was rewritten with the new fields");
		is_int(mode_of(pathf(p, sizeof(p), "%s/%s/%s", dir, spool_state_name(st), c->id)),
		       0600, "  mode 0600");
		if (st == SPOOL_DEFERRED)
			ok(mtime_of(dir, "deferred", c->id) == now + 600,
			   "  deferred: mtime is next_attempt");
		job_free(back);
		if (st == SPOOL_DEFERRED) {
			is_int(spool_promote_due(s, now + 599), 0, "  not promoted before its time");
			is_int(spool_promote_due(s, now + 600), 1, "  promoted at its time");
		}
		job_free(c);
	}
	/* the last put went to queue/: refuse active as a target */
	c = NULL;
	if (spool_claim(s, &c) == 1) {
		testlog_clear();
		is_int(spool_put(s, c, SPOOL_ACTIVE), -1, "put into active/ is refused");
		is_int(spool_put(s, c, (enum spool_state)42), -1, "put into state 42 is refused");
		ok(exists(dir, "active", c->id), "  the job stays in active/");
		job_set(&c->dn, "bad\xff");
		is_int(spool_put(s, c, SPOOL_HELD), -1, "put of an unwritable record fails");
		contains(testlog_text(), "cannot put", "  with a log line");
		ok(exists(dir, "active", c->id) && !exists(dir, "held", c->id),
		   "  the job stays in active/ only");
		is_int(entries(dir, "tmp"), 0, "  tmp/ is empty");
		job_free(c);
	} else
		ok(0, "claim for the refusal tests");
	ok(spool_done(s, NULL) == -1, "done(NULL) fails");
	job_free(j);
	spool_close(s);
}

static void test_recover(void)
{
	char dir[512], err[512], p[1024], p2[1024];
	struct spool *s, *s2;
	struct job *a, *b, *c = NULL;
	time_t t0;

	s = open_ok(pathf(dir, sizeof(dir), "%s/recover", base));
	if (!s)
		return;
	a = mkjob("a");
	b = mkjob("b");
	spool_enqueue(s, a, err, sizeof(err));
	spool_enqueue(s, b, err, sizeof(err));
	spool_lock(s);
	spool_claim(s, &c);
	job_free(c);
	c = NULL;
	spool_claim(s, &c);
	job_free(c);
	ok(exists(dir, "active", a->id) && exists(dir, "active", b->id), "two jobs in active/");
	/* b was put into held/ but the crash came before active/ was cleaned */
	pathf(p, sizeof(p), "%s/active/%s", dir, b->id);
	pathf(p2, sizeof(p2), "%s/held/%s", dir, b->id);
	ok(link(p, p2) == 0, "simulate a put cut short: b in active/ and held/");
	/* a stray tmp file of an enqueue in progress must survive */
	t0 = time(NULL);
	write_file(pathf(p, sizeof(p), "%s/tmp/%s", dir, "1-1-1"), "{");
	spool_close(s); /* the "crash": lock released */

	s2 = open_ok(dir);
	is_int(spool_lock(s2), 1, "the next drainer gets the lock");
	is_int(spool_recover(s2), 1, "recover moved one job");
	ok(exists(dir, "queue", a->id) && !exists(dir, "active", a->id), "a went back to queue/");
	ok(exists(dir, "held", b->id) && !exists(dir, "active", b->id) &&
	   !exists(dir, "queue", b->id), "b stays in held/ only (stale active copy removed)");
	if (time(NULL) < t0 + 2) /* SPOOL_STALE_TMP_SECONDS is 2 in this test */
		ok(exists(dir, "tmp", "1-1-1"), "a fresh tmp/ file is left alone");
	else
		ok(1, "# SKIP the machine took 2 s to get here");
	is_int(spool_recover(s2), 0, "recover again: nothing to do");
	c = NULL;
	is_int(spool_claim(s2, &c), 1, "the recovered job can be claimed");
	ok(c && !strcmp(c->id, a->id), "  it is a");
	job_free(c);
	ok(spool_recover(NULL) == -1 && spool_promote_due(NULL, 0) == -1, "NULL spool refused");
	job_free(a);
	job_free(b);
	job_free(c = NULL);
	spool_close(s2);
}

static void test_deferred(void)
{
	char dir[512], err[512], p[1024];
	struct spool *s;
	struct job *j, *k, *c = NULL;
	int64_t now = (int64_t)time(NULL);
	struct timespec ts[2];

	s = open_ok(pathf(dir, sizeof(dir), "%s/deferred", base));
	if (!s)
		return;
	is_int(spool_next_due(s), 0, "next_due with nothing deferred: 0");
	j = mkjob("later");
	j->next_attempt = now + 100;
	ok(spool_enqueue(s, j, err, sizeof(err)) == 0, "enqueue with a future next_attempt");
	ok(exists(dir, "deferred", j->id) && !exists(dir, "queue", j->id), "  lands in deferred/");
	ok(mtime_of(dir, "deferred", j->id) == now + 100, "  with mtime = next_attempt");
	k = mkjob("later2");
	k->next_attempt = now + 50;
	spool_enqueue(s, k, err, sizeof(err));
	ok(spool_next_due(s) == now + 50, "next_due is the earliest");
	spool_lock(s);
	is_int(spool_promote_due(s, now), 0, "nothing due now");
	is_int(spool_promote_due(s, now + 50), 1, "one due at +50");
	ok(exists(dir, "queue", k->id), "  it is in queue/");
	ok(spool_next_due(s) == now + 100, "next_due moves on");
	/* someone touched the file: the mtime says due, the record says not */
	ts[0].tv_sec = ts[1].tv_sec = now - 10;
	ts[0].tv_nsec = ts[1].tv_nsec = 0;
	utimensat(AT_FDCWD, pathf(p, sizeof(p), "%s/deferred/%s", dir, j->id), ts, 0);
	is_int(spool_promote_due(s, now), 0, "a touched file is not promoted early");
	is_int(spool_promote_due(s, now + 100), 1, "promoted at its record's time");
	is_int(spool_next_due(s), 0, "next_due: none left");
	/* promoted jobs are claimable at once even though the batch was filled */
	is_int(spool_claim(s, &c), 1, "claim after promotion");
	job_free(c);
	c = NULL;
	is_int(spool_claim(s, &c), 1, "claim the second");
	job_free(c);
	c = NULL;
	is_int(spool_claim(s, &c), 0, "then empty");
	/* a deferred record that cannot be read goes on to queue/ and then failed/ */
	write_file(pathf(p, sizeof(p), "%s/deferred/5-5-5", dir), "garbage");
	ts[0].tv_sec = ts[1].tv_sec = now - 10;
	utimensat(AT_FDCWD, p, ts, 0);
	is_int(spool_promote_due(s, now), 1, "an unreadable deferred record is promoted");
	testlog_clear();
	is_int(spool_claim(s, &c), 0, "  and claim skips it");
	ok(exists(dir, "failed", "5-5-5"), "  into failed/");
	/* next_attempt 0 in deferred/ (mtime 0) still reads as due */
	c = mkjob("zero");
	spool_enqueue(s, c, err, sizeof(err));
	spool_move_id(s, c->id, SPOOL_DEFERRED);
	ok(spool_next_due(s) > 0 && spool_next_due(s) <= now, "next_due of a job deferred to 0 is due");
	job_free(c);
	job_free(j);
	job_free(k);
	spool_close(s);
}

/* Write a record by hand into DIR/SUB/NAME with a matching id. */
static void plant(const char *dir, const char *sub, const char *name)
{
	char p[1024], rec[256];

	snprintf(rec, sizeof(rec), "{\"version\":1,\"id\":\"%s\",\"source\":\"test\"}\n", name);
	write_file(pathf(p, sizeof(p), "%s/%s/%s", dir, sub, name), rec);
}

static void test_order(void)
{
	char dir[512], err[512], name[64];
	struct spool *s;
	struct job *j[5], *c;
	int i, good, n;
	char last[JOB_ID_MAX];

	s = open_ok(pathf(dir, sizeof(dir), "%s/order", base));
	if (!s)
		return;
	for (i = 0; i < 5; i++) {
		j[i] = mkjob("o");
		spool_enqueue(s, j[i], err, sizeof(err));
	}
	spool_lock(s);
	good = 1;
	for (i = 0; i < 5; i++) {
		c = NULL;
		if (spool_claim(s, &c) != 1 || strcmp(c->id, j[i]->id) != 0)
			good = 0;
		if (c)
			spool_done(s, c);
		job_free(c);
		job_free(j[i]);
	}
	ok(good, "five jobs come out oldest first");

	/* numeric, not textual: 9 before 10, counter 2 before 10 */
	plant(dir, "queue", "10-1-1");
	plant(dir, "queue", "9-1-1");
	plant(dir, "queue", "9-1-10");
	plant(dir, "queue", "9-1-2");
	{
		const char *want[] = { "9-1-1", "9-1-2", "9-1-10", "10-1-1" };

		good = 1;
		for (i = 0; i < 4; i++) {
			c = NULL;
			if (spool_claim(s, &c) != 1 || strcmp(c->id, want[i]) != 0) {
				good = 0;
				diag("claim %d: got %s, want %s", i, c ? c->id : "(none)", want[i]);
			}
			if (c)
				spool_done(s, c);
			job_free(c);
		}
		ok(good, "names are compared numerically");
	}

	/* 2,000 planted jobs, claimed in batches of SPOOL_BATCH_MAX (100 in this
	 * test): all claimed, in order, none twice.  (More files would only
	 * measure how fast this machine creates them.) */
	for (i = 0; i < 2000; i++) {
		snprintf(name, sizeof(name), "%d-7-%d", 1000 + (i * 7919) % 2000, i);
		plant(dir, "queue", name);
	}
	good = 1;
	n = 0;
	last[0] = '\0';
	for (;;) {
		c = NULL;
		if (spool_claim(s, &c) != 1)
			break;
		if (last[0] && job_id_cmp(last, c->id) >= 0)
			good = 0;
		snprintf(last, sizeof(last), "%s", c->id);
		/* left in active/: spool_done's fsync per job would only make the
		 * test slow */
		job_free(c);
		n++;
	}
	is_int(n, 2000, "2,000 queued jobs all claimed");
	ok(good, "  strictly oldest first");
	is_int(entries(dir, "queue"), 0, "  queue/ empty");
	is_int(entries(dir, "active"), 2000, "  all in active/");
	spool_close(s);
}

static void test_bad_records(void)
{
	char dir[512], err[512], p[1024];
	struct spool *s;
	struct job *j, *c = NULL;
	const char *log;

	s = open_ok(pathf(dir, sizeof(dir), "%s/bad", base));
	if (!s)
		return;
	spool_lock(s);
	write_file(pathf(p, sizeof(p), "%s/queue/1-1-1", dir), "this is not json");
	write_file(pathf(p, sizeof(p), "%s/queue/1-1-2", dir), "{\"version\":9}");
	plant(dir, "queue", "1-1-3");
	rename(pathf(p, sizeof(p), "%s/queue/1-1-3", dir),
	       pathf(err, sizeof(err), "%s/queue/1-1-4", dir)); /* id != name */
	write_file(pathf(p, sizeof(p), "%s/queue/1-1-5", dir), "");
	write_file(pathf(p, sizeof(p), "%s/queue/notajob", dir), "{}");
	write_file(pathf(p, sizeof(p), "%s/queue/.1-1-6.swp", dir), "{}");
	mkdir(pathf(p, sizeof(p), "%s/queue/1-1-7", dir), 0700);
	/* log forging attempts: a newline in a file name, and in a record */
	write_file(pathf(p, sizeof(p), "%s/queue/evil\nforged=1", dir), "{}");
	write_file(pathf(p, sizeof(p), "%s/queue/1-1-8", dir), "{\"version\":1,\"dn\":\"x\nforged=2\"}");
	j = mkjob("good");
	spool_enqueue(s, j, err, sizeof(err));
	testlog_clear();
	is_int(spool_claim(s, &c), 1, "claim skips the bad records and finds the good one");
	ok(c && !strcmp(c->id, j->id), "  the good one");
	log = testlog_text();
	ok(exists(dir, "failed", "1-1-1"), "not JSON: moved to failed/ (not deleted)");
	contains(log, "1-1-1", "  log names the file");
	contains(log, "not JSON", "  log gives the reason");
	ok(exists(dir, "failed", "1-1-2"), "version 9: moved to failed/");
	contains(log, "newer", "  log gives the reason");
	ok(exists(dir, "failed", "1-1-4"), "id differing from the name: moved to failed/");
	contains(log, "does not match the file name", "  log gives the reason");
	ok(exists(dir, "failed", "1-1-5"), "empty file: moved to failed/");
	ok(exists(dir, "failed", "notajob"), "foreign name in queue/: moved to failed/");
	contains(log, "notajob", "  log names it");
	ok(exists(dir, "queue", ".1-1-6.swp"), "dot file in queue/ left alone");
	ok(exists(dir, "failed", "1-1-7"), "a directory with a job name: moved to failed/");
	ok(!exists(dir, "queue", "1-1-1") && !exists(dir, "active", "1-1-1"), "nothing left behind");
	ok(exists(dir, "failed", "evil\nforged=1"), "a name with a newline: moved to failed/");
	ok(!strstr(log, "\nforged=1"), "  its newline does not reach the log");
	contains(log, "evil\\x0aforged=1", "  it is escaped");
	ok(exists(dir, "failed", "1-1-8"), "a record with a raw newline in a string: moved to failed/");
	ok(!strstr(log, "\nforged=2"), "  the parser's quote of it does not break the log line");
	job_free(c);
	c = NULL;
	is_int(spool_claim(s, &c), 0, "queue now empty");
	is_int(spool_count(s, SPOOL_FAILED), 6, "count ignores the foreign names");
	job_free(j);
	spool_close(s);
}

/* ---- the lock ---------------------------------------------------------- */

static int child_lock(const char *dir)
{
	pid_t pid = fork();
	int status;

	if (pid == 0) {
		struct spool *s = open_ok(dir);
		int rc = s ? spool_lock(s) : -1;

		spool_close(s);
		_exit(rc == 1 ? 1 : rc == 0 ? 0 : 2);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

static void test_lock(void)
{
	char dir[512];
	struct spool *s, *s2;

	s = open_ok(pathf(dir, sizeof(dir), "%s/lock", base));
	s2 = open_ok(dir);
	if (!s || !s2)
		return;
	is_int(spool_lock(s), 1, "first lock taken");
	is_int(spool_lock(s), 1, "locking again through the same handle: still ours");
	is_int(child_lock(dir), 0, "another process cannot take it");
	is_int(spool_lock(s2), 0, "another handle in this process cannot either");
	spool_unlock(s);
	is_int(child_lock(dir), 1, "after unlock, another process can");
	is_int(spool_lock(s2), 1, "and so can the other handle");
	is_int(spool_lock(s), 0, "now the first handle cannot");
	spool_close(s2);
	is_int(spool_lock(s), 1, "closing releases the lock");
	spool_close(s);
	is_int(spool_lock(NULL), -1, "lock(NULL) fails");
	spool_unlock(NULL);
}

/* claim and recover belong to the lock holder */
static void test_unlocked(void)
{
	char dir[512], err[512];
	struct spool *s, *s2;
	struct job *j, *c = NULL;

	s = open_ok(pathf(dir, sizeof(dir), "%s/unlocked", base));
	s2 = open_ok(dir);
	if (!s || !s2)
		return;
	j = mkjob("u");
	spool_enqueue(s, j, err, sizeof(err));
	testlog_clear();
	is_int(spool_claim(s, &c), -1, "claim without the lock is refused");
	contains(testlog_text(), "without the spool lock", "  with a log line");
	is_int(spool_recover(s), -1, "recover without the lock is refused");
	spool_lock(s2);
	is_int(spool_claim(s, &c), -1, "claim while another handle holds the lock: refused");
	ok(exists(dir, "queue", j->id), "  the job was not touched");
	is_int(spool_claim(s2, &c), 1, "the holder claims it");
	spool_close(s2); /* the holder dies with the job in active/ */
	is_int(spool_recover(s), -1, "recover without the lock still refused");
	ok(exists(dir, "active", c->id), "  active/ left alone");
	is_int(spool_lock(s), 1, "lock");
	is_int(spool_recover(s), 1, "now recover works");
	job_free(c);
	job_free(j);
	spool_close(s);
}

/* Root working on slapd's spool must leave files slapd can read. */
static void test_foreign_owner(void)
{
	char dir[512], err[512], p[1024];
	struct spool *s;
	struct job *j;
	struct stat st;
	int i, good = 1;
	const uid_t uid = 65534;
	const gid_t gid = 65534;

	if (geteuid() != 0) {
		ok(1, "# SKIP not root: cannot test giving files to the spool's owner");
		return;
	}
	pathf(dir, sizeof(dir), "%s/foreign", base);
	mkdir(dir, 0700);
	if (chown(dir, uid, gid) != 0) {
		ok(0, "chown the spool dir to %d", (int)uid);
		return;
	}
	s = open_ok(dir);
	ok(s != NULL, "root opens a spool owned by uid %d", (int)uid);
	if (!s)
		return;
	for (i = 0; i < 5; i++) {
		if (stat(pathf(p, sizeof(p), "%s/%s", dir, states[i]), &st) != 0 ||
		    st.st_uid != uid || st.st_gid != gid)
			good = 0;
	}
	if (stat(pathf(p, sizeof(p), "%s/tmp", dir), &st) != 0 || st.st_uid != uid)
		good = 0;
	ok(good, "  the subdirectories it creates belong to the spool's owner");
	j = mkjob("root");
	spool_enqueue(s, j, err, sizeof(err));
	ok(stat(pathf(p, sizeof(p), "%s/queue/%s", dir, j->id), &st) == 0 && st.st_uid == uid &&
	   st.st_gid == gid, "  so does an enqueued job");
	spool_lock(s);
	ok(stat(pathf(p, sizeof(p), "%s/lock", dir), &st) == 0 && st.st_uid == uid,
	   "  and the lock file");
	is_int(spool_move_id(s, j->id, SPOOL_HELD), 1, "move (rewrite) as root");
	ok(stat(pathf(p, sizeof(p), "%s/held/%s", dir, j->id), &st) == 0 && st.st_uid == uid,
	   "  the rewritten record belongs to the owner too");
	job_free(j);
	spool_close(s);
}

/* An operator's retry in another process shows up within a few seconds even
 * while a long batch is in hand.  The same wait lets a tmp/ leftover grow
 * stale (SPOOL_STALE_TMP_SECONDS is 2 in this test). */
static void test_batch_age(void)
{
	char dir[512], name[64], p[1024];
	struct spool *s;
	struct job *c = NULL;
	time_t t0;
	int i;

	s = open_ok(pathf(dir, sizeof(dir), "%s/age", base));
	if (!s)
		return;
	for (i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "100-1-%d", i);
		plant(dir, "queue", name);
	}
	spool_lock(s);
	t0 = time(NULL);
	write_file(pathf(p, sizeof(p), "%s/tmp/1-2-3", dir), "{");
	write_file(pathf(p, sizeof(p), "%s/tmp/1-2-3.put", dir), "{");
	is_int(spool_recover(s), 0, "recover with two fresh tmp/ files");
	if (time(NULL) < t0 + 2)
		ok(exists(dir, "tmp", "1-2-3") && exists(dir, "tmp", "1-2-3.put"),
		   "  they are left alone");
	else
		ok(1, "# SKIP the machine took 2 s between writing and recovering");
	is_int(spool_claim(s, &c), 1, "claim the first of a batch");
	spool_done(s, c);
	job_free(c);
	c = NULL;
	/* another process (an operator's retry) adds an older job to queue/ */
	plant(dir, "queue", "50-1-1");
	/* not a wait for something to happen: the clock has to pass the age */
	{
		struct stat st;
		time_t ready = t0 + 3;

		if (stat(pathf(p, sizeof(p), "%s/tmp/1-2-3.put", dir), &st) == 0 &&
		    st.st_ctime + 3 > ready)
			ready = st.st_ctime + 3;
		while (time(NULL) < ready)
			usleep(100000);
	}
	testlog_clear();
	is_int(spool_recover(s), 0, "recover after the tmp/ files have aged");
	ok(!exists(dir, "tmp", "1-2-3") && !exists(dir, "tmp", "1-2-3.put"),
	   "  stale tmp/ files are removed");
	contains(testlog_text(), "removed stale", "  with a log line");
	is_int(spool_claim(s, &c), 1, "claim after the batch has aged");
	is_str(c ? c->id : NULL, "50-1-1", "  the older job planted meanwhile comes first");
	if (c)
		spool_done(s, c);
	job_free(c);
	spool_close(s);
}

/* ---- operator commands ------------------------------------------------- */

struct listing {
	int n[5];
	char ids[16][JOB_ID_MAX];
	int count;
};

static int list_cb(enum spool_state st, const struct job *j, void *arg)
{
	struct listing *l = arg;

	l->n[st]++;
	if (l->count < 16)
		snprintf(l->ids[l->count++], JOB_ID_MAX, "%s", j->id);
	return 0;
}

static int stop_cb(enum spool_state st, const struct job *j, void *arg)
{
	(*(int *)arg)++;
	return 7;
}

static void test_operator(void)
{
	char dir[512], err[512];
	struct spool *s;
	struct job *j[4], *f = NULL, *c = NULL;
	enum spool_state st = SPOOL_FAILED;
	struct listing l;
	int i, calls = 0;
	int64_t now = (int64_t)time(NULL);
	const char *bad[] = { "../queue/1-1-1", "1-1-1/..", "", "x", "1-1-1 ", "/etc/passwd" };

	s = open_ok(pathf(dir, sizeof(dir), "%s/op", base));
	if (!s)
		return;
	for (i = 0; i < 4; i++) {
		j[i] = mkjob("op");
		j[i]->next_attempt = i == 1 ? now + 3600 : 0;
		spool_enqueue(s, j[i], err, sizeof(err));
	}
	/* j0 queue, j1 deferred, j2 -> held, j3 -> failed */
	is_int(spool_move_id(s, j[2]->id, SPOOL_HELD), 1, "move to held");
	is_int(spool_move_id(s, j[3]->id, SPOOL_FAILED), 1, "move to failed");
	is_int(spool_count(s, SPOOL_QUEUE), 1, "count queue");
	is_int(spool_count(s, SPOOL_DEFERRED), 1, "count deferred");
	is_int(spool_count(s, SPOOL_HELD), 1, "count held");
	is_int(spool_count(s, SPOOL_FAILED), 1, "count failed");
	is_int(spool_count(s, (enum spool_state)9), -1, "count of state 9 fails");

	is_int(spool_find(s, j[2]->id, &st, &f), 1, "find a held job");
	is_int(st, SPOOL_HELD, "  its state");
	ok(f && !strcmp(f->id, j[2]->id), "  its record");
	job_free(f);
	f = NULL;
	is_int(spool_find(s, j[1]->id, &st, NULL), 1, "find without the record");
	is_int(st, SPOOL_DEFERRED, "  state deferred");
	is_int(spool_find(s, "1-2-3", &st, &f), 0, "find an absent id: 0");
	ok(f == NULL, "  no record");

	memset(&l, 0, sizeof(l));
	is_int(spool_list(s, -1, list_cb, &l), 0, "list all");
	ok(l.n[SPOOL_QUEUE] == 1 && l.n[SPOOL_DEFERRED] == 1 && l.n[SPOOL_HELD] == 1 &&
	   l.n[SPOOL_FAILED] == 1 && l.n[SPOOL_ACTIVE] == 0, "  one in each state");
	memset(&l, 0, sizeof(l));
	is_int(spool_list(s, SPOOL_HELD, list_cb, &l), 0, "list held");
	ok(l.count == 1 && !strcmp(l.ids[0], j[2]->id), "  just the held job");
	is_int(spool_list(s, -1, stop_cb, &calls), 7, "a callback's nonzero return stops the listing");
	is_int(calls, 1, "  after one call");
	is_int(spool_list(s, 12, list_cb, &l), -1, "list of state 12 fails");

	/* release: held -> queue; retry: deferred/failed -> queue, next_attempt reset */
	is_int(spool_move_id(s, j[2]->id, SPOOL_QUEUE), 1, "release a held job");
	is_int(spool_move_id(s, j[1]->id, SPOOL_QUEUE), 1, "retry a deferred job");
	ok(!exists(dir, "deferred", j[1]->id) && exists(dir, "queue", j[1]->id), "  it moved");
	f = load(dir, "queue", j[1]->id);
	ok(f && f->next_attempt == 0, "  next_attempt reset to 0");
	job_free(f);
	f = NULL;
	is_int(spool_move_id(s, j[3]->id, SPOOL_QUEUE), 1, "retry a failed job");
	is_int(spool_count(s, SPOOL_QUEUE), 4, "all four queued");
	/* into deferred/ by hand: the mtime follows the record */
	{
		struct job *k = mkjob("defer-by-hand");

		k->next_attempt = 0;
		spool_enqueue(s, k, err, sizeof(err));
		is_int(spool_move_id(s, k->id, SPOOL_DEFERRED), 1, "move a queued job into deferred/");
		ok(mtime_of(dir, "deferred", k->id) == 0, "  its mtime is its next_attempt (0: due)");
		is_int(spool_promote_due(s, now), 1, "  and promotion takes it back");
		is_int(spool_drop_id(s, k->id), 1, "  drop it");
		job_free(k);
	}
	is_int(spool_move_id(s, j[0]->id, SPOOL_QUEUE), 1, "moving to its own state is fine");
	is_int(spool_count(s, SPOOL_QUEUE), 4, "  still four");
	is_int(spool_move_id(s, "1-2-3", SPOOL_QUEUE), 0, "move an absent id: 0");
	is_int(spool_drop_id(s, "1-2-3"), 0, "drop an absent id: 0");

	/* an unreadable failed record can still be retried (as it is) */
	write_file(pathf(err, sizeof(err), "%s/failed/2-2-2", dir), "broken");
	is_int(spool_move_id(s, "2-2-2", SPOOL_QUEUE), 1, "retry an unreadable record");
	ok(exists(dir, "queue", "2-2-2"), "  moved as it is");
	testlog_clear();
	is_int(spool_find(s, "2-2-2", &st, &f), 1, "find of an unreadable record: found");
	contains(testlog_text(), "2-2-2", "  with a log line naming it");
	ok(f && !strcmp(f->id, "2-2-2") && f->created == 2 && !f->dn, "  as a placeholder job");
	contains(f ? f->last_error : NULL, "unreadable record: not JSON", "  that says why");
	job_free(f);
	f = NULL;
	memset(&l, 0, sizeof(l));
	is_int(spool_list(s, SPOOL_QUEUE, list_cb, &l), 0, "list with an unreadable record");
	ok(l.n[SPOOL_QUEUE] == 5, "  lists it too (5 in queue/)");
	is_int(spool_drop_id(s, "2-2-2"), 1, "drop it");

	/* bad ids never reach the file system */
	for (i = 0; i < (int)(sizeof(bad) / sizeof(bad[0])); i++) {
		testlog_clear();
		ok(spool_find(s, bad[i], &st, &f) == -1 && spool_move_id(s, bad[i], SPOOL_QUEUE) == -1 &&
		   spool_drop_id(s, bad[i]) == -1, "bad id \"%s\" refused by find, move, drop", bad[i]);
		contains(testlog_text(), "not a job id", "  with a message");
	}
	ok(spool_find(s, NULL, &st, &f) == -1 && spool_drop_id(s, NULL) == -1, "NULL id refused");
	is_int(spool_move_id(s, j[0]->id, SPOOL_ACTIVE), -1, "moving into active/ is refused");

	/* a job in active/ belongs to the worker */
	spool_lock(s);
	is_int(spool_claim(s, &c), 1, "claim one");
	testlog_clear();
	is_int(spool_drop_id(s, c->id), -1, "drop of an active job is refused");
	contains(testlog_text(), "being processed", "  with a message");
	is_int(spool_move_id(s, c->id, SPOOL_HELD), -1, "move of an active job is refused");
	is_int(spool_find(s, c->id, &st, NULL), 1, "find an active job");
	is_int(st, SPOOL_ACTIVE, "  state active");
	spool_done(s, c);
	job_free(c);

	is_int(spool_drop_id(s, j[3]->id), 1, "drop a queued job");
	ok(!exists(dir, "queue", j[3]->id), "  it is gone");
	is_int(spool_drop_id(s, j[3]->id), 0, "drop it again: 0");
	for (i = 0; i < 4; i++)
		job_free(j[i]);

	is_str(spool_state_name(SPOOL_HELD), "held", "state name");
	is_str(spool_state_name((enum spool_state)77), "unknown", "unknown state name");
	is_int(spool_state_from_name("deferred"), SPOOL_DEFERRED, "state from name");
	is_int(spool_state_from_name("nope"), -1, "unknown name");
	is_int(spool_state_from_name(NULL), -1, "NULL name");
	spool_close(s);
}

/* ---- many enqueuers ------------------------------------------------------- */

#define PRODUCERS 10 /* 8 threads + 2 processes */
#define PER_PRODUCER 100

struct producer {
	struct spool *s;
	int failures;
};

static void *produce(void *arg)
{
	struct producer *p = arg;
	char err[512];
	int i;

	for (i = 0; i < PER_PRODUCER; i++) {
		struct job *j = mkjob("many");

		if (spool_enqueue(p->s, j, err, sizeof(err)) != 0)
			p->failures++;
		job_free(j);
	}
	return NULL;
}

static void test_concurrent(void)
{
	char dir[512], (*names)[JOB_ID_MAX] = NULL;
	struct producer prod[8];
	pthread_t th[8];
	pid_t kids[2];
	struct spool *s;
	struct dirent *de;
	int i, n = 0, bad = 0, failures = 0, status;
	DIR *d;
	char p[1024];

	/* the spool exists first; the children fork before this process opens
	 * its handle, so they inherit nothing of it */
	s = open_ok(pathf(dir, sizeof(dir), "%s/many", base));
	spool_close(s);
	for (i = 0; i < 2; i++) {
		kids[i] = fork();
		if (kids[i] == 0) {
			struct producer me = { NULL, 0 };

			me.s = open_ok(dir);
			if (me.s)
				produce(&me);
			spool_close(me.s);
			_exit(me.s && me.failures == 0 ? 0 : 1);
		}
	}
	s = open_ok(dir);
	if (!s)
		return;
	for (i = 0; i < 8; i++) {
		prod[i].s = s;
		prod[i].failures = 0;
		pthread_create(&th[i], NULL, produce, &prod[i]);
	}
	for (i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		failures += prod[i].failures;
	}
	for (i = 0; i < 2; i++) {
		if (kids[i] < 0 || waitpid(kids[i], &status, 0) != kids[i] || !WIFEXITED(status) ||
		    WEXITSTATUS(status) != 0)
			failures++;
	}
	is_int(failures, 0, "8 threads + 2 processes: every enqueue succeeded");

	names = calloc(PRODUCERS * PER_PRODUCER + 10, sizeof(*names));
	d = opendir(pathf(p, sizeof(p), "%s/queue", dir));
	while (d && names && (de = readdir(d)) != NULL) {
		struct job *j;

		if (de->d_name[0] == '.')
			continue;
		if (n >= PRODUCERS * PER_PRODUCER + 10 || strlen(de->d_name) >= JOB_ID_MAX) {
			n++;
			continue;
		}
		memcpy(names[n++], de->d_name, strlen(de->d_name) + 1);
		j = load(dir, "queue", de->d_name);
		if (!j || strcmp(j->id, de->d_name) != 0)
			bad++;
		job_free(j);
	}
	if (d)
		closedir(d);
	is_int(n, PRODUCERS * PER_PRODUCER, "exactly 1,000 files in queue/");
	is_int(bad, 0, "  all parse, each with its own name as id");
	if (names && n <= PRODUCERS * PER_PRODUCER) {
		int dup = 0;

		qsort(names, (size_t)n, sizeof(*names), (int (*)(const void *, const void *))strcmp);
		for (i = 1; i < n; i++)
			dup += !strcmp(names[i - 1], names[i]);
		is_int(dup, 0, "  all distinct");
	}
	is_int(entries(dir, "tmp"), 0, "  nothing left in tmp/");
	is_int(spool_count(s, SPOOL_QUEUE), PRODUCERS * PER_PRODUCER, "spool_count agrees");
	free(names);
	spool_close(s);
}

int main(void)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(base, sizeof(base), "%s/test_spool.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(base)) {
		base[0] = '\0';
		tap_skip_all("cannot create a temporary directory");
	}
	atexit(cleanup);
	test_layout(022);
	test_layout(077);
	test_layout(0);
	test_refusals();
	test_lifecycle();
	test_put();
	test_recover();
	test_deferred();
	test_order();
	test_bad_records();
	test_lock();
	test_unlocked();
	test_foreign_owner();
	test_batch_age();
	test_operator();
	test_concurrent();
	return tap_done();
}
