/* pam_openai_revoke: the PAM entry point of openai-revoke.  In an account
 * stack it asks the directory whether the user logging in is disabled and,
 * if so, queues a revocation job in the spool for the worker.  It is a
 * revocation trigger, not a gatekeeper: it never talks to OpenAI, and a
 * directory or configuration problem never blocks a login (PAM_IGNORE). */
#include "or_build.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ldap.h>

#define PAM_SM_ACCOUNT
#include <security/pam_modules.h>
#include <security/pam_ext.h>

#include "config.h"
#include "directory.h"
#include "job.h"
#include "log.h"
#include "spool.h"

/* The version script exports pam_sm_* only; visibility makes them
 * candidates for it despite -fvisibility=hidden. */
#define PAMOR_EXPORT __attribute__((visibility("default")))

#define PAMOR_ARG_SOURCE "module argument"
#define PAMOR_KEYWORD_MAX 64
#define PAMOR_USER_MAX 256     /* longer PAM_USER values are not account names */
#define PAMOR_ERR_MAX 1024

/* ---- logging --------------------------------------------------------
 * The host application owns syslog's identity: the engine's logger runs
 * in LOG_MODE_HOSTED (no openlog, facility in every priority).  The logger
 * is process state of this module, so it is (re)configured under a lock,
 * and only when the configuration asks for something different: every
 * stack of one process normally names the same file, so it is set up once.
 * (Two stacks with different logging in one threaded application would
 * take turns; the last one set up wins.) */

static pthread_mutex_t pamor_log_lock = PTHREAD_MUTEX_INITIALIZER;
static int pamor_log_ready;
static int pamor_log_facility;
static int pamor_log_level;
static char *pamor_log_ident;
static char *pamor_log_file;

static int pamor_same(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

static void pamor_log_setup(const struct config *cfg)
{
	const char *ident = cfg && cfg->syslog_ident ? cfg->syslog_ident : "openai-revoke";
	int facility = cfg ? cfg->syslog_facility : LOG_AUTHPRIV;
	int level = cfg ? cfg->log_level : LOG_INFO;
	const char *file = cfg ? cfg->log_file : NULL;

	pthread_mutex_lock(&pamor_log_lock);
	if (!pamor_log_ready || facility != pamor_log_facility ||
	    level != pamor_log_level || !pamor_same(ident, pamor_log_ident) ||
	    !pamor_same(file, pamor_log_file)) {
		char *new_ident = strdup(ident);
		char *new_file = file ? strdup(file) : NULL;

		if (pamor_log_ready)
			log_teardown();
		log_setup(LOG_MODE_HOSTED, ident, facility, level, file);
		free(pamor_log_ident);
		free(pamor_log_file);
		pamor_log_ident = new_ident;
		pamor_log_file = new_file;
		pamor_log_facility = facility;
		pamor_log_level = level;
		/* Without the copies the next call cannot compare: set up again. */
		pamor_log_ready = new_ident && (!file || new_file);
	}
	pthread_mutex_unlock(&pamor_log_lock);
}

/* The module is linked -z nodelete (see module/pam.am), so this runs when
 * the application exits: close the log_file the logger holds. */
__attribute__((destructor)) static void pamor_unload(void)
{
	pthread_mutex_lock(&pamor_log_lock);
	if (pamor_log_ready)
		log_teardown();
	pamor_log_ready = 0;
	free(pamor_log_ident);
	free(pamor_log_file);
	pamor_log_ident = pamor_log_file = NULL;
	pthread_mutex_unlock(&pamor_log_lock);
}

/* Identify the login on every line: service, user and remote host come
 * from the application, user and rhost from whoever is logging in, so they
 * go through the quoting of logline. */
struct pamor_ctx {
	const char *service;
	const char *user;
	const char *rhost;
};

static void pamor_line_start(struct logline *l, const struct pamor_ctx *ctx)
{
	logline_init(l);
	logline_add(l, "source", "pam");
	if (ctx->service)
		logline_add(l, "service", ctx->service);
	if (ctx->user)
		logline_add(l, "user", ctx->user);
	if (ctx->rhost)
		logline_add(l, "rhost", ctx->rhost);
}

/* Configuration messages may hold one problem per line: keep one log line. */
static void pamor_flatten(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' '))
		s[--n] = '\0';
	for (; *s; s++)
		if (*s == '\n' || *s == '\r')
			*s = ';';
}

static void pamor_log_failure(const struct pamor_ctx *ctx, const char *what, char *err)
{
	struct logline l;

	pamor_flatten(err);
	pamor_line_start(&l, ctx);
	logline_add(&l, "action", "ignored");
	logline_add(&l, "problem", what);
	logline_add(&l, "error", err);
	log_line(LOG_ERR, &l);
}

/* ---- arguments ------------------------------------------------------
 * As pam_faillock does: the file named by config= is read first, then the
 * other arguments override it in order through the config parser itself,
 * so "debug" is log_level debug and KEYWORD=VALUE is any keyword of
 * openai-revoke.conf.  enforce is the one option of this module alone. */

/* 0: *out is the configuration to use.  -1: err says why; *out is NULL, or
 * the file as loaded (only good for logging the refusal). */
static int pamor_configure(int argc, const char **argv, struct config **out,
                           int *enforce, char *err, size_t errlen)
{
	const char *path = CONFIG_DEFAULT_PATH;
	struct config *cfg = NULL;
	int i, status = -1;

	*out = NULL;
	*enforce = 0;
	for (i = 0; i < argc; i++)
		if (strncmp(argv[i], "config=", 7) == 0)
			path = argv[i] + 7;
	if (config_load(path, &cfg, err, errlen) != 0)
		goto out;

	for (i = 0; i < argc; i++) {
		const char *arg = argv[i], *eq = strchr(arg, '=');
		char keyword[PAMOR_KEYWORD_MAX];

		if (strncmp(arg, "config=", 7) == 0)
			continue;
		if (strcmp(arg, "enforce") == 0) {
			*enforce = 1;
			continue;
		}
		if (strcmp(arg, "debug") == 0) {
			if (config_set(cfg, "log_level", "debug", PAMOR_ARG_SOURCE, i + 1,
			               err, errlen) != 0)
				goto out;
			continue;
		}
		if (!eq || eq == arg || (size_t)(eq - arg) >= sizeof(keyword)) {
			snprintf(err, errlen, "%s:%d: %.64s: unknown option", PAMOR_ARG_SOURCE,
			         i + 1, arg);
			goto out;
		}
		memcpy(keyword, arg, (size_t)(eq - arg));
		keyword[eq - arg] = '\0';
		if (config_set(cfg, keyword, eq + 1, PAMOR_ARG_SOURCE, i + 1, err, errlen) != 0)
			goto out;
	}
	/* Overrides may have changed what the cross-keyword checks looked at. */
	if (config_finish(cfg, err, errlen) != 0)
		goto out;
	status = 0;
out:
	/* Even a refused configuration says where to log the refusal. */
	*out = cfg;
	return status;
}

/* ---- the PAM entry point -------------------------------------------- */

/* Only account management: placed in an auth, password or session stack the
 * module fails to resolve there, and Linux-PAM says so in the log, rather
 * than seeming to work while doing nothing. */
PAMOR_EXPORT int pam_sm_acct_mgmt(pam_handle_t *pamh, int flags, int argc,
                                  const char **argv)
{
	char err[PAMOR_ERR_MAX] = "";
	struct pamor_ctx ctx = { NULL, NULL, NULL };
	struct config *cfg = NULL;
	struct spool *spool = NULL;
	struct job *job = NULL;
	struct logline l;
	LDAP *ld = NULL;
	const void *item;
	int enforce = 0, disabled = 0, found, result = PAM_IGNORE;

	(void)flags;
	if (pam_get_item(pamh, PAM_SERVICE, &item) == PAM_SUCCESS && item)
		ctx.service = item;
	if (pam_get_item(pamh, PAM_RHOST, &item) == PAM_SUCCESS && item && *(const char *)item)
		ctx.rhost = item;
	/* pam_get_user() could prompt; an account stack has its user already. */
	if (pam_get_item(pamh, PAM_USER, &item) == PAM_SUCCESS && item)
		ctx.user = item;

	if (pamor_configure(argc, argv, &cfg, &enforce, err, sizeof(err)) != 0) {
		/* A refused configuration enforces nothing either. */
		enforce = 0;
		pamor_log_setup(cfg);
		pamor_log_failure(&ctx, "configuration", err);
		goto out;
	}
	pamor_log_setup(cfg);

	if (!ctx.user || !*ctx.user) {
		snprintf(err, sizeof(err), "the application gave no user name");
		pamor_log_failure(&ctx, "user", err);
		goto out;
	}
	if (strlen(ctx.user) > PAMOR_USER_MAX) {
		snprintf(err, sizeof(err), "user name longer than %d bytes", PAMOR_USER_MAX);
		pamor_log_failure(&ctx, "user", err);
		goto out;
	}

	/* PAM_USER is a login name, never a DN: directory_read_user would take
	 * a name with '=' for one, so such a name matches no account here. */
	if (strchr(ctx.user, '=')) {
		snprintf(err, sizeof(err), "user name contains '=': not a login name");
		found = 0;
		goto none;
	}
	if (directory_connect(cfg, &ld, err, sizeof(err)) != 0) {
		pamor_log_failure(&ctx, "directory", err);
		goto out;
	}
	/* The server decides both questions (user_filter, then disabled_filter
	 * on that entry), so computed attributes (roles, CoS) and matching
	 * rules (Active Directory's bitwise one) work as the directory means. */
	found = directory_read_user(ld, cfg, ctx.user, "pam", &job, &disabled, err,
	                            sizeof(err));
	if (found < 0) {
		pamor_log_failure(&ctx, "directory", err);
		goto out;
	}
none:
	if (found == 0 || !disabled) {
		if (log_enabled(LOG_DEBUG)) {
			pamor_line_start(&l, &ctx);
			logline_add(&l, "action", "none");
			logline_add(&l, "account", found == 0 ? "unknown" : "active");
			if (job)
				logline_add(&l, "dn", job->dn);
			if (found == 0 && *err) {
				pamor_flatten(err);
				logline_add(&l, "detail", err);
			}
			log_line(LOG_DEBUG, &l);
		}
		goto out;
	}

	/* Disabled.  With enforce the answer stands even if the job cannot be
	 * queued: the directory has spoken, the spool problem is logged. */
	if (enforce)
		result = PAM_ACCT_EXPIRED;
	if (job_set(&job->reason, "disabled") != 0) {
		snprintf(err, sizeof(err), "out of memory");
		pamor_log_failure(&ctx, "memory", err);
		goto out;
	}
	if (spool_open(cfg->spool_dir, &spool, err, sizeof(err)) != 0 ||
	    spool_enqueue(spool, job, err, sizeof(err)) != 0) {
		pamor_flatten(err);
		pamor_line_start(&l, &ctx);
		logline_add(&l, "action", "error");
		logline_add(&l, "reason", "disabled");
		logline_add(&l, "dn", job->dn);
		logline_add(&l, "error", err);
		logline_add(&l, "enforce", enforce ? "yes" : "no");
		log_line(LOG_ERR, &l);
		goto out;
	}
	logline_init(&l);
	logline_add(&l, "event", job->id);
	logline_add(&l, "action", "queued");
	logline_add(&l, "source", "pam");
	logline_add(&l, "reason", "disabled");
	if (ctx.service)
		logline_add(&l, "service", ctx.service);
	logline_add(&l, "user", ctx.user);
	if (ctx.rhost)
		logline_add(&l, "rhost", ctx.rhost);
	logline_add(&l, "dn", job->dn);
	logline_add(&l, "enforce", enforce ? "yes" : "no");
	log_line(LOG_NOTICE, &l);
out:
	if (spool)
		spool_close(spool);
	if (job)
		job_free(job);
	if (ld)
		directory_close(ld);
	if (cfg)
		config_free(cfg);
	return result;
}
