"""Shared by the PAM tests: a throw-away PAM configuration directory whose
service file loads the freshly built pam_openai_revoke.so, a config file for
it, and the driver that runs the real Linux-PAM library on them.

How the module's answer is made visible: libpam folds an ignoring module
into the stack's result, so the service file is

    account [success=done ignore=ignore default=die] pam_openai_revoke.so ARGS
    account required pam_debug.so acct=authtok_disable_aging

A failure code from our module ends the stack with exactly that code (die);
PAM_IGNORE falls through to pam_debug, whose absurd account answer is the
marker this helper reports as "PAM_IGNORE"; PAM_SUCCESS ends the stack as
PAM_SUCCESS."""
import json
import os
import shutil
import subprocess
import tempfile
import time

import slapdtest

IGNORE_MARKER = "PAM_AUTHTOK_DISABLE_AGING"
PAM_DEBUG = None
for _d in ("/usr/lib/x86_64-linux-gnu/security", "/usr/lib/security", "/lib/security",
           "/usr/lib64/security", "/usr/lib/aarch64-linux-gnu/security"):
    if os.path.exists(os.path.join(_d, "pam_debug.so")):
        PAM_DEBUG = os.path.join(_d, "pam_debug.so")
        break
if PAM_DEBUG is None:  # libpam finds it in its own directory by bare name
    PAM_DEBUG = "pam_debug.so"

BUILDDIR = os.environ.get("abs_top_builddir", os.getcwd())
SRCDIR = os.environ.get("abs_top_srcdir", BUILDDIR)
MODULE = os.path.join(BUILDDIR, ".libs", "pam_openai_revoke.so")
DRIVER = os.path.join(BUILDDIR, "tests", "integration", "pam_driver")
CLI = os.path.join(BUILDDIR, "tools", "openai-revoke")
SUFFIX = slapdtest.SUFFIX
PEOPLE = "ou=people," + SUFFIX
LOCKED = "000001010000Z"     # ppolicy's administrative lock
DRIVER_DEADLINE = 60         # a hung driver is a failure, not a stuck suite


class PamEnv:
    """A temporary directory with the PAM service directory, the config
    file, the spool and the log file.  Context manager; removes it all."""

    def __init__(self, ldap_uri, extra_conf=(), service="pamtest"):
        self.dir = tempfile.mkdtemp(prefix="pamtest.")
        self.confdir = os.path.join(self.dir, "pam.d")
        os.mkdir(self.confdir)
        self.spool = os.path.join(self.dir, "spool")
        self.log = os.path.join(self.dir, "openai-revoke.log")
        self.conf = os.path.join(self.dir, "openai-revoke.conf")
        self.service = service
        self.guest_violations = []
        self.calls = 0
        self.write_conf(ldap_uri, extra_conf)

    def write_conf(self, ldap_uri, extra_conf=()):
        lines = ["# written by tests/integration/test_pam_common.py",
                 "base %s" % SUFFIX,
                 "ldap_uri %s" % ldap_uri,
                 "ldap_timeout 2",
                 "spool_dir %s" % self.spool,
                 "log_file %s" % self.log,
                 "worker none"]
        lines += list(extra_conf)
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def service_file(self, args=("enforce",), module=MODULE, name=None):
        """(Re)write the service file; args are the module's arguments
        (config=THIS_CONF is added first unless args name one)."""
        if not any(a.startswith("config=") for a in args):
            args = ["config=" + self.conf] + list(args)
        words = []
        for a in args:
            # pam.conf(5): an argument with spaces goes in brackets.
            words.append("[%s]" % a.replace("]", "\\]") if (" " in a or "]" in a) else a)
        text = ("# pam_openai_revoke under test\n"
                "account [success=done ignore=ignore default=die] %s %s\n"
                "account required %s acct=authtok_disable_aging\n"
                % (module, " ".join(words), PAM_DEBUG))
        with open(os.path.join(self.confdir, name or self.service), "w") as f:
            f.write(text)

    def acct(self, user, rhost="192.0.2.7", timeout=DRIVER_DEADLINE):
        """Run pam_acct_mgmt for USER; returns (module result name, seconds)."""
        self.calls += 1
        t0 = time.monotonic()
        r = subprocess.run([DRIVER, "acct", self.confdir, self.service, user, rhost],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout)
        elapsed = time.monotonic() - t0
        out = r.stdout.decode("utf-8", "replace").strip()
        err = r.stderr.decode("utf-8", "replace").strip()
        if r.returncode == 3:
            # The call happened but the module touched the application's
            # process state: recorded here, asserted by the test at the end.
            self.guest_violations.append((user, err))
        elif r.returncode != 0:
            raise AssertionError("pam_driver exited %d: %s %s" % (r.returncode, out, err))
        if err:
            # Sanitizer reports and libpam complaints land here: show them.
            for line in err.splitlines():
                print("# driver stderr: " + line, flush=True)
        return ("PAM_IGNORE" if out == IGNORE_MARKER else out), elapsed

    def jobs(self, state="queue"):
        """The jobs in spool_dir/STATE, parsed: [(name, dict)]."""
        d = os.path.join(self.spool, state)
        out = []
        if not os.path.isdir(d):
            return out
        for name in sorted(os.listdir(d)):
            with open(os.path.join(d, name)) as f:
                out.append((name, json.load(f)))
        return out

    def all_jobs(self):
        n = 0
        for st in ("tmp", "queue", "active", "deferred", "held", "failed"):
            d = os.path.join(self.spool, st)
            if os.path.isdir(d):
                n += len(os.listdir(d))
        return n

    def log_lines(self):
        try:
            with open(self.log, encoding="utf-8", errors="replace") as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def clear(self):
        """Forget queued jobs and log lines between cases."""
        if os.path.isdir(self.spool):
            shutil.rmtree(self.spool)
        if os.path.exists(self.log):
            os.unlink(self.log)

    def close(self):
        if os.environ.get("PAMTEST_KEEP"):
            print("# kept %s" % self.dir, flush=True)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def directory(s, people):
    """Base entries plus PEOPLE: [(uid, mail, locked)] in slapd S."""
    s.populate_base()
    dns = {}
    for uid, mail, locked in people:
        extra = {"pwdAccountLockedTime": LOCKED} if locked else None
        dns[uid] = s.add_person(uid, mail=mail, extra=extra)
    return dns
