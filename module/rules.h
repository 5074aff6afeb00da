/* rules: the pure decisions of DESIGN.md section 5, kept apart from the
 * SLAPI glue so they are unit-tested. */
#ifndef OR_RULES_H
#define OR_RULES_H

#include "config.h"

/* Non-zero when ATTR (as written in a modification, maybe with options
 * ";binary") is one of cfg->disabled_attrs. */
int rules_attr_is_trigger(const struct config *cfg, const char *attr);

/* Non-zero when DN is at or below BASE (RFC 4514 aware, case-insensitive
 * attribute types and values, spaces normalised). */
int rules_dn_is_below(const char *dn, const char *base);

/* Non-zero when ppolicy's pwdAccountLockedTime value is the administrative
 * lock (000001010000Z), as opposed to a temporary lockout. */
int rules_is_admin_lock(const char *value);

/* DN in one canonical string form (types and values ASCII case-folded,
 * spaces normalised, the AVAs of a multi-valued RDN sorted, specials
 * escaped), so equal DNs compare equal with strcmp.  malloc'd; NULL when
 * DN does not parse (or out of memory).  "" gives "". */
char *rules_dn_normalize(const char *dn);

#endif
