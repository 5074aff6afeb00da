"""openai_revoke.so with syncrepl: the provider that received the write
enqueues it; a consumer, whether the plugin is loaded globally or in its
database section, never enqueues a replicated change a second time."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tap import ok, is_eq, diag, run, skip_all  # noqa: E402
from slapdtest import Slapd, ROOTDN, ROOTPW, SUFFIX, wait_for  # noqa: E402
from test_plugin_common import (PluginEnv, PLUGIN, dn_of, plugin_line, queued_for,  # noqa: E402
                                slapd_env, SANITIZERS)  # noqa: E402

if not os.path.exists(PLUGIN):
    skip_all("%s not built" % PLUGIN)


def consumer(env, provider, where):
    """A consumer of PROVIDER with the plugin loaded globally or in the
    database section, its own spool, worker none and debug logging."""
    conf = env.write_file("consumer-%s.conf" % where,
                          "api_url http://127.0.0.1:9/v1\nadmin_key_file %s\n"
                          "base ou=people,%s\nspool_dir %s\nworker none\nlog_file %s\n"
                          "log_level debug\n"
                          % (env.keyfile, SUFFIX, env.path("spool-" + where),
                             env.path("log-" + where)), 0o600)
    # slapd 2.5.13 crashes (SIGSEGV in libslapi) when any SLAPI plugin sits in
    # the database section of a refreshAndPersist consumer, even one that
    # does nothing: the per-database case can only be shown with refreshOnly.
    kind = "refreshAndPersist" if where == "global" else "refreshOnly interval=00:00:00:01"
    sync = ('syncrepl rid=001 provider=%s bindmethod=simple binddn="%s" credentials=%s '
            'searchbase="%s" type=%s retry="1 +" attrs="*,+"'
            % (provider.ldap, ROOTDN, ROOTPW, SUFFIX, kind))
    line = plugin_line(conf)
    return Slapd(global_lines=["moduleload syncprov"], env=slapd_env(),
                 stop_grace=10 if SANITIZERS else None,
                 plugin_lines=[line] if where == "global" else [],
                 db_lines=[sync] + ([line] if where == "database" else []))


def log_of(env, where):
    try:
        with open(env.path("log-" + where)) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def t_syncrepl():
    with PluginEnv(conf={"worker": "none"}, start_slapd=False) as env:
        env.slapd.global_lines = ["moduleload syncprov"]
        env.slapd.db_lines = ["overlay syncprov"]
        env.slapd.start()
        env.slapd.populate_base()
        cons = [consumer(env, env.slapd, w) for w in ("global", "database")]
        try:
            for c in cons:
                c.start()
            dn = env.add_person("repl")
            for c in cons:
                wait_for(lambda: c.search(dn, scope="base"), timeout=30,
                         what="the account replicated")
            env.lock(dn)
            ok(queued_for(env, dn), "provider: the lock is queued where the write was made")
            for c in cons:
                wait_for(lambda: c.search(dn, "(pwdAccountLockedTime=000001010000Z)",
                                          scope="base"),
                         timeout=30, what="the lock replicated")
            ok(True, "the lock reached both consumers")
            lines = log_of(env, "database")
            ok([l for l in lines if "action=skip" in l and "why=replicated" in l and "uid=repl" in l],
               "consumer with a per-database plugin saw the change and skipped it as replicated") \
                or diag("\n".join(lines))
            for w in ("global", "database"):
                is_eq([l for l in log_of(env, w) if "action=queued" in l], [],
                      "consumer (%s plugin): nothing queued" % w)
                ok(os.path.isdir(env.path("spool-" + w)), "consumer (%s plugin) started" % w)
                jobs = os.listdir(os.path.join(env.path("spool-" + w), "queue"))
                is_eq(jobs, [], "consumer (%s plugin): spool empty" % w)
            env.slapd.delete(dn)
            ok(queued_for(env, dn) and len(queued_for(env, dn)) == 2,
               "provider: the delete is queued too")
            for c in cons:
                wait_for(lambda: not c.search(dn, scope="base"), timeout=30,
                         what="the delete replicated")
            for w in ("global", "database"):
                is_eq([l for l in log_of(env, w) if "action=queued" in l], [],
                      "consumer (%s plugin): replicated delete not queued" % w)
        finally:
            for c in cons:
                c.close()


if __name__ == "__main__":
    sys.exit(run([("syncrepl", t_syncrepl)]))
