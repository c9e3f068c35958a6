"""Replay the recorded data sets through the node's detector and report accuracy and cost.

Runs the firmware detector on the MicroPython interpreter through `baysense replay` (one
interpreter per data set), and measures the heap its modules need (tools/detector_heap.py).
Prints a Markdown section and puts it in docs/benchmarks.md between
the detector-bench markers (--no-write skips that). `make bench` runs it through
tools/bench.py; it also runs alone:

    .venv/bin/python tools/bench_detector.py [--data ../shared/data] [--no-write]
"""

import argparse
import datetime
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

from baysense.replay import load_settings, replay

import benchdoc  # noqa: E402 - tools/ is on the path when run as a script
import detector_heap  # noqa: E402 - the same

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
FIELD_BOARD = "esp32c3-qmc5883l"
DISTANCE_BOARD = "esp32-devkitc-hcsr04"
TOF_VALUE = "median_far(d*_mm, 4000)"  # 0 = no target, read as 4 m away
BENCHMARKS_MD = REPO / "docs" / "benchmarks.md"
SECTION_START = "<!-- detector-bench:start -->"
SECTION_END = "<!-- detector-bench:end -->"


def _number(path):
    found = re.findall(r"\d+", path.stem)
    return int(found[-1]) if found else 0


def _timed(label, paths, settings, **options):
    started = time.perf_counter()
    summary = replay(paths, settings, **options)
    summary["wall_s"] = time.perf_counter() - started
    summary["label"] = label
    return summary


# Traffic files padded at their start with their own first samples, so that both passes of a
# file come after the detector's calibration (in every file the first pass falls in it).
PADDING_SOURCE_MS = 1500
PADDINGS_MS = (8000, 12000, 20000)
# Shorter paddings put the first pass inside the warm-up or the calibration window instead.
CALIBRATION_PADDINGS_MS = (0, 500, 1000, 2000, 3000, 4000, 5000, 6000, 7000)
PADDED_PERIOD_MS = 90


def write_padded_traffic(traffic, folder, paddings_ms=PADDINGS_MS):
    """Write every traffic file with each padding into `folder` (a temporary one); return the paths."""
    paths = []
    for path in traffic:
        rows = [line.split(",") for line in path.read_text().split()]
        start = int(rows[0][1])
        source = [row[2] for row in rows if int(row[1]) - start < PADDING_SOURCE_MS]
        for padding_ms in paddings_ms:
            count = padding_ms // PADDED_PERIOD_MS
            values = (source * (count // len(source) + 1))[:count] + [row[2] for row in rows]
            padded = folder / ("%s+%dms.txt" % (path.stem, padding_ms))
            padded.write_text("".join("%d,%d,%s,0\n" % (i, i * PADDED_PERIOD_MS, value) for i, value in enumerate(values)))
            paths.append(padded)
    return paths


def run(data_dir):
    """Replay every data set found under data_dir; return the list of summaries."""
    field = load_settings(board=FIELD_BOARD)
    distance = load_settings(board=DISTANCE_BOARD)
    summaries = []

    parking = sorted((data_dir / "magnetic" / "rdvd" / "parking").glob("*.txt"), key=_number)
    if parking:
        summaries.append(_timed("RDVD parking, all files", parking, field))
        # The older rules were tuned on the odd-numbered files and the newer ones on half of the
        # recordings (docs/detector.md names them), so both halves are shown.
        odd = [p for p in parking if _number(p) % 2 == 1]
        even = [p for p in parking if _number(p) % 2 == 0]
        summaries.append(_timed("RDVD parking, odd-numbered files", odd, field))
        summaries.append(_timed("RDVD parking, even-numbered files", even, field))
    traffic = sorted((data_dir / "magnetic" / "rdvd" / "traffic").glob("*.txt"), key=_number)
    if traffic:
        summaries.append(_timed("RDVD traffic as negatives", traffic, field, negative=True))
        with tempfile.TemporaryDirectory(prefix="baysense-padded-") as folder:
            padded = write_padded_traffic(traffic, Path(folder))
            label = "RDVD traffic padded with 8, 12 or 20 s of its own start, as negatives"
            summaries.append(_timed(label, padded, field, negative=True))
        with tempfile.TemporaryDirectory(prefix="baysense-padded-") as folder:
            padded = write_padded_traffic(traffic, Path(folder), CALIBRATION_PADDINGS_MS)
            label = "RDVD traffic padded with 0 to 7 s of its own start (first pass during calibration), as negatives"
            summaries.append(_timed(label, padded, field, negative=True))
    edgeai = sorted((data_dir / "tof-magnetic" / "edgeai").glob("*.csv"))
    if edgeai:
        summaries.append(_timed("EdgeAI ToF grid, " + TOF_VALUE, edgeai, distance, read_options={"value": TOF_VALUE}))
    empty_run = data_dir / "magnetic" / "csm-hmc5883" / "data3.txt"
    if empty_run.exists():
        options = {"period_ms": 40, "value": "z"}
        summaries.append(_timed("CSM HMC5883L empty run (z axis, 25 Hz)", [empty_run], field, read_options=options))
    return summaries


def _state_list(result):
    return ", ".join("%s at %.0f s" % (e["state"], e["time_ms"] / 1000) for e in result["events"]) or "no change"


def to_markdown(summaries, data_dir, heap=None):
    """Render the summaries, and detector_heap.measure()'s tables, as a docs/benchmarks.md section."""
    lines = [
        SECTION_START,
        "## Detector replay (tools/bench_detector.py, %s)" % datetime.date.today().isoformat(),
        "",
        "Command: `.venv/bin/python tools/bench_detector.py --data %s`. Machine: %d CPUs, %s, Python %s. "
        "The detector runs on the MicroPython unix port (`-X heapsize=110K`); docs/detector.md "
        "explains the scoring and the misses."
        % (os.path.relpath(data_dir, REPO), os.cpu_count(), platform.machine(), platform.python_version()),
        "",
        "| data set | files | result | us per sample | bytes allocated per sample | detector RAM (bytes) | wall time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for summary in summaries:
        if summary["episodes"]:
            result = "%d of %d episodes correct (%.3f)" % (
                summary["episodes_correct"],
                summary["episodes"],
                summary["episode_accuracy"],
            )
        elif summary["negatives"]:
            result = "%d of %d files with a false occupied" % (
                summary["negatives_with_false_occupied"],
                summary["negatives"],
            )
        else:
            result = "; ".join("%s: %s" % (r["file"], _state_list(r)) for r in summary["results"])
        cost = summary["cost"]
        lines.append(
            "| %s | %d | %s | %.1f | %.3f | %s | %.1f |"
            % (
                summary["label"],
                summary["files"],
                result,
                cost["us_per_sample"],
                cost["allocated_bytes_per_sample"],
                cost["detector_bytes"],
                summary["wall_s"],
            )
        )
    lines.append("")
    lines.append(
        "us per sample is measured inside the interpreter around `Detector.update()` with "
        "`time.ticks_us()` on this x86-64 host, not on an ESP32. Bytes allocated per sample is "
        "`gc.mem_alloc()` after minus before each update with the collector disabled around it."
    )
    if heap:
        lines.extend(["", "Smallest heap (`micropython -X heapsize`, bisected in 1 KB steps) to build a detector or import one module:", ""])
        lines.extend(detector_heap.to_markdown(*heap))
    lines.append(SECTION_END)
    return "\n".join(lines) + "\n"


def write_section(section):
    """Replace the detector section of docs/benchmarks.md, leaving other sections alone."""
    benchdoc.write_section(section, SECTION_START, SECTION_END)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding the shared data sets")
    parser.add_argument("--no-write", action="store_true", help="print the figures without writing docs/benchmarks.md")
    options = parser.parse_args(argv)
    if not options.data.is_dir():
        print("bench_detector: data folder not found (%s): pass --data" % options.data, file=sys.stderr)
        return 1
    text = to_markdown(run(options.data), options.data, detector_heap.measure())
    print(text)
    if not options.no_write:
        write_section(text)
        print("written to %s" % BENCHMARKS_MD.relative_to(REPO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
