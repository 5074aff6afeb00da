/* config: the one parser of openai-revoke.conf, shared by the plugin, the
 * command line and the PAM module.  Errors are returned as text
 * ("FILE:LINE: keyword: what is wrong"), never printed. */
#ifndef OR_CONFIG_H
#define OR_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#ifndef OR_SYSCONFDIR
#define OR_SYSCONFDIR "/etc"
#endif
#ifndef OR_LOCALSTATEDIR
#define OR_LOCALSTATEDIR "/var"
#endif
#define CONFIG_DEFAULT_PATH OR_SYSCONFDIR "/openai-revoke/openai-revoke.conf"
#define CONFIG_DEFAULT_KEY_FILE OR_SYSCONFDIR "/openai-revoke/admin.key"
#define CONFIG_DEFAULT_SPOOL OR_LOCALSTATEDIR "/spool/openai-revoke"

enum config_worker { CONFIG_WORKER_THREAD = 0, CONFIG_WORKER_NONE = 1 };

/* Every string is owned by the struct; lists are NULL-terminated arrays of
 * owned strings (never NULL themselves: an empty list is { NULL }). */
struct config {
	char *path;              /* the file this came from */

	char *api_url;           /* without trailing slash */
	char *admin_key_file;
	char *ca_file;           /* NULL: system store */
	int http_timeout;        /* seconds, 1..600 */
	int api_rate;            /* requests per second, 1..1000 */

	char *base;              /* DN, required */
	char *user_filter;
	char *disabled_filter;
	char **disabled_attrs;   /* lower-case attribute names disabled_filter mentions */
	int revoke_on_delete;
	char *disabled_subtree;  /* DN or NULL */

	char *map_file;          /* NULL: none */
	char *user_id_attribute; /* NULL: none */
	char **email_attributes;
	char **protect_roles;
	char **protect_users;
	int revoke_invites;
	int dry_run;
	int breaker_max;         /* removals ... */
	int breaker_window;      /* ... per this many seconds */

	char *spool_dir;
	enum config_worker worker;

	char *ldap_uri;
	char *ldap_binddn;
	char *ldap_bindpw_file;
	char *ldap_sasl_mech;
	char *login_attribute;   /* PAM: attribute PAM_USER is matched against */
	int ldap_timeout;        /* seconds */

	int syslog_facility;     /* LOG_AUTHPRIV etc. */
	char *syslog_ident;
	int log_level;           /* LOG_DEBUG .. LOG_EMERG */
	char *log_file;          /* NULL: syslog only; else also appended here */
};

/* A config with every default filled in and base unset. */
struct config *config_new_defaults(void);

/* Parse FILE.  On success *out is a new config (free with config_free) and
 * 0 is returned.  On failure -1 is returned and err holds every problem
 * found, one per line, "FILE:LINE: keyword: what is wrong". */
int config_load(const char *path, struct config **out, char *err, size_t errlen);

/* Same, from a buffer (used by fuzzing and tests); name is used in messages. */
int config_parse_buffer(const char *name, const char *buf, size_t len,
                        struct config **out, char *err, size_t errlen);

/* Set one keyword (also used for PAM/CLI option overrides).  0 or -1. */
int config_set(struct config *cfg, const char *keyword, const char *value,
               const char *file, int line, char *err, size_t errlen);

/* Checks that span keywords (required ones present...).  0 or -1. */
int config_finish(struct config *cfg, char *err, size_t errlen);

void config_free(struct config *cfg);

/* Print the effective configuration, keyword value per line.  Never prints
 * the key itself: only admin_key_file. */
void config_dump(const struct config *cfg, FILE *fp);

/* Read the admin key from cfg->admin_key_file.  Refuses a file that is not
 * regular, is group/world readable or writable; strips surrounding white
 * space; refuses an empty key.  *key_out must be freed with secret_free(). */
int config_read_key(const struct config *cfg, char **key_out, char *err, size_t errlen);

/* Duplicate a secret into wiped-on-free memory; free it with secret_free. */
char *secret_dup(const char *s);
void secret_free(char *s);
/* Zero N bytes at P in a way the compiler may not drop (passwords, keys). */
void secret_wipe(void *p, size_t n);

/* Helpers other modules share. */
int config_list_contains(char *const *list, const char *s); /* case-insensitive */

/* RFC 4515 filter check: 0 if FILTER parses; fills attrs (lower-case,
 * de-duplicated, NULL-terminated, owned by caller: free with
 * config_list_free) if attrs is not NULL. */
int config_filter_parse(const char *filter, char ***attrs, char *err, size_t errlen);
void config_list_free(char **list);

#endif
