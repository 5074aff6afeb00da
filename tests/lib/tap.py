"""TAP output for the Python tests (read by automake's tap-driver)."""
import sys
import traceback

_n = 0
_failed = 0


def ok(cond, desc):
    global _n, _failed
    _n += 1
    if not cond:
        _failed += 1
    print(("ok" if cond else "not ok") + " %d - %s" % (_n, desc.replace("\n", " ")), flush=True)
    return bool(cond)


def is_eq(got, want, desc):
    r = ok(got == want, desc)
    if not r:
        diag("  got  %r\n  want %r" % (got, want))
    return r


def diag(msg):
    for line in str(msg).splitlines() or [""]:
        print("# " + line, flush=True)


def run(tests):
    """Run (name, fn) pairs: each fn makes its own assertions; an exception
    is one failure.  Prints the plan and returns the exit status."""
    for name, fn in tests:
        try:
            fn()
        except Exception:  # a crashing test is a failing test, never a lost one
            ok(False, "%s raised" % name)
            diag(traceback.format_exc())
    print("1..%d" % _n, flush=True)
    return 1 if _failed else 0


def skip_all(why):
    print("1..0 # SKIP %s" % why, flush=True)
    sys.exit(0)
