/* job: one revocation request as it travels through the spool; the JSON
 * record format (versioned) lives here. */
#ifndef OR_JOB_H
#define OR_JOB_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define JOB_VERSION 1
#define JOB_ID_MAX 64
#define JOB_MAX_RECORD (256u * 1024)

struct job {
	char id[JOB_ID_MAX];     /* event id == file name: <ns>-<pid>-<counter> */
	int64_t created;         /* ns since epoch */
	char *source;            /* slapi, cli, pam, reconcile */
	char *reason;            /* disabled, deleted, moved, manual, reconcile */
	char *dn;
	char *uid;
	char *entry_uuid;
	char **emails;           /* NULL-terminated, may be NULL */
	char *openai_user_id;    /* from user_id_attribute, or given on the command line */
	int attempts;
	int64_t next_attempt;    /* seconds since epoch, 0: now */
	char *last_error;
	int dry_run;             /* forced dry run for this job (revoke --dry-run) */
};

struct job *job_new(const char *source, const char *reason);
void job_free(struct job *j);
int job_add_email(struct job *j, const char *email);   /* dedups case-insensitively */
int job_set(char **field, const char *value);          /* strdup into a field */

/* Serialise; returns malloc'd NUL-terminated JSON or NULL. */
char *job_to_json(const struct job *j);
/* Parse a record; NULL with err on anything malformed (never crashes). */
struct job *job_from_json(const char *buf, size_t len, char *err, size_t errlen);

/* Event ids (== spool file names) are "<ns>-<pid>-<counter>", decimal.
 * job_id_valid: 1 when ID has exactly that shape (so it is safe as a file
 * name: no '/', no "..").  job_id_cmp orders ids by age (numerically). */
int job_id_valid(const char *id);
int job_id_parse(const char *id, uint64_t *ns, uint64_t *pid, uint64_t *counter);
int job_id_cmp(const char *a, const char *b);

#endif
