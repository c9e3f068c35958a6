"""`make bench`: run every benchmark script in tools/ (bench_*.py) one after another.

Each script measures one part, prints its figures and records them in docs/benchmarks.md
with the command and the machine. A failing script is reported and the others still run;
the exit status is non-zero if any failed.
"""

import subprocess
import sys
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parent


def main():
    scripts = sorted(path for path in TOOLS.glob("bench_*.py"))
    failed = []
    for script in scripts:
        print("== %s" % script.name, flush=True)
        started = time.monotonic()
        result = subprocess.run([sys.executable, str(script)], cwd=TOOLS.parent)
        print("== %s: exit %d after %.0f s" % (script.name, result.returncode, time.monotonic() - started), flush=True)
        if result.returncode != 0:
            failed.append(script.name)
    if failed:
        print("failed: %s" % ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
