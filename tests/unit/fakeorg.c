/* fakeorg: runs the fake OpenAI organization for C unit tests (see
 * fakeorg.h).  The server is a Python child process in its own temp dir;
 * control calls go through libcurl with TLS verification left on. */
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fakeorg.h"

extern char **environ;

#define FAKEORG_START_SECONDS 10
#define FAKEORG_STOP_SECONDS 10
#define FAKEORG_MAX_BODY (64u * 1024 * 1024) /* /_fake/requests of a benchmark can be big */

struct fakeorg {
	pid_t pid;
	int port;
	int tls;
	int curl_ref;    /* holds a curl_global_init reference */
	char dir[256];
	char base[64];   /* scheme://127.0.0.1:PORT */
	char url[80];    /* base + /v1 */
	char key[256];
	char cafile[300];
	char ctlca[300]; /* what the control calls trust */
};

struct buf {
	char *p;
	size_t len;
	int over;
};

static double now_mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void nap_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

static const char *srcdir(void)
{
	const char *d = getenv("abs_top_srcdir");
	return d && *d ? d : ".";
}

static const char *python(void)
{
	const char *p = getenv("PYTHON");
	return p && *p ? p : "python3";
}

/* Runs argv with stdout sent to /dev/null unless keep_stdout; returns the
 * exit status, or -1. */
static int run_wait(char *const argv[], int keep_stdout)
{
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int st, rc = -1;

	if (posix_spawn_file_actions_init(&fa) != 0)
		return -1;
	if (!keep_stdout)
		posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	fflush(stdout);
	if (posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ) != 0) {
		fprintf(stderr, "fakeorg: cannot run %s: %s\n", argv[0], strerror(errno));
		goto out;
	}
	while (waitpid(pid, &st, 0) == -1) {
		if (errno != EINTR)
			goto out;
	}
	rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
out:
	posix_spawn_file_actions_destroy(&fa);
	return rc;
}

static void remove_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[600];

	if (d) {
		while ((e = readdir(d)) != NULL) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
			unlink(p);
		}
		closedir(d);
	}
	rmdir(dir);
}

static int read_port(const char *file)
{
	char b[32] = "";
	FILE *fp = fopen(file, "r");
	int port = 0;

	if (!fp)
		return 0;
	if (fgets(b, sizeof b, fp))
		port = atoi(b);
	fclose(fp);
	return port > 0 && port < 65536 ? port : 0;
}

int fakeorg_start_key(struct fakeorg **out, int tls, const char *key)
{
	static const char *const certs[] = { NULL, "server", "untrusted", "wronghost" };
	struct fakeorg *f;
	const char *tmp = getenv("TMPDIR");
	char port_file[300], cert[300], tlskey[300], script[512];
	char *argv[16];
	posix_spawn_file_actions_t fa;
	int n = 0, st, have_fa = 0;
	double deadline;

	*out = NULL;
	if (tls < FAKEORG_HTTP || tls > FAKEORG_TLS_WRONGHOST)
		return -1;
	f = calloc(1, sizeof *f);
	if (!f)
		return -1;
	f->pid = -1;
	f->tls = tls;
	snprintf(f->key, sizeof f->key, "%s", key ? key : FAKEORG_KEY);
	snprintf(f->dir, sizeof f->dir, "%s/fakeorg-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(f->dir)) {
		fprintf(stderr, "fakeorg: mkdtemp %s: %s\n", f->dir, strerror(errno));
		f->dir[0] = '\0';
		goto fail;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		goto fail;
	f->curl_ref = 1;
	snprintf(port_file, sizeof port_file, "%s/fake.port", f->dir);

	if (tls) {
		char mk[512];
		char *mkargv[] = { "sh", mk, f->dir, NULL };
		snprintf(mk, sizeof mk, "%s/tests/fake-openai/mkcert.sh", srcdir());
		if (run_wait(mkargv, 0) != 0) {
			fprintf(stderr, "fakeorg: %s failed (is openssl installed?)\n", mk);
			goto fail;
		}
		snprintf(f->cafile, sizeof f->cafile, "%s/ca.pem", f->dir);
		snprintf(cert, sizeof cert, "%s/%s.pem", f->dir, certs[tls]);
		snprintf(tlskey, sizeof tlskey, "%s/%s.key", f->dir, certs[tls]);
		/* The self-signed certificate is its own trust anchor, so control
		 * calls keep verification on even for the untrusted variant. */
		snprintf(f->ctlca, sizeof f->ctlca, "%s",
		         tls == FAKEORG_TLS_UNTRUSTED ? cert : f->cafile);
	}

	snprintf(script, sizeof script, "%s/tests/fake-openai/fake_openai.py", srcdir());
	argv[n++] = (char *)python();
	argv[n++] = script;
	argv[n++] = "--port";
	argv[n++] = "0";
	argv[n++] = "--port-file";
	argv[n++] = port_file;
	argv[n++] = "--key";
	argv[n++] = f->key;
	if (tls) {
		argv[n++] = "--tls-cert";
		argv[n++] = cert;
		argv[n++] = "--tls-key";
		argv[n++] = tlskey;
	}
	argv[n] = NULL;

	if (posix_spawn_file_actions_init(&fa) != 0)
		goto fail;
	have_fa = 1;
	/* stdout is the test's TAP stream: the server must stay off it. */
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	fflush(stdout);
	if (posix_spawnp(&f->pid, argv[0], &fa, NULL, argv, environ) != 0) {
		fprintf(stderr, "fakeorg: cannot run %s: %s\n", argv[0], strerror(errno));
		f->pid = -1;
		goto fail;
	}

	deadline = now_mono() + FAKEORG_START_SECONDS;
	while ((f->port = read_port(port_file)) == 0) {
		if (waitpid(f->pid, &st, WNOHANG) == f->pid) {
			fprintf(stderr, "fakeorg: fake_openai.py exited before listening\n");
			f->pid = -1;
			goto fail;
		}
		if (now_mono() > deadline) {
			fprintf(stderr, "fakeorg: fake_openai.py did not write %s within %d s\n",
			        port_file, FAKEORG_START_SECONDS);
			goto fail;
		}
		nap_ms(10);
	}
	snprintf(f->base, sizeof f->base, "%s://127.0.0.1:%d", tls ? "https" : "http", f->port);
	snprintf(f->url, sizeof f->url, "%s/v1", f->base);
	posix_spawn_file_actions_destroy(&fa);
	*out = f;
	return 0;
fail:
	if (have_fa)
		posix_spawn_file_actions_destroy(&fa);
	fakeorg_stop(f);
	return -1;
}

int fakeorg_start(struct fakeorg **f, int tls)
{
	return fakeorg_start_key(f, tls, NULL);
}

int fakeorg_untrusted_start(struct fakeorg **f)
{
	return fakeorg_start_key(f, FAKEORG_TLS_UNTRUSTED, NULL);
}

void fakeorg_stop(struct fakeorg *f)
{
	int st;
	double deadline;

	if (!f)
		return;
	if (f->pid > 0) {
		kill(f->pid, SIGTERM);
		deadline = now_mono() + FAKEORG_STOP_SECONDS;
		for (;;) {
			pid_t r = waitpid(f->pid, &st, WNOHANG);
			if (r == f->pid || (r == -1 && errno != EINTR))
				break;
			if (now_mono() > deadline) {
				kill(f->pid, SIGKILL);
				waitpid(f->pid, &st, 0);
				break;
			}
			nap_ms(10);
		}
	}
	if (f->curl_ref)
		curl_global_cleanup();
	if (f->dir[0])
		remove_dir(f->dir);
	memset(f->key, 0, sizeof f->key);
	free(f);
}

const char *fakeorg_url(const struct fakeorg *f) { return f->url; }
const char *fakeorg_key(const struct fakeorg *f) { return f->key; }
const char *fakeorg_dir(const struct fakeorg *f) { return f->dir; }
int fakeorg_port(const struct fakeorg *f) { return f->port; }

const char *fakeorg_cafile(const struct fakeorg *f)
{
	return f->tls ? f->cafile : NULL;
}

static size_t collect(char *data, size_t size, size_t nmemb, void *arg)
{
	struct buf *b = arg;
	size_t n = size * nmemb;
	char *p;

	if (b->len + n > FAKEORG_MAX_BODY) {
		b->over = 1;
		return 0;
	}
	p = realloc(b->p, b->len + n + 1);
	if (!p)
		return 0;
	b->p = p;
	memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
	return n;
}

int fakeorg_request(struct fakeorg *f, const char *method, const char *path,
                    const char *json_body, int auth, long *status_out, char **body_out)
{
	CURL *h = NULL;
	struct curl_slist *hdrs = NULL;
	struct buf b = { NULL, 0, 0 };
	char url[1024], authz[300];
	long status = 0;
	int rc = -1;
	CURLcode cc;

	if (status_out)
		*status_out = 0;
	if (body_out)
		*body_out = NULL;
	if (!f || strlen(f->base) + strlen(path) >= sizeof url)
		return -1;
	memcpy(url, f->base, strlen(f->base));
	memcpy(url + strlen(f->base), path, strlen(path) + 1);
	h = curl_easy_init();
	if (!h)
		goto out;
	hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	if (auth) {
		snprintf(authz, sizeof authz, "Authorization: Bearer %s", f->key);
		hdrs = curl_slist_append(hdrs, authz);
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
	curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	if (json_body)
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, json_body);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	if (f->tls) {
		curl_easy_setopt(h, CURLOPT_CAINFO, f->ctlca);
		if (f->tls == FAKEORG_TLS_WRONGHOST)
			curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	cc = curl_easy_perform(h);
	if (cc != CURLE_OK) {
		fprintf(stderr, "fakeorg: %s %s: %s\n", method, path, curl_easy_strerror(cc));
		goto out;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	if (status_out)
		*status_out = status;
	if (body_out) {
		*body_out = b.p ? b.p : strdup("");
		b.p = NULL;
	}
	rc = 0;
out:
	free(b.p);
	curl_slist_free_all(hdrs);
	if (h)
		curl_easy_cleanup(h);
	return rc;
}

int fakeorg_post(struct fakeorg *f, const char *path, const char *json_body)
{
	long status;

	if (fakeorg_request(f, "POST", path, json_body ? json_body : "{}", 0, &status, NULL) != 0)
		return -1;
	return (int)status;
}

char *fakeorg_get(struct fakeorg *f, const char *path)
{
	long status;
	char *body;

	if (fakeorg_request(f, "GET", path, NULL, 0, &status, &body) != 0)
		return NULL;
	return body;
}

int fakeorg_reset(struct fakeorg *f, const char *json_state)
{
	return fakeorg_post(f, "/_fake/reset", json_state ? json_state : "{}");
}

int fakeorg_fault(struct fakeorg *f, const char *json_faults)
{
	return fakeorg_post(f, "/_fake/faults", json_faults);
}

int fakeorg_config(struct fakeorg *f, const char *json_config)
{
	return fakeorg_post(f, "/_fake/config", json_config);
}

int fakeorg_generate(struct fakeorg *f, int users, int owners)
{
	char body[128];

	snprintf(body, sizeof body, "{\"users\": %d, \"owners\": %d}", users, owners);
	return fakeorg_post(f, "/_fake/generate", body);
}

int fakeorg_spec_violations(struct fakeorg *f)
{
	char script[512];
	char *argv[] = { (char *)python(), script, "--url", f->base,
	                 f->tls ? "--cafile" : NULL, f->tls ? f->ctlca : NULL, NULL };
	int rc;

	snprintf(script, sizeof script, "%s/tests/lib/apispec.py", srcdir());
	rc = run_wait(argv, 1);
	return rc >= 0 && rc < 125 ? rc : -1;
}
