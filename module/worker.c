/* worker: drains the spool, one job at a time: resolve -> protect ->
 * breaker -> dry run -> delete -> invites -> audit line -> job removed,
 * and decides by result class what happens to a job that did not finish. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "mapping.h"
#include "openai.h"
#include "worker.h"

#define BACKOFF_BASE 2.0      /* seconds, doubled per attempt */
#define BACKOFF_CAP 900.0     /* 15 minutes */
#define AUTH_FLOOR 300        /* seconds between retries and between err lines */
#define ALERT_INTERVAL 60     /* seconds between two breaker alert lines */
#define IDLE_WAIT_MS 1000     /* scan for due and foreign jobs at least this often */
#define MAX_INVITES 100000    /* matching invites handled per job */
#define BREAKER_FILE "breaker"
#define BREAKER_LOCK "breaker.lock"
/* last_error of a job the breaker held; a job released from held/ by an
 * operator still carries it, and that is what lets it pass the breaker. */
#define HELD_MARK "held by the circuit breaker: "
#define RELEASED_MARK "released from the circuit breaker; "

enum disp { DISP_DONE, DISP_DEFER, DISP_HELD, DISP_FAILED, DISP_REQUEUE };

struct worker {
	const struct config *cfg;   /* must outlive the worker */
	struct spool *spool;
	struct openai_client *client;
	struct mapping *map;
	char *breaker_path;
	char *breaker_lock;

	pthread_mutex_t mu;         /* notified, the condition variable */
	pthread_cond_t cv;
	int notified;
	int thread_stop;            /* __atomic */
	int stop_req;               /* __atomic: lock-free, so safe from a signal handler */
	pthread_t thread;
	int running;

	pthread_mutex_t pipe_mu;    /* one job at a time through client and state below */
	uint64_t rng;
	time_t last_auth_log;       /* monotonic; 0: never */
	time_t auth_gate;           /* monotonic: until then, jobs wait without asking */
	struct openai_result auth_res; /* the answer that closed the gate */
	time_t last_alert;
	int failures;               /* jobs that did not finish in worker_run */
};

/* ---- small helpers ---------------------------------------------------- */

static time_t mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static double real_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t real_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int should_stop(struct worker *w)
{
	return __atomic_load_n(&w->stop_req, __ATOMIC_SEQ_CST) ||
	       __atomic_load_n(&w->thread_stop, __ATOMIC_SEQ_CST);
}

/* xorshift64*: jitter only needs to spread retries, not to be secret, but
 * rand() is shared process state a guest must not touch. */
static double rng_unit(struct worker *w)
{
	uint64_t x = w->rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	w->rng = x;
	return (double)((x * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

static void set_error(struct job *j, const char *prefix, const char *msg)
{
	char buf[1024];
	snprintf(buf, sizeof(buf), "%s%.900s", prefix ? prefix : "", msg);
	job_set(&j->last_error, buf);
}

static int job_released(const struct job *j)
{
	return j->last_error &&
	       (strncmp(j->last_error, HELD_MARK, strlen(HELD_MARK)) == 0 ||
	        strncmp(j->last_error, RELEASED_MARK, strlen(RELEASED_MARK)) == 0);
}

/* ---- audit lines ------------------------------------------------------ */

static void line_start(struct logline *l, const struct job *j, const char *action)
{
	logline_init(l);
	logline_add(l, "event", j->id[0] ? j->id : "-");
	logline_add(l, "action", action);
}

static void add_who_value(struct logline *l, const char *key, const char *v);

static void line_emails(struct logline *l, const struct job *j)
{
	char buf[LOG_LINE_MAX];
	size_t i, n = 0;

	buf[0] = '\0';
	for (i = 0; j->emails && j->emails[i]; i++) {
		int k = snprintf(buf + n, sizeof(buf) - n, "%s%s", i ? "," : "", j->emails[i]);
		if (k < 0)
			break;
		if ((size_t)k >= sizeof(buf) - n) {
			n = sizeof(buf) - 1;  /* cut: add_who_value marks it */
			break;
		}
		n += (size_t)k;
	}
	if (n)
		add_who_value(l, "email", buf);
}

/* Directory values are the directory's, not ours: a 10 KB uid or DN would
 * fill the line and push openai_user and role out of the audit record.
 * Each is cut to what escapes into at most WHO_VALUE_MAX bytes (control
 * bytes and any byte >= 0x80 counted at their worst, 4) and marked "...". */
#define WHO_VALUE_MAX 240

static void add_who_value(struct logline *l, const char *key, const char *v)
{
	char buf[WHO_VALUE_MAX + 4];
	size_t i, width = 0;

	for (i = 0; v[i]; i++) {
		unsigned char c = (unsigned char)v[i];
		width += (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') ? 4 : 1;
		if (width > WHO_VALUE_MAX - 3)
			break;
	}
	if (!v[i]) {
		logline_add(l, key, v);
		return;
	}
	/* never cut inside a UTF-8 sequence */
	while (i > 0 && ((unsigned char)v[i] & 0xc0) == 0x80)
		i--;
	memcpy(buf, v, i);
	memcpy(buf + i, "...", 4);
	logline_add(l, key, buf);
}

static void line_who(struct logline *l, const struct job *j, const struct openai_user *u)
{
	if (j->dn)
		add_who_value(l, "dn", j->dn);
	if (j->uid)
		add_who_value(l, "uid", j->uid);
	if (u && u->email)
		add_who_value(l, "email", u->email);
	else
		line_emails(l, j);
	if (u && u->id)
		logline_add(l, "openai_user", u->id);
	if (u && u->role)
		logline_add(l, "role", u->role);
}

static void line_end(struct logline *l, const struct job *j)
{
	int64_t lat = j->created > 0 ? (real_now_ns() - j->created) / 1000000 : 0;
	logline_addi(l, "attempts", j->attempts);
	logline_addi(l, "latency_ms", lat > 0 ? lat : 0);
	if (j->source)
		logline_add(l, "source", j->source);
	if (j->reason)
		logline_add(l, "reason", j->reason);
	if (j->dry_run)
		logline_add(l, "dry_run", "yes");
}

static void audit(int prio, const struct job *j, const char *action,
                  const struct openai_user *u, const char *via, const char *k1, const char *v1)
{
	struct logline l;
	line_start(&l, j, action);
	line_who(&l, j, u);
	if (via)
		logline_add(&l, "via", via);
	if (k1 && v1)
		logline_add(&l, k1, v1);
	line_end(&l, j);
	log_line(prio, &l);
}

/* ---- circuit breaker -------------------------------------------------- */

/* The removal times of the last window live in spool_dir/breaker, one
 * number a line, so a restart does not reset the count.  Admission keeps
 * it near breaker_max lines; older lines are dropped on every rewrite. */
static int breaker_lock(struct worker *w, int how)
{
	int fd = open(w->breaker_lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
	if (fd < 0)
		return -1;
	while (flock(fd, how) != 0) {
		if (errno != EINTR) {
			close(fd);
			return -1;
		}
	}
	return fd;
}

static void breaker_unlock(int fd)
{
	if (fd >= 0)
		close(fd);  /* drops the flock */
}

/* Calls OUT (when not NULL) for each time still inside the window; returns
 * how many there are. */
static size_t breaker_scan(struct worker *w, int64_t now, FILE *out)
{
	FILE *fp = fopen(w->breaker_path, "re");
	char line[64];
	size_t n = 0;

	if (!fp)
		return 0;
	while (fgets(line, sizeof(line), fp)) {
		char *end;
		long long t = strtoll(line, &end, 10);
		if (end == line || t <= now - w->cfg->breaker_window || t > now + 86400)
			continue;
		if (out)
			fprintf(out, "%lld\n", t);
		n++;
	}
	fclose(fp);
	return n;
}

/* How many removals the window already holds. */
static size_t breaker_count(struct worker *w)
{
	int fd = breaker_lock(w, LOCK_SH);
	size_t n = breaker_scan(w, (int64_t)time(NULL), NULL);
	breaker_unlock(fd);
	return n;
}

/* Records one removal: the file is rewritten whole (tmp, fsync, rename). */
static void breaker_record(struct worker *w)
{
	int64_t now = (int64_t)time(NULL);
	char tmp[4200];
	FILE *fp = NULL;
	int fd, tfd, ok = 0;

	fd = breaker_lock(w, LOCK_EX);
	snprintf(tmp, sizeof(tmp), "%s.tmp", w->breaker_path);
	/* 0600 whatever the host's umask: every file in the spool is private */
	tfd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
	if (tfd >= 0 && fchmod(tfd, 0600) == 0)
		fp = fdopen(tfd, "w");
	if (!fp) {
		if (tfd >= 0) {
			close(tfd);
			unlink(tmp);
		}
		goto out;
	}
	breaker_scan(w, now, fp);
	fprintf(fp, "%" PRId64 "\n", now);
	if (fflush(fp) != 0 || fsync(fileno(fp)) != 0) {
		fclose(fp);
		unlink(tmp);
		goto out;
	}
	fclose(fp);
	if (rename(tmp, w->breaker_path) != 0) {
		unlink(tmp);
		goto out;
	}
	ok = 1;
out:
	breaker_unlock(fd);
	if (!ok)
		log_msg(LOG_ERR, "breaker: cannot record a removal in %s: %s", w->breaker_path,
		        strerror(errno));
}

/* ---- retries ------------------------------------------------------------ */

static const char *auth_cause(const struct openai_result *res)
{
	if (res->http_status == 403)
		return "403: the key lacks the organization owner scope";
	return "401: the admin key was revoked or is wrong";
}

/* A step failed with RES: set the job up for its next attempt, or for a
 * person to look at. */
static enum disp retry_or_fail(struct worker *w, struct job *j, const struct openai_result *res,
                               const char *stage, const struct openai_user *u,
                               const char **outcome)
{
	const char *cls = openai_status_name(res->status);
	char msg[640];
	struct logline l;

	snprintf(msg, sizeof(msg), "%s: %s (http %ld): %s", stage, cls, res->http_status,
	         res->message);
	set_error(j, job_released(j) ? RELEASED_MARK : NULL, msg);

	switch (res->status) {
	case OPENAI_RATE_LIMITED:
	case OPENAI_TRANSIENT:
	case OPENAI_AUTH: {
		int exp = j->attempts > 1 ? j->attempts - 1 : 0;
		double delay, now = real_now();

		if (exp > 20)
			exp = 20;
		delay = BACKOFF_BASE * (double)(1u << exp);
		delay *= 0.8 + 0.4 * rng_unit(w);
		if (delay > BACKOFF_CAP)
			delay = BACKOFF_CAP;
		if (res->status == OPENAI_AUTH && delay < AUTH_FLOOR)
			delay = AUTH_FLOOR;
		if (res->retry_after > 0 && (double)res->retry_after > delay)
			delay = (double)res->retry_after;
		{
			/* rounded up: never sooner than asked */
			double at = now + delay;
			j->next_attempt = (int64_t)at;
			if ((double)j->next_attempt < at)
				j->next_attempt++;
		}

		if (res->status == OPENAI_AUTH) {
			time_t m = mono_now();
			/* the key is bad for every job: the others wait without
			 * hammering the API with it until the next try */
			if (w->auth_gate <= m) {
				w->auth_gate = m + AUTH_FLOOR;
				w->auth_res = *res;
			}
			if (w->last_auth_log == 0 || m - w->last_auth_log >= AUTH_FLOOR) {
				w->last_auth_log = m;
				line_start(&l, j, "auth_failure");
				logline_add(&l, "cause", auth_cause(res));
				logline_addi(&l, "http_status", res->http_status);
				logline_add(&l, "note", "jobs are kept and retried");
				log_line(LOG_ERR, &l);
			}
		}
		line_start(&l, j, "deferred");
		line_who(&l, j, u);
		logline_add(&l, "class", cls);
		logline_addi(&l, "http_status", res->http_status);
		logline_add(&l, "stage", stage);
		logline_addi(&l, "next_attempt", j->next_attempt);
		logline_addi(&l, "retry_in", j->next_attempt - (int64_t)now);
		logline_add(&l, "error", res->message);
		line_end(&l, j);
		log_line(LOG_WARNING, &l);
		*outcome = "deferred";
		return DISP_DEFER;
	}
	default:
		line_start(&l, j, "failed");
		line_who(&l, j, u);
		logline_add(&l, "class", cls);
		logline_addi(&l, "http_status", res->http_status);
		logline_add(&l, "stage", stage);
		logline_add(&l, "error", res->message);
		line_end(&l, j);
		log_line(LOG_ERR, &l);
		*outcome = "failed";
		return DISP_FAILED;
	}
}

/* ---- invites -------------------------------------------------------------- */

struct invite_scan {
	const struct config *cfg;
	const struct job *j;
	const struct openai_user *users;
	size_t nusers;
	struct openai_invite *hits;
	size_t n;
	int oom;
};

static int user_protected(const struct config *cfg, const struct openai_user *u);

/* To one of the person's addresses, and not to the address of a protected
 * member (what protects the account protects its invites too). */
static int invite_matches(const struct invite_scan *s, const char *email)
{
	size_t i;
	if (!email)
		return 0;
	for (i = 0; i < s->nusers; i++)
		if (s->users[i].email && strcasecmp(s->users[i].email, email) == 0 &&
		    user_protected(s->cfg, &s->users[i]))
			return 0;
	for (i = 0; s->j->emails && s->j->emails[i]; i++)
		if (strcasecmp(s->j->emails[i], email) == 0)
			return 1;
	for (i = 0; i < s->nusers; i++)
		if (s->users[i].email && strcasecmp(s->users[i].email, email) == 0)
			return 1;
	return 0;
}

static int invite_cb(const struct openai_invite *inv, void *arg)
{
	struct invite_scan *s = arg;
	struct openai_invite *nv, *d;

	if (!inv->id || !inv->status || strcmp(inv->status, "pending") != 0 ||
	    !invite_matches(s, inv->email))
		return 0;
	if (s->n >= MAX_INVITES)
		return 1;
	nv = realloc(s->hits, (s->n + 1) * sizeof(*nv));
	if (!nv) {
		s->oom = 1;
		return 1;
	}
	s->hits = nv;
	d = &s->hits[s->n];
	memset(d, 0, sizeof(*d));
	d->id = strdup(inv->id);
	d->email = inv->email ? strdup(inv->email) : NULL;
	d->role = inv->role ? strdup(inv->role) : NULL;
	d->status = strdup(inv->status);
	s->n++;
	if (!d->id || !d->status) {
		s->oom = 1;
		return 1;
	}
	return 0;
}

/* Deletes every pending invite to the person's addresses.  0, or -1 with
 * RES saying why (the job is then retried: the user is already gone, so
 * the replay ends as "not a member" and comes back here). */
static int revoke_invites(struct worker *w, const struct job *j, const struct openai_user *users,
                          size_t nusers, int dry, int *count, struct openai_result *res)
{
	struct invite_scan s;
	size_t i;
	int rc = -1;

	*count = 0;
	memset(&s, 0, sizeof(s));
	s.cfg = w->cfg;
	s.j = j;
	s.users = users;
	s.nusers = nusers;
	if (!w->cfg->revoke_invites)
		return 0;
	if (!(j->emails && j->emails[0]) && nusers == 0)
		return 0;
	if (openai_list_invites(w->client, invite_cb, &s, res) != OPENAI_OK)
		goto out;
	if (s.oom) {
		memset(res, 0, sizeof(*res));
		res->status = OPENAI_TRANSIENT;
		res->retry_after = -1;
		snprintf(res->message, sizeof(res->message), "out of memory listing invites");
		goto out;
	}
	for (i = 0; i < s.n; i++) {
		struct logline l;
		if (!dry) {
			int st = openai_delete_invite(w->client, &s.hits[i], res);
			if (st != OPENAI_OK && st != OPENAI_NOT_FOUND)
				goto out;
		}
		line_start(&l, j, dry ? "would_revoke_invite" : "invite_revoked");
		logline_add(&l, "invite", s.hits[i].id);
		if (s.hits[i].email)
			logline_add(&l, "email", s.hits[i].email);
		if (s.hits[i].role)
			logline_add(&l, "role", s.hits[i].role);
		log_line(LOG_NOTICE, &l);
		(*count)++;
	}
	rc = 0;
out:
	for (i = 0; i < s.n; i++)
		openai_invite_clear(&s.hits[i]);
	free(s.hits);
	return rc;
}

/* ---- the pipeline --------------------------------------------------------- */

static int user_protected(const struct config *cfg, const struct openai_user *u)
{
	return (u->role && config_list_contains(cfg->protect_roles, u->role)) ||
	       config_list_contains(cfg->protect_users, u->id) ||
	       (u->email && config_list_contains(cfg->protect_users, u->email));
}

static void breaker_alert(struct worker *w, const struct job *j, size_t count, int held)
{
	time_t m = mono_now();
	struct logline l;

	if (w->last_alert != 0 && m - w->last_alert < ALERT_INTERVAL)
		return;
	w->last_alert = m;
	line_start(&l, j, "breaker_tripped");
	logline_addi(&l, "removals", (long long)count);
	logline_addi(&l, "window", w->cfg->breaker_window);
	logline_addi(&l, "max", w->cfg->breaker_max);
	logline_addi(&l, "held", held);
	logline_add(&l, "release", "review held jobs with \"openai-revoke queue list\", "
	                           "release them with \"openai-revoke queue release\"");
	log_line(LOG_ALERT, &l);
}

/* Processes J (attempts counted, last_error and next_attempt set); the
 * caller files it according to the answer.  Called with pipe_mu held. */
static enum disp process(struct worker *w, struct job *j, const char **outcome)
{
	const struct config *cfg = w->cfg;
	struct mapping_result r;
	struct openai_result res;
	struct openai_user *users = NULL;
	size_t nusers = 0, i, nprot = 0, nrem = 0;
	int dry = cfg->dry_run || j->dry_run;
	int *gone = NULL, ninv = 0;
	size_t done_users = 0;
	enum disp d = DISP_DONE;

	memset(&r, 0, sizeof(r));
	j->attempts++;
	if (w->auth_gate > mono_now()) {
		res = w->auth_res;
		d = retry_or_fail(w, j, &res, "auth_wait", NULL, outcome);
		goto out;
	}
	if (mapping_resolve(w->map, w->client, j, &r, &res) != 0 || r.kind == MAPPING_ERROR) {
		d = retry_or_fail(w, j, &res, "resolve", NULL, outcome);
		goto out;
	}
	if (r.kind == MAPPING_EXEMPT) {
		audit(LOG_WARNING, j, "exempt", NULL, r.via, "note", "map file says -");
		*outcome = "exempt";
		goto out;
	}
	if (r.kind == MAPPING_NOT_MEMBER) {
		/* a pending invite would let the person back in: revoke it even
		 * though they are not (or no longer) a member */
		if (revoke_invites(w, j, NULL, 0, dry, &ninv, &res) != 0) {
			d = retry_or_fail(w, j, &res, "invites", NULL, outcome);
			goto out;
		}
		{
			char nbuf[16];
			snprintf(nbuf, sizeof(nbuf), "%d", ninv);
			audit(LOG_NOTICE, j, "not_member", NULL, r.via, ninv ? "invites_revoked" : NULL,
			      nbuf);
		}
		*outcome = "not_member";
		goto out;
	}

	/* FOUND: the user and any more the person's addresses matched */
	nusers = 1 + r.nmore;
	users = calloc(nusers, sizeof(*users));
	gone = calloc(nusers, sizeof(*gone));
	if (!users || !gone) {
		memset(&res, 0, sizeof(res));
		res.status = OPENAI_TRANSIENT;
		res.retry_after = -1;
		snprintf(res.message, sizeof(res.message), "out of memory");
		d = retry_or_fail(w, j, &res, "resolve", NULL, outcome);
		goto out;
	}
	users[0] = r.user;
	for (i = 0; i < r.nmore; i++)
		users[i + 1] = r.more[i];
	for (i = 0; i < nusers; i++) {
		if (user_protected(cfg, &users[i]))
			nprot++;
		else
			nrem++;
	}
	for (i = 0; i < nusers; i++)
		if (user_protected(cfg, &users[i]))
			audit(LOG_WARNING, j, "protected", &users[i], r.via, "note",
			      "protect_roles or protect_users; not removed");
	if (nrem == 0) {
		set_error(j, NULL, "protected: protect_roles or protect_users");
		*outcome = "protected";
		d = DISP_FAILED;
		goto out;
	}

	/* a dry run removes nothing, so the breaker has nothing to hold */
	if (dry) {
		for (i = 0; i < nusers; i++)
			if (!user_protected(cfg, &users[i]))
				audit(LOG_NOTICE, j, "would_remove", &users[i], r.via, NULL, NULL);
		(void)revoke_invites(w, j, users, nusers, 1, &ninv, &res);
		*outcome = nprot ? "protected" : "would_remove";
		if (nprot) {
			set_error(j, NULL, "protected: protect_roles or protect_users");
			d = DISP_FAILED;
		}
		goto out;
	}

	if (cfg->breaker_max > 0 && !job_released(j)) {
		size_t count = breaker_count(w);
		if (count + nrem > (size_t)cfg->breaker_max) {
			char msg[200];
			snprintf(msg, sizeof(msg), "%zu removals in the last %d s (max %d)", count,
			         cfg->breaker_window, cfg->breaker_max);
			set_error(j, NULL, msg);
			*outcome = "held";
			d = DISP_HELD;
			goto out;
		}
	}
	if (should_stop(w)) {
		j->attempts--;
		*outcome = "requeued";
		d = DISP_REQUEUE;
		goto out;
	}

	for (i = 0; i < nusers; i++) {
		if (user_protected(cfg, &users[i]))
			continue;
		if (openai_delete_user(w->client, users[i].id, &gone[i], &res) != OPENAI_OK) {
			size_t k;
			for (k = 0; k < i; k++)
				if (!user_protected(cfg, &users[k]))
					audit(LOG_NOTICE, j, gone[k] ? "already_gone" : "removed",
					      &users[k], r.via, NULL, NULL);
			d = retry_or_fail(w, j, &res, "delete", &users[i], outcome);
			goto out;
		}
		if (!gone[i] && cfg->breaker_max > 0)
			breaker_record(w);
		done_users++;
	}
	if (revoke_invites(w, j, users, nusers, 0, &ninv, &res) != 0) {
		for (i = 0; i < nusers; i++)
			if (!user_protected(cfg, &users[i]))
				audit(LOG_NOTICE, j, gone[i] ? "already_gone" : "removed", &users[i],
				      r.via, NULL, NULL);
		d = retry_or_fail(w, j, &res, "invites", NULL, outcome);
		goto out;
	}
	*outcome = "removed";
	for (i = 0; i < nusers; i++) {
		char nbuf[16];
		if (user_protected(cfg, &users[i]))
			continue;
		snprintf(nbuf, sizeof(nbuf), "%d", ninv);
		audit(LOG_NOTICE, j, gone[i] ? "already_gone" : "removed", &users[i], r.via,
		      ninv ? "invites_revoked" : NULL, nbuf);
		if (gone[i] && done_users == 1)
			*outcome = "already_gone";
	}
	if (nprot) {
		set_error(j, NULL, "protected: protect_roles or protect_users (others removed)");
		*outcome = "protected";
		d = DISP_FAILED;
	}
out:
	/* users[] only borrowed r's members */
	free(users);
	free(gone);
	mapping_result_clear(&r);
	return d;
}

/* Files a claimed job by its disposition. */
static void handle(struct worker *w, struct job *j)
{
	const char *outcome = "";
	enum disp d;
	int rc = 0;

	pthread_mutex_lock(&w->pipe_mu);
	d = process(w, j, &outcome);
	switch (d) {
	case DISP_DONE:
		rc = spool_done(w->spool, j);
		break;
	case DISP_DEFER:
		rc = spool_put(w->spool, j, SPOOL_DEFERRED);
		w->failures++;
		break;
	case DISP_FAILED:
		rc = spool_put(w->spool, j, SPOOL_FAILED);
		w->failures++;
		break;
	case DISP_REQUEUE: {
		struct logline l;
		rc = spool_put(w->spool, j, SPOOL_QUEUE);
		line_start(&l, j, "requeued");
		logline_add(&l, "note", "worker stopping; the job waits in queue/");
		log_line(LOG_INFO, &l);
		break;
	}
	case DISP_HELD: {
		char msg[700];
		struct logline l;
		int held;

		snprintf(msg, sizeof(msg), "%s", j->last_error ? j->last_error : "");
		set_error(j, HELD_MARK, msg);
		rc = spool_put(w->spool, j, SPOOL_HELD);
		w->failures++;
		held = spool_count(w->spool, SPOOL_HELD);
		line_start(&l, j, "held");
		line_who(&l, j, NULL);
		logline_add(&l, "error", msg);
		line_end(&l, j);
		log_line(LOG_WARNING, &l);
		breaker_alert(w, j, breaker_count(w), held);
		break;
	}
	}
	pthread_mutex_unlock(&w->pipe_mu);
	if (rc != 0)
		log_msg(LOG_ERR, "event=%s the job stays in active/ until the next start "
		        "(cannot file it as %s)", j->id, outcome);
}

/* ---- loops ---------------------------------------------------------------- */

/* Sleeps up to MS, or until notified or stopped. */
static void wait_idle(struct worker *w, int ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&w->mu);
	while (!w->notified && !should_stop(w)) {
		if (pthread_cond_timedwait(&w->cv, &w->mu, &ts) == ETIMEDOUT)
			break;
	}
	w->notified = 0;
	pthread_mutex_unlock(&w->mu);
}

/* Foreground waits come in short slices: a signal handler can set
 * stop_req but cannot signal a condition variable. */
static void wait_idle_fg(struct worker *w, int ms)
{
	while (ms > 0 && !should_stop(w)) {
		int slice = ms > 200 ? 200 : ms;
		wait_idle(w, slice);
		ms -= slice;
	}
}

/* Claims and processes due jobs until none is left or a stop is asked. */
static int drain(struct worker *w)
{
	time_t promoted = 0;
	int n = 0;

	while (!should_stop(w)) {
		struct job *j = NULL;
		int rc;
		time_t m = mono_now();

		if (promoted == 0 || m != promoted) {
			spool_promote_due(w->spool, (int64_t)time(NULL));
			promoted = m;
		}
		rc = spool_claim(w->spool, &j);
		if (rc < 0) {
			w->failures++;
			return -1;
		}
		if (rc == 0)
			break;
		handle(w, j);
		job_free(j);
		n++;
	}
	return n;
}

/* Takes the spool lock, waiting for it (another process may drain). */
static int take_lock(struct worker *w, int wait, int fg)
{
	int logged = 0;

	for (;;) {
		int rc = spool_lock(w->spool);
		if (rc == 1)
			return 1;
		if (rc < 0) {
			if (!wait || !logged)
				log_msg(LOG_ERR, "spool %s: cannot take the lock", spool_dir(w->spool));
			if (!wait)
				return -1;
			logged = 1;
		} else if (!wait) {
			log_msg(LOG_ERR, "spool %s is being drained by another process "
			        "(its lock is held); not running", spool_dir(w->spool));
			return 0;
		} else if (!logged) {
			log_msg(LOG_INFO, "spool %s is drained by another process; "
			        "waiting for its lock", spool_dir(w->spool));
			logged = 1;
		}
		if (fg)
			wait_idle_fg(w, IDLE_WAIT_MS);
		else
			wait_idle(w, IDLE_WAIT_MS);
		if (should_stop(w))
			return 0;
	}
}

static void *thread_main(void *arg)
{
	struct worker *w = arg;

	if (take_lock(w, 1, 0) != 1)
		return NULL;
	spool_recover(w->spool);
	while (!should_stop(w)) {
		drain(w);
		if (should_stop(w))
			break;
		wait_idle(w, IDLE_WAIT_MS);
	}
	spool_unlock(w->spool);
	return NULL;
}

/* ---- public ----------------------------------------------------------------- */

int worker_new(const struct config *cfg, const char *key, struct worker **out,
               char *err, size_t errlen)
{
	struct worker *w;
	pthread_condattr_t ca;
	size_t n;

	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	w = calloc(1, sizeof(*w));
	if (!w) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	w->cfg = cfg;
	pthread_mutex_init(&w->mu, NULL);
	pthread_mutex_init(&w->pipe_mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cv, &ca);
	pthread_condattr_destroy(&ca);
	w->rng = (uint64_t)real_now_ns() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)w;
	if (w->rng == 0)
		w->rng = 0x9e3779b97f4a7c15ull;

	if (!cfg || !cfg->spool_dir) {
		snprintf(err, errlen, "no spool_dir");
		goto fail;
	}
	if (spool_open(cfg->spool_dir, &w->spool, err, errlen) != 0)
		goto fail;
	n = strlen(cfg->spool_dir) + sizeof(BREAKER_LOCK) + 2;
	w->breaker_path = malloc(n);
	w->breaker_lock = malloc(n);
	if (!w->breaker_path || !w->breaker_lock) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	snprintf(w->breaker_path, n, "%s/%s", cfg->spool_dir, BREAKER_FILE);
	snprintf(w->breaker_lock, n, "%s/%s", cfg->spool_dir, BREAKER_LOCK);
	if (openai_global_init() != 0) {
		snprintf(err, errlen, "cannot initialise libcurl");
		goto fail;
	}
	w->client = openai_client_new(cfg, key, err, errlen);
	if (!w->client)
		goto fail;
	w->map = mapping_new(cfg, err, errlen);
	if (!w->map)
		goto fail;
	*out = w;
	return 0;
fail:
	worker_free(w);
	return -1;
}

void worker_free(struct worker *w)
{
	if (!w)
		return;
	if (w->running)
		worker_stop(w);
	mapping_free(w->map);
	openai_client_free(w->client);
	spool_close(w->spool);
	free(w->breaker_path);
	free(w->breaker_lock);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	pthread_mutex_destroy(&w->pipe_mu);
	free(w);
}

int worker_start(struct worker *w)
{
	sigset_t all, old;
	int rc;

	if (!w || w->running)
		return -1;
	__atomic_store_n(&w->thread_stop, 0, __ATOMIC_SEQ_CST);
	/* the host's signals belong to the host's threads */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&w->thread, NULL, thread_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		log_msg(LOG_ERR, "cannot start the worker thread: %s", strerror(rc));
		return -1;
	}
	w->running = 1;
	return 0;
}

void worker_notify(struct worker *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->mu);
	w->notified = 1;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

void worker_stop(struct worker *w)
{
	if (!w || !w->running)
		return;
	pthread_mutex_lock(&w->mu);
	__atomic_store_n(&w->thread_stop, 1, __ATOMIC_SEQ_CST);
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	w->running = 0;
}

void worker_request_stop(struct worker *w)
{
	if (w)
		__atomic_store_n(&w->stop_req, 1, __ATOMIC_SEQ_CST);
}

int worker_run(struct worker *w, int once)
{
	int rc;

	if (!w || w->running)
		return -1;
	/* a worker_stop of an earlier thread does not stop this loop */
	__atomic_store_n(&w->thread_stop, 0, __ATOMIC_SEQ_CST);
	rc = take_lock(w, !once, 1);
	if (rc != 1)
		return rc == 0 && !once ? 0 : -1;
	w->failures = 0;
	spool_recover(w->spool);
	while (!should_stop(w)) {
		drain(w);
		if (once || should_stop(w))
			break;
		wait_idle_fg(w, IDLE_WAIT_MS);
	}
	spool_unlock(w->spool);
	return w->failures ? 1 : 0;
}

int worker_process_now(struct worker *w, struct job *j, const char **outcome)
{
	const char *o = "";
	enum disp d;

	if (outcome)
		*outcome = "";
	if (!w || !j)
		return -1;
	if (!j->id[0]) {
		/* the event id of this attempt; spool_enqueue names a queued copy anew */
		static uint64_t ctr;
		snprintf(j->id, sizeof(j->id), "%" PRId64 "-%ld-%" PRIu64, real_now_ns(),
		         (long)getpid(), (uint64_t)(__atomic_add_fetch(&ctr, 1, __ATOMIC_RELAXED) + 1000000000ull));
	}
	if (j->created == 0)
		j->created = real_now_ns();
	pthread_mutex_lock(&w->pipe_mu);
	d = process(w, j, &o);
	if (d == DISP_HELD) {
		breaker_alert(w, j, breaker_count(w), spool_count(w->spool, SPOOL_HELD));
		j->next_attempt = 0;
	}
	pthread_mutex_unlock(&w->pipe_mu);
	if (outcome)
		*outcome = o;
	switch (d) {
	case DISP_DONE:
		return WORKER_DONE;
	case DISP_FAILED:
		return WORKER_FAILED;
	default:
		return WORKER_QUEUE;
	}
}

struct spool *worker_spool(struct worker *w)
{
	return w ? w->spool : NULL;
}
