"""openai_revoke.so in a real slapd: which directory writes revoke an
OpenAI membership (DESIGN.md section 5) and which must not."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tap import ok, is_eq, diag, run, skip_all  # noqa: E402
from slapdtest import SUFFIX, wait_for  # noqa: E402
from test_plugin_common import (PluginEnv, PLUGIN, SCHEMA, PEOPLE, DISABLED,  # noqa: E402
                                dn_of, org_user, queued_for)

if not os.path.exists(PLUGIN):
    skip_all("%s not built" % PLUGIN)

USERS = [org_user(u) for u in ("lock", "temp", "plain", "gone", "moved", "outside",
                               "notperson", "unlocked", "renamed", "failmod", "spelled", "byoid")]
USERS += [org_user("boss", role="owner"),
          {"id": "user-mapped-x", "email": "somebody-else@example.com", "role": "reader",
           "name": "x"},
          {"id": "user-attr-y", "email": "another@example.com", "role": "reader", "name": "y"}]

env = None


def barrier(uid):
    """Lock one more account and wait until it is removed: jobs are done in
    order, so anything enqueued before has been decided by then."""
    env.fake.users([org_user(uid)])
    dn = env.add_person(uid)
    env.lock(dn)
    env.wait_removed("user-" + uid)


def t_admin_lock():
    dn = env.add_person("lock")
    env.lock(dn)
    ok(queued_for(env, dn), "administrative lock: job queued before the write returned")
    env.wait_removed("user-lock")
    ok(True, "administrative lock: user-lock removed from the organization")
    lines = env.wait_log("action=removed", "user-lock")
    ok(any(dn in l for l in lines), "audit line action=removed names the DN")
    is_eq(len(env.deletes("user-lock")), 1, "exactly one DELETE for user-lock")
    wait_for(lambda: env.spool_count() == 0, what="empty spool")
    ok(True, "spool empty after the removal")


def t_dn_spelling():
    dn = env.add_person("spelled")
    env.lock("UID=spelled, OU=People,DC=Example,DC=COM")
    ok(queued_for(env, dn), "a DN spelled differently by the client is recognised; the job "
       "carries the DN as stored")
    env.wait_removed("user-spelled")
    ok(True, "and the user is removed")


def t_attribute_oid():
    dn = env.add_person("byoid")
    # pwdAccountLockedTime written by its OID, as some tools do
    env.slapd.modify(dn, [("replace", "1.3.6.1.4.1.42.2.27.8.1.17", "000001010000Z")])
    ok(queued_for(env, dn), "a lock written with the attribute's OID is recognised")
    env.wait_removed("user-byoid")
    ok(True, "and the user is removed")


def t_temporary_lockout():
    dn = env.add_person("temp")
    env.lock(dn, "20261203120000Z")
    is_eq(queued_for(env, dn), [], "temporary lockout value: nothing queued")
    barrier("barrier1")
    ok("user-temp" in env.fake.user_ids(), "temporary lockout: user-temp still a member")
    is_eq(env.deletes("user-temp"), [], "temporary lockout: no DELETE request")
    ok(not [r for r in env.fake.requests() if "temp" in r["path"] or "temp" in str(r["query"])],
       "temporary lockout: no API request about the user at all")


def t_unrelated_modify():
    dn = env.add_person("plain")
    env.fake.clear_requests()
    env.slapd.modify(dn, [("replace", "description", "changed"),
                          ("replace", "telephoneNumber", "+1 555 0100")])
    is_eq(queued_for(env, dn), [], "unrelated modify: nothing queued")
    is_eq(env.spool_count(), 0, "unrelated modify: spool empty")
    is_eq(env.fake.requests(), [], "unrelated modify: no API request at all")


def t_delete():
    dn = env.add_person("gone")
    env.slapd.delete(dn)
    ok(queued_for(env, dn), "delete: job queued")
    env.wait_removed("user-gone")
    ok(env.wait_log("action=removed", "user-gone"), "delete: user-gone removed, audit line")


def t_failed_delete():
    n = len(env.log_with("action=queued"))
    rc = env.slapd.delete(dn_of("nosuchuser"), check=False)
    is_eq(rc, 32, "delete of a missing entry fails with noSuchObject")
    # a delete refused by slapd (non-leaf) must not revoke either
    env.slapd.add_entry("ou=team,%s" % PEOPLE, {"objectClass": "organizationalUnit", "ou": "team"})
    env.slapd.add_person("member", mail="member@example.com", ou="team,ou=people")
    rc = env.slapd.delete("ou=team,%s" % PEOPLE, check=False)
    is_eq(rc, 66, "delete of a non-leaf entry fails with notAllowedOnNonLeaf")
    is_eq(len(env.log_with("action=queued")), n, "failed deletes queue nothing")


def t_modrdn_disabled_subtree():
    dn = env.add_person("moved")
    env.slapd.modrdn(dn, "uid=moved", newsuperior=DISABLED)
    newdn = dn_of("moved", "disabled")
    ok(queued_for(env, newdn), "modrdn into disabled_subtree: job queued with the new DN")
    env.wait_removed("user-moved")
    ok(True, "modrdn into disabled_subtree: user-moved removed")


def t_modrdn_elsewhere():
    dn = env.add_person("renamed")
    env.slapd.modrdn(dn, "uid=renamed2")
    env.slapd.add_entry("ou=staff,%s" % PEOPLE, {"objectClass": "organizationalUnit", "ou": "staff"})
    env.slapd.modrdn(dn_of("renamed2"), "uid=renamed2", newsuperior="ou=staff," + PEOPLE)
    is_eq([l for l in env.log_with("action=queued") if "renamed" in l], [],
          "rename in place and move within base: nothing queued")


def t_outside_base():
    dn = env.slapd.add_person("outside", mail="outside@example.com", ou="services")
    env.lock(dn)
    is_eq(queued_for(env, dn), [], "locked entry outside base: nothing queued")
    env.slapd.delete(dn)
    is_eq(queued_for(env, dn), [], "deleted entry outside base: nothing queued")


def t_not_user_filter():
    dn = dn_of("notperson")
    env.slapd.add_entry(dn, {"objectClass": ["account", "extensibleObject"], "uid": "notperson",
                             "mail": "notperson@example.com"})
    env.lock(dn)
    is_eq(queued_for(env, dn), [], "entry not matching user_filter, locked: nothing queued")
    env.slapd.delete(dn)
    is_eq(queued_for(env, dn), [], "entry not matching user_filter, deleted: nothing queued")


def t_unlock_and_failed_modify():
    dn = env.add_person("unlocked")
    env.slapd.modify(dn, [("replace", "pwdAccountLockedTime", "20261203120000Z")])
    env.slapd.modify(dn, [("delete", "pwdAccountLockedTime", [])])
    is_eq(queued_for(env, dn), [], "removing a lock queues nothing")
    rc = env.slapd.modify(dn_of("failmod-missing"),
                          [("replace", "pwdAccountLockedTime", "000001010000Z")], check=False)
    is_eq(rc, 32, "locking a missing entry fails")
    dn = env.add_person("failmod")
    # a modify that fails schema checking touches the trigger attribute too
    rc = env.slapd.modify(dn, [("replace", "pwdAccountLockedTime", "000001010000Z"),
                               ("add", "nosuchattribute", "x")], check=False)
    ok(rc != 0, "modify with an undefined attribute fails (%d)" % rc)
    is_eq(queued_for(env, dn), [], "failed modify touching the trigger: nothing queued")


def t_owner_kept():
    dn = env.add_person("boss")
    env.lock(dn)
    ok(queued_for(env, dn), "owner locked: job queued")
    jobs = wait_for(lambda: env.spool_jobs("failed"), what="job in failed/")
    ok(any(j.get("dn") == dn for j in jobs), "owner: job kept in failed/")
    ok("user-boss" in env.fake.user_ids(), "owner: still a member")
    is_eq(env.deletes("user-boss"), [], "owner: no DELETE request")


def t_not_member():
    dn = env.add_person("stranger")
    env.lock(dn)
    ok(queued_for(env, dn), "account without OpenAI membership: job queued")
    lines = env.wait_log("action=not_member")
    ok(any(dn in l or "stranger" in l for l in lines), "not a member: action=not_member line")
    wait_for(lambda: not any(j.get("dn") == dn for s in ("queue", "active", "deferred")
                             for j in env.spool_jobs(s)), what="job finished")
    ok(not any(j.get("dn") == dn for j in env.spool_jobs("failed")),
       "not a member is an answer, not a failure: nothing in failed/")


def t_map_file():
    dn = env.add_person("mapped")
    env.lock(dn)
    env.wait_removed("user-mapped-x")
    ok(True, "map_file: the mapped OpenAI user is removed")
    ok(not [r for r in env.fake.requests() if "mapped@example.com" in str(r["query"])],
       "map_file wins over the address lookup")


def t_user_id_attribute():
    dn = dn_of("withid")
    env.slapd.add_entry(dn, {"objectClass": ["inetOrgPerson", "openaiAccount"], "uid": "withid",
                             "cn": "withid", "sn": "withid", "mail": "withid@example.com",
                             "openaiUserId": "user-attr-y"})
    env.lock(dn)
    env.wait_removed("user-attr-y")
    ok(True, "user_id_attribute: the OpenAI user named on the entry is removed")
    jobs_line = queued_for(env, dn)
    ok(jobs_line, "user_id_attribute: job queued")


def main():
    global env
    with PluginEnv(users=USERS, schemas=[SCHEMA],
                   conf={"user_id_attribute": "openaiUserId"}) as e:
        env = e
        e.write_file("users.map", "# test map\nmapped user-mapped-x\n")
        e.extra["map_file"] = e.path("users.map")
        e.write_conf()
        e.slapd.restart()
        status = run([
            ("admin lock", t_admin_lock),
            ("DN spelling", t_dn_spelling),
            ("attribute OID", t_attribute_oid),
            ("temporary lockout", t_temporary_lockout),
            ("unrelated modify", t_unrelated_modify),
            ("delete", t_delete),
            ("failed delete", t_failed_delete),
            ("modrdn into disabled_subtree", t_modrdn_disabled_subtree),
            ("modrdn elsewhere", t_modrdn_elsewhere),
            ("outside base", t_outside_base),
            ("not user_filter", t_not_user_filter),
            ("unlock and failed modify", t_unlock_and_failed_modify),
            ("owner", t_owner_kept),
            ("not a member", t_not_member),
            ("map_file", t_map_file),
            ("user_id_attribute", t_user_id_attribute),
        ])
        if status:
            diag("slapd stderr:\n" + e.slapd.stderr()[-3000:])
            diag("log:\n" + "\n".join(e.log()[-40:]))
    return status


if __name__ == "__main__":
    sys.exit(main())
