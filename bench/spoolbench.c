/* spoolbench: what a durable spool_enqueue costs slapd's operation path.
 * Times N calls of the real spool_enqueue and, interleaved one by one with
 * them, hand-written variants of its write path, so that every figure of a
 * round sees the same disk and the same noise; prints p50/p99 per round and
 * the median over the rounds.
 *
 *   spoolbench [-n N] [-r ROUNDS] [DIR]     (DIR: where the scratch spool goes)
 */
#ifdef HAVE_CONFIG_H
#include "or_build.h"
#endif
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "job.h"
#include "log.h"
#include "spool.h"

/* The variants of the write path, each as durable as the design asks:
 * the file's data reaches the disk before the rename, the rename before
 * the function returns. */
enum variant {
	V_ENQUEUE,    /* spool_enqueue itself */
	V_FSYNC,      /* open O_EXCL, fchmod, write, fsync, close, rename, fsync(dir) */
	V_FDATASYNC,  /* the same with fdatasync for the file */
	V_NOSYNC,     /* no fsync at all: the floor, NOT durable, for scale only */
	NVARIANTS
};
static const char *const vname[NVARIANTS] = {
	"spool_enqueue", "raw fsync+fsync(dir)", "raw fdatasync+fsync(dir)",
	"raw no fsync (not durable)"
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array. */
static double pct(const double *v, size_t n, double p)
{
	size_t k = (size_t)(p / 100.0 * (double)n + 0.999999);

	if (k == 0)
		k = 1;
	return v[k > n ? n - 1 : k - 1];
}

/* Where the time of the fsync variant goes, step by step. */
enum phase { P_OPEN, P_WRITE, P_FSYNC, P_CLOSE, P_RENAME, P_DIRSYNC, NPHASES };
static const char *const pname[NPHASES] = {
	"openat O_EXCL", "fchmod+write", "fsync(file)", "close", "renameat", "fsync(dir)"
};
static double *phase_t[NPHASES];
static size_t phase_n;

static int raw_write(int tmpfd, int qfd, const char *name, const char *buf, size_t len,
                     enum variant v)
{
	double t[NPHASES + 1];
	int fd, p;

	t[0] = now();
	fd = openat(tmpfd, name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -1;
	t[1] = now();
	if (fchmod(fd, 0600) != 0 || write(fd, buf, len) != (ssize_t)len)
		goto fail;
	t[2] = now();
	if (v == V_FSYNC && fsync(fd) != 0)
		goto fail;
	if (v == V_FDATASYNC && fdatasync(fd) != 0)
		goto fail;
	t[3] = now();
	if (close(fd) != 0)
		return -1;
	t[4] = now();
	if (renameat(tmpfd, name, qfd, name) != 0)
		return -1;
	t[5] = now();
	if (v != V_NOSYNC && fsync(qfd) != 0)
		return -1;
	t[6] = now();
	if (v == V_FSYNC)
		for (p = 0; p < NPHASES; p++)
			phase_t[p][phase_n] = t[p + 1] - t[p];
	if (v == V_FSYNC)
		phase_n++;
	return 0;
fail:
	close(fd);
	return -1;
}

/* Empties DIR/sub between rounds, so that every round starts alike. */
static void empty_dir(const char *dir, const char *sub)
{
	char path[1100];
	struct dirent *e;
	DIR *d;

	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	d = opendir(path);
	if (!d)
		return;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			unlinkat(dirfd(d), e->d_name, 0);
	closedir(d);
}

static void rm_spool(const char *dir)
{
	static const char *const subs[] = { "tmp", "queue", "active", "deferred", "held", "failed" };
	char path[1100];
	size_t i;

	for (i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		empty_dir(dir, subs[i]);
		snprintf(path, sizeof(path), "%s/%s", dir, subs[i]);
		rmdir(path);
	}
	snprintf(path, sizeof(path), "%s/lock", dir);
	unlink(path);
	rmdir(dir);
}

int main(int argc, char **argv)
{
	const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	int n = 200, rounds = 5, opt, r, i, k, rc = 1, tmpfd = -1, qfd = -1;
	char dir[1024], path[1100], err[256], name[64];
	double *t[NVARIANTS] = { NULL }, *p50[NVARIANTS] = { NULL }, *p99[NVARIANTS] = { NULL };
	struct spool *s = NULL;
	struct job *j = NULL;
	char *rec = NULL;
	size_t reclen;

	while ((opt = getopt(argc, argv, "n:r:")) != -1) {
		switch (opt) {
		case 'n': n = atoi(optarg); break;
		case 'r': rounds = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: spoolbench [-n N] [-r ROUNDS] [DIR]\n");
			return 2;
		}
	}
	if (optind < argc)
		base = argv[optind];
	if (n < 1 || rounds < 1 || n > 1000000 || rounds > 1000) {
		fprintf(stderr, "spoolbench: N (1..1000000) and ROUNDS (1..1000) please\n");
		return 2;
	}
	if (strlen(base) > 900) {
		fprintf(stderr, "spoolbench: directory name too long\n");
		return 2;
	}
	log_setup(LOG_MODE_STDERR, "spoolbench", LOG_USER, LOG_WARNING, NULL);
	snprintf(dir, sizeof(dir), "%s/spoolbench.XXXXXX", base);
	if (!mkdtemp(dir)) {
		fprintf(stderr, "spoolbench: mkdtemp %s: %s\n", dir, strerror(errno));
		return 1;
	}
	/* spool_open wants the spool itself not group/world-writable */
	snprintf(path, sizeof(path), "%s", dir);
	if (spool_open(path, &s, err, sizeof(err)) != 0) {
		fprintf(stderr, "spoolbench: %s\n", err);
		goto out;
	}
	snprintf(path, sizeof(path), "%s/tmp", dir);
	tmpfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	snprintf(path, sizeof(path), "%s/queue", dir);
	qfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (tmpfd < 0 || qfd < 0) {
		fprintf(stderr, "spoolbench: cannot open the spool's directories\n");
		goto out;
	}
	/* A job like the plugin's: a DN, a uid, an address. */
	j = job_new("slapi", "disabled");
	if (!j || job_set(&j->dn, "uid=u000001,ou=people,dc=example,dc=com") != 0 ||
	    job_set(&j->uid, "u000001") != 0 ||
	    job_set(&j->entry_uuid, "3f0c2a3e-8d7b-103f-9a4e-0b1c2d3e4f50") != 0 ||
	    job_add_email(j, "u000001@example.com") != 0)
		goto out;
	rec = job_to_json(j);
	if (!rec)
		goto out;
	reclen = strlen(rec);
	for (k = 0; k < NVARIANTS; k++) {
		t[k] = calloc((size_t)n, sizeof(double));
		p50[k] = calloc((size_t)rounds, sizeof(double));
		p99[k] = calloc((size_t)rounds, sizeof(double));
		if (!t[k] || !p50[k] || !p99[k])
			goto out;
	}
	for (k = 0; k < NPHASES; k++)
		if (!(phase_t[k] = calloc((size_t)n * (size_t)rounds, sizeof(double))))
			goto out;

	printf("spoolbench: %d enqueues per variant per round, %d rounds, in %s\n", n, rounds, dir);
	for (r = 0; r < rounds; r++) {
		for (i = 0; i < n; i++) {
			/* rotate the order, so that no variant always follows another */
			for (k = 0; k < NVARIANTS; k++) {
				enum variant v = (enum variant)((i + k) % NVARIANTS);
				double t0 = now();

				if (v == V_ENQUEUE) {
					j->id[0] = '\0';
					j->created = 0;
					if (spool_enqueue(s, j, err, sizeof(err)) != 0) {
						fprintf(stderr, "spoolbench: %s\n", err);
						goto out;
					}
				} else {
					snprintf(name, sizeof(name), "raw-%d-%d-%d", r, i, (int)v);
					if (raw_write(tmpfd, qfd, name, rec, reclen, v) != 0) {
						fprintf(stderr, "spoolbench: %s: %s\n", vname[v], strerror(errno));
						goto out;
					}
				}
				t[v][i] = now() - t0;
			}
		}
		printf("round %d:", r + 1);
		for (k = 0; k < NVARIANTS; k++) {
			qsort(t[k], (size_t)n, sizeof(double), cmp_double);
			p50[k][r] = pct(t[k], (size_t)n, 50);
			p99[k][r] = pct(t[k], (size_t)n, 99);
			printf("  %s p50 %.3f p99 %.3f ms;", vname[k], p50[k][r] * 1e3, p99[k][r] * 1e3);
		}
		printf("\n");
		empty_dir(dir, "queue");
	}
	printf("median over %d rounds (ms):\n", rounds);
	for (k = 0; k < NVARIANTS; k++) {
		qsort(p50[k], (size_t)rounds, sizeof(double), cmp_double);
		qsort(p99[k], (size_t)rounds, sizeof(double), cmp_double);
	}
	for (k = 0; k < NVARIANTS; k++) {
		double m50, m99;

		m50 = p50[k][rounds / 2];
		m99 = p99[k][rounds / 2];
		printf("  %-28s p50 %8.3f  p99 %8.3f  (p50 ratio to raw fsync %.2f)\n", vname[k],
		       m50 * 1e3, m99 * 1e3, m50 / p50[V_FSYNC][rounds / 2]);
	}
	printf("raw fsync variant, step by step over all rounds (ms):\n");
	for (k = 0; k < NPHASES; k++) {
		qsort(phase_t[k], phase_n, sizeof(double), cmp_double);
		printf("  %-28s p50 %8.3f  p99 %8.3f\n", pname[k], pct(phase_t[k], phase_n, 50) * 1e3,
		       pct(phase_t[k], phase_n, 99) * 1e3);
	}
	rc = 0;
out:
	for (k = 0; k < NPHASES; k++)
		free(phase_t[k]);
	for (k = 0; k < NVARIANTS; k++) {
		free(t[k]);
		free(p50[k]);
		free(p99[k]);
	}
	free(rec);
	job_free(j);
	if (tmpfd >= 0)
		close(tmpfd);
	if (qfd >= 0)
		close(qfd);
	spool_close(s);
	rm_spool(dir);
	log_teardown();
	return rc;
}
