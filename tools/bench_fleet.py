"""Fleet benchmark: `baysense fleet provision` of 16 virtual boards against one board.

Each virtual board runs in its own `baysense vboard` process, started fresh (empty filesystem)
for every measurement, and the gateway runs in this process. Every figure is the wall time of
the whole `baysense fleet provision` command (process start-up, build, deploy, provision,
self-test with the gateway's acknowledgement, restart). Two pacings are measured:
- 115200 baud, as a USB-serial bridge carries it: the port's wire time dominates, as on
  real boards, and each board has its own port;
- unpaced pseudo-terminals: all the work is CPU work on this machine's cores, which the 16
  virtual boards' interpreters share with the workers.
Goal: 16 boards take at most twice as long as one.

Run alone: .venv/bin/python tools/bench_fleet.py [--boards 16] [--no-record]
"""

import argparse
import json
import logging
import statistics
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from baysense.device import Device
from baysense.gateway.server import GatewayThread
from baysense.registry import Registry

from benchdoc import cpu_model  # noqa: E402 - tools/ is on the path when run as a script

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "benchmarks.md"
BIN = Path(sys.executable).parent
PACED_BAUD = 115200
GOAL_RATIO = 2.0
# Runs per figure. The median is reported, because anything else running on a shared 2-core
# machine can slow a single run.
REPEATS = 3
SECTION_START = "<!-- fleet-bench:start -->"
SECTION_END = "<!-- fleet-bench:end -->"
# Limits that only stop a hang: a 16-board run takes well under a minute here.
COMMAND_TIMEOUT_S = 600
BOARD_START_TIMEOUT_S = 30


class BoardProcess:
    """One `baysense vboard` process; `port` is its pseudo-terminal."""

    def __init__(self, state_dir, baud):
        command = [str(BIN / "baysense"), "vboard", "--dir", str(state_dir)]
        if baud:
            command += ["--baud", str(baud)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.port = None

    def wait_for_port(self):
        deadline = time.monotonic() + BOARD_START_TIMEOUT_S
        for line in self.process.stdout:
            if line.startswith("port: "):
                self.port = line.split(":", 1)[1].strip()
                return self.port
            if time.monotonic() > deadline:
                break
        raise SystemExit("a virtual board did not print its port (exit %s)" % self.process.poll())

    def wait_until_booted(self):
        """Return once the board's interpreter shows the REPL prompt: real boards are booted
        before the command runs, and 16 boards booting at once would load the CPU."""
        with Device(self.port) as device:
            device.interrupt()

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def provision_fleet(scratch, count, baud):
    """Provision `count` fresh virtual boards in one command; return its wall time in seconds."""
    work = Path(tempfile.mkdtemp(prefix="fleet-%d-%s-" % (count, baud or "unpaced"), dir=scratch))
    registry_path = work / "registry.db"
    Registry(registry_path).close()
    boards = [BoardProcess(work / ("board%02d" % index), baud) for index in range(count)]
    try:
        ports = [board.wait_for_port() for board in boards]
        for board in boards:
            board.wait_until_booted()
        with GatewayThread(work / "gateway.db", registry_path) as gateway:
            bays = "".join('[[bays]]\nid = "bench-%02d"\nport = "%s"\n\n' % (index, port) for index, port in enumerate(ports))
            manifest = work / "site.toml"
            manifest.write_text(
                'community = "bench"\ngateway = "%s:%d"\nboard = "virtual"\n\n%s' % (gateway.address[0], gateway.address[1], bays)
            )
            command = [str(BIN / "baysense"), "fleet", "provision", str(manifest), "--registry", str(registry_path), "--json"]
            started = time.monotonic()
            result = subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, cwd=ROOT)
            elapsed = time.monotonic() - started
    finally:
        for board in boards:
            board.stop()
    if result.returncode != 0:
        try:
            failed = [bay for bay in json.loads(result.stdout)["bays"] if bay["result"] != "ok"]
            reasons = "\n".join("%(bay)s (%(board)s) at %(step)s: %(result)s: %(detail)s" % bay for bay in failed)
        except ValueError:
            reasons = result.stdout
        raise SystemExit("fleet provision of %d boards failed (exit %d):\n%s\n%s" % (count, result.returncode, reasons, result.stderr))
    shutil.rmtree(work, ignore_errors=True)
    return elapsed


def record(path, section):
    """Put `section` in place of this benchmark's earlier section in `path`, or append it."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start = text.find(SECTION_START)
    end = text.find(SECTION_END)
    if start >= 0 and end > start:
        text = text[:start] + section + text[end + len(SECTION_END):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def _seconds(values):
    return ", ".join("%.2f" % value for value in values)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, default=16, help="boards in the large fleet (default 16)")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="runs per figure; the median is reported")
    parser.add_argument("--no-record", action="store_true", help="print the figures without appending them")
    options = parser.parse_args()
    # The self-test's first heartbeat may reach the gateway before it has read the new key;
    # the rejection it logs is expected here.
    logging.getLogger("baysense.gateway").setLevel(logging.ERROR)

    lines = []
    with tempfile.TemporaryDirectory(prefix="baysense-bench-fleet-") as scratch:
        for baud in (PACED_BAUD, None):
            ones = [provision_fleet(Path(scratch), 1, baud) for _ in range(options.repeats)]
            manys = [provision_fleet(Path(scratch), options.boards, baud) for _ in range(options.repeats)]
            one = statistics.median(ones)
            many = statistics.median(manys)
            ratio = many / one
            pacing = "%d baud" % baud if baud else "unpaced pseudo-terminals"
            lines.append(
                "- %s: 1 board %.2f s, %d boards %.2f s (medians of %d runs; all runs: %s and %s s):"
                " %.2f times as long (goal: at most %.0f; %s)"
                % (pacing, one, options.boards, many, options.repeats, _seconds(ones), _seconds(manys), ratio,
                   GOAL_RATIO, "met" if ratio <= GOAL_RATIO else "not met")
            )
            print(lines[-1], flush=True)
    if options.no_record:
        return 0

    section = [
        SECTION_START,
        "## Provisioning a fleet of virtual boards (tools/bench_fleet.py, %s)" % time.strftime("%Y-%m-%d"),
        "",
        "Command: `.venv/bin/python tools/bench_fleet.py` (each board a fresh `baysense vboard` process; wall time of"
        " the whole `baysense fleet provision` command: build, deploy, provision, self-test acknowledged by the"
        " gateway, restart).",
        "Machine: %d CPUs (`nproc`), %s, %s, Python %s; load average %.1f when the run ended (the machine is"
        " shared, so figures vary between runs)."
        % (os.cpu_count(), cpu_model(), platform.machine(), platform.python_version(), os.getloadavg()[0]),
        "",
        *lines,
        SECTION_END,
    ]
    record(RESULTS, "\n".join(section))
    print("recorded in %s" % RESULTS.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
