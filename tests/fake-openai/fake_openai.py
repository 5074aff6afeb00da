#!/usr/bin/env python3
"""A stateful fake of the OpenAI Administration API (organization users and
invites) for openai-revoke's tests: faithful request/answer shapes, plus
control endpoints under /_fake/ to seed state, inject faults and read back
every API request it received.  Python standard library only.

API (Bearer key required): GET /v1/organization/users (limit 1..100, after,
emails / emails[] repeated), GET|DELETE /v1/organization/users/ID,
GET /v1/organization/invites (limit, after), GET|DELETE .../invites/ID.

Control (no auth, JSON; not recorded):
  POST /_fake/reset {"users": [...], "invites": [...]}   replace everything
  POST /_fake/users [...], POST /_fake/invites [...]     add (same id: replace)
  POST /_fake/generate {"users": N, "owners": K, "domain": D}
  GET  /_fake/state                  {"users": [...], "invites": [...]}
  GET  /_fake/requests[?since=I]     [{method, path, query, params, headers,
                                       time, status, fault}, ...]
  POST /_fake/requests/clear
  POST /_fake/faults [{method, path ("...*" = prefix), count (-1 = forever),
                       action, ...}]   GET /_fake/faults: those not used up
       actions: status {status, headers, body}, delay {seconds}, drop,
       malformed {body}, oversized {bytes, no_length}, wrong_types {variant:
       data|id|has_more|deleted}, truncated
  POST /_fake/faults/clear
  POST /_fake/config {ignore_email_filter, rate_limit, max_limit, latency}
"""

import argparse
import bisect
import json
import math
import os
import signal
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

API_PREFIX = "/v1/organization/"
MAX_RECORDS = 1000000  # a runaway client must not eat the machine
CONTROL_POST = ("/_fake/reset", "/_fake/users", "/_fake/invites", "/_fake/generate",
                "/_fake/requests/clear", "/_fake/faults", "/_fake/faults/clear",
                "/_fake/config")
FAULT_ACTIONS = ("status", "delay", "drop", "malformed", "oversized",
                 "wrong_types", "truncated")


def error_body(message, etype="invalid_request_error", param=None, code=None):
    return {"error": {"message": message, "type": etype, "param": param,
                      "code": code}}


class Collection:
    """Objects in insertion order, addressable by id.

    Paging by `after` must be cheap on 10,000-object orgs, so every object
    gets a sequence number: a sorted list of live sequence numbers gives the
    order, bisect finds a cursor.  Deleted ids keep their sequence number so
    that a client paging while objects disappear can still continue after
    one of them."""

    def __init__(self):
        self.objs = {}       # id -> object (dict, as served)
        self.seq_of = {}     # id -> sequence number (also for deleted ids)
        self.id_at = {}      # live sequence number -> id
        self.order = []      # sorted live sequence numbers
        self.by_email = {}   # lower-case email -> set of live ids
        self.next_seq = 1

    def put(self, obj):
        oid = obj["id"]
        if oid in self.objs:  # replace in place, keep the position
            self._unindex_email(oid)
            self.objs[oid] = obj
            self._index_email(oid)
            return
        seq = self.next_seq
        self.next_seq += 1
        self.objs[oid] = obj
        self.seq_of[oid] = seq
        self.id_at[seq] = oid
        self.order.append(seq)
        self._index_email(oid)

    def remove(self, oid):
        seq = self.seq_of[oid]
        i = bisect.bisect_left(self.order, seq)
        del self.order[i]
        del self.id_at[seq]
        self._unindex_email(oid)
        del self.objs[oid]

    def _index_email(self, oid):
        email = self.objs[oid].get("email")
        if isinstance(email, str):
            self.by_email.setdefault(email.lower(), set()).add(oid)

    def _unindex_email(self, oid):
        email = self.objs[oid].get("email")
        if isinstance(email, str):
            s = self.by_email.get(email.lower())
            if s is not None:
                s.discard(oid)
                if not s:
                    del self.by_email[email.lower()]

    def page(self, limit, after=None, emails=None):
        """Returns (objects, has_more).  after must be a known id (checked
        by the caller)."""
        if emails is not None:
            seqs = set()
            for e in emails:
                for oid in self.by_email.get(e.lower(), ()):
                    seqs.add(self.seq_of[oid])
            seqs = sorted(seqs)
        else:
            seqs = self.order
        start = 0
        if after is not None:
            start = bisect.bisect_right(seqs, self.seq_of[after])
        chosen = seqs[start:start + limit]
        has_more = start + limit < len(seqs)
        return [self.objs[self.id_at[s]] for s in chosen], has_more

    def all(self):
        return [self.objs[self.id_at[s]] for s in self.order]


class State:
    def __init__(self, key):
        self.key = key
        self.lock = threading.Lock()
        self.users = Collection()
        self.invites = Collection()
        self.requests = []
        self.faults = []
        self.ignore_email_filter = False
        self.max_limit = 100
        self.rate_limit = 0.0
        self.latency = 0.0
        self.tokens = 0.0
        self.tokens_at = 0.0

    # ---- seeding --------------------------------------------------------
    @staticmethod
    def make_user(u, now):
        if not isinstance(u, dict) or not isinstance(u.get("id"), str) or not u["id"]:
            raise ValueError("a user needs a non-empty string id")
        obj = {"object": "organization.user", "id": u["id"],
               "name": u.get("name"), "email": u.get("email"),
               "role": u.get("role", "reader"),
               "added_at": u.get("added_at", now)}
        return obj

    @staticmethod
    def make_invite(v, now):
        if not isinstance(v, dict) or not isinstance(v.get("id"), str) or not v["id"]:
            raise ValueError("an invite needs a non-empty string id")
        status = v.get("status", "pending")
        obj = {"object": "organization.invite", "id": v["id"],
               "email": v.get("email"), "role": v.get("role", "reader"),
               "status": status,
               "created_at": v.get("created_at", now),
               "expires_at": v.get("expires_at", now + 7 * 86400),
               "accepted_at": v.get("accepted_at",
                                    now if status == "accepted" else None)}
        return obj

    def add_users(self, users):
        if not isinstance(users, list):
            raise ValueError("users must be a list")
        now = int(time.time())
        objs = [self.make_user(u, now) for u in users]
        with self.lock:
            for o in objs:
                self.users.put(o)

    def add_invites(self, invites):
        if not isinstance(invites, list):
            raise ValueError("invites must be a list")
        now = int(time.time())
        objs = [self.make_invite(v, now) for v in invites]
        with self.lock:
            for o in objs:
                self.invites.put(o)

    def reset(self, body):
        if not isinstance(body, dict):
            raise ValueError("reset takes an object")
        now = int(time.time())
        users = [self.make_user(u, now) for u in body.get("users") or []]
        invites = [self.make_invite(v, now) for v in body.get("invites") or []]
        with self.lock:
            self.users = Collection()
            self.invites = Collection()
            for o in users:
                self.users.put(o)
            for o in invites:
                self.invites.put(o)

    def generate(self, body):
        if not isinstance(body, dict):
            raise ValueError("generate takes an object")
        n = body.get("users", 0)
        owners = body.get("owners", 0)
        domain = body.get("domain", "example.com")
        if not isinstance(n, int) or not isinstance(owners, int) or n < 0 \
                or owners < 0 or not isinstance(domain, str):
            raise ValueError("users and owners must be non-negative integers")
        width = max(5, len(str(n)))
        now = int(time.time())
        with self.lock:
            for i in range(1, n + 1):
                num = str(i).zfill(width)
                self.users.put({"object": "organization.user",
                                "id": "user-" + num, "name": "User " + num,
                                "email": "u%s@%s" % (num, domain),
                                "role": "owner" if i <= owners else "reader",
                                "added_at": now})

    def snapshot(self):
        with self.lock:
            return {"users": self.users.all(), "invites": self.invites.all()}

    def configure(self, body):
        if not isinstance(body, dict):
            raise ValueError("config takes an object")
        known = ("ignore_email_filter", "rate_limit", "max_limit", "latency")
        for k in body:
            if k not in known:
                raise ValueError("unknown config key %r" % k)
        with self.lock:
            if "ignore_email_filter" in body:
                self.ignore_email_filter = bool(body["ignore_email_filter"])
            if "rate_limit" in body:
                r = body["rate_limit"]
                if not isinstance(r, (int, float)) or r < 0:
                    raise ValueError("rate_limit must be a number >= 0")
                self.rate_limit = float(r)
                self.tokens = self.rate_limit  # a full bucket to start
                self.tokens_at = time.monotonic()
            if "max_limit" in body:
                m = body["max_limit"]
                if not isinstance(m, int) or m < 1:
                    raise ValueError("max_limit must be an integer >= 1")
                self.max_limit = m
            if "latency" in body:
                lat = body["latency"]
                if not isinstance(lat, (int, float)) or lat < 0:
                    raise ValueError("latency must be a number >= 0")
                self.latency = float(lat)
            return {"ignore_email_filter": self.ignore_email_filter,
                    "rate_limit": self.rate_limit, "max_limit": self.max_limit,
                    "latency": self.latency}

    def set_faults(self, faults):
        if not isinstance(faults, list):
            raise ValueError("faults must be a list")
        for f in faults:
            if not isinstance(f, dict):
                raise ValueError("a fault is an object")
            if f.get("action") not in FAULT_ACTIONS:
                raise ValueError("unknown fault action %r" % f.get("action"))
            c = f.get("count", 1)
            if not isinstance(c, int) or isinstance(c, bool) or c < -1:
                raise ValueError("count must be an integer >= -1")
            if f["action"] == "status" and not isinstance(f.get("status"), int):
                raise ValueError("a status fault needs an integer status")
        with self.lock:
            for f in faults:
                f = dict(f)
                f.setdefault("count", 1)
                if f["count"] != 0:
                    self.faults.append(f)

    # ---- per request ----------------------------------------------------
    def take_fault(self, method, path):
        with self.lock:
            for i, f in enumerate(self.faults):
                if f.get("method") not in (None, method):
                    continue
                fp = f.get("path")
                if fp is not None:
                    if fp.endswith("*"):
                        if not path.startswith(fp[:-1]):
                            continue
                    elif fp != path:
                        continue
                if f["count"] > 0:
                    f["count"] -= 1
                    if f["count"] == 0:  # used up: GET /_fake/faults shows what is left
                        del self.faults[i]
                return f
            return None

    def take_token(self):
        """Token bucket: returns 0 when the request may pass, otherwise the
        whole seconds to wait (at least 1)."""
        with self.lock:
            if self.rate_limit <= 0:
                return 0
            now = time.monotonic()
            self.tokens = min(self.rate_limit,
                              self.tokens + (now - self.tokens_at) * self.rate_limit)
            self.tokens_at = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return 0
            return max(1, math.ceil((1.0 - self.tokens) / self.rate_limit))

    def record(self, rec):
        with self.lock:
            if len(self.requests) < MAX_RECORDS:
                self.requests.append(rec)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-openai/1"
    sys_version = ""
    timeout = 60  # idle keep-alive connections do not pin threads forever

    def setup(self):
        super().setup()
        # Headers and body go out in separate writes: without TCP_NODELAY,
        # Nagle plus the client's delayed ACK cost ~40 ms per answer.
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        # The TLS handshake runs here, in the connection's thread, so a client
        # that never completes it cannot stall the accept loop.
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("fake-openai: %s %s\n" % (self.address_string(), fmt % args))

    # Every method goes through one dispatcher so that unsupported ones on
    # known paths get a 405 rather than http.server's 501.
    def do_GET(self):
        self.dispatch()

    do_POST = do_DELETE = do_PUT = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    # ---- plumbing -------------------------------------------------------
    def read_body(self):
        n = self.headers.get("Content-Length")
        if n is None:
            return b""
        try:
            n = int(n)
        except ValueError:
            return b""
        return self.rfile.read(n) if n > 0 else b""

    def send(self, status, body, headers=None, content_type="application/json"):
        if not isinstance(body, (bytes, bytearray)):
            if not isinstance(body, str):
                body = json.dumps(body)
            body = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return status

    def dispatch(self):
        arrived = time.time()
        try:
            body = self.read_body()
        except OSError:
            return
        parts = urlsplit(self.path)
        path = parts.path
        if path.startswith("/_fake/"):
            self.control(path, parts.query, body)
            return
        params = parse_qs(parts.query, keep_blank_values=True)
        rec = {"method": self.command, "path": path, "query": parts.query,
               "params": params,
               "headers": {k.lower(): v for k, v in self.headers.items()},
               "time": arrived, "status": None, "fault": None}
        self.server.state.record(rec)
        try:
            rec["status"] = self.api(path, params, rec)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    # ---- the Administration API -------------------------------------------
    def api(self, path, params, rec):
        st = self.server.state
        fault = st.take_fault(self.command, path)
        if fault is not None:
            rec["fault"] = fault["action"]
            handled = self.apply_fault(fault, path, params)
            if handled is not None:
                return handled
        wait = st.take_token()
        if wait:
            return self.send(429, error_body(
                "Rate limit reached for requests (fake organization).",
                etype="requests", code="rate_limit_exceeded"),
                headers={"Retry-After": wait})
        if st.latency > 0:
            time.sleep(st.latency)
        return self.route(path, params)

    def route(self, path, params):
        st = self.server.state
        m = self.command
        segs = path[len(API_PREFIX):].split("/") if path.startswith(API_PREFIX) else None
        if segs is None or segs[0] not in ("users", "invites") or len(segs) > 2 \
                or (len(segs) == 2 and segs[1] == ""):
            return self.send(404, error_body("Invalid URL (%s %s)" % (m, path)))
        allowed = ("GET",) if len(segs) == 1 else ("GET", "DELETE")
        if m not in allowed:
            return self.send(405, error_body("Method %s not allowed on %s" % (m, path)),
                             headers={"Allow": ", ".join(allowed)})
        auth = self.headers.get("Authorization", "")
        if auth != "Bearer " + st.key:
            shown = auth[7:] if auth.startswith("Bearer ") else ""
            hint = (shown[:3] + "*" * 4 + shown[-4:]) if len(shown) > 8 else "****"
            if not auth:
                msg = ("You didn't provide an API key. You need to provide your API key "
                       "in an Authorization header using Bearer auth (i.e. "
                       "Authorization: Bearer YOUR_KEY).")
                return self.send(401, error_body(msg, code=None))
            return self.send(401, error_body(
                "Incorrect API key provided: %s. You can find your API key at "
                "https://platform.openai.com/account/api-keys." % hint,
                code="invalid_api_key"))
        coll_name = segs[0]
        if len(segs) == 1:
            return self.list(coll_name, params)
        oid = unquote(segs[1])
        kind = "user" if coll_name == "users" else "invite"
        with st.lock:
            coll = st.users if coll_name == "users" else st.invites
            obj = coll.objs.get(oid)
            if obj is None:
                answer = (404, error_body("No such %s: %s" % (kind, oid), param=None))
            elif m == "GET":
                answer = (200, json.dumps(obj))
            elif kind == "invite" and obj.get("status") != "pending":
                answer = (400, error_body(
                    "Cannot delete an invite that has been %s." % obj.get("status")))
            else:
                coll.remove(oid)
                answer = (200, {"object": "organization.%s.deleted" % kind,
                                "id": oid, "deleted": True})
        return self.send(*answer)

    def list(self, coll_name, params):
        st = self.server.state
        limit = 20
        if "limit" in params:
            raw = params["limit"][-1]
            try:
                limit = int(raw, 10)
            except ValueError:
                return self.send(400, error_body(
                    "Invalid 'limit': expected an integer, got %r." % raw, param="limit"))
            if limit < 1 or limit > st.max_limit:
                return self.send(400, error_body(
                    "Invalid 'limit': must be between 1 and %d, got %d."
                    % (st.max_limit, limit), param="limit"))
        emails = None
        if coll_name == "users" and not st.ignore_email_filter:
            vals = params.get("emails", []) + params.get("emails[]", [])
            if vals:
                emails = vals
        after = params["after"][-1] if "after" in params else None
        with st.lock:
            coll = st.users if coll_name == "users" else st.invites
            if after is not None and after not in coll.seq_of:
                answer = (400, error_body("Invalid 'after': no such object %r." % after,
                                          param="after"))
            else:
                data, has_more = coll.page(limit, after, emails)
                answer = (200, json.dumps({
                    "object": "list", "data": data,
                    "first_id": data[0]["id"] if data else None,
                    "last_id": data[-1]["id"] if data else None,
                    "has_more": has_more}))
        return self.send(*answer)

    # ---- faults ---------------------------------------------------------
    def apply_fault(self, f, path, params):
        """Answers the request as the fault says and returns the status, or
        returns None when the request should then be served normally."""
        action = f["action"]
        if action == "delay":
            time.sleep(float(f.get("seconds", 1)))
            return None
        if action == "status":
            status = f["status"]
            body = f.get("body")
            if body is None:
                if status == 429:
                    body = error_body("Rate limit reached for requests.",
                                      etype="requests", code="rate_limit_exceeded")
                elif status == 401:
                    body = error_body("Incorrect API key provided: sk-a****.",
                                      code="invalid_api_key")
                elif status == 403:
                    body = error_body("You have insufficient permissions for this "
                                      "operation. Missing scopes: api.management.write.")
                elif status >= 500:
                    body = error_body("The server had an error while processing your "
                                      "request. Sorry about that!", etype="server_error")
                else:
                    body = error_body("Injected error %d." % status)
            return self.send(status, body, headers=f.get("headers"))
        if action == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return 0
        if action == "malformed":
            return self.send(200, f.get("body", '{"object": "list", "data": [{"id": "us'))
        if action == "oversized":
            return self.send_oversized(int(f.get("bytes", 5000000)), bool(f.get("no_length")))
        if action == "wrong_types":
            return self.send(200, self.wrong_types(path, f.get("variant")))
        if action == "truncated":
            full = json.dumps({"object": "list", "data": [], "first_id": None,
                               "last_id": None, "has_more": False}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(full) + 1000))
            self.end_headers()
            self.wfile.write(full[: len(full) // 2])
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return 200
        return None

    def send_oversized(self, nbytes, no_length):
        head = b'{"object": "list", "has_more": false, "data": [], "padding": "'
        tail = b'"}'
        pad = max(0, nbytes - len(head) - len(tail))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if no_length:
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(len(head) + pad + len(tail)))
        self.end_headers()
        self.wfile.write(head)
        chunk = b"x" * 65536
        while pad > 0:
            n = min(pad, len(chunk))
            self.wfile.write(chunk[:n])
            pad -= n
        self.wfile.write(tail)
        return 200

    @staticmethod
    def wrong_types(path, variant):
        rest = path[len(API_PREFIX):] if path.startswith(API_PREFIX) else ""
        segs = rest.split("/")
        if len(segs) == 1:  # a list
            if variant == "id":
                return {"object": "list", "data": [{"object": "organization.user",
                        "id": 12345, "email": 7, "role": ["owner"], "status": 1}],
                        "first_id": 12345, "last_id": 12345, "has_more": False}
            if variant == "has_more":
                return {"object": "list", "data": [], "first_id": None,
                        "last_id": None, "has_more": "no"}
            return {"object": "list", "data": {"id": "user-1"}, "first_id": "user-1",
                    "last_id": "user-1", "has_more": False}
        if len(segs) == 2 and segs[0] == "invites":
            return {"object": "organization.invite", "id": 12345, "email": None,
                    "role": 3, "status": True}
        if variant == "deleted":
            return {"object": "organization.user.deleted", "id": 12345, "deleted": "yes"}
        return {"object": "organization.user", "id": 12345, "email": 7,
                "role": ["owner"], "name": False, "deleted": "yes"}

    # ---- control endpoints ---------------------------------------------------
    def control(self, path, query, body):
        st = self.server.state
        try:
            data = json.loads(body) if body else None
        except ValueError as e:
            self.send(400, {"error": "bad JSON: %s" % e})
            return
        m = self.command
        try:
            if m == "GET" and path == "/_fake/state":
                self.send(200, st.snapshot())
            elif m == "GET" and path == "/_fake/requests":
                since = int(parse_qs(query).get("since", ["0"])[-1])
                with st.lock:
                    out = json.dumps(st.requests[since:])
                self.send(200, out)
            elif m == "GET" and path == "/_fake/faults":
                with st.lock:
                    out = json.dumps(st.faults)
                self.send(200, out)
            elif m == "GET" and path == "/_fake/config":
                self.send(200, st.configure({}))
            elif path not in CONTROL_POST:
                self.send(404, {"error": "no control endpoint %s" % path})
            elif m != "POST":
                self.send(405, {"error": "%s takes POST" % path})
            elif path == "/_fake/reset":
                st.reset(data if data is not None else {})
                self.send(200, {"ok": True})
            elif path == "/_fake/users":
                st.add_users(data if data is not None else [])
                self.send(200, {"ok": True})
            elif path == "/_fake/invites":
                st.add_invites(data if data is not None else [])
                self.send(200, {"ok": True})
            elif path == "/_fake/generate":
                st.generate(data if data is not None else {})
                self.send(200, {"ok": True})
            elif path == "/_fake/requests/clear":
                with st.lock:
                    st.requests = []
                self.send(200, {"ok": True})
            elif path == "/_fake/faults":
                st.set_faults(data if data is not None else [])
                self.send(200, {"ok": True})
            elif path == "/_fake/faults/clear":
                with st.lock:
                    st.faults = []
                self.send(200, {"ok": True})
            elif path == "/_fake/config":
                self.send(200, st.configure(data if data is not None else {}))
            else:
                self.send(404, {"error": "no control endpoint %s" % path})
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            self.send(400, {"error": str(e)})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, state, tls_ctx, verbose):
        self.state = state
        self.tls_ctx = tls_ctx
        self.verbose = verbose
        super().__init__(addr, Handler)

    def get_request(self):
        sock, addr = self.socket.accept()
        if self.tls_ctx is not None:
            sock = self.tls_ctx.wrap_socket(sock, server_side=True,
                                            do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request, client_address):
        # Clients that hang up, and TLS clients that refuse our certificate,
        # are part of the tests; only say something when asked to.
        if self.verbose:
            super().handle_error(request, client_address)


def write_port_file(path, port):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.rename(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Fake OpenAI Administration API for tests (users, invites, "
                    "faults, request log; control endpoints under /_fake/).")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=0, help="port (0 = any free port)")
    ap.add_argument("--port-file", help="write the port here once listening (atomic rename)")
    ap.add_argument("--key", default="sk-admin-test-0123456789abcdef",
                    help="the admin key clients must present as Bearer")
    ap.add_argument("--key-file", help="read the admin key from this file instead")
    ap.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
    ap.add_argument("--tls-key", help="private key of --tls-cert")
    ap.add_argument("--verbose", action="store_true", help="log requests to stderr")
    args = ap.parse_args(argv)

    key = args.key
    if args.key_file:
        with open(args.key_file) as f:
            key = f.read().strip()
    ctx = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            ap.error("--tls-cert and --tls-key go together")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)

    server = Server((args.host, args.port), State(key), ctx, args.verbose)

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        if args.port_file:
            write_port_file(args.port_file, server.server_address[1])
        server.serve_forever(poll_interval=0.2)
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        server.server_close()
        if args.port_file:
            try:
                os.unlink(args.port_file)
            except OSError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
