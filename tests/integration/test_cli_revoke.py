"""openai-revoke revoke, queue and run: removal now and through the spool,
dry runs, the operator's queue commands, the foreground worker and its
signals, and the admin key kept out of every output, log, spool file,
command line and environment."""
import json
import os
import re
import signal
import sys
import time

from tap import ok, is_eq, diag, run, skip_all
from test_cli_common import CliEnv, PROG, SUFFIX, dn_of, org_user, wait_for, kill_quietly

if not os.access(PROG, os.X_OK):
    skip_all("%s not built" % PROG)


def members(t):
    return sorted(u["id"] for u in t.fake.state()["users"])


def populate(t, uids, owners=()):
    for u in uids:
        t.add_person(u, "%s@example.com" % u)
    t.fake.reset(users=[org_user(u, role="owner" if u in owners else "reader") for u in uids])


def queued_id(out):
    m = re.search(r"queued event=(\S+)", out)
    return m.group(1) if m else None


def test_revoke_now():
    with CliEnv() as t:
        populate(t, ["jdoe", "amy", "bob", "carl", "boss"], owners=["boss"])
        t.fake.invites([{"id": "invite-1", "email": "jdoe@example.com", "role": "reader",
                         "status": "pending"}])
        r = t.run("revoke", "--now", "jdoe")
        is_eq(r.rc, 0, "revoke --now by uid exits 0")
        ok(re.fullmatch(r"jdoe: removed event=\d+-\d+-\d+\n", r.out), "prints the outcome and event id")
        ok("user-jdoe" not in members(t), "the user is gone from the organization")
        ok(t.fake.state()["invites"] == [], "and the pending invite to the address too")
        ev = re.search(r"event=(\S+)", r.out).group(1)
        ok(re.search(r"event=%s action=removed .*openai_user=user-jdoe" % re.escape(ev), t.log()),
           "the audit line carries the event id")
        ok(t.spool_files("queue") == [] and t.spool_files("failed") == [],
           "--now leaves nothing in the spool")

        r = t.run("revoke", "--now", "amy@example.com", dn_of("bob"))
        ok(r.rc == 0 and "user-amy" not in members(t) and "user-bob" not in members(t),
           "revoke --now by address and by DN")

        r = t.run("revoke", "--now", "jdoe")
        ok(r.rc == 0 and "jdoe: not_member" in r.out, "revoking again: not_member, exit 0")

        t.fake.users([org_user("nodir")])
        r = t.run("revoke", "--now", "--id", "user-nodir")
        ok(r.rc == 0 and "user-nodir: removed" in r.out and "user-nodir" not in members(t),
           "revoke --now --id removes a member who has no directory account")
        r = t.run("revoke", "--id", "user-x", "../x")
        ok(r.rc == 1 and t.spool_files("queue") == [], "--id with a bad ID: nothing queued")

        r = t.run("revoke", "--now", "--dry-run", "carl")
        ok(r.rc == 0 and "carl: would_remove" in r.out, "--dry-run --now: would_remove, exit 0")
        ok("user-carl" in members(t), "--dry-run changed nothing")
        ok(not any(q["method"] == "DELETE" for q in t.fake.requests()
                   if q["path"].endswith("user-carl")), "no DELETE was sent for the dry run")

        r = t.run("revoke", "--now", "boss")
        ok(r.rc == 1 and "boss: protected" in r.out, "an owner is protected: exit 1")
        ok("user-boss" in members(t), "the owner stays")

        r = t.run("revoke", "--now", "carl", "ghost")
        ok(r.rc == 1 and "nothing done" in r.err and r.out == "",
           "one unknown USER: nothing done at all")
        ok("user-carl" in members(t), "not even for the good USER")

        t.fake.fault("status", "/v1/organization/users/user-carl", method="DELETE",
                     status=503, count=1)
        r = t.run("revoke", "--now", "carl")
        ok(r.rc == 1 and re.search(r"carl: deferred event=\S+, queued event=(\S+)", r.out),
           "a transient error with --now: deferred, and the job is queued for the worker")
        qid = queued_id(r.out.split(", ", 1)[-1])
        ok(t.spool_files("deferred") + t.spool_files("queue") == [qid],
           "the job is in the spool under the printed id")
        r = t.run("queue", "retry", qid)
        ok(r.rc == 0, "queue retry makes it due now")
        r = t.run("run", "--once")
        ok(r.rc == 0 and "user-carl" not in members(t), "run --once then removes the user")
        ok(t.key_seen() == [], "the admin key appears nowhere")
        ok(t.sanitizer_reports() == [], "no sanitizer report")


def test_revoke_queued():
    with CliEnv() as t:
        populate(t, ["jdoe", "amy"])
        r = t.run("revoke", "jdoe", "amy@example.com")
        is_eq(r.rc, 0, "revoke without --now exits 0")
        ids = re.findall(r"queued event=(\S+)", r.out)
        ok(len(ids) == 2, "prints one event id per USER")
        is_eq(sorted(t.spool_files("queue")), sorted(ids), "the jobs are in queue/ under those ids")
        ok(members(t) == ["user-amy", "user-jdoe"], "nobody removed yet")
        rec = t.spool_record("queue", ids[0])
        is_eq((rec.get("source"), rec.get("reason"), rec.get("dn"), rec.get("uid")),
              ("cli", "manual", dn_of("jdoe"), "jdoe"), "the record says source, reason, dn, uid")
        ok("jdoe@example.com" in (rec.get("emails") or []), "and the addresses")
        ok(re.search(r"event=%s action=queued operator=\S+ dn=" % ids[0], t.log()),
           "queuing is logged with the operator")

        r = t.run("queue", "list")
        ok(r.rc == 0 and all(i in r.out for i in ids), "queue list shows them")
        ok(re.search(r"^queue\s+%s\s+\d+s\s+0\s+now\s+%s" % (ids[0], re.escape(dn_of("jdoe"))),
                     r.out, re.M), "a row: state, id, age, attempts, next, user")
        r = t.run("queue", "list", "--json")
        doc = json.loads(r.out)
        ok(isinstance(doc, list) and sorted(d["id"] for d in doc) == sorted(ids)
           and all(d["state"] == "queue" for d in doc), "queue list --json")
        r = t.run("queue", "show", ids[1])
        doc = json.loads(r.out)
        ok(r.rc == 0 and doc["id"] == ids[1] and doc["state"] == "queue"
           and doc["emails"] == ["amy@example.com"], "queue show prints the record")
        r = t.run("queue", "show", "123-456-789")
        ok(r.rc == 1 and "no such job" in r.err, "queue show of a missing id: exit 1")

        r = t.run("run", "--once")
        is_eq(r.rc, 0, "run --once exits 0")
        is_eq(members(t), [], "run --once removed both")
        ok(t.spool_files("queue") == [] and t.spool_files("active") == [], "the spool is empty")
        r = t.run("run", "--once")
        is_eq(r.rc, 0, "run --once with nothing to do exits 0")

        r = t.run("queue", "list")
        is_eq(len(r.out.splitlines()), 1, "queue list of an empty spool: just the header")
        r = t.run("queue", "list", "--json")
        is_eq(json.loads(r.out), [], "and an empty JSON array")

        populate(t, ["dry"])
        r = t.run("revoke", "--dry-run", "dry")
        qid = queued_id(r.out)
        ok(r.rc == 0 and t.spool_record("queue", qid).get("dry_run") in (True, 1),
           "revoke --dry-run queues a dry-run job")
        r = t.run("run", "--once")
        ok(r.rc == 0 and members(t) == ["user-dry"], "the worker did not remove the user")
        ok(re.search(r"event=%s action=would_remove" % qid, t.log()), "it logged would_remove")
        ok(t.key_seen() == [], "the admin key appears nowhere")
        ok(t.sanitizer_reports() == [], "no sanitizer report")


def test_queue_ops():
    with CliEnv() as t:
        populate(t, ["a1", "a2", "a3", "boss"], owners=["boss"])
        conf = t.write_conf("breaker.conf", breaker="1 3600")
        r = t.run("revoke", "a1", "a2", "a3", conf=conf)
        ids = re.findall(r"queued event=(\S+)", r.out)
        r = t.run("run", "--once", conf=conf)
        is_eq(r.rc, 1, "run --once with jobs held by the breaker exits 1")
        ok(len(members(t)) == 3, "the breaker let one removal through")
        held = t.spool_files("held")
        is_eq(len(held), 2, "two jobs are held")
        r = t.run("queue", "list", conf=conf)
        ok(len(re.findall(r"^held ", r.out, re.M)) == 2, "queue list shows them held")
        r = t.run("queue", "retry", held[0], conf=conf)
        ok(r.rc == 1 and "held" in r.err, "retry refuses a held job (release it)")
        r = t.run("queue", "release", held[0], conf=conf)
        ok(r.rc == 0 and r.out == "released %s\n" % held[0], "release ID")
        ok(t.spool_files("queue") == [held[0]] and t.spool_files("held") == [held[1]],
           "the job moved to queue/")
        ok(re.search(r"event=%s action=release operator=\S+ .*state=held" % held[0], t.log()),
           "release is logged with the operator")
        r = t.run("queue", "release", conf=conf)
        ok(r.rc == 0 and r.out == "released %s\n" % held[1], "release without ID releases all held")
        r = t.run("queue", "release", conf=conf)
        ok(r.rc == 0 and "no held jobs" in r.out, "release with nothing held")
        r = t.run("run", "--once", conf=conf)
        ok(r.rc == 0 and members(t) == ["user-boss"], "released jobs pass the breaker")

        # failed (protected) -> retry; drop
        r = t.run("revoke", "boss")
        bid = queued_id(r.out)
        r = t.run("run", "--once")
        ok(t.spool_files("failed") == [bid], "a protected owner's job goes to failed/")
        r = t.run("queue", "list")
        ok(re.search(r"^failed\s+%s .*protected" % bid, r.out, re.M), "listed with its last error")
        r = t.run("queue", "release", bid)
        ok(r.rc == 1 and "failed" in r.err, "release refuses a failed job")
        r = t.run("queue", "retry", bid)
        ok(r.rc == 0 and t.spool_files("queue") == [bid], "retry moves a failed job to queue/")
        r = t.run("queue", "drop", bid)
        ok(r.rc == 0 and r.out == "dropped %s\n" % bid, "drop ID")
        ok(t.spool_files("queue") == [] and t.spool_files("failed") == [], "the job file is gone")
        ok(re.search(r"event=%s action=dropped operator=\S+ dn=\S+.* state=queue" % bid, t.log()),
           "drop is logged (notice) with the operator and the job")
        r = t.run("queue", "drop", bid)
        ok(r.rc == 1 and "no such job" in r.err, "dropping it again: exit 1")
        r = t.run("queue", "retry", "1-2-3")
        ok(r.rc == 1, "retry of a missing id: exit 1")

        # deferred -> retry
        t.fake.fault("status", "/v1/organization/users*", status=503, count=-1)
        populate(t, ["d1"])
        r = t.run("revoke", "d1")
        did = queued_id(r.out)
        r = t.run("run", "--once")
        ok(r.rc == 1 and t.spool_files("deferred") == [did], "a 503 defers the job; run exits 1")
        r = t.run("queue", "list")
        ok(re.search(r"^deferred\s+%s\s+\S+\s+1\s+(in \d+[smh]|now)\s" % did, r.out, re.M),
           "listed deferred with 1 attempt and a next attempt")
        t.fake.clear_faults()
        r = t.run("queue", "retry", did)
        ok(r.rc == 0 and t.spool_files("queue") == [did], "retry makes it due now")
        r = t.run("run", "--once")
        ok(r.rc == 0 and members(t) == [], "and the worker removes the user")
        ok(t.key_seen() == [], "the admin key appears nowhere")
        ok(t.sanitizer_reports() == [], "no sanitizer report")


def test_queue_unreadable():
    with CliEnv(ldap=False) as t:
        r = t.run("queue", "list")
        is_eq(r.rc, 0, "queue list creates and lists an empty spool")
        bad = "1700000000000000000-1-1"
        with open(os.path.join(t.spool, "failed", bad), "w") as f:
            f.write('{"version": 1, "id": \n\x1b[2J garbage')
        os.chmod(os.path.join(t.spool, "failed", bad), 0o600)
        r = t.run("queue", "list")
        ok(r.rc == 0 and re.search(r"^failed\s+%s " % bad, r.out, re.M),
           "an unreadable record is listed, not hidden")
        ok("\x1b" not in r.out, "its bytes do not reach the terminal")
        r = t.run("queue", "list", "--json")
        ok(r.rc == 0 and any(d["id"] == bad for d in json.loads(r.out)), "and in --json")
        r = t.run("queue", "show", bad)
        ok(r.rc == 0 and json.loads(r.out)["id"] == bad, "queue show shows what is known")
        r = t.run("queue", "drop", bad)
        ok(r.rc == 0 and t.spool_files("failed") == [], "and it can be dropped")
        ok(re.search(r"event=%s action=dropped" % bad, t.log()), "logged")


def test_run_signals():
    with CliEnv() as t:
        populate(t, ["s1", "s2"])
        for sig in (signal.SIGTERM, signal.SIGINT):
            p = t.spawn("run")
            try:
                r = t.run("revoke", "s1" if sig == signal.SIGTERM else "s2")
                want = "user-s1" if sig == signal.SIGTERM else "user-s2"
                wait_for(lambda: want not in members(t), 15, "the running worker to remove %s" % want)
                ok(True, "run (no --once) picks up a job queued while it runs")
                ok(p.poll() is None, "run keeps running when idle")
                r2 = t.run("run", "--once")
                ok(r2.rc == 1 and "locked" in r2.err, "a second worker (run --once) sees the lock: exit 1")
                p.send_signal(sig)
                res = t.collect(p)
                is_eq(res.rc, 0, "%s stops run with exit 0" % signal.Signals(sig).name)
                ok(re.search(r"action=run_stop reason=signal", t.log()),
                   "the stop is logged with its reason")
                ok(t.spool_files("active") == [], "no job left in active/")
            finally:
                kill_quietly(p)

        # A signal while a job is in hand: the API is slow, the job is
        # finished or returned, never left in active/.
        populate(t, ["slow"])
        t.fake.fault("delay", "/v1/organization/users*", seconds=2, count=-1)
        p = t.spawn("run")
        try:
            t.run("revoke", "slow")
            wait_for(lambda: t.spool_files("active") or "user-slow" not in members(t), 15,
                     "the worker to claim the job")
            p.send_signal(signal.SIGTERM)
            res = t.collect(p)
            is_eq(res.rc, 0, "SIGTERM with a job in hand: exit 0")
            ok(t.spool_files("active") == [], "the job is not left in active/")
            gone = "user-slow" not in members(t)
            ok(gone or len(t.spool_files("queue") + t.spool_files("deferred")) == 1,
               "the job is either done or back in the spool")
        finally:
            kill_quietly(p)
            t.fake.clear_faults()

        # SIGKILL with a job in hand: nothing can be cleaned up, and still
        # the next run replays the job (active/ goes back to queue/).
        populate(t, ["crash"])
        t.fake.fault("delay", "/v1/organization/users/user-crash", method="DELETE", seconds=3,
                     count=1)
        t.fake.clear_requests()
        p = t.spawn("run")
        try:
            t.run("revoke", "crash")
            wait_for(lambda: t.spool_files("active"), 15, "the worker to claim the job")
            wait_for(lambda: any(q["method"] == "DELETE" for q in t.fake.requests()), 15,
                     "the DELETE to be on its way")
            p.send_signal(signal.SIGKILL)
            p.wait()
            ok(len(t.spool_files("active")) == 1, "killed mid-request: the job is still in active/")
        finally:
            kill_quietly(p)
        r = t.run("run", "--once")
        ok(r.rc == 0 and "user-crash" not in members(t), "the next run --once finishes it")
        ok(t.spool_files("active") == [] and t.spool_files("queue") == [], "and the spool is empty")
        # The killed DELETE may still complete in the fake after its delay:
        # the replay then finds the user gone (already_gone or not_member).
        ok(re.search(r"action=(removed|already_gone|not_member) .*(openai_user=user-crash|"
                     r"uid=crash)", t.log()), "with its audit line")
        ok(t.key_seen() == [], "the admin key appears nowhere")
        ok(t.sanitizer_reports() == [], "no sanitizer report")


def test_spool_owner():
    """Run as root against a spool owned by the directory server's user, the
    command writes there as that user: the worker inside slapd must be able
    to read and move every file it finds."""
    if os.geteuid() != 0:
        ok(True, "# SKIP needs root")
        return
    with CliEnv() as t:
        populate(t, ["o1", "o2", "o3", "boss"], owners=["boss"])
        os.mkdir(t.spool, 0o700)
        os.chown(t.spool, 65534, 65534)
        os.chmod(t.dir, 0o755)

        def foreign():
            bad = []
            for root, dirs, files in os.walk(t.spool):
                for n in dirs + files:
                    st = os.lstat(os.path.join(root, n))
                    if (st.st_uid, st.st_gid) != (65534, 65534):
                        bad.append(os.path.join(root, n))
            return bad
        r = t.run("check")
        ok(r.rc == 0 and foreign() == [], "check creates the spool's subdirectories as its owner")
        r = t.run("revoke", "o1", "boss")
        ok(r.rc == 0 and len(t.spool_files("queue")) == 2 and foreign() == [],
           "revoke writes its jobs as the spool's owner")
        r = t.run("run", "--once")
        ok(r.rc == 1 and "user-o1" not in members(t) and foreign() == [],
           "run --once works as the owner too (breaker state, failed/ included)")
        fid = t.spool_files("failed")
        r = t.run("queue", "retry", fid[0])
        ok(r.rc == 0 and foreign() == [], "queue retry rewrites the record as the owner")
        r = t.run("revoke", "--now", "o2")
        ok(r.rc == 0 and "user-o2" not in members(t) and foreign() == [], "revoke --now as well")
        r = t.run("reconcile", "--apply", "--include-absent")
        ok(r.rc == 0 and foreign() == [], "reconcile --apply as well: %s" % r.err.strip()[:200])
        ok(t.key_seen() == [], "the admin key appears nowhere")
        ok(t.sanitizer_reports() == [], "no sanitizer report")


def test_secrets():
    with CliEnv() as t:
        populate(t, ["k1", "k2"])
        conf = t.write_conf("envkey.conf", admin_key_file=t.path("absent.key"))
        env = {"OPENAI_ADMIN_KEY": t.key}
        p = t.spawn("-v", "run", conf=conf, env=env)
        try:
            r = t.run("-v", "revoke", "k1", conf=conf, env=env)
            wait_for(lambda: "user-k1" not in members(t), 15, "the worker (key from the environment)")
            with open("/proc/%d/cmdline" % p.pid, "rb") as f:
                cmdline = f.read()
            ok(t.key.encode() not in cmdline, "the key is not in /proc/PID/cmdline")
            with open("/proc/%d/environ" % p.pid, "rb") as f:
                environ = f.read()
            ok(t.key.encode() not in environ, "nor in /proc/PID/environ (wiped at start-up)")
            p.send_signal(signal.SIGTERM)
            res = t.collect(p)
            is_eq(res.rc, 0, "run -v stopped")
            ok("debug" in res.err, "-v wrote debug lines")
        finally:
            kill_quietly(p)
        r = t.run("-v", "revoke", "--now", "k2", conf=conf, env=env)
        ok(r.rc == 0, "revoke --now with the key from the environment")
        r = t.run("-v", "check", conf=conf, env=env)
        r = t.run("-v", "map", "k1", "k2@example.com", conf=conf, env=env)
        where = t.key_seen()
        ok(where == [], "the admin key appears in no output, log line or spool file: %s" % where)
        reqs = t.fake.requests()
        ok(reqs and all(q["headers"].get("authorization") == "Bearer " + t.key for q in reqs),
           "(while every request carried it)")


sys.exit(run([
    ("revoke --now", test_revoke_now),
    ("revoke queued", test_revoke_queued),
    ("queue ops", test_queue_ops),
    ("queue unreadable", test_queue_unreadable),
    ("run signals", test_run_signals),
    ("spool owner", test_spool_owner),
    ("secrets", test_secrets),
]))
