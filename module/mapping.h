/* mapping: from a directory user (a job) to an OpenAI user, DESIGN.md
 * section 6: map_file, then user_id_attribute, then addresses looked up in
 * the organization. */
#ifndef OR_MAPPING_H
#define OR_MAPPING_H

#include <stddef.h>
#include "config.h"
#include "job.h"
#include "openai.h"

/* The static map file, parsed.  Left: DN (has '='), uid, or address (has
 * '@'); right: OpenAI user ID, address, or "-" (exempt). */
struct mapfile;
int mapfile_parse(const char *name, const char *buf, size_t len,
                  struct mapfile **out, char *err, size_t errlen);
int mapfile_load(const char *path, struct mapfile **out, char *err, size_t errlen);
void mapfile_free(struct mapfile *m);
/* Lent pointer to the right-hand side for KEY (DN compared normalised,
 * uid and address case-insensitively), or NULL. */
const char *mapfile_get(const struct mapfile *m, const char *key);
size_t mapfile_size(const struct mapfile *m);

/* Thread-safe holder that reloads the map file when its mtime changes. */
struct mapping;
struct mapping *mapping_new(const struct config *cfg, char *err, size_t errlen);
void mapping_free(struct mapping *m);

enum mapping_kind {
	MAPPING_FOUND,      /* user filled in */
	MAPPING_NOT_MEMBER, /* no OpenAI user: an answer, not an error */
	MAPPING_EXEMPT,     /* map file says "-" */
	MAPPING_ERROR       /* API trouble: res says which class */
};

struct mapping_result {
	enum mapping_kind kind;
	struct openai_user user;  /* owned; clear with mapping_result_clear */
	const char *via;          /* "map_file", "attribute", "email", "id" */
	/* A person's addresses may match several members (one per address,
	 * or one address shared by two): user is the first, these the rest,
	 * distinct by id.  Owned; cleared by mapping_result_clear. */
	struct openai_user *more;
	size_t nmore;
};

/* Resolve J.  For an ID (from any source) one GET /organization/users/{id}
 * confirms membership and fetches role and address. */
int mapping_resolve(struct mapping *m, struct openai_client *c, const struct job *j,
                    struct mapping_result *out, struct openai_result *res);
void mapping_result_clear(struct mapping_result *r);

/* Static part only (no network): what the map file says for J.  Returns the
 * right-hand side (lent until the next call on this thread is not
 * guaranteed: copy it) or NULL. */
char *mapping_static_dup(struct mapping *m, const struct job *j);

#endif
