"""The output of `fleet provision`: a live table on a terminal, one line per step elsewhere, a
final summary table, or one JSON document for scripts.
"""

import json
import threading

import click
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from .progress import FAILED, INTERRUPTED, OK, RUNNING, SKIPPED

# Live table redraws per second: smooth enough for steps that take a second or more.
REFRESH_PER_S = 4
# Characters of a reason shown in the live table; the summary and the logs keep all of it.
LIVE_DETAIL_CHARS = 60

STYLES = {OK: "green", SKIPPED: "green", FAILED: "bold red", INTERRUPTED: "yellow", RUNNING: "cyan"}


def _styled(result):
    style = STYLES.get(result)
    return "[%s]%s[/]" % (style, result) if style else result


def live_table(rows, title):
    table = Table(title=title, expand=False)
    for name in ("bay", "board", "step", "result", "detail"):
        table.add_column(name, overflow="fold" if name == "detail" else "ellipsis")
    for row in rows:
        detail = row.detail if len(row.detail) <= LIVE_DETAIL_CHARS else row.detail[: LIVE_DETAIL_CHARS - 1] + "…"
        # Escaped: rich reads square brackets as markup, and a detail may name "[zerotier]".
        table.add_row(escape(row.bay), escape(str(row.port)), row.step, _styled(row.result), escape(detail))
    return table


def summary_table(outcomes, title):
    table = Table(title=title, expand=False)
    for name in ("bay", "board", "step", "result", "seconds", "detail"):
        table.add_column(name, overflow="fold")
    for outcome in outcomes:
        table.add_row(escape(outcome.bay), escape(str(outcome.port)), outcome.step or "-", _styled(outcome.result),
                      "%.1f" % outcome.seconds if outcome.seconds else "-", escape(outcome.detail))
    return table


class LineView:
    """One plain, parseable line per step event, for logs and pipes: `BAY PORT STEP RESULT DETAIL`."""

    def __init__(self, err=True):
        self._lock = threading.Lock()
        self._err = err

    def on_event(self, row):
        if row.result == "pending":
            return
        with self._lock:
            click.echo("%s\t%s\t%s\t%s\t%s" % (row.bay, row.port, row.step, row.result, row.detail), err=self._err)


def run_live(run, title):
    """Run `run.execute()` under a live table on the terminal; return its outcomes."""
    console = Console(stderr=True)
    with Live(get_renderable=lambda: live_table(run.snapshot(), title), console=console,
              refresh_per_second=REFRESH_PER_S, transient=True):
        return run.execute()


def print_summary(outcomes, title, console=None):
    console = console or Console()
    console.print(summary_table(outcomes, title))
    failed = [outcome for outcome in outcomes if outcome.result == FAILED]
    for outcome in failed:
        console.print("[bold red]failed[/] %s (%s) at %s: %s" % (escape(outcome.bay), escape(str(outcome.port)), outcome.step,
                                                              escape(outcome.detail)),
                      markup=True, highlight=False)


def outcomes_json(manifest, outcomes, status, log_dir):
    return json.dumps(
        {
            "community": manifest.community,
            "manifest": str(manifest.path),
            "status": status,
            "log_dir": str(log_dir),
            "bays": [
                {
                    "bay": outcome.bay,
                    "board": outcome.port,
                    "step": outcome.step,
                    "result": outcome.result,
                    "detail": outcome.detail,
                    "seconds": round(outcome.seconds, 3),
                }
                for outcome in outcomes
            ],
        },
        indent=2,
    )
