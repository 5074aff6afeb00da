"""An API that answers has_more: true forever, with a cursor that moves on
every page (so the repeating-cursor check cannot catch it): the client
stops at OPENAI_MAX_PAGES pages and says so, through the command line.
tests/unit/test_openai.c covers the repeating cursor and the other hostile
answers (malformed, truncated, huge, wrongly typed) against the fake."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tap import ok, is_eq, diag, run, skip_all
from test_cli_common import PROG

if not os.access(PROG, os.X_OK):
    skip_all("%s not built" % PROG)

SRCDIR = os.environ.get("abs_top_srcdir") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
MAX_PAGES = int(re.search(r"#define OPENAI_MAX_PAGES (\d+)",
                          open(os.path.join(SRCDIR, "module", "openai.h")).read()).group(1))
KEY = "sk-admin-pages-0123456789"


class Endless(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    count = 0
    lock = threading.Lock()

    def do_GET(self):
        with Endless.lock:
            Endless.count += 1
            n = Endless.count
        uid = "user-p%06d" % n
        body = json.dumps({"object": "list", "has_more": True, "first_id": uid, "last_id": uid,
                           "data": [{"object": "organization.user", "id": uid,
                                     "email": "p%06d@example.com" % n, "role": "reader",
                                     "name": "p", "added_at": 0}]}).encode()
        # one write: headers and body apart would meet Nagle and delayed ACK
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    def log_message(self, *args):
        pass


def test_endless_pages():
    d = tempfile.mkdtemp(prefix="pagestest.")
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        key = os.path.join(d, "admin.key")
        with open(key, "w") as f:
            f.write(KEY + "\n")
        os.chmod(key, 0o600)
        conf = os.path.join(d, "openai-revoke.conf")
        with open(conf, "w") as f:
            f.write("api_url http://127.0.0.1:%d/v1\nadmin_key_file %s\nbase dc=example,dc=com\n"
                    "spool_dir %s/spool\nlog_file %s/log\napi_rate 1000\nhttp_timeout 10\n"
                    "ldap_uri ldapi://%s\n"
                    % (srv.server_address[1], key, d, d, (d + "/nosock").replace("/", "%2F")))
        env = dict(os.environ)
        env.pop("OPENAI_ADMIN_KEY", None)
        r = subprocess.run([PROG, "-c", conf, "map", "someone@example.com"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=env, timeout=300)
        out, err = r.stdout.decode(), r.stderr.decode()
        ok(r.returncode != 0, "has_more forever: the lookup fails (exit %d)" % r.returncode) \
            or diag(out + err)
        ok("has_more never ended (%d pages)" % MAX_PAGES in out + err,
           "and says the pages were capped") or diag((out + err)[-500:])
        ok("-> user-" not in out, "no member is made up from the endless answer")
        is_eq(Endless.count, MAX_PAGES, "exactly OPENAI_MAX_PAGES (%d) requests, then it "
              "stopped" % MAX_PAGES)
        ok("Sanitizer" not in err and "runtime error" not in err, "no sanitizer report")
    finally:
        srv.shutdown()
        srv.server_close()
        shutil.rmtree(d, ignore_errors=True)


sys.exit(run([("endless pages", test_endless_pages)]))
