"""Recorded sensor traces: CSV or whitespace-separated text, with or without a header.

A trace is a list of (time_ms, value) samples plus an optional label per sample (1 = a vehicle
present, 0 = absent). The value can be one column or a reduction over several columns, such as
the median of the non-zero zones of a time-of-flight grid.
"""

import csv
import fnmatch
import io
import logging
import math
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..errors import ConfigError

log = logging.getLogger(__name__)

# Column layouts assumed for headerless files when --columns is not given, by column count.
HEADERLESS_LAYOUTS = {
    1: ("value",),
    3: ("x", "y", "z"),  # a 3-axis magnetometer log
    4: ("sequence", "timestamp_ms", "value", "label"),
}
TIME_COLUMNS = ("timestamp_ms", "time_ms", "timestamp", "time")
LABEL_COLUMNS = ("label", "occupied")
TRACE_SUFFIXES = (".txt", ".csv", ".tsv", ".log")

_CALL = re.compile(r"^\s*([a-z_]+)\s*\((.*)\)\s*$")


@dataclass
class Trace:
    """One recording: sample times (ms from the first sample), values and optional labels."""

    name: str
    times_ms: list
    values: list
    labels: list = None


def _number(text):
    try:
        return int(text)
    except ValueError:
        return float(text)


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def _split_rows(text):
    sample = text[:4096]
    if "," in sample:
        return [row for row in csv.reader(io.StringIO(text)) if row and any(cell.strip() for cell in row)]
    if "\t" in sample or ";" not in sample:
        return [line.split() for line in text.splitlines() if line.strip()]
    return [row for row in csv.reader(io.StringIO(text), delimiter=";") if row]


def _median(numbers):
    ordered = sorted(numbers)
    size = len(ordered)
    if size == 0:
        return 0
    middle = size // 2
    if size % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def _reduce_median_nonzero(values):
    return _median([v for v in values if v != 0])


def _reduce_min_nonzero(values):
    nonzero = [v for v in values if v != 0]
    return min(nonzero) if nonzero else 0


def _reduce_norm(values):
    return math.sqrt(sum(v * v for v in values))


def _reduce_mean(values):
    return sum(values) / len(values)


def _reduce_median(values):
    return _median(values)


def _reduce_median_far(values, far_mm=4000):
    # A zone without a target saw nothing within range, so it counts as far away rather
    # than being dropped: a mostly empty grid then reads as far, not as its few echoes.
    return _median([v if v != 0 else far_mm for v in values])


# name -> (function over the selected columns, one-line description for --help)
REDUCTIONS = {
    "median_nonzero": (_reduce_median_nonzero, "median of the non-zero columns (0 = no target), 0 if all are 0"),
    "min_nonzero": (_reduce_min_nonzero, "smallest non-zero column, 0 if all are 0"),
    "median": (_reduce_median, "median of the columns"),
    "median_far": (_reduce_median_far, "median with 0 (no target) read as the last argument in mm (default 4000)"),
    "mean": (_reduce_mean, "mean of the columns"),
    "norm": (_reduce_norm, "Euclidean norm, e.g. the field magnitude of x, y and z"),
}


class ValueSelector:
    """Turn one row into one value: a column name, or REDUCTION(col, col*, ...) with globs."""

    def __init__(self, expression, columns):
        self.expression = expression
        match = _CALL.match(expression)
        if not match:
            if expression not in columns:
                raise ConfigError(
                    "value column %r not found (columns: %s)" % (expression, ", ".join(columns)),
                    "pass --value with one of the columns, or --columns to name them",
                )
            self._indexes = [columns.index(expression)]
            self._reduce = None
            return
        name, arguments = match.group(1), match.group(2)
        if name not in REDUCTIONS:
            raise ConfigError(
                "unknown reduction %r in --value %r" % (name, expression),
                "use one of %s" % ", ".join(sorted(REDUCTIONS)),
            )
        indexes = []
        self._parameters = []
        for pattern in (part.strip() for part in arguments.split(",")):
            if _is_number(pattern):
                self._parameters.append(_number(pattern))
                continue
            matched = [i for i, column in enumerate(columns) if fnmatch.fnmatchcase(column, pattern)]
            if not matched:
                raise ConfigError(
                    "no column matches %r in --value %r (columns: %s)" % (pattern, expression, ", ".join(columns)),
                    "fix the column name or pattern",
                )
            indexes.extend(matched)
        self._indexes = indexes
        self._reduce = REDUCTIONS[name][0]

    def __call__(self, row):
        if self._reduce is None:
            return _number(row[self._indexes[0]])
        return self._reduce([_number(row[i]) for i in self._indexes], *self._parameters)


def _time_reader(columns, time_column, period_ms):
    if period_ms is not None:
        return None
    name = time_column
    if name is None:
        name = next((c for c in TIME_COLUMNS if c in columns), None)
    if name is None:
        raise ConfigError(
            "no time column found (columns: %s)" % ", ".join(columns),
            "pass --time COLUMN, or --period-ms N for a fixed sample period",
        )
    if name not in columns:
        raise ConfigError("time column %r not found (columns: %s)" % (name, ", ".join(columns)), "fix --time")
    return columns.index(name)


def _parse_time_ms(text):
    if _is_number(text):
        return _number(text)
    try:
        return datetime.fromisoformat(text).timestamp() * 1000
    except ValueError:
        raise ConfigError("time %r is neither milliseconds nor an ISO 8601 date-time" % text, "fix --time") from None


def read_trace(path, columns=None, value=None, time_column=None, label_column=None, period_ms=None, scale=1.0):
    """Read one recording file into a Trace; raise ConfigError naming the file on bad input."""
    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        raise ConfigError("cannot read trace %s: %s" % (path, error.strerror), "check the path") from None
    rows = _split_rows(text)
    if not rows:
        raise ConfigError("trace %s is empty" % path, "pass a file with one sample per line")

    has_header = not all(_is_number(cell) for cell in rows[0] if cell.strip())
    if has_header:
        header = [cell.strip() for cell in rows[0]]
        rows = rows[1:]
    else:
        header = None
    if columns:
        names = list(columns)
    elif header:
        names = header
    elif len(rows[0]) in HEADERLESS_LAYOUTS:
        names = list(HEADERLESS_LAYOUTS[len(rows[0])])
    else:
        raise ConfigError(
            "trace %s has %d columns and no header" % (path, len(rows[0])),
            "name them with --columns a,b,c",
        )

    if value is None:
        if "value" in names:
            value = "value"
        elif {"x", "y", "z"} <= set(names):
            value = "norm(x, y, z)"
        else:
            raise ConfigError("trace %s has no 'value' column (columns: %s)" % (path, ", ".join(names)), "pass --value")
    select = ValueSelector(value, names)
    time_index = _time_reader(names, time_column, period_ms)
    if label_column is None:
        label_column = next((c for c in LABEL_COLUMNS if c in names), None)
    elif label_column not in names:
        raise ConfigError("label column %r not found (columns: %s)" % (label_column, ", ".join(names)), "fix --label")
    label_index = names.index(label_column) if label_column else None

    times, values, labels = [], [], []
    start = None
    for number, row in enumerate(rows, start=2 if header else 1):
        if len(row) < len(names):
            log.warning("%s line %d: %d columns, expected %d; skipped", path, number, len(row), len(names))
            continue
        try:
            if time_index is None:
                stamp = len(times) * period_ms
            else:
                stamp = _parse_time_ms(row[time_index].strip())
            if start is None:
                start = stamp
            reading = select(row)
            label = int(float(row[label_index])) if label_index is not None else None
        except ValueError as error:
            raise ConfigError("%s line %d: %s" % (path, number, error), "fix the line or the column options") from None
        times.append(int(round(stamp - start)))
        values.append(int(round(reading * scale)))
        if label is not None:
            labels.append(1 if label else 0)
    if not times:
        raise ConfigError("trace %s has no samples" % path, "check --columns")
    return Trace(path.name, times, values, labels if label_index is not None else None)


def _natural_key(path):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def expand_paths(paths):
    """Expand directories into their trace files, in natural order (sample2 before sample10)."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            inside = [p for p in path.iterdir() if p.is_file() and p.suffix in TRACE_SUFFIXES]
            found.extend(sorted(inside, key=_natural_key))
        elif path.exists():
            found.append(path)
        else:
            raise ConfigError("trace not found: %s" % path, "check the path")
    if not found:
        raise ConfigError("no trace files in %s" % ", ".join(map(str, paths)), "pass files or folders of .txt/.csv traces")
    return found
