"""`baysense replay`: feed recorded traces through the node's detector and score the result.

The detector is firmware/detector.py and the modules it imports, the code a node runs, on the
MicroPython interpreter. `--engine cpython` loads the same modules into this process instead,
for quick checks.
"""

import json
import logging
from pathlib import Path

import click

from .. import boards, jsonfile
from ..errors import ConfigError
from . import engine as engines
from .firmware import detector_modules
from .scoring import false_occupied, label_episodes, score_episodes
from .traces import REDUCTIONS, expand_paths, read_trace

log = logging.getLogger(__name__)

STATE_NAMES = ("vacant", "occupied", "fault")
KINDS = ("ultrasonic", "magnetometer", "presence")


def load_settings(board=None, settings_file=None, kind=None, overrides=(), firmware_dir=engines.FIRMWARE_DIR):
    """Build the detector settings: a board's "detector" section plus "kind", then overrides.

    `settings_file` is a JSON file containing either a whole board definition or only a detector
    section; `overrides` are "NAME=INTEGER" strings.
    """
    if board and settings_file:
        raise ConfigError("--board and --settings both given", "pass only one of them")
    settings = {}
    if settings_file:
        loaded = jsonfile.load(settings_file, "settings")
        if not isinstance(loaded, dict):
            raise ConfigError("%s: expected a JSON object" % settings_file, "write {\"on_delay_ms\": 5000, ...}")
        if "detector" in loaded:
            settings.update(loaded["detector"])
            settings["kind"] = loaded.get("sensor", {}).get("kind", kind)
        else:
            settings.update(loaded)
    else:
        definition = boards.load(board or "virtual", firmware_dir)
        settings.update(definition["detector"])
        settings["kind"] = definition["sensor"]["kind"]
    if kind:
        settings["kind"] = kind
    if settings.get("kind") is None:
        raise ConfigError("the detector settings name no sensor kind", "pass --kind %s" % "|".join(KINDS))
    if settings["kind"] not in KINDS:
        raise ConfigError("sensor kind %r is unknown" % settings["kind"], "pass --kind %s" % "|".join(KINDS))
    for item in overrides:
        name, _, text = item.partition("=")
        try:
            settings[name.strip()] = int(text)
        except ValueError:
            raise ConfigError("--set %r is not NAME=INTEGER" % item, "for example --set on_delay_ms=5000") from None
    firmware = engines.load_firmware_detector(firmware_dir)
    _warn_unknown(settings, firmware)
    # Build one detector now, so a setting it rejects stops the replay before any trace runs,
    # with the same message on both engines.
    try:
        firmware.Detector(settings)
    except (ValueError, KeyError, TypeError) as error:
        raise engines.settings_error(error) from None
    return settings


def _warn_unknown(settings, firmware):
    # The firmware ignores names it does not know, so a misspelt setting, or one of another
    # kind's detector, would silently keep its default. The warning goes where a person
    # reads the output. The names are those a board file is checked against.
    kind = settings["kind"]
    known = boards.detector_setting_names(firmware, kind)
    if known is None:
        return
    for name in sorted(set(settings) - known - {"kind"}):
        log.warning(
            "detector setting %r is not used by the %s detector: %s", name, kind, boards.unknown_setting_fix(firmware, name, kind)
        )


def replay(paths, settings, engine="micropython", negative=False, read_options=None, firmware_dir=engines.FIRMWARE_DIR):
    """Replay every trace; return a summary dict (see summarize) with one result per file."""
    read_options = read_options or {}
    files = expand_paths(paths)
    runner = engines.open_engine(engine, firmware_dir)
    results = []
    try:
        for path in files:
            trace = read_trace(path, **read_options)
            run = runner.run(trace, settings)
            results.append(_result(trace, run, negative))
            log.info("%s: %d samples, %d events", trace.name, len(trace.values), len(run.events))
    finally:
        runner.close()
    return summarize(results, settings, engine)


def _result(trace, run, negative):
    result = {
        "file": trace.name,
        "samples": len(trace.values),
        "duration_ms": trace.times_ms[-1] if trace.times_ms else 0,
        "events": [
            {"time_ms": e.time_ms, "state": STATE_NAMES[e.state], "reason": e.reason, "value": e.value}
            for e in run.events
        ],
        "cost": {
            "samples": run.samples,
            "update_us": run.update_us,
            "allocated_bytes": run.allocated_bytes,
            "detector_bytes": run.detector_bytes,
        },
    }
    if negative:
        result["negative"] = True
        result["false_occupied"] = false_occupied(run.events)
    elif trace.labels:
        episodes = score_episodes(label_episodes(trace.times_ms, trace.labels), run.events)
        result["episodes"] = [
            {"rise_ms": e.rise_ms, "fall_ms": e.fall_ms, "correct": e.correct, "problems": e.problems}
            for e in episodes
        ]
    return result


def summarize(results, settings, engine):
    """Return the replay summary: totals, accuracy, cost per sample and the per-file results."""
    episodes = [episode for result in results for episode in result.get("episodes", [])]
    correct = sum(1 for episode in episodes if episode["correct"])
    negatives = [result for result in results if result.get("negative")]
    samples = sum(result["cost"]["samples"] for result in results)
    spent_us = sum(result["cost"]["update_us"] for result in results)
    allocated = sum(result["cost"]["allocated_bytes"] for result in results)
    detector_bytes = max((result["cost"]["detector_bytes"] for result in results), default=0)
    return {
        "files": len(results),
        "episodes": len(episodes),
        "episodes_correct": correct,
        "episode_accuracy": round(correct / len(episodes), 4) if episodes else None,
        "negatives": len(negatives),
        "negatives_with_false_occupied": sum(1 for result in negatives if result["false_occupied"]),
        "events": sum(len(result["events"]) for result in results),
        "engine": engine,
        "cost": {
            "samples": samples,
            "us_per_sample": round(spent_us / samples, 2) if samples else None,
            # Only the MicroPython runner measures allocation.
            "allocated_bytes_per_sample": round(allocated / samples, 3) if samples and engine == "micropython" else None,
            "detector_bytes": detector_bytes if engine == "micropython" else None,
        },
        "settings": settings,
        "results": results,
    }


def format_text(summary):
    """Render the summary as lines for a terminal: events per file, then the totals."""
    lines = []
    for result in summary["results"]:
        events = ", ".join(
            "%.1f s %s%s" % (e["time_ms"] / 1000, e["state"], " (reason %d)" % e["reason"] if e["reason"] else "")
            for e in result["events"]
        )
        verdict = ""
        if result.get("negative"):
            verdict = "  [false occupied]" if result["false_occupied"] else "  [ok]"
        elif "episodes" in result:
            wrong = [e for e in result["episodes"] if not e["correct"]]
            if wrong:
                verdict = "  [wrong: %s]" % "; ".join(p for e in wrong for p in e["problems"])
            elif result["episodes"]:
                verdict = "  [ok]"
        lines.append("%s: %s%s" % (result["file"], events or "no events", verdict))
    lines.append("")
    lines.append("files: %d, events: %d" % (summary["files"], summary["events"]))
    if summary["episodes"]:
        lines.append(
            "episodes: %d correct of %d (accuracy %.3f)"
            % (summary["episodes_correct"], summary["episodes"], summary["episode_accuracy"])
        )
    if summary["negatives"]:
        lines.append(
            "negative files: %d, with a false occupied: %d"
            % (summary["negatives"], summary["negatives_with_false_occupied"])
        )
    cost = summary["cost"]
    if cost["samples"]:
        line = "cost on %s: %.1f us per sample" % (summary["engine"], cost["us_per_sample"])
        if cost["allocated_bytes_per_sample"] is not None:
            line += ", %.3f bytes allocated per sample" % cost["allocated_bytes_per_sample"]
        if cost["detector_bytes"] is not None:
            line += ", detector holds %d bytes" % cost["detector_bytes"]
        lines.append(line)
    return "\n".join(lines)


def _columns(ctx, param, value):
    if value is None:
        return None
    names = [name.strip() for name in value.split(",")]
    if not all(names):
        raise click.BadParameter("empty column name in %r" % value)
    return names


@click.command("replay")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--board", help="Board whose detector settings to use (boards/NAME.json). [default: virtual]")
@click.option("--settings", "settings_file", type=click.Path(), help="JSON file: a board definition or a detector section.")
@click.option("--kind", type=click.Choice(KINDS), help="Sensor kind, overriding the board's.")
@click.option("--set", "overrides", multiple=True, metavar="NAME=INTEGER", help="Override one detector setting.")
@click.option("--columns", callback=_columns, help="Column names for headerless files, comma-separated.")
@click.option(
    "--value",
    help="Column holding the reading, or REDUCTION(columns) over columns and globs, e.g. "
    "'median_far(d*_mm, 4000)'. Reductions: %s." % ", ".join(sorted(REDUCTIONS)),
)
@click.option("--time", "time_column", help="Column holding the time in ms or ISO 8601 (default: timestamp_ms, timestamp, ...).")
@click.option("--period-ms", type=click.IntRange(min=1), help="Fixed sample period in ms, for files without a time column.")
@click.option("--label", "label_column", help="Column holding the 0/1 vehicle label (default: label).")
@click.option("--scale", type=float, default=1.0, show_default=True, help="Multiply readings by this before rounding to integers.")
@click.option("--negative", is_flag=True, help="The files show vehicles passing, never parking: any occupied is false.")
@click.option("--engine", type=click.Choice(sorted(engines.ENGINES)), default="micropython", show_default=True, help="Where the detector runs.")
@click.option(
    "--firmware",
    "firmware_dir",
    type=click.Path(exists=True, file_okay=False),
    default=str(engines.FIRMWARE_DIR),
    help="Folder containing the detector.py to replay and the modules it imports, for a detector under development."
    "  [default: the project's firmware/]",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def replay_command(paths, board, settings_file, kind, overrides, columns, value, time_column, period_ms, label_column, scale, negative, engine, firmware_dir, as_json):
    """Replay recorded sensor traces (files or folders) through the node's detector.

    Prints the events each file would report and, where labels exist, how many episodes were
    detected correctly.
    """
    firmware_dir = Path(firmware_dir)
    # Checked before the settings, so that a wrong --firmware is reported before a board's errors.
    detector_modules(firmware_dir)
    settings = load_settings(board, settings_file, kind, overrides, firmware_dir)
    read_options = {
        "columns": columns,
        "value": value,
        "time_column": time_column,
        "label_column": label_column,
        "period_ms": period_ms,
        "scale": scale,
    }
    summary = replay(paths, settings, engine=engine, negative=negative, read_options=read_options, firmware_dir=firmware_dir)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(format_text(summary))
