/* test_fakeorg: the C helper for the fake organization starts the server
 * over HTTP and HTTPS, drives its control endpoints and stops it cleanly. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fakeorg.h"
#include "tap.h"

/* A body of a few hundred KiB makes curl send Expect: 100-continue. */
static void big_reset(struct fakeorg *f)
{
	size_t cap = 5000 * 80 + 64, len = 0;
	char *body = malloc(cap), *state;
	int i;

	if (!ok(body != NULL, "malloc"))
		return;
	len += (size_t)snprintf(body + len, cap - len, "{\"users\":[");
	for (i = 1; i <= 5000; i++)
		len += (size_t)snprintf(body + len, cap - len,
		                        "%s{\"id\":\"user-x%d\",\"email\":\"x%d@example.com\"}",
		                        i > 1 ? "," : "", i, i);
	snprintf(body + len, cap - len, "]}");
	is_int(fakeorg_reset(f, body), 200, "reset with 5000 users (%zu bytes)", strlen(body));
	free(body);
	state = fakeorg_get(f, "/_fake/state");
	contains(state, "\"user-x5000\"", "all 5000 users arrived");
	ok(state && strstr(state, "\"user-a\"") == NULL, "reset replaced the earlier users");
	free(state);
}

static void plain(void)
{
	struct fakeorg *f = NULL;
	char *body, dir[300];
	long status = 0;
	struct stat sb;

	if (!ok(fakeorg_start(&f, FAKEORG_HTTP) == 0, "fake starts over HTTP"))
		return;
	contains(fakeorg_url(f), "http://127.0.0.1:", "api url is loopback HTTP");
	contains(fakeorg_url(f), "/v1", "api url ends in /v1");
	ok(fakeorg_cafile(f) == NULL, "no CA file over HTTP");
	is_str(fakeorg_key(f), FAKEORG_KEY, "default key");
	is_int(fakeorg_reset(f, "{\"users\":[{\"id\":\"user-a\",\"email\":\"a@example.com\",\"role\":\"owner\"}]}"),
	       200, "reset answers 200");
	is_int(fakeorg_generate(f, 3, 1), 200, "generate answers 200");
	body = fakeorg_get(f, "/_fake/state");
	contains(body, "\"user-a\"", "state holds the reset user");
	contains(body, "u00003@example.com", "state holds generated users");
	free(body);

	ok(fakeorg_request(f, "GET", "/v1/organization/users/user-a", NULL, 1, &status, &body) == 0,
	   "API request with the key");
	is_int(status, 200, "retrieve answers 200");
	contains(body, "\"organization.user\"", "retrieve answers a user object");
	free(body);
	ok(fakeorg_request(f, "DELETE", "/v1/organization/users/user-a", NULL, 0, &status, &body) == 0,
	   "API request without the key");
	is_int(status, 401, "no key: 401");
	free(body);
	is_int(fakeorg_spec_violations(f), 1, "a request without a key is a spec violation");
	is_int(fakeorg_post(f, "/_fake/requests/clear", NULL), 200, "clear the request log");
	ok(fakeorg_request(f, "GET", "/v1/organization/users/user-a", NULL, 1, &status, NULL) == 0,
	   "API request again");
	is_int(fakeorg_post(f, "/_fake/nonsense", "{}"), 404, "unknown control endpoint: 404");
	is_int(fakeorg_fault(f, "[{\"action\":\"bogus\"}]"), 400, "bad fault refused");
	is_int(fakeorg_config(f, "{\"rate_limit\": 0}"), 200, "config answers 200");

	body = fakeorg_get(f, "/_fake/requests");
	contains(body, "\"/v1/organization/users/user-a\"", "requests are recorded");
	free(body);
	is_int(fakeorg_spec_violations(f), 0, "recorded requests conform to the spec table");
	ok(fakeorg_request(f, "PUT", "/v1/organization/users", NULL, 1, &status, NULL) == 0, "PUT made");
	is_int(status, 405, "PUT on the user list: 405");
	is_int(fakeorg_spec_violations(f), 1, "the PUT is one spec violation");

	big_reset(f);

	snprintf(dir, sizeof dir, "%s", fakeorg_dir(f));
	fakeorg_stop(f);
	ok(stat(dir, &sb) == -1, "stop removes the temp dir");
}

static void tls(int kind, const char *what)
{
	struct fakeorg *f = NULL;
	char *body;
	struct stat sb;

	if (!ok(fakeorg_start(&f, kind) == 0, "fake starts with %s", what))
		return;
	contains(fakeorg_url(f), "https://127.0.0.1:", "%s: api url is HTTPS", what);
	ok(fakeorg_cafile(f) && stat(fakeorg_cafile(f), &sb) == 0, "%s: CA file exists", what);
	body = fakeorg_get(f, "/_fake/state");
	contains(body, "\"users\"", "%s: control call over TLS works", what);
	free(body);
	fakeorg_stop(f);
}

/* Error paths: a server that cannot start, a path too long to send. */
static void failures(void)
{
	struct fakeorg *f = (struct fakeorg *)1;
	char *src = getenv("abs_top_srcdir") ? strdup(getenv("abs_top_srcdir")) : NULL;
	char longpath[2048];

	setenv("abs_top_srcdir", "/nonexistent-srcdir", 1);
	diag("errors from fakeorg on stderr are expected next");
	is_int(fakeorg_start(&f, FAKEORG_HTTP), -1, "no fake_openai.py: start fails");
	ok(f == NULL, "and *f is NULL");
	is_int(fakeorg_start(&f, FAKEORG_TLS), -1, "no mkcert.sh: TLS start fails");
	if (src)
		setenv("abs_top_srcdir", src, 1);
	else
		unsetenv("abs_top_srcdir");
	free(src);

	if (!ok(fakeorg_start(&f, FAKEORG_HTTP) == 0, "fake starts again"))
		return;
	memset(longpath, 'a', sizeof longpath - 1);
	longpath[0] = '/';
	longpath[sizeof longpath - 1] = '\0';
	ok(fakeorg_get(f, longpath) == NULL, "an over-long path: NULL, no request");
	is_int(fakeorg_post(f, longpath, "{}"), -1, "an over-long path: post -1");
	fakeorg_stop(f);
}

int main(void)
{
	struct fakeorg *f = (struct fakeorg *)1;

	plain();
	tls(FAKEORG_TLS, "a CA-signed certificate");
	tls(FAKEORG_TLS_UNTRUSTED, "an untrusted certificate");
	tls(FAKEORG_TLS_WRONGHOST, "a wrong-host certificate");
	failures();
	is_int(fakeorg_start(&f, 42), -1, "unknown TLS kind refused");
	ok(f == NULL, "and *f is NULL");
	fakeorg_stop(NULL);
	return tap_done();
}
