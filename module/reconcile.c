/* reconcile: match every member of the OpenAI organization against the
 * directory and classify them.  Both sides are read whole (paged), then
 * matched through hash tables (jansson objects keyed by ID or lower-cased
 * address), so 100,000 members against 100,000 entries stays linear. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <ldap.h>

#include "reconcile.h"
#include "job.h"
#include "log.h"
#include "spool.h"

#define RECONCILE_PAGE_SIZE 500
#define RECONCILE_MAX_ENTRIES 10000000

static const char *const reason_names[RECONCILE_NREASONS] = {
	"active", "disabled", "absent", "protected", "exempt"
};

const char *reconcile_reason_name(enum reconcile_reason r)
{
	return (unsigned)r < RECONCILE_NREASONS ? reason_names[r] : "unknown";
}

static void seterr(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static char *lower_dup(const char *s)
{
	char *d = strdup(s);

	if (d)
		for (char *p = d; *p; p++)
			*p = (char)tolower((unsigned char)*p);
	return d;
}

static void progress(const struct reconcile *r, int final)
{
	if (!r->progress)
		return;
	fprintf(stderr, "\rmembers read: %zu  entries read: %zu%s", r->nmembers,
	        r->nentries, final ? "\n" : "");
	fflush(stderr);
}

/* ---- directory side ---------------------------------------------------- */

typedef int (*entry_cb)(LDAP *ld, LDAPMessage *e, void *arg);

/* One subtree search, page by page (RFC 2696), so that a server sizelimit
 * does not truncate it.  Any error, including a size limit hit part-way, is
 * a failure: a partial directory would make people look absent. */
static int paged_search(LDAP *ld, const char *base, const char *filter, char **attrs,
                        entry_cb cb, void *arg, size_t *pages, char *err, size_t errlen)
{
	struct berval cookie = { 0, NULL };
	int ret = -1;

	for (;;) {
		LDAPControl *page = NULL, *ctrls[2] = { NULL, NULL };
		LDAPControl **sctrls = NULL, *resp;
		LDAPMessage *res = NULL, *e;
		char *matched = NULL, *errmsg = NULL;
		ber_int_t estimate = 0;
		int rc, code = LDAP_OTHER, more = 0;

		rc = ldap_create_page_control(ld, RECONCILE_PAGE_SIZE, &cookie, 1, &page);
		ber_memfree(cookie.bv_val);
		cookie.bv_val = NULL;
		cookie.bv_len = 0;
		if (rc != LDAP_SUCCESS) {
			seterr(err, errlen, "paged results control: %s", ldap_err2string(rc));
			goto out;
		}
		ctrls[0] = page;
		rc = ldap_search_ext_s(ld, base, LDAP_SCOPE_SUBTREE, filter, attrs, 0, ctrls,
		                       NULL, NULL, LDAP_NO_LIMIT, &res);
		ldap_control_free(page);
		if (rc != LDAP_SUCCESS && !res) {
			seterr(err, errlen, "search under \"%s\" with %s: %s", base, filter,
			       ldap_err2string(rc));
			goto out;
		}
		for (e = ldap_first_entry(ld, res); e; e = ldap_next_entry(ld, e)) {
			if (cb(ld, e, arg) != 0) {
				seterr(err, errlen, "out of memory or too many entries reading the directory");
				ldap_msgfree(res);
				goto out;
			}
		}
		rc = ldap_parse_result(ld, res, &code, &matched, &errmsg, NULL, &sctrls, 1);
		if (rc != LDAP_SUCCESS || code != LDAP_SUCCESS) {
			seterr(err, errlen, "search under \"%s\" with %s failed part-way: %s%s%s",
			       base, filter, ldap_err2string(rc != LDAP_SUCCESS ? rc : code),
			       errmsg && *errmsg ? ": " : "", errmsg ? errmsg : "");
			ldap_memfree(matched);
			ldap_memfree(errmsg);
			ldap_controls_free(sctrls);
			goto out;
		}
		ldap_memfree(matched);
		ldap_memfree(errmsg);
		(*pages)++;
		resp = ldap_control_find(LDAP_CONTROL_PAGEDRESULTS, sctrls, NULL);
		if (!resp) {
			/* A server without paged results answered in one go: fine,
			 * as long as it said success (a size limit is an error above). */
			ldap_controls_free(sctrls);
			break;
		}
		rc = ldap_parse_pageresponse_control(ld, resp, &estimate, &cookie);
		ldap_controls_free(sctrls);
		if (rc != LDAP_SUCCESS) {
			seterr(err, errlen, "paged results answer: %s", ldap_err2string(rc));
			goto out;
		}
		more = cookie.bv_val && cookie.bv_len > 0;
		if (!more)
			break;
	}
	ret = 0;
out:
	ber_memfree(cookie.bv_val);
	return ret;
}

struct read_ctx {
	struct reconcile *r;
	const struct config *cfg;
	struct mapfile *map;
	size_t cap;
	json_t *by_dn;    /* DN as the server wrote it -> entry index */
};

static char *first_value(LDAP *ld, LDAPMessage *e, const char *attr)
{
	struct berval **v = ldap_get_values_len(ld, e, attr);
	char *s = NULL;

	if (v && v[0] && v[0]->bv_len && !memchr(v[0]->bv_val, '\0', v[0]->bv_len))
		s = strndup(v[0]->bv_val, v[0]->bv_len);
	ldap_value_free_len(v);
	return s;
}

static int add_emails(LDAP *ld, LDAPMessage *e, const struct config *cfg,
                      struct reconcile_entry *en)
{
	size_t n = 0;

	for (char *const *a = cfg->email_attributes; a && *a; a++) {
		struct berval **v = ldap_get_values_len(ld, e, *a);

		for (size_t i = 0; v && v[i]; i++) {
			char **grown;

			if (!v[i]->bv_len || memchr(v[i]->bv_val, '\0', v[i]->bv_len))
				continue;
			grown = realloc(en->emails, (n + 2) * sizeof(*grown));
			if (!grown) {
				ldap_value_free_len(v);
				return -1;
			}
			en->emails = grown;
			en->emails[n] = strndup(v[i]->bv_val, v[i]->bv_len);
			if (!en->emails[n]) {
				ldap_value_free_len(v);
				return -1;
			}
			en->emails[++n] = NULL;
		}
		ldap_value_free_len(v);
	}
	return 0;
}

static int read_entry(LDAP *ld, LDAPMessage *e, void *arg)
{
	struct read_ctx *c = arg;
	struct reconcile *r = c->r;
	struct reconcile_entry *en;
	char *dn;

	if (r->nentries == c->cap) {
		size_t ncap = c->cap ? c->cap * 2 : 1024;
		struct reconcile_entry *grown;

		if (ncap > RECONCILE_MAX_ENTRIES)
			return -1;
		grown = realloc(r->entries, ncap * sizeof(*grown));
		if (!grown)
			return -1;
		r->entries = grown;
		c->cap = ncap;
	}
	en = &r->entries[r->nentries];
	memset(en, 0, sizeof(*en));
	dn = ldap_get_dn(ld, e);
	if (!dn)
		return -1;
	en->dn = strdup(dn);
	ldap_memfree(dn);
	if (!en->dn)
		return -1;
	r->nentries++;  /* counted now so that reconcile_clear frees it on error */
	en->uid = first_value(ld, e, "uid");
	en->entry_uuid = first_value(ld, e, "entryUUID");
	if (c->cfg->user_id_attribute)
		en->openai_user_id = first_value(ld, e, c->cfg->user_id_attribute);
	if (add_emails(ld, e, c->cfg, en) != 0)
		return -1;
	if (json_object_set_new(c->by_dn, en->dn, json_integer((json_int_t)(r->nentries - 1))))
		return -1;
	if (r->nentries % 1000 == 0)
		progress(r, 0);
	return 0;
}

static int mark_disabled(LDAP *ld, LDAPMessage *e, void *arg)
{
	struct read_ctx *c = arg;
	char *dn = ldap_get_dn(ld, e);
	json_t *idx;

	if (!dn)
		return -1;
	idx = json_object_get(c->by_dn, dn);
	ldap_memfree(dn);
	/* An entry that became disabled between the two searches is not in
	 * the first: it is skipped, and the next run sees it. */
	if (idx)
		c->r->entries[json_integer_value(idx)].disabled = 1;
	return 0;
}

static char *paren_dup(const char *f)
{
	size_t n = strlen(f);
	char *s = malloc(n + 3);

	if (!s)
		return NULL;
	if (f[0] == '(')
		memcpy(s, f, n + 1);
	else
		snprintf(s, n + 3, "(%s)", f);
	return s;
}

int reconcile_read_directory(struct reconcile *r, LDAP *ld, const struct config *cfg,
                             struct mapfile *map, char *err, size_t errlen)
{
	struct read_ctx c = { r, cfg, map, 0, json_object() };
	char *attrs[64], *uf = NULL, *df = NULL, *both = NULL;
	char *noattrs[] = { (char *)LDAP_NO_ATTRS, NULL };
	size_t na = 0;
	int ret = -1;

	if (!c.by_dn) {
		seterr(err, errlen, "out of memory");
		return -1;
	}
	attrs[na++] = (char *)"uid";
	attrs[na++] = (char *)"entryUUID";
	if (cfg->user_id_attribute)
		attrs[na++] = cfg->user_id_attribute;
	for (char *const *a = cfg->email_attributes; a && *a && na < 62; a++)
		attrs[na++] = *a;
	attrs[na] = NULL;

	uf = paren_dup(cfg->user_filter);
	df = paren_dup(cfg->disabled_filter);
	if (!uf || !df)
		goto oom;
	both = malloc(strlen(uf) + strlen(df) + 4);
	if (!both)
		goto oom;
	sprintf(both, "(&%s%s)", uf, df);

	if (paged_search(ld, cfg->base, uf, attrs, read_entry, &c, &r->ldap_pages, err, errlen))
		goto out;
	if (r->nentries == 0) {
		seterr(err, errlen, "the directory search under \"%s\" with %s returned no entries: "
		       "refusing to reconcile (an empty answer would make every member absent)",
		       cfg->base, uf);
		goto out;
	}
	if (paged_search(ld, cfg->base, both, noattrs, mark_disabled, &c, &r->ldap_pages,
	                 err, errlen))
		goto out;
	/* Map file right-hand sides, per entry: by DN, then uid, then address. */
	for (size_t i = 0; map && i < r->nentries; i++) {
		struct reconcile_entry *en = &r->entries[i];
		const char *m = mapfile_get(map, en->dn);

		if (!m && en->uid)
			m = mapfile_get(map, en->uid);
		for (char **a = en->emails; !m && a && *a; a++)
			m = mapfile_get(map, *a);
		en->map = m;
	}
	progress(r, 0);
	ret = 0;
	goto out;
oom:
	seterr(err, errlen, "out of memory");
out:
	free(uf);
	free(df);
	free(both);
	json_decref(c.by_dn);
	return ret;
}

/* ---- organization side ------------------------------------------------- */

struct org_ctx {
	struct reconcile *r;
	size_t cap;
	int oom;
};

static int dup_or_null(char **dst, const char *src)
{
	*dst = NULL;
	if (src && !(*dst = strdup(src)))
		return -1;
	return 0;
}

static int collect_member(const struct openai_user *u, void *arg)
{
	struct org_ctx *c = arg;
	struct reconcile *r = c->r;
	struct reconcile_member *m;

	if (r->nmembers == c->cap) {
		size_t ncap = c->cap ? c->cap * 2 : 1024;
		struct reconcile_member *grown = realloc(r->members, ncap * sizeof(*grown));

		if (!grown) {
			c->oom = 1;
			return 1;
		}
		r->members = grown;
		c->cap = ncap;
	}
	m = &r->members[r->nmembers];
	memset(m, 0, sizeof(*m));
	if (dup_or_null(&m->user.id, u->id) || dup_or_null(&m->user.email, u->email) ||
	    dup_or_null(&m->user.role, u->role) || dup_or_null(&m->user.name, u->name)) {
		openai_user_clear(&m->user);
		c->oom = 1;
		return 1;
	}
	r->nmembers++;
	if (r->nmembers % 500 == 0)
		progress(r, 0);
	return 0;
}

int reconcile_read_org(struct reconcile *r, struct openai_client *c,
                       struct openai_result *res)
{
	struct org_ctx ctx = { r, 0, 0 };
	int rc = openai_list_users(c, collect_member, &ctx, res);

	if (rc == OPENAI_OK && ctx.oom) {
		res->status = OPENAI_PROTOCOL;
		snprintf(res->message, sizeof(res->message), "out of memory reading the organization");
		rc = res->status;
	}
	progress(r, rc == OPENAI_OK);
	return rc;
}

/* ---- matching ---------------------------------------------------------- */

/* Index KEY -> entry i.  When two entries claim one key, an active entry
 * wins over a disabled one: never call someone disabled because a second,
 * disabled account shares their address. */
static int index_put(json_t *tbl, const char *key, size_t i, const struct reconcile *r,
                     int lower)
{
	char *k = lower ? lower_dup(key) : strdup(key);
	json_t *old;
	int rc = 0;

	if (!k)
		return -1;
	old = json_object_get(tbl, k);
	if (!old || (r->entries[json_integer_value(old)].disabled && !r->entries[i].disabled))
		rc = json_object_set_new(tbl, k, json_integer((json_int_t)i));
	free(k);
	return rc;
}

static const struct reconcile_entry *index_get(json_t *tbl, const struct reconcile *r,
                                               const char *key, int lower)
{
	char *k;
	json_t *v;

	if (!key)
		return NULL;
	k = lower ? lower_dup(key) : strdup(key);
	if (!k)
		return NULL;
	v = json_object_get(tbl, k);
	free(k);
	return v ? &r->entries[json_integer_value(v)] : NULL;
}

static int is_protected(const struct config *cfg, const struct openai_user *u)
{
	if (u->role && config_list_contains(cfg->protect_roles, u->role))
		return 1;
	if (config_list_contains(cfg->protect_users, u->id))
		return 1;
	return u->email && config_list_contains(cfg->protect_users, u->email);
}

int reconcile_classify(struct reconcile *r, const struct config *cfg, struct mapfile *map,
                       char *err, size_t errlen)
{
	json_t *by_map = json_object(), *by_attr = json_object(), *by_email = json_object();
	int ret = -1;

	if (!by_map || !by_attr || !by_email)
		goto oom;
	for (size_t i = 0; i < r->nentries; i++) {
		const struct reconcile_entry *en = &r->entries[i];

		if (en->map && strcmp(en->map, "-") != 0 &&
		    index_put(by_map, en->map, i, r, strchr(en->map, '@') != NULL))
			goto oom;
		if (en->openai_user_id && index_put(by_attr, en->openai_user_id, i, r, 0))
			goto oom;
		for (char **a = en->emails; a && *a; a++)
			if (index_put(by_email, *a, i, r, 1))
				goto oom;
	}
	memset(r->count, 0, sizeof(r->count));
	for (size_t i = 0; i < r->nmembers; i++) {
		struct reconcile_member *m = &r->members[i];
		const struct reconcile_entry *en;
		const char *how = "map_file";
		const char *direct = m->user.email && map ? mapfile_get(map, m->user.email) : NULL;

		en = index_get(by_map, r, m->user.id, 0);
		if (!en)
			en = index_get(by_map, r, m->user.email, 1);
		if (!en && (how = "attribute"))
			en = index_get(by_attr, r, m->user.id, 0);
		if (!en && (how = "email"))
			en = index_get(by_email, r, m->user.email, 1);
		m->entry = en;
		m->matched_by = en ? how : NULL;

		if (is_protected(cfg, &m->user))
			m->reason = RECONCILE_PROTECTED;
		else if ((direct && strcmp(direct, "-") == 0) || (en && en->map && strcmp(en->map, "-") == 0))
			m->reason = RECONCILE_EXEMPT;
		else if (!en)
			m->reason = RECONCILE_ABSENT;
		else
			m->reason = en->disabled ? RECONCILE_DISABLED : RECONCILE_ACTIVE;
		r->count[m->reason]++;
	}
	ret = 0;
	goto out;
oom:
	seterr(err, errlen, "out of memory matching members to entries");
out:
	json_decref(by_map);
	json_decref(by_attr);
	json_decref(by_email);
	return ret;
}

/* ---- output ------------------------------------------------------------ */

static const char *or_dash(const char *s)
{
	return s && *s ? s : "-";
}

void reconcile_print_table(const struct reconcile *r, FILE *fp, int all)
{
	fprintf(fp, "%-32s %-28s %-8s %-10s %s\n", "EMAIL", "OPENAI USER", "ROLE", "REASON", "DN");
	for (size_t i = 0; i < r->nmembers; i++) {
		const struct reconcile_member *m = &r->members[i];

		if (m->reason == RECONCILE_ACTIVE && !all)
			continue;
		fprintf(fp, "%-32s %-28s %-8s %-10s %s\n", or_dash(m->user.email), m->user.id,
		        or_dash(m->user.role), reconcile_reason_name(m->reason),
		        m->entry ? m->entry->dn : "-");
	}
	fprintf(fp, "\n%zu members, %zu directory entries:", r->nmembers, r->nentries);
	for (int k = 0; k < RECONCILE_NREASONS; k++)
		fprintf(fp, " %s %zu%s", reason_names[k], r->count[k],
		        k + 1 < RECONCILE_NREASONS ? "," : "\n");
}

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

int reconcile_print_json(const struct reconcile *r, FILE *fp, int all)
{
	json_t *root = json_object(), *members = json_array(), *summary = json_object();
	int ret = -1;

	if (!root || !members || !summary)
		goto out;
	for (size_t i = 0; i < r->nmembers; i++) {
		const struct reconcile_member *m = &r->members[i];
		json_t *o;

		if (m->reason == RECONCILE_ACTIVE && !all)
			continue;
		o = json_pack("{s:o, s:s, s:o, s:s, s:o}",
		              "email", str_or_null(m->user.email),
		              "openai_user_id", m->user.id,
		              "role", str_or_null(m->user.role),
		              "reason", reconcile_reason_name(m->reason),
		              "dn", str_or_null(m->entry ? m->entry->dn : NULL));
		if (!o || json_array_append_new(members, o))
			goto out;
	}
	for (int k = 0; k < RECONCILE_NREASONS; k++)
		if (json_object_set_new(summary, reason_names[k], json_integer((json_int_t)r->count[k])))
			goto out;
	json_object_set(root, "members", members);
	json_object_set(root, "summary", summary);
	if (json_dumpf(root, fp, JSON_INDENT(2) | JSON_PRESERVE_ORDER) == 0) {
		fputc('\n', fp);
		ret = 0;
	}
out:
	json_decref(members);
	json_decref(summary);
	json_decref(root);
	return ret;
}

int reconcile_apply(const struct reconcile *r, struct spool *s, int include_absent,
                    size_t *queued, char *err, size_t errlen)
{
	*queued = 0;
	for (size_t i = 0; i < r->nmembers; i++) {
		const struct reconcile_member *m = &r->members[i];
		const struct reconcile_entry *en = m->entry;
		struct job *j;
		int rc;

		if (m->reason != RECONCILE_DISABLED &&
		    !(include_absent && m->reason == RECONCILE_ABSENT))
			continue;
		j = job_new("reconcile", reconcile_reason_name(m->reason));
		if (!j || job_set(&j->openai_user_id, m->user.id) ||
		    (m->user.email && job_add_email(j, m->user.email)) ||
		    (en && (job_set(&j->dn, en->dn) || job_set(&j->uid, en->uid) ||
		            job_set(&j->entry_uuid, en->entry_uuid)))) {
			job_free(j);
			seterr(err, errlen, "out of memory");
			return -1;
		}
		rc = spool_enqueue(s, j, err, errlen);
		if (rc == 0) {
			struct logline l;

			logline_init(&l);
			logline_add(&l, "event", j->id);
			logline_add(&l, "action", "queued");
			logline_add(&l, "source", "reconcile");
			logline_add(&l, "reason", j->reason);
			logline_add(&l, "openai_user", m->user.id);
			if (m->user.email)
				logline_add(&l, "email", m->user.email);
			if (en)
				logline_add(&l, "dn", en->dn);
			log_line(LOG_NOTICE, &l);
			(*queued)++;
		}
		job_free(j);
		if (rc != 0)
			return -1;
	}
	return 0;
}

void reconcile_clear(struct reconcile *r)
{
	for (size_t i = 0; i < r->nentries; i++) {
		struct reconcile_entry *en = &r->entries[i];

		free(en->dn);
		free(en->uid);
		free(en->entry_uuid);
		free(en->openai_user_id);
		for (char **a = en->emails; a && *a; a++)
			free(*a);
		free(en->emails);
	}
	for (size_t i = 0; i < r->nmembers; i++)
		openai_user_clear(&r->members[i].user);
	free(r->entries);
	free(r->members);
	memset(r, 0, sizeof(*r));
}
