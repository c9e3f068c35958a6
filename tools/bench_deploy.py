"""Deploy benchmark: `baysense deploy` against `mpremote cp -r` on virtual boards at 115200 baud.

In one run, each on a freshly started virtual board paced at 115200 baud:
- a full deploy with `baysense deploy --no-reset`;
- `mpremote cp -r` of the same built files (.mpy modules, boot.py, main.py), which lands them
  in a folder of that name on the board;
- `mpremote cp -r` of the firmware sources, what a user without a build step copies;
- `baysense deploy --no-reset` again with nothing changed.
Every figure is the wall time of the whole command, process start-up included. The figures
are printed and recorded in docs/benchmarks.md, replacing the previous run's.

Run alone: .venv/bin/python tools/bench_deploy.py [--no-record]
"""

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from baysense import boards, deploy
from baysense.paths import FIRMWARE_DIR
from baysense.vboard.board import VirtualBoard

from benchdoc import cpu_model  # noqa: E402 - tools/ is on the path when run as a script

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "benchmarks.md"
# The section between these marks is this script's; a new run replaces it.
START_MARK = "<!-- deploy-bench:start -->"
END_MARK = "<!-- deploy-bench:end -->"
BIN = Path(sys.executable).parent
BAUD = 115200
COMMAND_TIMEOUT_S = 300  # a full copy takes under 15 s here; this only stops a hang
FULL_GOAL = 3.0  # baysense deploy at least this many times faster than mpremote cp -r
UNCHANGED_GOAL = 20.0  # a deploy with nothing changed at least this many times faster than a full copy


def timed(command):
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, cwd=ROOT)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit("%s failed (exit %d): %s %s" % (" ".join(command), result.returncode, result.stdout, result.stderr))
    return elapsed, result.stdout


def fresh_board(scratch, name):
    return VirtualBoard(scratch / name, boards.load("virtual"), baud=BAUD).start()


def run(scratch):
    files = deploy.build()
    built = scratch / "built"
    for path, data in files.items():
        target = built / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    sources = scratch / "sources"
    shutil.copytree(FIRMWARE_DIR, sources, ignore=shutil.ignore_patterns("__pycache__"))
    figures = {
        "files": len(files),
        "build_bytes": sum(len(data) for data in files.values()),
        "source_bytes": sum(path.stat().st_size for path in sources.rglob("*.py")),
    }

    board = fresh_board(scratch, "baysense")
    try:
        deploy_command = [str(BIN / "baysense"), "deploy", "--port", board.port, "--no-reset"]
        figures["baysense_full_s"], output = timed(deploy_command)
        if "deployed:" not in output:
            raise SystemExit("the full deploy changed nothing: %s" % output)
        figures["baysense_unchanged_s"], output = timed(deploy_command)
        if "firmware up to date" not in output:
            raise SystemExit("the second deploy was not empty: %s" % output)
    finally:
        board.stop()

    for name, folder in (("mpremote_built_s", built), ("mpremote_sources_s", sources)):
        board = fresh_board(scratch, name)
        try:
            figures[name], _output = timed([str(BIN / "mpremote"), "connect", board.port, "cp", "-r", str(folder) + "/", ":"])
        finally:
            board.stop()
    return figures


def report(figures):
    full_ratio = figures["mpremote_built_s"] / figures["baysense_full_s"]
    unchanged_ratio = figures["baysense_full_s"] / figures["baysense_unchanged_s"]
    unchanged_vs_mpremote = figures["mpremote_built_s"] / figures["baysense_unchanged_s"]
    lines = [
        "- build: %(files)d files, %(build_bytes)d bytes (.mpy modules, boot.py, main.py); sources %(source_bytes)d bytes"
        % figures,
        "- `baysense deploy` (full, empty board): %.2f s" % figures["baysense_full_s"],
        "- `mpremote cp -r` of the same built files: %.2f s, %.1f times the time of `baysense deploy` (goal: at least %.0f)"
        % (figures["mpremote_built_s"], full_ratio, FULL_GOAL),
        "- `mpremote cp -r` of the firmware sources: %.2f s" % figures["mpremote_sources_s"],
        "- `baysense deploy` with nothing changed: %.2f s; the full deploy takes %.1f times as long, `mpremote cp -r`"
        " %.1f times (goal: at least %.0f)"
        % (figures["baysense_unchanged_s"], unchanged_ratio, unchanged_vs_mpremote, UNCHANGED_GOAL),
    ]
    return lines


def record(section):
    """Replace this benchmark's section of docs/benchmarks.md, or append it the first time."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmarks\n"
    start = text.find(START_MARK)
    end = text.find(END_MARK)
    if start >= 0 and end > start:
        text = text[:start] + section + text[end + len(END_MARK) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    RESULTS.write_text(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-record", action="store_true", help="print the figures without recording them")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="baysense-bench-deploy-") as scratch:
        figures = run(Path(scratch))
    lines = report(figures)
    for line in lines:
        print(line)
    if options.no_record:
        return 0

    section = "\n".join(
        [
            START_MARK,
            "## Deploying to a virtual board (tools/bench_deploy.py, %s)" % time.strftime("%Y-%m-%d"),
            "",
            "Command: `.venv/bin/python tools/bench_deploy.py` (virtual boards paced at %d baud; wall time of each"
            " whole command, process start-up included)." % BAUD,
            "Machine: %d CPUs (`nproc`), %s, %s, Python %s; load average %.1f when the run ended"
            " (the machine is shared, so figures vary between runs)."
            % (os.cpu_count(), cpu_model(), platform.machine(), platform.python_version(), os.getloadavg()[0]),
            "",
            *lines,
            END_MARK,
        ]
    )
    record(section)
    print("recorded in %s" % RESULTS.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
