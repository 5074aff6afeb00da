/* test_mapping: the map file parser, the reloading holder, and the
 * resolution order of DESIGN.md section 6 against the fake organization. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tap.h"
#include "config.h"
#include "fakeorg.h"
#include "job.h"
#include "log.h"
#include "mapping.h"
#include "openai.h"

static char tmpdir[256];
static char logpath[300];

static double now_f(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
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

static int count_str(const char *hay, const char *needle)
{
	int n = 0;
	const char *p = hay;
	while (p && (p = strstr(p, needle))) {
		n++;
		p += strlen(needle);
	}
	return n;
}

static struct mapfile *parse(const char *text, char *err, size_t errlen)
{
	struct mapfile *m = NULL;
	if (mapfile_parse("test.map", text, strlen(text), &m, err, errlen) != 0)
		return NULL;
	return m;
}

static void test_parse(void)
{
	char err[2048];
	struct mapfile *m;
	const char *text =
		"# directory user          OpenAI user\n"
		"\n"
		"   \t\n"
		"uid=jdoe,ou=People,dc=example,dc=com   user-abc123\n"
		"cn=John Doe, ou=people, dc=example, dc=com   user-john_1\n"
		"asmith    user-def456\r\n"
		"Bob@Example.COM   robert@corp.example.com\n"
		"robot    -\n"
		"  # indented comment\n"
		"commented user-cc   # a trailing comment\n"
		"cn=Team \\#5,dc=example,dc=com user-team # escaped hash in a DN\n"
		"last-line-no-newline user-zz";

	m = parse(text, err, sizeof(err));
	ok(m != NULL, "parse: valid file") ? (void)0 : diag("%s", err);
	is_int(mapfile_size(m), 8, "parse: eight entries");
	is_str(mapfile_get(m, "commented"), "user-cc", "get: trailing comment ignored");
	is_str(mapfile_get(m, "CN=team \\235, DC=example, DC=com"), "user-team", "get: escaped # in a DN");
	is_str(mapfile_get(m, "uid=jdoe,ou=people,dc=example,dc=com"), "user-abc123", "get: DN, other case");
	is_str(mapfile_get(m, "UID=JDOE, OU=PEOPLE, DC=EXAMPLE, DC=COM"), "user-abc123", "get: DN normalised (case, spaces)");
	is_str(mapfile_get(m, "cn=john doe,ou=People,dc=Example,dc=com"), "user-john_1", "get: DN with a space on the left side");
	is_str(mapfile_get(m, "asmith"), "user-def456", "get: uid (CRLF line)");
	is_str(mapfile_get(m, "ASmith"), "user-def456", "get: uid case-insensitive");
	is_str(mapfile_get(m, "bob@example.com"), "robert@corp.example.com", "get: address case-insensitive, address on the right");
	is_str(mapfile_get(m, "robot"), "-", "get: exempt");
	is_str(mapfile_get(m, "last-line-no-newline"), "user-zz", "get: last line without newline");
	ok(mapfile_get(m, "nobody") == NULL, "get: unknown uid");
	ok(mapfile_get(m, "uid=jdoe,ou=people,dc=example,dc=org") == NULL, "get: other DN");
	ok(mapfile_get(m, "uid=asmith,dc=x") == NULL, "get: a uid is not a DN");
	ok(mapfile_get(m, "asmith@example.com") == NULL, "get: a uid is not an address");
	ok(mapfile_get(m, "") == NULL && mapfile_get(m, NULL) == NULL, "get: empty and NULL keys");
	ok(mapfile_get(NULL, "asmith") == NULL, "get: NULL map");
	mapfile_free(m);

	m = parse("", err, sizeof(err));
	ok(m && mapfile_size(m) == 0, "parse: empty file is an empty map");
	mapfile_free(m);
	m = parse("# only a comment\n\n", err, sizeof(err));
	ok(m && mapfile_size(m) == 0, "parse: comments only");
	mapfile_free(m);
}

static void test_many(void)
{
	size_t n = 100000, i, cap = n * 40, len = 0;
	char *buf = malloc(cap), key[64], want[64], err[256];
	struct mapfile *m = NULL;
	int good = 1;

	for (i = 0; i < n; i++)
		len += (size_t)snprintf(buf + len, cap - len, "u%06zu@example.com user-%06zu\n", i, i);
	ok(mapfile_parse("big.map", buf, len, &m, err, sizeof(err)) == 0, "parse: 100000 lines");
	is_int(mapfile_size(m), (long long)n, "parse: 100000 entries");
	for (i = 0; i < n; i += 7) {
		snprintf(key, sizeof(key), "U%06zu@EXAMPLE.com", i);
		snprintf(want, sizeof(want), "user-%06zu", i);
		const char *got = mapfile_get(m, key);
		if (!got || strcmp(got, want) != 0) {
			good = 0;
			diag("lookup %s failed", key);
			break;
		}
	}
	ok(good, "get: every sampled key of 100000 found");
	mapfile_free(m);
	free(buf);
}

static void expect_error(const char *text, size_t len, const char *want, const char *what)
{
	char err[2048] = "";
	struct mapfile *m = (struct mapfile *)1;
	int rc = mapfile_parse("bad.map", text, len, &m, err, sizeof(err));
	ok(rc == -1 && m == NULL, "error: %s refused", what);
	contains(err, want, "error: %s message", what);
}

/* literal text, its length from sizeof (the tests hold NUL-free bytes) */
#define EXPECT_ERROR(text, want, what) expect_error(text, sizeof(text) - 1, want, what)

static void test_errors(void)
{
	char *big;
	size_t n;

	expect_error("a user-1\nA user-2\n", 18, "bad.map:2: duplicate left side \"A\" (first on line 1)", "duplicate uid");
	expect_error("uid=a,dc=x user-1\nUID=A, DC=X user-2\n", 37, "bad.map:2: duplicate left side", "duplicate DN (normalised)");
	expect_error("a@x.com user-1\n\nA@X.COM user-2\n", 31, "bad.map:3: duplicate left side", "duplicate address");
	expect_error("# c\njdoe\n", 9, "bad.map:2: missing right side", "missing right side (uid)");
	expect_error("uid=jdoe,dc=example,dc=com\n", 27, "bad.map:1: missing right side", "missing right side (DN)");
	expect_error("jdoe user-1 extra\n", 18, "bad.map:1: too many fields", "too many fields");
	expect_error("uid=a,dc=x user-1 user-2\n", 25, "bad.map:1: too many fields", "too many fields after a DN");
	expect_error("uid=a,dc=x - -\n", 15, "bad.map:1: too many fields", "too many fields after a DN (exempt)");
	expect_error("jdoe something\n", 15, "bad.map:1: right side \"something\" is not an OpenAI user id", "bad right side");
	expect_error("jdoe user-\n", 11, "bad.map:1: right side", "empty user id");
	expect_error("jdoe user-a/b\n", 14, "bad.map:1: right side", "user id with a slash");
	expect_error("jdoe a@b@c\n", 11, "bad.map:1: right side", "address with two @");
	expect_error("uid=a,,, user-1\n", 16, "bad.map:1: left side is not a valid DN", "bad DN");
	expect_error("jdoe user-1\nx\0y user-2\n", 23, "bad.map:2: NUL byte", "NUL byte");

	n = 8193;
	big = malloc(n + 32);
	memset(big, 'a', n);
	memcpy(big + n, " user-1\n", 9);
	expect_error(big, n + 8, "bad.map:1: line longer than 8192 bytes", "line over 8 KiB");
	free(big);

	n = 100 * 1024;
	big = malloc(n + 64);
	memcpy(big, "first user-1\n", 13);
	memset(big + 13, 'b', n);
	memcpy(big + 13 + n, " user-2\nthird user-3 x\n", 24);
	expect_error(big, 13 + n + 24, "bad.map:2: line longer than 8192 bytes", "100 KB line");
	{
		char e2[2048] = "";
		struct mapfile *m = NULL;
		mapfile_parse("bad.map", big, 13 + n + 24, &m, e2, sizeof(e2));
		contains(e2, "bad.map:3: too many fields", "error: parsing goes on after a 100 KB line");
		ok(strlen(e2) < 400, "error: the long line is not echoed");
	}
	free(big);

	/* encodings and control bytes: refused with the line number, never echoed */
	EXPECT_ERROR("ok user-1\nj\xfcrgen user-2\n", "bad.map:2: line is not valid UTF-8", "Latin-1 byte");
	EXPECT_ERROR("a\xc0\xaf user-2\n", "bad.map:1: line is not valid UTF-8", "overlong UTF-8");
	EXPECT_ERROR("a\xed\xa0\x80 user-2\n", "bad.map:1: line is not valid UTF-8", "UTF-16 surrogate");
	EXPECT_ERROR("a user-2 \xc3", "bad.map:1: line is not valid UTF-8", "truncated UTF-8 at the end");
	EXPECT_ERROR("a\x1b[2J user-2\n", "bad.map:1: control character in line", "escape sequence");
	EXPECT_ERROR("a\rb user-2\n", "bad.map:1: control character in line", "CR inside a line");
	EXPECT_ERROR("a\xc2\x85 user-2\n", "bad.map:1: control character in line", "C1 control (NEL)");
	EXPECT_ERROR("a\x7f user-2\n", "bad.map:1: control character in line", "DEL");
	{
		char e2[2048] = "";
		struct mapfile *m = NULL;
		const char *t = "a\x1b]0;owned\x07 user-1\n\xff\xfe user-2\n";
		mapfile_parse("bad.map", t, strlen(t), &m, e2, sizeof(e2));
		ok(!strchr(e2, '\x1b') && !strchr(e2, '\x07') && !strchr(e2, '\xff'),
		   "error: messages carry none of the line's bytes");
	}
	{
		char e2[512];
		struct mapfile *m = NULL;
		const char *t = "# CRLF file\r\nj\xc3\xbcrgen user-1\r\nuid=j\xc3\xbc,dc=x user-2\r\n"
		                "\xe6\x97\xa5@example.com -\r\n\tindented\tuser-3\r\n\r\n";
		ok(mapfile_parse("crlf.map", t, strlen(t), &m, e2, sizeof(e2)) == 0, "CRLF file with UTF-8 parses")
		        ? (void)0 : diag("%s", e2);
		is_str(mapfile_get(m, "j\xc3\xbcrgen"), "user-1", "CRLF: UTF-8 uid");
		is_str(mapfile_get(m, "uid=j\xc3\xbc,dc=x"), "user-2", "CRLF: UTF-8 DN");
		is_str(mapfile_get(m, "\xe6\x97\xa5@example.com"), "-", "CRLF: UTF-8 address, exempt");
		is_str(mapfile_get(m, "indented"), "user-3", "CRLF: tabs as separators");
		is_int(mapfile_size(m), 4, "CRLF: four entries, no CR kept");
		mapfile_free(m);
	}

	n = 16u * 1024 * 1024 + 1;
	big = malloc(n);
	memset(big, '\n', n);
	expect_error(big, n, "bad.map: larger than", "file over 16 MiB");
	free(big);

	{
		char err[2048] = "";
		struct mapfile *m = NULL;
		const char *t = "a user-1\nb\nc user-1 x\na user-3\n";
		ok(mapfile_parse("bad.map", t, strlen(t), &m, err, sizeof(err)) == -1, "error: several problems refused");
		ok(strstr(err, "bad.map:2:") && strstr(err, "bad.map:3:") && strstr(err, "bad.map:4:"),
		   "error: every problem reported, one per line") ? (void)0 : diag("%s", err);
	}
	{
		char err[512] = "", path[512];
		struct mapfile *m = NULL;
		snprintf(path, sizeof(path), "%s/absent.map", tmpdir);
		ok(mapfile_load(path, &m, err, sizeof(err)) == -1 && m == NULL, "load: missing file refused");
		contains(err, "absent.map: No such file", "load: missing file message");
		ok(mapfile_load(tmpdir, &m, err, sizeof(err)) == -1, "load: a directory is refused");
		contains(err, "not a regular file", "load: directory message");
		snprintf(path, sizeof(path), "%s/fifo.map", tmpdir);
		if (mkfifo(path, 0600) == 0) {
			/* no writer ever comes: a blocking open would hang here */
			ok(mapfile_load(path, &m, err, sizeof(err)) == -1 && m == NULL,
			   "load: a FIFO is refused without hanging");
			contains(err, "not a regular file", "load: FIFO message");
			unlink(path);
		}
		snprintf(path, sizeof(path), "%s/ok.map", tmpdir);
		write_file(path, "x user-1\n");
		ok(mapfile_load(path, &m, err, sizeof(err)) == 0 && mapfile_size(m) == 1, "load: a file");
		mapfile_free(m);
	}
}

static struct job *mkjob(const char *dn, const char *uid, const char *e1, const char *e2)
{
	struct job *j = job_new("slapi", "disabled");
	if (dn)
		job_set(&j->dn, dn);
	if (uid)
		job_set(&j->uid, uid);
	if (e1)
		job_add_email(j, e1);
	if (e2)
		job_add_email(j, e2);
	return j;
}

/* Polls mapping_static_dup until it answers WANT (NULL: nothing), 10 s. */
static int wait_static(struct mapping *m, struct job *j, const char *want)
{
	double end = now_f() + 10;
	while (now_f() < end) {
		char *got = mapping_static_dup(m, j);
		int same = (got && want) ? strcmp(got, want) == 0 : got == want;
		free(got);
		if (same)
			return 1;
		usleep(50 * 1000);
	}
	return 0;
}

/* Polls the log for NEEDLE, asking M (reloads happen on lookups). */
static int wait_log(struct mapping *m, struct job *j, const char *needle, int count)
{
	double end = now_f() + 10;
	while (now_f() < end) {
		char *s;
		free(mapping_static_dup(m, j));
		s = read_all(logpath);
		int n = count_str(s, needle);
		free(s);
		if (n >= count)
			return 1;
		usleep(50 * 1000);
	}
	return 0;
}

static void test_reload(void)
{
	char path[512], err[512];
	struct config *cfg = config_new_defaults();
	struct mapping *m;
	struct job *j = mkjob("uid=jdoe,ou=people,dc=example,dc=com", "jdoe", "jdoe@example.com", NULL);
	char *s;
	double end;
	int n;

	snprintf(path, sizeof(path), "%s/reload.map", tmpdir);
	free(cfg->map_file);
	cfg->map_file = strdup(path);

	ok(mapping_new(cfg, err, sizeof(err)) == NULL, "mapping_new: missing map file refused");
	contains(err, "reload.map", "mapping_new: message names the file");
	write_file(path, "jdoe user-1\nbad line here\n");
	ok(mapping_new(cfg, err, sizeof(err)) == NULL, "mapping_new: bad map file refused");
	contains(err, "reload.map:2:", "mapping_new: message has FILE:LINE");

	write_file(path, "jdoe user-1\n");
	m = mapping_new(cfg, err, sizeof(err));
	ok(m != NULL, "mapping_new: good map file") ? (void)0 : diag("%s", err);
	s = mapping_static_dup(m, j);
	is_str(s, "user-1", "static: by uid");
	free(s);

	write_file(path, "uid=JDOE,ou=people,dc=example,dc=com user-2\njdoe user-1\n");
	ok(wait_static(m, j, "user-2"), "reload: new file picked up; DN wins over uid");
	write_file(path, "jdoe@EXAMPLE.com user-3\n");
	ok(wait_static(m, j, "user-3"), "reload: address");
	write_file(path, "jdoe@example.com -\n");
	ok(wait_static(m, j, "-"), "reload: exempt");

	write_file(path, "jdoe user-4\noops\n");
	ok(wait_log(m, j, "reload.map:2: missing right side", 1), "reload: bad file logged with FILE:LINE");
	s = mapping_static_dup(m, j);
	is_str(s, "-", "reload: failed reload keeps the previous map");
	free(s);
	/* asking again for more than a second must not log the same problem again */
	end = now_f() + 2.2;
	while (now_f() < end) {
		free(mapping_static_dup(m, j));
		usleep(100 * 1000);
	}
	s = read_all(logpath);
	n = count_str(s, "reload.map:2: missing right side");
	free(s);
	is_int(n, 1, "reload: a bad version is logged once");

	unlink(path);
	ok(wait_log(m, j, "No such file", 1), "reload: a removed file is logged");
	s = mapping_static_dup(m, j);
	is_str(s, "-", "reload: removed file keeps the previous map");
	free(s);

	write_file(path, "other user-9\n");
	ok(wait_static(m, j, NULL), "reload: good file after a bad one is used");
	mapping_free(m);

	/* no map file configured: nothing static */
	free(cfg->map_file);
	cfg->map_file = NULL;
	m = mapping_new(cfg, err, sizeof(err));
	ok(m != NULL && mapping_static_dup(m, j) == NULL, "mapping without map_file");
	mapping_free(m);
	job_free(j);
	config_free(cfg);
}

static void check_resolve(struct mapping *m, struct openai_client *c, struct job *j,
                          enum mapping_kind kind, const char *id, const char *via,
                          const char *what)
{
	struct mapping_result r;
	struct openai_result res;
	int rc = mapping_resolve(m, c, j, &r, &res);

	is_int(r.kind, kind, "resolve %s: kind", what);
	if (kind != MAPPING_ERROR)
		is_int(rc, 0, "resolve %s: returns 0", what);
	if (id)
		is_str(r.user.id, id, "resolve %s: user", what);
	if (via)
		is_str(r.via, via, "resolve %s: via", what);
	mapping_result_clear(&r);
}

static void test_resolve(void)
{
	struct fakeorg *f = NULL;
	struct config *cfg;
	struct mapping *m;
	struct openai_client *c;
	struct mapping_result r;
	struct openai_result res;
	struct job *j;
	char path[512], err[512];

	if (fakeorg_start(&f, FAKEORG_HTTP) != 0) {
		ok(0, "fake organization started");
		return;
	}
	fakeorg_reset(f, "{\"users\":["
		"{\"id\":\"user-aaa\",\"email\":\"a@example.com\",\"role\":\"reader\",\"name\":\"A\"},"
		"{\"id\":\"user-bbb\",\"email\":\"b@example.com\",\"role\":\"owner\",\"name\":\"B\"},"
		"{\"id\":\"user-ccc\",\"email\":\"C.Mixed@Example.com\",\"role\":\"reader\",\"name\":\"C\"}]}");
	snprintf(path, sizeof(path), "%s/resolve.map", tmpdir);
	write_file(path,
		"uid=mapped,ou=people,dc=example,dc=com user-bbb\n"
		"exempted -\n"
		"x@corp.com b@example.com\n"
		"gone user-nope\n"
		"uidwins user-ccc\n");
	cfg = config_new_defaults();
	free(cfg->api_url);
	cfg->api_url = strdup(fakeorg_url(f));
	free(cfg->map_file);
	cfg->map_file = strdup(path);
	m = mapping_new(cfg, err, sizeof(err));
	c = openai_client_new(cfg, fakeorg_key(f), err, sizeof(err));
	ok(m && c, "resolve: mapping and client") ? (void)0 : diag("%s", err);
	if (!m || !c)
		goto out;

	j = mkjob("uid=Mapped, ou=People,dc=example,dc=com", "uidwins", "a@example.com", NULL);
	check_resolve(m, c, j, MAPPING_FOUND, "user-bbb", "map_file", "DN in map file (before uid and email)");
	mapping_resolve(m, c, j, &r, &res);
	is_str(r.user.role, "owner", "resolve: role fetched by id");
	is_str(r.user.email, "b@example.com", "resolve: address fetched by id");
	mapping_result_clear(&r);
	job_free(j);

	j = mkjob("uid=other,dc=example,dc=com", "UIDWINS", "a@example.com", NULL);
	check_resolve(m, c, j, MAPPING_FOUND, "user-ccc", "map_file", "uid in map file (before email)");
	job_free(j);

	j = mkjob("uid=e,dc=example,dc=com", "Exempted", "a@example.com", NULL);
	j->openai_user_id = strdup("user-aaa");
	check_resolve(m, c, j, MAPPING_EXEMPT, NULL, "map_file", "exempt");
	job_free(j);

	j = mkjob(NULL, "someone", "nobody@x.org", "X@Corp.com");
	check_resolve(m, c, j, MAPPING_FOUND, "user-bbb", "map_file", "address mapped to an address");
	job_free(j);

	j = mkjob(NULL, "gone", "a@example.com", NULL);
	check_resolve(m, c, j, MAPPING_NOT_MEMBER, NULL, "map_file", "map file id not in the org (first match wins)");
	job_free(j);

	j = mkjob(NULL, "plain", "b@example.com", NULL);
	j->openai_user_id = strdup("user-aaa");
	check_resolve(m, c, j, MAPPING_FOUND, "user-aaa", "attribute", "id attribute before email");
	job_free(j);

	j = mkjob(NULL, "plain", "a@example.com", NULL);
	j->openai_user_id = strdup("user-zzz");
	check_resolve(m, c, j, MAPPING_NOT_MEMBER, NULL, "attribute", "id attribute not in the org");
	job_free(j);

	j = job_new("cli", "manual");
	j->openai_user_id = strdup("user-ccc");
	check_resolve(m, c, j, MAPPING_FOUND, "user-ccc", "id", "id given on the command line");
	job_free(j);

	j = mkjob(NULL, "plain", "nobody@example.com", "c.mixed@EXAMPLE.COM");
	check_resolve(m, c, j, MAPPING_FOUND, "user-ccc", "email", "second address, case-insensitive");
	job_free(j);

	j = mkjob(NULL, "plain", "A@example.com", "b@EXAMPLE.com");
	mapping_resolve(m, c, j, &r, &res);
	is_int(r.kind, MAPPING_FOUND, "resolve several addresses: found");
	is_str(r.user.id, "user-aaa", "resolve several addresses: first user");
	is_int(r.nmore, 1, "resolve several addresses: one more user");
	if (r.nmore == 1)
		is_str(r.more[0].id, "user-bbb", "resolve several addresses: second user");
	mapping_result_clear(&r);
	job_free(j);

	j = mkjob(NULL, "plain", "a@example.com", "A@Example.com");
	mapping_resolve(m, c, j, &r, &res);
	ok(r.kind == MAPPING_FOUND && r.nmore == 0, "resolve: one user found twice counts once");
	mapping_result_clear(&r);
	job_free(j);

	j = mkjob(NULL, "plain", "nobody@example.com", NULL);
	check_resolve(m, c, j, MAPPING_NOT_MEMBER, NULL, "email", "no address matches");
	job_free(j);

	j = mkjob("uid=x,dc=example,dc=com", NULL, NULL, NULL);
	check_resolve(m, c, j, MAPPING_NOT_MEMBER, NULL, NULL, "nothing to look up");
	job_free(j);

	j = mkjob(NULL, "Exempted", "a@example.com", NULL);
	check_resolve(m, NULL, j, MAPPING_EXEMPT, NULL, "map_file", "exempt needs no API client");
	job_free(j);
	j = mkjob(NULL, "plain", "a@example.com", NULL);
	ok(mapping_resolve(m, NULL, j, &r, &res) != 0 && r.kind == MAPPING_ERROR && res.status == OPENAI_PERMANENT,
	   "resolve: no API client is an error, not a crash");
	mapping_result_clear(&r);
	job_free(j);
	ok(mapping_resolve(m, c, NULL, &r, &res) != 0 && r.kind == MAPPING_ERROR, "resolve: no job is an error");

	fakeorg_fault(f, "[{\"method\":\"GET\",\"path\":\"/v1/organization/users*\",\"count\":2,"
	                 "\"action\":\"status\",\"status\":503}]");
	j = mkjob(NULL, "plain", "a@example.com", NULL);
	ok(mapping_resolve(m, c, j, &r, &res) != 0, "resolve: API error returns non-zero");
	is_int(r.kind, MAPPING_ERROR, "resolve: API error kind");
	is_int(res.status, OPENAI_TRANSIENT, "resolve: API error class in res");
	mapping_result_clear(&r);
	job_free(j);
	j = mkjob(NULL, "plain", NULL, NULL);
	j->openai_user_id = strdup("user-aaa");
	mapping_resolve(m, c, j, &r, &res);
	ok(r.kind == MAPPING_ERROR && res.status == OPENAI_TRANSIENT, "resolve: API error on GET by id");
	mapping_result_clear(&r);
	job_free(j);
	fakeorg_post(f, "/_fake/faults/clear", "{}");
	is_int(fakeorg_spec_violations(f), 0, "resolve: every request matches the API description");
out:
	openai_client_free(c);
	mapping_free(m);
	config_free(cfg);
	fakeorg_stop(f);
}

int main(void)
{
	char tmpl[] = "/tmp/test_mapping.XXXXXX";
	char cmd[600];

	if (!mkdtemp(tmpl)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(tmpdir, sizeof(tmpdir), "%s", tmpl);
	snprintf(logpath, sizeof(logpath), "%s/log", tmpdir);
	log_setup(LOG_MODE_STDERR, "test_mapping", LOG_AUTHPRIV, LOG_INFO, logpath);
	openai_global_init();

	test_parse();
	test_many();
	test_errors();
	test_reload();
	test_resolve();

	log_teardown();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		diag("could not remove %s", tmpdir);
	return tap_done();
}
