"""pam_openai_revoke.so through the real Linux-PAM library (pam_start_confdir
on a service file in a temporary directory) against a throw-away slapd:
disabled accounts queue a job (and are refused with enforce), everything
else is PAM_IGNORE, including a directory that is down or hangs."""
import os
import re
import signal
import stat
import subprocess
import sys

from tap import ok, is_eq, diag, run, skip_all
import slapdtest
from test_pam_common import (PamEnv, directory, MODULE, DRIVER, PEOPLE, SUFFIX)

PEOPLE_LIST = [("alice", "alice@example.com", False),
               ("dave", "dave@example.com", True),
               ("erin", "erin@example.com", True)]

state = {}


def queued_line(env, event):
    return [l for l in env.log_lines() if "action=queued" in l and ("event=%s " % event) in l]


# ---- the object itself ------------------------------------------------------

def test_exports():
    r = subprocess.run(["nm", "-D", "--defined-only", MODULE], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    is_eq(r.returncode, 0, "nm -D reads the module")
    names = [l.split()[-1] for l in r.stdout.decode().splitlines() if l.strip()]
    names = [n for n in names if not n.startswith("_") or n.startswith("pam_sm_")]
    ok(names and all(n.startswith("pam_sm_") for n in names),
       "the dynamic symbol table defines nothing but pam_sm_* (%s)" % " ".join(names))
    ok("pam_sm_acct_mgmt" in names, "pam_sm_acct_mgmt is exported")
    ok("pam_sm_authenticate" not in names,
       "no pam_sm_authenticate: the module is for account stacks only")
    all_syms = [l.split()[-1] for l in r.stdout.decode().splitlines() if l.strip()]
    extra = [n for n in all_syms if not n.startswith("pam_sm_")]
    is_eq(extra, [], "no other defined dynamic symbol at all (engine stays private)")

    r = subprocess.run(["readelf", "-d", MODULE], stdout=subprocess.PIPE)
    ok(b"libpam.so" in r.stdout, "the module records its libpam dependency (NEEDED)")
    ok(re.search(rb"FLAGS_1.*NODELETE", r.stdout),
       "the module stays loaded across pam_end (-z nodelete): libldap's global state is not lost")

    r = subprocess.run([DRIVER, "dlopen", MODULE], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    is_eq((r.returncode, r.stdout.decode().strip()), (0, "loaded"),
          "dlopen(RTLD_NOW) resolves every symbol")
    if r.returncode:
        diag(r.stderr.decode())


# ---- the account stack ------------------------------------------------------

def test_disabled_enforce():
    s, env = state["slapd"], state["env"]
    env.clear()
    env.service_file(["enforce"])
    res, _ = env.acct("dave")
    is_eq(res, "PAM_ACCT_EXPIRED", "disabled account with enforce: PAM_ACCT_EXPIRED")
    jobs = env.jobs("queue")
    is_eq(len(jobs), 1, "one job queued in spool_dir/queue")
    if not jobs:
        return
    name, job = jobs[0]
    is_eq(job.get("source"), "pam", "job source is pam")
    is_eq(job.get("reason"), "disabled", "job reason is disabled")
    is_eq((job.get("dn") or "").lower(), state["dns"]["dave"].lower(), "job carries the DN")
    is_eq(job.get("uid"), "dave", "job carries the uid")
    is_eq(job.get("emails"), ["dave@example.com"], "job carries the address")
    ok(re.match(r"^[0-9a-f-]{36}$", job.get("entry_uuid") or ""), "job carries the entryUUID")
    ok(job.get("id") in (None, name), "the record's id is its file name")
    lines = queued_line(env, name)
    is_eq(len(lines), 1, "one notice line names the job's event id")
    if lines:
        ok("source=pam" in lines[0] and "service=pamtest" in lines[0]
           and "user=dave" in lines[0] and "rhost=192.0.2.7" in lines[0]
           and "enforce=yes" in lines[0], "the notice names source, service, user and rhost")
    is_eq(env.jobs("tmp") if os.path.isdir(os.path.join(env.spool, "tmp")) else [], [],
          "nothing left behind in spool_dir/tmp")


def test_disabled_no_enforce():
    env = state["env"]
    env.clear()
    env.service_file([])
    res, _ = env.acct("erin")
    is_eq(res, "PAM_IGNORE", "disabled account without enforce: PAM_IGNORE")
    jobs = env.jobs("queue")
    is_eq([(j.get("source"), j.get("uid")) for _, j in jobs], [("pam", "erin")],
          "... and the job is queued all the same")
    if jobs:
        ok(queued_line(env, jobs[0][0]) and "enforce=no" in queued_line(env, jobs[0][0])[0],
           "the notice says enforce=no")
    # Every login of a disabled account is a trigger; replays are harmless.
    res, _ = env.acct("erin")
    is_eq((res, len(env.jobs("queue"))), ("PAM_IGNORE", 2), "a second login queues a second job")


def test_active_and_unknown():
    env = state["env"]
    env.clear()
    env.service_file(["enforce", "debug"])
    res, _ = env.acct("alice")
    is_eq(res, "PAM_IGNORE", "active account: PAM_IGNORE even with enforce")
    res2, _ = env.acct("nobody")
    is_eq(res2, "PAM_IGNORE", "unknown account: PAM_IGNORE even with enforce")
    is_eq(env.all_jobs(), 0, "no job for an active or unknown account")
    log = env.log_lines()
    ok(any("account=active" in l and "user=alice" in l for l in log),
       "debug (log_level debug through the parser) logs the active account")
    ok(any("account=unknown" in l and "user=nobody" in l for l in log),
       "debug logs the unknown account")
    ok(not any("problem=" in l for l in log), "no failure line for them")

    env.clear()
    env.service_file(["enforce"])
    env.acct("alice")
    ok(not any("account=active" in l for l in env.log_lines()),
       "without debug an active account logs nothing")


def test_injection():
    env = state["env"]
    # Narrow the accounts to dave alone, so that any name whose filter
    # characters reached the server unescaped would match exactly him.
    only_dave = "user_filter=(&(objectClass=person)(mail=dave@example.com))"
    env.clear()
    env.service_file(["enforce", only_dave])
    res, _ = env.acct("dave")
    is_eq((res, env.all_jobs()), ("PAM_ACCT_EXPIRED", 1),
          "control: dave himself matches the narrowed user_filter")
    for name in ["*", "d*", "d*)(uid=*", "dave)(uid=*", "*)(|(uid=*", "\\", ")(",
                 "da\\76e", "dave\\", "dave*", "uid=dave,%s" % PEOPLE]:
        env.clear()
        res, _ = env.acct(name)
        is_eq((res, env.all_jobs()), ("PAM_IGNORE", 0),
              "user name %r matches nothing and queues nothing" % name)


def test_server_side_matching_rule():
    # Active Directory's disabled bit, tested with the bitwise matching rule
    # slapd also implements (integerBitAndMatch): only the server can.
    env, s = state["env"], state["slapd"]
    for uid, gid in (("frank", 514), ("gina", 512)):
        s.add_person(uid, mail=uid + "@example.com", classes=("inetOrgPerson", "posixAccount"),
                     extra={"uidNumber": "1%03d" % (gid - 500), "gidNumber": str(gid),
                            "homeDirectory": "/home/" + uid})
    env.clear()
    env.service_file(["enforce", "disabled_filter=(gidNumber:1.2.840.113556.1.4.803:=2)"])
    res, _ = env.acct("frank")
    is_eq((res, [j.get("uid") for _, j in env.jobs()]), ("PAM_ACCT_EXPIRED", ["frank"]),
          "bitwise matching rule in disabled_filter: bit set -> disabled, job queued")
    env.clear()
    res, _ = env.acct("gina")
    is_eq((res, env.all_jobs()), ("PAM_IGNORE", 0), "bit clear -> active, nothing queued")
    env.clear()
    res, _ = env.acct("dave")
    is_eq((res, env.all_jobs()), ("PAM_IGNORE", 0),
          "the overriding disabled_filter replaced the file's (dave's lock no longer counts)")


def test_bracketed_argument():
    # pam.conf(5): an argument with spaces is written in brackets.
    env, s = state["env"], state["slapd"]
    s.modify(state["dns"]["dave"], [("add", "description", ["left the company"])])
    env.clear()
    env.service_file(["enforce", "user_filter=(&(objectClass=person)(description=left the company))"])
    res, _ = env.acct("dave")
    is_eq((res, env.all_jobs()), ("PAM_ACCT_EXPIRED", 1),
          "an argument with spaces in brackets reaches the parser whole")
    env.clear()
    env.service_file(["enforce", "user_filter=(&(objectClass=person)(description=left the building))"])
    res, _ = env.acct("dave")
    is_eq((res, env.all_jobs()), ("PAM_IGNORE", 0), "... and is really used as the user_filter")


def test_login_attribute_override():
    env = state["env"]
    env.clear()
    env.service_file(["enforce", "login_attribute=mail"])
    res, _ = env.acct("dave@example.com")
    jobs = env.jobs("queue")
    is_eq((res, [j.get("uid") for _, j in jobs]), ("PAM_ACCT_EXPIRED", ["dave"]),
          "login_attribute=mail as a module argument: the address finds the account")
    env.clear()
    res, _ = env.acct("dave")
    is_eq((res, env.all_jobs()), ("PAM_IGNORE", 0), "... and the uid no longer does")


def test_bind():
    env, s = state["env"], state["slapd"]
    good = os.path.join(env.dir, "bindpw")
    bad = os.path.join(env.dir, "bindpw.wrong")
    for path, pw in ((good, slapdtest.ROOTPW), (bad, "not-the-password")):
        with open(path, "w") as f:
            f.write(pw + "\n")
        os.chmod(path, 0o600)
    env.clear()
    env.service_file(["enforce", "ldap_binddn=" + slapdtest.ROOTDN, "ldap_bindpw_file=" + good])
    res, _ = env.acct("dave")
    is_eq((res, env.all_jobs()), ("PAM_ACCT_EXPIRED", 1), "simple bind with ldap_bindpw_file works")
    env.clear()
    env.service_file(["enforce", "ldap_binddn=" + slapdtest.ROOTDN, "ldap_bindpw_file=" + bad])
    res, _ = env.acct("dave")
    is_eq((res, env.all_jobs()), ("PAM_IGNORE", 0), "a refused bind: PAM_IGNORE, no job")
    lines = [l for l in env.log_lines() if "problem=directory" in l]
    is_eq(len(lines), 1, "one log line for the refused bind")
    ok(lines and "not-the-password" not in lines[0], "the password is not in it")
    # SASL EXTERNAL over ldapi: the identity is the process's own uid.
    env.clear()
    env.service_file(["enforce", "ldap_uri=" + s.ldapi, "ldap_sasl_mech=EXTERNAL"])
    res, _ = env.acct("dave")
    is_eq((res, env.all_jobs()), ("PAM_ACCT_EXPIRED", 1), "SASL EXTERNAL over ldapi works")
    if res != "PAM_ACCT_EXPIRED":
        diag("\n".join(env.log_lines()))


def test_config_errors():
    env = state["env"]
    cases = [
        (["config=" + os.path.join(env.dir, "missing.conf"), "enforce"], "a missing config file", False),
        (["enforce", "frobnicate"], "an unknown option", True),
        (["enforce", "ldap_timeout=soon"], "a bad keyword value", True),
        (["enforce", "no_such_keyword=1"], "an unknown keyword", True),
        (["enforce", "user_filter=(objectClass=person"], "an unbalanced filter", True),
    ]
    for args, what, logged in cases:
        env.clear()
        env.service_file(args)
        res, _ = env.acct("dave")
        is_eq((res, env.all_jobs()), ("PAM_IGNORE", 0),
              "%s: PAM_IGNORE for a disabled account, nothing queued" % what)
        if logged:
            lines = [l for l in env.log_lines() if "problem=configuration" in l]
            is_eq(len(lines), 1, "%s: one log line" % what)
            if lines and "module argument" not in lines[0]:
                diag(lines[0])


def test_bad_user_names():
    env = state["env"]
    env.clear()
    env.service_file(["enforce"])
    res, _ = env.acct("")
    is_eq((res, env.all_jobs()), ("PAM_IGNORE", 0), "empty user name: PAM_IGNORE")
    res, _ = env.acct("d" * 300)
    is_eq((res, env.all_jobs()), ("PAM_IGNORE", 0), "a 300-byte user name: PAM_IGNORE")
    ok(len([l for l in env.log_lines() if "problem=user" in l]) == 2,
       "one log line each")
    env.clear()
    env.service_file(["enforce", "debug"])
    res, _ = env.acct("nobody\nevent=forged action=removed")
    lines = env.log_lines()
    ok(any("account=unknown" in l for l in lines), "a name with a newline is logged (debug) ...")
    ok(not any(re.match(r"^\S*\s*event=forged", l) or "forged" in l and "user=" not in l
               for l in lines), "... on one line: it cannot forge a log line")


def test_spool_failure():
    env = state["env"]
    env.clear()
    blocker = os.path.join(env.dir, "not-a-dir")
    with open(blocker, "w") as f:
        f.write("x")
    env.service_file(["enforce", "spool_dir=" + blocker])
    res, _ = env.acct("dave")
    is_eq(res, "PAM_ACCT_EXPIRED", "spool unusable: enforce still refuses the disabled account")
    lines = [l for l in env.log_lines() if "action=error" in l]
    is_eq(len(lines), 1, "one error line for the job that could not be queued")
    env.clear()
    env.service_file(["spool_dir=" + blocker])
    res, _ = env.acct("dave")
    is_eq(res, "PAM_IGNORE", "spool unusable without enforce: PAM_IGNORE")


def test_directory_hangs():
    env, s = state["env"], state["slapd"]
    env.clear()
    env.service_file(["enforce", "ldap_timeout=1"])
    s.proc.send_signal(signal.SIGSTOP)
    try:
        # The guard is the driver's deadline: a hang fails, it never blocks the suite.
        res, elapsed = env.acct("dave")
    finally:
        s.proc.send_signal(signal.SIGCONT)
    is_eq((res, env.all_jobs()), ("PAM_IGNORE", 0),
          "a directory that accepts but never answers: PAM_IGNORE (returned after %.1fs)" % elapsed)
    is_eq(len([l for l in env.log_lines() if "problem=directory" in l]), 1,
          "one log line for it")


def test_directory_down():
    env, s = state["env"], state["slapd"]
    env.clear()
    env.service_file(["enforce"])
    s.stop()
    res, _ = env.acct("dave")
    is_eq((res, env.all_jobs()), ("PAM_IGNORE", 0), "directory stopped: PAM_IGNORE, no job")
    lines = [l for l in env.log_lines() if "problem=directory" in l]
    is_eq(len(lines), 1, "one log line for the unreachable directory")
    if lines:
        ok("source=pam" in lines[0] and "user=dave" in lines[0], "it names the login")


def test_guest():
    env = state["env"]
    ok(env.calls > 30, "the driver ran the module %d times" % env.calls)
    is_eq(env.guest_violations, [],
          "no call changed signal dispositions, umask or locale, or called openlog/closelog")


def main():
    for path in (MODULE, DRIVER):
        if not os.path.exists(path):
            print("Bail out! %s not built" % path)
            return 1
    tests = [("exports", test_exports)]
    with slapdtest.Slapd() as s:
        s.start()
        state["slapd"] = s
        state["dns"] = directory(s, PEOPLE_LIST)
        with PamEnv(s.ldap) as env:
            state["env"] = env
            tests += [("disabled_enforce", test_disabled_enforce),
                      ("disabled_no_enforce", test_disabled_no_enforce),
                      ("active_and_unknown", test_active_and_unknown),
                      ("injection", test_injection),
                      ("matching_rule", test_server_side_matching_rule),
                      ("bracketed_argument", test_bracketed_argument),
                      ("login_attribute", test_login_attribute_override),
                      ("bind", test_bind),
                      ("config_errors", test_config_errors),
                      ("bad_user_names", test_bad_user_names),
                      ("spool_failure", test_spool_failure),
                      ("directory_hangs", test_directory_hangs),
                      ("directory_down", test_directory_down),
                      ("guest", test_guest)]
            return run(tests)


if __name__ == "__main__":
    sys.exit(main())
