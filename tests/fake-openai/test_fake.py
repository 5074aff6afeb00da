"""Self-test of the fake OpenAI organization (grows below)."""
import sys
from fakeorg import FakeOrg
from tap import ok, run
def t_start():
    with FakeOrg() as f:
        ok(f.url.startswith("http://127.0.0.1:"), "starts")
sys.exit(run([("start", t_start)]))
