"""Self-test of the fake OpenAI organization: the other tests trust it to
behave like the Administration API (paging, filters, errors, auth), to
inject exactly the faults asked for, and to record what it received."""

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

import apispec
import fakeorg
from fakeorg import FakeOrg, FakeOrgError
from tap import diag, is_eq, ok, run

KEY = fakeorg.DEFAULT_KEY
USERS = "/v1/organization/users"
INVITES = "/v1/organization/invites"


def conn(f, timeout=30):
    if f.tls:
        ctx = ssl.create_default_context(cafile=f.cafile)
        return http.client.HTTPSConnection("127.0.0.1", f.port, timeout=timeout, context=ctx)
    return http.client.HTTPConnection("127.0.0.1", f.port, timeout=timeout)


def call(f, method, path, key=KEY, headers=None, c=None, timeout=30):
    """One API request; returns (status, headers, raw body)."""
    own = c is None
    c = c or conn(f, timeout)
    h = dict(headers or {})
    if key is not None:
        h["Authorization"] = "Bearer " + key
    try:
        c.request(method, path, headers=h)
        r = c.getresponse()
        body = r.read()
        return r.status, r, body
    finally:
        if own:
            c.close()


def jcall(f, method, path, **kw):
    status, r, body = call(f, method, path, **kw)
    return status, r, json.loads(body)


def is_error_shape(body, desc):
    e = body.get("error") if isinstance(body, dict) else None
    return ok(isinstance(e, dict) and isinstance(e.get("message"), str)
              and isinstance(e.get("type"), str) and "param" in e and "code" in e,
              desc)


def t_paging():
    with FakeOrg() as f:
        f.generate(250, owners=2)
        st, _, page = jcall(f, "GET", USERS)
        is_eq(st, 200, "list answers 200")
        is_eq(page["object"], "list", "list object is 'list'")
        is_eq(len(page["data"]), 20, "default limit is 20")
        ok(page["has_more"] is True, "has_more with 250 users and limit 20")
        is_eq((page["first_id"], page["last_id"]), ("user-00001", "user-00020"),
              "first_id/last_id of the first page")
        u = page["data"][0]
        is_eq(sorted(u), ["added_at", "email", "id", "name", "object", "role"],
              "user object fields")
        is_eq((u["object"], u["email"], u["role"], u["name"]),
              ("organization.user", "u00001@example.com", "owner", "User 00001"),
              "generated user 1 is an owner with the documented email")
        is_eq(page["data"][2]["role"], "reader", "user 3 is a reader")
        ok(isinstance(u["added_at"], int), "added_at is an integer")

        ids, after, sizes, flags = [], None, [], []
        for _ in range(10):
            q = USERS + "?limit=100" + ("&after=" + after if after else "")
            st, _, page = jcall(f, "GET", q)
            if st != 200:
                break
            ids += [d["id"] for d in page["data"]]
            sizes.append(len(page["data"]))
            flags.append(page["has_more"])
            if page["data"]:
                ok(page["first_id"] == page["data"][0]["id"]
                   and page["last_id"] == page["data"][-1]["id"],
                   "first_id/last_id match the page (after=%s)" % after)
            if not page["has_more"]:
                break
            after = page["last_id"]
        is_eq(sizes, [100, 100, 50], "250 users in pages of 100, 100, 50")
        is_eq(flags, [True, True, False], "has_more true, true, false")
        is_eq(ids, ["user-%05d" % i for i in range(1, 251)], "every user once, in insertion order")

        st, _, page = jcall(f, "GET", USERS + "?after=user-00250")
        is_eq((st, page["data"], page["has_more"], page["first_id"], page["last_id"]),
              (200, [], False, None, None), "after the last id: empty page, null ids")
        st, _, page = jcall(f, "GET", USERS + "?limit=1&after=user-00249")
        is_eq(([d["id"] for d in page["data"]], page["has_more"]), (["user-00250"], False),
              "limit=1 on the last user: has_more false")
        st, _, page = jcall(f, "GET", USERS + "?limit=100&after=user-00150")
        is_eq((len(page["data"]), page["has_more"]), (100, False),
              "exactly the rest fits: has_more false")
        st, _, body = jcall(f, "GET", USERS + "?after=user-nobody")
        is_eq(st, 400, "after an unknown id: 400")
        is_error_shape(body, "unknown after: error body")

        for bad in ("0", "101", "-1", "abc", "", "1.5"):
            st, _, body = jcall(f, "GET", USERS + "?limit=" + bad)
            is_eq(st, 400, "limit=%r: 400" % bad)
            is_error_shape(body, "limit=%r: error body" % bad)
            is_eq(body["error"]["param"], "limit", "limit=%r: param names limit" % bad)
        st, _, page = jcall(f, "GET", USERS + "?limit=100")
        is_eq((st, len(page["data"])), (200, 100), "limit=100 accepted")
        st, _, page = jcall(f, "GET", USERS + "?limit=1")
        is_eq((st, len(page["data"])), (200, 1), "limit=1 accepted")
        f.config(max_limit=50)
        st, _, _ = jcall(f, "GET", USERS + "?limit=51")
        is_eq(st, 400, "max_limit=50: limit=51 refused")
        st, _, page = jcall(f, "GET", USERS + "?limit=50")
        is_eq((st, len(page["data"])), (200, 50), "max_limit=50: limit=50 accepted")

        # Paging goes on past a user deleted between two pages.
        st, _, _ = jcall(f, "DELETE", USERS + "/user-00050")
        st, _, page = jcall(f, "GET", USERS + "?limit=2&after=user-00050")
        is_eq((st, [d["id"] for d in page["data"]]), (200, ["user-00051", "user-00052"]),
              "after a deleted id: continues after its place")
        st, _, page = jcall(f, "GET", USERS + "?limit=3&after=user-00048")
        is_eq([d["id"] for d in page["data"]], ["user-00049", "user-00051", "user-00052"],
              "a deleted user is skipped")


def t_email_filter():
    with FakeOrg() as f:
        f.reset(users=[
            {"id": "user-a", "email": "alice@example.com", "role": "owner", "name": "Alice"},
            {"id": "user-b", "email": "Bob@Example.com", "role": "reader", "name": "Bob"},
            {"id": "user-c", "email": "carol@example.com"},
            {"id": "user-d", "email": None},
        ])

        def ids(q):
            st, _, page = jcall(f, "GET", USERS + q)
            if st != 200:
                return st
            return [d["id"] for d in page["data"]]
        is_eq(ids("?emails=alice@example.com"), ["user-a"], "emails= filter")
        is_eq(ids("?emails%5B%5D=alice@example.com"), ["user-a"], "emails[]= filter (encoded)")
        is_eq(ids("?emails[]=carol@example.com"), ["user-c"], "emails[]= filter (raw brackets)")
        is_eq(ids("?emails[]=carol@example.com&emails[]=alice@example.com"), ["user-a", "user-c"],
              "repeated emails[]: both users, in org order")
        is_eq(ids("?emails=carol@example.com&emails[]=bob@example.com"), ["user-b", "user-c"],
              "both forms mixed")
        is_eq(ids("?emails=alice@example.com&emails=alice@example.com"), ["user-a"],
              "a repeated address gives the user once")
        is_eq(ids("?emails[]=BOB@example.COM"), ["user-b"], "the filter ignores case")
        is_eq(ids("?emails[]=nobody@example.com"), [], "unknown address: empty list")
        is_eq(ids("?emails[]=alice%2Btag@example.com"), [], "plus-tagged address does not match")
        is_eq(ids("?emails[]=carol@example.com&emails[]=alice@example.com&limit=1"), ["user-a"],
              "filter with limit=1")
        is_eq(ids("?emails[]=carol@example.com&emails[]=alice@example.com&limit=1&after=user-a"),
              ["user-c"], "filter with after")
        st, _, page = jcall(f, "GET", USERS + "?emails[]=carol@example.com&emails[]=alice@example.com&limit=1")
        ok(page["has_more"] is True, "filtered page of 1 out of 2: has_more")
        f.config(ignore_email_filter=True)
        is_eq(ids("?emails[]=alice@example.com"), ["user-a", "user-b", "user-c", "user-d"],
              "ignore_email_filter: every user comes back")
        f.config(ignore_email_filter=False)
        is_eq(ids("?emails[]=alice@example.com"), ["user-a"], "filter on again")
        st, _, u = jcall(f, "GET", USERS + "/user-d")
        ok(st == 200 and u["email"] is None, "a user without email has email null")
        # Re-adding an id replaces the user and re-indexes the address.
        f.users([{"id": "user-a", "email": "alice2@example.com", "role": "owner"}])
        is_eq(ids("?emails[]=alice@example.com"), [], "old address gone after replace")
        is_eq(ids("?emails[]=alice2@example.com"), ["user-a"], "new address indexed")
        is_eq(ids("?limit=1"), ["user-a"], "replace keeps the user's place")


def t_retrieve_delete():
    with FakeOrg() as f:
        f.reset(users=[{"id": "user-a", "email": "a@example.com", "role": "owner", "name": "A"},
                       {"id": "user b/x", "email": "b@example.com"}])
        st, r, u = jcall(f, "GET", USERS + "/user-a")
        is_eq(st, 200, "retrieve: 200")
        ok(r.getheader("Content-Type", "").startswith("application/json"), "JSON content type")
        is_eq((u["object"], u["id"], u["email"], u["role"], u["name"]),
              ("organization.user", "user-a", "a@example.com", "owner", "A"), "retrieve: the user")
        st, _, body = jcall(f, "GET", USERS + "/user-zz")
        is_eq(st, 404, "retrieve unknown: 404")
        is_error_shape(body, "retrieve unknown: error body")
        is_eq(body["error"]["type"], "invalid_request_error", "404 type invalid_request_error")
        st, _, body = jcall(f, "DELETE", USERS + "/user-a")
        is_eq((st, body), (200, {"object": "organization.user.deleted", "id": "user-a",
                                 "deleted": True}), "delete: the documented answer")
        st, _, body = jcall(f, "GET", USERS + "/user-a")
        is_eq(st, 404, "deleted user: retrieve 404")
        st, _, body = jcall(f, "DELETE", USERS + "/user-a")
        is_eq(st, 404, "deleted user: delete again 404")
        is_error_shape(body, "delete again: error body")
        is_eq([u["id"] for u in f.state()["users"]], ["user b/x"], "state lost the deleted user")
        st, _, u = jcall(f, "GET", USERS + "/user%20b%2Fx")
        is_eq((st, u.get("id")), (200, "user b/x"), "percent-encoded id is decoded")
        st, _, body = jcall(f, "GET", USERS + "/")
        is_eq(st, 404, "trailing slash: 404")
        st, _, body = jcall(f, "GET", USERS + "/user-a/roles/x")
        is_eq(st, 404, "deeper path: 404")


def t_invites():
    with FakeOrg() as f:
        inv = [{"id": "invite-%03d" % i, "email": "i%03d@example.com" % i,
                "status": "pending"} for i in range(1, 131)]
        inv[4]["status"] = "accepted"
        inv[5]["status"] = "expired"
        inv[6]["role"] = "owner"
        f.reset(invites=inv)
        ids, after, sizes = [], None, []
        for _ in range(10):
            st, _, page = jcall(f, "GET", INVITES + "?limit=50" + ("&after=" + after if after else ""))
            if st != 200:
                break
            ids += [d["id"] for d in page["data"]]
            sizes.append(len(page["data"]))
            if not page["has_more"]:
                break
            after = page["last_id"]
        is_eq(sizes, [50, 50, 30], "130 invites in pages of 50, 50, 30")
        is_eq(ids, [v["id"] for v in inv], "every invite once, in order")
        st, _, page = jcall(f, "GET", INVITES)
        is_eq(len(page["data"]), 20, "invites default limit 20")
        st, _, _ = jcall(f, "GET", INVITES + "?limit=101")
        is_eq(st, 400, "invites limit=101: 400")
        st, _, v = jcall(f, "GET", INVITES + "/invite-007")
        is_eq((st, v["object"], v["email"], v["role"], v["status"]),
              (200, "organization.invite", "i007@example.com", "owner", "pending"),
              "retrieve invite")
        ok(all(k in v for k in ("created_at", "expires_at", "accepted_at")),
           "invite has created_at, expires_at, accepted_at")
        st, _, v = jcall(f, "GET", INVITES + "/invite-005")
        ok(isinstance(v["accepted_at"], int), "accepted invite has accepted_at")
        st, _, body = jcall(f, "DELETE", INVITES + "/invite-001")
        is_eq((st, body), (200, {"object": "organization.invite.deleted", "id": "invite-001",
                                 "deleted": True}), "delete pending invite")
        st, _, body = jcall(f, "DELETE", INVITES + "/invite-005")
        is_eq(st, 400, "delete accepted invite: 400")
        is_error_shape(body, "accepted: error body")
        st, _, body = jcall(f, "DELETE", INVITES + "/invite-006")
        is_eq(st, 400, "delete expired invite: 400")
        st, _, _ = jcall(f, "GET", INVITES + "/invite-005")
        is_eq(st, 200, "the accepted invite is still there")
        st, _, _ = jcall(f, "DELETE", INVITES + "/invite-001")
        is_eq(st, 404, "delete deleted invite: 404")
        st, _, _ = jcall(f, "GET", INVITES + "/invite-999")
        is_eq(st, 404, "retrieve unknown invite: 404")
        st, _, page = jcall(f, "GET", INVITES + "?emails[]=i002@example.com&limit=3")
        is_eq(len(page["data"]), 3, "invites list has no email filter")
        f.invites([{"id": "invite-new", "email": "n@example.com"}])
        is_eq(f.state()["invites"][-1]["id"], "invite-new", "add invite appends")
        is_eq(f.state()["invites"][-1]["status"], "pending", "invites default to pending")


def t_auth_and_routes():
    with FakeOrg(key="sk-admin-other-key-9876") as f:
        f.reset(users=[{"id": "user-a", "email": "a@example.com"}])
        for desc, key, hdr in (("no Authorization", None, None),
                               ("wrong key", "sk-admin-wrong-000000", None),
                               ("default test key", KEY, None),
                               ("Basic scheme", None, {"Authorization": "Basic c2stYWRtaW4="}),
                               ("lower-case bearer", None,
                                {"Authorization": "bearer sk-admin-other-key-9876"})):
            for m, p in (("GET", USERS), ("GET", USERS + "/user-a"), ("DELETE", USERS + "/user-a"),
                         ("GET", INVITES)):
                st, _, body = jcall(f, m, p, key=key, headers=hdr)
                is_eq(st, 401, "%s: %s %s -> 401" % (desc, m, p))
            is_error_shape(body, "%s: error body" % desc)
        st, _, body = jcall(f, "GET", USERS, key="sk-admin-wrong-000000")
        is_eq(body["error"]["code"], "invalid_api_key", "wrong key: code invalid_api_key")
        ok(body["error"]["message"].startswith("Incorrect API key provided"),
           "wrong key: OpenAI's message")
        ok("sk-admin-wrong-000000" not in body["error"]["message"],
           "the message does not echo the whole key")
        is_eq([u["id"] for u in f.state()["users"]], ["user-a"], "nothing deleted without auth")
        st, _, body = jcall(f, "GET", USERS, key="sk-admin-other-key-9876")
        is_eq(st, 200, "the configured key works")

        k = "sk-admin-other-key-9876"
        st, _, body = jcall(f, "GET", "/v1/organization/projects", key=k)
        is_eq(st, 404, "unknown path: 404")
        is_error_shape(body, "unknown path: error body")
        ok("Invalid URL" in body["error"]["message"], "unknown path: 'Invalid URL' message")
        st, _, body = jcall(f, "GET", "/v2/organization/users", key=k)
        is_eq(st, 404, "wrong version prefix: 404")
        st, _, body = jcall(f, "GET", "/", key=None)
        is_eq(st, 404, "root: 404")
        for m, p, allow in (("POST", USERS, "GET"), ("DELETE", USERS, "GET"),
                            ("PUT", USERS + "/user-a", "GET, DELETE"),
                            ("PATCH", INVITES + "/x", "GET, DELETE"), ("POST", INVITES, "GET")):
            st, r, body = jcall(f, m, p, key=k)
            is_eq(st, 405, "%s %s: 405" % (m, p))
            is_error_shape(body, "%s %s: error body" % (m, p))
            is_eq(r.getheader("Allow"), allow, "%s %s: Allow header" % (m, p))
        st, r, body = call(f, "HEAD", USERS, key=k)
        is_eq((st, body), (405, b""), "HEAD: 405 without body")


def t_faults():
    with FakeOrg() as f:
        f.generate(5)
        f.fault("status", USERS + "/user-00001", status=503, count=2)
        got = [call(f, "GET", USERS + "/user-00001")[0] for _ in range(3)]
        is_eq(got, [503, 503, 200], "status fault count=2: two 503s then normal")
        st, _, body = jcall(f, "GET", USERS)
        is_eq(st, 200, "the fault matched only its path")

        f.fault("status", USERS + "*", status=429, headers={"Retry-After": "7"})
        st, r, body = jcall(f, "GET", USERS + "?limit=2")
        is_eq((st, r.getheader("Retry-After")), (429, "7"), "429 with Retry-After")
        is_eq(body["error"]["code"], "rate_limit_exceeded", "429 default body is OpenAI's")
        f.fault("status", None, status=429)
        st, r, body = call(f, "GET", USERS + "/user-00002")
        is_eq((st, r.getheader("Retry-After")), (429, None), "429 without Retry-After")
        f.fault("status", None, status=429,
                headers={"Retry-After": "Wed, 21 Oct 2037 07:28:00 GMT"})
        st, r, body = call(f, "GET", USERS)
        is_eq(r.getheader("Retry-After"), "Wed, 21 Oct 2037 07:28:00 GMT", "HTTP-date Retry-After")
        f.fault("status", USERS, status=502, body="<html>bad gateway</html>")
        st, r, body = call(f, "GET", USERS)
        is_eq((st, body), (502, b"<html>bad gateway</html>"), "status fault with a custom body")
        for s in (500, 503, 403, 401):
            f.fault("status", USERS, status=s)
            st, _, body = jcall(f, "GET", USERS)
            is_eq(st, s, "status fault %d" % s)
            is_error_shape(body, "status fault %d: error body" % s)

        f.fault("status", None, method="DELETE", status=500)
        st, _, _ = call(f, "GET", USERS + "/user-00003")
        is_eq(st, 200, "a DELETE fault leaves GET alone")
        st, _, _ = call(f, "DELETE", USERS + "/user-00003")
        is_eq(st, 500, "the DELETE fault hits DELETE")
        st, _, _ = call(f, "DELETE", USERS + "/user-00003")
        is_eq(st, 200, "and is used up")

        f.fault("status", INVITES + "*", status=500, count=-1)
        got = [call(f, "GET", INVITES)[0] for _ in range(4)]
        is_eq(got, [500] * 4, "count=-1 lasts")
        is_eq(len(f.pending_faults()), 1, "the lasting fault is listed")
        f.clear_faults()
        is_eq(call(f, "GET", INVITES)[0], 200, "clear_faults ends it")
        f.faults([{"action": "status", "path": USERS, "status": 501},
                  {"action": "status", "path": USERS, "status": 502}])
        got = [call(f, "GET", USERS)[0] for _ in range(3)]
        is_eq(got, [501, 502, 200], "faults apply in order")

        f.fault("delay", USERS, seconds=1.0)
        t0 = time.time()
        st, _, page = jcall(f, "GET", USERS)
        ok(st == 200 and page["object"] == "list", "delay: then a normal answer")
        ok(time.time() - t0 >= 1.0, "delay: not answered before 1 s")

        f.fault("drop", USERS)
        try:
            call(f, "GET", USERS)
            ok(False, "drop: connection closed without answer")
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            ok(True, "drop: connection closed without answer")

        f.fault("malformed", USERS)
        st, _, body = call(f, "GET", USERS)
        is_eq(st, 200, "malformed: status 200")
        try:
            json.loads(body)
            ok(False, "malformed: the body is not JSON")
        except ValueError:
            ok(True, "malformed: the body is not JSON")

        f.fault("oversized", USERS, bytes=5000000)
        st, r, body = call(f, "GET", USERS)
        ok(st == 200 and len(body) >= 5000000, "oversized: 200 and >= 5,000,000 bytes")
        is_eq(int(r.getheader("Content-Length")), len(body), "oversized: honest Content-Length")
        f.fault("oversized", USERS, bytes=300000, no_length=True)
        st, r, body = call(f, "GET", USERS)
        ok(r.getheader("Content-Length") is None and len(body) >= 300000,
           "oversized no_length: no Content-Length, body until close")
        f.fault("oversized", USERS, bytes=5000000)
        c = conn(f)
        try:
            c.request("GET", USERS, headers={"Authorization": "Bearer " + KEY})
            r = c.getresponse()
            r.read(1000)  # a client that stops reading at its cap
        finally:
            c.close()
        is_eq(call(f, "GET", USERS)[0], 200, "the fake survives a client hanging up mid-body")

        f.fault("wrong_types", USERS)
        st, _, body = jcall(f, "GET", USERS)
        ok(st == 200 and not isinstance(body["data"], list), "wrong_types list: data not an array")
        f.fault("wrong_types", USERS, variant="id")
        st, _, body = jcall(f, "GET", USERS)
        ok(isinstance(body["data"], list) and isinstance(body["data"][0]["id"], int),
           "wrong_types variant id: id is a number")
        f.fault("wrong_types", USERS, variant="has_more")
        st, _, body = jcall(f, "GET", USERS)
        ok(isinstance(body["has_more"], str), "wrong_types variant has_more: a string")
        f.fault("wrong_types", USERS + "/user-00004")
        st, _, body = jcall(f, "GET", USERS + "/user-00004")
        ok(isinstance(body["id"], int) and not isinstance(body["email"], str),
           "wrong_types retrieve: id a number")
        f.fault("wrong_types", USERS + "/user-00004", variant="deleted", method="DELETE")
        st, _, body = jcall(f, "DELETE", USERS + "/user-00004")
        ok(isinstance(body["deleted"], str), "wrong_types delete: deleted not a boolean")
        st, _, _ = call(f, "GET", USERS + "/user-00004")
        is_eq(st, 200, "a faulted DELETE deletes nothing")
        f.fault("wrong_types", INVITES + "/x")
        st, _, body = jcall(f, "GET", INVITES + "/x")
        ok(isinstance(body["id"], int), "wrong_types invite: id a number")

        f.fault("truncated", USERS)
        try:
            call(f, "GET", USERS)
            ok(False, "truncated: the client sees a short body")
        except http.client.IncompleteRead:
            ok(True, "truncated: the client sees a short body")
        is_eq(call(f, "GET", USERS)[0], 200, "normal service after truncation")

        recs = f.requests()
        faulted = [(r["fault"], r["status"]) for r in recs if r.get("fault")]
        ok(("drop", 0) in faulted and ("malformed", 200) in faulted and ("status", 503) in faulted,
           "faulted requests are recorded with their action and status")
        is_eq(f.pending_faults(), [], "every fault used up")
        f.fault("status", USERS, status=500, count=0)
        is_eq((f.pending_faults(), call(f, "GET", USERS)[0]), ([], 200), "count=0: no fault")

        for bad in ([{"action": "explode"}], [{"action": "status"}], {"action": "drop"},
                    [{"action": "drop", "count": "2"}], [{"action": "drop", "count": -2}],
                    ["x"]):
            try:
                f.faults(bad)
                ok(False, "bad fault %r refused" % (bad,))
            except FakeOrgError as e:
                ok("400" in str(e), "bad fault %r refused" % (bad,))


def t_rate_limit():
    with FakeOrg() as f:
        f.generate(3)
        f.config(rate_limit=1)
        got = []
        for _ in range(20):
            st, r, body = call(f, "GET", USERS + "/user-00001")
            got.append((st, r.getheader("Retry-After"), body))
        is_eq(got[0][0], 200, "rate limit: the first request passes")
        limited = [g for g in got if g[0] == 429]
        ok(limited, "rate limit 1/s: a burst of 20 gets 429s")
        if limited:
            ra = limited[0][1]
            ok(ra is not None and ra.isdigit() and int(ra) >= 1, "429 carries Retry-After in whole seconds")
            is_eq(json.loads(limited[0][2])["error"]["code"], "rate_limit_exceeded",
                  "429 body is OpenAI's rate-limit error")
        recs = f.requests()
        is_eq(sum(1 for r in recs if r["status"] == 429), len(limited), "the 429s are recorded")
        deadline = time.monotonic() + 10
        st = 429
        while st == 429 and time.monotonic() < deadline:
            time.sleep(0.2)
            st = call(f, "GET", USERS + "/user-00001")[0]
        is_eq(st, 200, "the bucket refills")
        f.config(rate_limit=0)
        got = [call(f, "GET", USERS + "/user-00001")[0] for _ in range(20)]
        is_eq(set(got), {200}, "rate_limit 0: off")
        is_eq(f.config(latency=0.5)["latency"], 0.5, "latency set")
        t0 = time.time()
        st = call(f, "GET", USERS + "/user-00001")[0]
        ok(st == 200 and time.time() - t0 >= 0.5, "latency: answered, not before 0.5 s")
        f.config(latency=0)
        for bad in ({"rate_limit": -1}, {"max_limit": 0}, {"bogus": 1}, {"latency": "x"}):
            try:
                f.config(**bad)
                ok(False, "bad config %r refused" % bad)
            except FakeOrgError:
                ok(True, "bad config %r refused" % bad)


def t_recording():
    with FakeOrg() as f:
        f.generate(2)
        f.state()
        is_eq(f.requests(), [], "control requests are not recorded")
        before = time.time()
        call(f, "GET", USERS + "?limit=5&emails[]=a@x&emails[]=b@x&after=user-00001",
             headers={"User-Agent": "openai-revoke/test", "X-Extra": "1"})
        call(f, "DELETE", USERS + "/user-00002", key="wrong")
        after = time.time()
        recs = f.requests()
        is_eq(len(recs), 2, "two API requests recorded")
        r = recs[0]
        is_eq((r["method"], r["path"], r["status"]), ("GET", USERS, 200), "method, path, status")
        is_eq(r["query"], "limit=5&emails[]=a@x&emails[]=b@x&after=user-00001", "raw query")
        is_eq(r["params"], {"limit": ["5"], "emails[]": ["a@x", "b@x"], "after": ["user-00001"]},
              "params with repeated values")
        is_eq(r["headers"].get("user-agent"), "openai-revoke/test", "headers by lower-case name")
        is_eq(r["headers"].get("x-extra"), "1", "any header recorded")
        is_eq(r["headers"].get("authorization"), "Bearer " + KEY, "authorization recorded")
        ok(before <= r["time"] <= recs[1]["time"] <= after, "arrival times in order and in range")
        is_eq((recs[1]["method"], recs[1]["status"]), ("DELETE", 401), "the 401 is recorded")
        is_eq(len(f.requests(since=1)), 1, "requests since an index")
        f.clear_requests()
        is_eq(f.requests(), [], "clear_requests empties the log")
        # The server holds this one for a minute; the client gives up first.
        f.fault("delay", USERS, seconds=60)
        try:
            call(f, "GET", USERS, timeout=0.5)
        except (socket.timeout, OSError):
            pass
        reqs = f.wait_requests(lambda rs: len(rs) == 1)
        ok(reqs[0]["status"] is None, "a request still being answered shows status null")
        call(f, "GET", USERS + "/user-00001")
        reqs = f.wait_requests(lambda rs: len(rs) == 2 and rs[1]["status"] is not None)
        is_eq(reqs[1]["status"], 200, "an answered request shows its status")
        try:
            f.wait_requests(lambda rs: len(rs) > 5, timeout=0.3)
            ok(False, "wait_requests times out")
        except FakeOrgError:
            ok(True, "wait_requests times out")


def t_keepalive_and_threads():
    with FakeOrg() as f:
        f.generate(200)
        c = conn(f)
        try:
            got = [call(f, "GET", USERS + "/user-%05d" % i, c=c)[0] for i in (1, 2, 3)]
        finally:
            c.close()
        is_eq(got, [200, 200, 200], "three requests on one keep-alive connection")
        results = []
        lock = threading.Lock()

        def worker(lo):
            for i in range(lo, lo + 20):
                st = call(f, "DELETE", USERS + "/user-%05d" % i)[0]
                with lock:
                    results.append(st)
        ths = [threading.Thread(target=worker, args=(1 + 20 * k,)) for k in range(10)]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        is_eq((len(results), set(results)), (200, {200}), "200 concurrent deletes all answered 200")
        is_eq(f.state()["users"], [], "and the org is empty")


def t_generate_big():
    with FakeOrg() as f:
        f.generate(10000, owners=3)
        f.users([{"id": "user-extra", "email": "extra@example.com"}])
        n, after, pages = 0, None, 0
        c = conn(f)
        try:
            while pages < 200:
                st, _, body = call(f, "GET", USERS + "?limit=100" + ("&after=" + after if after else ""), c=c)
                page = json.loads(body)
                pages += 1
                n += len(page["data"])
                if not page["has_more"]:
                    break
                after = page["last_id"]
            st, _, body = call(f, "GET", USERS + "?emails[]=u09999@example.com", c=c)
        finally:
            c.close()
        is_eq((n, pages), (10001, 101), "10,001 users in 101 pages")
        is_eq([u["id"] for u in json.loads(body)["data"]], ["user-09999"], "filter in a big org")
        st = f.state()
        is_eq(sum(1 for u in st["users"] if u["role"] == "owner"), 3, "owners=3")
        try:
            f.generate(-1)
            ok(False, "generate -1 refused")
        except FakeOrgError:
            ok(True, "generate -1 refused")


def t_control_errors():
    with FakeOrg() as f:
        for path, body in (("/_fake/reset", b"{not json"), ("/_fake/users", b'[{"email": "x"}]'),
                           ("/_fake/users", b'{"id": "x"}'), ("/_fake/invites", b'[{"id": 5}]'),
                           ("/_fake/reset", b'[]'), ("/_fake/generate", b'{"users": "many"}')):
            c = conn(f)
            try:
                c.request("POST", path, body=body)
                r = c.getresponse()
                r.read()
                is_eq(r.status, 400, "POST %s %r: 400" % (path, body))
            finally:
                c.close()
        c = conn(f)
        try:
            c.request("GET", "/_fake/nothing")
            r = c.getresponse()
            r.read()
            is_eq(r.status, 404, "unknown control endpoint: 404")
            c.request("DELETE", "/_fake/reset")
            r = c.getresponse()
            r.read()
            is_eq(r.status, 405, "control endpoint with a wrong method: 405")
        finally:
            c.close()
        is_eq(f.state(), {"users": [], "invites": []}, "failed control calls changed nothing")
        is_eq(f.config()["max_limit"], 100, "config() reads the settings")


def t_tls():
    with FakeOrg(tls=True) as f:
        f.generate(1)
        ok(f.url.startswith("https://127.0.0.1:"), "TLS fake: https URL")
        st, _, _ = call(f, "GET", USERS + "/user-00001")
        is_eq(st, 200, "HTTPS request verified with the test CA")
        try:
            ctx = ssl.create_default_context()  # the system store does not know our CA
            c = http.client.HTTPSConnection("127.0.0.1", f.port, timeout=10, context=ctx)
            c.request("GET", USERS)
            c.getresponse()
            ok(False, "the system store refuses the test CA's certificate")
        except ssl.SSLCertVerificationError:
            ok(True, "the system store refuses the test CA's certificate")
        finally:
            c.close()
        try:
            c = http.client.HTTPConnection("127.0.0.1", f.port, timeout=10)
            c.request("GET", USERS)
            c.getresponse()
            ok(False, "plain HTTP to the TLS port fails")
        except (http.client.HTTPException, OSError):
            ok(True, "plain HTTP to the TLS port fails")
        finally:
            c.close()
        is_eq(call(f, "GET", USERS + "/user-00001")[0], 200, "still serving after bad clients")
        # A client that connects and never starts TLS must not block others.
        s = socket.create_connection(("127.0.0.1", f.port))
        try:
            is_eq(call(f, "GET", USERS + "/user-00001", timeout=10)[0], 200,
                  "a silent TLS client does not stall the server")
        finally:
            s.close()
    for kind, exc, desc in (("untrusted", ssl.SSLCertVerificationError, "self-signed certificate"),
                            ("wronghost", ssl.SSLCertVerificationError, "certificate for another host")):
        with FakeOrg(tls=kind) as f:
            try:
                call(f, "GET", USERS, timeout=10)
                ok(False, "%s refused by a client trusting the test CA" % desc)
            except exc as e:
                ok(True, "%s refused by a client trusting the test CA" % desc)
                diag("  %s" % e)
            is_eq(f.state(), {"users": [], "invites": []}, "%s: control calls still work" % desc)
            is_eq(f.requests(), [], "%s: the refused request never reached the API" % desc)


def t_apispec():
    with FakeOrg() as f:
        f.generate(3)
        good = [("GET", USERS), ("GET", USERS + "?limit=100&after=user-00001"),
                ("GET", USERS + "?emails[]=a@example.com&emails[]=b@example.com&limit=100"),
                ("GET", USERS + "?emails=a@example.com"), ("GET", USERS + "/user-00001"),
                ("DELETE", USERS + "/user-00002"), ("GET", INVITES + "?limit=100&after=invite-x"),
                ("GET", INVITES + "/invite-1"), ("DELETE", INVITES + "/invite-1")]
        for m, p in good:
            call(f, m, p)
        is_eq(f.spec_violations(), [], "the endpoints openai-revoke uses conform")
        f.clear_requests()
        bad = [("POST", USERS + "/user-00001", "not allowed"),
               ("PUT", USERS, "not allowed"),
               ("DELETE", USERS, "not allowed"),
               ("GET", "/v1/organization/projects", "no such endpoint"),
               ("GET", "/v1/users", "no such endpoint"),
               ("GET", USERS + "/user-00001/roles", "no such endpoint"),
               ("GET", USERS + "?email=a@example.com", "unknown parameter 'email'"),
               ("GET", USERS + "?limit=500", "outside 1..100"),
               ("GET", USERS + "?limit=ten", "not an integer"),
               ("GET", USERS + "?limit=1&limit=2", "given 2 times"),
               ("GET", INVITES + "?emails[]=a@example.com", "unknown parameter 'emails[]'"),
               ("GET", USERS + "/user-00001?expand=1", "unknown parameter 'expand'")]
        for m, p, _ in bad:
            call(f, m, p)
        recs = f.requests()
        for (m, p, why), rec in zip(bad, recs):
            v = apispec.check([rec])
            ok(len(v) == 1 and why in v[0], "apispec flags %s %s (%s)" % (m, p, why))
            if len(v) != 1:
                diag("  %r" % v)
        call(f, "GET", USERS, key=None)
        v = apispec.check(f.requests()[-1:])
        ok(len(v) == 1 and "authorization" in v[0], "apispec flags a request without a key")
        out = subprocess.run([sys.executable, apispec.__file__, "--url", f.base],
                             stdout=subprocess.PIPE, universal_newlines=True)
        is_eq(out.returncode, len(bad) + 1, "apispec.py exits with the number of violations")
        ok(all(line.startswith("# ") for line in out.stdout.splitlines()),
           "apispec.py prints TAP diagnostics only")
        f.clear_requests()
        out = subprocess.run([sys.executable, apispec.__file__, "--url", f.base],
                             stdout=subprocess.PIPE, universal_newlines=True)
        is_eq(out.returncode, 0, "apispec.py exits 0 when all conform")
    out = subprocess.run([sys.executable, apispec.__file__, "--url", f.base],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ok(out.returncode >= 125, "apispec.py fails (not 0) when the fake is unreachable")


def t_process():
    script = fakeorg.fake_script()
    out = subprocess.run([sys.executable, script, "--help"], stdout=subprocess.PIPE,
                         universal_newlines=True)
    ok(out.returncode == 0 and "--port-file" in out.stdout, "--help")
    d = tempfile.mkdtemp(prefix="fake-proc-")
    pf = os.path.join(d, "port")
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            p = subprocess.Popen([sys.executable, script, "--port", "0", "--port-file", pf],
                                 stdin=subprocess.DEVNULL)
            try:
                deadline = time.monotonic() + 10
                while not os.path.exists(pf) and time.monotonic() < deadline and p.poll() is None:
                    time.sleep(0.02)
                ok(os.path.exists(pf), "port file written (%s run)" % sig.name)
                with open(pf) as fh:
                    port = int(fh.read())
                ok(0 < port < 65536, "port file holds a port")
                p.send_signal(sig)
                is_eq(p.wait(10), 0, "%s: clean exit" % sig.name)
                ok(not os.path.exists(pf), "%s: port file removed" % sig.name)
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        p = subprocess.run([sys.executable, script, "--tls-cert", "/nonexistent"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        ok(p.returncode != 0, "--tls-cert without --tls-key refused")
        kf = os.path.join(d, "key")
        with open(kf, "w") as fh:
            fh.write("sk-admin-from-file\n")
        p = subprocess.Popen([sys.executable, script, "--port-file", pf, "--key-file", kf],
                             stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while not os.path.exists(pf) and time.monotonic() < deadline:
                time.sleep(0.02)
            with open(pf) as fh:
                port = int(fh.read())
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request("GET", USERS, headers={"Authorization": "Bearer sk-admin-from-file"})
            r = c.getresponse()
            r.read()
            c.close()
            is_eq(r.status, 200, "--key-file: the key from the file is accepted")
        finally:
            p.terminate()
            p.wait(10)
    finally:
        for n in os.listdir(d):
            os.unlink(os.path.join(d, n))
        os.rmdir(d)
    saved = os.environ.get("abs_top_srcdir")
    os.environ["abs_top_srcdir"] = "/nonexistent-srcdir"
    try:
        for tls in (False, True):
            f = FakeOrg(tls=tls)
            try:
                f.start()
                ok(False, "no fake_openai.py (tls=%s): start fails" % tls)
            except FakeOrgError as e:
                ok(True, "no fake_openai.py (tls=%s): start fails" % tls)
                diag("  %s" % e)
            ok(f.proc is None and not os.path.exists(f.dir),
               "a failed start leaves no process and no temp dir (tls=%s)" % tls)
    finally:
        if saved is None:
            del os.environ["abs_top_srcdir"]
        else:
            os.environ["abs_top_srcdir"] = saved
    f = FakeOrg()
    f.start()
    d = f.dir
    f.stop()
    ok(not os.path.exists(d), "FakeOrg.stop removes its temp dir")
    try:
        FakeOrg(tls="sometimes")
        ok(False, "FakeOrg refuses an unknown tls kind")
    except ValueError:
        ok(True, "FakeOrg refuses an unknown tls kind")


if __name__ == "__main__":
    sys.exit(run([
        ("paging", t_paging),
        ("email filter", t_email_filter),
        ("retrieve/delete", t_retrieve_delete),
        ("invites", t_invites),
        ("auth and routes", t_auth_and_routes),
        ("faults", t_faults),
        ("rate limit", t_rate_limit),
        ("recording", t_recording),
        ("keep-alive and threads", t_keepalive_and_threads),
        ("big org", t_generate_big),
        ("control errors", t_control_errors),
        ("tls", t_tls),
        ("apispec", t_apispec),
        ("process", t_process),
    ]))
