"""End to end: a disabled account logs in through pam_openai_revoke.so (the
real Linux-PAM library, a real slapd), the job it queues is carried out by
`openai-revoke run --once` against the fake organization like any other
job, and the person is gone from the organization; nobody else is."""
import os
import subprocess
import sys

from tap import ok, is_eq, diag, run
import slapdtest
from fakeorg import FakeOrg
from test_pam_common import PamEnv, directory, MODULE, DRIVER, CLI

state = {}


def cli(env, *args):
    r = subprocess.run([CLI, "-c", env.conf] + list(args), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120,
                       env={k: v for k, v in os.environ.items() if k != "OPENAI_ADMIN_KEY"})
    return r.returncode, r.stdout.decode("utf-8", "replace")


def test_login_then_worker():
    env, org = state["env"], state["org"]
    env.service_file(["enforce"])

    res, _ = env.acct("alice")
    is_eq((res, env.all_jobs()), ("PAM_IGNORE", 0), "active alice logs in: nothing queued")
    res, _ = env.acct("dave")
    is_eq(res, "PAM_ACCT_EXPIRED", "disabled dave is refused (enforce)")
    jobs = env.jobs("queue")
    is_eq([(j.get("source"), j.get("uid")) for _, j in jobs], [("pam", "dave")],
          "one pam job for dave is queued")
    event = jobs[0][0] if jobs else "none"
    is_eq(len(org.requests()), 0, "the PAM stack itself sent nothing to the API")

    rc, out = cli(env, "run", "--once")
    is_eq(rc, 0, "openai-revoke run --once succeeds")
    if rc != 0:
        diag(out)
    ids = sorted(u["id"] for u in org.state()["users"])
    is_eq(ids, ["user-alice"], "dave is gone from the organization, alice is still there")
    deletes = [r["path"] for r in org.requests() if r["method"] == "DELETE"]
    is_eq(deletes, ["/v1/organization/users/user-dave"], "exactly one DELETE, for dave")
    is_eq(env.all_jobs(), 0, "the job left the spool")
    audit = [l for l in env.log_lines() if ("event=%s " % event) in l]
    ok(any("action=queued" in l for l in audit), "the PAM notice carries the event id")
    ok(any("action=removed" in l for l in audit),
       "the worker's audit line carries the same event id")
    if not any("action=removed" in l for l in audit):
        diag("\n".join(env.log_lines()))


def main():
    for path in (MODULE, DRIVER, CLI):
        if not os.path.exists(path):
            print("Bail out! %s not built" % path)
            return 1
    with FakeOrg() as org, slapdtest.Slapd() as s:
        org.reset(users=[
            {"id": "user-alice", "email": "alice@example.com", "role": "reader", "name": "Alice"},
            {"id": "user-dave", "email": "dave@example.com", "role": "reader", "name": "Dave"},
        ])
        s.start()
        directory(s, [("alice", "alice@example.com", False), ("dave", "dave@example.com", True)])
        with PamEnv(s.ldap) as env:
            key = os.path.join(env.dir, "admin.key")
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, (org.key + "\n").encode())
            os.close(fd)
            env.write_conf(s.ldap, ["api_url %s" % org.url, "admin_key_file %s" % key,
                                    "protect_roles owner", "breaker 50 3600"])
            state.update(env=env, org=org, slapd=s)
            return run([("login_then_worker", test_login_then_worker)])


if __name__ == "__main__":
    sys.exit(main())
