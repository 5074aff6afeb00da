/* test_spool_crash: children enqueue, drain with every outcome, or play the
 * operator (release, hold, fail, defer, drop), and are killed with SIGKILL at
 * random moments, many times.  After each kill every
 * job a child reported (over a pipe, after spool_enqueue returned) must still
 * be in the spool or have been announced as done; every file in a state
 * directory must parse; a job may sit in two states only as the documented
 * active/ + target duplicate, which spool_recover resolves. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
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

#define ROUNDS 80           /* per phase */
#define PHASE_BUDGET_S 2    /* a slow machine does fewer rounds, not a longer test */
#define MIN_ROUNDS 10       /* however slow the machine */
#define MAX_DELAY_US 20000

static char base[256], dir[512];
static const char *states[] = { "queue", "active", "deferred", "held", "failed" };

struct idset {
	char (*v)[JOB_ID_MAX];
	size_t n, cap;
	int sorted;
};

static struct idset enqueued, done;

static void set_add(struct idset *s, const char *id)
{
	if (s->n == s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 1024;
		void *g = realloc(s->v, ncap * sizeof(*s->v));

		if (!g) {
			fprintf(stderr, "out of memory\n");
			exit(1);
		}
		s->v = g;
		s->cap = ncap;
	}
	snprintf(s->v[s->n++], JOB_ID_MAX, "%s", id);
	s->sorted = 0;
}

static int cmp_id(const void *a, const void *b)
{
	return strcmp((const char *)a, (const char *)b);
}

static int set_has(struct idset *s, const char *id)
{
	if (!s->sorted) {
		if (s->n)
			qsort(s->v, s->n, sizeof(*s->v), cmp_id);
		s->sorted = 1;
	}
	return s->n && bsearch(id, s->v, s->n, sizeof(*s->v), cmp_id) != NULL;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st; (void)flag; (void)f;
	return remove(p);
}

static void cleanup(void)
{
	if (base[0])
		nftw(base, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One whole line per write: a pipe write of at most PIPE_BUF bytes is
 * atomic, so a kill never leaves half a report. */
static void report(int fd, char kind, const char *id)
{
	char line[JOB_ID_MAX + 4];
	int n = snprintf(line, sizeof(line), "%c %s\n", kind, id);

	if (write(fd, line, (size_t)n) != n)
		_exit(4);
}

/* ---- the children -------------------------------------------------------- */

static void child_enqueue(int fd, unsigned seed)
{
	struct spool *s = NULL;
	char err[512];

	if (spool_open(dir, &s, err, sizeof(err)) != 0)
		_exit(2);
	report(fd, 'R', "");
	for (;;) {
		struct job *j = job_new("test", "crash");

		if (!j)
			_exit(2);
		job_set(&j->uid, "crash-test-user");
		job_add_email(j, "crash@example.com");
		/* a quarter go to deferred/, far in the future */
		if (rand_r(&seed) % 4 == 0)
			j->next_attempt = (int64_t)time(NULL) + 100000;
		if (spool_enqueue(s, j, err, sizeof(err)) != 0)
			_exit(3);
		report(fd, 'E', j->id);
		job_free(j);
	}
}

static void child_drain(int fd, unsigned seed)
{
	struct spool *s = NULL;
	char err[512];

	if (spool_open(dir, &s, err, sizeof(err)) != 0)
		_exit(2);
	report(fd, 'R', ""); /* before recovery: a kill there is part of the test */
	if (spool_lock(s) != 1)
		_exit(5);
	if (spool_recover(s) < 0)
		_exit(2);
	for (;;) {
		struct job *j = NULL;
		unsigned r;
		int rc;

		if (spool_promote_due(s, (int64_t)time(NULL)) < 0)
			_exit(2);
		rc = spool_claim(s, &j);
		if (rc < 0)
			_exit(2);
		if (rc == 0)
			_exit(0);
		j->attempts++;
		r = (unsigned)rand_r(&seed) % 100;
		if (j->attempts >= 4 || r < 25) {
			/* announce first: a kill after the unlink must not look like a loss */
			report(fd, 'D', j->id);
			rc = spool_done(s, j);
		} else if (r < 55) {
			j->next_attempt = (int64_t)time(NULL); /* due again at once */
			job_set(&j->last_error, "HTTP 503");
			rc = spool_put(s, j, SPOOL_DEFERRED);
		} else if (r < 80) {
			rc = spool_put(s, j, SPOOL_QUEUE);
		} else if (r < 90) {
			rc = spool_put(s, j, SPOOL_HELD);
		} else {
			job_set(&j->last_error, "protected");
			rc = spool_put(s, j, SPOOL_FAILED);
		}
		if (rc == 0)
			report(fd, 'P', j->id);
		job_free(j);
		if (rc != 0)
			_exit(2);
	}
}

struct ids {
	char v[64][JOB_ID_MAX];
	int n;
};

static int collect(enum spool_state st, const struct job *j, void *arg)
{
	struct ids *ids = arg;

	(void)st;
	if (ids->n >= 64)
		return 1;
	snprintf(ids->v[ids->n++], JOB_ID_MAX, "%s", j->id);
	return 0;
}

/* An operator releasing, holding, failing, deferring and now and then
 * dropping jobs, while no drainer runs. */
static void child_operator(int fd, unsigned seed)
{
	static const enum spool_state to[4] = { SPOOL_QUEUE, SPOOL_HELD, SPOOL_FAILED,
	                                        SPOOL_DEFERRED };
	struct spool *s = NULL;
	char err[512];

	if (spool_open(dir, &s, err, sizeof(err)) != 0)
		_exit(2);
	report(fd, 'R', "");
	for (;;) {
		struct ids ids;
		int i;

		ids.n = 0;
		if (spool_list(s, -1, collect, &ids) < 0)
			_exit(2);
		for (i = 0; i < ids.n; i++) {
			unsigned r = (unsigned)rand_r(&seed) % 41;
			int rc;

			if (r == 40) {
				report(fd, 'D', ids.v[i]);
				rc = spool_drop_id(s, ids.v[i]);
			} else {
				rc = spool_move_id(s, ids.v[i], to[r % 4]);
			}
			/* -1: the job is in active/ (left by a killed drainer) */
			if (rc == 1)
				report(fd, 'P', ids.v[i]);
		}
	}
}

/* ---- the parent -------------------------------------------------------- */

struct reader {
	char line[JOB_ID_MAX + 8];
	size_t ll;
	int ready;
};

static void consume(struct reader *r, const char *buf, ssize_t n, int *reports)
{
	ssize_t i;

	for (i = 0; i < n; i++) {
		if (buf[i] != '\n') {
			if (r->ll < sizeof(r->line) - 1)
				r->line[r->ll++] = buf[i];
			continue;
		}
		r->line[r->ll] = '\0';
		r->ll = 0;
		if (r->line[0] == 'R') {
			r->ready = 1;
			continue;
		}
		if (r->line[0] == 'E' && r->line[1] == ' ')
			set_add(&enqueued, r->line + 2);
		else if (r->line[0] == 'D' && r->line[1] == ' ')
			set_add(&done, r->line + 2);
		(*reports)++;
	}
}

/* Run one child; once it says it has opened the spool (so that a slow
 * machine, or valgrind, still kills it mid-work rather than at start-up),
 * kill it after a random delay and collect its reports.  Returns the
 * child's exit code, 128+signal, or -1. */
static int idle_rounds;

static int round_once(int drain, unsigned *seed, long *max_delay_us, int *reports)
{
	int before = *reports;
	struct reader r = { "", 0, 0 };
	int fds[2], status, eof = 0;
	int64_t deadline;
	pid_t pid;
	struct timespec d;
	char buf[8192];
	ssize_t n;

	if (pipe(fds) != 0)
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		close(fds[0]);
		if (drain == 2)
			child_operator(fds[1], (unsigned)getpid() ^ *seed);
		if (drain == 1)
			child_drain(fds[1], (unsigned)getpid() ^ *seed);
		child_enqueue(fds[1], (unsigned)getpid() ^ *seed);
		_exit(9);
	}
	close(fds[1]);
	deadline = mono_ms() + 10000;
	while (!r.ready && !eof && mono_ms() < deadline) {
		struct pollfd pfd = { fds[0], POLLIN, 0 };

		if (poll(&pfd, 1, 100) <= 0)
			continue;
		n = read(fds[0], buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			eof = 1;
		else
			consume(&r, buf, n, reports);
	}
	if (!r.ready && !eof)
		diag("child %ld did not start within 10 s", (long)pid);
	n = rand_r(seed) % *max_delay_us;
	d.tv_sec = n / 1000000;
	d.tv_nsec = (long)(n % 1000000) * 1000;
	nanosleep(&d, NULL);
	kill(pid, SIGKILL);
	/* Read to EOF: the write end closes when the child dies. */
	while (!eof) {
		n = read(fds[0], buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		consume(&r, buf, n, reports);
	}
	close(fds[0]);
	/* Where the machine is slow (valgrind), give the children longer, so
	 * that the kills still land in the middle of the work. */
	if (*reports > before)
		idle_rounds = 0;
	if (*reports == before && ++idle_rounds >= 3 && *max_delay_us < 2000000) {
		*max_delay_us *= 2;
		idle_rounds = 0;
	} else if (*reports - before > 10 && *max_delay_us > MAX_DELAY_US)
		*max_delay_us /= 2;
	if (waitpid(pid, &status, 0) != pid)
		return -1;
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

struct verdict {
	int files, corrupt, foreign, duplicates, stale_dups, lost, in_active;
	char first[256];
};

static void note(struct verdict *v, const char *what, const char *a, const char *b)
{
	if (!v->first[0])
		snprintf(v->first, sizeof(v->first), "%.60s %.100s%.60s", what, a, b);
}

/* Look at every state directory.  Before recovery a job may be in active/
 * and one other state; otherwise each job is in exactly one place. */
static void inspect(struct verdict *v)
{
	struct idset seen[5];
	int st, k;
	size_t i;

	memset(v, 0, sizeof(*v));
	memset(seen, 0, sizeof(seen));
	for (st = 0; st < 5; st++) {
		char p[1024];
		struct dirent *de;
		DIR *d;

		snprintf(p, sizeof(p), "%s/%s", dir, states[st]);
		d = opendir(p);
		if (!d) {
			v->corrupt++;
			note(v, "cannot open", p, "");
			continue;
		}
		while ((de = readdir(d)) != NULL) {
			char fp[1400], rec[JOB_MAX_RECORD], err[256];
			struct job *j;
			FILE *f;
			size_t n;

			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			if (!job_id_valid(de->d_name)) {
				v->foreign++;
				note(v, "foreign file in", states[st], "/");
				continue;
			}
			v->files++;
			if (st == 1)
				v->in_active++;
			set_add(&seen[st], de->d_name);
			snprintf(fp, sizeof(fp), "%s/%s", p, de->d_name);
			f = fopen(fp, "r");
			if (!f) {
				v->corrupt++;
				note(v, "cannot open", de->d_name, "");
				continue;
			}
			n = fread(rec, 1, sizeof(rec), f);
			fclose(f);
			j = job_from_json(rec, n, err, sizeof(err));
			if (!j || strcmp(j->id, de->d_name) != 0) {
				v->corrupt++;
				note(v, "corrupt record", de->d_name, j ? ": id mismatch" : ": does not parse");
			}
			job_free(j);
		}
		closedir(d);
	}
	/* duplicates */
	for (st = 0; st < 5; st++) {
		for (i = 0; i < seen[st].n; i++) {
			for (k = st + 1; k < 5; k++) {
				if (set_has(&seen[k], seen[st].v[i])) {
					if (st == 1 || k == 1)
						v->stale_dups++;
					else {
						v->duplicates++;
						note(v, "job in two states:", seen[st].v[i], "");
					}
				}
			}
		}
	}
	/* every reported job is somewhere, unless it was announced done */
	for (i = 0; i < enqueued.n; i++) {
		const char *id = enqueued.v[i];
		int found = 0;

		for (st = 0; st < 5 && !found; st++)
			found = set_has(&seen[st], id);
		if (!found && !set_has(&done, id)) {
			v->lost++;
			note(v, "LOST job", id, "");
		}
	}
	for (st = 0; st < 5; st++)
		free(seen[st].v);
}

static int count_tmp(void)
{
	char p[1024];
	struct dirent *de;
	DIR *d;
	int n = 0;

	snprintf(p, sizeof(p), "%s/tmp", dir);
	d = opendir(p);
	if (!d)
		return -1;
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

static void phase(int drain, unsigned seed)
{
	const char *name = drain == 2 ? "operator" : drain ? "drain" : "enqueue";
	int rounds = 0, killed = 0, reports = 0, odd = 0, bad_rounds = 0;
	int64_t start = mono_ms();
	long max_delay = drain ? 2 * MAX_DELAY_US : MAX_DELAY_US;
	struct verdict v;
	char first[300] = "";

	idle_rounds = 0;

	while (rounds < ROUNDS &&
	       (rounds < MIN_ROUNDS || mono_ms() - start < PHASE_BUDGET_S * 1000)) {
		int rc;

		if (drain == 1) {
			/* keep the drainer busy: the parent enqueues too */
			struct spool *s = NULL;
			char err[512];
			int i;

			if (spool_open(dir, &s, err, sizeof(err)) == 0) {
				for (i = 0; i < 3; i++) {
					struct job *j = job_new("test", "refill");

					if (j && spool_enqueue(s, j, err, sizeof(err)) == 0)
						set_add(&enqueued, j->id);
					job_free(j);
				}
				spool_close(s);
			}
		}
		rc = round_once(drain, &seed, &max_delay, &reports);
		rounds++;
		if (rc == 128 + SIGKILL)
			killed++;
		else if (rc != 0) {
			odd++;
			if (!first[0])
				snprintf(first, sizeof(first), "round %d: child exit %d", rounds, rc);
		}
		inspect(&v);
		/* operator moves rename: not even the active/ duplicate may appear */
		if (v.corrupt || v.foreign || v.lost || v.duplicates ||
		    (drain == 2 && v.stale_dups)) {
			bad_rounds++;
			if (!first[0])
				snprintf(first, sizeof(first), "round %d: %s", rounds, v.first);
		}
	}
	diag("%s: %d rounds in %lld ms, %d killed mid-work, %d reports, %zu enqueued, "
	     "%zu done so far", name, rounds, (long long)(mono_ms() - start), killed, reports,
	     enqueued.n, done.n);
	ok(killed > 0, "%s: at least one child was killed mid-work", name);
	ok(reports > 0, "%s: the children made progress", name);
	is_int(odd, 0, "%s: no child failed other than by the kill", name);
	is_int(bad_rounds, 0, "%s: after every kill, nothing lost, nothing corrupt, "
	       "no foreign file in a state directory, no duplicate beyond active/", name);
	if (first[0])
		diag("  first problem: %s", first);
}

int main(void)
{
	const char *tmp = getenv("TMPDIR");
	struct spool *s = NULL;
	struct verdict v;
	char err[512];
	unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
	int rc;

	snprintf(base, sizeof(base), "%s/test_spool_crash.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(base)) {
		base[0] = '\0';
		tap_skip_all("cannot create a temporary directory");
	}
	atexit(cleanup);
	snprintf(dir, sizeof(dir), "%s/spool", base);
	diag("seed %u", seed);
	/* The spool exists before the first child runs (as it does once slapd
	 * has started); a kill inside spool_open is not what is tested here. */
	if (spool_open(dir, &s, err, sizeof(err)) != 0) {
		diag("%s", err);
		ok(0, "create the spool");
		return tap_done();
	}
	spool_close(s);
	s = NULL;

	phase(0, seed);
	phase(1, seed + 1);
	/* the drainer is gone for good: settle active/ first, as its
	 * successor would, then let the operator loose */
	if (spool_open(dir, &s, err, sizeof(err)) == 0) {
		if (spool_lock(s) == 1)
			spool_recover(s);
		spool_close(s);
		s = NULL;
	}
	phase(2, seed + 2);

	/* the next drainer starts: recovery leaves every job in one place */
	ok(spool_open(dir, &s, err, sizeof(err)) == 0, "reopen after the crashes");
	if (!s)
		return tap_done();
	is_int(spool_lock(s), 1, "lock free after the last child died");
	rc = spool_recover(s);
	ok(rc >= 0, "recover (%d jobs back to queue/)", rc);
	inspect(&v);
	is_int(v.in_active, 0, "nothing left in active/");
	is_int(v.stale_dups + v.duplicates, 0, "no job in two states after recovery");
	is_int(v.lost, 0, "no job lost");
	is_int(v.corrupt, 0, "no corrupt record");
	is_int(v.foreign, 0, "no tmp/ leftover in a state directory");
	if (v.first[0])
		diag("  first problem: %s", v.first);
	ok(v.files > 0, "jobs remain to check (%d files)", v.files);
	diag("tmp/ leftovers (allowed): %d", count_tmp());
	spool_close(s);
	free(enqueued.v);
	free(done.v);
	return tap_done();
}
