/* directory: libldap helpers for the command line, reconcile and PAM:
 * connecting through ldap_uri and reading accounts.  Every value put into a
 * filter is escaped by RFC 4515. */
#ifndef OR_DIRECTORY_H
#define OR_DIRECTORY_H

#include <stddef.h>
#include <ldap.h>
#include "config.h"
#include "job.h"

/* Connect and bind (simple with ldap_binddn + ldap_bindpw_file, SASL
 * ldap_sasl_mech (EXTERNAL) or anonymous), with ldap_timeout. */
int directory_connect(const struct config *cfg, LDAP **out, char *err, size_t errlen);
void directory_close(LDAP *ld);

/* RFC 4515 escape; returns malloc'd string. */
char *directory_filter_escape(const char *value);

/* Find USER (a DN when it contains '=', else a value of login_attribute,
 * default uid) under base with user_filter.  Fills a new job (source given)
 * with dn, uid, entryUUID, emails, openai_user_id; *disabled set when the
 * entry matches disabled_filter (evaluated by the server).
 * 1 found, 0 not found (or more than one match: refused), -1 error. */
int directory_read_user(LDAP *ld, const struct config *cfg, const char *user,
                        const char *source, struct job **out, int *disabled,
                        char *err, size_t errlen);

/* The attributes a job needs from an entry (uid, entryUUID, the email and
 * id attributes), NULL-terminated, owned by caller (config_list_free). */
char **directory_job_attrs(const struct config *cfg);

#endif
