/* fakeorg: lets C unit tests run the fake OpenAI organization
 * (tests/fake-openai/fake_openai.py) as a child process on a free loopback
 * port, over HTTP or HTTPS with a throw-away CA, and drive its /_fake/
 * control endpoints.  Needs $PYTHON (default python3) and $abs_top_srcdir. */
#ifndef OR_TEST_FAKEORG_H
#define OR_TEST_FAKEORG_H

#include <stddef.h>

#define FAKEORG_KEY "sk-admin-test-0123456789abcdef"

enum fakeorg_tls {
	FAKEORG_HTTP = 0,
	FAKEORG_TLS = 1,           /* certificate signed by the test CA, for 127.0.0.1 */
	FAKEORG_TLS_UNTRUSTED = 2, /* self-signed: a client trusting fakeorg_cafile() must refuse */
	FAKEORG_TLS_WRONGHOST = 3  /* signed by the test CA, but for another host name */
};

struct fakeorg;

/* Starts the fake and waits (10 s deadline) until it listens.  tls is one of
 * enum fakeorg_tls.  Returns 0, or -1 with a diagnostic on stderr. */
int fakeorg_start(struct fakeorg **f, int tls);
/* Same, with another admin key (NULL = FAKEORG_KEY). */
int fakeorg_start_key(struct fakeorg **f, int tls, const char *key);
int fakeorg_untrusted_start(struct fakeorg **f);
/* Stops the server, reaps it, removes its temp dir, frees f.  NULL is fine. */
void fakeorg_stop(struct fakeorg *f);

/* Lent strings, valid until fakeorg_stop. */
const char *fakeorg_url(const struct fakeorg *f);    /* api_url: http(s)://127.0.0.1:PORT/v1 */
const char *fakeorg_key(const struct fakeorg *f);
const char *fakeorg_cafile(const struct fakeorg *f); /* the test CA; NULL over HTTP */
const char *fakeorg_dir(const struct fakeorg *f);    /* a private temp dir tests may use too */
int fakeorg_port(const struct fakeorg *f);

/* Control calls (path like "/_fake/reset").  Return the HTTP status, or -1
 * when the request could not be made. */
int fakeorg_post(struct fakeorg *f, const char *path, const char *json_body);
/* The answer body (malloc'd, caller frees), or NULL. */
char *fakeorg_get(struct fakeorg *f, const char *path);
/* Any request; *body_out (malloc'd) and *status_out when not NULL.  Also
 * useful for raw API calls: pass a path starting with /v1/ and auth != 0 to
 * send the key.  Returns 0, or -1 when no answer was received. */
int fakeorg_request(struct fakeorg *f, const char *method, const char *path,
                    const char *json_body, int auth, long *status_out, char **body_out);

/* Shorthands for the common control calls; each returns the HTTP status. */
int fakeorg_reset(struct fakeorg *f, const char *json_state);   /* {"users":[...],"invites":[...]} */
int fakeorg_fault(struct fakeorg *f, const char *json_faults);  /* [ {...}, ... ] */
int fakeorg_config(struct fakeorg *f, const char *json_config);
int fakeorg_generate(struct fakeorg *f, int users, int owners);

/* Checks every API request the fake has recorded against the endpoint table
 * of tests/lib/apispec.py.  Returns the number of violations (0 = all
 * conform), or -1 when the check could not run; the violations are printed
 * as TAP diagnostics ("# ..."). */
int fakeorg_spec_violations(struct fakeorg *f);

#endif
