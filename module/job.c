/* job: one revocation request and its on-disk JSON record.  The parser is the
 * spool's first line of defence: a record is data from disk that anyone with
 * access to the spool may have edited, so every known field is type-checked
 * and nothing in it is trusted to be well formed. */
#ifdef HAVE_CONFIG_H
#include "or_build.h"
#endif

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "job.h"

/* A directory entry holds a handful of addresses; the cap only keeps a
 * hostile record from growing the array without bound. */
#define JOB_MAX_EMAILS 256

/* ns: 19 digits reach the year 2286; pid_t fits 10; the counter is bounded
 * like ns so that both parse into 64 bits without overflow. */
#define ID_NS_DIGITS 19
#define ID_PID_DIGITS 10
#define ID_CTR_DIGITS 19

static size_t digits(const char *p, size_t max)
{
	size_t n = 0;

	while (n <= max && p[n] >= '0' && p[n] <= '9')
		n++;
	return n;
}

int job_id_parse(const char *id, uint64_t *ns, uint64_t *pid, uint64_t *ctr)
{
	static const size_t caps[3] = { ID_NS_DIGITS, ID_PID_DIGITS, ID_CTR_DIGITS };
	uint64_t v[3];
	const char *p = id;
	int i;

	if (!id)
		return -1;
	for (i = 0; i < 3; i++) {
		size_t n = digits(p, caps[i]), k;

		if (n == 0 || n > caps[i])
			return -1;
		v[i] = 0;
		for (k = 0; k < n; k++)
			v[i] = v[i] * 10 + (uint64_t)(p[k] - '0');
		p += n;
		if (i < 2) {
			if (*p != '-')
				return -1;
			p++;
		}
	}
	if (*p != '\0')
		return -1;
	if (ns)
		*ns = v[0];
	if (pid)
		*pid = v[1];
	if (ctr)
		*ctr = v[2];
	return 0;
}

int job_id_valid(const char *id)
{
	return job_id_parse(id, NULL, NULL, NULL) == 0;
}

int job_id_cmp(const char *a, const char *b)
{
	uint64_t x[3], y[3];
	int i;

	if (job_id_parse(a, &x[0], &x[1], &x[2]) != 0 ||
	    job_id_parse(b, &y[0], &y[1], &y[2]) != 0)
		return strcmp(a, b);
	for (i = 0; i < 3; i++) {
		if (x[i] != y[i])
			return x[i] < y[i] ? -1 : 1;
	}
	return strcmp(a, b); /* equal numbers, different spelling (leading zeros) */
}

struct job *job_new(const char *source, const char *reason)
{
	struct job *j = calloc(1, sizeof(*j));

	if (!j)
		return NULL;
	if (job_set(&j->source, source) != 0 || job_set(&j->reason, reason) != 0) {
		job_free(j);
		return NULL;
	}
	return j;
}

void job_free(struct job *j)
{
	char **e;

	if (!j)
		return;
	free(j->source);
	free(j->reason);
	free(j->dn);
	free(j->uid);
	free(j->entry_uuid);
	if (j->emails) {
		for (e = j->emails; *e; e++)
			free(*e);
		free(j->emails);
	}
	free(j->openai_user_id);
	free(j->last_error);
	free(j);
}

int job_set(char **field, const char *value)
{
	char *copy = NULL;

	if (!field)
		return -1;
	if (value) {
		copy = strdup(value);
		if (!copy)
			return -1;
	}
	free(*field);
	*field = copy;
	return 0;
}

int job_add_email(struct job *j, const char *email)
{
	size_t n = 0;
	char **grown, *copy;

	if (!j || !email || !*email)
		return -1;
	if (j->emails) {
		for (; j->emails[n]; n++) {
			if (strcasecmp(j->emails[n], email) == 0)
				return 0;
		}
	}
	if (n >= JOB_MAX_EMAILS)
		return -1;
	copy = strdup(email);
	if (!copy)
		return -1;
	grown = realloc(j->emails, (n + 2) * sizeof(*grown));
	if (!grown) {
		free(copy);
		return -1;
	}
	grown[n] = copy;
	grown[n + 1] = NULL;
	j->emails = grown;
	return 0;
}

/* ---- serialising ------------------------------------------------------ */

/* Unset strings are written as null so that a reader sees every field of
 * the version it knows. */
static int put_str(json_t *o, const char *key, const char *value)
{
	json_t *v = value ? json_string(value) : json_null();

	/* json_string refuses text that is not UTF-8: the record would not
	 * parse back, so refuse to write it at all. */
	if (!v)
		return -1;
	return json_object_set_new(o, key, v);
}

static int put_int(json_t *o, const char *key, json_int_t value)
{
	json_t *v = json_integer(value);

	if (!v)
		return -1;
	return json_object_set_new(o, key, v);
}

char *job_to_json(const struct job *j)
{
	json_t *o = NULL, *arr = NULL;
	char *out = NULL;
	char **e;

	if (!j)
		return NULL;
	o = json_object();
	arr = json_array();
	if (!o || !arr)
		goto out;
	if (put_int(o, "version", JOB_VERSION) != 0 ||
	    put_str(o, "id", j->id[0] ? j->id : NULL) != 0 ||
	    put_int(o, "created", j->created) != 0 ||
	    put_str(o, "source", j->source) != 0 ||
	    put_str(o, "reason", j->reason) != 0 ||
	    put_str(o, "dn", j->dn) != 0 ||
	    put_str(o, "uid", j->uid) != 0 ||
	    put_str(o, "entry_uuid", j->entry_uuid) != 0)
		goto out;
	if (j->emails) {
		for (e = j->emails; *e; e++) {
			json_t *s = json_string(*e);

			if (!s || json_array_append_new(arr, s) != 0)
				goto out;
		}
	}
	if (json_object_set(o, "emails", arr) != 0 ||
	    put_str(o, "openai_user_id", j->openai_user_id) != 0 ||
	    put_int(o, "attempts", j->attempts) != 0 ||
	    put_int(o, "next_attempt", j->next_attempt) != 0 ||
	    put_str(o, "last_error", j->last_error) != 0 ||
	    json_object_set_new(o, "dry_run", json_boolean(j->dry_run)) != 0)
		goto out;
	out = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
out:
	json_decref(arr);
	json_decref(o);
	return out;
}

/* ---- parsing ---------------------------------------------------------- */

__attribute__((format(printf, 3, 4)))
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* null and absent both mean "unset"; anything but a string is an error. */
static int get_str(json_t *o, const char *key, char **field, char *err, size_t errlen)
{
	json_t *v = json_object_get(o, key);
	const char *s;

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v)) {
		seterr(err, errlen, "field \"%s\" is not a string", key);
		return -1;
	}
	s = json_string_value(v);
	/* jansson refuses \u0000 unless asked; this holds even if that changes. */
	if (strlen(s) != json_string_length(v)) {
		seterr(err, errlen, "field \"%s\" contains a NUL byte", key);
		return -1;
	}
	if (job_set(field, s) != 0) {
		seterr(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

static int get_int(json_t *o, const char *key, json_int_t min, json_int_t max,
                   json_int_t *out, char *err, size_t errlen)
{
	json_t *v = json_object_get(o, key);
	json_int_t n;

	if (!v || json_is_null(v)) {
		*out = 0;
		return 0;
	}
	if (!json_is_integer(v)) {
		seterr(err, errlen, "field \"%s\" is not an integer", key);
		return -1;
	}
	n = json_integer_value(v);
	if (n < min || n > max) {
		seterr(err, errlen, "field \"%s\" is out of range (%" JSON_INTEGER_FORMAT ")",
		       key, n);
		return -1;
	}
	*out = n;
	return 0;
}

struct job *job_from_json(const char *buf, size_t len, char *err, size_t errlen)
{
	json_t *o = NULL, *v;
	json_error_t jerr;
	json_int_t n;
	struct job *j = NULL;
	char *id = NULL;
	int ok = 0;

	if (!buf) {
		seterr(err, errlen, "no record");
		return NULL;
	}
	if (len > JOB_MAX_RECORD) {
		seterr(err, errlen, "record is %zu bytes, more than the %u allowed",
		       len, JOB_MAX_RECORD);
		return NULL;
	}
	/* Default flags: UTF-8 is validated, \u0000 is refused, and the whole
	 * buffer must be one JSON value. */
	o = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!o) {
		seterr(err, errlen, "not JSON: %s (line %d, column %d)", jerr.text,
		       jerr.line, jerr.column);
		goto out;
	}
	if (!json_is_object(o)) {
		seterr(err, errlen, "record is not a JSON object");
		goto out;
	}
	v = json_object_get(o, "version");
	if (!v) {
		seterr(err, errlen, "field \"version\" is missing");
		goto out;
	}
	if (!json_is_integer(v)) {
		seterr(err, errlen, "field \"version\" is not an integer");
		goto out;
	}
	n = json_integer_value(v);
	if (n > JOB_VERSION) {
		seterr(err, errlen, "record version %" JSON_INTEGER_FORMAT
		       " is newer than this program understands (%d)", n, JOB_VERSION);
		goto out;
	}
	if (n < 1) {
		seterr(err, errlen, "record version %" JSON_INTEGER_FORMAT " is invalid", n);
		goto out;
	}

	j = calloc(1, sizeof(*j));
	if (!j) {
		seterr(err, errlen, "out of memory");
		goto out;
	}
	if (get_str(o, "id", &id, err, errlen) != 0)
		goto out;
	if (id) {
		if (!job_id_valid(id)) {
			seterr(err, errlen, "field \"id\" is not a valid event id");
			goto out;
		}
		memcpy(j->id, id, strlen(id) + 1); /* job_id_valid bounds it below JOB_ID_MAX */
	}
	if (get_int(o, "created", 0, INT64_MAX, &n, err, errlen) != 0)
		goto out;
	j->created = n;
	if (get_str(o, "source", &j->source, err, errlen) != 0 ||
	    get_str(o, "reason", &j->reason, err, errlen) != 0 ||
	    get_str(o, "dn", &j->dn, err, errlen) != 0 ||
	    get_str(o, "uid", &j->uid, err, errlen) != 0 ||
	    get_str(o, "entry_uuid", &j->entry_uuid, err, errlen) != 0 ||
	    get_str(o, "openai_user_id", &j->openai_user_id, err, errlen) != 0 ||
	    get_str(o, "last_error", &j->last_error, err, errlen) != 0)
		goto out;

	v = json_object_get(o, "emails");
	if (v && !json_is_null(v)) {
		size_t i;
		json_t *e;

		if (!json_is_array(v)) {
			seterr(err, errlen, "field \"emails\" is not an array");
			goto out;
		}
		if (json_array_size(v) > JOB_MAX_EMAILS) {
			seterr(err, errlen, "field \"emails\" has more than %d entries",
			       JOB_MAX_EMAILS);
			goto out;
		}
		json_array_foreach(v, i, e) {
			const char *s;

			if (!json_is_string(e)) {
				seterr(err, errlen, "field \"emails\" entry %zu is not a string", i);
				goto out;
			}
			s = json_string_value(e);
			if (strlen(s) != json_string_length(e)) {
				seterr(err, errlen, "field \"emails\" entry %zu contains a NUL byte", i);
				goto out;
			}
			if (!*s) {
				seterr(err, errlen, "field \"emails\" entry %zu is empty", i);
				goto out;
			}
			if (job_add_email(j, s) != 0) {
				seterr(err, errlen, "out of memory");
				goto out;
			}
		}
	}

	if (get_int(o, "attempts", 0, INT32_MAX, &n, err, errlen) != 0)
		goto out;
	j->attempts = (int)n;
	if (get_int(o, "next_attempt", 0, INT64_MAX, &n, err, errlen) != 0)
		goto out;
	j->next_attempt = n;

	v = json_object_get(o, "dry_run");
	if (v && !json_is_null(v)) {
		if (!json_is_boolean(v)) {
			seterr(err, errlen, "field \"dry_run\" is not a boolean");
			goto out;
		}
		j->dry_run = json_is_true(v);
	}
	ok = 1;
out:
	free(id);
	json_decref(o);
	if (!ok) {
		job_free(j);
		return NULL;
	}
	return j;
}
