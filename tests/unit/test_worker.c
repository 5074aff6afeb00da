/* test_worker: the worker against the fake organization and a temporary
 * spool: every policy branch, every retry class with its timing checked on
 * the fake's recorded request times, invites, the thread, stopping, and the
 * audit trail (event ids everywhere, never the key). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>

#include "tap.h"
#include "config.h"
#include "fakeorg.h"
#include "job.h"
#include "log.h"
#include "openai.h"
#include "spool.h"
#include "worker.h"

#define WRONG_KEY "sk-admin-wrong-9876543210fedcba"

static struct fakeorg *f;
static char tmpdir[256];
static char logpath[300];
static int spool_seq;

/* ---- helpers ----------------------------------------------------------- */

static double now_f(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static char *read_all(const char *path)
{
	FILE *fp = fopen(path, "r");
	char *buf;
	long n;
	if (!fp)
		return strdup("");
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	rewind(fp);
	buf = calloc(1, (size_t)n + 1);
	if (buf && n > 0 && fread(buf, 1, (size_t)n, fp) != (size_t)n)
		buf[0] = '\0';
	fclose(fp);
	return buf;
}

static int write_file(const char *path, const char *text)
{
	char tmp[512];
	FILE *fp;
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fp = fopen(tmp, "w");
	if (!fp)
		return -1;
	fputs(text, fp);
	if (fclose(fp) != 0)
		return -1;
	return rename(tmp, path);
}

/* Lines of the log containing every one of the (up to three) needles. */
static int log_count(const char *a, const char *b, const char *c)
{
	char *s = read_all(logpath), *line, *save = NULL;
	int n = 0;
	for (line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if (strstr(line, a) && (!b || strstr(line, b)) && (!c || strstr(line, c)))
			n++;
	free(s);
	return n;
}

/* The first such line (malloc'd) or NULL. */
static char *log_find(const char *a, const char *b)
{
	char *s = read_all(logpath), *line, *save = NULL, *r = NULL;
	for (line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if (strstr(line, a) && (!b || strstr(line, b))) {
			r = strdup(line);
			break;
		}
	free(s);
	return r;
}

static json_t *fake_json(const char *path)
{
	char *body = fakeorg_get(f, path);
	json_t *j = body ? json_loads(body, 0, NULL) : NULL;
	free(body);
	return j;
}

static int org_has(const char *list, const char *id)
{
	json_t *st = fake_json("/_fake/state"), *v;
	size_t i;
	int found = 0;
	json_array_foreach(json_object_get(st, list), i, v) {
		const char *x = json_string_value(json_object_get(v, "id"));
		if (x && strcmp(x, id) == 0)
			found = 1;
	}
	json_decref(st);
	return found;
}

static int org_has_user(const char *id)
{
	return org_has("users", id);
}

/* Times and statuses of requests METHOD PATH, in order. */
static int requests(const char *method, const char *path, double *t, int *status, int max)
{
	json_t *rq = fake_json("/_fake/requests"), *v;
	size_t i;
	int n = 0;
	json_array_foreach(rq, i, v) {
		const char *m = json_string_value(json_object_get(v, "method"));
		const char *p = json_string_value(json_object_get(v, "path"));
		if (!m || !p || strcmp(m, method) != 0 || strcmp(p, path) != 0 || n >= max)
			continue;
		t[n] = json_number_value(json_object_get(v, "time"));
		status[n] = (int)json_integer_value(json_object_get(v, "status"));
		n++;
	}
	json_decref(rq);
	return n;
}

static struct config *mkcfg(void)
{
	struct config *cfg = config_new_defaults();
	char dir[400];

	snprintf(dir, sizeof(dir), "%s/spool%d", tmpdir, ++spool_seq);
	mkdir(dir, 0700);
	free(cfg->api_url);
	cfg->api_url = strdup(fakeorg_url(f));
	free(cfg->spool_dir);
	cfg->spool_dir = strdup(dir);
	cfg->api_rate = 1000;
	cfg->http_timeout = 20;
	cfg->breaker_max = 1000;
	cfg->breaker_window = 3600;
	return cfg;
}

static struct worker *mkworker(struct config *cfg, const char *key)
{
	struct worker *w = NULL;
	char err[512];
	if (worker_new(cfg, key ? key : fakeorg_key(f), &w, err, sizeof(err)) != 0)
		diag("worker_new: %s", err);
	return w;
}

static struct job *mkjob(const char *uid, const char *e1, const char *e2)
{
	struct job *j = job_new("slapi", "disabled");
	char dn[200];
	if (uid) {
		snprintf(dn, sizeof(dn), "uid=%s,ou=people,dc=example,dc=com", uid);
		job_set(&j->dn, dn);
		job_set(&j->uid, uid);
	}
	if (e1)
		job_add_email(j, e1);
	if (e2)
		job_add_email(j, e2);
	return j;
}

/* Enqueues J into W's spool; its id is copied to ID. */
static int enqueue(struct worker *w, struct job *j, char *id)
{
	char err[256];
	int rc = spool_enqueue(worker_spool(w), j, err, sizeof(err));
	if (rc != 0)
		diag("enqueue: %s", err);
	if (id)
		snprintf(id, JOB_ID_MAX, "%s", j->id);
	job_free(j);
	return rc;
}

/* The state of job ID in W's spool, -1 when gone; *out filled when not NULL. */
static int job_state(struct worker *w, const char *id, struct job **out)
{
	enum spool_state st;
	struct job *j = NULL;
	int rc = spool_find(worker_spool(w), id, &st, &j);
	if (out)
		*out = j;
	else
		job_free(j);
	return rc == 1 ? (int)st : -1;
}

static int spool_total(struct worker *w)
{
	struct spool *s = worker_spool(w);
	return spool_count(s, SPOOL_QUEUE) + spool_count(s, SPOOL_ACTIVE) +
	       spool_count(s, SPOOL_DEFERRED) + spool_count(s, SPOOL_HELD) +
	       spool_count(s, SPOOL_FAILED);
}

static void reset_org(const char *state)
{
	fakeorg_post(f, "/_fake/faults/clear", "{}");
	fakeorg_post(f, "/_fake/requests/clear", "{}");
	fakeorg_reset(f, state);
}

#define USER(id, email, role) \
	"{\"id\":\"" id "\",\"email\":\"" email "\",\"role\":\"" role "\",\"name\":\"" id "\"}"

/* ---- policy branches ---------------------------------------------------- */

static void test_removed(void)
{
	struct config *cfg = mkcfg();
	struct worker *w;
	char id[JOB_ID_MAX], *line;

	reset_org("{\"users\":[" USER("user-r1", "r1@example.com", "reader") ","
	          USER("user-keep", "keep@example.com", "reader") "]}");
	w = mkworker(cfg, NULL);
	ok(w != NULL, "removed: worker created");
	if (!w)
		goto out;
	enqueue(w, mkjob("r1", "R1@Example.com", NULL), id);
	is_int(worker_run(w, 1), 0, "removed: run --once returns 0");
	ok(!org_has_user("user-r1"), "removed: the user is gone from the org");
	ok(org_has_user("user-keep"), "removed: nobody else removed");
	is_int(job_state(w, id, NULL), -1, "removed: the job file is removed");
	is_int(spool_total(w), 0, "removed: the spool is empty");
	line = log_find(id, "action=removed");
	ok(line != NULL, "removed: audit line");
	contains(line, "openai_user=user-r1", "removed: audit line names the OpenAI user");
	contains(line, "role=reader", "removed: audit line has the role");
	contains(line, "email=r1@example.com", "removed: audit line has the address");
	contains(line, "dn=\"uid=r1,ou=people,dc=example,dc=com\"", "removed: audit line has the DN, quoted");
	contains(line, "uid=r1 ", "removed: audit line has the uid");
	contains(line, "attempts=1", "removed: attempts");
	contains(line, "latency_ms=", "removed: latency");
	contains(line, "source=slapi", "removed: source");
	contains(line, "reason=disabled", "removed: reason");
	contains(line, "via=email", "removed: via");
	contains(line, "notice", "removed: at notice");
	free(line);
out:
	worker_free(w);
	config_free(cfg);
}

/* A 10 KB DN or uid (or control bytes galore) must not push the OpenAI
 * user, the role and the tail of the audit line out of LOG_LINE_MAX. */
static void test_long_values(void)
{
	struct config *cfg = mkcfg();
	struct worker *w;
	struct job *j;
	char id[JOB_ID_MAX], id2[JOB_ID_MAX], *line;
	char *big = malloc(10241), *ctl = malloc(4097);

	reset_org("{\"users\":[" USER("user-long", "long@example.com", "reader") ","
	          USER("user-ctl", "ctl@example.com", "reader") "]}");
	w = mkworker(cfg, NULL);
	ok(w != NULL && big && ctl, "long values: worker created");
	if (!w || !big || !ctl)
		goto out;
	memset(big, 'x', 10240);
	big[10240] = '\0';
	memset(ctl, '\x01', 4096);
	ctl[4096] = '\0';
	j = job_new("slapi", "disabled");
	job_set(&j->uid, big);
	job_set(&j->dn, big);
	job_add_email(j, "long@example.com");
	enqueue(w, j, id);
	j = job_new("slapi", "disabled");
	job_set(&j->uid, ctl);
	job_set(&j->dn, ctl);
	job_add_email(j, "ctl@example.com");
	enqueue(w, j, id2);
	worker_run(w, 1);
	ok(!org_has_user("user-long") && !org_has_user("user-ctl"), "long values: both removed");
	line = log_find(id, "action=removed");
	ok(line != NULL, "long values: audit line");
	contains(line, "openai_user=user-long role=reader", "long values: the OpenAI user and role kept");
	contains(line, "xxx... uid=xxx", "long values: the long value cut and marked");
	contains(line, "reason=disabled", "long values: the tail of the line kept");
	ok(line && strlen(line) < LOG_LINE_MAX + 100, "long values: the line is bounded");
	free(line);
	line = log_find(id2, "action=removed");
	contains(line, "openai_user=user-ctl role=reader", "control bytes: the OpenAI user and role kept");
	free(line);
out:
	free(big);
	free(ctl);
	worker_free(w);
	config_free(cfg);
}

static void test_already_gone(void)
{
	struct config *cfg = mkcfg();
	struct worker *w;
	char id[JOB_ID_MAX];

	reset_org("{\"users\":[" USER("user-g1", "g1@example.com", "reader") "]}");
	fakeorg_fault(f, "[{\"method\":\"DELETE\",\"path\":\"/v1/organization/users/user-g1\",\"count\":1,"
	                 "\"action\":\"status\",\"status\":404,\"body\":\"{\\\"error\\\":{\\\"message\\\":\\\"gone\\\","
	                 "\\\"type\\\":\\\"invalid_request_error\\\",\\\"param\\\":null,\\\"code\\\":null}}\"}]");
	w = mkworker(cfg, NULL);
	if (!w) {
		ok(0, "already gone: worker");
		goto out;
	}
	enqueue(w, mkjob("g1", "g1@example.com", NULL), id);
	worker_run(w, 1);
	is_int(log_count(id, "action=already_gone", NULL), 1, "already gone: 404 on DELETE is done");
	is_int(job_state(w, id, NULL), -1, "already gone: job removed");
out:
	worker_free(w);
	config_free(cfg);
}

static void test_protected(void)
{
	struct config *cfg = mkcfg();
	struct worker *w;
	struct job *j = NULL;
	char id1[JOB_ID_MAX], id2[JOB_ID_MAX], id3[JOB_ID_MAX], err[256];
	char *line;

	reset_org("{\"users\":[" USER("user-o1", "o1@example.com", "owner") ","
	          USER("user-p2", "p2@example.com", "reader") ","
	          USER("user-p3", "P3@Example.com", "reader") "]}");
	is_int(config_set(cfg, "protect_users", "user-p2 p3@example.com", "test", 1, err, sizeof(err)), 0,
	       "protected: protect_users set");
	w = mkworker(cfg, NULL);
	if (!w) {
		ok(0, "protected: worker");
		goto out;
	}
	enqueue(w, mkjob("o1", "o1@example.com", NULL), id1);
	enqueue(w, mkjob("p2", "p2@example.com", NULL), id2);
	enqueue(w, mkjob("p3", "p3@example.com", NULL), id3);
	is_int(worker_run(w, 1), 1, "protected: run reports jobs that need a person");
	ok(org_has_user("user-o1") && org_has_user("user-p2") && org_has_user("user-p3"),
	   "protected: nobody removed");
	is_int(job_state(w, id1, &j), SPOOL_FAILED, "protected role: job in failed/");
	ok(j && j->last_error && strstr(j->last_error, "protected"), "protected role: last_error says why");
	job_free(j);
	line = log_find(id1, "action=protected");
	ok(line && strstr(line, "warning") && strstr(line, "role=owner"), "protected role: warning line with the role");
	free(line);
	is_int(job_state(w, id2, NULL), SPOOL_FAILED, "protected user by id: job in failed/");
	is_int(log_count(id2, "action=protected", "openai_user=user-p2"), 1, "protected user by id: logged");
	is_int(job_state(w, id3, NULL), SPOOL_FAILED, "protected user by address: job in failed/");
	is_int(log_count(id3, "action=protected", NULL), 1, "protected user by address: logged");
	is_int(fakeorg_post(f, "/_fake/requests/clear", "{}"), 200, "protected: requests cleared");
out:
	worker_free(w);
	config_free(cfg);
}

static void test_exempt_notmember_dry(void)
{
	struct config *cfg = mkcfg();
	struct worker *w;
	char id1[JOB_ID_MAX], id2[JOB_ID_MAX], id3[JOB_ID_MAX], id4[JOB_ID_MAX], map[400];
	struct job *j;
	char *line;
	double t[4];
	int st[4];

	reset_org("{\"users\":[" USER("user-x1", "x1@example.com", "reader") ","
	          USER("user-d1", "d1@example.com", "reader") "]}");
	snprintf(map, sizeof(map), "%s/exempt.map", tmpdir);
	write_file(map, "# robots are not people\nx1 -\n");
	free(cfg->map_file);
	cfg->map_file = strdup(map);
	w = mkworker(cfg, NULL);
	if (!w) {
		ok(0, "exempt: worker");
		goto out;
	}
	enqueue(w, mkjob("x1", "x1@example.com", NULL), id1);
	enqueue(w, mkjob("nobody", "nobody@example.com", "nobody2@example.com"), id2);
	j = mkjob("d1", "d1@example.com", NULL);
	j->dry_run = 1;
	enqueue(w, j, id3);
	is_int(worker_run(w, 1), 0, "exempt/not member/dry run: all done");
	ok(org_has_user("user-x1"), "exempt: user kept");
	is_int(job_state(w, id1, NULL), -1, "exempt: job done");
	line = log_find(id1, "action=exempt");
	ok(line && strstr(line, "warning") && strstr(line, "via=map_file"), "exempt: warning line, via map_file");
	free(line);
	is_int(job_state(w, id2, NULL), -1, "not a member: job done");
	line = log_find(id2, "action=not_member");
	ok(line && strstr(line, "notice"), "not a member: notice line");
	contains(line, "email=nobody@example.com,nobody2@example.com", "not a member: the addresses tried");
	free(line);
	ok(org_has_user("user-d1"), "dry run (job): user kept");
	is_int(job_state(w, id3, NULL), -1, "dry run (job): job done");
	is_int(log_count(id3, "action=would_remove", "openai_user=user-d1"), 1, "dry run (job): would_remove line");
	is_int(requests("DELETE", "/v1/organization/users/user-d1", t, st, 4), 0, "dry run: no DELETE sent");
	worker_free(w);

	cfg->dry_run = 1;
	w = mkworker(cfg, NULL);
	enqueue(w, mkjob("d1", "d1@example.com", NULL), id4);
	worker_run(w, 1);
	ok(org_has_user("user-d1"), "dry run (config): user kept");
	is_int(log_count(id4, "action=would_remove", NULL), 1, "dry run (config): would_remove line");
	is_int(job_state(w, id4, NULL), -1, "dry run (config): job done");
out:
	worker_free(w);
	config_free(cfg);
}

static void test_breaker(void)
{
	struct config *cfg = mkcfg();
	struct worker *w;
	char id[4][JOB_ID_MAX], path[500], *s;
	int i, lines;

	reset_org("{\"users\":[" USER("user-b1", "b1@example.com", "reader") ","
	          USER("user-b2", "b2@example.com", "reader") ","
	          USER("user-b3", "b3@example.com", "reader") ","
	          USER("user-b4", "b4@example.com", "reader") "]}");
	cfg->breaker_max = 2;
	cfg->breaker_window = 3600;
	w = mkworker(cfg, NULL);
	if (!w) {
		ok(0, "breaker: worker");
		goto out;
	}
	enqueue(w, mkjob("b1", "b1@example.com", NULL), id[0]);
	enqueue(w, mkjob("b2", "b2@example.com", NULL), id[1]);
	enqueue(w, mkjob("b3", "b3@example.com", NULL), id[2]);
	worker_run(w, 1);
	ok(!org_has_user("user-b1") && !org_has_user("user-b2"), "breaker: the first two removed");
	ok(org_has_user("user-b3"), "breaker: the third kept");
	is_int(job_state(w, id[2], NULL), SPOOL_HELD, "breaker: the third held");
	is_int(log_count(id[2], "action=held", NULL), 1, "breaker: held line");
	s = log_find("action=breaker_tripped", NULL);
	ok(s != NULL, "breaker: alert line");
	contains(s, "alert", "breaker: at alert level");
	contains(s, "held=1", "breaker: says how many are held");
	contains(s, "openai-revoke queue release", "breaker: says how to release");
	contains(s, id[2], "breaker: alert carries the event id");
	free(s);
	snprintf(path, sizeof(path), "%s/breaker", cfg->spool_dir);
	s = read_all(path);
	lines = 0;
	for (i = 0; s[i]; i++)
		lines += s[i] == '\n';
	free(s);
	is_int(lines, 2, "breaker: two removals persisted in spool_dir/breaker");
	{
		/* private like every spool file, whatever the umask (022 here) */
		struct stat st;
		int got = stat(path, &st) == 0 ? (int)(st.st_mode & 07777) : -1;
		ok(got == 0600, "breaker: spool_dir/breaker is mode 0600 (got %04o)", (unsigned)got);
	}
	worker_free(w);

	/* a restart does not reset the count */
	w = mkworker(cfg, NULL);
	enqueue(w, mkjob("b4", "b4@example.com", NULL), id[3]);
	worker_run(w, 1);
	is_int(job_state(w, id[3], NULL), SPOOL_HELD, "breaker: still tripped after a restart");
	ok(org_has_user("user-b4"), "breaker: user kept after a restart");
	is_int(log_count("action=breaker_tripped", NULL, NULL), 2, "breaker: one alert per worker and trip");

	/* the operator releases one */
	is_int(spool_move_id(worker_spool(w), id[2], SPOOL_QUEUE), 1, "breaker: released by spool_move_id");
	worker_run(w, 1);
	ok(!org_has_user("user-b3"), "breaker: released job processed");
	is_int(job_state(w, id[2], NULL), -1, "breaker: released job done");
	is_int(job_state(w, id[3], NULL), SPOOL_HELD, "breaker: the other one still held");
out:
	worker_free(w);
	config_free(cfg);
}

static void test_breaker_window(void)
{
	struct config *cfg = mkcfg();
	struct worker *w;
	char id[JOB_ID_MAX], path[500], buf[600], *s;
	long now = (long)time(NULL);
	int i, lines = 0;

	reset_org("{\"users\":[" USER("user-bw", "bw@example.com", "reader") "]}");
	cfg->breaker_max = 2;
	cfg->breaker_window = 60;
	snprintf(path, sizeof(path), "%s/breaker", cfg->spool_dir);
	snprintf(buf, sizeof(buf), "%ld\n%ld\n%ld\ngarbage\n", now - 120, now - 61, now - 100);
	write_file(path, buf);
	w = mkworker(cfg, NULL);
	if (!w) {
		ok(0, "breaker window: worker");
		goto out;
	}
	enqueue(w, mkjob("bw", "bw@example.com", NULL), id);
	worker_run(w, 1);
	ok(!org_has_user("user-bw"), "breaker window: removals older than the window do not count");
	s = read_all(path);
	for (i = 0; s[i]; i++)
		lines += s[i] == '\n';
	is_int(lines, 1, "breaker window: old times dropped when the file is rewritten");
	free(s);

	/* a breaker file that cannot be written is an error line, not a stop */
	reset_org("{\"users\":[" USER("user-bw2", "bw2@example.com", "reader") "]}");
	snprintf(buf, sizeof(buf), "%s.tmp", path);
	mkdir(buf, 0700);
	enqueue(w, mkjob("bw2", "bw2@example.com", NULL), id);
	worker_run(w, 1);
	ok(!org_has_user("user-bw2"), "breaker file unwritable: the removal still happens");
	is_int(log_count("breaker: cannot record a removal", NULL, NULL), 1, "breaker file unwritable: logged");
	rmdir(buf);
out:
	worker_free(w);
	config_free(cfg);
}

/* ---- retries ------------------------------------------------------------- */

static int wait_gone(const char *user, double secs)
{
	double end = now_f() + secs;
	while (now_f() < end) {
		if (!org_has_user(user))
			return 1;
		usleep(100 * 1000);
	}
	return 0;
}

static void test_retry_after(void)
{
	struct config *cfg = mkcfg();
	struct worker *w;
	double t[4] = { 0 };
	int st[4] = { 0 }, n;

	reset_org("{\"users\":[" USER("user-t1", "t1@example.com", "reader") "]}");
	fakeorg_fault(f, "[{\"method\":\"DELETE\",\"path\":\"/v1/organization/users/user-t1\",\"count\":1,"
	                 "\"action\":\"status\",\"status\":429,\"headers\":{\"Retry-After\":\"2\"},"
	                 "\"body\":\"{\\\"error\\\":{\\\"message\\\":\\\"slow down\\\",\\\"type\\\":\\\"rate_limit\\\"}}\"}]");
	w = mkworker(cfg, NULL);
	if (!w || worker_start(w) != 0) {
		ok(0, "429: worker started");
		goto out;
	}
	enqueue(w, mkjob("t1", "t1@example.com", NULL), NULL);
	worker_notify(w);
	ok(wait_gone("user-t1", 20), "429: user removed after the retry");
	worker_stop(w);
	n = requests("DELETE", "/v1/organization/users/user-t1", t, st, 4);
	is_int(n, 2, "429: two DELETEs");
	is_int(st[0], 429, "429: the first answered 429");
	is_int(st[1], 200, "429: the second answered 200");
	ok(n == 2 && t[1] - t[0] >= 2.0, "429: the retry came no sooner than Retry-After (%.3f s)", t[1] - t[0]);
	is_int(log_count("action=deferred", "class=", "http_status=429"), 1, "429: deferred line with the class");
out:
	worker_free(w);
	config_free(cfg);
}

static void test_transient(void)
{
	struct config *cfg = mkcfg();
	struct worker *w;
	struct job *j = NULL;
	char id[JOB_ID_MAX];
	double t0, t1;

	reset_org("{\"users\":[" USER("user-t2", "t2@example.com", "reader") "]}");
	fakeorg_fault(f, "[{\"method\":\"DELETE\",\"path\":\"/v1/organization/users/user-t2\",\"count\":1,"
	                 "\"action\":\"status\",\"status\":503,\"body\":\"unavailable\"}]");
	w = mkworker(cfg, NULL);
	if (!w) {
		ok(0, "503: worker");
		goto out;
	}
	enqueue(w, mkjob("t2", "t2@example.com", NULL), id);
	t0 = now_f();
	is_int(worker_run(w, 1), 1, "503: run reports the deferral");
	t1 = now_f();
	is_int(job_state(w, id, &j), SPOOL_DEFERRED, "503: job deferred");
	if (j) {
		is_int(j->attempts, 1, "503: attempts=1");
		ok(j->next_attempt >= (long long)(t0 + 1.6) && j->next_attempt <= (long long)(t1 + 2.4) + 1,
		   "503: next_attempt %lld within [now+1.6, now+2.4] (now %.1f..%.1f)",
		   (long long)j->next_attempt, t0, t1);
		ok(j->last_error && strstr(j->last_error, "transient"), "503: last_error set (%s)",
		   j->last_error ? j->last_error : "");
	}
	job_free(j);
	is_int(log_count(id, "action=deferred", "warning"), 1, "503: deferred line at warning");
	ok(org_has_user("user-t2"), "503: user still there");
	/* later it goes through */
	{
		double end = now_f() + 15;
		while (now_f() < end && job_state(w, id, NULL) != -1) {
			worker_run(w, 1);
			usleep(200 * 1000);
		}
	}
	ok(!org_has_user("user-t2"), "503: removed on a later attempt");
	is_int(log_count(id, "action=removed", "attempts=2"), 1, "503: audit line says attempts=2");
out:
	worker_free(w);
	config_free(cfg);
}

static void test_auth(void)
{
	struct config *cfg = mkcfg();
	struct worker *w;
	struct job *j = NULL;
	char id1[JOB_ID_MAX], id2[JOB_ID_MAX];
	double t0;

	reset_org("{\"users\":[" USER("user-a1", "a1@example.com", "reader") "]}");
	w = mkworker(cfg, WRONG_KEY);
	if (!w) {
		ok(0, "401: worker");
		goto out;
	}
	enqueue(w, mkjob("a1", "a1@example.com", NULL), id1);
	enqueue(w, mkjob("a2", "a2@example.com", NULL), id2);
	t0 = now_f();
	worker_run(w, 1);
	is_int(job_state(w, id1, &j), SPOOL_DEFERRED, "401: job deferred, kept");
	ok(j && j->next_attempt >= (long long)t0 + 300, "401: not before 5 minutes");
	job_free(j);
	is_int(job_state(w, id2, NULL), SPOOL_DEFERRED, "401: second job deferred too");
	is_int(log_count("action=auth_failure", "401: the admin key was revoked or is wrong", "err"), 1,
	       "401: one err line naming the cause for two jobs");
	is_int(log_count(id2, "action=deferred", "stage=auth_wait"), 1,
	       "401: the second job waits without asking the API");
	{
		json_t *rq = fake_json("/_fake/requests");
		is_int(json_array_size(rq), 1, "401: one request for two jobs");
		json_decref(rq);
	}
	ok(org_has_user("user-a1"), "401: nothing removed");
	worker_free(w);

	reset_org("{\"users\":[" USER("user-a3", "a3@example.com", "reader") "]}");
	fakeorg_fault(f, "[{\"method\":null,\"path\":\"/v1/organization/users*\",\"count\":-1,"
	                 "\"action\":\"status\",\"status\":403,\"body\":\"{\\\"error\\\":{\\\"message\\\":\\\"insufficient permissions\\\"}}\"}]");
	cfg->spool_dir[strlen(cfg->spool_dir) - 1]++;  /* a fresh spool */
	mkdir(cfg->spool_dir, 0700);
	w = mkworker(cfg, NULL);
	enqueue(w, mkjob("a3", "a3@example.com", NULL), id1);
	t0 = now_f();
	worker_run(w, 1);
	is_int(job_state(w, id1, &j), SPOOL_DEFERRED, "403: job deferred");
	ok(j && j->next_attempt >= (long long)t0 + 300, "403: not before 5 minutes");
	job_free(j);
	is_int(log_count("action=auth_failure", "403: the key lacks the organization owner scope", NULL), 1,
	       "403: one err line naming the cause");
	fakeorg_post(f, "/_fake/faults/clear", "{}");
out:
	worker_free(w);
	config_free(cfg);
}

static void test_permanent(void)
{
	struct config *cfg = mkcfg();
	struct worker *w;
	struct job *j = NULL;
	char id1[JOB_ID_MAX], id2[JOB_ID_MAX];

	reset_org("{\"users\":[" USER("user-f1", "f1@example.com", "reader") ","
	          USER("user-f2", "f2@example.com", "reader") "]}");
	fakeorg_fault(f, "[{\"method\":\"DELETE\",\"path\":\"/v1/organization/users/user-f1\",\"count\":1,"
	                 "\"action\":\"status\",\"status\":400,\"body\":\"{\\\"error\\\":{\\\"message\\\":\\\"bad\\\"}}\"},"
	                 "{\"method\":\"DELETE\",\"path\":\"/v1/organization/users/user-f2\",\"count\":1,"
	                 "\"action\":\"malformed\"}]");
	w = mkworker(cfg, NULL);
	if (!w) {
		ok(0, "400: worker");
		goto out;
	}
	enqueue(w, mkjob("f1", "f1@example.com", NULL), id1);
	enqueue(w, mkjob("f2", "f2@example.com", NULL), id2);
	is_int(worker_run(w, 1), 1, "400: run reports the failure");
	is_int(job_state(w, id1, &j), SPOOL_FAILED, "400: job in failed/");
	ok(j && j->attempts == 1 && j->last_error && strstr(j->last_error, "400"), "400: attempts and last_error");
	job_free(j);
	is_int(log_count(id1, "action=failed", "http_status=400"), 1, "400: failed line");
	is_int(job_state(w, id2, NULL), SPOOL_FAILED, "malformed answer: job in failed/");
	is_int(log_count(id2, "action=failed", "class=protocol"), 1, "malformed answer: failed line with the class");
out:
	worker_free(w);
	config_free(cfg);
}

/* ---- addresses, invites, map file ---------------------------------------- */

static void test_several_addresses(void)
{
	struct config *cfg = mkcfg();
	struct worker *w;
	char id[JOB_ID_MAX];

	reset_org("{\"users\":[" USER("user-m1", "m1@example.com", "reader") ","
	          USER("user-m2", "m.two@other.example", "reader") ","
	          USER("user-m3", "m3@example.com", "reader") "]}");
	w = mkworker(cfg, NULL);
	if (!w) {
		ok(0, "addresses: worker");
		goto out;
	}
	enqueue(w, mkjob("m", "nothere@example.com", "M.Two@Other.Example"), id);
	worker_run(w, 1);
	ok(!org_has_user("user-m2"), "addresses: the second address found the member");
	enqueue(w, mkjob("m", "m1@example.com", "m3@example.com"), id);
	worker_run(w, 1);
	ok(!org_has_user("user-m1") && !org_has_user("user-m3"), "addresses: one member per address, both removed");
	is_int(log_count(id, "action=removed", NULL), 2, "addresses: one audit line per member");
out:
	worker_free(w);
	config_free(cfg);
}

static void test_invites(void)
{
	struct config *cfg = mkcfg();
	struct worker *w;
	char id[JOB_ID_MAX], id2[JOB_ID_MAX], *line;

	reset_org("{\"users\":[" USER("user-i1", "i1@example.com", "reader") "],"
	          "\"invites\":["
	          "{\"id\":\"invite-1\",\"email\":\"i1@example.com\",\"role\":\"reader\",\"status\":\"pending\"},"
	          "{\"id\":\"invite-2\",\"email\":\"i1@example.com\",\"role\":\"reader\",\"status\":\"accepted\"},"
	          "{\"id\":\"invite-3\",\"email\":\"other@example.com\",\"role\":\"reader\",\"status\":\"pending\"},"
	          "{\"id\":\"invite-4\",\"email\":\"I1.ALT@example.com\",\"role\":\"owner\",\"status\":\"pending\"},"
	          "{\"id\":\"invite-5\",\"email\":\"ghost@example.com\",\"role\":\"reader\",\"status\":\"pending\"}]}");
	w = mkworker(cfg, NULL);
	if (!w) {
		ok(0, "invites: worker");
		goto out;
	}
	enqueue(w, mkjob("i1", "i1@example.com", "i1.alt@example.com"), id);
	enqueue(w, mkjob("ghost", "ghost@example.com", NULL), id2);
	worker_run(w, 1);
	ok(!org_has_user("user-i1"), "invites: user removed");
	ok(!org_has("invites", "invite-1"), "invites: pending invite to the address deleted");
	ok(!org_has("invites", "invite-4"), "invites: pending invite to another of the addresses deleted (case-insensitive)");
	ok(org_has("invites", "invite-2"), "invites: accepted invite left alone");
	ok(org_has("invites", "invite-3"), "invites: someone else's invite left alone");
	is_int(log_count(id, "action=invite_revoked", NULL), 2, "invites: one line per revoked invite");
	line = log_find(id, "action=removed");
	contains(line, "invites_revoked=2", "invites: audit line counts them");
	free(line);
	ok(!org_has("invites", "invite-5"), "invites: a non-member's pending invite is revoked too");
	is_int(log_count(id2, "action=not_member", "invites_revoked=1"), 1, "invites: not_member line counts it");
	is_int(fakeorg_spec_violations(f), 0, "every request matches the API description");

	/* listing invites fails after the removal: the removal is logged, the
	 * job retried, and the replay (now "not a member") revokes the invite */
	reset_org("{\"users\":[" USER("user-i6", "i6@example.com", "reader") "],"
	          "\"invites\":[{\"id\":\"invite-6\",\"email\":\"i6@example.com\",\"role\":\"reader\",\"status\":\"pending\"}]}");
	fakeorg_fault(f, "[{\"method\":\"GET\",\"path\":\"/v1/organization/invites*\",\"count\":1,"
	                 "\"action\":\"status\",\"status\":500,\"body\":\"oops\"}]");
	enqueue(w, mkjob("i6", "i6@example.com", NULL), id);
	worker_run(w, 1);
	ok(!org_has_user("user-i6"), "invites failing: user removed");
	is_int(log_count(id, "action=removed", NULL), 1, "invites failing: removal logged");
	is_int(log_count(id, "action=deferred", "stage=invites"), 1, "invites failing: job deferred");
	ok(org_has("invites", "invite-6"), "invites failing: invite still there");
	{
		double end = now_f() + 15;
		while (now_f() < end && job_state(w, id, NULL) != -1) {
			worker_run(w, 1);
			usleep(200 * 1000);
		}
	}
	ok(!org_has("invites", "invite-6"), "invites failing: revoked on the retry");
	is_int(log_count(id, "action=not_member", "invites_revoked=1"), 1, "invites failing: the retry says so");
	worker_free(w);

	/* revoke_invites no */
	cfg->revoke_invites = 0;
	w = mkworker(cfg, NULL);
	reset_org("{\"users\":[" USER("user-i7", "i7@example.com", "reader") "],"
	          "\"invites\":[{\"id\":\"invite-7\",\"email\":\"i7@example.com\",\"role\":\"reader\",\"status\":\"pending\"}]}");
	enqueue(w, mkjob("i7", "i7@example.com", NULL), id);
	worker_run(w, 1);
	ok(!org_has_user("user-i7") && org_has("invites", "invite-7"), "revoke_invites no: invite left");
out:
	worker_free(w);
	config_free(cfg);
}

static void test_mixed_protection(void)
{
	struct config *cfg = mkcfg();
	struct worker *w;
	struct job *j = NULL;
	char id[JOB_ID_MAX];

	reset_org("{\"users\":[" USER("user-mx1", "mx@example.com", "owner") ","
	          USER("user-mx2", "mx@personal.example", "reader") "],\"invites\":["
	          "{\"id\":\"invite-mx1\",\"email\":\"MX@example.com\",\"role\":\"reader\",\"status\":\"pending\"},"
	          "{\"id\":\"invite-mx2\",\"email\":\"mx@personal.example\",\"role\":\"reader\",\"status\":\"pending\"}]}");
	w = mkworker(cfg, NULL);
	if (!w) {
		ok(0, "mixed: worker");
		goto out;
	}
	enqueue(w, mkjob("mx", "mx@example.com", "mx@personal.example"), id);
	worker_run(w, 1);
	ok(org_has_user("user-mx1"), "mixed: the owner account is kept");
	ok(!org_has_user("user-mx2"), "mixed: the person's other account is removed");
	is_int(log_count(id, "action=protected", "user-mx1"), 1, "mixed: protected line for the owner");
	is_int(log_count(id, "action=removed", "user-mx2"), 1, "mixed: removed line for the other");
	is_int(job_state(w, id, &j), SPOOL_FAILED, "mixed: the job waits in failed/ for a person");
	ok(j && j->last_error && strstr(j->last_error, "protected"), "mixed: last_error says why");
	job_free(j);
	ok(org_has("invites", "invite-mx1"), "mixed: an invite to the protected member's address is kept");
	ok(!org_has("invites", "invite-mx2"), "mixed: an invite to the removed member's address is revoked");
out:
	worker_free(w);
	config_free(cfg);
}

static int wait_log(const char *a, const char *b, int n, struct worker *w)
{
	double end = now_f() + 15;
	while (now_f() < end) {
		if (log_count(a, b, NULL) >= n)
			return 1;
		/* lookups are what reload the map: a probe job makes one */
		if (w) {
			enqueue(w, mkjob("probe", "probe@example.com", NULL), NULL);
			worker_notify(w);
		}
		usleep(300 * 1000);
	}
	return 0;
}

static void test_map_edit(void)
{
	struct config *cfg = mkcfg();
	struct worker *w;
	char map[400], id[JOB_ID_MAX];
	int before;

	reset_org("{\"users\":[" USER("user-e1", "e1@example.com", "reader") ","
	          USER("user-e2", "e2@example.com", "reader") ","
	          USER("user-e3", "e3@example.com", "reader") "]}");
	snprintf(map, sizeof(map), "%s/edit.map", tmpdir);
	write_file(map, "mapuid1 user-e1\n");
	free(cfg->map_file);
	cfg->map_file = strdup(map);
	w = mkworker(cfg, NULL);
	if (!w || worker_start(w) != 0) {
		ok(0, "map edit: worker started");
		goto out;
	}
	enqueue(w, mkjob("mapuid1", NULL, NULL), NULL);
	worker_notify(w);
	ok(wait_gone("user-e1", 10), "map edit: mapped user removed by the thread");

	write_file(map, "mapuid1 user-e1\nmapuid2 user-e2\n");
	ok(wait_log("map_reload=ok", "entries=2", 1, w), "map edit: the thread reloaded the edited file");
	enqueue(w, mkjob("mapuid2", NULL, NULL), id);
	worker_notify(w);
	ok(wait_gone("user-e2", 10), "map edit: the new entry is used");

	before = log_count("map_reload=failed", NULL, NULL);
	write_file(map, "mapuid3 user-e3\nbroken\n");
	ok(wait_log("map_reload=failed", "edit.map:2:", before + 1, w), "map edit: a bad edit is logged");
	enqueue(w, mkjob("mapuid3", NULL, NULL), id);
	worker_notify(w);
	{
		double end = now_f() + 10;
		while (now_f() < end && log_count(id, "action=", NULL) == 0)
			usleep(100 * 1000);
	}
	is_int(log_count(id, "action=not_member", NULL), 1, "map edit: the previous map stays in use");
	ok(org_has_user("user-e3"), "map edit: the bad file's entry is not used");
	worker_stop(w);
out:
	worker_free(w);
	config_free(cfg);
}

/* ---- the thread ---------------------------------------------------------- */

static void test_notify_and_stop(void)
{
	struct config *cfg = mkcfg();
	struct worker *w;
	char id[JOB_ID_MAX];
	double end;
	int st;

	reset_org("{\"users\":[" USER("user-n1", "n1@example.com", "reader") ","
	          USER("user-s1", "s1@example.com", "reader") ","
	          USER("user-s2", "s2@example.com", "reader") "]}");
	w = mkworker(cfg, NULL);
	if (!w || worker_start(w) != 0) {
		ok(0, "notify: worker started");
		goto out;
	}
	enqueue(w, mkjob("n1", "n1@example.com", NULL), id);
	worker_notify(w);
	ok(wait_gone("user-n1", 10), "notify: the thread processed the job");
	end = now_f() + 10;
	while (now_f() < end && job_state(w, id, NULL) != -1)
		usleep(50 * 1000);
	is_int(job_state(w, id, NULL), -1, "notify: job done");

	/* stop while the DELETE is in flight: the job is finished */
	fakeorg_fault(f, "[{\"method\":\"DELETE\",\"path\":\"/v1/organization/users/user-s1\",\"count\":1,"
	                 "\"action\":\"delay\",\"seconds\":2}]");
	enqueue(w, mkjob("s1", "s1@example.com", NULL), id);
	worker_notify(w);
	end = now_f() + 10;
	while (now_f() < end && spool_count(worker_spool(w), SPOOL_ACTIVE) == 0)
		usleep(20 * 1000);
	ok(spool_count(worker_spool(w), SPOOL_ACTIVE) == 1, "stop: a job in hand");
	worker_stop(w);
	is_int(spool_count(worker_spool(w), SPOOL_ACTIVE), 0, "stop (delete in flight): nothing left in active/");
	st = job_state(w, id, NULL);
	ok((st == -1 && !org_has_user("user-s1")) || st == SPOOL_QUEUE,
	   "stop (delete in flight): job finished or back in queue/ (state %d)", st);

	/* stop while resolving: the job goes back to queue/ before any DELETE */
	fakeorg_fault(f, "[{\"method\":\"GET\",\"path\":\"/v1/organization/users*\",\"count\":1,"
	                 "\"action\":\"delay\",\"seconds\":2}]");
	worker_start(w);
	enqueue(w, mkjob("s2", "s2@example.com", NULL), id);
	worker_notify(w);
	end = now_f() + 10;
	while (now_f() < end && spool_count(worker_spool(w), SPOOL_ACTIVE) == 0)
		usleep(20 * 1000);
	worker_stop(w);
	is_int(spool_count(worker_spool(w), SPOOL_ACTIVE), 0, "stop (resolving): nothing left in active/");
	st = job_state(w, id, NULL);
	ok(st == SPOOL_QUEUE || (st == -1 && !org_has_user("user-s2")),
	   "stop (resolving): job back in queue/ or finished, never lost (state %d)", st);
	if (st == SPOOL_QUEUE)
		ok(org_has_user("user-s2"), "stop (resolving): nothing removed for the requeued job");
	/* and a new worker picks it up */
	worker_run(w, 1);
	ok(!org_has_user("user-s2"), "stop: the returned job is processed later");
out:
	worker_free(w);
	config_free(cfg);
}

struct runarg {
	struct worker *w;
	int rc;
};

static void *run_thread(void *p)
{
	struct runarg *a = p;
	a->rc = worker_run(a->w, 0);
	return NULL;
}

static void test_run_foreground(void)
{
	struct config *cfg = mkcfg();
	struct worker *w, *w2;
	struct spool *other = NULL;
	char err[256], id[JOB_ID_MAX];
	struct runarg a;
	pthread_t t;

	reset_org("{\"users\":[" USER("user-fg", "fg@example.com", "reader") "]}");
	w = mkworker(cfg, NULL);
	if (!w) {
		ok(0, "run: worker");
		goto out;
	}
	/* another process drains: --once refuses */
	ok(spool_open(cfg->spool_dir, &other, err, sizeof(err)) == 0 && spool_lock(other) == 1,
	   "run: someone else holds the spool lock");
	enqueue(w, mkjob("fg", "fg@example.com", NULL), id);
	is_int(worker_run(w, 1), -1, "run --once: lock busy returns -1");
	is_int(log_count("being drained by another process", NULL, NULL), 1, "run --once: says why");
	ok(org_has_user("user-fg"), "run --once: nothing done without the lock");

	/* run (not once) waits for the lock, then drains until asked to stop */
	a.w = w;
	a.rc = 99;
	pthread_create(&t, NULL, run_thread, &a);
	usleep(300 * 1000);
	ok(org_has_user("user-fg"), "run: waits while the lock is held");
	spool_unlock(other);
	ok(wait_gone("user-fg", 10), "run: drains once the lock is free");
	worker_request_stop(w);
	pthread_join(t, NULL);
	is_int(a.rc, 0, "run: returns 0 after worker_request_stop");

	/* process_now: outside the spool */
	w2 = mkworker(cfg, NULL);
	reset_org("{\"users\":[" USER("user-now", "now@example.com", "reader") ","
	          USER("user-own", "own@example.com", "owner") "]}");
	{
		struct job *j = mkjob("now", "now@example.com", NULL);
		const char *o = NULL;
		fakeorg_fault(f, "[{\"method\":\"DELETE\",\"path\":\"/v1/organization/users/user-now\",\"count\":1,"
		                 "\"action\":\"status\",\"status\":502,\"body\":\"bad gateway\"}]");
		is_int(worker_process_now(w2, j, &o), WORKER_QUEUE, "process_now: 502 asks to be queued");
		is_str(o, "deferred", "process_now: outcome deferred");
		ok(j->next_attempt > 0 && j->attempts == 1 && j->last_error, "process_now: retry fields set");
		is_int(worker_process_now(w2, j, &o), WORKER_DONE, "process_now: then removed");
		is_str(o, "removed", "process_now: outcome removed");
		ok(!org_has_user("user-now"), "process_now: user gone");
		job_free(j);
		j = mkjob("own", "own@example.com", NULL);
		is_int(worker_process_now(w2, j, &o), WORKER_FAILED, "process_now: owner needs a person");
		is_str(o, "protected", "process_now: outcome protected");
		job_free(j);
		j = mkjob("nobody", "nobody@example.com", NULL);
		is_int(worker_process_now(w2, j, &o), WORKER_DONE, "process_now: not a member is done");
		is_str(o, "not_member", "process_now: outcome not_member");
		job_free(j);
	}
	worker_free(w2);
out:
	spool_close(other);
	worker_free(w);
	config_free(cfg);
}

static void test_new_errors(void)
{
	struct config *cfg = mkcfg();
	struct worker *w = NULL;
	char err[512], map[400];

	snprintf(map, sizeof(map), "%s/bad.map", tmpdir);
	write_file(map, "onlyleft\n");
	free(cfg->map_file);
	cfg->map_file = strdup(map);
	ok(worker_new(cfg, fakeorg_key(f), &w, err, sizeof(err)) != 0 && w == NULL, "worker_new: bad map file refused");
	contains(err, "bad.map:1:", "worker_new: says where");
	free(cfg->map_file);
	cfg->map_file = NULL;
	chmod(cfg->spool_dir, 0777);
	ok(worker_new(cfg, fakeorg_key(f), &w, err, sizeof(err)) != 0, "worker_new: world-writable spool refused");
	chmod(cfg->spool_dir, 0700);
	free(cfg->api_url);
	cfg->api_url = strdup("http://api.example.com/v1");
	ok(worker_new(cfg, fakeorg_key(f), &w, err, sizeof(err)) != 0, "worker_new: plain http to a remote host refused");
	ok(!strstr(err, fakeorg_key(f)), "worker_new: error does not show the key");
	config_free(cfg);
}

/* ---- the audit trail as a whole ------------------------------------------ */

static void test_log_hygiene(void)
{
	char *s = read_all(logpath), *line, *save = NULL;
	int bad = 0, lines = 0;

	ok(!strstr(s, fakeorg_key(f)), "log: never contains the admin key");
	ok(!strstr(s, WRONG_KEY), "log: never contains the wrong key either");
	ok(!strstr(s, "Bearer"), "log: never contains an Authorization header");
	for (line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (!strstr(line, "action="))
			continue;
		lines++;
		if (!strstr(line, "event=") || strstr(line, "event=- ")) {
			bad++;
			diag("no event id: %s", line);
		}
	}
	ok(lines > 50, "log: %d job lines checked", lines);
	is_int(bad, 0, "log: every job line carries event=");
	free(s);
}

int main(void)
{
	char tmpl[] = "/tmp/test_worker.XXXXXX", cmd[600];

	if (!mkdtemp(tmpl)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(tmpdir, sizeof(tmpdir), "%s", tmpl);
	snprintf(logpath, sizeof(logpath), "%s/log", tmpdir);
	log_setup(LOG_MODE_STDERR, "test_worker", LOG_AUTHPRIV, LOG_DEBUG, logpath);
	openai_global_init();
	if (fakeorg_start(&f, FAKEORG_HTTP) != 0) {
		ok(0, "fake organization started");
		goto out;
	}

	test_removed();
	test_long_values();
	test_already_gone();
	test_protected();
	test_exempt_notmember_dry();
	test_breaker();
	test_breaker_window();
	test_retry_after();
	test_transient();
	test_auth();
	test_permanent();
	test_several_addresses();
	test_invites();
	test_mixed_protection();
	test_map_edit();
	test_notify_and_stop();
	test_run_foreground();
	test_new_errors();
	test_log_hygiene();
out:
	fakeorg_stop(f);
	log_teardown();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		diag("could not remove %s", tmpdir);
	return tap_done();
}
