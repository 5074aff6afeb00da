"""The admin key stays secret end to end (issue 8, docs/SECURITY.md): one
whole scenario at log_level debug -- slapd with the plugin removing a
disabled account, then every command of the command line with -v, once with
the key from admin_key_file and once from OPENAI_ADMIN_KEY -- and the key
(and the word Bearer) must appear in no output, no log line, no spool file,
no /proc/PID/cmdline or environ of a running worker, nor slapd's stderr.
Also: api_url http:// to a non-loopback host is refused."""
import os
import re
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tap import ok, is_eq, diag, run, skip_all  # noqa: E402
from slapdtest import wait_for  # noqa: E402
from test_plugin_common import PluginEnv, PLUGIN, PEOPLE, dn_of, org_user  # noqa: E402
from test_cli_common import PROG  # noqa: E402

if not os.path.exists(PLUGIN) or not os.access(PROG, os.X_OK):
    skip_all("the plugin or the command line is not built")

UIDS = ["s1", "s2", "s3", "s4", "s5", "e2", "e3", "e4"]


class Outputs:
    """Every stdout/stderr we saw, to be searched at the end."""

    def __init__(self):
        self.texts = []

    def run(self, args, conf, env_extra=None, timeout=60):
        env = dict(os.environ)
        env.pop("OPENAI_ADMIN_KEY", None)
        env.update(env_extra or {})
        r = subprocess.run([PROG, "-c", conf] + list(args), stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                           timeout=timeout)
        out, err = (r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace"))
        self.texts += [("%s stdout" % " ".join(args), out), ("%s stderr" % " ".join(args), err)]
        return r.returncode, out, err


def write(path, text, mode):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def cli_conf(env, name, **over):
    c = env.conf_dict()
    c.update({"ldap_uri": env.slapd.ldapi, "spool_dir": env.path("cli-spool"),
              "log_file": env.path("cli.log"), "log_level": "debug", "ldap_timeout": "5"})
    c.update(over)
    text = "".join("%s %s\n" % (k, v) for k, v in c.items() if v is not None)
    return write(env.path(name), text, 0o600)


def members(env):
    return env.fake.user_ids()


def leaks(env, needle, outputs, extra_texts=()):
    """Where NEEDLE occurs: outputs, every file below the test directory
    (log files, both spools, whatever else got written there), slapd's
    stderr and any extra (name, bytes) pairs."""
    where = []
    nb = needle.encode()
    for name, text in outputs.texts:
        if needle in text:
            where.append(name)
    for root, _dirs, files in os.walk(env.dir):
        for n in files:
            p = os.path.join(root, n)
            if p == env.keyfile:
                continue
            try:
                with open(p, "rb") as f:
                    if nb in f.read():
                        where.append(p)
            except OSError:
                pass
    if needle in env.slapd.stderr():
        where.append("slapd stderr")
    for name, data in extra_texts:
        if nb in data:
            where.append(name)
    return where


def spool_files(d):
    found = []
    for root, _dirs, files in os.walk(d):
        found += [os.path.join(root, n) for n in files]
    return found


def proc_read(pid, what):
    with open("/proc/%d/%s" % (pid, what), "rb") as f:
        return f.read()


def test_scenario():
    users = [org_user(u) for u in UIDS]
    with PluginEnv(conf={"log_level": "debug"}, users=users) as env:
        key = env.fake.key
        out = Outputs()
        proc_texts = []
        for u in UIDS:
            env.add_person(u)

        # 1. the plugin inside slapd: a disable becomes a removal
        env.lock(dn_of("s1"))
        env.wait_removed("user-s1")
        ok(env.wait_log("action=removed", "user-s1"), "plugin: the disabled account was removed")
        ok(env.log_with("debug", "api method=DELETE"),
           "plugin: log_level debug is on (request lines logged)")
        proc_texts += [("slapd cmdline", proc_read(env.slapd.proc.pid, "cmdline")),
                       ("slapd environ", proc_read(env.slapd.proc.pid, "environ"))]

        # 2. the command line with the key file, every command with -v
        conf = cli_conf(env, "cli.conf")
        rc, o, e = out.run(["-v", "check"], conf)
        is_eq(rc, 0, "key file: check -v exits 0")
        ok("debug" in e, "check -v writes debug lines on stderr") or diag(o + e)
        rc, o, e = out.run(["-v", "revoke", "--now", "s2"], conf)
        ok(rc == 0 and "user-s2" not in members(env), "key file: revoke --now -v removed s2") \
            or diag(o + e)
        rc, o, e = out.run(["-v", "revoke", "s3"], conf)
        ok(rc == 0 and "queued" in o, "key file: revoke -v queued s3") or diag(o + e)
        rc, o, e = out.run(["-v", "queue", "list"], conf)
        ok(rc == 0 and "s3" in o, "key file: queue list -v shows the job") or diag(o + e)
        rc, o, e = out.run(["-v", "run", "--once"], conf)
        ok(rc == 0 and "user-s3" not in members(env), "key file: run --once -v removed s3") \
            or diag(o + e)
        rc, o, e = out.run(["-v", "map", "s4", "s5@example.com"], conf)
        ok(rc == 0 and "user-s4" in o, "key file: map -v") or diag(o + e)
        env.lock(dn_of("s5"))
        env.wait_removed("user-s5")
        env.fake.users([org_user("s5")])   # disabled in the directory, a member again
        rc, o, e = out.run(["-v", "reconcile", "--json"], conf)
        ok(rc in (0, 1) and '"user-s5"' in o, "key file: reconcile --json -v lists s5") \
            or diag(o + e)

        # 3. the same with OPENAI_ADMIN_KEY and no key file
        econf = cli_conf(env, "cli-env.conf", admin_key_file=env.path("absent.key"))
        kenv = {"OPENAI_ADMIN_KEY": key}
        rc, o, e = out.run(["-v", "check"], econf, kenv)
        is_eq(rc, 0, "environment key: check -v exits 0")
        rc, o, e = out.run(["-v", "revoke", "--now", "e2"], econf, kenv)
        ok(rc == 0 and "user-e2" not in members(env), "environment key: revoke --now -v") \
            or diag(o + e)
        rc, o, e = out.run(["-v", "revoke", "e3"], econf, kenv)
        ok(rc == 0 and "queued" in o, "environment key: revoke -v queued e3") or diag(o + e)
        rc, o, e = out.run(["-v", "queue", "list"], econf, kenv)
        ok(rc == 0 and "e3" in o, "environment key: queue list -v")
        rc, o, e = out.run(["-v", "reconcile", "--json"], econf, kenv)
        ok(rc in (0, 1) and '"user-s5"' in o, "environment key: reconcile --json -v") \
            or diag(o + e)

        # a long-running worker with the key in its environment at start
        penv = dict(os.environ)
        penv.update(kenv)
        errf = open(env.path("run.err"), "w+b")
        outf = open(env.path("run.out"), "w+b")
        p = subprocess.Popen([PROG, "-c", econf, "-v", "run"], stdin=subprocess.DEVNULL,
                             stdout=outf, stderr=errf, env=penv)
        try:
            wait_for(lambda: "user-e3" not in members(env), 15, what="run to remove e3")
            ok(True, "environment key: run -v removed e3")
            rc, o, e = out.run(["-v", "revoke", "e4"], econf, kenv)
            wait_for(lambda: "user-e4" not in members(env), 15, what="run to remove e4")
            ok(True, "environment key: ... and e4, queued while it runs")
            cmdline = proc_read(p.pid, "cmdline")
            environ = proc_read(p.pid, "environ")
            ok(key.encode() not in cmdline, "running worker: the key is not in /proc/PID/cmdline")
            ok(key.encode() not in environ,
               "running worker: nor in /proc/PID/environ (wiped at start-up)")
            ok(b"OPENAI_ADMIN_KEY=" + key.encode() not in environ,
               "running worker: the variable no longer holds it")
            proc_texts += [("run cmdline", cmdline), ("run environ", environ)]
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=30)
            is_eq(p.returncode, 0, "run stops on SIGTERM")
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            errf.close()
            outf.close()
        with open(env.path("run.err"), encoding="utf-8", errors="replace") as f:
            run_err = f.read()
        ok("debug" in run_err, "run -v wrote debug lines")

        # the plugin's worker in slapd once more after the command line
        env.fake.users([org_user("s1")])
        env.slapd.modify(dn_of("s1"), [("delete", "pwdAccountLockedTime", [])])
        env.lock(dn_of("s1"))
        env.wait_removed("user-s1")

        # 4. the proof
        reqs = env.fake.requests()
        ok(len(reqs) > 10 and all(q["headers"].get("authorization") == "Bearer " + key
                                  for q in reqs),
           "every one of %d requests carried the key (so there was a key to leak)" % len(reqs))
        ok(spool_files(env.spool) and spool_files(env.path("cli-spool")),
           "both spools hold files (lock, breaker state) to search")
        loose = []
        for sp in (env.spool, env.path("cli-spool")):
            for root, dirs, files in os.walk(sp):
                for n in [root] + [os.path.join(root, x) for x in dirs + files]:
                    m = os.lstat(n).st_mode & 0o7777
                    if m & 0o077:
                        loose.append("%s %04o" % (n, m))
        is_eq(loose, [], "every spool directory is 0700 and every spool file 0600 (plugin and "
              "command line)")
        where = leaks(env, key, out, proc_texts)
        is_eq(where, [], "the key is in no output, log_file line, spool file, /proc entry "
              "or slapd's stderr")
        where = leaks(env, "Bearer", out, proc_texts)
        is_eq(where, [], "nor is the word Bearer")
        # the key less its first bytes: a partial print would be a leak too
        where = leaks(env, key[8:], out, proc_texts)
        is_eq(where, [], "nor any tail of the key")


def test_http_refused():
    with PluginEnv(conf={"log_level": "debug"}, start_slapd=False) as env:
        out = Outputs()
        for url in ("http://api.openai.com/v1", "http://10.1.2.3/v1",
                    "http://127.0.0.1.example.com/v1", "HTTP://192.168.0.1:80/v1"):
            c = env.conf_dict()
            c["api_url"] = url
            conf = write(env.path("http.conf"),
                         "".join("%s %s\n" % (k, v) for k, v in c.items()), 0o600)
            rc, o, e = out.run(["check"], conf)
            is_eq(rc, 2, "check refuses api_url %s with exit 2" % url)
            ok(re.search(r"http\.conf:1: api_url: http:// is allowed only to a loopback address",
                         o + e), "... with FILE:LINE: api_url: and why") or diag(o + e)
        is_eq(env.fake.requests(), [], "no request was sent anywhere")


sys.exit(run([
    ("scenario", test_scenario),
    ("http refused", test_http_refused),
]))
