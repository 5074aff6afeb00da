/* reconcile: the sweep that catches what events missed: every member of the
 * organization is matched against the directory and classified (disabled,
 * absent, protected, exempt, active). */
#ifndef OR_RECONCILE_H
#define OR_RECONCILE_H

#include <stddef.h>
#include <stdio.h>
#include <ldap.h>
#include "config.h"
#include "openai.h"
#include "mapping.h"

enum reconcile_reason {
	RECONCILE_ACTIVE = 0,
	RECONCILE_DISABLED,
	RECONCILE_ABSENT,
	RECONCILE_PROTECTED,
	RECONCILE_EXEMPT,
	RECONCILE_NREASONS
};
const char *reconcile_reason_name(enum reconcile_reason r);

/* One directory account, as much as matching needs. */
struct reconcile_entry {
	char *dn;
	char *uid;
	char *entry_uuid;
	char **emails;       /* NULL-terminated */
	char *openai_user_id;
	int disabled;
	const char *map;     /* map file's right-hand side for this entry, lent */
};

struct reconcile_member {
	struct openai_user user;          /* owned */
	enum reconcile_reason reason;
	const struct reconcile_entry *entry; /* lent from the directory side, or NULL */
	const char *matched_by;           /* map_file, attribute, email, or NULL */
};

struct reconcile {
	struct reconcile_entry *entries;
	size_t nentries;
	struct reconcile_member *members;
	size_t nmembers;
	size_t count[RECONCILE_NREASONS];
	size_t ldap_pages;                /* directory pages read */
	int progress;                     /* print a progress line on stderr */
};

/* Read every entry under base matching user_filter (paged results, RFC
 * 2696) and which of them match disabled_filter (evaluated by the server).
 * Refuses (-1) when the search failed part-way or found nothing. */
int reconcile_read_directory(struct reconcile *r, LDAP *ld, const struct config *cfg,
                             struct mapfile *map, char *err, size_t errlen);
/* Read every member of the organization (all pages). */
int reconcile_read_org(struct reconcile *r, struct openai_client *c,
                       struct openai_result *res);
/* Match and classify; hash tables, not nested loops. */
int reconcile_classify(struct reconcile *r, const struct config *cfg, struct mapfile *map,
                       char *err, size_t errlen);

/* Output: a table for people, or the JSON object of issue 6. */
void reconcile_print_table(const struct reconcile *r, FILE *fp, int all);
int reconcile_print_json(const struct reconcile *r, FILE *fp, int all);

/* Queue a job for each disabled member (and absent ones with
 * include_absent).  The worker's policies (protect, breaker, dry run) still
 * apply when the jobs run. */
struct spool;
int reconcile_apply(const struct reconcile *r, struct spool *s, int include_absent,
                    size_t *queued, char *err, size_t errlen);

void reconcile_clear(struct reconcile *r);

#endif
