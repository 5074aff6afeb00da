/* openai-revoke: the command line.  Each command loads the one configuration,
 * sets up logging and drives the engine; only main() touches signals, and
 * the exit status is 0 success, 1 failure, 2 usage or configuration error. */
#include "or_build.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "config.h"
#include "directory.h"
#include "job.h"
#include "log.h"
#include "mapping.h"
#include "openai.h"
#include "reconcile.h"
#include "spool.h"
#include "worker.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

#define PROG "openai-revoke"
#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define ERRLEN 8192

struct cli {
	const char *config_path;
	int verbose;
	struct config *cfg;
	char *key;          /* secret_free */
	char *ldap_error;   /* set once connecting failed: not retried per USER */
	int as_owner;       /* effective ids switched to the spool's owner */
	gid_t saved_egid;   /* ... and the group to return to */
};

/* The key from OPENAI_ADMIN_KEY, copied and wiped from the environment at
 * start-up so it is not inherited and not readable in /proc/PID/environ. */
static char *env_key;
static const char *env_key_problem;  /* set: the variable was there but unusable */

/* main() owns signals; the handler only raises flags. */
static volatile sig_atomic_t stop_requested;
static struct worker *volatile run_worker;

static void progress_clear(void);

__attribute__((format(printf, 1, 2)))
static void errmsg(const char *fmt, ...)
{
	va_list ap;

	char buf[4096];
	unsigned char *p;
	int n;

	progress_clear();
	fflush(stdout);
	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		snprintf(buf, sizeof(buf), "(unprintable message)");
	/* Messages echo USER arguments and API answers: one line each,
	 * nothing a terminal would interpret. */
	for (p = (unsigned char *)buf; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			*p = '?';
	fprintf(stderr, PROG ": %s%s\n", buf, n >= (int)sizeof(buf) ? "..." : "");
}

/* Print a multi-line error text, one prefixed line each. */
static void errlines(const char *text)
{
	const char *p = text, *nl;

	while (p && *p) {
		nl = strchr(p, '\n');
		if (!nl) {
			errmsg("%s", p);
			break;
		}
		if (nl > p)
			errmsg("%.*s", (int)(nl - p), p);
		p = nl + 1;
	}
}

/* Directory values end up on a terminal: no control byte gets through. */
static void print_clean(FILE *fp, const char *s, size_t max)
{
	size_t n = 0;

	if (!s) {
		fputc('-', fp);
		return;
	}
	for (; *s && n < max; s++, n++)
		fputc(((unsigned char)*s < 0x20 || *s == 0x7f) ? '?' : *s, fp);
	if (*s)
		fputs("...", fp);
}

/* A progress line for long work, only when a person watches stderr; it is
 * cleared before anything else is printed. */
static int progress_shown;

static void progress_clear(void)
{
	if (progress_shown) {
		fputs("\r\033[K", stderr);
		progress_shown = 0;
	}
}

static void progress(const char *what, int done, int total)
{
	if (total < 5 || !isatty(STDERR_FILENO))
		return;
	fprintf(stderr, "\r%s %d/%d", what, done + 1, total);
	progress_shown = 1;
}

/* ---- help ---------------------------------------------------------------- */

static const char usage_main[] =
	"Usage: " PROG " [-c FILE] [-v] COMMAND [ARGS...]\n"
	"       " PROG " --version | --help\n"
	"\n"
	"Remove people from an OpenAI organization when their directory account is\n"
	"disabled; this is the operator's tool for the same engine the slapd plugin runs.\n"
	"\n"
	"Commands:\n"
	"  check                          configuration, admin key, spool, API and LDAP\n"
	"  map [--json] [--id] USER...    how USER (uid, DN or address) resolves; changes nothing\n"
	"  revoke [--now] [--dry-run] [--id] USER...\n"
	"                                 queue (or with --now perform) a removal\n"
	"  queue [list | show ID | retry ID | release [ID] | drop ID]\n"
	"                                 look at and act on the spool\n"
	"  run [--once]                   drain the spool in the foreground\n"
	"  reconcile [--apply [--include-absent]] [--all] [--json]\n"
	"                                 members of the organization whose account is\n"
	"                                 disabled or absent\n"
	"\n"
	"Options:\n"
	"  -c, --config FILE   configuration file (default " CONFIG_DEFAULT_PATH ")\n"
	"  -v, --verbose       debug lines on standard error\n"
	"  -h, --help          this text; COMMAND --help describes one command\n"
	"  -V, --version       print the version\n"
	"\n"
	"Exit status: 0 success, 1 failure, 2 usage or configuration error.\n"
	"The environment variable OPENAI_ADMIN_KEY, when set, replaces admin_key_file.\n"
	"See openai-revoke(8) and openai-revoke.conf(5).\n";

static const char usage_check[] =
	"Usage: " PROG " [-c FILE] check\n"
	"\n"
	"Load and validate the configuration, read the admin key (or OPENAI_ADMIN_KEY),\n"
	"load the map file, open the spool, make one list call to the API and bind to\n"
	"the directory through ldap_uri.  Prints one line per item: \"ok   ITEM\" or\n"
	"\"FAIL ITEM: why\".  Exit 0 when all pass, 2 when the configuration, key or map\n"
	"file is wrong, 1 when something else failed.\n";

static const char usage_map[] =
	"Usage: " PROG " [-c FILE] map [--json] [--id] USER...\n"
	"\n"
	"Show how each USER resolves to an OpenAI user; changes nothing.  USER is an\n"
	"address (has '@', looked up in the organization), a DN (has '=') or a login\n"
	"name (login_attribute, default uid), both read from the directory.\n"
	"\n"
	"  --json   print a JSON array instead of lines\n"
	"  --id     every USER is an OpenAI user ID (user-...)\n"
	"\n"
	"Exit 0 when every USER was answered (\"not a member\" is an answer), 1 otherwise.\n";

static const char usage_revoke[] =
	"Usage: " PROG " [-c FILE] revoke [--now] [--dry-run] [--id] USER...\n"
	"\n"
	"Remove each USER from the organization.  USER is an address, a DN or a login\n"
	"name, as for map.  A USER that matches no account or several is refused, and\n"
	"then nothing is done for any USER.\n"
	"\n"
	"  --now       do it now in this process and print the outcome; without it the\n"
	"              job is queued in the spool (the worker does it) and its event id\n"
	"              is printed\n"
	"  --dry-run   log what would be done, change nothing\n"
	"  --id        every USER is an OpenAI user ID (user-...)\n"
	"\n"
	"Exit 0 when every job was queued, or (--now) ended removed, already gone, not a\n"
	"member or would remove; 1 otherwise.\n";

static const char usage_queue[] =
	"Usage: " PROG " [-c FILE] queue [list [--json] | show ID | retry ID | release [ID] | drop ID]\n"
	"\n"
	"  list        every job in the spool: state, id, age, attempts, next attempt,\n"
	"              user, last error (--json: an array)\n"
	"  show ID     the job's record, as JSON\n"
	"  retry ID    move a deferred or failed job back to the queue, due now\n"
	"  release [ID]\n"
	"              release a job held by the circuit breaker (all of them without ID)\n"
	"  drop ID     delete a job without doing it (logged as an operator decision)\n"
	"\n"
	"Exit 0 on success, 1 when the job is missing or in the wrong state.\n";

static const char usage_run[] =
	"Usage: " PROG " [-c FILE] run [--once]\n"
	"\n"
	"Drain the spool in the foreground until SIGTERM or SIGINT (the job in hand is\n"
	"finished or returned to the queue first).  Only one worker drains a spool.\n"
	"\n"
	"  --once   stop when nothing is due now\n"
	"\n"
	"Exit 0 when stopped or done; 1 when a job was deferred, held or failed, or\n"
	"(with --once) another worker holds the spool lock.\n";

static const char usage_reconcile[] =
	"Usage: " PROG " [-c FILE] reconcile [--apply [--include-absent]] [--all] [--json]\n"
	"\n"
	"Read every member of the organization and every account of the directory\n"
	"(paged), and classify each member: disabled (the account is disabled),\n"
	"absent (no account maps to it), protected, exempt, active.  A table of the\n"
	"members that need attention, with a summary; changes nothing unless --apply.\n"
	"\n"
	"  --apply            queue a removal for each disabled member (the worker's\n"
	"                     policies still apply when the jobs run)\n"
	"  --include-absent   with --apply, absent members too\n"
	"  --all              list active members as well\n"
	"  --json             print a JSON object (members, summary)\n"
	"\n"
	"Exit 0 when both sides were read completely (and the jobs queued), 1 when\n"
	"either could not be read (nothing is then queued).\n";

/* ---- option parsing --------------------------------------------------- */

enum { OPT_NOW = 256, OPT_DRY_RUN, OPT_JSON, OPT_ONCE, OPT_APPLY, OPT_ALL, OPT_ABSENT, OPT_ID };

/* Per-command options, plus -c/-v accepted after the command too. */
struct cmd_opts {
	int now, dry_run, json, once, apply, all, absent, id;
};

static int parse_cmd_opts(struct cli *cli, const char *cmd, const char *usage,
                          int argc, char **argv, const struct option *extra,
                          struct cmd_opts *o)
{
	struct option longopts[16];
	size_t n = 0;
	int c;

	longopts[n++] = (struct option){ "help", no_argument, NULL, 'h' };
	longopts[n++] = (struct option){ "config", required_argument, NULL, 'c' };
	longopts[n++] = (struct option){ "verbose", no_argument, NULL, 'v' };
	for (; extra && extra->name && n < 15; extra++)
		longopts[n++] = *extra;
	longopts[n] = (struct option){ NULL, 0, NULL, 0 };

	memset(o, 0, sizeof(*o));
	optind = 0;   /* glibc: 0 re-initialises getopt for a new vector */
	opterr = 0;
	while ((c = getopt_long(argc, argv, "hc:v", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			fputs(usage, stdout);
			return 1;
		case 'c':
			cli->config_path = optarg;
			break;
		case 'v':
			cli->verbose = 1;
			break;
		case OPT_NOW:
			o->now = 1;
			break;
		case OPT_DRY_RUN:
			o->dry_run = 1;
			break;
		case OPT_JSON:
			o->json = 1;
			break;
		case OPT_ONCE:
			o->once = 1;
			break;
		case OPT_APPLY:
			o->apply = 1;
			break;
		case OPT_ALL:
			o->all = 1;
			break;
		case OPT_ABSENT:
			o->absent = 1;
			break;
		case OPT_ID:
			o->id = 1;
			break;
		default:
			if (optopt && optopt < 256)
				errmsg("%s: unknown option or missing argument: -%c", cmd, optopt);
			else
				errmsg("%s: unknown option or missing argument: %s", cmd,
				       argv[optind - 1]);
			fprintf(stderr, "Try '" PROG " %s --help'.\n", cmd);
			return -1;
		}
	}
	return 0;
}

/* ---- shared set-up -------------------------------------------------------- */

static int load_config(struct cli *cli)
{
	char err[ERRLEN];
	enum log_mode mode;
	int level;

	err[0] = '\0';
	if (config_load(cli->config_path, &cli->cfg, err, sizeof(err)) < 0) {
		cli->cfg = NULL;
		errlines(err[0] ? err : "cannot load the configuration");
		return -1;
	}
	mode = (cli->verbose || isatty(STDERR_FILENO)) ? LOG_MODE_STDERR : LOG_MODE_DAEMON;
	level = cli->verbose ? LOG_DEBUG : cli->cfg->log_level;
	log_setup(mode, cli->cfg->syslog_ident, cli->cfg->syslog_facility, level,
	          cli->cfg->log_file);
	return 0;
}

static int load_key(struct cli *cli, char *err, size_t errlen)
{
	if (cli->key)
		return 0;
	if (env_key_problem) {
		snprintf(err, errlen, "OPENAI_ADMIN_KEY %s", env_key_problem);
		return -1;
	}
	if (env_key) {
		cli->key = secret_dup(env_key);
		if (!cli->key) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		return 0;
	}
	return config_read_key(cli->cfg, &cli->key, err, errlen);
}

static const char *operator_name(void)
{
	static char name[64];
	struct passwd *pw;
	const char *sudo = getenv("SUDO_USER");

	if (name[0])
		return name;
	pw = getpwuid(getuid());
	if (sudo && *sudo)
		snprintf(name, sizeof(name), "%s(sudo:%s)", pw ? pw->pw_name : "?", sudo);
	else if (pw)
		snprintf(name, sizeof(name), "%s", pw->pw_name);
	else
		snprintf(name, sizeof(name), "uid:%ld", (long)getuid());
	return name;
}

static const char *job_who(const struct job *j)
{
	if (j->dn && *j->dn)
		return j->dn;
	if (j->uid && *j->uid)
		return j->uid;
	if (j->emails && j->emails[0])
		return j->emails[0];
	if (j->openai_user_id)
		return j->openai_user_id;
	return "-";
}

/* An address is what has one '@' with something on both sides and no '='
 * (a DN may hold an '@' in a value). */
static int user_is_address(const char *user)
{
	const char *at = strchr(user, '@');

	return at && at != user && at[1] && !strchr(at + 1, '@') && !strchr(user, '=');
}

static int user_is_sane(const char *user, char *err, size_t errlen)
{
	const unsigned char *p;

	if (!*user) {
		snprintf(err, errlen, "empty user");
		return 0;
	}
	if (strlen(user) > 1024) {
		snprintf(err, errlen, "longer than 1024 bytes");
		return 0;
	}
	for (p = (const unsigned char *)user; *p; p++)
		if (*p < 0x20 || *p == 0x7f) {
			snprintf(err, errlen, "contains a control character");
			return 0;
		}
	return 1;
}

/* OpenAI user IDs go into URL paths: letters, digits, '-' and '_' only. */
static int id_is_openai(const char *id)
{
	const char *p;

	if (!*id || strlen(id) > 128)
		return 0;
	for (p = id; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
		      (*p >= 'A' && *p <= 'Z') || *p == '-' || *p == '_'))
			return 0;
	return 1;
}

/* Build the job for USER: an OpenAI user ID (as_id), an address directly,
 * a uid or DN from the directory (connected on first need).  1 built, 0
 * refused, -1 error. */
static int build_job(struct cli *cli, LDAP **ld, const char *user, int as_id,
                     struct job **out, int *disabled, char *err, size_t errlen)
{
	struct job *j;

	*out = NULL;
	*disabled = -1;
	if (!user_is_sane(user, err, errlen))
		return 0;
	if (as_id) {
		if (!id_is_openai(user)) {
			snprintf(err, errlen, "not an OpenAI user ID (letters, digits, '-', '_')");
			return 0;
		}
		j = job_new("cli", "manual");
		if (!j || job_set(&j->openai_user_id, user) < 0) {
			if (j)
				job_free(j);
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		*out = j;
		return 1;
	}
	if (user_is_address(user)) {
		if (strchr(user, ' ')) {
			snprintf(err, errlen, "not an address");
			return 0;
		}
		j = job_new("cli", "manual");
		if (!j || job_add_email(j, user) < 0) {
			if (j)
				job_free(j);
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		*out = j;
		return 1;
	}
	if (cli->ldap_error) {
		snprintf(err, errlen, "%s", cli->ldap_error);
		return -1;
	}
	if (!*ld && directory_connect(cli->cfg, ld, err, errlen) < 0) {
		cli->ldap_error = strdup(err);
		return -1;
	}
	return directory_read_user(*ld, cli->cfg, user, "cli", out, disabled, err, errlen);
}

/* A map file that does not parse is a configuration error (exit 2) for
 * every command that would use it, found before anything is done. */
static int check_map_file(struct cli *cli)
{
	struct mapfile *mf = NULL;
	char err[ERRLEN];

	if (!cli->cfg->map_file)
		return 0;
	if (mapfile_load(cli->cfg->map_file, &mf, err, sizeof(err)) < 0) {
		errlines(err);
		return -1;
	}
	mapfile_free(mf);
	return 0;
}

/* Run as root, the command touches the spool as the spool's owner (the
 * directory server's user, e.g. openldap): files it creates there must stay
 * readable and writable by the worker inside slapd.  Only the effective ids
 * change, so the key and the directory are still read as root. */
static int spool_enter(struct cli *cli)
{
	struct stat st;

	if (cli->as_owner || geteuid() != 0)
		return 0;
	if (stat(cli->cfg->spool_dir, &st) != 0 || st.st_uid == 0)
		return 0;
	cli->saved_egid = getegid();
	if (setegid(st.st_gid) != 0 || seteuid(st.st_uid) != 0) {
		int e = errno;

		(void)setegid(cli->saved_egid);
		errmsg("cannot act as uid %ld, the owner of %s: %s", (long)st.st_uid,
		       cli->cfg->spool_dir, strerror(e));
		return -1;
	}
	cli->as_owner = 1;
	log_msg(LOG_DEBUG, "acting as uid %ld gid %ld, the owner of the spool %s",
	        (long)st.st_uid, (long)st.st_gid, cli->cfg->spool_dir);
	return 0;
}

static void spool_leave(struct cli *cli)
{
	if (!cli->as_owner)
		return;
	/* The saved set-user-ID is still 0: this cannot be refused. */
	if (seteuid(0) != 0 || setegid(cli->saved_egid) != 0)
		errmsg("cannot return to root: %s", strerror(errno));
	cli->as_owner = 0;
}

/* ---- check --------------------------------------------------------------- */

struct check_state {
	int worst;   /* exit status so far */
};

/* One line of the check, "ok   ..." or "FAIL ...": control bytes from API
 * or directory messages are replaced so each item stays one line. */
static void check_line(const char *tag, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
static void check_line(const char *tag, const char *fmt, va_list ap)
{
	char buf[2048];
	unsigned char *p;

	if (vsnprintf(buf, sizeof(buf), fmt, ap) < 0)
		snprintf(buf, sizeof(buf), "(unprintable)");
	for (p = (unsigned char *)buf; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			*p = '?';
	printf("%s%s\n", tag, buf);
}

static void check_ok(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void check_ok(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	check_line("ok   ", fmt, ap);
	va_end(ap);
}

static void check_fail(struct check_state *st, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void check_fail(struct check_state *st, int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	check_line("FAIL ", fmt, ap);
	va_end(ap);
	if (status > st->worst)
		st->worst = status;
}

static const char *const spool_subdirs[] = { "tmp", "queue", "deferred", "held", "failed" };

/* spool_open creates what is missing; this says whether this user can also
 * write where jobs go.  0, or 1 + the index of the first that fails. */
static int spool_writable(const char *dir)
{
	char path[4096];
	size_t i;

	for (i = 0; i < sizeof(spool_subdirs) / sizeof(spool_subdirs[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, spool_subdirs[i]);
		if (faccessat(AT_FDCWD, path, W_OK | X_OK, AT_EACCESS) != 0)
			return (int)i + 1;
	}
	return 0;
}

static int check_first_user(const struct openai_user *u, void *arg)
{
	(void)u;
	(*(int *)arg)++;
	return 1;
}

static int cmd_check(struct cli *cli, int argc, char **argv)
{
	struct check_state st = { EXIT_OK };
	struct cmd_opts o;
	char err[ERRLEN];
	struct spool *sp = NULL;
	struct openai_client *oc = NULL;
	LDAP *ld = NULL;
	int r;

	r = parse_cmd_opts(cli, "check", usage_check, argc, argv, NULL, &o);
	if (r)
		return r > 0 ? EXIT_OK : EXIT_USAGE;
	if (optind < argc) {
		errmsg("check: unexpected argument '%s'", argv[optind]);
		return EXIT_USAGE;
	}
	if (load_config(cli) < 0) {
		printf("FAIL config %s\n", cli->config_path);
		return EXIT_USAGE;
	}
	check_ok("config %s", cli->config_path);

	err[0] = '\0';
	if (load_key(cli, err, sizeof(err)) < 0)
		check_fail(&st, EXIT_USAGE, "admin key: %s", err);
	else if (env_key)
		check_ok("admin key: from OPENAI_ADMIN_KEY");
	else
		check_ok("admin key: %s", cli->cfg->admin_key_file);

	if (cli->cfg->map_file) {
		struct mapfile *mf = NULL;

		if (mapfile_load(cli->cfg->map_file, &mf, err, sizeof(err)) < 0) {
			check_fail(&st, EXIT_USAGE, "map file %s", cli->cfg->map_file);
			errlines(err);
		} else {
			check_ok("map file %s (%zu entries)", cli->cfg->map_file, mapfile_size(mf));
			mapfile_free(mf);
		}
	}

	if (spool_enter(cli) < 0)
		check_fail(&st, EXIT_FAIL, "spool %s: cannot act as its owner", cli->cfg->spool_dir);
	else if (spool_open(cli->cfg->spool_dir, &sp, err, sizeof(err)) < 0)
		check_fail(&st, EXIT_FAIL, "spool %s: %s", cli->cfg->spool_dir, err);
	else if ((r = spool_writable(cli->cfg->spool_dir)) != 0)
		check_fail(&st, EXIT_FAIL, "spool %s: cannot write in %s/: %s", cli->cfg->spool_dir,
		           r > 0 ? spool_subdirs[r - 1] : "?", strerror(errno));
	else
		check_ok("spool %s", cli->cfg->spool_dir);
	spool_leave(cli);

	if (!cli->key) {
		check_fail(&st, EXIT_FAIL, "API %s: not tried without an admin key", cli->cfg->api_url);
	} else if (openai_global_init() < 0 ||
	           !(oc = openai_client_new(cli->cfg, cli->key, err, sizeof(err)))) {
		check_fail(&st, EXIT_USAGE, "API %s: %s", cli->cfg->api_url, err);
	} else {
		struct openai_result res;
		int seen = 0;

		memset(&res, 0, sizeof(res));
		if (openai_list_users(oc, check_first_user, &seen, &res) != OPENAI_OK)
			check_fail(&st, EXIT_FAIL, "API %s: %s%s%s", cli->cfg->api_url,
			           openai_status_name(res.status), res.message[0] ? ": " : "",
			           res.message);
		else
			check_ok("API %s (users listed)", cli->cfg->api_url);
	}

	if (cli->cfg->ldap_uri && *cli->cfg->ldap_uri) {
		const char *how = cli->cfg->ldap_sasl_mech ? cli->cfg->ldap_sasl_mech :
		                  cli->cfg->ldap_binddn ? cli->cfg->ldap_binddn : "anonymous";

		if (directory_connect(cli->cfg, &ld, err, sizeof(err)) < 0) {
			size_t ul = strlen(cli->cfg->ldap_uri);

			/* directory errors usually start with the URI already */
			if (strncmp(err, cli->cfg->ldap_uri, ul) == 0 && err[ul] == ':')
				check_fail(&st, EXIT_FAIL, "LDAP %s", err);
			else
				check_fail(&st, EXIT_FAIL, "LDAP %s: %s", cli->cfg->ldap_uri, err);
		} else {
			LDAPMessage *res = NULL;
			char *noattrs[] = { LDAP_NO_ATTRS, NULL };
			struct timeval tv = { cli->cfg->ldap_timeout > 0 ? cli->cfg->ldap_timeout : 10, 0 };

			check_ok("LDAP %s (bound: %s)", cli->cfg->ldap_uri, how);
			r = ldap_search_ext_s(ld, cli->cfg->base, LDAP_SCOPE_BASE, "(objectClass=*)",
			                      noattrs, 0, NULL, NULL, &tv, 1, &res);
			if (r == LDAP_SUCCESS)
				check_ok("LDAP base %s", cli->cfg->base);
			else
				check_fail(&st, EXIT_FAIL, "LDAP base %s: %s", cli->cfg->base,
				           ldap_err2string(r));
			if (res)
				ldap_msgfree(res);
		}
	}

	if (ld)
		directory_close(ld);
	if (oc)
		openai_client_free(oc);
	if (sp)
		spool_close(sp);
	return st.worst;
}

/* ---- map ----------------------------------------------------------------- */

static const char *protected_by(const struct config *cfg, const struct openai_user *u)
{
	if (u->role && config_list_contains(cfg->protect_roles, u->role))
		return "protect_roles";
	if ((u->id && config_list_contains(cfg->protect_users, u->id)) ||
	    (u->email && config_list_contains(cfg->protect_users, u->email)))
		return "protect_users";
	return NULL;
}

static void json_set_str(json_t *o, const char *k, const char *v)
{
	json_object_set_new(o, k, v ? json_string(v) : json_null());
}

static int cmd_map(struct cli *cli, int argc, char **argv)
{
	static const struct option extra[] = {
		{ "json", no_argument, NULL, OPT_JSON },
		{ "id", no_argument, NULL, OPT_ID },
		{ NULL, 0, NULL, 0 }
	};
	struct cmd_opts o;
	char err[ERRLEN];
	struct openai_client *oc = NULL;
	struct mapping *mp = NULL;
	LDAP *ld = NULL;
	json_t *arr = NULL;
	int r, i, status = EXIT_OK;

	r = parse_cmd_opts(cli, "map", usage_map, argc, argv, extra, &o);
	if (r)
		return r > 0 ? EXIT_OK : EXIT_USAGE;
	if (optind >= argc) {
		errmsg("map: no USER given");
		fputs("Try '" PROG " map --help'.\n", stderr);
		return EXIT_USAGE;
	}
	if (load_config(cli) < 0)
		return EXIT_USAGE;
	if (load_key(cli, err, sizeof(err)) < 0) {
		errmsg("admin key: %s", err);
		return EXIT_USAGE;
	}
	if (openai_global_init() < 0 ||
	    !(oc = openai_client_new(cli->cfg, cli->key, err, sizeof(err)))) {
		errmsg("API: %s", err);
		status = EXIT_USAGE;
		goto out;
	}
	if (!(mp = mapping_new(cli->cfg, err, sizeof(err)))) {
		errlines(err);
		status = EXIT_USAGE;
		goto out;
	}
	if (o.json && !(arr = json_array())) {
		errmsg("out of memory");
		status = EXIT_FAIL;
		goto out;
	}

	for (i = optind; i < argc; i++) {
		const char *user = argv[i];
		struct job *j = NULL;
		struct mapping_result mr;
		struct openai_result res;
		json_t *jo = NULL;
		int disabled = -1;
		const char *prot = NULL;

		memset(&mr, 0, sizeof(mr));
		memset(&res, 0, sizeof(res));
		err[0] = '\0';
		progress("map", i - optind, argc - optind);
		if (o.json) {
			jo = json_object();
			json_set_str(jo, "user", user);
			json_array_append_new(arr, jo);
		}
		r = build_job(cli, &ld, user, o.id, &j, &disabled, err, sizeof(err));
		if (r <= 0) {
			if (jo) {
				json_set_str(jo, "result", r == 0 ? "no_account" : "error");
				json_set_str(jo, "error", err);
			} else {
				errmsg("%s: %s", user, err);
			}
			status = EXIT_FAIL;
			continue;
		}
		mapping_resolve(mp, oc, j, &mr, &res);
		progress_clear();
		if (mr.kind == MAPPING_FOUND)
			prot = protected_by(cli->cfg, &mr.user);
		if (jo) {
			json_set_str(jo, "dn", j->dn);
			if (disabled >= 0)
				json_object_set_new(jo, "disabled", json_boolean(disabled));
			switch (mr.kind) {
			case MAPPING_FOUND:
				json_set_str(jo, "result", "member");
				json_set_str(jo, "openai_user", mr.user.id);
				json_set_str(jo, "email", mr.user.email);
				json_set_str(jo, "role", mr.user.role);
				json_set_str(jo, "via", mr.via);
				json_set_str(jo, "protected", prot);
				if (mr.nmore > 0) {
					json_t *also = json_array();
					size_t k;

					for (k = 0; also && k < mr.nmore; k++) {
						json_t *x = json_object();

						json_set_str(x, "openai_user", mr.more[k].id);
						json_set_str(x, "email", mr.more[k].email);
						json_set_str(x, "role", mr.more[k].role);
						json_set_str(x, "protected", protected_by(cli->cfg, &mr.more[k]));
						json_array_append_new(also, x);
					}
					json_object_set_new(jo, "also", also ? also : json_null());
				}
				break;
			case MAPPING_NOT_MEMBER:
				json_set_str(jo, "result", "not_member");
				break;
			case MAPPING_EXEMPT:
				json_set_str(jo, "result", "exempt");
				json_set_str(jo, "via", mr.via ? mr.via : "map_file");
				break;
			default:
				json_set_str(jo, "result", "error");
				json_set_str(jo, "error", res.message);
				json_set_str(jo, "class", openai_status_name(res.status));
				status = EXIT_FAIL;
				break;
			}
		} else {
			switch (mr.kind) {
			case MAPPING_FOUND: {
				size_t k;

				/* One line per member the person's addresses matched. */
				for (k = 0; k <= mr.nmore; k++) {
					const struct openai_user *u = k ? &mr.more[k - 1] : &mr.user;
					const char *pk = k ? protected_by(cli->cfg, u) : prot;

					if (k) {
						if (disabled == 1)
							fputs(" [account disabled]", stdout);
						fputc('\n', stdout);
					}
					print_clean(stdout, user, 1024);
					printf(" -> %s (", u->id ? u->id : "?");
					print_clean(stdout, u->email, 256);
					printf(", %s) via %s", u->role ? u->role : "?",
					       mr.via ? mr.via : "?");
					if (pk)
						printf("; protected by %s", pk);
				}
				break;
			}
			case MAPPING_NOT_MEMBER:
				print_clean(stdout, user, 1024);
				fputs(" -> not a member", stdout);
				break;
			case MAPPING_EXEMPT:
				print_clean(stdout, user, 1024);
				printf(" -> exempt (via %s)", mr.via ? mr.via : "map_file");
				break;
			default:
				errmsg("%s: %s: %s", user, openai_status_name(res.status), res.message);
				status = EXIT_FAIL;
				break;
			}
			if (mr.kind != MAPPING_ERROR) {
				if (disabled == 1)
					fputs(" [account disabled]", stdout);
				fputc('\n', stdout);
			}
		}
		mapping_result_clear(&mr);
		job_free(j);
	}
	progress_clear();
	if (arr) {
		json_dumpf(arr, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
	}
out:
	if (arr)
		json_decref(arr);
	if (ld)
		directory_close(ld);
	if (mp)
		mapping_free(mp);
	if (oc)
		openai_client_free(oc);
	return status;
}

/* ---- revoke -------------------------------------------------------------- */

static void log_operator(int prio, const char *action, const struct job *j, const char *extra)
{
	struct logline l;

	logline_init(&l);
	logline_add(&l, "event", j->id[0] ? j->id : "-");
	logline_add(&l, "action", action);
	logline_add(&l, "operator", operator_name());
	if (j->dn)
		logline_add(&l, "dn", j->dn);
	if (j->uid)
		logline_add(&l, "uid", j->uid);
	if (j->emails && j->emails[0])
		logline_add(&l, "email", j->emails[0]);
	if (j->openai_user_id)
		logline_add(&l, "openai_user", j->openai_user_id);
	if (j->dry_run)
		logline_add(&l, "dry_run", "yes");
	if (extra)
		logline_add(&l, "state", extra);
	log_line(prio, &l);
}

/* The spool's name form, <ns since epoch>-<pid>-<counter>, for a job that
 * is processed without passing through the spool. */
static void make_event_id(struct job *j, int counter)
{
	struct timespec ts;
	int64_t ns;

	clock_gettime(CLOCK_REALTIME, &ts);
	ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	snprintf(j->id, sizeof(j->id), "%" PRId64 "-%ld-%d", ns, (long)getpid(), counter);
	if (j->created == 0)
		j->created = ns;
}

static int outcome_is_success(const char *outcome)
{
	static const char *const good[] = {
		"removed", "already_gone", "not_member", "would_remove", NULL
	};
	int i;

	for (i = 0; outcome && good[i]; i++)
		if (strcmp(outcome, good[i]) == 0)
			return 1;
	return 0;
}

static int cmd_revoke(struct cli *cli, int argc, char **argv)
{
	static const struct option extra[] = {
		{ "now", no_argument, NULL, OPT_NOW },
		{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
		{ "id", no_argument, NULL, OPT_ID },
		{ NULL, 0, NULL, 0 }
	};
	struct cmd_opts o;
	char err[ERRLEN];
	struct job **jobs = NULL;
	struct spool *sp = NULL;
	struct worker *w = NULL;
	LDAP *ld = NULL;
	int r, i, n, status = EXIT_OK;

	r = parse_cmd_opts(cli, "revoke", usage_revoke, argc, argv, extra, &o);
	if (r)
		return r > 0 ? EXIT_OK : EXIT_USAGE;
	if (optind >= argc) {
		errmsg("revoke: no USER given");
		fputs("Try '" PROG " revoke --help'.\n", stderr);
		return EXIT_USAGE;
	}
	if (load_config(cli) < 0)
		return EXIT_USAGE;
	n = argc - optind;
	jobs = calloc((size_t)n, sizeof(*jobs));
	if (!jobs) {
		errmsg("out of memory");
		return EXIT_FAIL;
	}

	/* Every USER is resolved before anything happens: one refusal means
	 * nothing is done, so a typo in a list never half-runs. */
	for (i = 0; i < n; i++) {
		int disabled = -1;

		err[0] = '\0';
		progress("looking up", i, n);
		r = build_job(cli, &ld, argv[optind + i], o.id, &jobs[i], &disabled, err,
		              sizeof(err));
		if (r <= 0) {
			errmsg("%s: %s", argv[optind + i], err);
			status = EXIT_FAIL;
			continue;
		}
		jobs[i]->dry_run = o.dry_run;
		if (disabled == 0)
			errmsg("note: %s is not disabled in the directory", jobs[i]->dn);
	}
	progress_clear();
	if (status != EXIT_OK) {
		errmsg("revoke: nothing done");
		goto out;
	}

	if (!o.now) {
		if (spool_enter(cli) < 0) {
			status = EXIT_FAIL;
			goto out;
		}
		if (spool_open(cli->cfg->spool_dir, &sp, err, sizeof(err)) < 0) {
			errmsg("spool %s: %s", cli->cfg->spool_dir, err);
			status = EXIT_FAIL;
			goto out;
		}
		for (i = 0; i < n; i++) {
			if (spool_enqueue(sp, jobs[i], err, sizeof(err)) < 0) {
				errmsg("%s: cannot queue: %s", argv[optind + i], err);
				status = EXIT_FAIL;
				continue;
			}
			log_operator(LOG_NOTICE, "queued", jobs[i], NULL);
			print_clean(stdout, argv[optind + i], 1024);
			printf(": queued event=%s\n", jobs[i]->id);
		}
		goto out;
	}

	if (load_key(cli, err, sizeof(err)) < 0) {
		errmsg("admin key: %s", err);
		status = EXIT_USAGE;
		goto out;
	}
	if (check_map_file(cli) < 0) {
		status = EXIT_USAGE;
		goto out;
	}
	if (spool_enter(cli) < 0) {
		status = EXIT_FAIL;
		goto out;
	}
	if (openai_global_init() < 0 ||
	    worker_new(cli->cfg, cli->key, &w, err, sizeof(err)) < 0) {
		errlines(err);
		status = EXIT_FAIL;
		w = NULL;
		goto out;
	}
	sp = worker_spool(w);
	for (i = 0; i < n; i++) {
		const char *outcome = NULL;
		char first_id[JOB_ID_MAX];

		/* An event id of the spool's form before the attempt, so every
		 * audit line of this job carries one. */
		make_event_id(jobs[i], i);
		snprintf(first_id, sizeof(first_id), "%s", jobs[i]->id);
		r = worker_process_now(w, jobs[i], &outcome);
		if (!outcome || !*outcome)
			outcome = "error";
		print_clean(stdout, argv[optind + i], 1024);
		printf(": %s event=%s", outcome, first_id);
		if (r == WORKER_QUEUE) {
			/* Retryable or held: the spool keeps it, the worker goes on. */
			if (spool_enqueue(sp, jobs[i], err, sizeof(err)) < 0) {
				errmsg("%s: cannot queue for retry: %s", argv[optind + i], err);
			} else {
				struct logline l;

				printf(", queued event=%s", jobs[i]->id);
				logline_init(&l);
				logline_add(&l, "event", first_id);
				logline_add(&l, "action", "queued");
				logline_add(&l, "queued_event", jobs[i]->id);
				logline_add(&l, "operator", operator_name());
				log_line(LOG_NOTICE, &l);
			}
		}
		fputc('\n', stdout);
		if (r != WORKER_DONE || !outcome_is_success(outcome)) {
			if (jobs[i]->last_error)
				errmsg("%s: %s", argv[optind + i], jobs[i]->last_error);
			status = EXIT_FAIL;
		}
	}
	sp = NULL; /* the worker's */
out:
	if (w)
		worker_free(w);
	if (sp)
		spool_close(sp);
	if (ld)
		directory_close(ld);
	for (i = 0; jobs && i < n; i++)
		if (jobs[i])
			job_free(jobs[i]);
	free(jobs);
	return status;
}

/* ---- queue --------------------------------------------------------------- */

static void fmt_age(char *buf, size_t len, int64_t secs)
{
	if (secs < 0)
		secs = 0;
	if (secs < 120)
		snprintf(buf, len, "%" PRId64 "s", secs);
	else if (secs < 7200)
		snprintf(buf, len, "%" PRId64 "m", secs / 60);
	else if (secs < 172800)
		snprintf(buf, len, "%" PRId64 "h", secs / 3600);
	else
		snprintf(buf, len, "%" PRId64 "d", secs / 86400);
}

static json_t *job_json(enum spool_state st, const struct job *j)
{
	char *s = job_to_json(j);
	json_t *o = NULL;

	if (s) {
		o = json_loads(s, 0, NULL);
		free(s);
	}
	if (!o)
		o = json_object();
	if (o) {
		json_object_set_new(o, "state", json_string(spool_state_name(st)));
		json_object_set_new(o, "id", json_string(j->id));
	}
	return o;
}

struct list_ctx {
	json_t *arr;
	int count;
	time_t now;
};

static int queue_list_cb(enum spool_state st, const struct job *j, void *arg)
{
	struct list_ctx *c = arg;
	char age[32], next[32];

	c->count++;
	if (c->arr) {
		json_t *o = job_json(st, j);
		if (o)
			json_array_append_new(c->arr, o);
		return 0;
	}
	fmt_age(age, sizeof(age), (int64_t)c->now - j->created / 1000000000);
	if (j->next_attempt > c->now) {
		char t[24];
		fmt_age(t, sizeof(t), j->next_attempt - (int64_t)c->now);
		snprintf(next, sizeof(next), "in %s", t);
	} else if (st == SPOOL_QUEUE || st == SPOOL_DEFERRED) {
		snprintf(next, sizeof(next), "now");
	} else {
		snprintf(next, sizeof(next), "-");
	}
	printf("%-8s %-32s %5s %8d %-9s ", spool_state_name(st), j->id, age, j->attempts, next);
	print_clean(stdout, job_who(j), 60);
	fputc(' ', stdout);
	print_clean(stdout, j->last_error ? j->last_error : "-", 60);
	fputc('\n', stdout);
	return 0;
}

/* IDs become file names in the spool: nothing but what the spool makes. */
static int id_is_valid(const char *id)
{
	const char *p;

	if (!*id || strlen(id) >= JOB_ID_MAX)
		return 0;
	for (p = id; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
		      (*p >= 'A' && *p <= 'Z') || *p == '-' || *p == '_'))
			return 0;
	return 1;
}

struct held_ctx {
	char **ids;
	size_t n, cap;
	int oom;
};

static int queue_held_cb(enum spool_state st, const struct job *j, void *arg)
{
	struct held_ctx *c = arg;

	if (st != SPOOL_HELD)
		return 0;
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 16;
		char **v = realloc(c->ids, cap * sizeof(*v));
		if (!v) {
			c->oom = 1;
			return 1;
		}
		c->ids = v;
		c->cap = cap;
	}
	if (!(c->ids[c->n] = strdup(j->id))) {
		c->oom = 1;
		return 1;
	}
	c->n++;
	return 0;
}

/* Move ID, which must be in one of the states of MASK, to TO. */
static int queue_move(struct spool *sp, const char *id, unsigned mask, enum spool_state to,
                      const char *action, const char *verb)
{
	enum spool_state st;
	struct job *j = NULL;
	int r, status = EXIT_FAIL;

	r = spool_find(sp, id, &st, &j);
	if (r < 0) {
		errmsg("%s: cannot read the spool", id);
		return EXIT_FAIL;
	}
	if (r == 0) {
		errmsg("%s: no such job", id);
		return EXIT_FAIL;
	}
	if (!(mask & (1u << st))) {
		errmsg("%s: job is %s, cannot %s it", id, spool_state_name(st), action);
		goto out;
	}
	r = spool_move_id(sp, id, to);
	if (r <= 0) {
		errmsg("%s: %s", id, r == 0 ? "no such job (gone meanwhile)" : "cannot move the job");
		goto out;
	}
	log_operator(LOG_NOTICE, action, j, spool_state_name(st));
	printf("%s %s\n", verb, id);
	status = EXIT_OK;
out:
	if (j)
		job_free(j);
	return status;
}

static int cmd_queue(struct cli *cli, int argc, char **argv)
{
	static const struct option extra[] = {
		{ "json", no_argument, NULL, OPT_JSON }, { NULL, 0, NULL, 0 }
	};
	struct cmd_opts o;
	char err[ERRLEN];
	struct spool *sp = NULL;
	const char *sub = "list", *id = NULL;
	int r, nargs, status = EXIT_OK;

	/* GNU getopt permutes, so "queue list --json" and "queue --json list" both work. */
	r = parse_cmd_opts(cli, "queue", usage_queue, argc, argv, extra, &o);
	if (r)
		return r > 0 ? EXIT_OK : EXIT_USAGE;
	nargs = argc - optind;
	if (nargs >= 1)
		sub = argv[optind];
	if (nargs >= 2)
		id = argv[optind + 1];
	if (nargs > 2) {
		errmsg("queue: too many arguments");
		return EXIT_USAGE;
	}
	if (strcmp(sub, "list") == 0 || strcmp(sub, "release") == 0) {
		/* ID optional (release) or absent (list) */
		if (id && strcmp(sub, "list") == 0) {
			errmsg("queue list: unexpected argument '%s'", id);
			return EXIT_USAGE;
		}
	} else if (strcmp(sub, "show") == 0 || strcmp(sub, "retry") == 0 ||
	           strcmp(sub, "drop") == 0) {
		if (!id) {
			errmsg("queue %s: ID missing", sub);
			fputs("Try '" PROG " queue --help'.\n", stderr);
			return EXIT_USAGE;
		}
	} else {
		errmsg("queue: unknown subcommand '%s'", sub);
		fputs("Try '" PROG " queue --help'.\n", stderr);
		return EXIT_USAGE;
	}
	if (id && !id_is_valid(id)) {
		errmsg("queue %s: '%s' is not a job id", sub, id);
		return EXIT_USAGE;
	}
	if (load_config(cli) < 0)
		return EXIT_USAGE;
	if (spool_enter(cli) < 0)
		return EXIT_FAIL;
	if (spool_open(cli->cfg->spool_dir, &sp, err, sizeof(err)) < 0) {
		errmsg("spool %s: %s", cli->cfg->spool_dir, err);
		return EXIT_FAIL;
	}

	if (strcmp(sub, "list") == 0) {
		struct list_ctx c = { NULL, 0, time(NULL) };

		if (o.json && !(c.arr = json_array())) {
			status = EXIT_FAIL;
			goto out;
		}
		if (!o.json)
			printf("%-8s %-32s %5s %8s %-9s %s %s\n", "STATE", "ID", "AGE", "ATTEMPTS",
			       "NEXT", "USER", "LAST_ERROR");
		if (spool_list(sp, -1, queue_list_cb, &c) < 0) {
			errmsg("cannot list the spool %s", cli->cfg->spool_dir);
			status = EXIT_FAIL;
		}
		if (c.arr) {
			json_dumpf(c.arr, stdout, JSON_INDENT(2));
			fputc('\n', stdout);
			json_decref(c.arr);
		}
	} else if (strcmp(sub, "show") == 0) {
		enum spool_state st;
		struct job *j = NULL;
		json_t *jo;

		r = spool_find(sp, id, &st, &j);
		if (r <= 0) {
			errmsg("%s: %s", id, r == 0 ? "no such job" : "cannot read the spool");
			status = EXIT_FAIL;
			goto out;
		}
		jo = job_json(st, j);
		if (jo) {
			json_dumpf(jo, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
			fputc('\n', stdout);
			json_decref(jo);
		} else {
			status = EXIT_FAIL;
		}
		job_free(j);
	} else if (strcmp(sub, "retry") == 0) {
		status = queue_move(sp, id, (1u << SPOOL_DEFERRED) | (1u << SPOOL_FAILED),
		                    SPOOL_QUEUE, "retry", "queued");
	} else if (strcmp(sub, "release") == 0 && id) {
		status = queue_move(sp, id, 1u << SPOOL_HELD, SPOOL_QUEUE, "release", "released");
	} else if (strcmp(sub, "release") == 0) {
		struct held_ctx c = { NULL, 0, 0, 0 };
		size_t k;

		if (spool_list(sp, SPOOL_HELD, queue_held_cb, &c) < 0 || c.oom) {
			errmsg("cannot list the held jobs");
			status = EXIT_FAIL;
		}
		for (k = 0; k < c.n; k++) {
			if (status == EXIT_OK &&
			    queue_move(sp, c.ids[k], 1u << SPOOL_HELD, SPOOL_QUEUE, "release",
			               "released") != EXIT_OK)
				status = EXIT_FAIL;
			free(c.ids[k]);
		}
		free(c.ids);
		if (c.n == 0 && status == EXIT_OK)
			printf("no held jobs\n");
	} else { /* drop */
		enum spool_state st;
		struct job *j = NULL;

		r = spool_find(sp, id, &st, &j);
		if (r <= 0) {
			errmsg("%s: %s", id, r == 0 ? "no such job" : "cannot read the spool");
			status = EXIT_FAIL;
			goto out;
		}
		if (st == SPOOL_ACTIVE) {
			errmsg("%s: the worker is processing this job; try again when it is not active",
			       id);
			status = EXIT_FAIL;
		} else if ((r = spool_drop_id(sp, id)) <= 0) {
			errmsg("%s: %s", id, r == 0 ? "no such job (gone meanwhile)" :
			       "cannot remove the job");
			status = EXIT_FAIL;
		} else {
			log_operator(LOG_NOTICE, "dropped", j, spool_state_name(st));
			printf("dropped %s\n", id);
		}
		job_free(j);
	}
out:
	spool_close(sp);
	return status;
}

/* ---- reconcile ------------------------------------------------------------ */

static int cmd_reconcile(struct cli *cli, int argc, char **argv)
{
	static const struct option extra[] = {
		{ "apply", no_argument, NULL, OPT_APPLY },
		{ "include-absent", no_argument, NULL, OPT_ABSENT },
		{ "all", no_argument, NULL, OPT_ALL },
		{ "json", no_argument, NULL, OPT_JSON },
		{ NULL, 0, NULL, 0 }
	};
	struct cmd_opts o;
	char err[ERRLEN];
	struct reconcile rec;
	struct openai_client *oc = NULL;
	struct mapfile *mf = NULL;
	struct spool *sp = NULL;
	struct openai_result res;
	LDAP *ld = NULL;
	int r, status = EXIT_FAIL;

	memset(&rec, 0, sizeof(rec));
	r = parse_cmd_opts(cli, "reconcile", usage_reconcile, argc, argv, extra, &o);
	if (r)
		return r > 0 ? EXIT_OK : EXIT_USAGE;
	if (optind < argc) {
		errmsg("reconcile: unexpected argument '%s'", argv[optind]);
		return EXIT_USAGE;
	}
	if (o.absent && !o.apply) {
		errmsg("reconcile: --include-absent goes with --apply");
		return EXIT_USAGE;
	}
	if (load_config(cli) < 0)
		return EXIT_USAGE;
	if (load_key(cli, err, sizeof(err)) < 0) {
		errmsg("admin key: %s", err);
		return EXIT_USAGE;
	}
	if (cli->cfg->map_file &&
	    mapfile_load(cli->cfg->map_file, &mf, err, sizeof(err)) < 0) {
		errlines(err);
		return EXIT_USAGE;
	}
	if (openai_global_init() < 0 ||
	    !(oc = openai_client_new(cli->cfg, cli->key, err, sizeof(err)))) {
		errmsg("API: %s", err);
		status = EXIT_USAGE;
		goto out;
	}
	/* Open the spool before reading anything, so --apply cannot fail
	 * after a long read for a reason known at the start. */
	if (o.apply) {
		if (spool_enter(cli) < 0)
			goto out;
		r = spool_open(cli->cfg->spool_dir, &sp, err, sizeof(err));
		spool_leave(cli);
		if (r < 0) {
			errmsg("spool %s: %s", cli->cfg->spool_dir, err);
			goto out;
		}
	}
	rec.progress = isatty(STDERR_FILENO) && !cli->verbose;
	if (directory_connect(cli->cfg, &ld, err, sizeof(err)) < 0) {
		errmsg("directory: %s", err);
		goto out;
	}
	if (reconcile_read_directory(&rec, ld, cli->cfg, mf, err, sizeof(err)) < 0) {
		errmsg("directory: %s", err);
		goto out;
	}
	memset(&res, 0, sizeof(res));
	if (reconcile_read_org(&rec, oc, &res) != OPENAI_OK) {
		errmsg("organization: %s: %s", openai_status_name(res.status), res.message);
		goto out;
	}
	if (reconcile_classify(&rec, cli->cfg, mf, err, sizeof(err)) < 0) {
		errmsg("reconcile: %s", err);
		goto out;
	}
	progress_clear();
	if (o.json) {
		if (reconcile_print_json(&rec, stdout, o.all) < 0) {
			errmsg("reconcile: cannot print the JSON answer");
			goto out;
		}
	} else {
		reconcile_print_table(&rec, stdout, o.all);
	}
	if (o.apply) {
		size_t queued = 0;

		if (spool_enter(cli) < 0)
			goto out;
		r = reconcile_apply(&rec, sp, o.absent, &queued, err, sizeof(err));
		spool_leave(cli);
		if (r < 0) {
			errmsg("reconcile: queued %zu, then: %s", queued, err);
			goto out;
		}
		fprintf(o.json ? stderr : stdout, "queued %zu job%s\n", queued, queued == 1 ? "" : "s");
	}
	status = EXIT_OK;
out:
	reconcile_clear(&rec);
	if (ld)
		directory_close(ld);
	if (sp)
		spool_close(sp);
	if (mf)
		mapfile_free(mf);
	if (oc)
		openai_client_free(oc);
	return status;
}

/* ---- run ----------------------------------------------------------------- */

static void on_stop_signal(int sig)
{
	struct worker *w = run_worker;

	(void)sig;
	stop_requested = 1;
	if (w)
		worker_request_stop(w);
}

static int cmd_run(struct cli *cli, int argc, char **argv)
{
	static const struct option extra[] = {
		{ "once", no_argument, NULL, OPT_ONCE }, { NULL, 0, NULL, 0 }
	};
	struct cmd_opts o;
	char err[ERRLEN];
	struct worker *w = NULL;
	int r;

	r = parse_cmd_opts(cli, "run", usage_run, argc, argv, extra, &o);
	if (r)
		return r > 0 ? EXIT_OK : EXIT_USAGE;
	if (optind < argc) {
		errmsg("run: unexpected argument '%s'", argv[optind]);
		return EXIT_USAGE;
	}
	if (load_config(cli) < 0)
		return EXIT_USAGE;
	if (load_key(cli, err, sizeof(err)) < 0) {
		errmsg("admin key: %s", err);
		return EXIT_USAGE;
	}
	if (check_map_file(cli) < 0)
		return EXIT_USAGE;
	if (spool_enter(cli) < 0)
		return EXIT_FAIL;
	if (openai_global_init() < 0 || worker_new(cli->cfg, cli->key, &w, err, sizeof(err)) < 0) {
		errlines(err);
		return EXIT_FAIL;
	}
	run_worker = w;
	if (stop_requested)
		worker_request_stop(w);
	log_msg(LOG_INFO, "action=run_start spool=%s once=%s pid=%ld", cli->cfg->spool_dir,
	        o.once ? "yes" : "no", (long)getpid());
	r = worker_run(w, o.once);
	run_worker = NULL;
	worker_free(w);
	log_msg(LOG_INFO, "action=run_stop reason=%s status=%d",
	        stop_requested ? "signal" : r < 0 ? "lock" : "idle", r);
	if (r < 0) {
		errmsg("run: the spool %s is locked by another worker, or cannot be drained",
		       cli->cfg->spool_dir);
		return EXIT_FAIL;
	}
	return r == 0 ? EXIT_OK : EXIT_FAIL;
}

/* ---- main ---------------------------------------------------------------- */

/* Take OPENAI_ADMIN_KEY out of the environment: copied into wiped memory,
 * the original bytes overwritten (they are what /proc/PID/environ shows),
 * the variable removed so no child could inherit it. */
static void take_env_key(void)
{
	char *v = getenv("OPENAI_ADMIN_KEY");
	char *start, *end, *p;
	size_t n;

	if (!v)
		return;
	start = v;
	while (*start == ' ' || *start == '\t' || *start == '\n' || *start == '\r')
		start++;
	end = start + strlen(start);
	while (end > start && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' ||
	                       end[-1] == '\r'))
		end--;
	n = (size_t)(end - start);
	/* The rules of the key file: it goes into an HTTP header. */
	for (p = start; p < end && !env_key_problem; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			env_key_problem = "contains white space, control or non-ASCII characters";
	if (n == 0)
		env_key_problem = "is empty";
	else if (n > 4096)
		env_key_problem = "is longer than 4096 bytes";
	if (!env_key_problem) {
		char save = *end;
		*end = '\0';
		env_key = secret_dup(start);
		*end = save;
		if (!env_key)
			env_key_problem = "cannot be copied (out of memory)";
	}
	{
		volatile char *w = v;
		while (*w)
			*w++ = 'x';
	}
	unsetenv("OPENAI_ADMIN_KEY");
}

static int install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGINT, &sa, NULL) < 0)
		return -1;
	sa.sa_handler = SIG_IGN;
	return sigaction(SIGPIPE, &sa, NULL);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	struct cli cli;
	const char *cmd;
	int c, status;

	memset(&cli, 0, sizeof(cli));
	cli.config_path = CONFIG_DEFAULT_PATH;
	take_env_key();
	if (install_signals() < 0) {
		errmsg("cannot install signal handlers: %s", strerror(errno));
		return EXIT_FAIL;
	}

	opterr = 0;
	while ((c = getopt_long(argc, argv, "+c:vhV", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			cli.config_path = optarg;
			break;
		case 'v':
			cli.verbose = 1;
			break;
		case 'h':
			fputs(usage_main, stdout);
			status = EXIT_OK;
			goto out;
		case 'V':
			printf(PROG " %s\n", PACKAGE_VERSION);
			status = EXIT_OK;
			goto out;
		default:
			if (optopt && optopt < 256)
				errmsg("unknown option or missing argument: -%c", optopt);
			else
				errmsg("unknown option or missing argument: %s", argv[optind - 1]);
			fputs("Try '" PROG " --help'.\n", stderr);
			status = EXIT_USAGE;
			goto out;
		}
	}
	if (optind >= argc) {
		errmsg("no command given");
		fputs("Try '" PROG " --help'.\n", stderr);
		status = EXIT_USAGE;
		goto out;
	}
	cmd = argv[optind];
	argc -= optind;
	argv += optind;
	if (strcmp(cmd, "check") == 0)
		status = cmd_check(&cli, argc, argv);
	else if (strcmp(cmd, "map") == 0)
		status = cmd_map(&cli, argc, argv);
	else if (strcmp(cmd, "revoke") == 0)
		status = cmd_revoke(&cli, argc, argv);
	else if (strcmp(cmd, "queue") == 0)
		status = cmd_queue(&cli, argc, argv);
	else if (strcmp(cmd, "run") == 0)
		status = cmd_run(&cli, argc, argv);
	else if (strcmp(cmd, "reconcile") == 0)
		status = cmd_reconcile(&cli, argc, argv);
	else if (strcmp(cmd, "help") == 0) {
		fputs(usage_main, stdout);
		status = EXIT_OK;
	} else {
		errmsg("unknown command '%s'", cmd);
		fputs("Try '" PROG " --help'.\n", stderr);
		status = EXIT_USAGE;
	}
out:
	/* Back to the ids we started with: LeakSanitizer (and core dumps) need
	 * them, and nothing should outlive the command as the spool's owner. */
	spool_leave(&cli);
	free(cli.ldap_error);
	if (cli.key)
		secret_free(cli.key);
	if (env_key)
		secret_free(env_key);
	if (cli.cfg) {
		/* the logger may hold cfg's ident until it is torn down */
		log_teardown();
		config_free(cli.cfg);
	}
	if (fflush(stdout) != 0 && status == EXIT_OK) {
		errmsg("write error: %s", strerror(errno));
		status = EXIT_FAIL;
	}
	return status;
}
