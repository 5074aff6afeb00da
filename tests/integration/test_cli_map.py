"""openai-revoke map and the directory lookups behind it: addresses, uids,
DNs, JSON, protected and exempt users, and USER values that try to inject
into LDAP filters (they must match nothing they should not)."""
import json
import os
import re
import sys

from tap import ok, is_eq, diag, run, skip_all
from test_cli_common import CliEnv, PROG, SUFFIX, dn_of, org_user

if not os.access(PROG, os.X_OK):
    skip_all("%s not built" % PROG)


def setup(t):
    t.add_person("jdoe", "jdoe@example.com")
    t.add_person("boss", "boss@example.com")
    t.add_person("multi", ["m1@example.com", "M2@Example.com"])
    t.add_person("outsider")           # in the directory, not in the org
    t.add_person("twin", "twin1@example.com", ou="people")
    t.add_person("twin", "twin2@example.com", ou="services")
    t.add_person("locked", "locked@example.com",
                 extra={"pwdAccountLockedTime": "000001010000Z"})
    t.fake.reset(users=[org_user("jdoe"), org_user("boss", role="owner"),
                        org_user("multi", email="m2@example.com"),
                        org_user("twin", email="twin1@example.com"),
                        org_user("locked"), org_user("exempt")])


def test_map():
    with CliEnv() as t:
        setup(t)
        r = t.run("map", "jdoe@example.com")
        is_eq(r.rc, 0, "map by address exits 0")
        is_eq(r.out, "jdoe@example.com -> user-jdoe (jdoe@example.com, reader) via email\n",
              "map by address: the org lookup")
        reqs = t.fake.requests()
        ok(any("emails" in (q.get("query") or "") for q in reqs), "the address went to the org lookup")

        r = t.run("map", "jdoe")
        is_eq(r.out, "jdoe -> user-jdoe (jdoe@example.com, reader) via email\n", "map by uid")
        r = t.run("map", dn_of("jdoe"))
        is_eq(r.out, "%s -> user-jdoe (jdoe@example.com, reader) via email\n" % dn_of("jdoe"),
              "map by DN")
        r = t.run("map", "UID=jdoe, OU=People,DC=example,dc=COM")
        ok(r.rc == 0 and "-> user-jdoe" in r.out, "map by DN written differently")

        r = t.run("map", "multi")
        ok(r.rc == 0 and "-> user-multi (m2@example.com" in r.out,
           "several addresses: the second one matched (case-insensitively)")

        t.fake.users([org_user("multi1", email="m1@example.com")])
        r = t.run("map", "multi")
        is_eq(sorted(r.out.splitlines()),
              ["multi -> user-multi (m2@example.com, reader) via email",
               "multi -> user-multi1 (m1@example.com, reader) via email"],
              "a person whose addresses match two members: one line each")
        r = t.run("map", "--json", "multi")
        doc = json.loads(r.out)
        ok(len(doc[0].get("also") or []) == 1 and
           {doc[0]["openai_user"], doc[0]["also"][0]["openai_user"]} == {"user-multi", "user-multi1"},
           "--json: the others under 'also'")
        t.fake.reset(users=[org_user("jdoe"), org_user("boss", role="owner"),
                            org_user("multi", email="m2@example.com"),
                            org_user("twin", email="twin1@example.com"),
                            org_user("locked"), org_user("exempt")])

        r = t.run("map", "outsider", "nobody@example.com")
        is_eq(r.rc, 0, "not a member is an answer: exit 0")
        is_eq(r.out, "outsider -> not a member\nnobody@example.com -> not a member\n",
              "map says not a member")

        r = t.run("map", "boss")
        ok(r.rc == 0 and "owner) via email; protected by protect_roles" in r.out,
           "an owner is shown as protected")
        conf = t.write_conf("protect.conf", protect_users="user-jdoe")
        r = t.run("map", "jdoe", conf=conf)
        ok("protected by protect_users" in r.out, "protect_users shown too")

        r = t.run("map", "locked")
        ok(r.rc == 0 and "[account disabled]" in r.out,
           "an account matching disabled_filter is marked (server-side evaluation)")
        r = t.run("map", "jdoe")
        ok("disabled" not in r.out, "an active account is not")

        r = t.run("map", "ghost")
        ok(r.rc == 1 and r.out == "" and "ghost: no account" in r.err,
           "a uid with no entry: exit 1, said on stderr")
        r = t.run("map", "twin")
        ok(r.rc == 1 and "several entries" in r.err, "a uid with two entries is refused")
        r = t.run("map", "uid=jdoe,dc=other,dc=org")
        ok(r.rc == 1 and "not below base" in r.err, "a DN outside base is refused")
        r = t.run("map", "uid=nobody,ou=people," + SUFFIX)
        ok(r.rc == 1 and "no such entry" in r.err, "a DN that does not exist")
        r = t.run("map", "ou=people," + SUFFIX)
        ok(r.rc == 1 and "user_filter" in r.err, "a DN that is not an account")
        r = t.run("map", "jdoe", "ghost")
        ok(r.rc == 1 and "-> user-jdoe" in r.out, "one bad USER: exit 1, the others answered")

        r = t.run("map", "--json", "jdoe", "outsider", "ghost", "boss", "locked")
        is_eq(r.rc, 1, "--json with a missing user exits 1")
        try:
            doc = json.loads(r.out)
        except ValueError:
            doc = None
            diag(r.out)
        ok(isinstance(doc, list) and len(doc) == 5, "--json prints an array, one per USER")
        if isinstance(doc, list) and len(doc) == 5:
            is_eq((doc[0]["result"], doc[0]["openai_user"], doc[0]["email"], doc[0]["role"],
                   doc[0]["via"], doc[0]["dn"], doc[0]["disabled"]),
                  ("member", "user-jdoe", "jdoe@example.com", "reader", "email", dn_of("jdoe"), False),
                  "--json member fields")
            is_eq(doc[1]["result"], "not_member", "--json not_member")
            is_eq(doc[2]["result"], "no_account", "--json no_account")
            is_eq(doc[3]["protected"], "protect_roles", "--json protected")
            is_eq(doc[4]["disabled"], True, "--json disabled")

        # Map file: exemption and a direct mapping; and the id attribute.
        t.write_file("map", "%s -\nmulti user-jdoe\n" % dn_of("jdoe"), 0o644)
        conf = t.write_conf("map.conf", map_file=t.path("map"))
        r = t.run("map", "jdoe", "multi", conf=conf)
        ok(re.search(r"^jdoe -> exempt", r.out, re.M), "map file '-': exempt")
        ok(re.search(r"^multi -> user-jdoe .* via map_file", r.out, re.M), "map file mapping")

        t.slapd.modify(dn_of("outsider"), [("add", "employeeNumber", ["user-exempt"])])
        conf = t.write_conf("id.conf", user_id_attribute="employeeNumber")
        r = t.run("map", "outsider", "jdoe", conf=conf)
        ok(re.search(r"^outsider -> user-exempt \(exempt@example.com, reader\) via (attribute|id)$",
                     r.out, re.M), "user_id_attribute: the ID on the entry, confirmed by the API")
        ok(re.search(r"^jdoe -> user-jdoe .* via email$", r.out, re.M),
           "an entry without the attribute falls back to its addresses")

        r = t.run("-v", "map", "a*)(cn")
        flt = r.err.split("filter=", 1)[-1].split("\n", 1)[0]
        ok("filter=" in r.err and "2a" in flt and "29" in flt and "28" in flt
           and "*)(" not in flt,
           "-v shows the search filter with the value escaped (RFC 4515)")

        r = t.run("map", "--id", "user-jdoe", "user-nobody")
        is_eq(r.out, "user-jdoe -> user-jdoe (jdoe@example.com, reader) via id\n"
              "user-nobody -> not a member\n", "map --id: the API confirms (or not) the ID")
        r = t.run("map", "--id", "../users", "user-jdoe?x=1", "a b")
        ok(r.rc == 1 and r.out == "" and r.err.count("not an OpenAI user ID") == 3,
           "map --id refuses what is not an ID (it goes into a URL path)")

        t.fake.clear_requests()
        r = t.run("map", "jdoe")
        ok(not any(q["method"] != "GET" for q in t.fake.requests()), "map changes nothing (only GETs)")
        ok(len(t.fake.state()["users"]) == 6, "the organization is unchanged")
        ok(t.spool_files("queue") == [], "map queues nothing")
        ok(t.key_seen() == [], "the admin key appears nowhere")
        ok(t.sanitizer_reports() == [], "no sanitizer report")


def test_injection():
    with CliEnv() as t:
        setup(t)
        cases = ["*", "a*)(uid=*", "*)(objectClass=*", "j*", "jdoe)(|(uid=*", "\\2a",
                 "jdoe\\", "(uid=jdoe)", "jd*e"]
        for user in cases:
            r = t.run("map", user)
            ok("-> user-" not in r.out, "USER %r maps to nobody" % user)
            r = t.run("revoke", user)
            ok(r.rc == 1 and "queued" not in r.out, "USER %r cannot be revoked" % user)
        ok(t.spool_files("queue") == [], "nothing was queued by any of them")
        r = t.run("map", "*@example.com")
        ok(r.rc == 0 and r.out == "*@example.com -> not a member\n",
           "an address with a wildcard matches no member (addresses are compared exactly)")
        for user in ("jdoe\n", "jdoe\x01", "jdoe\x1b[2J", "x" * 2000):
            r = t.run("map", user)
            ok(r.rc == 1 and "-> " not in r.out, "USER with control bytes or 2000 bytes refused")
            ok(len(r.err.splitlines()) == 1 and "\x1b" not in r.err and "\x01" not in r.err,
               "and the message is one clean line")
        ok(len(t.fake.state()["users"]) == 6, "nobody was removed")


def test_ldap_down():
    with CliEnv(ldap=False) as t:
        r = t.run("map", "jdoe")
        ok(r.rc == 1 and "jdoe" in r.err and "ldapi" in r.err,
           "directory unreachable: map of a uid exits 1 and says why")
        r = t.run("map", "jdoe@example.com")
        is_eq(r.rc, 0, "an address needs no directory")
        r = t.run("revoke", "jdoe")
        ok(r.rc == 1 and t.spool_files("queue") == [], "revoke of a uid without directory: nothing queued")
        r = t.run("map", "a", "b", "c")
        ok(r.rc == 1 and len(r.err.splitlines()) == 3 and all("ldapi" in l for l in r.err.splitlines()),
           "each USER gets the directory error (connected once)")


def test_reconcile_cli():
    """The command-line side of reconcile (the classification itself is
    tested in test_reconcile.py)."""
    with CliEnv() as t:
        setup(t)
        r = t.run("reconcile")
        ok(r.rc == 0 and re.search(r"user-locked .*disabled", r.out), "reconcile lists the disabled member")
        ok(t.spool_files("queue") == [], "and queues nothing without --apply")
        r = t.run("reconcile", "--json", "--apply")
        try:
            doc = json.loads(r.out)
        except ValueError:
            doc = None
        ok(r.rc == 0 and isinstance(doc, dict) and "summary" in doc,
           "--json --apply: stdout stays one JSON document")
        ok("queued 1 job" in r.err, "and the count goes to stderr")
        is_eq(len(t.spool_files("queue")), 1, "one job queued")
        r = t.run("reconcile", "--apply")
        ok(r.rc == 0 and r.out.rstrip().endswith("queued 1 job"), "the table ends with the count")

        os.chmod(t.keyfile, 0o644)
        r = t.run("reconcile")
        ok(r.rc == 2 and "admin key" in r.err, "a world-readable key: exit 2")
        os.chmod(t.keyfile, 0o600)
        t.write_file("badmap", "only-one-field\n", 0o644)
        conf = t.write_conf("badmap.conf", map_file=t.path("badmap"))
        r = t.run("reconcile", conf=conf)
        ok(r.rc == 2 and "badmap:1:" in r.err, "a broken map file: exit 2 with FILE:LINE")
        os.chmod(t.spool, 0o777)
        t.fake.clear_requests()
        r = t.run("reconcile", "--apply")
        ok(r.rc == 1 and "spool" in r.err, "--apply with an unusable spool: exit 1")
        ok(t.fake.requests() == [], "refused before reading anything")
        os.chmod(t.spool, 0o700)
        ok(t.key_seen() == [], "the admin key appears nowhere")
        ok(t.sanitizer_reports() == [], "no sanitizer report")


sys.exit(run([
    ("map", test_map),
    ("injection", test_injection),
    ("ldap down", test_ldap_down),
    ("reconcile", test_reconcile_cli),
]))
