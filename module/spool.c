/* spool: the maildir-style job queue of DESIGN.md section 7.  Every change of
 * state is a rename between sibling directories of one file system, and every
 * write goes tmp/ -> fsync -> rename -> fsync(dir), so a crash at any instant
 * leaves each job in at least one state directory, whole.
 *
 * Decisions kept here:
 * - Only names of the form <ns>-<pid>-<counter> are jobs.  Dot files (editor
 *   leftovers) are ignored everywhere; any other name found in queue/ is
 *   moved to failed/ with an error line (a person put it there, a person
 *   should look at it); in the other directories it is ignored.
 * - spool_put writes the new record into its target before removing active/
 *   NAME, so a crash in between leaves the job in active/ and its target
 *   (the one documented duplicate).  spool_recover resolves it: a name in
 *   active/ that also exists in another state is the stale copy and is
 *   removed; the others go back to queue/.
 * - A deferred file's mtime is its next_attempt, so promotion and
 *   spool_next_due need only fstatat; the record is read to confirm before a
 *   job is promoted.
 * - A record whose id differs from its file name is unreadable (the event id
 *   names the job in every log line).
 * - The operator views (spool_list, spool_find) show an unreadable record as
 *   a placeholder job: its id, created from the name, last_error saying why,
 *   so that `queue list/show/drop` can still see and remove it.
 * - Run as root on a spool owned by someone else (slapd's user), everything
 *   the spool creates is given to that owner, or the worker could not read
 *   what the command line queued. */
#ifdef HAVE_CONFIG_H
#include "or_build.h"
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "spool.h"

#define NSTATES 5
/* tmp/ files older than this are leftovers of a crash (the unit test
 * shortens it to see one go). */
#ifndef SPOOL_STALE_TMP_SECONDS
#define SPOOL_STALE_TMP_SECONDS 3600
#endif
/* The claim batch holds at most this many names (the oldest ones); a longer
 * queue is read again when the batch is used up.  (The unit test shrinks it
 * to exercise the cut.) */
#ifndef SPOOL_BATCH_MAX
#define SPOOL_BATCH_MAX 65536
#endif
/* Another process (an operator's retry) may add to queue/ while a batch is in
 * hand: re-read at least this often. */
#define BATCH_MAX_AGE_S 2

static const char *const state_dirs[NSTATES] = {
	"queue", "active", "deferred", "held", "failed"
};

struct spool {
	char *dir;
	int dirfd;
	int tmpfd;
	int fd[NSTATES];
	int lockfd;
	int chown_to;        /* root on a foreign spool: give what we create away */
	uid_t uid;
	gid_t gid;

	pthread_mutex_t mu;  /* the claim batch and the lock fd */
	char (*batch)[JOB_ID_MAX];
	size_t batch_len, batch_pos;
	int batch_stale;
	int64_t batch_time;  /* when the batch was read (seconds) */
};

static uint64_t name_counter;

const char *spool_state_name(enum spool_state s)
{
	if ((int)s < 0 || (int)s >= NSTATES)
		return "unknown";
	return state_dirs[s];
}

int spool_state_from_name(const char *name)
{
	int i;

	if (!name)
		return -1;
	for (i = 0; i < NSTATES; i++) {
		if (strcmp(name, state_dirs[i]) == 0)
			return i;
	}
	return -1;
}

const char *spool_dir(const struct spool *s)
{
	return s ? s->dir : NULL;
}

__attribute__((format(printf, 3, 4)))
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t now_s(void)
{
	return (int64_t)time(NULL);
}

static int valid_state(int st)
{
	return st >= 0 && st < NSTATES;
}

/* ---- opening ----------------------------------------------------------- */

/* Open (creating if missing) one directory of the spool relative to AT and
 * check it is ours to trust: a real directory, not a symlink, not writable
 * by group or others.  A directory we create is chmod'ed to 0700 so that its
 * mode does not depend on the umask. */
static int open_dir(struct spool *s, int at, const char *name, const char *shown,
                    char *err, size_t errlen)
{
	struct stat st;
	int fd, created = 0;

	if (mkdirat(at, name, 0700) == 0)
		created = 1;
	else if (errno != EEXIST) {
		seterr(err, errlen, "spool: cannot create %s: %s", shown, strerror(errno));
		return -1;
	}
	fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;

		if (e == ELOOP || (e == ENOTDIR && fstatat(at, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		                   S_ISLNK(st.st_mode)))
			seterr(err, errlen, "spool: %s is a symbolic link; use the real directory", shown);
		else if (e == ENOTDIR)
			seterr(err, errlen, "spool: %s is not a directory", shown);
		else
			seterr(err, errlen, "spool: cannot open %s: %s", shown, strerror(e));
		return -1;
	}
	if (fstat(fd, &st) != 0) {
		seterr(err, errlen, "spool: cannot stat %s: %s", shown, strerror(errno));
		goto fail;
	}
	if (!S_ISDIR(st.st_mode)) {
		seterr(err, errlen, "spool: %s is not a directory", shown);
		goto fail;
	}
	if (created && fchmod(fd, 0700) != 0) {
		seterr(err, errlen, "spool: cannot chmod %s: %s", shown, strerror(errno));
		goto fail;
	}
	if (created && s->chown_to && fchown(fd, s->uid, s->gid) != 0) {
		seterr(err, errlen, "spool: cannot chown %s: %s", shown, strerror(errno));
		goto fail;
	}
	if (!created && (st.st_mode & (S_IWGRP | S_IWOTH))) {
		seterr(err, errlen, "spool: %s is writable by %s (mode %04o); "
		       "it must be 0700 (chmod go-w)", shown,
		       (st.st_mode & S_IWOTH) ? "everyone" : "its group",
		       (unsigned)(st.st_mode & 07777));
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return -1;
}

int spool_open(const char *dir, struct spool **out, char *err, size_t errlen)
{
	struct spool *s = NULL;
	struct stat st;
	char shown[4096];
	int i;

	if (out)
		*out = NULL;
	if (!dir || !*dir || !out) {
		seterr(err, errlen, "spool: no spool directory given");
		return -1;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		seterr(err, errlen, "spool: out of memory");
		return -1;
	}
	s->dirfd = s->tmpfd = s->lockfd = -1;
	for (i = 0; i < NSTATES; i++)
		s->fd[i] = -1;
	if (pthread_mutex_init(&s->mu, NULL) != 0) {
		free(s);
		seterr(err, errlen, "spool: cannot create a mutex");
		return -1;
	}
	s->dir = strdup(dir);
	if (!s->dir) {
		seterr(err, errlen, "spool: out of memory");
		goto fail;
	}
	s->dirfd = open_dir(s, AT_FDCWD, dir, dir, err, errlen);
	if (s->dirfd < 0)
		goto fail;
	if (geteuid() == 0 && fstat(s->dirfd, &st) == 0 && st.st_uid != 0) {
		s->chown_to = 1;
		s->uid = st.st_uid;
		s->gid = st.st_gid;
	}
	snprintf(shown, sizeof(shown), "%s/tmp", dir);
	s->tmpfd = open_dir(s, s->dirfd, "tmp", shown, err, errlen);
	if (s->tmpfd < 0)
		goto fail;
	for (i = 0; i < NSTATES; i++) {
		snprintf(shown, sizeof(shown), "%s/%s", dir, state_dirs[i]);
		s->fd[i] = open_dir(s, s->dirfd, state_dirs[i], shown, err, errlen);
		if (s->fd[i] < 0)
			goto fail;
	}
	/* New subdirectories must survive a crash before jobs go into them. */
	if (fsync(s->dirfd) != 0) {
		seterr(err, errlen, "spool: cannot fsync %s: %s", dir, strerror(errno));
		goto fail;
	}
	s->batch_stale = 1;
	*out = s;
	return 0;
fail:
	spool_close(s);
	return -1;
}

void spool_close(struct spool *s)
{
	int i;

	if (!s)
		return;
	spool_unlock(s);
	for (i = 0; i < NSTATES; i++) {
		if (s->fd[i] >= 0)
			close(s->fd[i]);
	}
	if (s->tmpfd >= 0)
		close(s->tmpfd);
	if (s->dirfd >= 0)
		close(s->dirfd);
	pthread_mutex_destroy(&s->mu);
	free(s->batch);
	free(s->dir);
	free(s);
}

/* ---- low-level file work ---------------------------------------------- */

static int write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Write BUF into tmp/TMPNAME durably; with mtime >= 0 the file's mtime is set
 * to it (deferred jobs).  excl: the name must be new (enqueue).  On failure
 * the tmp file is gone and errno/err say why. */
static int write_tmp(struct spool *s, const char *tmpname, const char *buf, size_t len,
                     int64_t mtime, int excl, char *err, size_t errlen)
{
	int fd, flags = O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW;
	int e;

	if (excl)
		flags |= O_EXCL;
	else {
		flags |= O_TRUNC;
		/* A leftover from a crashed earlier attempt: start afresh. */
		if (unlinkat(s->tmpfd, tmpname, 0) != 0 && errno != ENOENT) {
			seterr(err, errlen, "spool: cannot remove %s/tmp/%s: %s", s->dir, tmpname,
			       strerror(errno));
			return -1;
		}
	}
	fd = openat(s->tmpfd, tmpname, flags, 0600);
	if (fd < 0) {
		e = errno;
		seterr(err, errlen, "spool: cannot create %s/tmp/%s: %s", s->dir, tmpname,
		       strerror(e));
		errno = e;
		return -1;
	}
	/* The umask may have taken bits away; it cannot have added any, but a
	 * fixed mode keeps what an operator sees predictable. */
	if (fchmod(fd, 0600) != 0 || (s->chown_to && fchown(fd, s->uid, s->gid) != 0) ||
	    write_all(fd, buf, len) != 0) {
		e = errno;
		seterr(err, errlen, "spool: cannot write %s/tmp/%s: %s", s->dir, tmpname,
		       strerror(e));
		goto fail;
	}
	if (mtime >= 0) {
		struct timespec ts[2];

		ts[0].tv_sec = 0;
		ts[0].tv_nsec = UTIME_OMIT;
		ts[1].tv_sec = (time_t)mtime;
		ts[1].tv_nsec = 0;
		if (futimens(fd, ts) != 0) {
			e = errno;
			seterr(err, errlen, "spool: cannot set the time of %s/tmp/%s: %s", s->dir,
			       tmpname, strerror(e));
			goto fail;
		}
	}
	if (fsync(fd) != 0) {
		e = errno;
		seterr(err, errlen, "spool: cannot fsync %s/tmp/%s: %s", s->dir, tmpname,
		       strerror(e));
		goto fail;
	}
	if (close(fd) != 0) {
		fd = -1;
		e = errno;
		seterr(err, errlen, "spool: cannot close %s/tmp/%s: %s", s->dir, tmpname,
		       strerror(e));
		goto fail;
	}
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	unlinkat(s->tmpfd, tmpname, 0);
	errno = e;
	return -1;
}

/* Text from outside (a file name, a parser message quoting the record) made
 * safe for one log line: control and non-ASCII bytes become \xNN, and for
 * names (strict) quotes and backslashes too. */
static const char *printable(const char *in, char *out, size_t outlen, int strict)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	for (; *in && o + 5 < outlen; in++) {
		unsigned char c = (unsigned char)*in;

		if (c < 0x20 || c >= 0x7f || (strict && (c == '"' || c == '\\'))) {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		} else
			out[o++] = (char)c;
	}
	out[o] = '\0';
	return out;
}

/* Read a whole record, refusing anything that is not a small regular file. */
static int read_file(int dirfd, const char *name, char **out, size_t *outlen,
                     char *err, size_t errlen)
{
	struct stat st;
	char *buf = NULL;
	size_t len = 0;
	int fd, rc = -1;

	*out = NULL;
	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0) {
		seterr(err, errlen, "cannot open: %s", strerror(errno));
		return errno == ENOENT ? -2 : -1;
	}
	if (fstat(fd, &st) != 0) {
		seterr(err, errlen, "cannot stat: %s", strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		seterr(err, errlen, "not a regular file");
		goto out;
	}
	if (st.st_size > (off_t)JOB_MAX_RECORD) {
		seterr(err, errlen, "record is %jd bytes, more than the %u allowed",
		       (intmax_t)st.st_size, JOB_MAX_RECORD);
		goto out;
	}
	buf = malloc(JOB_MAX_RECORD + 1);
	if (!buf) {
		seterr(err, errlen, "out of memory");
		goto out;
	}
	/* The size may change under us: read to EOF, bounded. */
	for (;;) {
		ssize_t n = read(fd, buf + len, JOB_MAX_RECORD + 1 - len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			seterr(err, errlen, "cannot read: %s", strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > JOB_MAX_RECORD) {
			seterr(err, errlen, "record is more than %u bytes", JOB_MAX_RECORD);
			goto out;
		}
	}
	buf[len] = '\0';
	*out = buf;
	*outlen = len;
	buf = NULL;
	rc = 0;
out:
	free(buf);
	close(fd);
	return rc;
}

/* Read and parse the job NAME in DIRFD.  0 ok, -2 no such file, -1 with err
 * when the record is unreadable or malformed. */
static int load_job(int dirfd, const char *name, struct job **out, char *err, size_t errlen)
{
	char *buf = NULL;
	size_t len = 0;
	struct job *j;
	int rc;

	*out = NULL;
	rc = read_file(dirfd, name, &buf, &len, err, errlen);
	if (rc != 0)
		return rc;
	j = job_from_json(buf, len, err, errlen);
	free(buf);
	if (!j) {
		/* jansson quotes the text near a syntax error: keep it one line */
		char clean[512];

		if (err && errlen) {
			printable(err, clean, sizeof(clean), 0);
			seterr(err, errlen, "%s", clean);
		}
		return -1;
	}
	if (strcmp(j->id, name) != 0) {
		seterr(err, errlen, "record id \"%s\" does not match the file name", j->id);
		job_free(j);
		return -1;
	}
	*out = j;
	return 0;
}

/* For the operator views: an unreadable record as a job that says so. */
static struct job *placeholder(const char *name, const char *why)
{
	struct job *j = calloc(1, sizeof(*j));
	char msg[600];
	uint64_t ns = 0;

	if (!j)
		return NULL;
	memcpy(j->id, name, strlen(name) + 1); /* a valid id: shorter than JOB_ID_MAX */
	if (job_id_parse(name, &ns, NULL, NULL) == 0 && ns <= INT64_MAX)
		j->created = (int64_t)ns;
	snprintf(msg, sizeof(msg), "unreadable record: %s", why);
	if (job_set(&j->last_error, msg) != 0) {
		job_free(j);
		return NULL;
	}
	return j;
}

/* rename that never replaces an existing file (a job found in two places is
 * resolved by the caller, not overwritten blindly).  Falls back to plain
 * renameat where the file system lacks RENAME_NOREPLACE. */
static int move_noreplace(int fromfd, int tofd, const char *name)
{
#ifdef RENAME_NOREPLACE
	if (renameat2(fromfd, name, tofd, name, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
#endif
	if (faccessat(tofd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
		errno = EEXIST;
		return -1;
	}
	return renameat(fromfd, name, tofd, name);
}

/* Is this directory entry a job name?  Dot files are silently not. */
static int is_job_name(const char *name)
{
	return name[0] != '.' && job_id_valid(name);
}

/* A fresh directory stream for fd: openat(".") gives an independent file
 * offset, so concurrent listings of one directory do not disturb each other. */
static DIR *open_stream(int fd)
{
	int nfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d;

	if (nfd < 0)
		return NULL;
	d = fdopendir(nfd);
	if (!d)
		close(nfd);
	return d;
}

static int cmp_names(const void *a, const void *b)
{
	return job_id_cmp((const char *)a, (const char *)b);
}

/* Every job name in one state directory, sorted oldest first (at most
 * `max`, the oldest).  Returns the count or -1. */
static long list_names(struct spool *s, int st, size_t max, char (**out)[JOB_ID_MAX])
{
	char (*names)[JOB_ID_MAX] = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d;

	*out = NULL;
	d = open_stream(s->fd[st]);
	if (!d)
		return -1;
	while ((errno = 0, de = readdir(d)) != NULL) {
		if (!is_job_name(de->d_name))
			continue;
		if (n == cap) {
			/* Keep only the oldest `max`: sort and cut when twice that
			 * many have piled up, so the work stays n log n. */
			if (cap >= 2 * max) {
				qsort(names, n, sizeof(*names), cmp_names);
				n = max;
			} else {
				size_t ncap = cap ? cap * 2 : 64;
				void *g;

				if (ncap > 2 * max)
					ncap = 2 * max;
				g = realloc(names, ncap * sizeof(*names));
				if (!g) {
					free(names);
					closedir(d);
					errno = ENOMEM;
					return -1;
				}
				names = g;
				cap = ncap;
			}
		}
		memcpy(names[n++], de->d_name, strlen(de->d_name) + 1);
	}
	if (errno != 0) {
		int e = errno;

		free(names);
		closedir(d);
		errno = e;
		return -1;
	}
	closedir(d);
	if (n > 0)
		qsort(names, n, sizeof(*names), cmp_names);
	if (n > max)
		n = max;
	*out = names;
	return (long)n;
}

/* Foreign names in queue/ are moved to failed/ for a person to look at:
 * skipping them silently could hide a job someone meant to run. */
static void quarantine_foreign(struct spool *s)
{
	struct dirent *de;
	DIR *d = open_stream(s->fd[SPOOL_QUEUE]);

	if (!d)
		return;
	while ((de = readdir(d)) != NULL) {
		char shown[4 * 256 + 1];

		if (de->d_name[0] == '.' || job_id_valid(de->d_name))
			continue;
		printable(de->d_name, shown, sizeof(shown), 1);
		if (move_noreplace(s->fd[SPOOL_QUEUE], s->fd[SPOOL_FAILED], de->d_name) == 0)
			log_msg(LOG_ERR, "spool: moved %s/queue/%s to failed/: "
			        "not a job file name (<ns>-<pid>-<counter>)", s->dir, shown);
		else
			log_msg(LOG_ERR, "spool: cannot move %s/queue/%s to failed/: %s",
			        s->dir, shown, strerror(errno));
	}
	closedir(d);
}

/* ---- enqueue ------------------------------------------------------------ */

static void make_name(char *buf, size_t len)
{
	uint64_t ctr = __atomic_add_fetch(&name_counter, 1, __ATOMIC_RELAXED);

	snprintf(buf, len, "%" PRId64 "-%ld-%" PRIu64, now_ns(), (long)getpid(), ctr);
}

int spool_enqueue(struct spool *s, struct job *j, char *err, size_t errlen)
{
	char name[JOB_ID_MAX], *json = NULL;
	int64_t now = now_s(), mtime = -1;
	enum spool_state st = SPOOL_QUEUE;
	int tries, rc = -1, written = 0;
	size_t len;

	if (!s || !j) {
		seterr(err, errlen, "spool: no spool or no job");
		return -1;
	}
	if (j->next_attempt > now) {
		st = SPOOL_DEFERRED;
		mtime = j->next_attempt;
	}
	/* Unique by construction; O_EXCL catches the impossible, so retry a
	 * few times with a new counter rather than fail. */
	for (tries = 0; tries < 5 && !written; tries++) {
		make_name(name, sizeof(name));
		memcpy(j->id, name, sizeof(name));
		if (j->created == 0)
			j->created = now_ns();
		free(json);
		json = job_to_json(j);
		if (!json) {
			seterr(err, errlen, "spool: cannot serialise the job "
			       "(a field is not valid UTF-8, or out of memory)");
			goto out;
		}
		len = strlen(json);
		if (len + 1 > JOB_MAX_RECORD) {
			seterr(err, errlen, "spool: job record is %zu bytes, more than %u",
			       len + 1, JOB_MAX_RECORD);
			goto out;
		}
		json[len] = '\n'; /* the NUL becomes a newline: friendlier to cat */
		if (write_tmp(s, name, json, len + 1, mtime, 1, err, errlen) == 0)
			written = 1;
		else if (errno != EEXIST)
			goto out;
		json[len] = '\0';
	}
	if (!written)
		goto out;
	if (renameat(s->tmpfd, name, s->fd[st], name) != 0) {
		seterr(err, errlen, "spool: cannot rename %s/tmp/%s into %s/: %s", s->dir, name,
		       state_dirs[st], strerror(errno));
		unlinkat(s->tmpfd, name, 0);
		goto out;
	}
	if (fsync(s->fd[st]) != 0) {
		/* The file is in place but maybe not durable; a caller that retries
		 * makes a duplicate, which is harmless. */
		seterr(err, errlen, "spool: cannot fsync %s/%s: %s", s->dir, state_dirs[st],
		       strerror(errno));
		goto out;
	}
	rc = 0;
out:
	free(json);
	if (rc != 0)
		j->id[0] = '\0';
	return rc;
}

/* ---- the drainer lock --------------------------------------------------- */

int spool_lock(struct spool *s)
{
	struct stat st;
	int fd, rc = -1;

	if (!s)
		return -1;
	pthread_mutex_lock(&s->mu);
	if (s->lockfd >= 0) {
		rc = 1;
		goto out;
	}
	fd = openat(s->dirfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		log_msg(LOG_ERR, "spool: cannot open %s/lock: %s", s->dir, strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid()) {
		if ((st.st_mode & 07777) != 0600)
			(void)fchmod(fd, 0600);
		if (s->chown_to && fchown(fd, s->uid, s->gid) != 0)
			log_msg(LOG_WARNING, "spool: cannot chown %s/lock: %s", s->dir,
			        strerror(errno));
	}
	for (;;) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno == EWOULDBLOCK) {
			close(fd);
			rc = 0;
			goto out;
		}
		log_msg(LOG_ERR, "spool: cannot lock %s/lock: %s", s->dir, strerror(errno));
		close(fd);
		goto out;
	}
	s->lockfd = fd;
	/* Whatever this handle read before may be stale now. */
	s->batch_stale = 1;
	rc = 1;
out:
	pthread_mutex_unlock(&s->mu);
	return rc;
}

void spool_unlock(struct spool *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	if (s->lockfd >= 0) {
		close(s->lockfd); /* releases the flock */
		s->lockfd = -1;
	}
	pthread_mutex_unlock(&s->mu);
}

static int locked(struct spool *s, const char *what)
{
	int fd;

	pthread_mutex_lock(&s->mu);
	fd = s->lockfd;
	pthread_mutex_unlock(&s->mu);
	if (fd < 0)
		log_msg(LOG_ERR, "spool: %s without the spool lock refused (%s)", what, s->dir);
	return fd >= 0;
}

/* ---- recovery and promotion ----------------------------------------- */

static void mark_stale(struct spool *s)
{
	pthread_mutex_lock(&s->mu);
	s->batch_stale = 1;
	pthread_mutex_unlock(&s->mu);
}

static int exists_in(struct spool *s, int st, const char *name)
{
	return faccessat(s->fd[st], name, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
}

static void clean_tmp(struct spool *s)
{
	struct dirent *de;
	struct stat st;
	int64_t now = now_s();
	DIR *d = open_stream(s->tmpfd);

	if (!d)
		return;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		/* ctime, not mtime: a deferred record's mtime is in the future. */
		if (fstatat(s->tmpfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
		    !S_ISREG(st.st_mode) || now - (int64_t)st.st_ctime < SPOOL_STALE_TMP_SECONDS)
			continue;
		if (unlinkat(s->tmpfd, de->d_name, 0) == 0)
			log_msg(LOG_NOTICE, "spool: removed stale %s/tmp/%s", s->dir, de->d_name);
	}
	closedir(d);
}

int spool_recover(struct spool *s)
{
	char (*names)[JOB_ID_MAX] = NULL;
	long n, i;
	int moved = 0, st;

	if (!s)
		return -1;
	/* Without the lock, active/ may hold another worker's job in hand. */
	if (!locked(s, "recover"))
		return -1;
	clean_tmp(s);
	n = list_names(s, SPOOL_ACTIVE, (size_t)-1 / (2 * JOB_ID_MAX), &names);
	if (n < 0) {
		log_msg(LOG_ERR, "spool: cannot read %s/active: %s", s->dir, strerror(errno));
		return -1;
	}
	for (i = 0; i < n; i++) {
		int elsewhere = -1;

		for (st = 0; st < NSTATES; st++) {
			if (st != SPOOL_ACTIVE && exists_in(s, st, names[i])) {
				elsewhere = st;
				break;
			}
		}
		if (elsewhere >= 0) {
			/* spool_put finished writing the new state before the crash:
			 * the copy in active/ is the old one. */
			if (unlinkat(s->fd[SPOOL_ACTIVE], names[i], 0) == 0)
				log_msg(LOG_NOTICE, "event=%s spool: removed stale active/ copy "
				        "(the job is in %s/)", names[i], state_dirs[elsewhere]);
			continue;
		}
		if (move_noreplace(s->fd[SPOOL_ACTIVE], s->fd[SPOOL_QUEUE], names[i]) == 0) {
			moved++;
			log_msg(LOG_NOTICE, "event=%s spool: returned from active/ to queue/",
			        names[i]);
		} else if (errno != ENOENT) {
			log_msg(LOG_ERR, "event=%s spool: cannot move active/ to queue/: %s",
			        names[i], strerror(errno));
		}
	}
	free(names);
	if (n > 0 && (fsync(s->fd[SPOOL_QUEUE]) != 0 || fsync(s->fd[SPOOL_ACTIVE]) != 0)) {
		log_msg(LOG_ERR, "spool: cannot fsync %s: %s", s->dir, strerror(errno));
		return -1;
	}
	if (moved)
		mark_stale(s);
	return moved;
}

int spool_promote_due(struct spool *s, int64_t now)
{
	struct dirent *de;
	struct stat st;
	int moved = 0;
	DIR *d;

	if (!s)
		return -1;
	d = open_stream(s->fd[SPOOL_DEFERRED]);
	if (!d) {
		log_msg(LOG_ERR, "spool: cannot read %s/deferred: %s", s->dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		struct job *j = NULL;
		char err[256];
		int rc;

		if (!is_job_name(de->d_name))
			continue;
		if (fstatat(s->fd[SPOOL_DEFERRED], de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
		    (int64_t)st.st_mtime > now)
			continue;
		/* The mtime says due; the record has the last word (someone may
		 * have touched the file).  An unreadable record goes on to queue/,
		 * where claim moves it to failed/ with a log line. */
		rc = load_job(s->fd[SPOOL_DEFERRED], de->d_name, &j, err, sizeof(err));
		if (rc == -2)
			continue;
		if (rc == 0 && j->next_attempt > now) {
			job_free(j);
			continue;
		}
		job_free(j);
		if (move_noreplace(s->fd[SPOOL_DEFERRED], s->fd[SPOOL_QUEUE], de->d_name) == 0)
			moved++;
		else if (errno != ENOENT)
			log_msg(LOG_ERR, "event=%s spool: cannot move deferred/ to queue/: %s",
			        de->d_name, strerror(errno));
	}
	closedir(d);
	if (moved) {
		if (fsync(s->fd[SPOOL_QUEUE]) != 0)
			log_msg(LOG_ERR, "spool: cannot fsync %s/queue: %s", s->dir, strerror(errno));
		mark_stale(s);
	}
	return moved;
}

int64_t spool_next_due(struct spool *s)
{
	struct dirent *de;
	struct stat st;
	int64_t best = 0;
	int found = 0;
	DIR *d;

	if (!s)
		return 0;
	d = open_stream(s->fd[SPOOL_DEFERRED]);
	if (!d)
		return 0;
	while ((de = readdir(d)) != NULL) {
		if (!is_job_name(de->d_name) ||
		    fstatat(s->fd[SPOOL_DEFERRED], de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
			continue;
		if (!found || (int64_t)st.st_mtime < best)
			best = (int64_t)st.st_mtime;
		found = 1;
	}
	closedir(d);
	/* 0 means "none", so a job deferred to "now" (next_attempt 0) reports
	 * the smallest real time instead: it is due. */
	if (found && best <= 0)
		best = 1;
	return best;
}

/* ---- claim, done, put --------------------------------------------------- */

/* The next name from the batch, refilling it from one readdir when used up.
 * 1 with a name, 0 queue empty, -1 error.  Caller holds s->mu. */
static int next_name(struct spool *s, char *name)
{
	int64_t now = now_s();

	if (s->batch_stale || s->batch_pos >= s->batch_len ||
	    now - s->batch_time >= BATCH_MAX_AGE_S || now < s->batch_time) {
		char (*names)[JOB_ID_MAX] = NULL;
		long n;

		quarantine_foreign(s);
		n = list_names(s, SPOOL_QUEUE, SPOOL_BATCH_MAX, &names);
		if (n < 0) {
			log_msg(LOG_ERR, "spool: cannot read %s/queue: %s", s->dir, strerror(errno));
			return -1;
		}
		free(s->batch);
		s->batch = names;
		s->batch_len = (size_t)n;
		s->batch_pos = 0;
		s->batch_stale = 0;
		s->batch_time = now;
		if (n == 0)
			return 0;
	}
	memcpy(name, s->batch[s->batch_pos++], JOB_ID_MAX);
	return 1;
}

int spool_claim(struct spool *s, struct job **out)
{
	char name[JOB_ID_MAX], err[512];
	struct job *j;
	int rc;

	if (!s || !out)
		return -1;
	*out = NULL;
	/* Two drainers would each take jobs the other then "recovers". */
	if (!locked(s, "claim"))
		return -1;
	pthread_mutex_lock(&s->mu);
	for (;;) {
		rc = next_name(s, name);
		if (rc <= 0)
			break;
		if (renameat(s->fd[SPOOL_QUEUE], name, s->fd[SPOOL_ACTIVE], name) != 0) {
			if (errno == ENOENT)
				continue; /* dropped or moved by an operator meanwhile */
			log_msg(LOG_ERR, "event=%s spool: cannot move queue/ to active/: %s",
			        name, strerror(errno));
			rc = -1;
			break;
		}
		rc = load_job(s->fd[SPOOL_ACTIVE], name, &j, err, sizeof(err));
		if (rc == 0) {
			*out = j;
			rc = 1;
			break;
		}
		if (rc == -2)
			continue;
		if (move_noreplace(s->fd[SPOOL_ACTIVE], s->fd[SPOOL_FAILED], name) == 0 ||
		    (errno == EEXIST &&
		     renameat(s->fd[SPOOL_ACTIVE], name, s->fd[SPOOL_FAILED], name) == 0)) {
			log_msg(LOG_ERR, "event=%s spool: unreadable job %s/queue/%s moved to "
			        "failed/: %s", name, s->dir, name, err);
			(void)fsync(s->fd[SPOOL_FAILED]);
		} else {
			log_msg(LOG_ERR, "event=%s spool: unreadable job %s/active/%s (%s) "
			        "cannot be moved to failed/: %s", name, s->dir, name, err,
			        strerror(errno));
			rc = -1;
			break;
		}
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

int spool_done(struct spool *s, const struct job *j)
{
	if (!s || !j || !job_id_valid(j->id))
		return -1;
	if (unlinkat(s->fd[SPOOL_ACTIVE], j->id, 0) != 0 && errno != ENOENT) {
		log_msg(LOG_ERR, "event=%s spool: cannot remove active/%s: %s", j->id, j->id,
		        strerror(errno));
		return -1;
	}
	/* Not needed for safety (a replay is harmless) but saves one. */
	(void)fsync(s->fd[SPOOL_ACTIVE]);
	return 0;
}

/* Write J durably into state ST as ST/ID, replacing any copy there. */
static int write_state(struct spool *s, const struct job *j, enum spool_state st,
                       char *err, size_t errlen)
{
	char tmpname[JOB_ID_MAX + 8], *json;
	size_t len;
	int rc = -1;

	json = job_to_json(j);
	if (!json) {
		seterr(err, errlen, "cannot serialise the job (a field is not valid UTF-8?)");
		return -1;
	}
	len = strlen(json);
	if (len + 1 > JOB_MAX_RECORD) {
		seterr(err, errlen, "record is %zu bytes, more than %u", len + 1, JOB_MAX_RECORD);
		goto out;
	}
	json[len] = '\n';
	/* ".put" keeps rewrites apart from enqueue's O_EXCL names. */
	snprintf(tmpname, sizeof(tmpname), "%s.put", j->id);
	if (write_tmp(s, tmpname, json, len + 1,
	              st == SPOOL_DEFERRED ? j->next_attempt : -1, 0, err, errlen) != 0)
		goto out;
	if (renameat(s->tmpfd, tmpname, s->fd[st], j->id) != 0) {
		seterr(err, errlen, "cannot rename into %s/: %s", state_dirs[st], strerror(errno));
		unlinkat(s->tmpfd, tmpname, 0);
		goto out;
	}
	if (fsync(s->fd[st]) != 0) {
		seterr(err, errlen, "cannot fsync %s/: %s", state_dirs[st], strerror(errno));
		goto out;
	}
	rc = 0;
out:
	free(json);
	return rc;
}

int spool_put(struct spool *s, const struct job *j, enum spool_state state)
{
	char err[512];

	if (!s || !j || !job_id_valid(j->id) || !valid_state((int)state) ||
	    state == SPOOL_ACTIVE) {
		log_msg(LOG_ERR, "spool: put: invalid job or state");
		return -1;
	}
	/* The new record is durable in its target before the active/ copy goes:
	 * a crash in between leaves a duplicate that spool_recover resolves. */
	if (write_state(s, j, state, err, sizeof(err)) != 0) {
		log_msg(LOG_ERR, "event=%s spool: cannot put the job into %s/: %s", j->id,
		        state_dirs[state], err);
		return -1;
	}
	return spool_done(s, j);
}

/* ---- operator commands ------------------------------------------------ */

int spool_list(struct spool *s, int state, spool_list_cb cb, void *arg)
{
	int st, first = state, last = state, rc = 0;

	if (!s || !cb || (state != -1 && !valid_state(state)))
		return -1;
	if (state == -1) {
		first = 0;
		last = NSTATES - 1;
	}
	for (st = first; st <= last && rc == 0; st++) {
		char (*names)[JOB_ID_MAX] = NULL;
		long n, i;

		n = list_names(s, st, (size_t)-1 / (2 * JOB_ID_MAX), &names);
		if (n < 0) {
			log_msg(LOG_ERR, "spool: cannot read %s/%s: %s", s->dir, state_dirs[st],
			        strerror(errno));
			return -1;
		}
		for (i = 0; i < n && rc == 0; i++) {
			struct job *j = NULL;
			char err[512];
			int lr = load_job(s->fd[st], names[i], &j, err, sizeof(err));

			if (lr == -2)
				continue;
			if (lr != 0) {
				log_msg(LOG_WARNING, "event=%s spool: unreadable job %s/%s/%s: %s",
				        names[i], s->dir, state_dirs[st], names[i], err);
				j = placeholder(names[i], err);
				if (!j) {
					rc = -1;
					break;
				}
			}
			rc = cb((enum spool_state)st, j, arg);
			job_free(j);
		}
		free(names);
	}
	return rc;
}

/* Where is ID?  The state, or -1 (errno ENOENT when nowhere). */
static int locate(struct spool *s, const char *id)
{
	int st;

	for (st = 0; st < NSTATES; st++) {
		if (exists_in(s, st, id))
			return st;
	}
	errno = ENOENT;
	return -1;
}

static int check_id(const char *id)
{
	if (!job_id_valid(id)) {
		log_msg(LOG_ERR, "spool: \"%.80s\" is not a job id (<ns>-<pid>-<counter>)",
		        id ? id : "");
		return -1;
	}
	return 0;
}

int spool_find(struct spool *s, const char *id, enum spool_state *stp, struct job **out)
{
	struct job *j = NULL;
	char err[512];
	int st, tries;

	if (out)
		*out = NULL;
	if (!s || check_id(id) != 0)
		return -1;
	/* The worker may move the job between the look and the read: look
	 * again a few times before calling it gone. */
	for (tries = 0; tries < 3; tries++) {
		int rc;

		st = locate(s, id);
		if (st < 0)
			return 0;
		if (!out)
			break;
		rc = load_job(s->fd[st], id, &j, err, sizeof(err));
		if (rc == -2)
			continue;
		if (rc != 0) {
			log_msg(LOG_WARNING, "event=%s spool: unreadable job %s/%s/%s: %s", id,
			        s->dir, state_dirs[st], id, err);
			j = placeholder(id, err);
			if (!j)
				return -1;
		}
		*out = j;
		break;
	}
	if (tries == 3)
		return 0;
	if (stp)
		*stp = (enum spool_state)st;
	return 1;
}

/* Operator moves rename first (atomic: a crash never leaves the job in two
 * states), then fix up the record in place: a job released or retried into
 * queue/ starts with next_attempt 0, a job moved to deferred/ gets its mtime. */
int spool_move_id(struct spool *s, const char *id, enum spool_state to)
{
	struct job *j = NULL;
	char err[512];
	int from = -1, rc, tries;

	if (!s || check_id(id) != 0 || !valid_state((int)to))
		return -1;
	if (to == SPOOL_ACTIVE) {
		log_msg(LOG_ERR, "event=%s spool: jobs cannot be moved into active/ by hand", id);
		return -1;
	}
	for (tries = 0; tries < 3; tries++) {
		from = locate(s, id);
		if (from < 0)
			return 0;
		if (from == SPOOL_ACTIVE) {
			log_msg(LOG_ERR, "event=%s spool: the job is being processed (active/); "
			        "try again later", id);
			return -1;
		}
		if (from == (int)to)
			break;
		if (move_noreplace(s->fd[from], s->fd[to], id) == 0)
			break;
		if (errno == ENOENT)
			continue; /* moved meanwhile: look again */
		log_msg(LOG_ERR, "event=%s spool: cannot move %s/ to %s/: %s", id, state_dirs[from],
		        state_dirs[to], strerror(errno));
		return -1;
	}
	if (tries == 3)
		return 0;
	if (from != (int)to && (fsync(s->fd[to]) != 0 || fsync(s->fd[from]) != 0)) {
		log_msg(LOG_ERR, "event=%s spool: cannot fsync %s: %s", id, s->dir, strerror(errno));
		return -1;
	}
	if (to == SPOOL_QUEUE)
		mark_stale(s);
	rc = load_job(s->fd[to], id, &j, err, sizeof(err));
	if (rc != 0)
		return 1; /* gone meanwhile, or unreadable: claim deals with it */
	rc = 1;
	if (to == SPOOL_QUEUE && j->next_attempt != 0) {
		j->next_attempt = 0;
		if (write_state(s, j, to, err, sizeof(err)) != 0) {
			log_msg(LOG_ERR, "event=%s spool: moved to queue/ but cannot reset "
			        "next_attempt: %s", id, err);
			rc = -1;
		}
	} else if (to == SPOOL_DEFERRED) {
		struct timespec ts[2];

		ts[0].tv_sec = 0;
		ts[0].tv_nsec = UTIME_OMIT;
		ts[1].tv_sec = (time_t)j->next_attempt;
		ts[1].tv_nsec = 0;
		if (utimensat(s->fd[to], id, ts, AT_SYMLINK_NOFOLLOW) != 0) {
			log_msg(LOG_ERR, "event=%s spool: cannot set the time of deferred/%s: %s", id,
			        id, strerror(errno));
			rc = -1;
		}
	}
	job_free(j);
	return rc;
}

int spool_drop_id(struct spool *s, const char *id)
{
	int st;

	if (!s || check_id(id) != 0)
		return -1;
	st = locate(s, id);
	if (st < 0)
		return 0;
	if (st == SPOOL_ACTIVE) {
		log_msg(LOG_ERR, "event=%s spool: the job is being processed (active/); "
		        "try again later", id);
		return -1;
	}
	if (unlinkat(s->fd[st], id, 0) != 0) {
		if (errno == ENOENT)
			return 0;
		log_msg(LOG_ERR, "event=%s spool: cannot remove %s/%s: %s", id, state_dirs[st],
		        id, strerror(errno));
		return -1;
	}
	(void)fsync(s->fd[st]);
	return 1;
}

int spool_count(struct spool *s, enum spool_state st)
{
	struct dirent *de;
	int n = 0;
	DIR *d;

	if (!s || !valid_state((int)st))
		return -1;
	d = open_stream(s->fd[st]);
	if (!d)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (is_job_name(de->d_name) && n < INT32_MAX)
			n++;
	}
	closedir(d);
	return n;
}
