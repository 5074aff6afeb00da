/* test_openai: the API client against the fake organization — paging,
 * email lookups, deletes, invites, every error class, TLS, the rate
 * limiter — and at the end every recorded request checked against the
 * API description and the log checked for the key. */
#ifdef HAVE_CONFIG_H
#include "or_build.h"
#endif
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "config.h"
#include "log.h"
#include "openai.h"
#include "fakeorg.h"
#include "tap.h"

static char logdir[] = "/tmp/test_openai.XXXXXX";
static char logpath[300];

static struct config *cfg_for(struct fakeorg *f, const char *cafile, int rate, int timeout)
{
	struct config *cfg = config_new_defaults();

	if (!cfg)
		return NULL;
	free(cfg->api_url);
	cfg->api_url = strdup(fakeorg_url(f));
	free(cfg->ca_file);
	cfg->ca_file = cafile ? strdup(cafile) : NULL;
	cfg->api_rate = rate;
	cfg->http_timeout = timeout;
	return cfg;
}

static struct openai_client *client_for(struct fakeorg *f, const char *cafile, int rate,
                                        int timeout, const char *key)
{
	struct config *cfg = cfg_for(f, cafile, rate, timeout);
	struct openai_client *c;
	char err[256] = "";

	c = cfg ? openai_client_new(cfg, key ? key : FAKEORG_KEY, err, sizeof(err)) : NULL;
	if (!c)
		diag("openai_client_new: %s", err);
	config_free(cfg);
	return c;
}

/* What the worker would do with a result: log it.  The key check at the end
 * covers these lines too. */
static void note(const char *what, const struct openai_result *r)
{
	log_msg(LOG_INFO, "test=%s status=%s http=%ld retry_after=%ld message=\"%s\"", what,
	        openai_status_name(r->status), r->http_status, r->retry_after, r->message);
}

static json_t *requests_since(struct fakeorg *f, size_t since)
{
	char path[64], *body;
	json_t *j;

	snprintf(path, sizeof(path), "/_fake/requests?since=%zu", since);
	body = fakeorg_get(f, path);
	j = body ? json_loads(body, 0, NULL) : NULL;
	free(body);
	if (!json_is_array(j)) {
		json_decref(j);
		return json_array();
	}
	return j;
}

static size_t nrequests(struct fakeorg *f)
{
	json_t *j = requests_since(f, 0);
	size_t n = json_array_size(j);
	json_decref(j);
	return n;
}

static const char *req_param(json_t *req, const char *name)
{
	json_t *v = json_object_get(json_object_get(req, "params"), name);
	return json_string_value(json_array_get(v, 0));
}

/* ---- users -------------------------------------------------------------- */

struct collect {
	size_t n, owners, stop_at;
	char first[32], last[32];
	int dup, ordered;
};

static int collect_user(const struct openai_user *u, void *arg)
{
	struct collect *cl = arg;

	if (cl->n == 0)
		snprintf(cl->first, sizeof(cl->first), "%s", u->id);
	else if (strcmp(u->id, cl->last) <= 0)
		cl->ordered = 0; /* generated IDs are zero-padded: order is lexical */
	snprintf(cl->last, sizeof(cl->last), "%s", u->id);
	if (u->role && strcmp(u->role, "owner") == 0)
		cl->owners++;
	cl->n++;
	return cl->stop_at && cl->n >= cl->stop_at;
}

static void test_users(struct fakeorg *f, struct openai_client *c)
{
	struct openai_result r;
	struct openai_user u, *v = NULL;
	struct collect cl = { .ordered = 1 };
	size_t before, n = 0, i;
	json_t *reqs;
	int gone = -1;

	fakeorg_reset(f, "{}");
	is_int(fakeorg_generate(f, 257, 2), 200, "users: 257 generated, 2 owners");
	before = nrequests(f);
	is_int(openai_list_users(c, collect_user, &cl, &r), OPENAI_OK, "list: all pages");
	note("list", &r);
	is_int(cl.n, 257, "list: 257 users across pages");
	is_str(cl.first, "user-00001", "list: first user");
	is_str(cl.last, "user-00257", "list: last user");
	ok(cl.ordered, "list: each user once, in order");
	is_int(cl.owners, 2, "list: owner roles surfaced");
	reqs = requests_since(f, before);
	is_int(json_array_size(reqs), 3, "list: three pages requested");
	is_str(req_param(json_array_get(reqs, 0), "limit"), "100", "list: limit=100");
	ok(req_param(json_array_get(reqs, 0), "after") == NULL, "list: first page without after");
	is_str(req_param(json_array_get(reqs, 1), "after"), "user-00100", "list: second page after the first");
	is_str(req_param(json_array_get(reqs, 2), "after"), "user-00200", "list: third page after the second");
	{
		json_t *h = json_object_get(json_array_get(reqs, 0), "headers");
		is_str(json_string_value(json_object_get(h, "authorization")), "Bearer " FAKEORG_KEY,
		       "headers: bearer key");
#ifdef PACKAGE_VERSION
		is_str(json_string_value(json_object_get(h, "user-agent")), "openai-revoke/" PACKAGE_VERSION,
		       "headers: user agent with the version");
#else
		contains(json_string_value(json_object_get(h, "user-agent")), "openai-revoke/",
		         "headers: user agent");
#endif
		is_str(json_string_value(json_object_get(h, "accept")), "application/json",
		       "headers: accept");
	}
	json_decref(reqs);

	memset(&cl, 0, sizeof(cl));
	cl.stop_at = 150;
	before = nrequests(f);
	is_int(openai_list_users(c, collect_user, &cl, &r), OPENAI_OK, "list: callback stop is ok");
	is_int(cl.n, 150, "list: stopped at 150");
	is_int(nrequests(f) - before, 2, "list: no page fetched after the stop");

	is_int(openai_get_user(c, "user-00001", &u, &r), OPENAI_OK, "get: owner");
	is_str(u.role, "owner", "get: role owner");
	is_str(u.email, "u00001@example.com", "get: email");
	is_int(r.http_status, 200, "get: http 200");
	openai_user_clear(&u);
	is_int(openai_get_user(c, "user-00003", &u, &r), OPENAI_OK, "get: reader");
	is_str(u.role, "reader", "get: role reader");
	openai_user_clear(&u);
	is_int(openai_get_user(c, "user-nope", &u, &r), OPENAI_NOT_FOUND, "get: 404 is not found");
	is_int(r.http_status, 404, "get: http 404");
	ok(u.id == NULL, "get: nothing returned on 404");
	note("get404", &r);

	/* find by email: case, several users, a server ignoring the filter */
	before = nrequests(f);
	is_int(openai_find_users_by_email(c, "U00007@EXAMPLE.com", &v, &n, &r), OPENAI_OK,
	       "find: other case");
	is_int(n, 1, "find: one user");
	if (n == 1)
		is_str(v[0].id, "user-00007", "find: the right one");
	openai_users_free(v, n);
	reqs = requests_since(f, before);
	is_int(json_array_size(reqs), 1, "find: one request with the filter");
	is_str(req_param(json_array_get(reqs, 0), "emails[]"), "U00007@EXAMPLE.com",
	       "find: emails[] carries the address");
	is_str(req_param(json_array_get(reqs, 0), "limit"), "100", "find: limit=100");
	json_decref(reqs);

	is_int(openai_find_users_by_email(c, "nobody@example.com", &v, &n, &r), OPENAI_OK,
	       "find: no member is ok");
	ok(n == 0 && v == NULL, "find: none");

	fakeorg_post(f, "/_fake/users",
	             "[{\"id\":\"dup-1\",\"email\":\"Dup@Example.com\",\"role\":\"reader\"},"
	             "{\"id\":\"dup-2\",\"email\":\"dup@example.com\",\"role\":\"owner\"},"
	             "{\"id\":\"dup-3\",\"email\":\"dup@example.org\",\"role\":\"reader\"},"
	             "{\"id\":\"dup-4\",\"email\":\"xdup@example.com\",\"role\":\"reader\"},"
	             "{\"id\":\"dup-5\",\"email\":null,\"role\":\"reader\"}]");
	is_int(openai_find_users_by_email(c, "DUP@example.com", &v, &n, &r), OPENAI_OK,
	       "find: several users, one address");
	is_int(n, 2, "find: both found");
	if (n == 2) {
		is_str(v[0].id, "dup-1", "find: first");
		is_str(v[1].id, "dup-2", "find: second");
		is_str(v[1].role, "owner", "find: role surfaced");
	}
	openai_users_free(v, n);

	is_int(fakeorg_config(f, "{\"ignore_email_filter\":true}"), 200, "fake ignores the filter");
	before = nrequests(f);
	is_int(openai_find_users_by_email(c, "Dup@example.COM", &v, &n, &r), OPENAI_OK,
	       "find: filter ignored by the server");
	is_int(n, 2, "find: still exactly the two matches");
	for (i = 0; i < n; i++)
		ok(strncmp(v[i].id, "dup-", 4) == 0 && strcmp(v[i].id, "dup-3") && strcmp(v[i].id, "dup-4"),
		   "find: match %zu is a real match (%s)", i, v[i].id);
	openai_users_free(v, n);
	is_int(nrequests(f) - before, 3, "find: paged through all 262 users");
	fakeorg_config(f, "{\"ignore_email_filter\":false}");

	before = nrequests(f);
	is_int(openai_find_users_by_email(c, "", &v, &n, &r), OPENAI_PERMANENT, "find: empty address refused");
	is_int(openai_find_users_by_email(c, "a b@example.com", &v, &n, &r), OPENAI_PERMANENT,
	       "find: address with a space refused");
	is_int(openai_find_users_by_email(c, "a@example.com\r\nX-Injected: 1", &v, &n, &r),
	       OPENAI_PERMANENT, "find: address with CRLF refused");
	is_int(nrequests(f) - before, 0, "find: refused addresses sent nothing");

	/* an address with URL syntax stays one value */
	fakeorg_post(f, "/_fake/users", "[{\"id\":\"plus-1\",\"email\":\"a+b&limit=1@example.com\"}]");
	is_int(openai_find_users_by_email(c, "A+B&limit=1@example.com", &v, &n, &r), OPENAI_OK,
	       "find: address with + and &");
	is_int(n, 1, "find: found through the escaped query");
	openai_users_free(v, n);

	/* delete */
	is_int(openai_delete_user(c, "user-00010", &gone, &r), OPENAI_OK, "delete: removed");
	is_int(gone, 0, "delete: not already gone");
	is_int(r.http_status, 200, "delete: http 200");
	is_int(openai_get_user(c, "user-00010", &u, &r), OPENAI_NOT_FOUND, "delete: the user is gone");
	is_int(openai_delete_user(c, "user-00010", &gone, &r), OPENAI_OK, "delete: again is ok");
	is_int(gone, 1, "delete: already gone (404)");
	is_int(r.http_status, 404, "delete: http 404");
	note("delete404", &r);

	before = nrequests(f);
	{
		static const char *const bad[] = { "", "a/b", "x?y", "x#y", "%2e%2e", "a b", "a\nb",
		                                   "../invites/invite-1", NULL };
		int k;
		for (k = 0; bad[k]; k++) {
			is_int(openai_delete_user(c, bad[k], &gone, &r), OPENAI_PERMANENT,
			       "delete: bad id refused (case %d)", k);
			is_int(openai_get_user(c, bad[k], &u, &r), OPENAI_PERMANENT,
			       "get: bad id refused (case %d)", k);
		}
	}
	is_int(nrequests(f) - before, 0, "bad ids: no request sent");
	{
		char longid[300];
		memset(longid, 'x', 257);
		longid[257] = '\0';
		is_int(openai_delete_user(c, longid, &gone, &r), OPENAI_PERMANENT, "delete: 257-byte id refused");
	}
}

/* ---- invites ------------------------------------------------------------ */

struct inv_collect {
	size_t n;
	const char *email;
	struct openai_invite keep[16];
	size_t nkeep;
};

static int collect_invite(const struct openai_invite *inv, void *arg)
{
	struct inv_collect *ic = arg;

	ic->n++;
	if (strcasecmp(inv->email, ic->email) == 0 && ic->nkeep < 16) {
		struct openai_invite *k = &ic->keep[ic->nkeep++];
		k->id = strdup(inv->id);
		k->email = strdup(inv->email);
		k->role = inv->role ? strdup(inv->role) : NULL;
		k->status = strdup(inv->status);
	}
	return 0;
}

static void test_invites(struct fakeorg *f, struct openai_client *c)
{
	struct inv_collect ic = { .email = "Leaver@Example.com" };
	struct openai_result r;
	struct openai_invite fake_pending = { .id = "invite-acc", .email = "x", .status = "pending" };
	struct openai_invite gone = { .id = "invite-none", .email = "x", .status = "pending" };
	char *buf = malloc(64 * 1024), *state;
	size_t i, before, deleted = 0, refused = 0;

	strcpy(buf, "[");
	for (i = 1; i <= 230; i++)
		sprintf(buf + strlen(buf), "%s{\"id\":\"invite-%04zu\",\"email\":\"%s\",\"status\":\"%s\"}",
		        i > 1 ? "," : "",
		        i, i % 50 == 0 ? "leaver@example.com" : i % 77 == 0 ? "LEAVER@example.COM" : "other@example.com",
		        i % 100 == 0 ? "accepted" : i == 154 ? "expired" : "pending");
	strcat(buf, "]");
	fakeorg_reset(f, "{}");
	is_int(fakeorg_post(f, "/_fake/invites", buf), 200, "invites: 230 seeded");
	free(buf);
	fakeorg_post(f, "/_fake/invites", "[{\"id\":\"invite-acc\",\"email\":\"a@x\",\"status\":\"accepted\"}]");

	before = nrequests(f);
	is_int(openai_list_invites(c, collect_invite, &ic, &r), OPENAI_OK, "invites: listed");
	is_int(ic.n, 231, "invites: all pages");
	is_int(nrequests(f) - before, 3, "invites: three pages");
	/* 50,100,150,200 to leaver@; 77,154 to LEAVER@ */
	is_int(ic.nkeep, 6, "invites: six to the address, any case");
	for (i = 0; i < ic.nkeep; i++) {
		int rc = openai_delete_invite(c, &ic.keep[i], &r);
		note("delete_invite", &r);
		if (strcmp(ic.keep[i].status, "pending") == 0) {
			is_int(rc, OPENAI_OK, "invites: pending %s deleted", ic.keep[i].id);
			deleted++;
		} else {
			is_int(rc, OPENAI_PERMANENT, "invites: %s %s refused", ic.keep[i].status, ic.keep[i].id);
			contains(r.message, "left in place", "invites: message says left in place");
			is_int(r.http_status, 0, "invites: no request for a non-pending invite");
			refused++;
		}
		openai_invite_clear(&ic.keep[i]);
	}
	is_int(deleted, 3, "invites: three pending deleted");
	is_int(refused, 3, "invites: two accepted and one expired left");
	state = fakeorg_get(f, "/_fake/state");
	ok(state && !strstr(state, "invite-0050") && !strstr(state, "invite-0077") &&
	   strstr(state, "invite-0100") && strstr(state, "invite-0154") && strstr(state, "invite-0049"),
	   "invites: exactly the pending ones to the address are gone");
	free(state);

	is_int(openai_delete_invite(c, &fake_pending, &r), OPENAI_PERMANENT,
	       "invites: server refuses an accepted one (400)");
	is_int(r.http_status, 400, "invites: http 400");
	is_int(openai_delete_invite(c, &gone, &r), OPENAI_NOT_FOUND, "invites: 404 is not found");
	fake_pending.status = NULL;
	is_int(openai_delete_invite(c, &fake_pending, &r), OPENAI_PERMANENT, "invites: no status refused");
	fake_pending.status = "pending";
	fake_pending.id = "a/b";
	is_int(openai_delete_invite(c, &fake_pending, &r), OPENAI_PERMANENT, "invites: bad id refused");
	is_int(r.http_status, 0, "invites: bad id not sent");
}

static int count_invite(const struct openai_invite *inv, void *arg)
{
	(void)inv;
	++*(size_t *)arg;
	return 0;
}

/* ---- errors ------------------------------------------------------------- */

static void fault(struct fakeorg *f, const char *json)
{
	fakeorg_post(f, "/_fake/faults/clear", NULL);
	if (fakeorg_fault(f, json) != 200)
		diag("fault refused: %s", json);
}

static void imf_date(time_t t, char *buf, size_t len)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, len, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

static void test_errors(struct fakeorg *f, struct openai_client *c)
{
	struct openai_result r;
	struct openai_user u, *v = NULL;
	struct openai_client *bad, *slow;
	struct collect cl = { 0 };
	char json[1024], date[64];
	size_t n = 0, before, counted = 0;
	int gone, k;

	fakeorg_reset(f, "{\"users\":[{\"id\":\"user-1\",\"email\":\"one@example.com\",\"role\":\"reader\"}]}");

	/* auth */
	bad = client_for(f, NULL, 1000, 5, "sk-admin-wrong-key-9876543210");
	if (ok(bad != NULL, "auth: client with a wrong key")) {
		is_int(openai_get_user(bad, "user-1", &u, &r), OPENAI_AUTH, "auth: 401");
		is_int(r.http_status, 401, "auth: http 401");
		contains(r.message, "Incorrect API key provided", "auth: the API's message kept");
		ok(!strstr(r.message, "sk-admin-wrong-key-9876543210"), "auth: the key is not in the message");
		note("auth401", &r);
		openai_client_free(bad);
	}
	fault(f, "[{\"action\":\"status\",\"status\":403,\"body\":{\"error\":{\"message\":"
	         "\"You have insufficient permissions for this operation. Missing scopes: "
	         "api.management.write.\\nSecond line\",\"type\":\"invalid_request_error\"}}}]");
	is_int(openai_delete_user(c, "user-1", &gone, &r), OPENAI_AUTH, "auth: 403");
	is_int(r.http_status, 403, "auth: http 403");
	contains(r.message, "Missing scopes: api.management.write", "auth: 403 message kept");
	ok(!strchr(r.message, '\n'), "auth: message has no line break");
	note("auth403", &r);
	snprintf(json, sizeof(json), "[{\"action\":\"status\",\"status\":401,\"body\":{\"error\":"
	         "{\"message\":\"echo %s\"}}}]", FAKEORG_KEY);
	fault(f, json);
	is_int(openai_get_user(c, "user-1", &u, &r), OPENAI_AUTH, "auth: 401 echoing the key");
	ok(!strstr(r.message, FAKEORG_KEY), "auth: an echoed key is masked");
	note("auth-echo", &r);
	fault(f, "[{\"action\":\"status\",\"status\":401,\"body\":\"\"}]");
	is_int(openai_get_user(c, "user-1", &u, &r), OPENAI_AUTH, "auth: 401 without a body");
	ok(r.message[0] != '\0', "auth: still a message");

	/* 429 */
	fault(f, "[{\"action\":\"status\",\"status\":429,\"headers\":{\"Retry-After\":\"7\"}}]");
	is_int(openai_get_user(c, "user-1", &u, &r), OPENAI_RATE_LIMITED, "429: rate limited");
	is_int(r.retry_after, 7, "429: Retry-After seconds");
	note("429", &r);
	openai_pause_reset(); /* test_pause covers the process-wide pause */
	fault(f, "[{\"action\":\"status\",\"status\":429}]");
	is_int(openai_find_users_by_email(c, "one@example.com", &v, &n, &r), OPENAI_RATE_LIMITED,
	       "429: without Retry-After");
	is_int(r.retry_after, -1, "429: retry_after -1 when not given");
	ok(v == NULL && n == 0, "429: nothing returned");
	openai_pause_reset();
	imf_date(time(NULL) + 3600, date, sizeof(date));
	snprintf(json, sizeof(json), "[{\"action\":\"status\",\"status\":429,\"headers\":{\"Retry-After\":\"%s\"}}]", date);
	fault(f, json);
	is_int(openai_list_users(c, collect_user, &cl, &r), OPENAI_RATE_LIMITED, "429: HTTP-date");
	ok(r.retry_after > 3500 && r.retry_after <= 3600, "429: HTTP-date read (%ld s)", r.retry_after);
	ok(openai_pause_left_ms() > 3500000L, "429: HTTP-date pauses the process (%ld ms)",
	   openai_pause_left_ms());
	openai_pause_reset();
	fault(f, "[{\"action\":\"status\",\"status\":429,\"headers\":{\"Retry-After\":\"whenever\"}}]");
	is_int(openai_get_user(c, "user-1", &u, &r), OPENAI_RATE_LIMITED, "429: bad Retry-After");
	is_int(r.retry_after, -1, "429: unreadable Retry-After is -1");
	openai_pause_reset();
	/* the fake's own rate limiting, end to end */
	fakeorg_config(f, "{\"rate_limit\":1}");
	before = 0;
	for (k = 0; k < 5; k++)
		if (openai_get_user(c, "user-1", &u, &r) == OPENAI_RATE_LIMITED) {
			before = 1;
			break;
		} else
			openai_user_clear(&u);
	fakeorg_config(f, "{\"rate_limit\":0}");
	ok(before && r.retry_after >= 1, "429: the fake's limiter gives Retry-After (%ld)", r.retry_after);
	openai_pause_reset();

	/* 5xx and other 4xx */
	{
		static const int st[] = { 500, 502, 503 };
		for (k = 0; k < 3; k++) {
			snprintf(json, sizeof(json), "[{\"action\":\"status\",\"status\":%d}]", st[k]);
			fault(f, json);
			is_int(openai_get_user(c, "user-1", &u, &r), OPENAI_TRANSIENT, "%d: transient", st[k]);
			is_int(r.http_status, st[k], "%d: status kept", st[k]);
			snprintf(date, sizeof(date), "HTTP %d", st[k]);
			contains(r.message, date, "%d: message", st[k]);
		}
	}
	fault(f, "[{\"action\":\"status\",\"status\":503,\"headers\":{\"Retry-After\":\"30\"}}]");
	is_int(openai_delete_user(c, "user-1", &gone, &r), OPENAI_TRANSIENT, "503: with Retry-After");
	is_int(r.retry_after, 30, "503: Retry-After kept for the worker");
	fault(f, "[{\"action\":\"status\",\"status\":400}]");
	is_int(openai_delete_user(c, "user-1", &gone, &r), OPENAI_PERMANENT, "400: permanent");
	contains(r.message, "Injected error 400", "400: the API's message");
	fault(f, "[{\"action\":\"status\",\"status\":409}]");
	is_int(openai_get_user(c, "user-1", &u, &r), OPENAI_PERMANENT, "409: permanent");
	fault(f, "[{\"action\":\"status\",\"status\":302,\"headers\":{\"Location\":\"http://127.0.0.1:9/steal\"},\"body\":\"\"}]");
	before = nrequests(f);
	is_int(openai_get_user(c, "user-1", &u, &r), OPENAI_PROTOCOL, "302: not followed");
	is_int(nrequests(f) - before, 1, "302: one request only");

	/* transport */
	slow = client_for(f, NULL, 1000, 1, NULL);
	fault(f, "[{\"action\":\"delay\",\"seconds\":3}]");
	if (ok(slow != NULL, "timeout: client with http_timeout 1")) {
		is_int(openai_get_user(slow, "user-1", &u, &r), OPENAI_TRANSIENT, "timeout: transient");
		contains(r.message, "timeout", "timeout: message");
		is_int(r.http_status, 0, "timeout: no status");
		note("timeout", &r);
		openai_client_free(slow);
	}
	/* count 2: curl resends once on a fresh connection when a reused one
	 * closes before answering (a stale keep-alive is normal), so one drop
	 * alone would be healed. */
	fault(f, "[{\"action\":\"drop\",\"count\":2}]");
	is_int(openai_get_user(c, "user-1", &u, &r), OPENAI_TRANSIENT, "drop: transient");
	note("drop", &r);
	fault(f, "[{\"action\":\"truncated\"}]");
	is_int(openai_list_users(c, collect_user, &cl, &r), OPENAI_TRANSIENT, "truncated: transient");
	contains(r.message, "truncated", "truncated: message");

	/* answers that are not what they should be */
	fault(f, "[{\"action\":\"malformed\"}]");
	is_int(openai_list_users(c, collect_user, &cl, &r), OPENAI_PROTOCOL, "malformed: protocol");
	contains(r.message, "malformed JSON", "malformed: message");
	fault(f, "[{\"action\":\"malformed\"}]");
	is_int(openai_get_user(c, "user-1", &u, &r), OPENAI_PROTOCOL, "malformed: get");
	is_int(r.http_status, 200, "malformed: http status kept");
	fault(f, "[{\"action\":\"malformed\",\"body\":\"\"}]");
	is_int(openai_delete_user(c, "user-1", &gone, &r), OPENAI_PROTOCOL, "empty body: protocol");
	fault(f, "[{\"action\":\"wrong_types\"}]");
	is_int(openai_list_users(c, collect_user, &cl, &r), OPENAI_PROTOCOL, "data not an array: protocol");
	contains(r.message, "not an array", "data not an array: message");
	fault(f, "[{\"action\":\"wrong_types\",\"variant\":\"id\"}]");
	is_int(openai_find_users_by_email(c, "one@example.com", &v, &n, &r), OPENAI_PROTOCOL,
	       "id a number: protocol");
	fault(f, "[{\"action\":\"wrong_types\",\"variant\":\"has_more\"}]");
	is_int(openai_list_invites(c, count_invite, &counted, &r), OPENAI_PROTOCOL,
	       "has_more a string: protocol");
	is_int(counted, 0, "has_more a string: nothing handed out");
	fault(f, "[{\"action\":\"wrong_types\"}]");
	is_int(openai_get_user(c, "user-1", &u, &r), OPENAI_PROTOCOL, "user of wrong types: protocol");
	fault(f, "[{\"action\":\"wrong_types\",\"variant\":\"deleted\"}]");
	is_int(openai_delete_user(c, "user-1", &gone, &r), OPENAI_PROTOCOL, "deleted a string: protocol");
	fault(f, "[{\"action\":\"oversized\",\"bytes\":5000000}]");
	is_int(openai_list_users(c, collect_user, &cl, &r), OPENAI_PROTOCOL, "oversized: protocol");
	contains(r.message, "larger than 4 MiB", "oversized: message");
	fault(f, "[{\"action\":\"oversized\",\"bytes\":6000000,\"no_length\":true}]");
	is_int(openai_get_user(c, "user-1", &u, &r), OPENAI_PROTOCOL, "oversized without length: protocol");
	contains(r.message, "larger than 4 MiB", "oversized without length: message");
	fault(f, "[{\"action\":\"oversized\",\"bytes\":4000000}]");
	is_int(openai_list_users(c, collect_user, &cl, &r), OPENAI_OK, "just under 4 MiB: fine");

	/* pagination that never ends */
	fault(f, "[{\"action\":\"malformed\",\"count\":-1,\"body\":\"{\\\"object\\\":\\\"list\\\","
	         "\\\"data\\\":[{\\\"id\\\":\\\"user-1\\\"}],\\\"has_more\\\":true,\\\"last_id\\\":\\\"user-1\\\"}\"}]");
	before = nrequests(f);
	is_int(openai_list_users(c, collect_user, &cl, &r), OPENAI_PROTOCOL, "paging: a repeating cursor");
	contains(r.message, "has_more never ended", "paging: message");
	ok(nrequests(f) - before <= 3, "paging: stopped at once");
	fault(f, "[{\"action\":\"malformed\",\"body\":\"{\\\"data\\\":[],\\\"has_more\\\":true}\"}]");
	is_int(openai_find_users_by_email(c, "one@example.com", &v, &n, &r), OPENAI_PROTOCOL,
	       "paging: has_more without a cursor");
	fakeorg_post(f, "/_fake/faults/clear", NULL);

	/* the handle survives all that */
	is_int(openai_get_user(c, "user-1", &u, &r), OPENAI_OK, "after the faults: requests work");
	openai_user_clear(&u);
}

/* ---- the pause after a 429 ------------------------------------------------ */

/* Arrival time and status of recorded request I since SINCE; -1 if absent. */
static double arrival(struct fakeorg *f, size_t since, size_t i, int *status)
{
	json_t *reqs = requests_since(f, since), *q = json_array_get(reqs, i);
	double t = q ? json_number_value(json_object_get(q, "time")) : -1.0;

	*status = q ? (int)json_integer_value(json_object_get(q, "status")) : 0;
	json_decref(reqs);
	return t;
}

/* A 429 answered to one client holds back every request of the process:
 * another client, another path, sent only once Retry-After has passed.
 * Checked on the fake's arrival times, "not before" only.  The 2 ms allow
 * for the fake's wall clock against our monotonic one. */
static void test_pause(struct fakeorg *f)
{
	struct openai_client *a = client_for(f, NULL, 1000, 5, NULL);
	struct openai_client *b = client_for(f, NULL, 1000, 5, NULL);
	struct openai_result r;
	struct openai_user u, *v = NULL;
	struct collect cl;
	size_t since, n = 0;
	double t0, t1;
	int gone = 0, s0, s1;

	openai_pause_reset();
	fakeorg_reset(f, "{\"users\":[{\"id\":\"user-1\",\"email\":\"one@example.com\"},"
	                 "{\"id\":\"user-2\",\"email\":\"two@example.com\"},"
	                 "{\"id\":\"user-3\",\"email\":\"three@example.com\"}]}");
	if (!ok(a && b, "pause: two clients"))
		goto out;
	is_int(openai_pause_left_ms(), 0, "pause: none to begin with");

	/* Retry-After: 2 on a GET of one user, then a DELETE of another */
	fault(f, "[{\"method\":\"GET\",\"path\":\"/v1/organization/users/user-1\",\"count\":1,"
	         "\"action\":\"status\",\"status\":429,\"headers\":{\"Retry-After\":\"2\"}}]");
	since = nrequests(f);
	is_int(openai_get_user(a, "user-1", &u, &r), OPENAI_RATE_LIMITED, "pause: 429 still returned");
	is_int(r.retry_after, 2, "pause: with its Retry-After");
	ok(openai_pause_left_ms() > 0 && openai_pause_left_ms() <= 2000,
	   "pause: the process pauses up to 2 s (%ld ms left)", openai_pause_left_ms());
	is_int(openai_delete_user(b, "user-2", &gone, &r), OPENAI_OK,
	       "pause: the other client's request waited, then went");
	t0 = arrival(f, since, 0, &s0);
	t1 = arrival(f, since, 1, &s1);
	is_int(s0, 429, "pause: recorded the 429");
	is_int(s1, 200, "pause: recorded the DELETE");
	ok(t0 > 0 && t1 >= t0 + 2.0 - 0.002,
	   "pause: the next request arrived no sooner than Retry-After (%.3f s after the 429)", t1 - t0);
	is_int(openai_pause_left_ms(), 0, "pause: over once the request went");

	/* no Retry-After: the default pause of 1 s */
	fault(f, "[{\"method\":\"GET\",\"path\":\"/v1/organization/users/user-1\",\"count\":1,"
	         "\"action\":\"status\",\"status\":429}]");
	since = nrequests(f);
	is_int(openai_get_user(a, "user-1", &u, &r), OPENAI_RATE_LIMITED, "pause: 429 without Retry-After");
	is_int(r.retry_after, -1, "pause: the caller sees no Retry-After");
	ok(openai_pause_left_ms() > 0 && openai_pause_left_ms() <= 1000,
	   "pause: the default pause of 1 s (%ld ms left)", openai_pause_left_ms());
	is_int(openai_find_users_by_email(b, "three@example.com", &v, &n, &r), OPENAI_OK,
	       "pause: the lookup went after the default pause");
	openai_users_free(v, n);
	t0 = arrival(f, since, 0, &s0);
	t1 = arrival(f, since, 1, &s1);
	is_int(s0, 429, "pause: recorded the 429 without Retry-After");
	ok(t0 > 0 && t1 >= t0 + 1.0 - 0.002,
	   "pause: the lookup arrived no sooner than 1 s after (%.3f s)", t1 - t0);

	/* a success after the pause leaves none behind */
	is_int(openai_pause_left_ms(), 0, "pause: none after a 429 then a success");
	since = nrequests(f);
	is_int(openai_get_user(a, "user-1", &u, &r), OPENAI_OK, "pause: next request answered");
	openai_user_clear(&u);
	is_int(openai_pause_left_ms(), 0, "pause: a success starts no pause");
	is_int((int)(nrequests(f) - since), 1, "pause: that request was sent once");

	/* Retry-After: 0 is no licence to hammer: the default pause */
	fault(f, "[{\"count\":1,\"action\":\"status\",\"status\":429,\"headers\":{\"Retry-After\":\"0\"}}]");
	is_int(openai_get_user(a, "user-1", &u, &r), OPENAI_RATE_LIMITED, "pause: 429 with Retry-After: 0");
	ok(openai_pause_left_ms() > 0, "pause: Retry-After: 0 still pauses (%ld ms)", openai_pause_left_ms());
	openai_pause_reset();

	/* a long pause is not slept through: the request is not sent */
	fault(f, "[{\"count\":1,\"action\":\"status\",\"status\":429,\"headers\":{\"Retry-After\":\"30\"}}]");
	is_int(openai_get_user(a, "user-1", &u, &r), OPENAI_RATE_LIMITED, "pause: 429 with Retry-After: 30");
	since = nrequests(f);
	is_int(openai_delete_user(b, "user-3", &gone, &r), OPENAI_RATE_LIMITED,
	       "pause: during a long pause a request is refused");
	is_int(r.http_status, 0, "pause: refused without an answer");
	ok(r.retry_after >= 29 && r.retry_after <= 30, "pause: with the seconds left (%ld)", r.retry_after);
	contains(r.message, "not sent", "pause: the message says it was not sent");
	is_int((int)(nrequests(f) - since), 0, "pause: nothing reached the organization");
	memset(&cl, 0, sizeof(cl));
	is_int(openai_list_users(a, collect_user, &cl, &r), OPENAI_RATE_LIMITED, "pause: a list is refused too");
	is_int((int)(nrequests(f) - since), 0, "pause: still nothing sent");
	/* a 503 with Retry-After is this request's trouble, not a pause */
	openai_pause_reset();
	fault(f, "[{\"count\":1,\"action\":\"status\",\"status\":503,\"headers\":{\"Retry-After\":\"30\"}}]");
	is_int(openai_get_user(a, "user-1", &u, &r), OPENAI_TRANSIENT, "pause: 503 with Retry-After");
	is_int(openai_pause_left_ms(), 0, "pause: a 503 does not pause the process");
	is_int(openai_delete_user(b, "user-3", &gone, &r), OPENAI_OK, "pause: after a reset requests go");
out:
	fakeorg_post(f, "/_fake/faults/clear", NULL);
	openai_pause_reset();
	openai_client_free(a);
	openai_client_free(b);
}

/* ---- rate limiter ------------------------------------------------------- */

static double now_real(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Arrival times since index `since`, sorted. */
static size_t arrival_times(struct fakeorg *f, size_t since, double *t, size_t max)
{
	json_t *reqs = requests_since(f, since);
	size_t i, n = 0;

	for (i = 0; i < json_array_size(reqs) && n < max; i++)
		t[n++] = json_number_value(json_object_get(json_array_get(reqs, i), "time"));
	json_decref(reqs);
	qsort(t, n, sizeof(*t), cmp_double);
	return n;
}

/* Not-before: the k-th request (0-based) cannot start before
 * t0 + (k + 1 - burst) / rate, whatever the bucket held at t0. */
static int not_before(const double *t, size_t n, double t0, int rate, int burst)
{
	size_t k;
	int bad = 0;

	for (k = 0; k < n; k++) {
		double earliest = t0 + ((double)k + 1 - burst) / rate - 0.002;
		if (t[k] < earliest) {
			diag("request %zu arrived %.3f s after the start, not before %.3f allowed", k,
			     t[k] - t0, earliest - t0);
			bad++;
		}
	}
	return bad;
}

struct worker {
	struct fakeorg *f;
	int rc;
};

static void *rate_thread(void *arg)
{
	struct worker *w = arg;
	struct openai_client *c = client_for(w->f, NULL, 5, 5, NULL);
	struct openai_result r;
	struct openai_user u;
	int k;

	w->rc = c ? 0 : -1;
	for (k = 0; c && k < 5; k++) {
		if (openai_get_user(c, "user-1", &u, &r) != OPENAI_OK)
			w->rc = -1;
		openai_user_clear(&u);
	}
	openai_client_free(c);
	return NULL;
}

static void test_rate(struct fakeorg *f)
{
	const int rate = 5, burst = 5, count = 16;
	struct openai_client *c = client_for(f, NULL, rate, 5, NULL);
	struct openai_result r;
	struct openai_user u;
	struct worker w[4];
	pthread_t th[4];
	double t[64], t0;
	size_t since, n, i, j;
	int k, worst = 0, failures = 0;

	fakeorg_reset(f, "{\"users\":[{\"id\":\"user-1\",\"email\":\"one@example.com\"}]}");
	if (!ok(c != NULL, "rate: client at 5/s"))
		return;
	since = nrequests(f);
	t0 = now_real();
	for (k = 0; k < count; k++) {
		if (openai_get_user(c, "user-1", &u, &r) != OPENAI_OK)
			failures++;
		openai_user_clear(&u);
	}
	openai_client_free(c);
	is_int(failures, 0, "rate: %d requests answered", count);
	n = arrival_times(f, since, t, 64);
	is_int(n, count, "rate: all recorded");
	is_int(not_before(t, n, t0, rate, burst), 0, "rate: no request earlier than the bucket allows");
	/* One client sends one request at a time, so the arrivals of any
	 * 1-second window were sent within it: at most rate + burst. */
	for (i = 0; i < n; i++) {
		for (j = i; j < n && t[j] < t[i] + 1.0; j++)
			;
		if ((int)(j - i) > worst)
			worst = (int)(j - i);
	}
	ok(worst <= rate + burst, "rate: at most %d in any 1-second window (saw %d)", rate + burst, worst);

	/* Four threads, four clients, one bucket. */
	since = nrequests(f);
	t0 = now_real();
	for (k = 0; k < 4; k++) {
		w[k].f = f;
		w[k].rc = -1;
		if (pthread_create(&th[k], NULL, rate_thread, &w[k]) != 0)
			th[k] = 0;
	}
	for (k = 0; k < 4; k++)
		if (th[k])
			pthread_join(th[k], NULL);
	for (k = 0; k < 4; k++)
		is_int(w[k].rc, 0, "rate: thread %d done", k);
	n = arrival_times(f, since, t, 64);
	is_int(n, 20, "rate: 20 requests from 4 threads");
	is_int(not_before(t, n, t0, rate, burst), 0, "rate: threads share one bucket");
}

/* ---- TLS and the api_url policy ------------------------------------------- */

static void test_tls(void)
{
	struct fakeorg *f = NULL, *g = NULL, *h = NULL;
	struct openai_client *c;
	struct openai_result r;
	struct openai_user u;
	struct config *cfg;
	char err[256];

	if (!ok(fakeorg_start(&f, FAKEORG_TLS) == 0, "tls: fake over HTTPS"))
		goto out;
	fakeorg_reset(f, "{\"users\":[{\"id\":\"user-t\",\"email\":\"t@example.com\",\"role\":\"owner\"}]}");
	c = client_for(f, fakeorg_cafile(f), 1000, 30, NULL);
	if (ok(c != NULL, "tls: client with the test CA")) {
		is_int(openai_get_user(c, "user-t", &u, &r), OPENAI_OK, "tls: request over HTTPS");
		is_str(u.role, "owner", "tls: answer read");
		openai_user_clear(&u);
		openai_client_free(c);
	}
	c = client_for(f, NULL, 1000, 30, NULL);
	if (ok(c != NULL, "tls: client with the system store")) {
		is_int(openai_get_user(c, "user-t", &u, &r), OPENAI_TRANSIENT,
		       "tls: test CA not in the system store: refused");
		contains(r.message, "certificate", "tls: message names the certificate");
		openai_client_free(c);
	}
	is_int(fakeorg_spec_violations(f), 0, "tls: every request conforms to the API");

	if (ok(fakeorg_start(&g, FAKEORG_TLS_UNTRUSTED) == 0, "tls: fake with a self-signed certificate")) {
		c = client_for(g, fakeorg_cafile(f), 1000, 30, NULL);
		if (c) {
			is_int(openai_get_user(c, "user-t", &u, &r), OPENAI_TRANSIENT,
			       "tls: untrusted certificate refused");
			note("untrusted", &r);
			openai_client_free(c);
		}
		is_int(nrequests(g), 0, "tls: nothing reached the untrusted server");
	}
	if (ok(fakeorg_start(&h, FAKEORG_TLS_WRONGHOST) == 0, "tls: fake with a certificate for another host")) {
		c = client_for(h, fakeorg_cafile(h), 1000, 30, NULL);
		if (c) {
			is_int(openai_get_user(c, "user-t", &u, &r), OPENAI_TRANSIENT,
			       "tls: certificate for another name refused");
			openai_client_free(c);
		}
		is_int(nrequests(h), 0, "tls: nothing reached the wrong host");
	}

	if (f) {
		/* A CA file that cannot be read: refused, never "verification off". */
		c = client_for(f, "/nonexistent/ca.pem", 1000, 30, NULL);
		if (c) {
			is_int(openai_get_user(c, "user-t", &u, &r), OPENAI_TRANSIENT, "tls: unreadable ca_file fails");
			note("badca", &r);
			openai_client_free(c);
		}
	}

	cfg = config_new_defaults();
	free(cfg->api_url);
	cfg->api_url = strdup("http://api.example.com/v1");
	err[0] = '\0';
	ok(openai_client_new(cfg, FAKEORG_KEY, err, sizeof(err)) == NULL, "http:// to another host refused");
	contains(err, "loopback", "http:// refusal explains why");
	free(cfg->api_url);
	cfg->api_url = strdup("http://127.0.0.1@api.example.com/v1");
	ok(openai_client_new(cfg, FAKEORG_KEY, err, sizeof(err)) == NULL, "http:// with user info refused");
	free(cfg->api_url);
	cfg->api_url = strdup("https://api.example.com/v1");
	ok(openai_client_new(cfg, "", err, sizeof(err)) == NULL, "empty key refused");
	ok(openai_client_new(cfg, "sk-a\r\nX-Evil: 1", err, sizeof(err)) == NULL, "key with CRLF refused");
	ok(openai_client_new(cfg, NULL, err, sizeof(err)) == NULL, "no key refused");
	ok(openai_client_new(NULL, FAKEORG_KEY, err, sizeof(err)) == NULL, "no configuration refused");
	c = openai_client_new(cfg, FAKEORG_KEY, err, sizeof(err));
	ok(c != NULL, "https:// anywhere accepted");
	openai_client_free(c);
	config_free(cfg);
out:
	fakeorg_stop(h);
	fakeorg_stop(g);
	fakeorg_stop(f);
}

/* ---- localhost and proxies ------------------------------------------------ */

static void test_proxy(struct fakeorg *f)
{
	struct openai_client *c;
	struct openai_result r;
	struct openai_user u;
	struct config *cfg;
	char url[128], proxy[64], err[256] = "";

	fakeorg_reset(f, "{\"users\":[{\"id\":\"user-1\",\"email\":\"one@example.com\"}]}");
	/* a proxy that goes nowhere: plain HTTP to loopback must not use it */
	setenv("http_proxy", "http://127.0.0.1:9", 1);
	setenv("HTTPS_PROXY", "http://127.0.0.1:9", 1);
	unsetenv("no_proxy");
	unsetenv("NO_PROXY");
	cfg = cfg_for(f, NULL, 1000, 5);
	snprintf(url, sizeof(url), "http://localhost:%d/v1", fakeorg_port(f));
	free(cfg->api_url);
	cfg->api_url = strdup(url);
	c = openai_client_new(cfg, FAKEORG_KEY, err, sizeof(err));
	if (ok(c != NULL, "localhost: http:// accepted (%s)", err)) {
		is_int(openai_get_user(c, "user-1", &u, &r), OPENAI_OK,
		       "proxy: loopback HTTP goes direct, key never handed to a proxy");
		openai_user_clear(&u);
		openai_client_free(c);
	}
	config_free(cfg);

	/* https:// follows the environment: here, the fake's plain port as the
	 * proxy, which cannot tunnel; the failure shows the proxy was asked. */
	snprintf(proxy, sizeof(proxy), "http://127.0.0.1:%d", fakeorg_port(f));
	setenv("HTTPS_PROXY", proxy, 1);
	cfg = config_new_defaults();
	free(cfg->api_url);
	cfg->api_url = strdup("https://api.invalid/v1");
	cfg->http_timeout = 5;
	c = openai_client_new(cfg, FAKEORG_KEY, err, sizeof(err));
	if (ok(c != NULL, "proxy: https client")) {
		is_int(openai_get_user(c, "user-1", &u, &r), OPENAI_TRANSIENT, "proxy: tunnel refused is transient");
		contains(r.message, "CONNECT", "proxy: the environment's proxy was used");
		note("proxy", &r);
		openai_client_free(c);
	}
	config_free(cfg);
	unsetenv("http_proxy");
	unsetenv("HTTPS_PROXY");
}

/* ---- the log ---------------------------------------------------------- */

static void test_log(void)
{
	FILE *fp = fopen(logpath, "r");
	char *buf = malloc(4 * 1024 * 1024);
	size_t n = 0;

	if (!ok(fp && buf, "log: log_file readable")) {
		if (fp)
			fclose(fp);
		free(buf);
		return;
	}
	n = fread(buf, 1, 4 * 1024 * 1024 - 1, fp);
	buf[n] = '\0';
	fclose(fp);
	contains(buf, "method=GET path=/organization/users?limit=100", "log: debug request lines");
	contains(buf, "method=DELETE path=/organization/users/user-00010 status=200", "log: method, path, status");
	contains(buf, "ms=", "log: time taken");
	ok(!strstr(buf, FAKEORG_KEY), "log: the admin key never appears");
	ok(!strstr(buf, "sk-admin-wrong-key-9876543210"), "log: nor the wrong key");
	ok(!strstr(buf, "Bearer"), "log: no Authorization header");
	free(buf);
}

int main(void)
{
	struct fakeorg *f = NULL;
	struct openai_client *c = NULL;

	if (!mkdtemp(logdir))
		tap_skip_all("mkdtemp failed");
	snprintf(logpath, sizeof(logpath), "%s/client.log", logdir);
	log_setup(LOG_MODE_STDERR, "test_openai", LOG_USER, LOG_DEBUG, logpath);
	ok(openai_global_init() == 0, "global init");
	ok(openai_global_init() == 0, "global init twice");

	if (!ok(fakeorg_start(&f, FAKEORG_HTTP) == 0, "fake organization over HTTP"))
		goto out;
	c = client_for(f, NULL, 1000, 5, NULL);
	if (!ok(c != NULL, "client for the fake"))
		goto out;
	test_users(f, c);
	test_invites(f, c);
	test_errors(f, c);
	test_pause(f);
	test_rate(f);
	test_proxy(f);
	is_int(fakeorg_spec_violations(f), 0, "every recorded request conforms to the API description");
	test_tls();
	test_log();
out:
	openai_client_free(c);
	fakeorg_stop(f);
	log_teardown();
	unlink(logpath);
	rmdir(logdir);
	return tap_done();
}
