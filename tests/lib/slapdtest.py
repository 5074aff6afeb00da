"""A throw-away slapd for the integration tests: Debian's stock slapd on a
free loopback port and an ldapi socket in a temporary directory, driven
through the ldap-utils commands (no python-ldap: stdlib only)."""
import base64
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

SLAPD = os.environ.get("SLAPD", "/usr/sbin/slapd")
SCHEMA_DIR = "/etc/ldap/schema"
MODULE_DIR = "/usr/lib/ldap"
SUFFIX = "dc=example,dc=com"
ROOTDN = "cn=admin," + SUFFIX
ROOTPW = "secret"
CONFIG_ROOTDN = "cn=admin,cn=config"


class LdapError(Exception):
    def __init__(self, rc, cmd, out):
        Exception.__init__(self, "%s: exit %d: %s" % (cmd[0], rc, out.strip()))
        self.rc = rc
        self.output = out


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def wait_for(cond, timeout=10.0, step=0.05, what="condition"):
    """Poll COND until it returns a true value; return it, or raise with WHAT."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0fs waiting for %s" % (timeout, what))
        time.sleep(step)


def _ldif_value(attr, value):
    if isinstance(value, bytes):
        raw = value
    else:
        raw = str(value).encode("utf-8")
    safe = (raw and raw[0:1] not in (b" ", b":", b"<") and not raw.endswith(b" ")
            and all(32 <= c < 127 for c in raw))
    if safe:
        return "%s: %s\n" % (attr, raw.decode("ascii"))
    return "%s:: %s\n" % (attr, base64.b64encode(raw).decode("ascii"))


def entry_ldif(dn, attrs):
    """attrs: {name: value or [values]} -> one LDIF record (no changetype)."""
    out = _ldif_value("dn", dn)
    for k, v in attrs.items():
        for x in (v if isinstance(v, (list, tuple)) else [v]):
            out += _ldif_value(k, x)
    return out + "\n"


def parse_ldif(text):
    """ldapsearch -LLL output -> [(dn, {lower-case attr: [values]})]."""
    entries = []
    lines = []
    for raw in text.splitlines():
        if raw.startswith(" ") and lines:
            lines[-1] += raw[1:]
        else:
            lines.append(raw)
    cur = None
    for line in lines + [""]:
        if line == "":
            if cur:
                entries.append(cur)
            cur = None
            continue
        if line.startswith("#"):
            continue
        name, _, rest = line.partition(":")
        if rest.startswith(":"):
            value = base64.b64decode(rest[1:].strip()).decode("utf-8", "replace")
        else:
            value = rest[1:] if rest.startswith(" ") else rest
        if name.lower() == "dn" and cur is None:
            cur = (value, {})
        elif cur is not None:
            cur[1].setdefault(name.lower(), []).append(value)
    return entries


class Slapd:
    """Context manager.  plugin_lines: slapd.conf lines placed after the
    module loads (e.g. 'plugin postoperation /x/openai_revoke.so
    openai_revoke_init /x/conf'); db_lines: extra lines in the database
    section; valgrind: a list of valgrind options to run slapd under."""

    def __init__(self, plugin_lines=(), db_lines=(), global_lines=(), schemas=(),
                 sizelimit=None, valgrind=None, debug="0", ppolicy=True,
                 start_timeout=20.0, env=None, stop_grace=None, cn_config=False,
                 user=None):
        self.dir = tempfile.mkdtemp(prefix="slapdtest.")
        self.dbdir = os.path.join(self.dir, "db")
        os.mkdir(self.dbdir, 0o700)
        self.conf = os.path.join(self.dir, "slapd.conf")
        self.sock = os.path.join(self.dir, "ldapi")
        self.ldapi = "ldapi://" + self.sock.replace("/", "%2F")
        self.port = None
        self.ldap = None
        self.plugin_lines = list(plugin_lines)
        self.db_lines = list(db_lines)
        self.global_lines = list(global_lines)
        self.schemas = list(schemas)
        self.sizelimit = sizelimit
        self.valgrind = valgrind
        self.valgrind_log = os.path.join(self.dir, "valgrind.%p.log")
        self.debug = debug
        self.ppolicy = ppolicy
        self.start_timeout = start_timeout
        self.env = dict(env or {})
        # seconds stop() waits before SIGKILL instead of failing (for slapd
        # under the ASan runtime, which can hang in its exit handlers)
        self.stop_grace = stop_grace
        # cn_config: slapd.conf is converted once into a cn=config directory
        # (slaptest -F) and slapd runs from that, writable as CONFIG_ROOTDN
        self.cn_config = cn_config
        self.confdir = os.path.join(self.dir, "slapd.d")
        if cn_config:
            os.mkdir(self.confdir, 0o700)
        # user: "name" or "name:group" -- slapd -u/-g drops to it after
        # opening its listeners; the files slapd writes are chowned to it
        self.user = user
        self.proc = None
        self.stderr_path = os.path.join(self.dir, "slapd.stderr")
        self.starts = 0

    # -- configuration -----------------------------------------------------
    def write_conf(self):
        lines = ["# written by tests/lib/slapdtest.py"]
        for s in ("core", "cosine", "inetorgperson", "nis"):
            lines.append("include %s/%s.schema" % (SCHEMA_DIR, s))
        for s in self.schemas:
            lines.append("include %s" % s)
        lines += ["modulepath %s" % MODULE_DIR, "moduleload back_mdb"]
        if self.ppolicy:
            lines.append("moduleload ppolicy")
        lines += ["pidfile %s/slapd.pid" % self.dir,
                  "argsfile %s/slapd.args" % self.dir]
        if self.sizelimit is not None:
            lines.append("sizelimit %s" % self.sizelimit)
        lines += self.global_lines
        lines += self.plugin_lines
        if self.cn_config:
            lines += ["database config", 'rootdn "%s"' % CONFIG_ROOTDN, "rootpw %s" % ROOTPW]
        lines += ["database mdb",
                  'suffix "%s"' % SUFFIX,
                  'rootdn "%s"' % ROOTDN,
                  "rootpw %s" % ROOTPW,
                  "directory %s" % self.dbdir,
                  "maxsize 67108864",
                  "index objectClass,uid eq"]
        if self.ppolicy:
            lines.append("overlay ppolicy")
        lines += self.db_lines
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    # -- process -----------------------------------------------------------
    def command(self):
        # the first start converts slapd.conf into the (empty) cn=config directory
        cfg = ["-f", self.conf]
        if self.cn_config:
            cfg = ["-F", self.confdir] + (cfg if not os.listdir(self.confdir) else [])
        cmd = [SLAPD] + cfg + ["-h", "%s %s" % (self.ldap, self.ldapi), "-d", str(self.debug)]
        if self.user:
            name, _, group = self.user.partition(":")
            cmd += ["-u", name, "-g", group or name]
        if self.valgrind is not None:
            cmd = ["valgrind", "--log-file=" + self.valgrind_log] + list(self.valgrind) + cmd
        return cmd

    def spawn(self):
        """Start slapd without waiting; returns the Popen."""
        if not self.cn_config or not os.listdir(self.confdir):
            self.write_conf()
        if self.port is None:
            self.port = free_port()
            self.ldap = "ldap://127.0.0.1:%d" % self.port
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        if self.user:
            self._chown_to_user()
        err = open(self.stderr_path, "ab")
        try:
            env = dict(os.environ)
            env.update(self.env)
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                         stdout=err, stderr=err, env=env)
        finally:
            err.close()
        self.starts += 1
        return self.proc

    def _chown_to_user(self):
        import grp
        import pwd
        name, _, group = self.user.partition(":")
        uid = pwd.getpwnam(name).pw_uid
        gid = grp.getgrnam(group or name).gr_gid
        for root, dirs, files in os.walk(self.dir):
            for n in [root] + [os.path.join(root, x) for x in dirs + files]:
                os.lchown(n, uid, gid)

    def start(self):
        self.spawn()
        deadline = time.monotonic() + self.start_timeout * (6 if self.valgrind is not None else 1)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("slapd exited with %d at start-up:\n%s"
                                   % (self.proc.returncode, self.stderr()))
            r = subprocess.run(["ldapwhoami", "-x", "-H", self.ldapi],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
            if r.returncode == 0:
                return self
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("slapd did not answer within the deadline:\n%s" % self.stderr())
            time.sleep(0.05)

    def run_fail(self, timeout=30):
        """Start slapd expecting it to refuse: return (exit status, stderr)."""
        self.spawn()
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("slapd kept running although it should have refused to start")
        return rc, self.stderr()

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL, no chance to clean up (the crash case)."""
        if self.running():
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()
        return self.proc.returncode if self.proc else None

    def stop(self, timeout=60):
        """SIGTERM and wait: slapd closes its databases and plugins."""
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            if self.stop_grace is not None:
                timeout = self.stop_grace
            try:
                self.proc.wait(timeout=timeout * (6 if self.valgrind is not None else 1))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                if self.stop_grace is None:
                    raise AssertionError("slapd did not stop on SIGTERM")
        return self.proc.returncode if self.proc else None

    def restart(self):
        self.stop()
        return self.start()

    def tool(self, name, args=(), input=None, timeout=60):
        """Run slapcat/slapadd/slapindex/slaptest on our configuration."""
        env = dict(os.environ)
        env.update(self.env)
        r = subprocess.run(["/usr/sbin/" + name, "-f", self.conf] + list(args),
                           input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout, env=env)
        return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        try:
            if self.running():
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=self.stop_grace or 30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            if os.environ.get("SLAPDTEST_KEEP"):
                print("# kept %s" % self.dir, flush=True)
            else:
                shutil.rmtree(self.dir, ignore_errors=True)

    # -- LDAP operations ---------------------------------------------------
    def _ldap(self, cmd, input_text=None, check=True):
        full = [cmd[0], "-x", "-H", self.ldapi, "-D", ROOTDN, "-w", ROOTPW] + cmd[1:]
        r = subprocess.run(full, input=(input_text or "").encode("utf-8"),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        out = r.stdout.decode("utf-8", "replace")
        if check and r.returncode != 0:
            raise LdapError(r.returncode, full, out)
        return r.returncode, out

    def config_modify(self, ldif, check=True):
        """ldapmodify against cn=config (cn_config=True)."""
        full = ["ldapmodify", "-x", "-H", self.ldapi, "-D", CONFIG_ROOTDN, "-w", ROOTPW]
        r = subprocess.run(full, input=ldif.encode("utf-8"), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=120)
        out = r.stdout.decode("utf-8", "replace")
        if check and r.returncode != 0:
            raise LdapError(r.returncode, full, out)
        return r.returncode, out

    def add(self, ldif, check=True):
        return self._ldap(["ldapadd"], ldif, check)[0]

    def add_entry(self, dn, attrs, check=True):
        return self.add(entry_ldif(dn, attrs), check)

    def modify(self, dn, changes, check=True):
        """changes: [(op, attr, [values])] with op add/replace/delete."""
        text = _ldif_value("dn", dn) + "changetype: modify\n"
        for op, attr, values in changes:
            text += "%s: %s\n" % (op, attr)
            for v in (values if isinstance(values, (list, tuple)) else [values]):
                text += _ldif_value(attr, v)
            text += "-\n"
        return self._ldap(["ldapmodify"], text + "\n", check)[0]

    def modify_many(self, ldif, check=True):
        """A stream of change records through one ldapmodify (one connection)."""
        return self._ldap(["ldapmodify"], ldif, check)[0]

    def delete(self, dn, check=True):
        return self._ldap(["ldapdelete", dn], None, check)[0]

    def modrdn(self, dn, newrdn, newsuperior=None, deleteold=True, check=True):
        args = ["ldapmodrdn"]
        if deleteold:
            args.append("-r")
        if newsuperior:
            args += ["-s", newsuperior]
        args += [dn, newrdn]
        return self._ldap(args, None, check)[0]

    def search(self, base=SUFFIX, filt="(objectClass=*)", attrs=(), scope="sub"):
        rc, out = self._ldap(["ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-s", scope,
                              "-b", base, filt] + list(attrs), None, False)
        if rc == 32:
            return []
        if rc != 0:
            raise LdapError(rc, ["ldapsearch"], out)
        return parse_ldif(out)

    def populate_base(self, ous=("people", "disabled", "services")):
        ldif = entry_ldif(SUFFIX, {"objectClass": ["dcObject", "organization"],
                                   "o": "Example", "dc": "example"})
        for ou in ous:
            ldif += entry_ldif("ou=%s,%s" % (ou, SUFFIX),
                               {"objectClass": "organizationalUnit", "ou": ou})
        self.add(ldif)

    def add_person(self, uid, mail=None, ou="people", extra=None, classes=("inetOrgPerson",)):
        attrs = {"objectClass": list(classes), "uid": uid, "cn": uid, "sn": uid}
        if mail:
            attrs["mail"] = mail
        attrs.update(extra or {})
        dn = "uid=%s,ou=%s,%s" % (uid, ou, SUFFIX)
        self.add_entry(dn, attrs)
        return dn
