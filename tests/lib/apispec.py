"""apispec: checks requests recorded by the fake organization against the
part of OpenAI's Administration API that openai-revoke uses (our own table,
written from the published OpenAPI description).  Tests call check() at the
end, so a client that drifts from the real API fails here and not in
production.  As a script: apispec.py --url http://127.0.0.1:PORT [--cafile F]
prints the violations as TAP diagnostics; exit status = their number (max 100)."""

import json
import re
import sys
from urllib.parse import parse_qs, unquote

ID = r"[^/]+"


def _limit(v):
    if not re.fullmatch(r"[0-9]+", v):
        return "limit %r is not an integer" % v
    if not 1 <= int(v) <= 100:
        return "limit %s is outside 1..100" % v
    return None


def _nonempty(v):
    return None if v else "empty value"


# (method, path regex under the API base, {parameter: (validator, repeatable)})
ENDPOINTS = [
    ("GET", r"/v1/organization/users",
     {"limit": (_limit, False), "after": (_nonempty, False),
      "emails": (_nonempty, True), "emails[]": (_nonempty, True)}),
    ("GET", r"/v1/organization/users/" + ID, {}),
    ("DELETE", r"/v1/organization/users/" + ID, {}),
    ("GET", r"/v1/organization/invites",
     {"limit": (_limit, False), "after": (_nonempty, False)}),
    ("GET", r"/v1/organization/invites/" + ID, {}),
    ("DELETE", r"/v1/organization/invites/" + ID, {}),
]

REQUIRED_HEADERS = ("authorization",)


def check_one(req):
    """Violations (strings) of one recorded request."""
    method, path = req.get("method"), req.get("path", "")
    where = "%s %s" % (method, path + ("?" + req["query"] if req.get("query") else ""))
    paths = [e for e in ENDPOINTS if re.fullmatch(e[1], path)]
    if not paths:
        return ["%s: no such endpoint" % where]
    match = [e for e in paths if e[0] == method]
    if not match:
        return ["%s: method %s not allowed here (only %s)"
                % (where, method, ", ".join(sorted({e[0] for e in paths})))]
    out = []
    seg = path.rsplit("/", 1)[-1]
    if path.count("/") == 4 and (not unquote(seg) or any(
            c in unquote(seg) for c in "/?#") or any(ord(c) < 32 for c in unquote(seg))):
        out.append("%s: bad id in path" % where)
    allowed = match[0][2]
    params = req.get("params")
    if params is None:
        params = parse_qs(req.get("query", ""), keep_blank_values=True)
    for name, values in params.items():
        if name not in allowed:
            out.append("%s: unknown parameter %r" % (where, name))
            continue
        validate, repeatable = allowed[name]
        if len(values) > 1 and not repeatable:
            out.append("%s: parameter %r given %d times" % (where, name, len(values)))
        for v in values:
            why = validate(v)
            if why:
                out.append("%s: %s: %s" % (where, name, why))
    headers = req.get("headers") or {}
    for h in REQUIRED_HEADERS:
        if h not in headers:
            out.append("%s: no %s header" % (where, h))
    auth = headers.get("authorization", "")
    if auth and not auth.startswith("Bearer "):
        out.append("%s: Authorization is not a Bearer token" % where)
    return out


def check(requests):
    """All violations of a list of recorded requests (empty = conforming)."""
    out = []
    for r in requests:
        out.extend(check_one(r))
    return out


def main(argv):
    import ssl
    import urllib.request
    url, cafile = None, None
    i = 0
    while i < len(argv):
        if argv[i] == "--url" and i + 1 < len(argv):
            url = argv[i + 1]
            i += 2
        elif argv[i] == "--cafile" and i + 1 < len(argv):
            cafile = argv[i + 1]
            i += 2
        else:
            sys.stderr.write("usage: apispec.py --url BASE [--cafile FILE]\n")
            return 125
    if not url:
        sys.stderr.write("usage: apispec.py --url BASE [--cafile FILE]\n")
        return 125
    ctx = ssl.create_default_context(cafile=cafile) if cafile else None
    if ctx is not None:
        ctx.check_hostname = False  # the wrong-host variant; the chain is still checked
    try:
        with urllib.request.urlopen(url + "/_fake/requests", timeout=60, context=ctx) as r:
            reqs = json.loads(r.read())
    except Exception as e:  # the check could not run: say so, never "0 violations"
        sys.stderr.write("apispec: cannot read %s/_fake/requests: %s\n" % (url, e))
        return 126
    bad = check(reqs)
    for b in bad:
        print("# spec violation: " + b.replace("\n", " "), flush=True)
    return min(len(bad), 100)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
