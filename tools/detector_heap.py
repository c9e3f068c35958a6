"""Measure the heap the detector's modules need on MicroPython, from source and from .mpy.

A board whose MicroPython cannot load this mpy-cross's .mpy files gets the .py sources
(`baysense deploy` warns), and compiling a source takes heap beside what the node holds. For
each module and each sensor kind, this finds the smallest `micropython -X heapsize` in which
the import succeeds, by bisection in steps of 1 KB. tools/bench_detector.py puts the table in
docs/benchmarks.md; it also runs alone:

    .venv/bin/python tools/detector_heap.py [--firmware firmware]

The figures come from the 64-bit unix port, whose objects are larger than the ESP32 port's,
so they are an upper estimate for an ESP32, not a measurement on one.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from baysense.deploy import compile_module
from baysense.paths import FIRMWARE_DIR, micropython_command
from baysense.replay.firmware import detector_modules

# Bisection bounds (KB). The bare unix port starts in about 9 KB, and 512 KB is far above
# anything the detector needed when this was written (132 KB before its split).
LOWEST_HEAP_KB = 8
HIGHEST_HEAP_KB = 512
RUN_TIMEOUT_S = 60  # one interpreter run; each takes well under a second

# Settings that build a Detector of each kind; the ultrasonic thresholds have no defaults.
KIND_SETTINGS = {
    "magnetometer": {"kind": "magnetometer"},
    "ultrasonic": {"kind": "ultrasonic", "occupied_below_mm": 1400, "vacant_above_mm": 1700},
    "presence": {"kind": "presence"},
}


def imports_within(folder, source, heap_kb):
    """Return True when `source` runs with MICROPYPATH=folder in a heap of heap_kb KB."""
    environment = dict(os.environ, MICROPYPATH=str(folder))
    argv = micropython_command() + ["-X", "heapsize=%dK" % heap_kb, "-c", source]
    done = subprocess.run(argv, capture_output=True, text=True, env=environment, timeout=RUN_TIMEOUT_S)
    return done.returncode == 0


def smallest_heap_kb(folder, source):
    """Return the smallest heap (KB) in which `source` runs; raise RuntimeError past the bounds."""
    if not imports_within(folder, source, HIGHEST_HEAP_KB):
        raise RuntimeError("%r fails even with %d KB of heap in %s" % (source, HIGHEST_HEAP_KB, folder))
    low, high = LOWEST_HEAP_KB, HIGHEST_HEAP_KB
    while high - low > 1:
        middle = (low + high) // 2
        if imports_within(folder, source, middle):
            high = middle
        else:
            low = middle
    return high


def stage(firmware_dir, folder, sources, compiled):
    """Fill `folder` with the `sources` as .py and the `compiled` modules as .mpy."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for name in sources:
        shutil.copy(firmware_dir / (name + ".py"), folder)
    for name in compiled:
        compile_module(firmware_dir / (name + ".py"), name + ".py", folder / (name + ".mpy"))


def measure(firmware_dir=FIRMWARE_DIR):
    """Return (kind rows, module rows) of smallest heaps in KB.

    A kind row is (kind, all sources, all .mpy): building a Detector of that kind. A module
    row is (module, from source, from .mpy): importing that module alone, with the modules it
    imports always from .mpy, so the difference is what compiling that one source takes.
    """
    firmware_dir = Path(firmware_dir)
    modules = detector_modules(firmware_dir)
    kinds = []
    rows = []
    with tempfile.TemporaryDirectory(prefix="baysense-heap-") as scratch:
        folder = Path(scratch) / "path"
        for kind, settings in KIND_SETTINGS.items():
            source = "from detector import Detector\nDetector(%r)\n" % settings
            stage(firmware_dir, folder, modules, [])
            from_source = smallest_heap_kb(folder, source)
            stage(firmware_dir, folder, [], modules)
            kinds.append((kind, from_source, smallest_heap_kb(folder, source)))
        for name in modules:
            source = "import %s\n" % name
            stage(firmware_dir, folder, [name], [other for other in modules if other != name])
            from_source = smallest_heap_kb(folder, source)
            stage(firmware_dir, folder, [], modules)
            rows.append((name, from_source, smallest_heap_kb(folder, source)))
    return kinds, rows


def to_markdown(kinds, rows):
    """Render the two tables of measure() as Markdown lines."""
    lines = [
        "| Detector of kind | heap, all modules from source (KB) | heap, all from .mpy (KB) |",
        "|---|---|---|",
    ]
    lines.extend("| %s | %d | %d |" % row for row in kinds)
    lines.extend(
        [
            "",
            "| module imported alone | heap from source (KB) | heap from .mpy (KB) |",
            "|---|---|---|",
        ]
    )
    lines.extend("| %s.py | %d | %d |" % row for row in rows)
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--firmware", type=Path, default=FIRMWARE_DIR, help="folder containing detector.py")
    options = parser.parse_args(argv)
    print("\n".join(to_markdown(*measure(options.firmware))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
