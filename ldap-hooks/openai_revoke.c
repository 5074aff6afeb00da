/* openai_revoke.so: the SLAPI glue between slapd and the engine.  The hooks
 * decide (DESIGN.md section 5), write a job to the spool and return; the
 * network is only ever touched by the worker thread started in START. */
#include "or_build.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>

#include <slapi-plugin.h>

#include "config.h"
#include "job.h"
#include "log.h"
#include "rules.h"
#include "spool.h"
#include "worker.h"

#define PLG_NAME "openai_revoke"
#define PLG_ERRLEN 4096
/* Deletes in flight between their pre- and post-operation hooks; one per
 * concurrent delete, so this only guards against a hook that never pairs. */
#define PLG_PENDING_MAX 4096

/* slapd's own mode word: SLAP_TOOL_MODE (0x0002) set means slapcat, slapadd,
 * slapindex, slaptest...  Weak, so the object still loads where slapd does
 * not export it (then we are never in tool mode). */
extern int slapMode __attribute__((weak, visibility("default")));
#define PLG_SLAP_TOOL_MODE 0x0002

/* Client connections are numbered from this (slap.h:
 * SLAPD_SYNC_SYNCCONN_OFFSET); syncrepl and other internal work run on
 * slapd's fake connections, which read -1 here (seen on 2.5.13). */
#define PLG_SYNC_CONN_MAX 1000

struct pending {
	Slapi_PBlock *pb;      /* the operation's pblock: the same in pre and post */
	struct job *job;
	struct pending *next;
};

/* One instance per process: slapd gives the operation hooks no handle to
 * per-instance data, so a second plugin line is refused in init. */
static struct {
	int loaded;
	int tool_mode;
	int started;
	struct config *cfg;
	char **attrs;          /* what the internal search asks for */
	char **trigger_names;  /* schema names of disabled_attrs (config may use an alias) */
	Slapi_Filter *user_filter;
	Slapi_Filter *disabled_filter;
	struct spool *spool;
	struct worker *worker;
	pthread_mutex_t lock;  /* guards pending */
	struct pending *pending;
	size_t npending;
} plg = { .lock = PTHREAD_MUTEX_INITIALIZER };

static Slapi_PluginDesc plg_desc = {
	"openai-revoke", "openai-revoke project", PACKAGE_VERSION,
	"revokes OpenAI organization membership of disabled accounts"
};

static int plg_in_tool_mode(void)
{
	return &slapMode != NULL && (slapMode & PLG_SLAP_TOOL_MODE) != 0;
}

/* An error at configuration time goes everywhere an administrator may look:
 * slapd's stderr (where slapd prints its own configuration errors), the SLAPI
 * log and syslog. */
static void plg_config_error(const char *msg)
{
	const char *p = msg, *nl;

	while (*p) {
		nl = strchr(p, '\n');
		int n = nl ? (int)(nl - p) : (int)strlen(p);
		if (n > 0) {
			fprintf(stderr, PLG_NAME ": %.*s\n", n, p);
			slapi_log_error(SLAPI_LOG_FATAL, PLG_NAME, "%.*s\n", n, p);
			log_msg(LOG_ERR, "%.*s", n, p);
		}
		if (!nl)
			break;
		p = nl + 1;
	}
	fflush(stderr);
}

static int plg_list_add(char ***list, size_t *n, const char *s)
{
	char **v;

	if (s == NULL || *s == '\0' || config_list_contains(*list, s))
		return 0;
	v = realloc(*list, (*n + 2) * sizeof(*v));
	if (v == NULL)
		return -1;
	*list = v;
	v[*n] = strdup(s);
	if (v[*n] == NULL)
		return -1;
	v[++*n] = NULL;
	return 0;
}

static int plg_list_add_all(char ***list, size_t *n, char *const *src)
{
	for (size_t i = 0; src != NULL && src[i] != NULL; i++)
		if (plg_list_add(list, n, src[i]) != 0)
			return -1;
	return 0;
}

/* The internal search reads only what the filters test and the job keeps. */
static char **plg_search_attrs(const struct config *cfg, char *err, size_t errlen)
{
	char **list = NULL, **fattrs = NULL;
	size_t n = 0;
	int ok = 0;

	list = calloc(1, sizeof(*list));
	if (list == NULL)
		goto out;
	if (plg_list_add(&list, &n, "uid") || plg_list_add(&list, &n, "entryUUID") ||
	    plg_list_add(&list, &n, "objectClass") ||
	    plg_list_add_all(&list, &n, cfg->email_attributes) ||
	    plg_list_add(&list, &n, cfg->user_id_attribute) ||
	    plg_list_add_all(&list, &n, cfg->disabled_attrs))
		goto out;
	if (config_filter_parse(cfg->user_filter, &fattrs, err, errlen) != 0)
		goto out;
	if (plg_list_add_all(&list, &n, fattrs))
		goto out;
	ok = 1;
out:
	config_list_free(fattrs);
	if (!ok) {
		if (err[0] == '\0')
			snprintf(err, errlen, "out of memory");
		config_list_free(list);
		list = NULL;
	}
	return list;
}

/* DNs come from clients: logline quotes them so they cannot forge lines. */
static void plg_log_error(const char *dn, const char *what, long code)
{
	struct logline l;

	logline_init(&l);
	logline_add(&l, "action", "error");
	logline_add(&l, "dn", dn);
	logline_add(&l, "error", what);
	if (code != 0)
		logline_addi(&l, "code", code);
	log_line(LOG_ERR, &l);
}

/* ---- reading an entry ------------------------------------------------- */

static int plg_result_ok(Slapi_PBlock *pb)
{
	int opret = 0, rc = 0;

	/* OpenLDAP leaves OPRETURN at 0 for failed operations and reports in
	 * RESULT_CODE; 389-ds sets OPRETURN.  Either non-zero means failure. */
	if (slapi_pblock_get(pb, SLAPI_PLUGIN_OPRETURN, &opret) != 0)
		opret = 0;
	if (slapi_pblock_get(pb, SLAPI_RESULT_CODE, &rc) != 0)
		rc = 0;
	return opret == 0 && rc == 0;
}

/* Replicated writes are the business of the server where the write was made
 * (see openai_revoke.so(5)).  SLAPI_IS_REPLICATED_OPERATION only knows the
 * slurpd-era updatedn; syncrepl shows up as a non-client connection. */
static int plg_is_replicated(Slapi_PBlock *pb)
{
	int repl = 0;
	long connid = -1;

	if (slapi_pblock_get(pb, SLAPI_IS_REPLICATED_OPERATION, &repl) == 0 && repl)
		return 1;
	if (slapi_pblock_get(pb, SLAPI_CONN_ID, &connid) == 0 && connid < PLG_SYNC_CONN_MAX)
		return 1;
	return 0;
}

static int plg_add_values(Slapi_Entry *e, const char *attr, struct job *j, int emails,
                          char **single)
{
	Slapi_Attr *a = NULL;
	Slapi_Value *v = NULL;
	const char *s;
	int hint;

	if (attr == NULL || slapi_entry_attr_find(e, (char *)attr, &a) != 0 || a == NULL)
		return 0;
	for (hint = slapi_attr_first_value(a, &v); hint >= 0 && v != NULL;
	     hint = slapi_attr_next_value(a, hint, &v)) {
		s = slapi_value_get_string(v);
		if (s == NULL || *s == '\0')
			continue;
		if (emails) {
			if (job_add_email(j, s) != 0)
				return -1;
		} else {
			return job_set(single, s);
		}
	}
	return 0;
}

/* Base search of DN; when the entry exists, is an account (user_filter) and,
 * if want_disabled, matches disabled_filter, *out is a new job carrying what
 * the worker needs.  0 decided (job or not), -1 error. */
static int plg_read_job(const char *dn, int want_disabled, const char *reason,
                        struct job **out)
{
	Slapi_PBlock *spb = NULL;
	Slapi_Entry **entries = NULL;
	struct job *j = NULL;
	const char *edn;
	int rc = -1, res = 0;

	*out = NULL;
	spb = slapi_pblock_new();
	if (spb == NULL)
		goto out;
	slapi_search_internal_set_pb(spb, dn, LDAP_SCOPE_BASE, "(objectClass=*)",
	                             plg.attrs, 0, NULL, NULL, NULL, 0);
	if (slapi_search_internal_pb(spb) != 0 ||
	    slapi_pblock_get(spb, SLAPI_PLUGIN_INTOP_RESULT, &res) != 0) {
		plg_log_error(dn, "internal search failed", 0);
		goto out;
	}
	if (res == LDAP_NO_SUCH_OBJECT) {
		rc = 0;
		goto out;
	}
	if (res != LDAP_SUCCESS) {
		plg_log_error(dn, "internal search failed", res);
		goto out;
	}
	if (slapi_pblock_get(spb, SLAPI_PLUGIN_INTOP_SEARCH_ENTRIES, &entries) != 0 ||
	    entries == NULL || entries[0] == NULL) {
		rc = 0;
		goto out;
	}
	/* slapi_filter_test_simple: 0 means the entry matches. */
	if (slapi_filter_test_simple(entries[0], plg.user_filter) != 0) {
		rc = 0;
		goto out;
	}
	if (want_disabled && slapi_filter_test_simple(entries[0], plg.disabled_filter) != 0) {
		rc = 0;
		goto out;
	}
	/* The DN as stored, not as the client spelled it. */
	edn = slapi_entry_get_dn(entries[0]);
	if ((j = job_new("slapi", reason)) == NULL ||
	    job_set(&j->dn, edn != NULL && *edn != '\0' ? edn : dn) != 0 ||
	    plg_add_values(entries[0], "uid", j, 0, &j->uid) != 0 ||
	    plg_add_values(entries[0], "entryUUID", j, 0, &j->entry_uuid) != 0 ||
	    plg_add_values(entries[0], plg.cfg->user_id_attribute, j, 0, &j->openai_user_id) != 0) {
		plg_log_error(dn, "out of memory", 0);
		goto out;
	}
	for (size_t i = 0; plg.cfg->email_attributes[i] != NULL; i++) {
		if (plg_add_values(entries[0], plg.cfg->email_attributes[i], j, 1, NULL) != 0) {
			plg_log_error(dn, "out of memory", 0);
			goto out;
		}
	}
	*out = j;
	j = NULL;
	rc = 0;
out:
	job_free(j);
	if (spb != NULL) {
		slapi_free_search_results_internal(spb);
		slapi_pblock_destroy(spb);
	}
	return rc;
}

/* The job is on disk before this returns (spool_enqueue fsyncs), then the
 * worker is woken. */
static void plg_enqueue(struct job *j)
{
	char err[512] = "";
	struct logline l;

	if (spool_enqueue(plg.spool, j, err, sizeof(err)) != 0) {
		logline_init(&l);
		logline_add(&l, "action", "enqueue_failed");
		logline_add(&l, "reason", j->reason);
		logline_add(&l, "dn", j->dn);
		logline_add(&l, "error", err);
		log_line(LOG_ERR, &l);
		return;
	}
	logline_init(&l);
	logline_add(&l, "event", j->id);
	logline_add(&l, "action", "queued");
	logline_add(&l, "reason", j->reason);
	logline_add(&l, "dn", j->dn);
	log_line(LOG_INFO, &l);
	if (plg.worker != NULL)
		worker_notify(plg.worker);
}

static int plg_active(void)
{
	return plg.started && !plg.tool_mode;
}

/* ---- the hooks ---------------------------------------------------------- */

/* Attribute names compared up to any ";option". */
static int plg_type_eq(const char *a, const char *b)
{
	size_t n = strcspn(a, ";");

	return strcspn(b, ";") == n && strncasecmp(a, b, n) == 0;
}

/* Is TYPE, as the client wrote it, one of the attributes disabled_filter
 * names?  A name costs string comparisons only; the schema is consulted
 * just for the numeric OID form, which clients may use instead. */
static int plg_is_trigger(const char *type)
{
	const char *canon = type;

	if (rules_attr_is_trigger(plg.cfg, type))
		return 1;
	if (type[0] >= '0' && type[0] <= '9') {
		canon = slapi_attr_syntax_normalize(type);
		if (canon == NULL)
			return 0;
		if (rules_attr_is_trigger(plg.cfg, canon))
			return 1;
	}
	for (size_t i = 0; plg.trigger_names != NULL && plg.trigger_names[i] != NULL; i++)
		if (plg_type_eq(canon, plg.trigger_names[i]))
			return 1;
	return 0;
}

static int plg_on_modify(Slapi_PBlock *pb)
{
	LDAPMod **mods = NULL;
	char *dn = NULL;
	struct job *j = NULL;
	int trigger = 0;

	if (!plg_active())
		return 0;
	/* The cheap path: most writes touch nothing disabled_filter names. */
	if (slapi_pblock_get(pb, SLAPI_MODIFY_MODS, &mods) != 0 || mods == NULL)
		return 0;
	for (size_t i = 0; mods[i] != NULL && !trigger; i++)
		trigger = mods[i]->mod_type != NULL && plg_is_trigger(mods[i]->mod_type);
	if (!trigger || !plg_result_ok(pb))
		return 0;
	if (slapi_pblock_get(pb, SLAPI_MODIFY_TARGET, &dn) != 0 || dn == NULL)
		return 0;
	if (plg_is_replicated(pb)) {
		if (log_enabled(LOG_DEBUG)) {
			struct logline l;

			logline_init(&l);
			logline_add(&l, "action", "skip");
			logline_add(&l, "why", "replicated");
			logline_add(&l, "dn", dn);
			log_line(LOG_DEBUG, &l);
		}
		return 0;
	}
	if (!rules_dn_is_below(dn, plg.cfg->base))
		return 0;
	if (plg_read_job(dn, 1, "disabled", &j) == 0 && j != NULL)
		plg_enqueue(j);
	job_free(j);
	return 0;
}

static struct job *plg_pending_take(Slapi_PBlock *pb)
{
	struct pending **pp, *p;
	struct job *j = NULL;

	pthread_mutex_lock(&plg.lock);
	for (pp = &plg.pending; *pp != NULL; pp = &(*pp)->next) {
		if ((*pp)->pb == pb) {
			p = *pp;
			*pp = p->next;
			plg.npending--;
			j = p->job;
			free(p);
			break;
		}
	}
	pthread_mutex_unlock(&plg.lock);
	return j;
}

static int plg_pre_delete(Slapi_PBlock *pb)
{
	char *dn = NULL;
	struct job *j = NULL;
	struct pending *p = NULL;

	if (!plg_active() || !plg.cfg->revoke_on_delete)
		return 0;
	/* A capture whose post-operation never came (another plugin aborted
	 * the delete after us) has a pblock address slapd may hand out again. */
	job_free(plg_pending_take(pb));
	if (slapi_pblock_get(pb, SLAPI_DELETE_TARGET, &dn) != 0 || dn == NULL)
		return 0;
	if (!rules_dn_is_below(dn, plg.cfg->base) || plg_is_replicated(pb))
		return 0;
	/* The entry is gone after the delete: capture what the worker needs now. */
	if (plg_read_job(dn, 0, "deleted", &j) != 0 || j == NULL)
		return 0;
	p = calloc(1, sizeof(*p));
	pthread_mutex_lock(&plg.lock);
	if (p != NULL && plg.npending < PLG_PENDING_MAX) {
		p->pb = pb;
		p->job = j;
		p->next = plg.pending;
		plg.pending = p;
		plg.npending++;
		p = NULL;
		j = NULL;
	}
	pthread_mutex_unlock(&plg.lock);
	if (j != NULL)
		plg_log_error(dn, "too many deletes in flight: not captured", 0);
	free(p);
	job_free(j);
	return 0;
}

static int plg_on_delete(Slapi_PBlock *pb)
{
	struct job *j;

	if (!plg_active())
		return 0;
	/* Taken in every case, so a failed delete frees its capture too. */
	j = plg_pending_take(pb);
	if (j != NULL && plg_result_ok(pb))
		plg_enqueue(j);
	job_free(j);
	return 0;
}

static int plg_on_modrdn(Slapi_PBlock *pb)
{
	char *olddn = NULL, *newrdn = NULL, *newsup = NULL, *newdn = NULL;
	struct job *j = NULL;
	size_t len;

	if (!plg_active() || plg.cfg->disabled_subtree == NULL)
		return 0;
	if (slapi_pblock_get(pb, SLAPI_MODRDN_NEWSUPERIOR, &newsup) != 0 || newsup == NULL ||
	    *newsup == '\0')
		return 0;
	if (!rules_dn_is_below(newsup, plg.cfg->disabled_subtree))
		return 0;
	if (!plg_result_ok(pb) || plg_is_replicated(pb))
		return 0;
	if (slapi_pblock_get(pb, SLAPI_MODRDN_TARGET, &olddn) != 0 || olddn == NULL ||
	    slapi_pblock_get(pb, SLAPI_MODRDN_NEWRDN, &newrdn) != 0 || newrdn == NULL)
		return 0;
	/* Only accounts that lived below base count: moving a stray entry into
	 * the disabled subtree is not an offboarding. */
	if (!rules_dn_is_below(olddn, plg.cfg->base))
		return 0;
	len = strlen(newrdn) + strlen(newsup) + 2;
	newdn = malloc(len);
	if (newdn == NULL)
		return 0;
	snprintf(newdn, len, "%s,%s", newrdn, newsup);
	if (plg_read_job(newdn, 0, "moved", &j) == 0 && j != NULL)
		plg_enqueue(j);
	job_free(j);
	free(newdn);
	return 0;
}

/* slapd calls this just before it sends an operation's result, after the
 * backend committed it: a job enqueued here is on disk before the client
 * hears "success" (post-operation hooks run only after the result went
 * out).  OpenLDAP reports the LDAP request tag as the operation type. */
static int plg_pre_result(Slapi_PBlock *pb)
{
	ber_tag_t tag = 0;

	if (!plg_active() || slapi_pblock_get(pb, SLAPI_OPERATION_TYPE, &tag) != 0)
		return 0;
	switch (tag) {
	case LDAP_REQ_MODIFY:
		return plg_on_modify(pb);
	case LDAP_REQ_DELETE:
		return plg_on_delete(pb);
	case LDAP_REQ_MODRDN:
		return plg_on_modrdn(pb);
	default:
		return 0;
	}
}

/* A delete whose result was never played (slapd skips the callbacks of an
 * abandoned operation) still gets its capture freed, and enqueued if it
 * succeeded. */
static int plg_post_delete(Slapi_PBlock *pb)
{
	return plg_on_delete(pb);
}

/* ---- life cycle ----------------------------------------------------------- */

static void plg_release(void)
{
	struct pending *p, *next;

	if (plg.worker != NULL) {
		worker_stop(plg.worker);
		worker_free(plg.worker);
		plg.worker = NULL;
	}
	if (plg.spool != NULL) {
		spool_close(plg.spool);
		plg.spool = NULL;
	}
	config_list_free(plg.trigger_names);
	plg.trigger_names = NULL;
	if (plg.user_filter != NULL) {
		slapi_filter_free(plg.user_filter, 1);
		plg.user_filter = NULL;
	}
	if (plg.disabled_filter != NULL) {
		slapi_filter_free(plg.disabled_filter, 1);
		plg.disabled_filter = NULL;
	}
	pthread_mutex_lock(&plg.lock);
	for (p = plg.pending; p != NULL; p = next) {
		next = p->next;
		job_free(p->job);
		free(p);
	}
	plg.pending = NULL;
	plg.npending = 0;
	pthread_mutex_unlock(&plg.lock);
	plg.started = 0;
}

static Slapi_Filter *plg_filter(const char *s)
{
	Slapi_Filter *f;
	char *copy = strdup(s);   /* str2filter wants a writable string */

	if (copy == NULL)
		return NULL;
	f = slapi_str2filter(copy);
	free(copy);
	return f;
}

/* The schema's own names for ATTRS (NULL-terminated; NULL when out of
 * memory, which only costs the alias check). */
static char **plg_schema_names(char *const *attrs)
{
	size_t n = 0;
	char **names = calloc(1, sizeof(*names));

	for (size_t i = 0; names != NULL && attrs[i] != NULL; i++) {
		const char *canon = slapi_attr_syntax_normalize(attrs[i]);
		if (canon != NULL && plg_list_add(&names, &n, canon) != 0)
			break;
	}
	return names;
}

static int plg_start(Slapi_PBlock *pb)
{
	char err[PLG_ERRLEN] = "";
	char *key = NULL;
	int rc = -1;

	if (plg.started)
		return 0;
	/* slapcat, slapadd, slapindex, slaptest: no worker, no lock, no network. */
	if (plg.tool_mode || plg_in_tool_mode()) {
		plg.tool_mode = 1;
		return 0;
	}
	plg.user_filter = plg_filter(plg.cfg->user_filter);
	plg.disabled_filter = plg_filter(plg.cfg->disabled_filter);
	if (plg.user_filter == NULL || plg.disabled_filter == NULL) {
		snprintf(err, sizeof(err), "%s: slapd cannot parse user_filter or disabled_filter",
		         plg.cfg->path);
		goto out;
	}
	plg.trigger_names = plg_schema_names(plg.cfg->disabled_attrs);
	/* The key first: a refused key leaves no spool behind. */
	if (plg.cfg->worker == CONFIG_WORKER_THREAD &&
	    config_read_key(plg.cfg, &key, err, sizeof(err)) != 0)
		goto out;
	if (spool_open(plg.cfg->spool_dir, &plg.spool, err, sizeof(err)) != 0)
		goto out;
	if (plg.cfg->worker == CONFIG_WORKER_THREAD) {
		if (worker_new(plg.cfg, key, &plg.worker, err, sizeof(err)) != 0)
			goto out;
		if (worker_start(plg.worker) != 0) {
			snprintf(err, sizeof(err), "cannot start the worker thread");
			worker_free(plg.worker);
			plg.worker = NULL;
			goto out;
		}
	}
	plg.started = 1;
	log_msg(LOG_INFO, "action=start version=%s worker=%s spool=\"%s\"", PACKAGE_VERSION,
	        plg.worker != NULL ? "thread" : "none", plg.cfg->spool_dir);
	rc = 0;
out:
	secret_free(key);
	if (rc != 0) {
		plg_config_error(err[0] ? err : "start failed");
		plg_release();
	}
	return rc;
}

static int plg_close(Slapi_PBlock *pb)
{
	int was = plg.started;

	plg_release();
	if (was)
		log_msg(LOG_INFO, "action=stop");
	config_list_free(plg.attrs);
	plg.attrs = NULL;
	config_free(plg.cfg);
	plg.cfg = NULL;
	plg.loaded = 0;
	log_teardown();
	return 0;
}

__attribute__((visibility("default"))) int openai_revoke_init(Slapi_PBlock *pb);

int openai_revoke_init(Slapi_PBlock *pb)
{
	char err[PLG_ERRLEN] = "";
	int argc = 0;
	char **argv = NULL;
	const char *path = CONFIG_DEFAULT_PATH;
	struct config *cfg = NULL;

	if (plg.loaded) {
		plg_config_error("openai_revoke_init: the plugin is already loaded; one plugin "
		                 "line registers every hook");
		return -1;
	}
	if (slapi_pblock_get(pb, SLAPI_PLUGIN_ARGC, &argc) == 0 &&
	    slapi_pblock_get(pb, SLAPI_PLUGIN_ARGV, &argv) == 0 && argc > 0 && argv != NULL &&
	    argv[0] != NULL)
		path = argv[0];
	if (argc > 1) {
		plg_config_error("openai_revoke_init: one argument expected: the path of "
		                 "openai-revoke.conf");
		return -1;
	}
	if (config_load(path, &cfg, err, sizeof(err)) != 0) {
		log_setup(LOG_MODE_HOSTED, "openai-revoke", LOG_AUTHPRIV, LOG_INFO, NULL);
		plg_config_error(err[0] ? err : "cannot load the configuration");
		return -1;
	}
	plg.tool_mode = plg_in_tool_mode();
	/* The tools often run as root: a log_file they created would belong to
	 * root and lock slapd's own user out of it. */
	log_setup(LOG_MODE_HOSTED, cfg->syslog_ident, cfg->syslog_facility, cfg->log_level,
	          plg.tool_mode ? NULL : cfg->log_file);
	plg.cfg = cfg;
	plg.attrs = plg_search_attrs(cfg, err, sizeof(err));
	if (plg.attrs == NULL) {
		plg_config_error(err);
		config_free(cfg);
		plg.cfg = NULL;
		log_teardown();
		return -1;
	}
	if (slapi_pblock_set(pb, SLAPI_PLUGIN_VERSION, SLAPI_PLUGIN_VERSION_03) != 0 ||
	    slapi_pblock_set(pb, SLAPI_PLUGIN_DESCRIPTION, &plg_desc) != 0 ||
	    slapi_pblock_set(pb, SLAPI_PLUGIN_START_FN, (void *)plg_start) != 0 ||
	    slapi_pblock_set(pb, SLAPI_PLUGIN_CLOSE_FN, (void *)plg_close) != 0 ||
	    slapi_pblock_set(pb, SLAPI_PLUGIN_PRE_RESULT_FN, (void *)plg_pre_result) != 0 ||
	    slapi_pblock_set(pb, SLAPI_PLUGIN_PRE_DELETE_FN, (void *)plg_pre_delete) != 0 ||
	    slapi_pblock_set(pb, SLAPI_PLUGIN_POST_DELETE_FN, (void *)plg_post_delete) != 0) {
		plg_config_error("openai_revoke_init: slapd refused to register the hooks");
		plg_close(pb);
		return -1;
	}
	plg.loaded = 1;
	return 0;
}
