"""openai_revoke.so's life in slapd: refusing a bad configuration, staying
out of the way of slapcat/slapadd/slapindex/slaptest, surviving a crash with
jobs in the spool, worker none, and what the object exports."""
import os
import re
import shutil
import socket
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tap import ok, is_eq, diag, run, skip_all  # noqa: E402
from slapdtest import Slapd, SUFFIX, wait_for, entry_ldif  # noqa: E402
from test_plugin_common import (PluginEnv, PLUGIN, PEOPLE, dn_of, org_user,  # noqa: E402
                                plugin_line, queued_for, SANITIZERS)

if not os.path.exists(PLUGIN):
    skip_all("%s not built" % PLUGIN)
if SANITIZERS:
    # these tests watch slapd and its tools exit; under the ASan runtime
    # they hang in exit handlers (see test_plugin_common.py)
    skip_all("slapd and its tools cannot exit under the ASan runtime on Debian 12")


class Relay:
    """A TCP relay in front of the fake organization, on a port that stays
    the same, so the API can be made unreachable (connection refused) and
    brought back without changing api_url."""

    def __init__(self, target_port):
        self.target = target_port
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.sock = None
        self.thread = None
        self.conns = []

    def start(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(16)
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        sock = self.sock
        while True:
            try:
                c, _ = sock.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                c.close()
                continue
            self.conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self):
        if self.sock:
            self.sock.close()
            self.sock = None
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
        self.conns = []


def t_crash_recovery():
    """API unreachable while accounts are locked, slapd SIGKILLed, restarted
    with the API back: every job completes."""
    uids = ["crash%d" % i for i in range(5)]
    with PluginEnv(users=[org_user(u) for u in uids], start_slapd=False) as env:
        relay = Relay(env.fake.port)
        env.extra["api_url"] = "http://127.0.0.1:%d/v1" % relay.port
        env.extra["http_timeout"] = "2"
        env.write_conf()
        env.slapd.start()
        env.slapd.populate_base()
        try:
            dns = [env.add_person(u) for u in uids]
            for dn in dns:
                env.lock(dn)
            is_eq(sum(1 for dn in dns if queued_for(env, dn)), 5,
                  "API down: the five locks are queued all the same")
            # the worker has tried (and failed) at least once for each job
            wait_for(lambda: len([j for j in env.spool_jobs("deferred") if j["attempts"] >= 1]) == 5,
                     timeout=60, what="five deferred jobs")
            ok(True, "API down: five jobs deferred after a failed attempt")
            is_eq(env.fake.requests(), [], "nothing reached the organization")
            env.slapd.kill()
            ok(not env.slapd.running(), "slapd killed with SIGKILL")
            is_eq(env.spool_count(), 5, "the five jobs are still in the spool after the crash")
            relay.start()
            env.slapd.start()
            for u in uids:
                env.wait_removed("user-" + u, timeout=120)
            ok(True, "after the restart with the API back, every user is removed")
            wait_for(lambda: env.spool_count() == 0, timeout=30, what="empty spool")
            ok(True, "spool empty")
            is_eq(len(env.log_with("action=removed")), 5, "five audit lines action=removed")
        finally:
            relay.stop()


def t_crash_in_flight():
    """SIGKILL while the worker waits on the API: the claimed job (active/)
    is recovered at the next start."""
    with PluginEnv(users=[org_user("inflight")]) as env:
        env.fake.fault("delay", path="/v1/organization/users*", count=1, seconds=4)
        dn = env.add_person("inflight")
        env.lock(dn)
        wait_for(lambda: env.spool_jobs("active"), what="the job claimed (active/)")
        env.slapd.kill()
        is_eq(len(env.spool_jobs("active")), 1, "job left in active/ by the crash")
        env.slapd.start()
        env.wait_removed("user-inflight", timeout=60)
        ok(True, "claimed job recovered after the crash and completed")
        wait_for(lambda: env.spool_count() == 0, timeout=30, what="empty spool")
        ok(True, "spool empty")


def t_stop_in_flight():
    """SIGTERM while the worker waits on the API: slapd stops, the job in
    hand is finished or put back, never left claimed, and completes later."""
    with PluginEnv(users=[org_user("stopping")]) as env:
        env.fake.fault("delay", path="/v1/organization/users*", count=1, seconds=3)
        dn = env.add_person("stopping")
        env.lock(dn)
        wait_for(lambda: env.spool_jobs("active"), what="the job claimed (active/)")
        env.slapd.stop()
        ok(not env.slapd.running(), "slapd stopped on SIGTERM with a request in flight")
        is_eq(env.spool_jobs("active"), [], "no job left claimed after a clean stop")
        done = "user-stopping" not in env.fake.user_ids()
        ok(done or env.spool_count() == 1, "the job was finished or put back (%s)"
           % ("finished" if done else "put back"))
        env.slapd.start()
        env.wait_removed("user-stopping", timeout=60)
        wait_for(lambda: env.spool_count() == 0, timeout=30, what="empty spool")
        ok(True, "after the restart the user is removed and the spool is empty")


def expect_refusal(env, what, pattern):
    rc, err = env.slapd.run_fail()
    ok(rc != 0, "%s: slapd refuses to start (exit %s)" % (what, rc))
    ok(re.search(pattern, err), "%s: stderr says why (%s)" % (what, pattern)) or diag(err)


def t_invalid_config():
    with PluginEnv(start_slapd=False) as env:
        text = open(env.conf).read() + "\n# a typo on line after\nrevoke_on_delet yes\n"
        env.write_conf(text)
        line = text.count("\n", 0, text.index("revoke_on_delet")) + 1
        expect_refusal(env, "unknown keyword",
                       re.escape("%s:%d:" % (env.conf, line)) + ".*revoke_on_delet")
        text = open(env.conf).read().replace("revoke_on_delet yes", "disabled_filter (a=b")
        env.write_conf(text)
        expect_refusal(env, "bad filter", re.escape("%s:%d:" % (env.conf, line)) + ".*disabled_filter")
        text = "\n".join(l for l in open(env.conf).read().splitlines()
                         if not l.startswith("base ") and not l.startswith("disabled_filter"))
        env.write_conf(text + "\n")
        expect_refusal(env, "missing base", re.escape(env.conf) + ".*base")
        os.unlink(env.conf)
        expect_refusal(env, "missing file", re.escape(env.conf))
        ok(not os.path.exists(env.spool), "refused configurations never created the spool")


def t_refuse_start():
    with PluginEnv(start_slapd=False) as env:
        os.chmod(env.keyfile, 0o644)
        expect_refusal(env, "world-readable admin key", re.escape(env.keyfile))
        os.chmod(env.keyfile, 0o600)
        ok(not os.path.exists(env.spool), "a refused key leaves no spool behind")
        os.mkdir(env.spool, 0o777)
        os.chmod(env.spool, 0o777)
        expect_refusal(env, "world-writable spool", re.escape(env.spool))
        os.chmod(env.spool, 0o700)
        env.slapd.start()
        ok(env.slapd.running(), "with both fixed, slapd starts")


def t_plugin_args():
    with PluginEnv(start_slapd=False) as env:
        env.slapd.plugin_lines = [plugin_line(env.conf) + " extra"]
        expect_refusal(env, "two plugin arguments", "one argument")
        env.slapd.plugin_lines = [plugin_line(env.conf), plugin_line(env.conf, "preoperation")]
        expect_refusal(env, "the plugin loaded twice", "already loaded")


def t_tools():
    """slapcat, slapadd, slapindex and slaptest load the same slapd.conf:
    no worker, no spool, no request."""
    with PluginEnv(users=[org_user("tool")], start_slapd=False) as env:
        # a spool that does not exist yet: opening it (and its lock) would create it
        env.extra["spool_dir"] = env.path("tool-spool")
        env.write_conf()
        env.slapd.write_conf()
        ldif = entry_ldif(SUFFIX, {"objectClass": ["dcObject", "organization"], "o": "x",
                                   "dc": "example"})
        ldif += entry_ldif(PEOPLE, {"objectClass": "organizationalUnit", "ou": "people"})
        ldif += entry_ldif(dn_of("tool"), {"objectClass": "inetOrgPerson", "uid": "tool", "cn": "t",
                                           "sn": "t", "mail": "tool@example.com",
                                           "pwdAccountLockedTime": "000001010000Z"})
        rc, out, err = env.slapd.tool("slapadd", ["-q"], input=ldif.encode())
        is_eq(rc, 0, "slapadd with the plugin configured succeeds") or diag(err)
        rc, out, err = env.slapd.tool("slapcat")
        is_eq(rc, 0, "slapcat succeeds")
        ok("uid=tool" in out, "slapcat shows the added (locked) account")
        rc, out, err = env.slapd.tool("slapindex", ["-q"])
        is_eq(rc, 0, "slapindex succeeds") or diag(err)
        rc, out, err = env.slapd.tool("slaptest", ["-u"])
        is_eq(rc, 0, "slaptest succeeds") or diag(err)
        ok(not os.path.exists(env.path("tool-spool")), "tools: no spool opened, no lock taken")
        is_eq(env.fake.requests(), [], "tools: no API request")
        is_eq(env.log_with("action=start"), [], "tools: no worker started")
        ok(not os.path.exists(env.logfile), "tools: log_file not even created (they often run as root)")
        # slaptest checks our configuration too
        env.write_conf(open(env.conf).read() + "bogus_keyword 1\n")
        rc, out, err = env.slapd.tool("slaptest", ["-u"])
        ok(rc != 0 and env.conf in err, "slaptest reports a bad openai-revoke.conf") or diag(err)


def t_enqueue_failure():
    """A spool that cannot take the job: the write still succeeds (slapd has
    committed it) and an err line names the DN for the operator."""
    with PluginEnv(users=[org_user("nospool")], conf={"worker": "none"}) as env:
        tmp = os.path.join(env.spool, "tmp")
        shutil.rmtree(tmp)
        with open(tmp, "w") as f:   # root ignores modes: a file where a directory belongs
            f.write("not a directory\n")
        dn = env.add_person("nospool")
        rc = env.lock(dn)
        is_eq(rc, 0, "the lock itself succeeds")
        lines = env.log_with("action=enqueue_failed")
        ok(lines and dn in lines[0], "action=enqueue_failed names the DN") or diag(env.log())
        is_eq(queued_for(env, dn), [], "nothing claims to be queued")
        os.unlink(tmp)
        os.mkdir(tmp, 0o700)
        env.slapd.restart()     # the spool keeps its directories open
        env.lock(dn, "000001010000Z")
        ok(queued_for(env, dn), "with the spool repaired, the next write is queued") or \
            diag(env.log())


def t_alias_in_config():
    """disabled_filter written with an attribute alias (userid for uid): a
    client writing the schema's name still triggers."""
    with PluginEnv(conf={"worker": "none", "disabled_filter": "(userid=left-*)"}) as env:
        dn = env.add_person("aliased")
        env.slapd.modify(dn, [("add", "uid", "left-aliased")])
        ok(queued_for(env, dn), "modify of uid triggers a filter that says userid")


def t_ppolicy_lockout():
    """Failed binds make ppolicy lock the account by itself (a time stamp
    in pwdAccountLockedTime, even with pwdLockoutDuration 0): not a
    disable, nothing queued, the member stays."""
    policy = "cn=default,ou=policies," + SUFFIX
    with PluginEnv(users=[org_user("bindfail")], start_slapd=False,
                   slapd_kw={"db_lines": ['ppolicy_default "%s"' % policy]}) as env:
        env.slapd.start()
        env.slapd.populate_base(ous=("people", "disabled", "policies"))
        env.slapd.add_entry(policy, {"objectClass": ["organizationalRole", "pwdPolicy"], "cn": "default",
                                     "pwdAttribute": "userPassword", "pwdLockout": "TRUE",
                                     "pwdMaxFailure": "2", "pwdLockoutDuration": "0"})
        dn = env.add_person("bindfail", extra={"userPassword": "right-password"})
        for _ in range(3):
            subprocess.run(["ldapwhoami", "-x", "-H", env.slapd.ldapi, "-D", dn, "-w", "wrong"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        e = env.slapd.search(dn, attrs=["pwdAccountLockedTime"], scope="base")
        locked = e and e[0][1].get("pwdaccountlockedtime")
        ok(locked and locked[0] != "000001010000Z",
           "ppolicy locked the account after failed binds (%s)" % locked)
        is_eq(queued_for(env, dn), [], "a lockout by failed binds queues nothing")
        is_eq(env.spool_count(), 0, "spool empty")
        ok("user-bindfail" in env.fake.user_ids(), "the member stays")


def t_worker_none():
    with PluginEnv(users=[org_user("nowork")], conf={"worker": "none"}) as env:
        dn = env.add_person("nowork")
        env.lock(dn)
        ok(queued_for(env, dn), "worker none: job queued")
        jobs = env.spool_jobs("queue")
        is_eq([j["dn"] for j in jobs], [dn], "worker none: the job waits in queue/")
        j = jobs[0] if jobs else {}
        is_eq((j.get("source"), j.get("reason"), j.get("uid"), j.get("emails")),
              ("slapi", "disabled", "nowork", ["nowork@example.com"]),
              "the job carries source, reason, uid and addresses")
        ok(j.get("entry_uuid") and len(j["entry_uuid"]) == 36, "the job carries the entryUUID")
        env.slapd.stop()
        is_eq(env.fake.requests(), [], "worker none: slapd never called the API")
        is_eq(len(env.spool_jobs("queue")), 1, "worker none: the job is still queued after stop")
        ok(env.log_with("action=stop"), "plugin close logged")


def t_exports():
    r = subprocess.run(["nm", "-D", "--defined-only", PLUGIN], stdout=subprocess.PIPE,
                       universal_newlines=True)
    names = sorted(l.split()[-1] for l in r.stdout.splitlines() if l.strip())
    names = [n for n in names if n not in ("_init", "_fini")]
    is_eq(names, ["openai_revoke_init"], "the plugin exports openai_revoke_init only")
    # what the object needs from outside must come from its own libraries,
    # except slapd's slapMode, which is weak
    r = subprocess.run(["nm", "-D", "--undefined-only", PLUGIN], stdout=subprocess.PIPE,
                       universal_newlines=True)
    undef = {}
    for l in r.stdout.splitlines():
        parts = l.split()
        if len(parts) >= 2:
            undef[parts[-1].split("@")[0]] = parts[-2]
    is_eq(undef.get("slapMode"), "w", "slapMode is a weak reference")
    r = subprocess.run(["ldd", PLUGIN], stdout=subprocess.PIPE, universal_newlines=True)
    libs = [l.split("=>")[1].split()[0] for l in r.stdout.splitlines()
            if "=>" in l and "/" in l.split("=>")[1]]
    defined = set()
    for lib in libs:
        r = subprocess.run(["nm", "-D", "--defined-only", lib], stdout=subprocess.PIPE,
                           universal_newlines=True)
        defined.update(x.split()[-1].split("@")[0] for x in r.stdout.splitlines() if x.strip())
    missing = sorted(n for n, t in undef.items() if t == "U" and n not in defined)
    is_eq(missing, [], "every strong undefined symbol comes from a linked library")


def t_examples():
    """examples/openai-revoke.conf, and each commented alternative in it,
    passes the plugin's own check (slaptest runs the plugin's init)."""
    from test_plugin_common import SRCDIR
    example = os.path.join(SRCDIR, "examples", "openai-revoke.conf")
    with PluginEnv(start_slapd=False, fake=False) as env:
        env.slapd.plugin_lines = [plugin_line(example)]
        env.slapd.write_conf()
        rc, out, err = env.slapd.tool("slaptest", ["-u"])
        is_eq(rc, 0, "examples/openai-revoke.conf is accepted") or diag(err)
        src = open(example).read().splitlines()
        bad = []
        for line in src:
            m = re.match(r"^#([a-z_]+)\s+\S", line)
            if not m:
                continue
            lines = [x for x in src if not re.match(r"^%s\s" % m.group(1), x)]
            lines[lines.index(line)] = line[1:]
            env.write_conf("\n".join(lines) + "\n")
            env.slapd.plugin_lines = [plugin_line(env.conf)]
            env.slapd.write_conf()
            rc, out, err = env.slapd.tool("slaptest", ["-u"])
            if rc != 0:
                bad.append("%s: %s" % (line, err.strip()))
        is_eq(bad, [], "every commented alternative in the example is valid when uncommented")


def t_cn_config():
    """ldap-hooks/openai-revoke.ldif and cn-config.ldif, applied to a running
    cn=config slapd as documented, then a restart: the plugin works."""
    from test_plugin_common import SRCDIR
    hooks = os.path.join(SRCDIR, "ldap-hooks")
    with PluginEnv(users=[org_user("cfg", email="other-address@example.com")],
                   conf={"user_id_attribute": "openaiUserId"}, start_slapd=False,
                   slapd_kw={"cn_config": True}) as env:
        env.slapd.plugin_lines = []
        env.slapd.start()
        env.slapd.populate_base()
        schema = open(os.path.join(hooks, "openai-revoke.ldif")).read()
        schema = re.sub(r"(?m)^(dn: .*)$", r"\1\nchangetype: add", schema, count=1)
        rc, out = env.slapd.config_modify(schema, check=False)
        is_eq(rc, 0, "openai-revoke.ldif loads into a running cn=config") or diag(out)
        snippet = open(os.path.join(hooks, "cn-config.ldif")).read()
        snippet = snippet.replace("/usr/lib/openai-revoke/openai_revoke.so", PLUGIN)
        snippet = snippet.replace("/etc/openai-revoke/openai-revoke.conf", env.conf)
        rc, out = env.slapd.config_modify(snippet, check=False)
        is_eq(rc, 0, "cn-config.ldif adds the olcPlugin value") or diag(out)
        is_eq(env.log_with("action=start"), [],
              "an olcPlugin added live is not started before a restart (as documented)")
        env.slapd.restart()
        ok(env.log_with("action=start"), "after the restart the plugin started")
        dn = dn_of("cfg")
        env.slapd.add_entry(dn, {"objectClass": ["inetOrgPerson", "openaiAccount"], "uid": "cfg",
                                 "cn": "c", "sn": "c", "openaiUserId": "user-cfg"})
        env.lock(dn)
        env.wait_removed("user-cfg")
        ok(True, "cn=config: a locked account with openaiUserId is removed")


def main():
    return run([
        ("exports", t_exports),
        ("examples", t_examples),
        ("cn=config", t_cn_config),
        ("invalid configuration", t_invalid_config),
        ("refuse start", t_refuse_start),
        ("plugin arguments", t_plugin_args),
        ("tools", t_tools),
        ("worker none", t_worker_none),
        ("ppolicy lockout", t_ppolicy_lockout),
        ("alias in config", t_alias_in_config),
        ("enqueue failure", t_enqueue_failure),
        ("crash in flight", t_crash_in_flight),
        ("stop in flight", t_stop_in_flight),
        ("crash recovery", t_crash_recovery),
    ])


if __name__ == "__main__":
    sys.exit(main())
