/* test_rules: the pure decisions of module/rules.c — trigger attributes,
 * DN containment and normalisation, the ppolicy administrative lock. */
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "rules.h"

static void test_trigger(void)
{
	char *attrs[] = { "pwdaccountlockedtime", "nsaccountlock", NULL };
	char *none[] = { NULL };
	struct config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.disabled_attrs = attrs;
	ok(rules_attr_is_trigger(&cfg, "pwdAccountLockedTime"), "trigger: mixed case");
	ok(rules_attr_is_trigger(&cfg, "PWDACCOUNTLOCKEDTIME"), "trigger: upper case");
	ok(rules_attr_is_trigger(&cfg, "nsAccountLock;binary"), "trigger: options stripped");
	ok(rules_attr_is_trigger(&cfg, "nsAccountLock;lang-en;x"), "trigger: several options");
	ok(!rules_attr_is_trigger(&cfg, "pwdAccountLockedTim"), "trigger: prefix is not a match");
	ok(!rules_attr_is_trigger(&cfg, "pwdAccountLockedTimes"), "trigger: longer is not a match");
	ok(!rules_attr_is_trigger(&cfg, "mail"), "trigger: other attribute");
	ok(!rules_attr_is_trigger(&cfg, ""), "trigger: empty");
	ok(!rules_attr_is_trigger(&cfg, ";binary"), "trigger: options only");
	ok(!rules_attr_is_trigger(&cfg, NULL), "trigger: NULL attr");
	ok(!rules_attr_is_trigger(NULL, "mail"), "trigger: NULL config");
	cfg.disabled_attrs = none;
	ok(!rules_attr_is_trigger(&cfg, "nsAccountLock"), "trigger: empty list");
	cfg.disabled_attrs = NULL;
	ok(!rules_attr_is_trigger(&cfg, "nsAccountLock"), "trigger: NULL list");
}

static void test_below(void)
{
	const char *base = "ou=people,dc=example,dc=com";

	ok(rules_dn_is_below("uid=jdoe,ou=people,dc=example,dc=com", base), "below: direct child");
	ok(rules_dn_is_below("uid=jdoe,ou=x,ou=people,dc=example,dc=com", base), "below: grandchild");
	ok(rules_dn_is_below(base, base), "below: the base itself");
	ok(rules_dn_is_below("UID=jdoe,OU=People,DC=Example,DC=COM", base), "below: case of types and values");
	ok(rules_dn_is_below("uid=jdoe, ou=people , dc=example,  dc=com", base), "below: spaces around separators");
	ok(rules_dn_is_below("uid = jdoe,ou = people,dc = example,dc = com", base), "below: spaces around =");
	ok(rules_dn_is_below("uid=jdoe,ou=people,dc=example,dc=com", "ou=people,  dc=example, dc=com"), "below: spaces in base");
	ok(rules_dn_is_below("uid=jdoe,ou=Sales  Team,dc=example,dc=com", "ou=sales team,dc=example,dc=com"), "below: inner spaces collapse");
	ok(rules_dn_is_below("uid=a,ou=p\\2cq,dc=x", "ou=p\\,q,dc=x"), "below: hex escape equals backslash escape");
	ok(rules_dn_is_below("uid=a,ou=p\\,q,dc=x", "OU=P\\2CQ,DC=X"), "below: escapes and case");
	ok(!rules_dn_is_below("uid=a,ou=x\\,ou=p,dc=x", "ou=p,dc=x"), "below: escaped comma is not a separator");
	ok(!rules_dn_is_below("uid=jdoe,ou=otherpeople,dc=example,dc=com", base), "below: suffix inside an RDN is not below");
	ok(!rules_dn_is_below("uid=jdoe,ou=people,dc=example,dc=org", base), "below: other tree");
	ok(!rules_dn_is_below("dc=example,dc=com", base), "below: parent is not below");
	ok(rules_dn_is_below("uid=jdoe,ou=people,dc=example,dc=com", ""), "below: empty base matches all");
	ok(rules_dn_is_below("", ""), "below: root below root");
	ok(!rules_dn_is_below("", base), "below: root not below base");
	ok(rules_dn_is_below("cn=a+sn=b,ou=people,dc=example,dc=com", base), "below: multi-valued RDN child");
	ok(rules_dn_is_below("uid=x,cn=a+sn=b,dc=c", "sn=B+cn=A,dc=c"), "below: multi-valued RDN in any order");
	ok(!rules_dn_is_below("uid=x,cn=a+sn=b,dc=c", "cn=a,dc=c"), "below: partial multi-valued RDN is not equal");
	ok(rules_dn_is_below("uid=jdoe;ou=people;dc=example;dc=com", base), "below: LDAPv2 ';' separators");
	ok(rules_dn_is_below("cn=\"Doe, John\",ou=people,dc=example,dc=com", base), "below: LDAPv2 quoted value");
	ok(rules_dn_is_below("cn=Doe\\, John,ou=people,dc=example,dc=com", "cn=\"doe, john\",ou=people,dc=example,dc=com"),
	   "below: quoted and escaped spellings are equal");
	ok(!rules_dn_is_below("not a dn", base), "below: unparseable DN");
	ok(!rules_dn_is_below("uid=jdoe,ou=people,dc=example,dc=com", "garbage,,"), "below: unparseable base");
	ok(!rules_dn_is_below(NULL, base), "below: NULL dn");
	ok(!rules_dn_is_below(base, NULL), "below: NULL base");
	ok(rules_dn_is_below("cn=#04024869,dc=x", "dc=X"), "below: BER-encoded value parses");
}

static void test_normalize(void)
{
	char *a, *b;

	a = rules_dn_normalize("UID=JDoe , OU=People,DC=Example,DC=com");
	is_str(a, "uid=jdoe,ou=people,dc=example,dc=com", "normalize: canonical form");
	free(a);
	a = rules_dn_normalize("cn=Doe\\, John+mail=J@X,dc=x");
	b = rules_dn_normalize("MAIL=j@x + CN=doe\\2C john,DC=X");
	ok(a && b && strcmp(a, b) == 0, "normalize: escapes, case and AVA order");
	free(a);
	free(b);
	a = rules_dn_normalize("");
	is_str(a, "", "normalize: root DN");
	free(a);
	ok(rules_dn_normalize("uid") == NULL, "normalize: refuses a bare word");
	ok(rules_dn_normalize(NULL) == NULL, "normalize: NULL");
	a = rules_dn_normalize("cn=a\\0Db,dc=x");
	ok(a && !strchr(a, '\r'), "normalize: control bytes escaped");
	free(a);
}

static void test_lock(void)
{
	ok(rules_is_admin_lock("000001010000Z"), "lock: administrative lock");
	ok(!rules_is_admin_lock("20261203101010Z"), "lock: temporary lockout");
	ok(!rules_is_admin_lock("000001010000"), "lock: no zone");
	ok(!rules_is_admin_lock("0000010100000Z"), "lock: longer");
	ok(!rules_is_admin_lock(""), "lock: empty");
	ok(!rules_is_admin_lock(NULL), "lock: NULL");
}

int main(void)
{
	test_trigger();
	test_below();
	test_normalize();
	test_lock();
	return tap_done();
}
