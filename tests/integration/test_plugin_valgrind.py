"""slapd with openai_revoke.so under Valgrind through 1,000 modifies, 100
disables and some deletes: no invalid access anywhere, no definite leak in
the plugin.  Takes a few minutes (slapd runs 20-50 times slower)."""
import os
import re
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tap import ok, is_eq, diag, run, skip_all  # noqa: E402
from slapdtest import wait_for, entry_ldif  # noqa: E402
from test_plugin_common import PluginEnv, PLUGIN, PEOPLE, SRCDIR, dn_of  # noqa: E402

if not os.path.exists(PLUGIN):
    skip_all("%s not built" % PLUGIN)
if not shutil.which("valgrind"):
    skip_all("valgrind not installed")
if os.environ.get("OPENAI_REVOKE_TEST_SANITIZERS") == "yes":
    skip_all("built with sanitizers: Valgrind cannot run ASan objects")

MODIFIES = 1000
DISABLES = 100
DELETES = 20
VALGRIND = ["--leak-check=full", "--show-leak-kinds=definite",
            "--errors-for-leak-kinds=definite", "--keep-debuginfo=yes",
            "--num-callers=40", "--error-exitcode=99"]
# A frame is ours when it names our object or one of our source files.
_SOURCES = sorted({f for d in ("module", "ldap-hooks")
                   for f in os.listdir(os.path.join(SRCDIR, d)) if f.endswith(".c")})
OURS = re.compile(r"openai_revoke\.so\)|\((%s):\d+\)" % "|".join(re.escape(f) for f in _SOURCES))


def records(text):
    """Valgrind log -> list of error records (blocks of lines)."""
    out, cur = [], []
    for line in text.splitlines():
        body = re.sub(r"^==\d+== ?", "", line)
        if body == "":
            if cur:
                out.append(cur)
            cur = []
        else:
            cur.append(body)
    if cur:
        out.append(cur)
    return out


def t_valgrind():
    started = time.monotonic()
    n_users = DISABLES + DELETES
    with PluginEnv(conf={"breaker": "10000 3600", "http_timeout": "30"},
                   slapd_kw={"valgrind": VALGRIND}, start_slapd=False) as env:
        env.fake.generate(n_users)
        env.slapd.start()
        env.slapd.populate_base()
        ldif = ""
        for i in range(1, n_users + 1):
            ldif += entry_ldif(dn_of("v%05d" % i), {
                "objectClass": "inetOrgPerson", "uid": "v%05d" % i, "cn": "v", "sn": "v",
                "mail": "u%05d@example.com" % i})
        env.slapd.add(ldif)
        # 1,000 modifies on one connection: most touch nothing the rules
        # care about, one in five sets a temporary lockout (the search and
        # filter path without a job)
        ldif = ""
        for i in range(MODIFIES):
            dn = dn_of("v%05d" % (i % n_users + 1))
            if i % 5 == 0:
                ldif += ("dn: %s\nchangetype: modify\nreplace: pwdAccountLockedTime\n"
                         "pwdAccountLockedTime: 2026120312%02d%02dZ\n-\n\n" % (dn, i % 60, i % 60))
            else:
                ldif += ("dn: %s\nchangetype: modify\nreplace: description\n"
                         "description: change %d\n-\n\n" % (dn, i))
        env.slapd.modify_many(ldif)
        ok(True, "%d modifies done" % MODIFIES)
        is_eq(env.log_with("action=queued"), [], "no modify so far queued a job")
        ldif = ""
        for i in range(1, DISABLES + 1):
            ldif += ("dn: %s\nchangetype: modify\nreplace: pwdAccountLockedTime\n"
                     "pwdAccountLockedTime: 000001010000Z\n-\n\n" % dn_of("v%05d" % i))
        env.slapd.modify_many(ldif)
        for i in range(DISABLES + 1, n_users + 1):
            env.slapd.delete(dn_of("v%05d" % i))
        env.slapd.delete(dn_of("nosuchentry"), check=False)
        is_eq(len(env.log_with("action=queued")), DISABLES + DELETES,
              "%d disables and %d deletes queued" % (DISABLES, DELETES))
        wait_for(lambda: len(env.fake.user_ids()) == 0, timeout=600, step=1,
                 what="every user removed")
        ok(True, "all %d users removed from the organization" % n_users)
        wait_for(lambda: env.spool_count() == 0, timeout=60, what="empty spool")
        rc = env.slapd.stop(timeout=300)
        diag("slapd under valgrind exited with %s after %.0fs" % (rc, time.monotonic() - started))
        logs = [os.path.join(env.slapd.dir, f) for f in os.listdir(env.slapd.dir)
                if f.startswith("valgrind.")]
        ok(logs, "valgrind wrote its log")
        text = "".join(open(p, errors="replace").read() for p in logs)
        recs = records(text)
        invalid = [r for r in recs if re.match(r"(Invalid (read|write|free)|Mismatched free|"
                                               r"Source and destination overlap)", r[0])]
        uninit_ours = [r for r in recs if r[0].startswith(("Conditional jump", "Use of uninit"))
                       and any(OURS.search(x) for x in r)]
        leaks = [r for r in recs if "definitely lost" in r[0]]
        our_leaks = [r for r in leaks if any(OURS.search(x) for x in r)]
        is_eq(len(invalid), 0, "no invalid memory access") or diag("\n".join(sum(invalid[:3], [])))
        is_eq(len(uninit_ours), 0, "no use of uninitialised memory in the plugin") or \
            diag("\n".join(sum(uninit_ours[:3], [])))
        is_eq(len(our_leaks), 0, "no definite leak from the plugin") or \
            diag("\n".join(sum(our_leaks[:3], [])))
        summary = [l for l in text.splitlines() if "ERROR SUMMARY" in l or "definitely lost:" in l]
        diag("\n".join(summary))
        if leaks and not our_leaks:
            diag("%d definite leak record(s) from slapd itself, none through the plugin"
                 % len(leaks))


if __name__ == "__main__":
    sys.exit(run([("valgrind", t_valgrind)]))
