"""openai-revoke: --help, --version, usage errors, and the check command
(configuration, key file, OPENAI_ADMIN_KEY, spool, API, LDAP)."""
import os
import re
import subprocess
import sys

from tap import ok, is_eq, diag, run, skip_all
from test_cli_common import CliEnv, PROG, Result

if not os.access(PROG, os.X_OK):
    skip_all("%s not built" % PROG)


def bare(*args, env=None):
    e = dict(os.environ)
    e.pop("OPENAI_ADMIN_KEY", None)
    e.update(env or {})
    r = subprocess.run([PROG] + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=e, timeout=60)
    return Result(r.returncode, r.stdout.decode("utf-8", "replace"),
                  r.stderr.decode("utf-8", "replace"))


def test_version():
    r = bare("--version")
    is_eq(r.rc, 0, "--version exits 0")
    ok(re.fullmatch(r"openai-revoke \d+\.\d+\.\d+\S*\n", r.out), "--version prints 'openai-revoke VERSION'")
    r = bare("-V")
    ok(r.rc == 0 and r.out.startswith("openai-revoke "), "-V too")


def test_write_error():
    with open("/dev/full", "w") as full:
        r = subprocess.run([PROG, "--help"], stdin=subprocess.DEVNULL, stdout=full,
                           stderr=subprocess.PIPE, timeout=60)
    ok(r.returncode == 1 and b"write error" in r.stderr,
       "a full standard output is a failure, not a silent success")


def test_help():
    r = bare("--help")
    is_eq(r.rc, 0, "--help exits 0")
    for cmd in ("check", "map", "revoke", "queue", "run", "reconcile", "-c, --config", "-v, --verbose",
                "OPENAI_ADMIN_KEY"):
        ok(cmd in r.out, "--help mentions %s" % cmd)
    ok(r.err == "", "--help writes nothing on stderr")
    for cmd in ("check", "map", "revoke", "queue", "run", "reconcile"):
        r = bare(cmd, "--help")
        ok(r.rc == 0 and r.out.startswith("Usage: openai-revoke") and (" %s" % cmd) in r.out,
           "%s --help exits 0 with its usage" % cmd)
        r = bare("-c", "/nonexistent/conf", cmd, "-h")
        ok(r.rc == 0, "%s -h needs no configuration" % cmd)


def test_usage_errors():
    cases = [
        ((), "no command"),
        (("frobnicate",), "unknown command"),
        (("--frob",), "unknown global option"),
        (("-c",), "-c without FILE"),
        (("check", "extra"), "check with an argument"),
        (("check", "--frob"), "unknown check option"),
        (("map",), "map without USER"),
        (("revoke",), "revoke without USER"),
        (("revoke", "--later", "x@example.com"), "unknown revoke option"),
        (("queue", "frob"), "unknown queue subcommand"),
        (("queue", "show"), "queue show without ID"),
        (("queue", "drop"), "queue drop without ID"),
        (("queue", "retry"), "queue retry without ID"),
        (("queue", "show", "../../etc/passwd"), "queue show with a path as ID"),
        (("queue", "list", "x"), "queue list with an argument"),
        (("queue", "show", "a", "b"), "queue with too many arguments"),
        (("run", "now"), "run with an argument"),
        (("run", "--twice"), "unknown run option"),
        (("reconcile", "--bogus"), "unknown reconcile option"),
        (("reconcile", "extra"), "reconcile with an argument"),
        (("reconcile", "--include-absent"), "reconcile --include-absent without --apply"),
    ]
    for args, what in cases:
        r = bare("-c", "/nonexistent/openai-revoke.conf", *args)
        is_eq(r.rc, 2, "usage error exits 2: %s" % what)
        ok(r.err.startswith("openai-revoke: ") and r.out == "",
           "usage error explained on stderr only: %s" % what)
        if r.rc != 2:
            diag(repr(r))


def test_missing_config():
    r = bare("-c", "/nonexistent/openai-revoke.conf", "check")
    is_eq(r.rc, 2, "check with a missing configuration exits 2")
    ok("/nonexistent/openai-revoke.conf" in r.err, "the message names the file")
    ok("FAIL config" in r.out, "check prints FAIL config")
    r = bare("-c", "/nonexistent/openai-revoke.conf", "queue", "list")
    is_eq(r.rc, 2, "any command with a missing configuration exits 2")


def test_check_bad_config():
    with CliEnv(ldap=False) as t:
        conf = t.write_file("bad.conf", "# two mistakes\n"
                            "base dc=example,dc=com\n"
                            "frobnicate yes\n"
                            "user_filter (objectClass=person\n"
                            "api_url " + t.fake.url + "\n", 0o644)
        r = t.run("check", conf=conf)
        is_eq(r.rc, 2, "bad configuration: exit 2")
        ok(re.search(re.escape(conf) + r":3: frobnicate: ", r.err),
           "unknown keyword reported as FILE:LINE: keyword: message")
        ok(re.search(re.escape(conf) + r":4: user_filter: ", r.err),
           "and the bad filter too (every problem is printed)")
        ok(all(line.startswith("openai-revoke: ") for line in r.err.splitlines()),
           "every error line starts with 'openai-revoke: '")
        ok("FAIL config" in r.out and "ok " not in r.out, "check stops at the configuration")
        if r.rc != 2:
            diag(repr(r))
        os.chmod(t.conf, 0o666)
        r = t.run("check")
        ok(r.rc == 2 and "too open" in r.err and t.conf in r.err,
           "a world-writable configuration: exit 2, the message names it")
        os.chmod(t.conf, 0o644)
        r = t.run("check", conf=t.dir)
        ok(r.rc == 2 and t.dir in r.err, "a directory as configuration: exit 2")
        conf = t.write_file("nobase.conf", "api_url %s\n" % t.fake.url, 0o644)
        r = t.run("check", conf=conf)
        ok(r.rc == 2 and "base" in r.err, "a configuration without base: exit 2, says base")


def test_check_key_file():
    with CliEnv(ldap=False) as t:
        os.chmod(t.keyfile, 0o644)
        r = t.run("check")
        is_eq(r.rc, 2, "world-readable key file: check exits 2 (a configuration error)")
        ok(re.search(r"FAIL admin key: .*%s" % re.escape(t.keyfile), r.out),
           "FAIL admin key names the file")
        ok("0644" in r.out, "and its mode")
        ok(re.search(r"FAIL API .*not tried", r.out), "the API is not tried without a key")
        ok("ok   spool" in r.out, "the other items are still checked")
        r = t.run("map", "x@example.com")
        is_eq(r.rc, 2, "map with a world-readable key file exits 2 too")
        r = t.run("run", "--once")
        is_eq(r.rc, 2, "run with a world-readable key file exits 2 too")
        os.chmod(t.keyfile, 0o600)

        t.write_file("empty.key", "\n", 0o600)
        conf = t.write_conf("empty.conf", admin_key_file=t.path("empty.key"))
        r = t.run("check", conf=conf)
        ok(r.rc == 2 and "FAIL admin key" in r.out, "an empty key file: exit 2")

        conf = t.write_conf("missing.conf", admin_key_file=t.path("nope.key"))
        r = t.run("check", conf=conf)
        ok(r.rc == 2 and "FAIL admin key" in r.out and "nope.key" in r.out,
           "a missing key file: exit 2, named")

        # OPENAI_ADMIN_KEY replaces the file (which may then be missing).
        r = t.run("check", conf=conf, env={"OPENAI_ADMIN_KEY": t.key})
        ok("ok   admin key: from OPENAI_ADMIN_KEY" in r.out, "OPENAI_ADMIN_KEY is used and said so")
        ok(re.search(r"^ok   API ", r.out, re.M), "and the API accepts it")
        ok(re.search(r"^FAIL LDAP ", r.out, re.M) and r.rc == 1,
           "no directory: FAIL LDAP, exit 1 (not a configuration error)")
        for bad, why in (("sk-a b", "white space"), ("sk-a\x01b", "control"), ("  \n", "empty"),
                         ("sk-" + "a" * 5000, "longer")):
            r = t.run("check", conf=conf, env={"OPENAI_ADMIN_KEY": bad})
            ok(r.rc == 2 and re.search(r"^FAIL admin key: OPENAI_ADMIN_KEY .*%s" % why, r.out, re.M),
               "an unusable OPENAI_ADMIN_KEY (%s): FAIL admin key, exit 2" % why)
        r = t.run("check", conf=conf, env={"OPENAI_ADMIN_KEY": "  %s\n" % t.key})
        ok(r.rc == 1 and "ok   API" in r.out, "surrounding white space is stripped")
        r = t.run("check", conf=conf, env={"OPENAI_ADMIN_KEY": "sk-wrong-key"})
        ok(r.rc == 1 and re.search(r"^FAIL API .*auth", r.out, re.M | re.I),
           "a wrong key: FAIL API with the auth class, exit 1")
        ok(t.key_seen() == [], "the admin key appears in no output, log or spool file")
        ok(t.sanitizer_reports() == [], "no sanitizer report")
        ok("sk-wrong-key" not in "".join(t.outputs) + t.log(),
           "nor does a wrong key")


def test_check_all_good():
    with CliEnv(ldap=True) as t:
        r = t.run("check")
        is_eq(r.rc, 0, "a good configuration: check exits 0")
        lines = r.out.splitlines()
        ok(all(l.startswith("ok   ") for l in lines) and len(lines) >= 6,
           "every item is 'ok': %s" % " | ".join(lines))
        for what in ("config", "admin key: " + t.keyfile, "spool", "API", "LDAP", "LDAP base"):
            ok(any(l.startswith("ok   " + what) for l in lines), "check reports %s" % what)
        ok(os.path.isdir(os.path.join(t.spool, "queue")), "the spool exists after check")
        reqs = t.fake.requests()
        ok(len(reqs) == 1 and reqs[0]["path"] == "/v1/organization/users"
           and reqs[0]["method"] == "GET", "check made exactly one API call, a user list")

        # Bind with a DN and a password file; and SASL EXTERNAL over ldapi.
        t.write_file("bindpw", "secret\n", 0o600)
        conf = t.write_conf("bind.conf", ldap_binddn="cn=admin,dc=example,dc=com",
                            ldap_bindpw_file=t.path("bindpw"))
        r = t.run("check", conf=conf)
        ok(r.rc == 0 and "bound: cn=admin" in r.out, "simple bind with ldap_bindpw_file")
        t.write_file("badpw", "wrong\n", 0o600)
        conf = t.write_conf("badbind.conf", ldap_binddn="cn=admin,dc=example,dc=com",
                            ldap_bindpw_file=t.path("badpw"))
        r = t.run("check", conf=conf)
        ok(r.rc == 1 and re.search(r"^FAIL LDAP .*Invalid credentials", r.out, re.M),
           "a wrong bind password: FAIL LDAP, exit 1")
        os.chmod(t.path("bindpw"), 0o604)
        conf = t.write_conf("openpw.conf", ldap_binddn="cn=admin,dc=example,dc=com",
                            ldap_bindpw_file=t.path("bindpw"))
        r = t.run("check", conf=conf)
        ok(r.rc == 1 and "readable by others" in r.out,
           "a world-readable bind password file is refused")
        conf = t.write_conf("tcp.conf", ldap_uri=t.slapd.ldap)
        r = t.run("check", conf=conf)
        ok(r.rc == 0 and ("ok   LDAP %s " % t.slapd.ldap) in r.out, "ldap:// on a loopback port")
        import socket
        so = socket.socket()
        so.bind(("127.0.0.1", 0))
        closed = so.getsockname()[1]
        so.close()
        conf = t.write_conf("closed.conf", ldap_uri="ldap://127.0.0.1:%d" % closed)
        r = t.run("check", conf=conf)
        ok(r.rc == 1 and re.search(r"^FAIL LDAP ldap://127\.0\.0\.1:%d: .*contact" % closed, r.out, re.M),
           "nothing listening: FAIL LDAP (can't contact), exit 1")
        conf = t.write_conf("sasl.conf", ldap_sasl_mech="EXTERNAL")
        r = t.run("check", conf=conf)
        ok(r.rc == 0 and "bound: EXTERNAL" in r.out, "SASL EXTERNAL over ldapi")
        if r.rc != 0:
            diag(repr(r))
        conf = t.write_conf("nobase.conf", base="dc=nowhere,dc=example,dc=com")
        r = t.run("check", conf=conf)
        ok(r.rc == 1 and re.search(r"^FAIL LDAP base ", r.out, re.M),
           "a base that does not exist: FAIL LDAP base, exit 1")
        ok(t.key_seen() == [], "the admin key appears nowhere")
        ok(t.sanitizer_reports() == [], "no sanitizer report")


def test_check_failures():
    with CliEnv(ldap=False) as t:
        # API down: a port nothing listens on.
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        conf = t.write_conf("down.conf", api_url="http://127.0.0.1:%d/v1" % port)
        r = t.run("check", conf=conf)
        is_eq(r.rc, 1, "API down: check exits 1")
        ok(re.search(r"^FAIL API http://127\.0\.0\.1:%d/v1: " % port, r.out, re.M),
           "FAIL API names the URL")

        t.fake.fault("status", "/v1/organization/users*", status=503, count=-1)
        r = t.run("check")
        ok(r.rc == 1 and re.search(r"^FAIL API .*transient", r.out, re.M | re.I),
           "API answering 503: FAIL API (transient), exit 1")
        t.fake.clear_faults()

        # A directory that accepts the connection and never answers.
        hang = socket.socket()
        hang.bind(("127.0.0.1", 0))
        hang.listen(5)
        try:
            uri = "ldap://127.0.0.1:%d" % hang.getsockname()[1]
            conf = t.write_conf("hang.conf", ldap_uri=uri, ldap_timeout="1")
            r = t.run("check", conf=conf)
            ok(r.rc == 1 and re.search(r"^FAIL LDAP %s: anonymous bind: Timed out" % re.escape(uri),
                                       r.out, re.M), "a directory that never answers: ldap_timeout, FAIL LDAP")
            r = t.run("revoke", "jdoe", conf=conf)
            ok(r.rc == 1 and "Timed out" in r.err and t.spool_files("queue") == [],
               "revoke of a uid then: exit 1, nothing queued")
        finally:
            hang.close()

        os.makedirs(t.spool, exist_ok=True)
        os.chmod(t.spool, 0o777)
        r = t.run("check")
        ok(r.rc == 1 and re.search(r"^FAIL spool ", r.out, re.M),
           "a world-writable spool directory: FAIL spool, exit 1")
        os.chmod(t.spool, 0o700)

        t.write_file("map", "uid=a,dc=example,dc=com\n", 0o644)
        conf = t.write_conf("map.conf", map_file=t.path("map"))
        r = t.run("check", conf=conf)
        ok(r.rc == 2 and re.search(r"^FAIL map file ", r.out, re.M),
           "a broken map file: FAIL map file, exit 2")
        for args in (("map", "a@example.com"), ("revoke", "--now", "a@example.com"),
                     ("run", "--once")):
            r = t.run(*args, conf=conf)
            ok(r.rc == 2 and "map:1:" in r.err, "%s with a broken map file: exit 2, FILE:LINE"
               % " ".join(args))
        ok(t.key_seen() == [], "the admin key appears nowhere")
        ok(t.sanitizer_reports() == [], "no sanitizer report")


def test_spool_not_writable():
    """As a user who may read the spool but not write in it (root may
    always write, so run as nobody when we are root)."""
    if os.geteuid() != 0 or not os.path.exists("/usr/bin/setpriv"):
        ok(True, "# SKIP needs root and setpriv")
        return
    with CliEnv(ldap=False) as t:
        r = t.run("check")
        os.chmod(t.dir, 0o755)
        os.chown(t.keyfile, 65534, 65534)
        os.chown(t.logfile, 65534, 65534) if os.path.exists(t.logfile) else None
        for d in [t.spool] + [os.path.join(t.spool, x) for x in os.listdir(t.spool)]:
            if os.path.isdir(d):
                os.chmod(d, 0o755)
        e = t.env()
        r = subprocess.run(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            PROG, "-c", t.conf, "check"], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e, timeout=60)
        out = r.stdout.decode()
        t.outputs += [out, r.stderr.decode()]
        ok(r.returncode == 1 and re.search(r"^FAIL spool .*(cannot write|Permission denied)", out, re.M),
           "a spool this user cannot write in: FAIL spool, exit 1")
        if r.returncode != 1:
            diag(out + r.stderr.decode())


def test_verbose():
    with CliEnv(ldap=False) as t:
        r = t.run("-v", "check", env={"OPENAI_ADMIN_KEY": t.key})
        ok("GET" in r.err or "/organization/users" in r.err,
           "-v shows debug lines (the API request) on stderr")
        ok(t.key not in r.err and t.key not in r.out, "-v never shows the key")
        r = t.run("check", "-v")
        ok("/organization/users" in r.err, "-v also accepted after the command")


def test_tls():
    with CliEnv(ldap=False, tls=True) as t:
        r = t.run("check")
        ok(re.search(r"^ok   API https://127\.0\.0\.1:\d+/v1", r.out, re.M),
           "HTTPS API verified against ca_file")
        conf = t.write_conf("noca.conf", ca_file=None)
        r = t.run("check", conf=conf)
        ok(r.rc == 1 and re.search(r"^FAIL API https://", r.out, re.M),
           "without ca_file the test CA is not trusted: FAIL API, exit 1")
    with CliEnv(ldap=False, tls="wronghost") as t:
        r = t.run("check")
        ok(r.rc == 1 and re.search(r"^FAIL API https://", r.out, re.M),
           "a certificate for another host name: FAIL API")


def test_options_after_command():
    with CliEnv(ldap=False) as t:
        r = t.run("check", "-c", t.conf, use_conf=False)
        ok(r.out.startswith("ok   config %s\n" % t.conf), "-c accepted after the command")
        r = t.run("check", "--config=" + t.conf, use_conf=False)
        ok(r.out.startswith("ok   config %s\n" % t.conf), "--config=FILE too")
        conf = t.write_conf("nopw.conf", ldap_binddn="cn=admin,dc=example,dc=com")
        r = t.run("check", conf=conf)
        ok(r.rc in (1, 2) and "ldap_bindpw_file" in r.out + r.err,
           "ldap_binddn without ldap_bindpw_file is reported")


def test_terminal():
    """stderr a terminal: log lines there instead of syslog, and a progress
    line for long work that is cleared before results and errors."""
    import pty
    import select
    with CliEnv(ldap=False) as t:
        users = ["u%d@example.com" % i for i in range(6)]
        master, slave = pty.openpty()
        try:
            p = subprocess.Popen([PROG, "-c", t.conf, "map"] + users, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=slave, env=t.env())
            os.close(slave)
            slave = None
            out = p.communicate(timeout=60)[0].decode()
            data = b""
            while select.select([master], [], [], 0.5)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                data += chunk
        finally:
            if slave is not None:
                os.close(slave)
            os.close(master)
        err = data.decode("utf-8", "replace")
        is_eq(p.returncode, 0, "map with stderr on a terminal exits 0")
        is_eq(out.count("-> not a member"), 6, "the answers are on stdout")
        ok("map 1/6" in err and "map 6/6" in err, "a progress line on the terminal")
        ok("\r\x1b[K" in err, "and it is cleared")
        ok("debug" in err, "log lines go to the terminal (log_level debug in this configuration)")
        ok(t.key not in err, "never the key")


sys.exit(run([
    ("version", test_version),
    ("help", test_help),
    ("write error", test_write_error),
    ("usage errors", test_usage_errors),
    ("missing config", test_missing_config),
    ("bad config", test_check_bad_config),
    ("key file", test_check_key_file),
    ("all good", test_check_all_good),
    ("failures", test_check_failures),
    ("verbose", test_verbose),
    ("spool not writable", test_spool_not_writable),
    ("tls", test_tls),
    ("terminal", test_terminal),
    ("options after the command", test_options_after_command),
]))
