"""FakeOrg: runs tests/fake-openai/fake_openai.py as a subprocess for one
test (free port, optional HTTPS with a throw-away CA) and drives its control
endpoints.  Use it as a context manager so the server is always stopped."""

import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

DEFAULT_KEY = "sk-admin-test-0123456789abcdef"
START_DEADLINE = 20.0


def srcdir():
    d = os.environ.get("abs_top_srcdir")
    if d:
        return d
    return os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def fake_script():
    return os.path.join(srcdir(), "tests", "fake-openai", "fake_openai.py")


def make_tls_material(directory):
    """Writes ca.pem, server.{pem,key}, wronghost.{pem,key} and
    untrusted.{pem,key} into directory (see tests/fake-openai/mkcert.sh)."""
    script = os.path.join(srcdir(), "tests", "fake-openai", "mkcert.sh")
    try:
        subprocess.run(["sh", script, directory], check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    except (OSError, subprocess.CalledProcessError) as e:
        raise FakeOrgError("cannot make TLS material with %s (is openssl installed?): %s"
                           % (script, e))
    return directory


class FakeOrgError(Exception):
    pass


class FakeOrg:
    """tls: None/False (HTTP), True or "trusted" (certificate signed by the
    test CA), "untrusted" (self-signed; .cafile still names the test CA, so a
    correct client refuses it), "wronghost" (CA-signed, wrong name)."""

    def __init__(self, tls=False, key=DEFAULT_KEY, tmpdir=None, verbose=False):
        if tls is True:
            tls = "trusted"
        if tls not in (False, None, "trusted", "untrusted", "wronghost"):
            raise ValueError("tls must be False, True, 'untrusted' or 'wronghost'")
        self.tls = tls or None
        self.key = key
        self._own_dir = tmpdir is None
        self.dir = tmpdir or tempfile.mkdtemp(prefix="fakeorg-")
        self.verbose = verbose
        self.proc = None
        self.port = None
        self.cafile = None
        self._ctl_ctx = None

    # ---- lifecycle --------------------------------------------------------------
    def start(self):
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self):
        port_file = os.path.join(self.dir, "fake.port")
        cmd = [sys.executable, fake_script(), "--port", "0", "--port-file", port_file,
               "--key", self.key]
        scheme = "http"
        if self.tls:
            make_tls_material(self.dir)
            self.cafile = os.path.join(self.dir, "ca.pem")
            cert = {"trusted": "server", "untrusted": "untrusted",
                    "wronghost": "wronghost"}[self.tls]
            cmd += ["--tls-cert", os.path.join(self.dir, cert + ".pem"),
                    "--tls-key", os.path.join(self.dir, cert + ".key")]
            scheme = "https"
            # Control calls trust whatever certificate this server presents,
            # with verification still on (the self-signed one is its own anchor).
            self._ctl_ctx = ssl.create_default_context(
                cafile=os.path.join(self.dir, cert + ".pem")
                if self.tls == "untrusted" else self.cafile)
            self._ctl_ctx.check_hostname = self.tls != "wronghost"
        if self.verbose:
            cmd.append("--verbose")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + START_DEADLINE
        while True:
            try:
                with open(port_file) as f:
                    self.port = int(f.read().strip())
                break
            except (OSError, ValueError):
                pass
            if self.proc.poll() is not None:
                raise FakeOrgError("fake_openai.py exited with status %d before listening"
                                   % self.proc.returncode)
            if time.monotonic() > deadline:
                raise FakeOrgError("fake_openai.py did not write %s within %gs"
                                   % (port_file, START_DEADLINE))
            time.sleep(0.02)
        self.base = "%s://127.0.0.1:%d" % (scheme, self.port)
        self.url = self.base + "/v1"

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        if self._own_dir and self.dir and os.path.isdir(self.dir):
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    # ---- control endpoints ---------------------------------------------------------
    def _call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30, context=self._ctl_ctx) as r:
                return json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            raise FakeOrgError("%s %s: %d %s" % (method, path, e.code,
                                                 e.read().decode(errors="replace")))

    def reset(self, users=None, invites=None):
        """Replaces the organization's users and invites (dicts with id, email,
        role, name / status)."""
        self._call("POST", "/_fake/reset", {"users": users or [], "invites": invites or []})

    def users(self, users):
        """Adds (or replaces, by id) users."""
        self._call("POST", "/_fake/users", users)

    def invites(self, invites):
        self._call("POST", "/_fake/invites", invites)

    def generate(self, n, owners=0, domain="example.com"):
        """Adds user-00001.. (uNNNNN@domain); the first `owners` are owners."""
        self._call("POST", "/_fake/generate", {"users": n, "owners": owners, "domain": domain})

    def state(self):
        return self._call("GET", "/_fake/state")

    def user_ids(self):
        return [u["id"] for u in self.state()["users"]]

    def requests(self, since=0):
        """Every API request received (not control ones), oldest first."""
        return self._call("GET", "/_fake/requests?since=%d" % since)

    def clear_requests(self):
        self._call("POST", "/_fake/requests/clear", {})

    def fault(self, action, path=None, method=None, count=1, **kw):
        """Adds one fault, e.g. fault("status", "/v1/organization/users*",
        status=429, headers={"Retry-After": "2"})."""
        f = {"action": action, "path": path, "method": method, "count": count}
        f.update(kw)
        self._call("POST", "/_fake/faults", [f])

    def faults(self, faults):
        self._call("POST", "/_fake/faults", faults)

    def pending_faults(self):
        return self._call("GET", "/_fake/faults")

    def clear_faults(self):
        self._call("POST", "/_fake/faults/clear", {})

    def config(self, **kw):
        """ignore_email_filter=bool, rate_limit=R (0 off), max_limit=N,
        latency=seconds added to every API answer."""
        return self._call("POST", "/_fake/config", kw)

    def wait_requests(self, pred, timeout=10.0):
        """Polls the request log until pred(requests) is true; returns the
        log, or raises FakeOrgError after timeout seconds."""
        deadline = time.monotonic() + timeout
        while True:
            reqs = self.requests()
            if pred(reqs):
                return reqs
            if time.monotonic() > deadline:
                raise FakeOrgError("condition on the fake's request log not met within %gs"
                                   % timeout)
            time.sleep(0.05)

    def spec_violations(self):
        """Requests received so far that the Administration API would not
        accept (see apispec.py)."""
        import apispec
        return apispec.check(self.requests())
