/* test_job: the JSON job record -- every field round-trips, and every
 * malformed shape is refused with a message instead of crashing. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"
#include "tap.h"

static struct job *parse(const char *text, char *err, size_t errlen)
{
	err[0] = '\0';
	return job_from_json(text, strlen(text), err, errlen);
}

static void refused(const char *text, const char *want, const char *what)
{
	char err[256];
	struct job *j = parse(text, err, sizeof(err));

	ok(j == NULL, "refused: %s", what);
	contains(err, want, "  message for %s names the problem", what);
	job_free(j);
}

static void test_round_trip(void)
{
	struct job *j = job_new("slapi", "disabled"), *k;
	char err[256], *json, *json2;

	ok(j != NULL, "job_new");
	snprintf(j->id, sizeof(j->id), "%s", "1733221334123456789-812-7");
	j->created = INT64_C(1733221334123456789);
	ok(job_set(&j->dn, "uid=jdoe,ou=people,dc=example,dc=com") == 0, "job_set dn");
	ok(job_set(&j->uid, "jdoe") == 0, "job_set uid");
	ok(job_set(&j->entry_uuid, "0b8c5f2e-1b7a-4c1d-9a3e-5f0e2d9c8b7a") == 0, "job_set uuid");
	ok(job_add_email(j, "jdoe@example.com") == 0, "add email");
	ok(job_add_email(j, "JDoe@Example.COM") == 0, "add duplicate email (case differs)");
	ok(job_add_email(j, "j.doe@example.org") == 0, "add second email");
	ok(job_add_email(j, NULL) == -1 && job_add_email(j, "") == -1, "NULL/empty email refused");
	ok(job_set(&j->openai_user_id, "user-abc") == 0, "job_set openai_user_id");
	ok(job_set(&j->last_error, "HTTP 503: \"busy\"\n") == 0, "job_set last_error");
	j->attempts = 3;
	j->next_attempt = 1733221400;
	j->dry_run = 1;

	json = job_to_json(j);
	ok(json != NULL, "job_to_json");
	contains(json, "\"version\":1", "version written");
	k = job_from_json(json, strlen(json), err, sizeof(err));
	ok(k != NULL, "parse back (%s)", k ? "ok" : err);
	if (k) {
		is_str(k->id, j->id, "id");
		ok(k->created == j->created, "created");
		is_str(k->source, "slapi", "source");
		is_str(k->reason, "disabled", "reason");
		is_str(k->dn, j->dn, "dn");
		is_str(k->uid, "jdoe", "uid");
		is_str(k->entry_uuid, j->entry_uuid, "entry_uuid");
		ok(k->emails && k->emails[0] && k->emails[1] && !k->emails[2], "two emails (deduped)");
		if (k->emails && k->emails[0] && k->emails[1]) {
			is_str(k->emails[0], "jdoe@example.com", "email 0");
			is_str(k->emails[1], "j.doe@example.org", "email 1");
		}
		is_str(k->openai_user_id, "user-abc", "openai_user_id");
		is_str(k->last_error, "HTTP 503: \"busy\"\n", "last_error with quotes and newline");
		is_int(k->attempts, 3, "attempts");
		ok(k->next_attempt == 1733221400, "next_attempt");
		is_int(k->dry_run, 1, "dry_run");
		json2 = job_to_json(k);
		is_str(json2, json, "second serialisation is identical");
		free(json2);
	}
	job_free(k);
	free(json);

	/* setting back to NULL unsets */
	ok(job_set(&j->dn, NULL) == 0 && j->dn == NULL, "job_set NULL unsets");
	json = job_to_json(j);
	contains(json, "\"dn\":null", "unset string written as null");
	free(json);
	job_free(j);
	job_free(NULL);
}

static void test_unicode(void)
{
	struct job *j = job_new("cli", "manual"), *k;
	char err[256], *json;
	const char *dn = "uid=jos\xc3\xa9,ou=\xe4\xba\xba,dc=example,dc=com";
	const char *mail = "\xf0\x9f\x98\x80@example.com";

	job_set(&j->dn, dn);
	job_add_email(j, mail);
	json = job_to_json(j);
	ok(json != NULL, "unicode serialises");
	k = json ? job_from_json(json, strlen(json), err, sizeof(err)) : NULL;
	ok(k != NULL, "unicode parses");
	if (k) {
		is_str(k->dn, dn, "unicode dn round-trips");
		is_str(k->emails ? k->emails[0] : NULL, mail, "4-byte UTF-8 email round-trips");
	}
	job_free(k);
	free(json);
	/* \u escapes are decoded */
	k = parse("{\"version\":1,\"dn\":\"caf\\u00e9\"}", err, sizeof(err));
	is_str(k ? k->dn : NULL, "caf\xc3\xa9", "\\u escape decoded");
	job_free(k);

	/* a field that is not UTF-8 cannot be written: it would never parse back */
	job_set(&j->uid, "bad\xff");
	json = job_to_json(j);
	ok(json == NULL, "invalid UTF-8 field: job_to_json refuses");
	free(json);
	job_free(j);
}

static void test_minimal(void)
{
	char err[256];
	struct job *k = parse("{\"version\":1}", err, sizeof(err));

	ok(k != NULL, "only the version: accepted");
	if (k) {
		is_str(k->id, "", "id empty");
		ok(!k->source && !k->reason && !k->dn && !k->uid && !k->entry_uuid &&
		   !k->emails && !k->openai_user_id && !k->last_error, "strings unset");
		ok(k->attempts == 0 && k->next_attempt == 0 && k->created == 0 && !k->dry_run,
		   "numbers zero");
	}
	job_free(k);
	k = parse("{\"version\":1,\"dn\":null,\"emails\":null,\"attempts\":null,"
	          "\"dry_run\":null,\"id\":null}", err, sizeof(err));
	ok(k != NULL && !k->dn && !k->emails && !k->id[0], "explicit nulls mean unset");
	job_free(k);
	k = parse(" {\"version\":1,\"future_field\":{\"x\":[1,2]},\"emails\":[]}\n",
	          err, sizeof(err));
	ok(k != NULL, "unknown fields ignored, surrounding whitespace fine");
	ok(k && k->emails == NULL, "empty emails array");
	job_free(k);

	/* job_new with no source */
	k = job_new(NULL, NULL);
	ok(k && !k->source && !k->reason, "job_new(NULL, NULL)");
	job_free(k);
	ok(job_set(NULL, "x") == -1, "job_set(NULL field) refused");
	ok(job_add_email(NULL, "a@b") == -1, "job_add_email(NULL job) refused");
	ok(job_to_json(NULL) == NULL, "job_to_json(NULL)");
	ok(job_from_json(NULL, 0, err, sizeof(err)) == NULL, "job_from_json(NULL)");
}

static void test_malformed(void)
{
	char err[256], *big;
	struct job *j;
	size_t n;

	refused("", "not JSON", "empty buffer");
	refused("not json", "not JSON", "not JSON");
	refused("{\"version\":1", "not JSON", "truncated object");
	refused("{\"version\":1} {}", "not JSON", "two values");
	refused("[1,2]", "not a JSON object", "an array");
	refused("\"text\"", "not JSON", "a bare string");
	refused("{}", "\"version\" is missing", "no version");
	refused("{\"version\":\"1\"}", "\"version\" is not an integer", "version a string");
	refused("{\"version\":2}", "newer", "version 2");
	refused("{\"version\":0}", "invalid", "version 0");
	refused("{\"version\":-1}", "invalid", "version -1");
	refused("{\"version\":1,\"dn\":5}", "\"dn\" is not a string", "dn a number");
	refused("{\"version\":1,\"source\":[]}", "\"source\" is not a string", "source an array");
	refused("{\"version\":1,\"reason\":{}}", "\"reason\"", "reason an object");
	refused("{\"version\":1,\"uid\":true}", "\"uid\"", "uid a boolean");
	refused("{\"version\":1,\"entry_uuid\":1.5}", "\"entry_uuid\"", "entry_uuid a real");
	refused("{\"version\":1,\"openai_user_id\":1}", "\"openai_user_id\"", "openai_user_id a number");
	refused("{\"version\":1,\"last_error\":[\"x\"]}", "\"last_error\"", "last_error an array");
	refused("{\"version\":1,\"id\":7}", "\"id\" is not a string", "id a number");
	refused("{\"version\":1,\"id\":\"../../etc/passwd\"}", "not a valid event id", "id a path");
	refused("{\"version\":1,\"id\":\"1-2\"}", "not a valid event id", "id with two parts");
	refused("{\"version\":1,\"created\":\"now\"}", "\"created\" is not an integer", "created a string");
	refused("{\"version\":1,\"created\":1.5}", "\"created\" is not an integer", "created a real");
	refused("{\"version\":1,\"created\":-5}", "out of range", "created negative");
	refused("{\"version\":1,\"attempts\":\"3\"}", "\"attempts\" is not an integer", "attempts a string");
	refused("{\"version\":1,\"attempts\":-1}", "out of range", "attempts negative");
	refused("{\"version\":1,\"attempts\":4294967296}", "out of range", "attempts beyond int");
	refused("{\"version\":1,\"next_attempt\":true}", "\"next_attempt\"", "next_attempt a boolean");
	refused("{\"version\":1,\"next_attempt\":99999999999999999999}", "not JSON", "next_attempt beyond 64 bits");
	refused("{\"version\":1,\"dry_run\":1}", "\"dry_run\" is not a boolean", "dry_run a number");
	refused("{\"version\":1,\"dry_run\":\"yes\"}", "\"dry_run\"", "dry_run a string");
	refused("{\"version\":1,\"emails\":\"a@b\"}", "\"emails\" is not an array", "emails a string");
	refused("{\"version\":1,\"emails\":[\"a@b\",3]}", "entry 1 is not a string", "emails entry a number");
	refused("{\"version\":1,\"emails\":[null]}", "entry 0 is not a string", "emails entry null");
	refused("{\"version\":1,\"emails\":[\"\"]}", "entry 0 is empty", "emails entry empty");
	refused("{\"version\":1,\"dn\":\"a\\u0000b\"}", "not JSON", "NUL in a string");
	refused("{\"version\":1,\"emails\":[\"a\\u0000@b\"]}", "not JSON", "NUL in an email");
	refused("{\"version\":1,\"dn\":\"\xff\xfe\"}", "not JSON", "invalid UTF-8");
	refused("{\"version\":1,\"dn\":\"\xc0\xaf\"}", "not JSON", "overlong UTF-8");
	refused("{\"version\":1,\"dn\":\"x\",\"dn\":\"y\"}", "not JSON", "duplicate key");

	/* a raw NUL byte inside the buffer */
	j = job_from_json("{\"version\":1}\0garbage", 22, err, sizeof(err));
	ok(j == NULL, "refused: raw NUL byte in the buffer");
	job_free(j);

	/* too many emails */
	n = 300 * 12 + 64;
	big = malloc(n);
	if (big) {
		size_t off = (size_t)snprintf(big, n, "{\"version\":1,\"emails\":[");
		int i;

		for (i = 0; i < 300; i++)
			off += (size_t)snprintf(big + off, n - off, "%s\"u%d@x\"", i ? "," : "", i);
		snprintf(big + off, n - off, "]}");
		refused(big, "more than", "300 emails");
		free(big);
	}

	/* huge: more than JOB_MAX_RECORD, checked before parsing */
	n = JOB_MAX_RECORD + 100;
	big = malloc(n + 1);
	if (big) {
		memset(big, ' ', n);
		memcpy(big, "{\"version\":1,\"dn\":\"", 19);
		big[n - 2] = '"';
		big[n - 1] = '}';
		big[n] = '\0';
		j = job_from_json(big, n, err, sizeof(err));
		ok(j == NULL, "refused: record over JOB_MAX_RECORD");
		contains(err, "more than", "  message says it is too large");
		job_free(j);
		free(big);
	}

	/* deep nesting in an unknown field must not crash */
	n = 100000;
	big = malloc(2 * n + 64);
	if (big) {
		size_t off = (size_t)sprintf(big, "{\"version\":1,\"x\":");
		memset(big + off, '[', n);
		off += n;
		memset(big + off, ']', n);
		off += n;
		strcpy(big + off, "}");
		j = job_from_json(big, strlen(big), err, sizeof(err));
		ok(j == NULL, "refused: 100000-deep nesting (no crash)");
		job_free(j);
		free(big);
	}

	/* a tiny err buffer is fine, and a NULL one too */
	j = job_from_json("[]", 2, err, 4);
	ok(j == NULL && strlen(err) <= 3, "small error buffer truncates safely");
	j = job_from_json("[]", 2, NULL, 0);
	ok(j == NULL, "NULL error buffer");
}

static void test_ids(void)
{
	uint64_t a, b, c;

	ok(job_id_valid("1733221334123456789-812-7"), "typical id valid");
	ok(job_id_valid("1-1-1"), "short id valid");
	ok(!job_id_valid(""), "empty id invalid");
	ok(!job_id_valid(NULL), "NULL id invalid");
	ok(!job_id_valid("1-2-3-4"), "four parts invalid");
	ok(!job_id_valid("1-2-"), "empty counter invalid");
	ok(!job_id_valid("-1-2"), "empty ns invalid");
	ok(!job_id_valid("1-2-3\n"), "trailing newline invalid");
	ok(!job_id_valid("1-2-3 "), "trailing space invalid");
	ok(!job_id_valid("1-2-x"), "letters invalid");
	ok(!job_id_valid("../1-2-3"), "path invalid");
	ok(!job_id_valid("1-2-3/.."), "slash invalid");
	ok(!job_id_valid("+1-2-3"), "sign invalid");
	ok(!job_id_valid("12345678901234567890-1-1"), "20-digit ns invalid (overflow)");
	ok(!job_id_valid("1-12345678901-1"), "11-digit pid invalid");
	ok(job_id_valid("9999999999999999999-4294967295-9999999999999999999"), "longest id valid");
	ok(job_id_parse("17-812-7", &a, &b, &c) == 0 && a == 17 && b == 812 && c == 7, "parse parts");
	ok(job_id_cmp("9-1-1", "10-1-1") < 0, "ids compare numerically, not as text");
	ok(job_id_cmp("10-2-1", "10-1-5") > 0, "pid breaks ns ties");
	ok(job_id_cmp("10-1-2", "10-1-10") < 0, "counter breaks ties numerically");
	ok(job_id_cmp("10-1-2", "10-1-2") == 0, "equal ids");
}

/* Random mutations of a valid record: never a crash, and whatever parses
 * serialises and parses again to the same record. */
static void test_mutations(void)
{
	struct job *j = job_new("slapi", "disabled"), *k, *k2;
	char *orig, *buf, *again, *again2, err[256];
	unsigned seed = 12345;
	int i, parsed = 0, stable = 1;
	size_t len;

	snprintf(j->id, sizeof(j->id), "%s", "1733221334123456789-812-7");
	job_set(&j->dn, "uid=x,dc=example");
	job_add_email(j, "x@example.com");
	job_set(&j->last_error, "e");
	orig = job_to_json(j);
	len = strlen(orig);
	buf = malloc(len + 1);
	for (i = 0; i < 20000 && buf; i++) {
		int m, n = 1 + rand_r(&seed) % 4;

		memcpy(buf, orig, len + 1);
		for (m = 0; m < n; m++) {
			size_t at = (size_t)rand_r(&seed) % len;
			static const char pool[] = "{}[]\":,0123456789-.eE tfnul\\\x01\xff\xc3";

			buf[at] = pool[rand_r(&seed) % (int)(sizeof(pool) - 1)];
		}
		k = job_from_json(buf, len, err, sizeof(err));
		if (!k)
			continue;
		parsed++;
		again = job_to_json(k);
		k2 = again ? job_from_json(again, strlen(again), err, sizeof(err)) : NULL;
		again2 = k2 ? job_to_json(k2) : NULL;
		if (!again || !again2 || strcmp(again, again2) != 0)
			stable = 0;
		free(again);
		free(again2);
		job_free(k2);
		job_free(k);
	}
	ok(1, "20,000 mutated records: no crash (%d still parsed)", parsed);
	ok(stable, "  each record that parsed round-trips unchanged");
	free(buf);
	free(orig);
	job_free(j);
}

int main(void)
{
	test_round_trip();
	test_unicode();
	test_minimal();
	test_malformed();
	test_ids();
	test_mutations();
	return tap_done();
}
