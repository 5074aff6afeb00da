"""make check runs every benchmark at a tiny size (bench/run --smoke) so the
benchmarks keep working; no target is asserted here."""
import os
import runpy
import sys

sys.argv = ["bench/run", "--smoke"]
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "run"), run_name="__main__")
