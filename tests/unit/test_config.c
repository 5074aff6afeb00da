/* test_config: the configuration parser, its error messages, the filter
 * parser, the admin key file checks and the dump.  Every bad-input case of
 * the hardening issue that concerns the config file has a test here. */
#include "tap.h"
#include "config.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <lber.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <syslog.h>
#include <unistd.h>

#define BASE "base dc=example,dc=com\n"
#define KEY "sk-admin-test-0123456789abcdef"

static char tmpdir[256];
static char err[8192];

static int parse(const char *text, struct config **out)
{
	return config_parse_buffer("t.conf", text, strlen(text), out, err, sizeof(err));
}

/* TEXT must fail with WANT somewhere in the error text. */
static void bad(const char *text, const char *want, const char *what)
{
	struct config *c = (struct config *)1;
	int rc = parse(text, &c);

	ok(rc == -1 && c == NULL, "refused: %s", what);
	contains(err, want, "  message for %s", what);
	if (rc == 0)
		config_free(c);
}

static struct config *good(const char *text, const char *what)
{
	struct config *c = NULL;
	int rc = parse(text, &c);

	if (!ok(rc == 0 && c != NULL, "accepted: %s", what))
		diag("  error: %s", err);
	return rc == 0 ? c : NULL;
}

static void write_file(const char *path, const char *data, size_t len, mode_t mode)
{
	int fd;

	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, data, len) != (ssize_t)len) {
		diag("cannot write %s: %s", path, strerror(errno));
		exit(1);
	}
	close(fd);
	chmod(path, mode);
}

static void path_in_tmp(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", tmpdir, name);
}

static void test_defaults(void)
{
	struct config *c = config_new_defaults();

	ok(c != NULL, "defaults: allocated");
	if (!c)
		return;
	is_str(c->api_url, "https://api.openai.com/v1", "defaults: api_url");
	is_str(c->admin_key_file, CONFIG_DEFAULT_KEY_FILE, "defaults: admin_key_file");
	ok(c->ca_file == NULL, "defaults: ca_file is the system store");
	is_int(c->http_timeout, 30, "defaults: http_timeout");
	is_int(c->api_rate, 10, "defaults: api_rate");
	ok(c->base == NULL, "defaults: base unset");
	is_str(c->user_filter, "(objectClass=person)", "defaults: user_filter");
	is_str(c->disabled_filter, "(pwdAccountLockedTime=000001010000Z)", "defaults: disabled_filter");
	ok(c->disabled_attrs && c->disabled_attrs[0] &&
	   strcmp(c->disabled_attrs[0], "pwdaccountlockedtime") == 0 && !c->disabled_attrs[1],
	   "defaults: disabled_attrs = pwdaccountlockedtime");
	is_int(c->revoke_on_delete, 1, "defaults: revoke_on_delete");
	ok(c->disabled_subtree == NULL && c->map_file == NULL && c->user_id_attribute == NULL,
	   "defaults: disabled_subtree, map_file, user_id_attribute unset");
	ok(c->email_attributes && c->email_attributes[0] && strcmp(c->email_attributes[0], "mail") == 0 &&
	   !c->email_attributes[1], "defaults: email_attributes mail");
	ok(c->protect_roles && config_list_contains(c->protect_roles, "owner") && !c->protect_roles[1],
	   "defaults: protect_roles owner");
	ok(c->protect_users && c->protect_users[0] == NULL, "defaults: protect_users is an empty list");
	is_int(c->revoke_invites, 1, "defaults: revoke_invites");
	is_int(c->dry_run, 0, "defaults: dry_run");
	is_int(c->breaker_max, 50, "defaults: breaker N");
	is_int(c->breaker_window, 3600, "defaults: breaker S");
	is_str(c->spool_dir, CONFIG_DEFAULT_SPOOL, "defaults: spool_dir");
	is_int(c->worker, CONFIG_WORKER_THREAD, "defaults: worker thread");
	is_str(c->ldap_uri, "ldapi:///", "defaults: ldap_uri");
	ok(!c->ldap_binddn && !c->ldap_bindpw_file && !c->ldap_sasl_mech, "defaults: ldap bind unset");
	is_str(c->login_attribute, "uid", "defaults: login_attribute");
	is_int(c->ldap_timeout, 5, "defaults: ldap_timeout");
	is_int(c->syslog_facility, LOG_AUTHPRIV, "defaults: syslog_facility");
	is_str(c->syslog_ident, "openai-revoke", "defaults: syslog_ident");
	is_int(c->log_level, LOG_INFO, "defaults: log_level");
	ok(c->log_file == NULL, "defaults: log_file unset");
	config_free(c);
}

static void test_every_keyword(void)
{
	static const char text[] =
		"# every keyword, none at its default\n"
		"api_url https://api.example.net:8443/openai/v1/\n"
		"admin_key_file /etc/or/key\n"
		"ca_file /etc/ssl/ca.pem\n"
		"http_timeout 600\n"
		"api_rate 1\n"
		"base ou=people,dc=example,dc=com\n"
		"user_filter (&(objectClass=inetOrgPerson)(!(employeeType=robot)))\n"
		"disabled_filter (|(nsAccountLock=TRUE)(shadowExpire=1))\n"
		"revoke_on_delete no\n"
		"disabled_subtree ou=disabled,dc=example,dc=com\n"
		"map_file /etc/or/map\n"
		"user_id_attribute openaiUserId\n"
		"email_attributes mail, mailAlternateAddress  otherMailbox\n"
		"protect_roles owner,reader\n"
		"protect_users user-abc boss@example.com\n"
		"revoke_invites off\n"
		"dry_run true\n"
		"breaker 1000000 604800\n"
		"spool_dir /var/tmp/spool\n"
		"worker none\n"
		"ldap_uri ldap://127.0.0.1:389 ldaps://ldap.example.com\n"
		"ldap_binddn cn=reader,dc=example,dc=com\n"
		"ldap_bindpw_file /etc/or/bindpw\n"
		"ldap_sasl_mech EXTERNAL\n"
		"login_attribute sAMAccountName\n"
		"ldap_timeout 300\n"
		"syslog_facility local5\n"
		"syslog_ident or-test\n"
		"log_level debug\n"
		"log_file /var/log/or.log\n";
	struct config *c = good(text, "every keyword");

	if (!c)
		return;
	is_str(c->path, "t.conf", "path recorded");
	is_str(c->api_url, "https://api.example.net:8443/openai/v1", "api_url: one trailing slash stripped");
	is_str(c->admin_key_file, "/etc/or/key", "admin_key_file");
	is_str(c->ca_file, "/etc/ssl/ca.pem", "ca_file");
	is_int(c->http_timeout, 600, "http_timeout");
	is_int(c->api_rate, 1, "api_rate");
	is_str(c->base, "ou=people,dc=example,dc=com", "base");
	is_str(c->user_filter, "(&(objectClass=inetOrgPerson)(!(employeeType=robot)))", "user_filter");
	is_str(c->disabled_filter, "(|(nsAccountLock=TRUE)(shadowExpire=1))", "disabled_filter");
	ok(c->disabled_attrs[0] && c->disabled_attrs[1] && !c->disabled_attrs[2] &&
	   strcmp(c->disabled_attrs[0], "nsaccountlock") == 0 &&
	   strcmp(c->disabled_attrs[1], "shadowexpire") == 0, "disabled_attrs from disabled_filter");
	is_int(c->revoke_on_delete, 0, "revoke_on_delete no");
	is_str(c->disabled_subtree, "ou=disabled,dc=example,dc=com", "disabled_subtree");
	is_str(c->map_file, "/etc/or/map", "map_file");
	is_str(c->user_id_attribute, "openaiUserId", "user_id_attribute");
	ok(c->email_attributes[0] && c->email_attributes[1] && c->email_attributes[2] &&
	   !c->email_attributes[3] && strcmp(c->email_attributes[1], "mailAlternateAddress") == 0 &&
	   strcmp(c->email_attributes[2], "otherMailbox") == 0,
	   "email_attributes: commas and white space both separate");
	ok(config_list_contains(c->protect_roles, "READER") && config_list_contains(c->protect_roles, "owner"),
	   "protect_roles, looked up case-insensitively");
	ok(config_list_contains(c->protect_users, "user-abc") &&
	   config_list_contains(c->protect_users, "Boss@Example.com") &&
	   !config_list_contains(c->protect_users, "user-ab"), "protect_users");
	is_int(c->revoke_invites, 0, "revoke_invites off");
	is_int(c->dry_run, 1, "dry_run true");
	is_int(c->breaker_max, 1000000, "breaker N at its maximum");
	is_int(c->breaker_window, 604800, "breaker S at its maximum");
	is_str(c->spool_dir, "/var/tmp/spool", "spool_dir");
	is_int(c->worker, CONFIG_WORKER_NONE, "worker none");
	is_str(c->ldap_uri, "ldap://127.0.0.1:389 ldaps://ldap.example.com", "ldap_uri, two URIs");
	is_str(c->ldap_binddn, "cn=reader,dc=example,dc=com", "ldap_binddn");
	is_str(c->ldap_bindpw_file, "/etc/or/bindpw", "ldap_bindpw_file");
	is_str(c->ldap_sasl_mech, "EXTERNAL", "ldap_sasl_mech");
	is_str(c->login_attribute, "sAMAccountName", "login_attribute");
	is_int(c->ldap_timeout, 300, "ldap_timeout");
	is_int(c->syslog_facility, LOG_LOCAL5, "syslog_facility local5");
	is_str(c->syslog_ident, "or-test", "syslog_ident");
	is_int(c->log_level, LOG_DEBUG, "log_level debug");
	is_str(c->log_file, "/var/log/or.log", "log_file");
	config_free(c);
}

static void test_values(void)
{
	static const char *const yes[] = { "yes", "true", "on", "1", "YES", "True" };
	static const char *const no[] = { "no", "false", "off", "0", "No", "OFF" };
	static const struct { const char *name; int value; } fac[] = {
		{ "auth", LOG_AUTH }, { "authpriv", LOG_AUTHPRIV }, { "daemon", LOG_DAEMON },
		{ "user", LOG_USER }, { "local0", LOG_LOCAL0 }, { "local7", LOG_LOCAL7 },
	};
	static const char *const levels[] = {
		"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"
	};
	char text[512];
	struct config *c;

	for (size_t i = 0; i < 6; i++) {
		snprintf(text, sizeof(text), BASE "dry_run %s\n", yes[i]);
		c = good(text, yes[i]);
		ok(c && c->dry_run == 1, "bool %s is true", yes[i]);
		config_free(c);
		snprintf(text, sizeof(text), BASE "dry_run %s\n", no[i]);
		c = good(text, no[i]);
		ok(c && c->dry_run == 0, "bool %s is false", no[i]);
		config_free(c);
	}
	for (size_t i = 0; i < sizeof(fac) / sizeof(fac[0]); i++) {
		snprintf(text, sizeof(text), BASE "syslog_facility %s\n", fac[i].name);
		c = good(text, fac[i].name);
		ok(c && c->syslog_facility == fac[i].value, "facility %s", fac[i].name);
		config_free(c);
	}
	for (int i = 0; i < 8; i++) {
		snprintf(text, sizeof(text), BASE "log_level %s\n", levels[i]);
		c = good(text, levels[i]);
		ok(c && c->log_level == i, "log_level %s", levels[i]);
		config_free(c);
		is_str(log_level_name(i), levels[i], "log_level_name(%d)", i);
	}
	/* range edges */
	c = good(BASE "http_timeout 1\napi_rate 1000\nldap_timeout 1\nbreaker 1 1\n", "lowest and highest values");
	ok(c && c->http_timeout == 1 && c->api_rate == 1000 && c->ldap_timeout == 1 &&
	   c->breaker_max == 1 && c->breaker_window == 1, "range edges stored");
	config_free(c);
	c = good(BASE "http_timeout 10m\nldap_timeout 2M\nbreaker 3 7d\n", "durations with units");
	ok(c && c->http_timeout == 600 && c->ldap_timeout == 120 && c->breaker_window == 604800,
	   "units s m h d give seconds");
	config_free(c);
	c = good(BASE "http_timeout 45s\nbreaker 3 1h\n", "durations in s and h");
	ok(c && c->http_timeout == 45 && c->breaker_window == 3600, "45s and 1h");
	config_free(c);
	c = good(BASE "protect_roles Owner reader\n", "roles in any case");
	ok(c && strcmp(c->protect_roles[0], "owner") == 0, "roles stored lower-case");
	config_free(c);
	c = good(BASE "protect_roles none\n", "no protected roles");
	ok(c && c->protect_roles[0] == NULL, "protect_roles none is empty");
	config_free(c);
	c = good(BASE "api_url http://127.0.0.1:8080/v1\n", "http:// to 127.0.0.1");
	ok(c && strcmp(c->api_url, "http://127.0.0.1:8080/v1") == 0, "loopback http url kept");
	config_free(c);
	c = good(BASE "api_url http://localhost/\n", "http:// to localhost");
	ok(c && strcmp(c->api_url, "http://localhost") == 0, "trailing slash stripped from a bare host");
	config_free(c);
	c = good(BASE "api_url http://[::1]:9/v1//\n", "http:// to [::1]");
	ok(c && strcmp(c->api_url, "http://[::1]:9/v1/") == 0, "only one trailing slash stripped");
	config_free(c);
	c = good(BASE "protect_users none\nemail_attributes none\n", "lists set to none");
	ok(c && c->protect_users[0] == NULL && c->email_attributes[0] == NULL, "none is an empty list");
	config_free(c);
	c = good(BASE "email_attributes mail;lang-en, 0.9.2342.19200300.100.1.3\n",
	         "attribute options and OIDs");
	config_free(c);
	c = good(BASE "user_id_attribute openaiUserId \t \n", "trailing white space trimmed");
	ok(c && strcmp(c->user_id_attribute, "openaiUserId") == 0, "value trimmed");
	config_free(c);
	c = good("BASE dc=example,dc=com\nDry_Run yes\n", "keywords are case-insensitive");
	config_free(c);
}

static void test_invalid(void)
{
	bad(BASE "frobnicate yes\n", "t.conf:2: frobnicate: unknown keyword", "unknown keyword");
	bad(BASE "dry_run=yes\n", "t.conf:2: dry_run: separate the value with a blank, not '='", "keyword=value");
	bad(BASE "dry_run= yes\n", "t.conf:2: dry_run: separate the value with a blank", "keyword= value");
	bad(BASE "dry_runs yes\n", "t.conf:2: dry_runs: unknown keyword", "near-miss keyword");
	bad(BASE "api_rate 5\napi_rate 6\n", "t.conf:3: api_rate: duplicate keyword (first set on line 2)",
	    "duplicate keyword");
	bad(BASE "dry_run\n", "t.conf:2: dry_run: missing value", "missing value");
	bad(BASE "dry_run   \t \n", "t.conf:2: dry_run: missing value", "value only white space");
	bad(BASE "dry_run maybe\n", "t.conf:2: dry_run: not a boolean", "bad boolean");
	bad(BASE "http_timeout 0\n", "t.conf:2: http_timeout: out of range (1..600 seconds)", "http_timeout 0");
	bad(BASE "http_timeout 601\n", "http_timeout: out of range", "http_timeout 601");
	bad(BASE "http_timeout 99999999999999999999\n", "http_timeout: out of range", "huge number");
	bad(BASE "http_timeout -5\n", "http_timeout: not a duration", "negative number");
	bad(BASE "http_timeout 10x\n", "http_timeout: not a duration", "bad duration unit");
	bad(BASE "http_timeout 10ms\n", "http_timeout: not a duration", "two-letter unit");
	bad(BASE "http_timeout 11m\n", "http_timeout: out of range (1..600 seconds)", "duration over range");
	bad(BASE "http_timeout s\n", "http_timeout: not a duration", "unit without a number");
	bad(BASE "api_rate 10s\n", "api_rate: not a number", "unit on a plain number");
	bad(BASE "protect_roles onwer\n", "protect_roles: \"onwer\" is not an organization role", "role typo");
	bad(BASE "breaker 5 8d\n", "breaker: seconds out of range", "breaker window 8d");
	bad(BASE "api_rate 0\n", "api_rate: out of range (1..1000)", "api_rate 0");
	bad(BASE "api_rate 1001\n", "api_rate: out of range (1..1000)", "api_rate 1001");
	bad(BASE "ldap_timeout 301\n", "ldap_timeout: out of range (1..300 seconds)", "ldap_timeout 301");
	bad(BASE "ldap_timeout 0\n", "ldap_timeout: out of range", "ldap_timeout 0");
	bad(BASE "breaker 50\n", "breaker: expected two numbers", "breaker with one number");
	bad(BASE "breaker 50 60 70\n", "breaker: expected two numbers", "breaker with three numbers");
	bad(BASE "breaker 0 60\n", "breaker: removals out of range (1..1000000)", "breaker N 0");
	bad(BASE "breaker 1000001 60\n", "breaker: removals out of range", "breaker N too big");
	bad(BASE "breaker 5 604801\n", "breaker: seconds out of range (1..604800)", "breaker S too big");
	bad(BASE "breaker 5 x\n", "breaker: seconds: not a duration", "breaker S not a number");
	bad("base example.com\n", "t.conf:1: base: not a valid DN", "base not a DN");
	bad("base dc=example,,dc=com\n", "base: not a valid DN", "base with an empty RDN");
	bad(BASE "disabled_subtree ou=x,=y\n", "disabled_subtree: not a valid DN", "bad disabled_subtree");
	bad(BASE "ldap_binddn nobody\n", "ldap_binddn: not a valid DN", "bad ldap_binddn");
	bad(BASE "user_filter (objectClass=person\n", "user_filter: invalid LDAP filter: missing ')'",
	    "filter: unbalanced");
	bad(BASE "user_filter objectClass=person\n", "user_filter: invalid LDAP filter: expected '('",
	    "filter: no parentheses");
	bad(BASE "user_filter (a=b))\n", "unexpected text after the filter", "filter: trailing ')'");
	bad(BASE "user_filter (a=b)(c=d)\n", "unexpected text after the filter", "filter: two filters");
	bad(BASE "user_filter ()\n", "empty filter item", "filter: empty item");
	bad(BASE "user_filter (&)\n", "need at least one filter", "filter: empty and");
	bad(BASE "disabled_filter (a=\\zz)\n", "disabled_filter: invalid LDAP filter: bad escape", "filter: bad escape");
	bad(BASE "disabled_filter (a=x\\2)\n", "bad escape", "filter: short escape");
	bad(BASE "disabled_filter (=x)\n", "bad attribute description", "filter: no attribute");
	bad(BASE "disabled_filter (1a=x)\n", "bad attribute description", "filter: attribute starts with a digit");
	bad(BASE "disabled_filter (a b=x)\n", "bad attribute description", "filter: space in attribute");
	bad(BASE "disabled_filter (a>x)\n", "missing '='", "filter: no '='");
	bad(BASE "disabled_filter (a>=x*)\n", "unescaped '*'", "filter: '*' in >=");
	bad(BASE "disabled_filter (a=x**y)\n", "two '*' in a row", "filter: '**'");
	bad(BASE "disabled_filter (a=(x))\n", "unescaped '('", "filter: '(' in value");
	bad(BASE "disabled_filter (!(a=b)(c=d))\n", "expected ')'", "filter: not with two filters");
	bad(BASE "disabled_filter (:=x)\n", "needs an attribute or a matching rule", "filter: bare :=");
	bad(BASE "disabled_filter (a:dn:1.2.:=x)\n", "bad matching rule", "filter: bad matching rule OID");
	bad(BASE "disabled_filter (a:dn:1.2:x:=y)\n", "unexpected ':'", "filter: too many colons");
	bad(BASE "api_url ftp://example.com/v1\n", "t.conf:2: api_url: must start with https://", "ftp URL");
	bad(BASE "api_url api.openai.com/v1\n", "api_url: must start with https://", "URL without scheme");
	bad(BASE "api_url https:///v1\n", "api_url: missing host", "URL without host");
	bad(BASE "api_url https://user:pw@example.com/v1\n", "api_url: must not contain a user name or password",
	    "URL with credentials");
	bad(BASE "api_url https://example.com:99999/v1\n", "api_url: bad port", "URL with bad port");
	bad(BASE "api_url https://example.com/v1?x=1\n", "api_url: must not contain a query", "URL with query");
	bad(BASE "api_url http://api.openai.com/v1\n", "api_url: http:// is allowed only to a loopback address",
	    "plain http to a remote host");
	bad(BASE "syslog_facility kern\n", "t.conf:2: syslog_facility: unknown facility", "bad facility");
	bad(BASE "log_level verbose\n", "t.conf:2: log_level: unknown level", "bad level");
	bad(BASE "worker process\n", "worker: must be thread or none", "bad worker");
	bad(BASE "ldap_uri http://example.com\n", "ldap_uri: \"http://example.com\" is not an ldap://", "bad ldap_uri");
	bad(BASE "user_id_attribute open ai\n", "user_id_attribute: not an attribute name", "bad attribute name");
	bad(BASE "login_attribute -uid\n", "login_attribute: not an attribute name", "attribute starting with '-'");
	bad(BASE "email_attributes mail, e*mail\n", "email_attributes: \"e*mail\" is not an attribute name",
	    "bad attribute in a list");
	bad(BASE "email_attributes ,\n", "email_attributes: empty list", "list with only separators");
	bad(BASE "spool_dir var/spool\n", "spool_dir: must be an absolute path", "relative path");
	bad(BASE "syslog_ident open ai\n", "syslog_ident: must be one word", "ident with a space");
	bad("dry_run yes\n", "t.conf: base: required keyword is missing", "missing base");
	bad("", "base: required keyword is missing", "empty file");
}

static void test_syntax(void)
{
	struct config *c;
	char *big;
	size_t n;

	c = good("# comment\r\n\r\n   # indented comment\n\t\nbase dc=example,dc=com\r\n"
	         "user_id_attribute openaiUserId\r\n", "comments, blank lines, CRLF");
	ok(c && strcmp(c->base, "dc=example,dc=com") == 0 && strcmp(c->user_id_attribute, "openaiUserId") == 0,
	   "CR stripped from values");
	config_free(c);
	c = good(BASE "user_filter (&(objectClass=person)(description=room #12))", "'#' inside a value, no final newline");
	ok(c && strcmp(c->user_filter, "(&(objectClass=person)(description=room #12))") == 0,
	   "'#' inside a value is not a comment");
	config_free(c);
	c = good("base ou=a\\#b,dc=example,dc=com\n", "'#' in a DN");
	ok(c && strcmp(c->base, "ou=a\\#b,dc=example,dc=com") == 0, "DN with '#' kept whole");
	config_free(c);
	c = good("\xef\xbb\xbf" BASE, "UTF-8 byte order mark");
	config_free(c);
	c = good(BASE "disabled_filter (description=caf\xc3\xa9)\n", "UTF-8 in a filter value");
	config_free(c);

	/* every problem is reported, in order, one per line */
	bad("foo 1\nbar 2\nhttp_timeout x\n", "t.conf:1: foo: unknown keyword\nt.conf:2: bar: unknown keyword\n"
	    "t.conf:3: http_timeout: not a duration (seconds, or a number with s, m, h or d)\nt.conf: base: required keyword is missing",
	    "several errors collected");

	/* a 100 KB line is an error for that line only */
	n = 100 * 1024;
	big = malloc(n + 64);
	if (big) {
		memcpy(big, "user_filter (cn=", 16);
		memset(big + 16, 'a', n);
		memcpy(big + 16 + n, ")\n" BASE "dry_run what\n", sizeof(")\n" BASE "dry_run what\n"));
		bad(big, "t.conf:1: user_filter: line longer than 8192 bytes", "100 KB line");
		contains(err, "t.conf:3: dry_run: not a boolean", "  parsing goes on after a long line");
		free(big);
	}
	{
		static const char nul[] = BASE "syslog_ident abc\0def\ndry_run x\n";
		struct config *cc = NULL;
		int rc = config_parse_buffer("t.conf", nul, sizeof(nul) - 1, &cc, err, sizeof(err));
		ok(rc == -1 && !cc, "refused: NUL byte in a line");
		contains(err, "t.conf:2: syslog_ident: line contains a NUL byte", "  NUL byte message");
		contains(err, "t.conf:3: dry_run: not a boolean", "  parsing goes on after a NUL byte");
	}
	bad(BASE "user_filter (cn=\xff\xfe)\n", "t.conf:2: user_filter: value is not valid UTF-8", "invalid UTF-8");
	bad(BASE "user_filter (cn=\xc0\xaf)\n", "not valid UTF-8", "overlong UTF-8");
	bad(BASE "user_filter (cn=\xed\xa0\x80)\n", "not valid UTF-8", "UTF-16 surrogate in UTF-8");
	bad(BASE "syslog_ident a\x1b[31m\n", "value contains a control character", "escape sequence in value");
	bad(BASE "\xff\xfe\x1b[2J 1\n", "t.conf:2: ???[2J: unknown keyword", "binary keyword shown sanitized");
	bad(BASE "syslog_ident a\rb\n", "control character", "bare CR inside a value");

	/* too many errors: a cap, not a flood */
	{
		size_t len = 0, cap = 200 * 12;
		char *many = malloc(cap);
		if (many) {
			for (int i = 0; i < 200; i++)
				len += (size_t)snprintf(many + len, cap - len, "bogus %d\n", i);
			bad(many, "too many errors", "200 errors capped");
			free(many);
		}
	}
	/* err buffer too small: truncated, NUL-terminated, no overflow */
	{
		char small[40];
		struct config *cc = NULL;
		const char *t = "foo 1\nbar 2\n";
		int rc = config_parse_buffer("t.conf", t, strlen(t), &cc, small, sizeof(small));
		ok(rc == -1 && strlen(small) < sizeof(small), "small error buffer: truncated safely");
		contains(small, "t.conf:1: foo: unknown keyword", "  first message whole");
	}
	/* NULL err is allowed */
	{
		struct config *cc = NULL;
		ok(config_parse_buffer("t.conf", "x", 1, &cc, NULL, 0) == -1, "NULL error buffer tolerated");
	}
}

/* libldap's filter encoder (exported, not in ldap.h): slapd parses filters
 * with it, so every filter we accept must pass it too. */
int ldap_pvt_put_filter(BerElement *ber, const char *str);

static int libldap_accepts(const char *f)
{
	BerElement *ber = ber_alloc_t(LBER_USE_DER);
	int rc = ber ? ldap_pvt_put_filter(ber, f) : -1;

	ber_free(ber, 1);
	return rc == 0;
}

static void test_filters(void)
{
	static const struct { const char *f; const char *attrs; } goodf[] = {
		{ "(pwdAccountLockedTime=000001010000Z)", "pwdaccountlockedtime" },
		{ "(nsAccountLock=TRUE)", "nsaccountlock" },
		{ "(userAccountControl:1.2.840.113556.1.4.803:=2)", "useraccountcontrol" },
		{ "(shadowExpire=1)", "shadowexpire" },
		{ "(&(objectClass=person)(|(cn=a*b*c)(sn=*x)(sn=x*)(mail=*))(!(uid>=m))(uid<=z)(cn~=jon))",
		  "objectclass cn sn mail uid" },
		{ "(cn:dn:2.5.13.5:=John)", "cn" },
		{ "(cn:DN:=John)", "cn" },
		{ "(cn:caseExactMatch:=John)", "cn" },
		{ "(:dn:2.4.6.8.10:=Dino)", "" },
		{ "(:1.2.3:=x)", "" },
		{ "(CN;lang-en;binary=\\28x\\29\\2a\\5c\\00)", "cn" },
		{ "(2.5.4.3=x)", "2.5.4.3" },
		{ "(cn=)", "cn" },
		{ "(cn=*a*)", "cn" },
		{ "(cn=a=b)", "cn" },
		{ "(|(UID=a)(uid=b)(Uid=c))", "uid" },
		{ "(description=room #12)", "description" },
	};
	static const char *const badf[] = {
		"", "(", ")", "(cn=x", "cn=x", "(cn=x))", "((cn=x))", "(&(cn=x)", "(|)", "(!)",
		"(cn=\\4)", "(cn=\\gg)", "(cn=x\\)", "(cn=**)", "(cn~=*)", "(cn<=a*)",
		"(cn:=*)", "(:=x)", "(:dn:=x)", "(cn:1.:=x)", "(cn:01.2:=x)", "(c n=x)", "(cn;=x)",
		"(-cn=x)", "(cn=x) ", " (cn=x)", "(cn=x)(sn=y)", "(&(cn=x) (sn=y))", "(cn=a(b)",
	};
	char **attrs = NULL;
	char ferr[256];

	for (size_t i = 0; i < sizeof(goodf) / sizeof(goodf[0]); i++) {
		char joined[256] = "";
		int rc = config_filter_parse(goodf[i].f, &attrs, ferr, sizeof(ferr));
		if (rc == 0 && attrs)
			for (char **a = attrs; *a; a++)
				snprintf(joined + strlen(joined), sizeof(joined) - strlen(joined), "%s%s",
				         a == attrs ? "" : " ", *a);
		if (!ok(rc == 0, "filter parses: %s", goodf[i].f))
			diag("  %s", ferr);
		is_str(joined, goodf[i].attrs, "  attributes of %s", goodf[i].f);
		ok(libldap_accepts(goodf[i].f), "  libldap agrees");
		config_list_free(attrs);
		attrs = NULL;
	}
	for (size_t i = 0; i < sizeof(badf) / sizeof(badf[0]); i++) {
		attrs = (char **)1;
		ferr[0] = '\0';
		int rc = config_filter_parse(badf[i], &attrs, ferr, sizeof(ferr));
		ok(rc == -1 && attrs == NULL && ferr[0], "filter refused: \"%s\" (%s)", badf[i], ferr);
	}
	ok(config_filter_parse("(cn=x)", NULL, NULL, 0) == 0, "filter check without attrs or err");
	ok(config_filter_parse(NULL, NULL, ferr, sizeof(ferr)) == -1, "NULL filter refused");
	{
		/* depth: deep nesting is refused, not a stack overflow */
		char deep[4096];
		size_t o = 0;
		for (int i = 0; i < 1000; i++)
			deep[o++] = '(', deep[o++] = '!';
		memcpy(deep + o, "(a=b)", 5);
		o += 5;
		for (int i = 0; i < 1000; i++)
			deep[o++] = ')';
		deep[o] = '\0';
		ok(config_filter_parse(deep, NULL, ferr, sizeof(ferr)) == -1, "deeply nested filter refused");
		contains(ferr, "nested too deeply", "  message says why");
	}
	/* the finished config carries the attributes of the AD filter */
	{
		struct config *c = good(BASE "disabled_filter (userAccountControl:1.2.840.113556.1.4.803:=2)\n",
		                        "AD disabled_filter");
		ok(c && c->disabled_attrs[0] && strcmp(c->disabled_attrs[0], "useraccountcontrol") == 0 &&
		   !c->disabled_attrs[1], "AD filter gives useraccountcontrol");
		config_free(c);
	}
}

static void test_set_finish(void)
{
	struct config *c = config_new_defaults();
	char e[512];

	if (!c)
		return;
	ok(config_finish(c, e, sizeof(e)) == -1, "finish without base fails");
	contains(e, "base: required keyword is missing", "  finish names base");
	ok(config_set(c, "base", "dc=example,dc=com", "override", 0, e, sizeof(e)) == 0, "config_set base");
	ok(config_set(c, "disabled_filter", "(|(a=1)(B=2))", NULL, 0, e, sizeof(e)) == 0, "config_set filter");
	ok(c->disabled_attrs[0] && c->disabled_attrs[1] && strcmp(c->disabled_attrs[1], "b") == 0,
	   "config_set updates disabled_attrs");
	ok(config_set(c, "dry_run", "yes", NULL, 0, e, sizeof(e)) == 0 &&
	   config_set(c, "dry_run", "no", NULL, 0, e, sizeof(e)) == 0 && c->dry_run == 0,
	   "config_set overrides (no duplicate check)");
	ok(config_set(c, "http_timeout", "0", "pam", 3, e, sizeof(e)) == -1, "config_set validates");
	is_str(e, "pam:3: http_timeout: out of range (1..600 seconds)", "  config_set message with file and line");
	ok(config_set(c, "nope", "1", NULL, 0, e, sizeof(e)) == -1, "config_set unknown keyword");
	is_str(e, "nope: unknown keyword", "  message without a file");
	ok(config_set(c, "dry_run", "", "x", 0, e, sizeof(e)) == -1, "config_set empty value");
	is_str(e, "x: dry_run: missing value", "  message with a file, no line");
	is_int(c->http_timeout, 30, "a refused value leaves the old one");
	ok(config_set(c, "http_timeout", " \t45 ", NULL, 0, e, sizeof(e)) == 0 && c->http_timeout == 45,
	   "config_set trims blanks like a file line");
	ok(config_set(c, "dry_run", "  ", "x", 2, e, sizeof(e)) == -1, "config_set blanks only");
	is_str(e, "x:2: dry_run: missing value", "  blanks are a missing value");
	ok(config_set(c, "dry_run", NULL, NULL, 0, e, sizeof(e)) == -1, "config_set NULL value");
	ok(config_set(c, "syslog_ident", "a\nb", NULL, 0, e, sizeof(e)) == -1, "config_set refuses a newline");
	is_str(e, "syslog_ident: value contains a control character", "  message");
	ok(config_set(c, "http_timeout", "30", NULL, 0, e, sizeof(e)) == 0, "config_set back to 30");
	ok(config_finish(c, e, sizeof(e)) == 0, "finish with base succeeds (%s)", e);
	config_free(c);
	config_free(NULL);
	ok(config_list_contains(NULL, "x") == 0, "list_contains(NULL)");
	config_list_free(NULL);
}

static void test_files(void)
{
	char path[512], e[1024];
	struct config *c = NULL;

	path_in_tmp(path, sizeof(path), "good.conf");
	write_file(path, BASE "dry_run yes\n", strlen(BASE "dry_run yes\n"), 0644);
	ok(config_load(path, &c, e, sizeof(e)) == 0 && c && c->dry_run == 1, "config_load reads a file");
	ok(c && strcmp(c->path, path) == 0, "config path recorded");
	config_free(c);
	c = NULL;

	path_in_tmp(path, sizeof(path), "bad.conf");
	write_file(path, BASE "dry_run perhaps\n", strlen(BASE "dry_run perhaps\n"), 0644);
	ok(config_load(path, &c, e, sizeof(e)) == -1 && !c, "config_load: bad file refused");
	{
		char want[600];
		snprintf(want, sizeof(want), "%s:2: dry_run: not a boolean", path);
		contains(e, want, "  message is FILE:LINE: keyword:");
	}

	path_in_tmp(path, sizeof(path), "open.conf");
	write_file(path, BASE, strlen(BASE), 0666);
	ok(config_load(path, &c, e, sizeof(e)) == -1 && !c, "world-writable configuration refused");
	contains(e, "open.conf: mode 0666 is too open: the configuration must not be writable by others", "  message names the mode");
	chmod(path, 0664);
	ok(config_load(path, &c, e, sizeof(e)) == 0 && c, "group-writable configuration accepted");
	config_free(c);
	c = NULL;

	path_in_tmp(path, sizeof(path), "missing.conf");
	ok(config_load(path, &c, e, sizeof(e)) == -1 && !c, "missing file refused");
	contains(e, "missing.conf: cannot open: No such file or directory", "  message names the file");

	ok(config_load(tmpdir, &c, e, sizeof(e)) == -1 && !c, "directory refused");
	contains(e, "is a directory", "  message says directory");

	path_in_tmp(path, sizeof(path), "huge.conf");
	{
		size_t n = 1024 * 1024 + 10;
		char *h = malloc(n);
		if (h) {
			memset(h, '\n', n);
			write_file(path, h, n, 0644);
			free(h);
			ok(config_load(path, &c, e, sizeof(e)) == -1 && !c, "file over 1 MiB refused");
			contains(e, "larger than 1 MiB", "  message says why");
		}
	}
	if (geteuid() != 0) {
		path_in_tmp(path, sizeof(path), "unreadable.conf");
		write_file(path, BASE, strlen(BASE), 0000);
		ok(config_load(path, &c, e, sizeof(e)) == -1 && !c, "unreadable file refused");
		contains(e, "cannot open: Permission denied", "  message says why");
	} else {
		/* root reads any mode: make open fail another way */
		char sub[600];
		path_in_tmp(path, sizeof(path), "good.conf");
		snprintf(sub, sizeof(sub), "%s/x", path);
		ok(config_load(sub, &c, e, sizeof(e)) == -1 && !c, "unopenable path refused (root)");
		contains(e, "good.conf/x: cannot open: Not a directory", "  message says why");
	}
	path_in_tmp(path, sizeof(path), "fifo.conf");
	unlink(path);
	if (mkfifo(path, 0600) == 0) {
		ok(config_load(path, &c, e, sizeof(e)) == -1 && !c, "FIFO refused without hanging");
		contains(e, "not a regular file", "  message says why");
	}
	ok(config_load(NULL, &c, e, sizeof(e)) == -1, "NULL path refused");
}

/* config.c's test hook: called with the secret's memory right before free */
extern void (*config_secret_free_observer)(const unsigned char *p, size_t n);
static size_t observed_n;
static int observed_zero;

static void observe_free(const unsigned char *p, size_t n)
{
	observed_n = n;
	observed_zero = 1;
	for (size_t i = 0; i < n; i++)
		if (p[i])
			observed_zero = 0;
}

static int read_key_file(const char *content, size_t len, mode_t mode, char **key)
{
	char path[512];
	struct config *c = config_new_defaults();
	int rc;

	path_in_tmp(path, sizeof(path), "admin.key");
	write_file(path, content, len, mode);
	free(c->admin_key_file);
	c->admin_key_file = strdup(path);
	rc = config_read_key(c, key, err, sizeof(err));
	config_free(c);
	return rc;
}

static void test_key(void)
{
	static const mode_t open_modes[] = { 0640, 0644, 0604, 0620, 0602, 0660, 0666, 0606 };
	char *key = NULL;
	char path[512], link[512];
	struct config *c;

	ok(read_key_file(KEY "\n", strlen(KEY) + 1, 0600, &key) == 0 && key && strcmp(key, KEY) == 0,
	   "0600 key file read, newline stripped");
	secret_free(key);
	key = NULL;
	ok(read_key_file(" \t" KEY "\r\n\n", strlen(KEY) + 5, 0400, &key) == 0 && key && strcmp(key, KEY) == 0,
	   "0400 key file read, surrounding white space stripped");
	secret_free(key);
	key = NULL;
	for (size_t i = 0; i < sizeof(open_modes) / sizeof(open_modes[0]); i++) {
		char want[64];
		key = (char *)1;
		ok(read_key_file(KEY, strlen(KEY), open_modes[i], &key) == -1 && key == NULL,
		   "mode %04o refused", (unsigned)open_modes[i]);
		snprintf(want, sizeof(want), "admin.key: mode %04o is too open", (unsigned)open_modes[i]);
		contains(err, want, "  message names the file and mode");
		contains(err, "(chmod 600)", "  message says what to do");
		ok(strstr(err, KEY) == NULL, "  message does not contain the key");
	}
	ok(read_key_file("", 0, 0600, &key) == -1 && !key, "empty key file refused");
	contains(err, "the key file is empty", "  message says empty");
	ok(read_key_file(" \n\t\r\n", 5, 0600, &key) == -1 && !key, "white space only key file refused");
	contains(err, "the key file is empty", "  message says empty");
	ok(read_key_file("sk-a b\n", 7, 0600, &key) == -1 && !key, "key with inner space refused");
	contains(err, "white space, control", "  message says why");
	ok(strstr(err, "sk-a") == NULL, "  message does not contain the key");
	ok(read_key_file("sk-a\nInjected: 1\n", 17, 0600, &key) == -1 && !key, "two-line key refused");
	ok(read_key_file("sk-\0abc", 7, 0600, &key) == -1 && !key, "key with a NUL byte refused");
	{
		char big[5000];
		memset(big, 'k', sizeof(big));
		ok(read_key_file(big, sizeof(big), 0600, &key) == -1 && !key, "key file over 4 KiB refused");
		contains(err, "larger than 4 KiB", "  message says why");
	}

	/* symlink: refused even when it points at a good file */
	c = config_new_defaults();
	path_in_tmp(path, sizeof(path), "real.key");
	path_in_tmp(link, sizeof(link), "link.key");
	write_file(path, KEY, strlen(KEY), 0600);
	unlink(link);
	if (symlink(path, link) == 0) {
		free(c->admin_key_file);
		c->admin_key_file = strdup(link);
		key = NULL;
		ok(config_read_key(c, &key, err, sizeof(err)) == -1 && !key, "symlinked key file refused");
		contains(err, "link.key: is a symbolic link", "  message says symlink");
	}
	free(c->admin_key_file);
	c->admin_key_file = strdup(tmpdir);
	ok(config_read_key(c, &key, err, sizeof(err)) == -1 && !key, "directory as key file refused");
	contains(err, "is a directory", "  message says directory");
	path_in_tmp(path, sizeof(path), "nokey");
	free(c->admin_key_file);
	c->admin_key_file = strdup(path);
	ok(config_read_key(c, &key, err, sizeof(err)) == -1 && !key, "missing key file refused");
	contains(err, "nokey: cannot open the key file: No such file", "  message says missing");
	path_in_tmp(path, sizeof(path), "key.fifo");
	unlink(path);
	if (mkfifo(path, 0600) == 0) {
		free(c->admin_key_file);
		c->admin_key_file = strdup(path);
		ok(config_read_key(c, &key, err, sizeof(err)) == -1 && !key, "FIFO key file refused without hanging");
		contains(err, "not a regular file", "  message says why");
		unlink(path);
	}
	config_free(c);

	key = secret_dup("abc");
	is_str(key, "abc", "secret_dup copies");
	secret_free(key);

	/* the key's memory is all zero when it goes back to malloc */
	config_secret_free_observer = observe_free;
	observed_n = 0;
	ok(read_key_file(KEY "\n", strlen(KEY) + 1, 0600, &key) == 0, "key read for the wipe check");
	secret_free(key);
	ok(observed_n >= strlen(KEY) + 1, "secret_free saw the whole buffer (%zu bytes)", observed_n);
	ok(observed_zero, "secret_free wiped every byte before free");
	config_secret_free_observer = NULL;
	secret_free(NULL);
	ok(secret_dup(NULL) == NULL, "secret_dup(NULL)");
}

static void test_dump(void)
{
	static const char *const all[] = {
		"api_url", "admin_key_file", "ca_file", "http_timeout", "api_rate", "base", "user_filter",
		"disabled_filter", "revoke_on_delete", "disabled_subtree", "map_file", "user_id_attribute",
		"email_attributes", "protect_roles", "protect_users", "revoke_invites", "dry_run", "breaker",
		"spool_dir", "worker", "ldap_uri", "ldap_binddn", "ldap_bindpw_file", "ldap_sasl_mech",
		"login_attribute", "ldap_timeout", "syslog_facility", "syslog_ident", "log_level", "log_file",
	};
	char keypath[512], text[1024], *out = NULL, *out2 = NULL, *key = NULL;
	size_t outlen = 0, outlen2 = 0;
	struct config *c, *c2 = NULL;
	FILE *fp;

	path_in_tmp(keypath, sizeof(keypath), "dump.key");
	write_file(keypath, KEY "\n", strlen(KEY) + 1, 0600);
	snprintf(text, sizeof(text), BASE "admin_key_file %s\nprotect_users none\nbreaker 7 70\n"
	         "syslog_facility local2\nlog_level notice\nworker none\n", keypath);
	c = good(text, "config for dump");
	if (!c)
		return;
	ok(config_read_key(c, &key, err, sizeof(err)) == 0, "key read before the dump");
	fp = open_memstream(&out, &outlen);
	config_dump(c, fp);
	fclose(fp);
	ok(out && strstr(out, KEY) == NULL, "dump does not contain the key");
	{
		char want[600];
		snprintf(want, sizeof(want), "admin_key_file %s\n", keypath);
		contains(out, want, "dump shows admin_key_file");
	}
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		char k[64];
		snprintf(k, sizeof(k), "%s ", all[i]);
		contains(out, k, "dump shows %s", all[i]);
	}
	contains(out, "breaker 7 70\n", "dump shows breaker values");
	contains(out, "syslog_facility local2\n", "dump shows facility by name");
	contains(out, "log_level notice\n", "dump shows level by name");
	contains(out, "protect_users none\n", "dump shows an empty list as none");
	/* the dump is itself a valid configuration giving the same dump */
	ok(config_parse_buffer("dump", out, outlen, &c2, err, sizeof(err)) == 0, "dump parses back (%s)", err);
	if (c2) {
		fp = open_memstream(&out2, &outlen2);
		config_dump(c2, fp);
		fclose(fp);
		is_str(out2, out, "dump of the parsed dump is identical");
	}
	secret_free(key);
	free(out);
	free(out2);
	config_free(c);
	config_free(c2);
}

int main(void)
{
	const char *t = getenv("TMPDIR");

	snprintf(tmpdir, sizeof(tmpdir), "%s/test_config.XXXXXX", t && *t ? t : "/tmp");
	if (!mkdtemp(tmpdir)) {
		printf("Bail out! mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	test_defaults();
	test_every_keyword();
	test_values();
	test_invalid();
	test_syntax();
	test_filters();
	test_set_finish();
	test_files();
	test_key();
	test_dump();
	{
		char cmd[600];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			diag("could not remove %s", tmpdir);
	}
	return tap_done();
}
