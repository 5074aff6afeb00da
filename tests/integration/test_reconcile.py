"""openai-revoke reconcile against a real slapd and the fake organization:
classification of mixed cases, --apply (and --include-absent), an org over
many pages, a directory larger than slapd's sizelimit (paged results), and
the refusal to apply anything on an empty or broken directory answer."""
import json
import os
import subprocess
import tempfile

import tap
from fakeorg import FakeOrg
from slapdtest import Slapd, SUFFIX, ROOTDN, ROOTPW, entry_ldif, wait_for

BUILD = os.environ.get("abs_top_builddir", os.getcwd())
CLI = os.path.join(BUILD, "tools", "openai-revoke")
PEOPLE = "ou=people," + SUFFIX
LOCK = "000001010000Z"


def write(path, text, mode=0o600):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


class Env:
    """A config, key file and spool for one scenario."""

    def __init__(self, tmp, org, slapd, extra="", binddn=ROOTDN, bindpw=ROOTPW):
        self.tmp = tmp
        self.spool = os.path.join(tmp, "spool")
        self.log = os.path.join(tmp, "audit.log")
        key = write(os.path.join(tmp, "admin.key"), org.key + "\n")
        pw = write(os.path.join(tmp, "bind.pw"), bindpw + "\n")
        self.conf = write(os.path.join(tmp, "openai-revoke.conf"), "\n".join([
            "api_url %s" % org.url,
            "admin_key_file %s" % key,
            "base %s" % SUFFIX,
            "user_filter (objectClass=inetOrgPerson)",
            "spool_dir %s" % self.spool,
            "log_file %s" % self.log,
            "ldap_uri %s" % (slapd.ldap if slapd else "ldap://127.0.0.1:9"),
            "ldap_binddn %s" % binddn,
            "ldap_bindpw_file %s" % pw,
            "ldap_timeout 5",
            "log_level debug",
        ]) + "\n" + extra, 0o644)

    def run(self, *args, timeout=120):
        r = subprocess.run([CLI, "-c", self.conf] + list(args), stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
        return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")

    def queued(self):
        d = os.path.join(self.spool, "queue")
        jobs = []
        for n in sorted(os.listdir(d)) if os.path.isdir(d) else []:
            with open(os.path.join(d, n)) as f:
                jobs.append(json.load(f))
        return jobs


def person(uid, mails=(), locked=None, extra=None):
    attrs = {"objectClass": ["inetOrgPerson"], "uid": uid, "cn": uid, "sn": uid}
    if mails:
        attrs["mail"] = list(mails)
    if locked:
        attrs["pwdAccountLockedTime"] = locked
    attrs.update(extra or {})
    return entry_ldif("uid=%s,%s" % (uid, PEOPLE), attrs)


MEMBERS = [
    {"id": "user-alice", "email": "Alice@Example.COM", "role": "reader", "name": "Alice"},
    {"id": "user-bob", "email": "robert@example.com", "role": "reader", "name": "Bob"},
    {"id": "user-carol", "email": "carol@elsewhere.org", "role": "reader", "name": "Carol"},
    {"id": "user-dave2", "email": "dave.personal@mail.example", "role": "reader", "name": "Dave"},
    {"id": "user-erin", "email": "erin@example.com", "role": "reader", "name": "Erin"},
    {"id": "user-frank", "email": "frank@example.com", "role": "owner", "name": "Frank"},
    {"id": "user-grace", "email": "grace@contractor.example", "role": "reader", "name": "Grace"},
    {"id": "user-henry", "email": "henry@example.com", "role": "reader", "name": "Henry"},
    {"id": "user-ivan", "email": "ivan@example.com", "role": "reader", "name": "Ivan"},
]

EXPECT = {
    "user-alice": ("active", "uid=alice," + PEOPLE),
    "user-bob": ("disabled", "uid=bob," + PEOPLE),
    "user-carol": ("disabled", "uid=carol," + PEOPLE),
    "user-dave2": ("disabled", "uid=dave," + PEOPLE),
    "user-erin": ("exempt", "uid=erin," + PEOPLE),
    "user-frank": ("protected", "uid=frank," + PEOPLE),
    "user-grace": ("absent", None),
    "user-henry": ("protected", None),
    "user-ivan": ("active", "uid=ivan2," + PEOPLE),
}


def mixed_directory(s):
    s.populate_base()
    ldif = person("alice", ["alice@example.com"])
    # two addresses; the org knows the second one
    ldif += person("bob", ["bob@example.com", "robert@example.com"], LOCK)
    # matched through the ID attribute (employeeNumber stands in for openaiUserId)
    ldif += person("carol", ["carol@example.com"], LOCK, {"employeeNumber": "user-carol"})
    # matched through the map file
    ldif += person("dave", ["dave@example.com"], LOCK)
    # exempt in the map file
    ldif += person("erin", ["erin@example.com"], LOCK)
    # an owner: protected whatever the directory says
    ldif += person("frank", ["frank@example.com"], LOCK)
    # one address on a disabled and an active account: the active one wins
    ldif += person("ivan", ["ivan@example.com"], LOCK)
    ldif += person("ivan2", ["IVAN@example.com"])
    # a temporary lockout is not a disable
    ldif += person("judy", ["judy@example.com"], "20261203120000Z")
    s.add(ldif)


def mixed_extra(tmp):
    mapf = write(os.path.join(tmp, "users.map"),
                 "# test map\nuid=dave,%s user-dave2\nerin -\n" % PEOPLE, 0o644)
    return ("map_file %s\nuser_id_attribute employeeNumber\n"
            "protect_users henry@example.com\n" % mapf)


def test_mixed():
    with tempfile.TemporaryDirectory() as tmp, FakeOrg() as org, Slapd() as s:
        s.start()
        mixed_directory(s)
        org.reset(users=MEMBERS)
        env = Env(tmp, org, s, mixed_extra(tmp))

        rc, out, err = env.run("reconcile", "--json", "--all")
        tap.is_eq(rc, 0, "reconcile --json --all exits 0 (stderr: %s)" % err.strip()[:200])
        doc = json.loads(out) if rc == 0 else {"members": [], "summary": {}}
        got = {m["openai_user_id"]: (m["reason"], m["dn"]) for m in doc["members"]}
        for uid, want in sorted(EXPECT.items()):
            tap.is_eq(got.get(uid), want, "%s classified %s" % (uid, want[0]))
        tap.is_eq(doc["summary"], {"active": 2, "disabled": 3, "absent": 1, "protected": 2,
                                   "exempt": 1}, "summary counts every reason")
        m = [x for x in doc["members"] if x["openai_user_id"] == "user-alice"]
        tap.ok(m and m[0]["email"] == "Alice@Example.COM" and m[0]["role"] == "reader",
               "members carry email and role as the org has them")

        rc, out, err = env.run("reconcile", "--json")
        doc = json.loads(out) if rc == 0 else {"members": []}
        tap.ok(rc == 0 and all(x["reason"] != "active" for x in doc["members"])
               and len(doc["members"]) == 7, "without --all, active members are not listed")

        rc, out, err = env.run("reconcile")
        tap.ok(rc == 0 and "user-bob" in out and "disabled" in out and "REASON" in out
               and "user-alice" not in out, "the table lists what needs attention")
        tap.ok("disabled 3" in out, "the table ends with a summary")
        tap.is_eq(env.queued(), [], "reconcile without --apply queues nothing")
        tap.is_eq(len(org.state()["users"]), len(MEMBERS), "and removes nobody")

        rc, out, err = env.run("reconcile", "--apply")
        jobs = env.queued()
        tap.is_eq(rc, 0, "reconcile --apply exits 0")
        tap.is_eq(sorted(j["openai_user_id"] for j in jobs),
                  ["user-bob", "user-carol", "user-dave2"], "--apply queues the disabled members only")
        tap.ok(all(j["source"] == "reconcile" for j in jobs), "jobs name reconcile as their source")

        rc, out, err = env.run("reconcile", "--apply", "--include-absent")
        ids = sorted(j["openai_user_id"] for j in env.queued())
        tap.ok("user-grace" in ids and "user-henry" not in ids and "user-frank" not in ids,
               "--include-absent adds absent members, never protected ones")

        rc, out, err = env.run("run", "--once")
        tap.is_eq(rc, 0, "run --once drains the queue (stderr: %s)" % err.strip()[:300])
        left = sorted(u["id"] for u in org.state()["users"])
        tap.is_eq(left, ["user-alice", "user-erin", "user-frank", "user-henry", "user-ivan"],
                  "the disabled and absent members are gone, everyone else is kept")
        tap.is_eq(org.spec_violations(), [], "every request conforms to the Admin API description")
        with open(env.log) as f:
            log = f.read()
        tap.ok(org.key not in log and org.key not in out + err, "the admin key is never printed")


def test_many_pages():
    with tempfile.TemporaryDirectory() as tmp, FakeOrg() as org, Slapd() as s:
        s.start()
        s.populate_base()
        # generate() makes u00001-u00003 owners; u00004 is locked, u00005 active
        s.add(person("u00004", ["u00004@example.com"], LOCK) + person("u00005", ["U00005@example.com"]))
        org.generate(2500, owners=3)
        org.clear_requests()
        env = Env(tmp, org, s)
        rc, out, err = env.run("reconcile", "--json", "--all")
        doc = json.loads(out) if rc == 0 else {"members": [], "summary": {}}
        tap.is_eq(len(doc["members"]), 2500, "all 2,500 members read")
        lists = [r for r in org.requests() if r["method"] == "GET" and r["path"] == "/v1/organization/users"]
        tap.ok(len(lists) >= 25, "read over %d pages" % len(lists))
        tap.ok(all(r["params"].get("limit") == ["100"] for r in lists), "pages of 100")
        tap.ok(all("after" in r["params"] for r in lists[1:]), "each later page continues after a cursor")
        s_ = doc["summary"]
        tap.is_eq((s_.get("disabled"), s_.get("active"), s_.get("protected"), s_.get("absent")),
                  (1, 1, 3, 2495), "classified: 1 disabled, 1 active, 3 owners protected, the rest absent")


def test_paged_directory():
    # 300 accounts, sizelimit 100: only the paged-results control gets them all
    # (slapd needs size.prtotal for a non-root reader).
    reader = "cn=reader," + SUFFIX
    limits = ['limits dn.exact="%s" size.soft=100 size.hard=100 size.prtotal=unlimited' % reader]
    with tempfile.TemporaryDirectory() as tmp, FakeOrg() as org, \
            Slapd(sizelimit=100, db_lines=limits) as s:
        s.start()
        s.populate_base()
        s.add(entry_ldif(reader, {"objectClass": ["organizationalRole", "simpleSecurityObject"],
                                  "cn": "reader", "userPassword": "readerpw"}))
        s.add("".join(person("u%05d" % i, ["u%05d@example.com" % i], LOCK if i % 50 == 0 else None)
                      for i in range(1, 301)))
        org.generate(300)
        env = Env(tmp, org, s, binddn=reader, bindpw="readerpw")
        rc, out, err = env.run("reconcile", "--json", "--all")
        doc = json.loads(out) if rc == 0 else {"summary": {}}
        tap.is_eq(rc, 0, "reconcile over a directory larger than sizelimit exits 0 (%s)" % err.strip()[:200])
        tap.is_eq((doc["summary"].get("active"), doc["summary"].get("disabled"),
                   doc["summary"].get("absent")), (294, 6, 0),
                  "all 300 entries read through paged results: none absent")

        # The same reader without the paged total: slapd stops at 100 -> refuse.
        s.stop()
        s.db_lines = []
        s.start()
        rc, out, err = env.run("reconcile", "--apply")
        tap.is_eq(rc, 1, "a search cut short by the size limit fails the run")
        tap.ok("part-way" in err or "limit" in err.lower(), "and says why: %s" % err.strip()[:200])
        tap.is_eq(env.queued(), [], "nothing is applied from a partial directory")


def test_refusals():
    with tempfile.TemporaryDirectory() as tmp, FakeOrg() as org, Slapd() as s:
        s.start()
        s.populate_base()  # the base exists, but holds no account
        org.reset(users=MEMBERS)
        env = Env(tmp, org, s)
        rc, out, err = env.run("reconcile", "--apply", "--include-absent")
        tap.is_eq(rc, 1, "an empty directory answer fails the run")
        tap.ok("no entries" in err, "the message says the directory returned nothing")
        tap.is_eq(env.queued(), [], "nothing is queued when the directory is empty")

        s.add(person("alice", ["alice@example.com"]))
        s.stop()
        rc, out, err = env.run("reconcile", "--apply", "--include-absent")
        tap.is_eq(rc, 1, "an unreachable directory fails the run")
        tap.is_eq(env.queued(), [], "nothing is queued when the directory is unreachable")

        s.start()
        org.fault("status", path="/v1/organization/users", method="GET", count=-1, status=503)
        rc, out, err = env.run("reconcile", "--apply", "--include-absent")
        tap.is_eq(rc, 1, "an organization that cannot be read fails the run")
        tap.is_eq(env.queued(), [], "nothing is queued when the org could not be read")

        rc, out, err = env.run("reconcile", "--bogus")
        tap.is_eq(rc, 2, "an unknown option is a usage error")


if __name__ == "__main__":
    raise SystemExit(tap.run([("mixed", test_mixed), ("many pages", test_many_pages),
                              ("paged directory", test_paged_directory),
                              ("refusals", test_refusals)]))
