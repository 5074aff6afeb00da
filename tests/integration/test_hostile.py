"""Hostile directory values through the real plugin (issue 8): accounts
whose uid, mail, cn and DN hold quotes, newlines and CRs, filter
metacharacters, backslash escapes, UTF-8 and 10 KB values are disabled.
Each gives exactly one audit line per fact (no forged event=/action= line:
every log_file line is parsed), the spool records carry the values exactly,
and the command line's USER lookups built from them (directory_read_user)
find that account and no other."""
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tap import ok, is_eq, diag, run, skip_all  # noqa: E402
from slapdtest import wait_for  # noqa: E402
from test_plugin_common import PluginEnv, PLUGIN, PEOPLE  # noqa: E402
from test_cli_common import PROG  # noqa: E402

if not os.path.exists(PLUGIN) or not os.access(PROG, os.X_OK):
    skip_all("the plugin or the command line is not built")

BIG = "x" * 10240
# (tag, uid, mail, cn); tag names the OpenAI user (user-<tag>)
ACCOUNTS = [
    ("quote", 'q"uo\'te', 'q"uo\'te@example.com', 'say "hi"'),
    ("newline", "nl\nevent=forged1 action=removed", "newline@example.com",
     "cn\nevent=forged2 action=removed dn=\"x\""),
    ("cr", "cr\revent=forged3 action=removed", "cr@example.com", "c\r\nevent=forged4"),
    ("star", "a*)(uid=*", "star*)(mail=*@example.com", "*"),
    ("paren", "p(x)|(uid=*)", "paren(x)@example.com", "(cn=*)"),
    ("backslash", "b\\5c\\2a\\", "back\\slash@example.com", "\\"),
    ("nulesc", "n\\00ul", "nulesc\\00@example.com", "\\00\\00"),
    ("utf8", "j\u00fcrgen-\u65e5\u672c-\U0001f511", "utf8@example.com",
     "J\u00fcrgen \u65e5\u672c \u2028 line\u2029sep"),
    ("big", "big" + BIG, "big@example.com", BIG),
    ("bigmail", "bigmail", "bigmail" + BIG + "@example.com", "bigmail"),
    ("hash", "#lead, trail ", "hash@example.com", " spaced "),
]
# A bystander the wildcards above would hit if a filter were not escaped.
BYSTANDER = ("bystander", "abystander", "bystander@example.com", "bystander")


def dn_escape(v):
    """RFC 4514 value escaping (what an administrator's tool writes)."""
    out = []
    for i, ch in enumerate(v):
        if ch in ',+"\\<>;=' or (ch == "#" and i == 0) or (ch == " " and i in (0, len(v) - 1)):
            out.append("\\" + ch)
        elif ch in "\n\r":
            out.append("\\%02X" % ord(ch))
        else:
            out.append(ch)
    return "".join(out)


def dn_for(tag, uid):
    if len(uid) > 1000:
        return "sn=%s,%s" % (tag, PEOPLE)   # slapd refuses a 10 KB DN itself
    return "uid=%s,%s" % (dn_escape(uid), PEOPLE)


# key=value parser for the log_file: TIME LEVEL MSG, MSG = pairs separated
# by one space, a value bare (no space, quote) or "..." with \-escapes.
PAIR = re.compile(r'([a-z0-9_]+)=("(?:[^"\\]|\\.)*"|[^ "]*)(?: |$)')
LINE = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (debug|info|notice|warning|err|crit|alert|'
                  r'emerg) (.*)$')


def unquote(v):
    if not v.startswith('"'):
        return v
    body = v[1:-1]
    raw = bytearray()
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            n = body[i + 1]
            if n == "x":
                raw.append(int(body[i + 2:i + 4], 16))
                i += 4
                continue
            raw += {"n": b"\n", "r": b"\r", "t": b"\t"}.get(n, n.encode("utf-8"))
            i += 2
            continue
        raw += c.encode("utf-8")
        i += 1
    return raw.decode("utf-8", "replace")


def parse_pairs(msg):
    """[(key, value)] if MSG is wholly key=value pairs, else None."""
    pairs, pos = [], 0
    while pos < len(msg):
        m = PAIR.match(msg, pos)
        if not m:
            return None
        pairs.append((m.group(1), unquote(m.group(2))))
        pos = m.end()
    return pairs


def read_log(path):
    with open(path, "rb") as f:
        data = f.read()
    return data.decode("utf-8", "replace").split("\n")[:-1] if data else []


def cli(env, conf, *args):
    e = dict(os.environ)
    e.pop("OPENAI_ADMIN_KEY", None)
    r = subprocess.run([PROG, "-c", conf] + list(args), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e, timeout=120)
    return (r.returncode, r.stdout.decode("utf-8", "replace"),
            r.stderr.decode("utf-8", "replace"))


def test_hostile():
    accounts = ACCOUNTS + [BYSTANDER]
    users = [{"id": "user-" + tag, "email": mail, "role": "reader", "name": cn[:100]}
             for tag, _uid, mail, cn in accounts]
    # worker none: the jobs stay in the spool to be read, then the command
    # line's worker drains them
    with PluginEnv(conf={"log_level": "debug", "worker": "none"}, users=users) as env:
        stored = {}
        for tag, uid, mail, cn in accounts:
            dn = dn_for(tag, uid)
            env.slapd.add_entry(dn, {"objectClass": "inetOrgPerson", "uid": uid, "cn": cn,
                                     "sn": tag, "mail": mail, "description": cn})
            found = env.slapd.search(PEOPLE, "(sn=%s)" % tag, ["uid", "mail"])
            ok(len(found) == 1 and found[0][1]["uid"] == [uid] and found[0][1]["mail"] == [mail],
               "%s: account stored with its values intact" % tag) or diag(repr(found)[:300])
            stored[tag] = found[0][0] if found else dn
        for tag, uid, mail, cn in ACCOUNTS:
            env.lock(stored[tag])

        # 1. the spool: one job per account, values exactly as in the directory
        jobs = env.spool_jobs("queue")
        is_eq(len(jobs), len(ACCOUNTS), "one job queued per disabled account (not the bystander)")
        by_dn = {j.get("dn"): j for j in jobs}
        for tag, uid, mail, cn in ACCOUNTS:
            j = by_dn.get(stored[tag])
            ok(j is not None and j.get("uid") == uid and j.get("emails") == [mail],
               "%s: the spool record round-trips DN, uid and address" % tag) \
                or diag(repr(j)[:300] + " / " + repr(stored[tag])[:200])
        names = os.listdir(os.path.join(env.spool, "queue"))
        ok(all(re.fullmatch(r"\d+-\d+-\d+", n) for n in names),
           "spool file names never derive from a value")

        # 2. the command line's USER lookups (directory_read_user)
        conf = env.path("cli.conf")
        c = env.conf_dict()
        c.update({"ldap_uri": env.slapd.ldapi, "ldap_timeout": "5", "worker": None})
        with open(conf, "w") as f:
            f.write("".join("%s %s\n" % (k, v) for k, v in c.items() if v is not None))
        os.chmod(conf, 0o600)
        for tag, uid, mail, cn in ACCOUNTS + [BYSTANDER]:
            if re.search(r"[\x00-\x1f]", uid) or len(uid) > 1000:
                continue  # the command line refuses such a USER (test_cli_map.py)
            rc, out, err = cli(env, conf, "map", uid)
            if "=" in uid:
                # a USER with '=' is a DN to the command line: refused, finds nothing
                ok(rc != 0 and "-> " not in out and "not a valid DN" in err,
                   "map %r: taken as a DN and refused" % uid) or diag(out + err)
            elif tag == "bigmail":
                ok(rc == 0 and "-> not a member" in out,
                   "map %r: its 10 KB address is looked up by nobody" % uid) or diag(out + err)
            else:
                ok(rc == 0 and out.count("-> user-") == 1 and ("-> user-%s " % tag) in out,
                   "map %r finds that account and no other" % uid) or diag(out + err)
            if tag == "bigmail":
                continue
            rc, out, err = cli(env, conf, "map", stored[tag])
            ok(rc == 0 and out.count("-> user-") == 1 and ("-> user-%s " % tag) in out,
               "map by its DN %r finds it too" % stored[tag][:60]) or diag(out + err)
        for user in ("*", "a*", "*)(uid=*", "p(x)|(uid=*", "b\\5c*", "n\\00*", "n\\5c00ul"):
            rc, out, err = cli(env, conf, "map", user)
            ok("-> user-" not in out, "map %r matches nobody" % user) or diag(out + err)
        for user in ("q\"uo'te", "b\\5c\\2a\\", "n\\00ul", stored["star"]):
            rc, out, err = cli(env, conf, "revoke", "--dry-run", "--now", user)
            ok(rc == 0 and out.count("would") == 1 and "bystander" not in out + err,
               "revoke --dry-run --now %r: that account only" % user) or diag(out + err)

        # 3. drain: every account removed, the bystander kept
        rc, out, err = cli(env, conf, "run", "--once")
        is_eq(rc, 1, "run --once drains the spool, exit 1: one job failed") or diag(out + err)
        ids = env.fake.user_ids()
        is_eq(sorted(i for i in ids), ["user-bigmail", "user-bystander"],
              "every hostile account removed but the 10 KB address; the bystander kept")
        failed = env.spool_jobs("failed")
        ok(len(failed) == 1 and failed[0]["dn"] == stored["bigmail"] and
           "address longer than" in (failed[0].get("last_error") or ""),
           "the 10 KB address is refused, the job kept in failed/ for a person") \
            or diag(repr(failed)[:300])
        is_eq(env.spool_jobs("queue") + env.spool_jobs("deferred"), [], "nothing else left")

        # 4. the log: every line well formed, one line per fact, nothing forged
        lines = read_log(env.logfile)
        bad = [l for l in lines if not LINE.match(l)]
        is_eq(bad, [], "every log_file line is TIME LEVEL MESSAGE")
        audit = []
        for l in lines:
            m = LINE.match(l)
            if not m:
                continue
            msg = m.group(2)
            if "action=" in msg or "event=" in msg:
                pairs = parse_pairs(msg)
                if pairs is None:
                    ok(False, "an audit line parses as key=value pairs: %r" % l[:300])
                    continue
                keys = [k for k, _v in pairs]
                if len(set(keys)) != len(keys):
                    ok(False, "no key twice in one line: %r" % l[:300])
                audit.append(dict(pairs))
        forged = [a for a in audit if "forged" in a.get("event", "") + a.get("action", "")]
        ok(any("forged" in l for l in lines), "(the would-be forgeries did reach the log, "
           "inside values)")
        is_eq(forged, [], "no forged event= or action= anywhere")
        ok(not any(re.match(r"^event=forged", l.split(" ", 2)[-1]) for l in lines),
           "no line starts with a forged event")
        for tag, uid, mail, cn in ACCOUNTS:
            outcome = "failed" if tag == "bigmail" else "removed"
            q = [a for a in audit if a.get("action") == "queued" and a.get("dn") == stored[tag]]
            is_eq(len(q), 1, "%s: exactly one action=queued line, its dn= parses back to the "
                  "stored DN" % tag)
            ev = q[0].get("event") if q else None
            r = [a for a in audit if a.get("action") in ("removed", "failed")
                 and a.get("event") == ev]
            ok(len(r) == 1 and r[0].get("action") == outcome and r[0].get("dn") == stored[tag] and
               (outcome == "failed" or r[0].get("openai_user") == "user-" + tag),
               "%s: exactly one action=%s line for its event, with its DN" % (tag, outcome)) \
                or diag(repr(r)[:300])
            if len(uid) < 1000:
                ok(all(a.get("uid") in (None, uid) for a in q + r),
                   "%s: uid= parses back to the value" % tag)
        ok(max(len(l.encode()) for l in lines) < 20000, "log lines are bounded (10 KB values)")


sys.exit(run([
    ("hostile values", test_hostile),
]))
