"""Helpers shared by the benchmark scripts: the machine's description and docs/benchmarks.md.

Each script owns one section of docs/benchmarks.md between its own start and end markers,
and rewrites only that section, so the scripts can run alone or from tools/bench.py.
"""

import platform
from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def cpu_model():
    """Return the CPU's model name from /proc/cpuinfo, else platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def write_section(section, start_marker, end_marker, path=BENCHMARKS_MD):
    """Replace the section between the markers (section includes them), or append it."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start_marker in text and end_marker in text:
        head, rest = text.split(start_marker, 1)
        tail = rest.split(end_marker, 1)[1].lstrip("\n")
        text = head + section + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)
