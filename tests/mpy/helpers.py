"""Run source on the MicroPython unix port with firmware/ on its path, as a node would."""

import os
import subprocess
from pathlib import Path

from baysense.paths import micropython_command

REPO = Path(__file__).resolve().parents[2]
FIRMWARE_DIR = REPO / "firmware"
DATA_DIR = REPO.parent / "shared" / "data"
# An ESP32 running MicroPython has about this much free heap, so code that fits here fits there.
ESP32_HEAP = "110K"
RUN_TIMEOUT_S = 120  # one interpreter run; the longest scenario takes a few seconds


def run_micropython(source, heapsize=ESP32_HEAP, before=(), environment=None):
    """Run `source` on MicroPython; return its stdout, or fail the test with its stderr.

    `before` lists folders searched ahead of firmware/ (the virtual board's HAL, for one),
    and `environment` adds variables to the interpreter's environment.
    """
    search_path = ":".join([str(folder) for folder in before] + [str(FIRMWARE_DIR)])
    environment = dict(os.environ, MICROPYPATH=search_path, **(environment or {}))
    argv = micropython_command() + ["-X", "heapsize=" + heapsize, "-c", source]
    done = subprocess.run(argv, capture_output=True, text=True, env=environment, timeout=RUN_TIMEOUT_S)
    if done.returncode != 0:
        raise AssertionError("MicroPython exited with %d:\n%s\n%s" % (done.returncode, done.stdout, done.stderr))
    return done.stdout
