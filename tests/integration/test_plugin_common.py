"""Shared by the test_plugin*.py tests (not a test itself): a real slapd
with openai_revoke.so loaded, a fake OpenAI organization, and the files
between them (openai-revoke.conf, admin key, spool, log_file)."""
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

from fakeorg import FakeOrg
from slapdtest import Slapd, SUFFIX, wait_for

SRCDIR = os.environ.get("abs_top_srcdir") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BUILDDIR = os.environ.get("abs_top_builddir") or SRCDIR
PLUGIN = os.path.join(BUILDDIR, ".libs", "openai_revoke.so")
SCHEMA = os.path.join(SRCDIR, "ldap-hooks", "openai-revoke.schema")
PEOPLE = "ou=people," + SUFFIX
DISABLED = "ou=disabled," + SUFFIX
STATES = ("queue", "active", "deferred", "held", "failed")
# Debian 12's slapd with the ASan runtime preloaded hangs in its exit
# handlers (libp11-kit's destructor waits on glibc's locale lock), plugin
# or not: a sanitizer run kills it after a grace period instead.
SANITIZERS = os.environ.get("OPENAI_REVOKE_TEST_SANITIZERS") == "yes"


def dn_of(uid, ou="people"):
    return "uid=%s,ou=%s,%s" % (uid, ou, SUFFIX)


def org_user(uid, role="reader", email=None):
    return {"id": "user-" + uid, "email": email or "%s@example.com" % uid,
            "role": role, "name": uid}


def slapd_env():
    """LD_BIND_NOW makes slapd resolve every symbol of the plugin when it
    loads it (the RTLD_NOW check: libslapi itself cannot be loaded outside
    slapd).  A sanitizer build needs its runtimes first in slapd's list."""
    env = {"LD_BIND_NOW": "1"}
    if SANITIZERS:
        r = subprocess.run(["ldd", PLUGIN], stdout=subprocess.PIPE, universal_newlines=True)
        pre = [l.split("=>")[1].split()[0] for l in r.stdout.splitlines()
               if "=>" in l and re.search(r"lib(asan|ubsan)\.so", l)]
        env["LD_PRELOAD"] = " ".join(pre)
        # slapd's own allocations at exit are not ours: LeakSanitizer would
        # drown the plugin's findings; leaks are the Valgrind test's job.
        env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=1"
        env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    return env


def plugin_line(conf, kind="postoperation"):
    return "plugin %s %s openai_revoke_init %s" % (kind, PLUGIN, conf)


class PluginEnv:
    """Context manager: fake org + key + spool + config + slapd with the
    plugin.  conf: extra or overriding keywords {keyword: value}, a value of
    None removes a default line."""

    def __init__(self, conf=None, users=(), schemas=(), slapd_kw=None, start_slapd=True,
                 fake=True):
        self.extra = dict(conf or {})
        self.users = list(users)
        self.schemas = list(schemas)
        self.slapd_kw = dict(slapd_kw or {})
        self.start_slapd = start_slapd
        self.want_fake = fake
        self.dir = None
        self.fake = None
        self.slapd = None

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="plugintest.")
        try:
            self.keyfile = self.path("admin.key")
            self.spool = self.path("spool")
            self.logfile = self.path("log")
            self.conf = self.path("openai-revoke.conf")
            if self.want_fake:
                self.fake = FakeOrg().start()
                self.fake.reset(users=self.users)
                key = self.fake.key
            else:
                key = "sk-admin-test-0123456789abcdef"
            self.write_file("admin.key", key + "\n", 0o600)
            self.write_conf()
            kw = dict(self.slapd_kw)
            kw.setdefault("env", slapd_env())
            if SANITIZERS:
                kw.setdefault("stop_grace", 10)
            self.slapd = Slapd(plugin_lines=[plugin_line(self.conf)],
                               schemas=self.schemas, **kw)
            if self.start_slapd:
                self.slapd.start()
                self.slapd.populate_base()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        try:
            if self.slapd:
                self.slapd.close()
        finally:
            if self.fake:
                self.fake.stop()
            if self.dir and not os.environ.get("SLAPDTEST_KEEP"):
                shutil.rmtree(self.dir, ignore_errors=True)
        return False

    # -- files -------------------------------------------------------------
    def path(self, name):
        return os.path.join(self.dir, name)

    def write_file(self, name, text, mode=0o644):
        p = self.path(name)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, mode)
        return p

    def conf_dict(self):
        c = {
            "api_url": self.fake.url if self.fake else "http://127.0.0.1:9/v1",
            "admin_key_file": self.keyfile,
            "base": PEOPLE,
            "disabled_subtree": DISABLED,
            "spool_dir": self.spool,
            "log_file": self.logfile,
            "log_level": "info",
            "http_timeout": "5",
            "api_rate": "200",
            "worker": "thread",
        }
        c.update(self.extra)
        return c

    def write_conf(self, text=None):
        if text is None:
            text = "# written by test_plugin_common.py\n"
            for k, v in self.conf_dict().items():
                if v is not None:
                    text += "%s %s\n" % (k, v)
        self.write_file("openai-revoke.conf", text, 0o600)
        return self.conf

    # -- observations ------------------------------------------------------
    def log(self):
        try:
            with open(self.logfile, encoding="utf-8", errors="replace") as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def log_with(self, *words):
        return [l for l in self.log() if all(w in l for w in words)]

    def wait_log(self, *words, timeout=15.0):
        return wait_for(lambda: self.log_with(*words), timeout,
                        what="a log line with %s (log so far:\n%s)"
                        % (" ".join(words), "\n".join(self.log()[-20:])))

    def spool_jobs(self, state):
        d = os.path.join(self.spool, state)
        jobs = []
        try:
            names = sorted(os.listdir(d))
        except FileNotFoundError:
            return []
        for n in names:
            try:
                with open(os.path.join(d, n)) as f:
                    jobs.append(json.load(f))
            except (OSError, ValueError):
                pass
        return jobs

    def spool_count(self):
        return sum(len(self.spool_jobs(s)) for s in STATES)

    def deletes(self, user_id=None):
        reqs = self.fake.requests()
        return [r for r in reqs if r["method"] == "DELETE" and "/organization/users/" in r["path"]
                and (user_id is None or r["path"].endswith("/" + user_id))]

    def wait_removed(self, user_id, timeout=15.0):
        return wait_for(lambda: user_id not in self.fake.user_ids(), timeout,
                        what="%s removed from the fake organization" % user_id)

    def add_person(self, uid, **kw):
        return self.slapd.add_person(uid, mail=kw.pop("mail", "%s@example.com" % uid), **kw)

    def lock(self, dn, value="000001010000Z"):
        return self.slapd.modify(dn, [("replace", "pwdAccountLockedTime", value)])


def queued_for(env, dn):
    """The plugin logs action=queued before the write returns, so right
    after ldapmodify this is the whole truth about what was enqueued."""
    return [l for l in env.log_with("action=queued") if ('dn="%s"' % dn) in l]
