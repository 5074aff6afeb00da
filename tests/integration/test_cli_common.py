"""Shared by the test_cli_*.py tests (not a test itself): a temporary
directory with a fake OpenAI organization, optionally a throw-away slapd, a
configuration file, and a runner for the openai-revoke binary that remembers
every output so a test can prove the admin key never appeared."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

from fakeorg import FakeOrg
from slapdtest import Slapd, SUFFIX

BUILDDIR = os.environ.get("abs_top_builddir") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
PROG = os.path.join(BUILDDIR, "tools", "openai-revoke")
PEOPLE = "ou=people," + SUFFIX


def dn_of(uid, ou="people"):
    return "uid=%s,ou=%s,%s" % (uid, ou, SUFFIX)


class Result:
    def __init__(self, rc, out, err):
        self.rc, self.out, self.err = rc, out, err

    def __repr__(self):
        return "rc=%r\n--- stdout\n%s--- stderr\n%s" % (self.rc, self.out, self.err)


def wait_for(cond, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %gs waiting for %s" % (timeout, what))
        time.sleep(0.05)


class CliEnv:
    """Context manager.  ldap=True starts slapd with the base and OUs."""

    def __init__(self, ldap=True, tls=False):
        self.want_ldap = ldap
        self.tls = tls
        self.dir = None
        self.fake = None
        self.slapd = None
        self.outputs = []

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="clitest.")
        try:
            self.fake = FakeOrg(tls=self.tls).start()
            if self.want_ldap:
                self.slapd = Slapd().start()
                self.slapd.populate_base()
            self.key = self.fake.key
            self.keyfile = self.path("admin.key")
            self.write_file("admin.key", self.key + "\n", 0o600)
            self.spool = self.path("spool")
            self.logfile = self.path("log")
            self.conf = self.write_conf()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        if self.slapd:
            self.slapd.close()
        if self.fake:
            self.fake.stop()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        return False

    def path(self, name):
        return os.path.join(self.dir, name)

    def write_file(self, name, text, mode=0o644):
        p = self.path(name)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, mode)
        return p

    def conf_settings(self):
        s = {
            "api_url": self.fake.url,
            "admin_key_file": self.keyfile,
            "base": SUFFIX,
            "user_filter": "(objectClass=inetOrgPerson)",
            "spool_dir": self.spool,
            "log_file": self.logfile,
            "log_level": "debug",
            "ldap_uri": self.slapd.ldapi if self.slapd else
            "ldapi://" + self.path("no-such-socket").replace("/", "%2F"),
            "ldap_timeout": "5",
            "http_timeout": "5",
        }
        if self.fake.cafile:
            s["ca_file"] = self.fake.cafile
        return s

    def write_conf(self, name="openai-revoke.conf", omit=(), **extra):
        """Keyword values; extra overrides (None drops the keyword)."""
        s = self.conf_settings()
        s.update(extra)
        lines = ["# written by test_cli_common.py"]
        for k, v in s.items():
            if k in omit or v is None:
                continue
            lines.append("%s %s" % (k, v))
        return self.write_file(name, "\n".join(lines) + "\n", 0o644)

    def env(self, extra=None):
        e = dict(os.environ)
        e.pop("OPENAI_ADMIN_KEY", None)
        e.update(extra or {})
        return e

    def run(self, *args, conf=None, env=None, timeout=60, use_conf=True):
        cmd = [PROG]
        if use_conf:
            cmd += ["-c", conf or self.conf]
        cmd += list(args)
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=self.env(env), timeout=timeout)
        res = Result(r.returncode, r.stdout.decode("utf-8", "replace"),
                     r.stderr.decode("utf-8", "replace"))
        self.outputs.append(res.out)
        self.outputs.append(res.err)
        return res

    def spawn(self, *args, conf=None, env=None):
        """Start in the background; output goes to files (a pipe nobody
        reads could fill up and stall a long-running worker)."""
        self.nspawn = getattr(self, "nspawn", 0) + 1
        out = open(self.path("spawn%d.out" % self.nspawn), "w+b")
        err = open(self.path("spawn%d.err" % self.nspawn), "w+b")
        try:
            p = subprocess.Popen([PROG, "-c", conf or self.conf] + list(args),
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                 env=self.env(env))
        except BaseException:
            out.close()
            err.close()
            raise
        p.out_file, p.err_file = out, err
        return p

    def collect(self, proc, timeout=60):
        proc.wait(timeout=timeout)
        texts = []
        for f in (proc.out_file, proc.err_file):
            f.seek(0)
            texts.append(f.read().decode("utf-8", "replace"))
            f.close()
        res = Result(proc.returncode, texts[0], texts[1])
        self.outputs += texts
        return res

    def log(self):
        try:
            with open(self.logfile, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def spool_files(self, state):
        d = os.path.join(self.spool, state)
        try:
            return sorted(n for n in os.listdir(d) if not n.startswith("."))
        except FileNotFoundError:
            return []

    def spool_record(self, state, name):
        with open(os.path.join(self.spool, state, name)) as f:
            return json.load(f)

    def key_seen(self):
        """Where the admin key leaked, if anywhere: outputs, log, spool."""
        where = []
        for i, o in enumerate(self.outputs):
            if self.key in o:
                where.append("output #%d" % i)
        if self.key in self.log():
            where.append("log_file")
        for root, _dirs, files in os.walk(self.spool):
            for n in files:
                try:
                    with open(os.path.join(root, n), "rb") as f:
                        if self.key.encode() in f.read():
                            where.append(os.path.join(root, n))
                except OSError:
                    pass
        return where

    def sanitizer_reports(self):
        """AddressSanitizer/UBSan findings in any output (the suite also runs
        built with --enable-sanitizers)."""
        return [o for o in self.outputs
                if "Sanitizer" in o or "runtime error:" in o]

    def add_person(self, uid, mail=None, ou="people", extra=None):
        try:
            return self.slapd.add_person(uid, mail=mail, ou=ou, extra=extra)
        except Exception:
            # Say what became of slapd: a failure here is rarely about uid.
            p = self.slapd.proc
            raise AssertionError("adding %s failed; slapd %s; its stderr ends:\n%s" % (
                uid, "running" if self.slapd.running() else
                "exited with %r" % (p.returncode if p else None),
                self.slapd.stderr()[-2000:]))


def org_user(uid, role="reader", email=None, name=None):
    return {"id": "user-" + uid, "email": email or "%s@example.com" % uid,
            "role": role, "name": name or uid}


def kill_quietly(proc):
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    for f in (getattr(proc, "out_file", None), getattr(proc, "err_file", None)):
        if f and not f.closed:
            f.close()
