"""slapd as the unprivileged openldap user (docs/SECURITY.md, "Running
unprivileged"): with the files owned and moded as that page's table says,
the plugin removes a disabled account; a key file slapd's user cannot read,
or a spool others may write in, stops slapd with a message naming the file.
And `make install DESTDIR=...` creates the spool 0700 and the configuration
directory 0750."""
import grp
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tap import ok, is_eq, diag, run, skip_all  # noqa: E402
from slapdtest import wait_for  # noqa: E402
from test_plugin_common import PluginEnv, PLUGIN, BUILDDIR, dn_of, org_user  # noqa: E402

USER = "openldap"
if not os.path.exists(PLUGIN):
    skip_all("%s not built" % PLUGIN)
if os.geteuid() != 0:
    skip_all("needs root to run slapd as %s and to chown" % USER)
try:
    OL_UID = pwd.getpwnam(USER).pw_uid
    OL_GID = grp.getgrnam(USER).gr_gid
except KeyError:
    skip_all("no %s user (Debian's slapd package creates it)" % USER)


def _others_can_enter(d):
    d = os.path.abspath(d)
    while True:
        if not os.stat(d).st_mode & 0o001:
            return False
        if d == "/":
            return True
        d = os.path.dirname(d)


# slapd's user must reach the test's files: a TMPDIR below a private home
# would make every check here fail for the wrong reason.
if not _others_can_enter(tempfile.gettempdir()):
    tempfile.tempdir = "/tmp"


def place(path, uid, gid, mode):
    os.chown(path, uid, gid)
    os.chmod(path, mode)


def lay_out(env, key_owner=None, spool_mode=0o700):
    """The table of docs/SECURITY.md, in the test's directory: configuration
    directory root:openldap 0750, configuration and map file root:openldap
    0640, key openldap:openldap 0600, spool openldap:openldap 0700, the
    plugin root:root 0644 (a copy: the build tree may sit below a directory
    only root can enter).  The log_file lives in a directory of its own that
    slapd's user may create files in."""
    place(env.dir, 0, OL_GID, 0o750)
    libdir = env.path("lib")
    os.mkdir(libdir)
    place(libdir, 0, 0, 0o755)
    so = os.path.join(libdir, "openai_revoke.so")
    shutil.copyfile(PLUGIN, so)
    place(so, 0, 0, 0o644)
    logdir = env.path("logs")
    os.mkdir(logdir)
    place(logdir, OL_UID, OL_GID, 0o700)
    env.logfile = os.path.join(logdir, "log")
    os.mkdir(env.spool)
    place(env.spool, OL_UID, OL_GID, spool_mode)
    mapfile = env.path("users.map")
    with open(mapfile, "w") as f:
        f.write("robot -\n")
    place(mapfile, 0, OL_GID, 0o640)
    env.extra.update({"log_file": env.logfile, "map_file": mapfile})
    env.write_conf()
    place(env.conf, 0, OL_GID, 0o640)
    owner = (OL_UID, OL_GID) if key_owner is None else key_owner
    place(env.keyfile, owner[0], owner[1], 0o600)
    env.slapd.plugin_lines = ["plugin postoperation %s openai_revoke_init %s" % (so, env.conf)]
    return so


def proc_uid(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Uid:"):
                return [int(x) for x in line.split()[1:]]
    return None


def test_works_unprivileged():
    with PluginEnv(users=[org_user("alice"), org_user("robot")], start_slapd=False,
                   slapd_kw={"user": USER}) as env:
        lay_out(env)
        env.slapd.start()
        env.slapd.populate_base()
        is_eq(proc_uid(env.slapd.proc.pid), [OL_UID] * 4,
              "slapd runs as %s (real, effective, saved, fs uid)" % USER)
        dn = env.add_person("alice")
        env.lock(dn)
        env.wait_removed("user-alice")
        ok(env.wait_log("action=removed", "user-alice"),
           "as %s the plugin removed the disabled account" % USER)
        env.lock(env.add_person("robot"))
        ok(env.wait_log("action=exempt", "robot"),
           "the map file (root:openldap 0640) was read: robot is exempt")
        ok("user-robot" in env.fake.user_ids(), "and stays a member")
        st = os.stat(env.logfile)
        ok(st.st_uid == OL_UID, "the log_file was created by %s" % USER)
        owned = []
        for root, dirs, files in os.walk(env.spool):
            for n in [root] + [os.path.join(root, x) for x in dirs + files]:
                s = os.lstat(n)
                if s.st_uid != OL_UID:
                    owned.append(n)
                if stat.S_ISDIR(s.st_mode) and s.st_mode & 0o077:
                    owned.append("%s mode %o" % (n, s.st_mode & 0o7777))
                if stat.S_ISREG(s.st_mode) and s.st_mode & 0o077:
                    owned.append("%s mode %o" % (n, s.st_mode & 0o7777))
        is_eq(owned, [], "everything in the spool belongs to %s, directories 0700, files "
              "0600 or stricter" % USER)


def expect_refusal(env, what, pattern):
    rc, err = env.slapd.run_fail()
    ok(rc != 0, "%s: slapd refuses to start (exit %d)" % (what, rc))
    ok(re.search(pattern, err), "%s: the message names the file: /%s/" % (what, pattern)) \
        or diag(err[-1500:])


def test_key_unreadable():
    with PluginEnv(start_slapd=False, slapd_kw={"user": USER}) as env:
        lay_out(env, key_owner=(0, 0))
        expect_refusal(env, "key file root:root 0600",
                       re.escape(env.keyfile) + r".*(Permission denied|cannot open)")
        # the control: the same layout with the key given to openldap starts
        place(env.keyfile, OL_UID, OL_GID, 0o600)
        env.slapd.start()
        ok(env.slapd.running(), "control: with the key owned by %s, slapd starts" % USER)


def test_spool_writable():
    for mode, who in ((0o770, "its group"), (0o707, "everyone")):
        with PluginEnv(start_slapd=False, slapd_kw={"user": USER}) as env:
            lay_out(env, spool_mode=mode)
            expect_refusal(env, "spool mode %04o" % mode,
                           re.escape(env.spool) + r".*writable by %s" % who)
            is_eq(os.listdir(env.spool), [], "spool mode %04o: nothing was written in it" % mode)


def test_make_install():
    builddir = BUILDDIR
    if not os.path.exists(os.path.join(builddir, "Makefile")):
        ok(False, "no Makefile in %s" % builddir)
        return
    dest = tempfile.mkdtemp(prefix="installtest.")
    try:
        env = dict(os.environ)
        for v in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "DESTDIR"):
            env.pop(v, None)
        # umask 0: the modes must come from the install rules, not the umask
        old = os.umask(0)
        try:
            r = subprocess.run(["make", "-C", builddir, "install", "DESTDIR=" + dest],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, env=env, timeout=600)
        finally:
            os.umask(old)
        out = r.stdout.decode("utf-8", "replace")
        is_eq(r.returncode, 0, "make install DESTDIR=... succeeds") or diag(out[-2000:])
        vals = {}
        for v in ("localstatedir", "sysconfdir"):
            m = re.search(r"^%s = (.*)$" % v,
                          open(os.path.join(builddir, "Makefile")).read(), re.M)
            vals[v] = m.group(1).strip() if m else None
        prefix = re.search(r"^prefix = (.*)$", open(os.path.join(builddir, "Makefile")).read(),
                           re.M).group(1).strip()

        def expand(s):
            return s.replace("${prefix}", prefix).replace("$(prefix)", prefix)
        spool = dest + expand(vals["localstatedir"]) + "/spool/openai-revoke"
        confdir = dest + expand(vals["sysconfdir"]) + "/openai-revoke"
        for path, want in ((spool, 0o700), (confdir, 0o750)):
            try:
                st = os.stat(path)
                is_eq(oct(st.st_mode & 0o7777), oct(want), "%s created mode %o"
                      % (path[len(dest):], want))
            except FileNotFoundError:
                ok(False, "%s created" % path[len(dest):])
        sos = [os.path.join(root, n) for root, _d, files in os.walk(dest) for n in files
               if n in ("openai_revoke.so", "pam_openai_revoke.so")]
        ok(sos, "the loadable objects are installed")
        bad = ["%s %o" % (p[len(dest):], os.stat(p).st_mode & 0o7777) for p in sos
               if os.stat(p).st_mode & 0o022]
        is_eq(bad, [], "no installed object is writable by group or others")
        # a second install over the first keeps the modes
        os.chmod(spool, 0o700)
        r = subprocess.run(["make", "-C", builddir, "install", "DESTDIR=" + dest],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, env=env, timeout=600)
        ok(r.returncode == 0 and os.stat(spool).st_mode & 0o7777 == 0o700,
           "installing again keeps the spool 0700")
    finally:
        shutil.rmtree(dest, ignore_errors=True)


sys.exit(run([
    ("works unprivileged", test_works_unprivileged),
    ("key unreadable", test_key_unreadable),
    ("spool writable", test_spool_writable),
    ("make install", test_make_install),
]))
