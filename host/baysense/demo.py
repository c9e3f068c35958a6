"""`baysense demo`: the main job on a virtual fleet, end to end.

A gateway process, four virtual boards running the real firmware on the real MicroPython
interpreter, each deployed and provisioned over its port like a USB board, then a parking
scenario played on every board's simulated ranger. The bay table follows the gateway's store
as it changes, and the summary compares what was played with what the nodes detected and
what the gateway stored.
"""

import logging
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table

from . import boards, protocol
from .deploy import deploy
from .device import Device
from .errors import BaysenseError
from .gateway.store import Store
from .provision import provision
from .registry import Registry
from .scenario import parking_scenario
from .vboard.board import VirtualBoard

log = logging.getLogger(__name__)

BOARD_COUNT = 4
# How long the gateway process may take to print its listening line.
GATEWAY_START_TIMEOUT_S = 20
# How long a freshly provisioned node may take to boot and send its first heartbeat.
NODE_START_TIMEOUT_S = 30
# How long after the last step the nodes get to finish reporting: the off delay has to pass
# and a resend may be waiting out its back-off.
SETTLE_TIMEOUT_S = 20
TABLE_REFRESH_S = 0.5

_NODE_EVENT = re.compile(rb"\] bay: (occupied|vacant|fault)")


@dataclass
class Bay:
    device_id: str
    board: VirtualBoard
    scenario: object = None
    step: str = "setup"
    detected: list = field(default_factory=list)
    delivered: list = field(default_factory=list)


class GatewayProcess:
    """`baysense gateway` as a child process, as a site would run it."""

    def __init__(self, db_path, registry_path):
        self.db_path = db_path
        command = [
            sys.executable, "-m", "baysense.cli", "gateway",
            "--listen", "127.0.0.1:0", "--db", str(db_path), "--registry", str(registry_path),
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.address = self._read_address()

    def _read_address(self):
        reader = threading.Thread(target=lambda: setattr(self, "_line", self.process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(GATEWAY_START_TIMEOUT_S)
        line = getattr(self, "_line", "")
        if not line.startswith("listening: udp://"):
            self.stop()
            raise BaysenseError("the gateway did not start", "its output: %r %s" % (line, self.process.stderr.read()[-500:]))
        return line.strip().split("udp://", 1)[1]

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _setup_board(bay, registry_path, gateway, board_def):
    bay.step = "deploy"
    with Device(bay.board.port) as device:
        deploy(device)
        bay.step = "provision"
        with Registry(registry_path) as registry:
            provision(device, registry, bay.device_id, gateway, board_def, heartbeat_s=30)
        device.soft_reset(run_main=True)
    bay.step = "booting"


def _changes(states):
    # A node reports its first decision after boot. Over an empty bay that is "vacant": the
    # state the bay already had, not a change.
    if states[:1] == ["vacant"]:
        return states[1:]
    return states


def _node_events(board):
    """Return the state changes a node printed on its serial output."""
    log_bytes = (board.state_dir / "serial.log").read_bytes()
    return _changes([match.group(1).decode() for match in _NODE_EVENT.finditer(log_bytes)])


def _stored_changes(store, device_id):
    states = []
    for report in store.reports(device_id):
        if report["frame_type"] == protocol.FRAME_STATE:
            state = protocol.parse_state(report["body"])[0]
            states.append(protocol.STATE_NAMES[state])
    return _changes(states)


def _heartbeat_seen(store, device_id):
    return any(row["device_id"] == device_id and row["last_heartbeat"] for row in store.bays())


def _table(bays, store, started):
    table = Table(title="Baysense demo: bay table from the gateway (%.0f s)" % (time.monotonic() - started))
    for column in ("bay", "scenario", "gateway state", "changes stored/played", "counter", "heap", "rssi"):
        table.add_column(column)
    rows = {row["device_id"]: row for row in store.bays()}
    for bay in bays:
        row = rows.get(bay.device_id, {})
        played = len(bay.scenario.expected_changes()) if bay.scenario else 0
        state = row.get("state") or "-"
        style = {"occupied": "bold red", "vacant": "green", "fault": "bold yellow"}.get(state, "")
        table.add_row(
            bay.device_id,
            bay.step,
            "[%s]%s[/]" % (style, state) if style else state,
            "%d/%d" % (len(_stored_changes(store, bay.device_id)), played),
            str(row.get("counter") or "-"),
            str(row.get("free_heap") or "-"),
            "%s dBm" % row["rssi_dbm"] if row.get("rssi_dbm") is not None else "-",
        )
    return table


def run_demo(work_dir, console, boards_count=BOARD_COUNT, seed=1):
    """Run the demo; return 0 when every played change was detected and stored, else 1."""
    started = time.monotonic()
    board_def = boards.load("virtual")
    registry_path = work_dir / "registry.db"
    db_path = work_dir / "gateway.db"

    console.print("[bold]Baysense demo[/] in %s" % work_dir)
    Registry(registry_path).close()
    gateway = GatewayProcess(db_path, registry_path)
    console.print("gateway listening on udp://%s" % gateway.address)

    bays = []
    try:
        for number in range(1, boards_count + 1):
            board = VirtualBoard(work_dir / ("bay-%02d" % number), board_def).start()
            bays.append(Bay("bay-%02d" % number, board))
            console.print("virtual board %s on %s" % (bays[-1].device_id, board.port))

        with ThreadPoolExecutor(max_workers=boards_count) as pool:
            for future in [pool.submit(_setup_board, bay, registry_path, gateway.address, board_def) for bay in bays]:
                future.result()
        console.print("deployed and provisioned %d boards in %.1f s" % (len(bays), time.monotonic() - started))

        store = Store(db_path, create=False)
        deadline = time.monotonic() + NODE_START_TIMEOUT_S
        while not all(_heartbeat_seen(store, bay.device_id) for bay in bays):
            if time.monotonic() > deadline:
                raise BaysenseError("nodes did not report within %d s" % NODE_START_TIMEOUT_S, "see the serial.log of each board in %s" % work_dir)
            time.sleep(0.2)

        for index, bay in enumerate(bays):
            bay.scenario = parking_scenario(bay.device_id, board_def["detector"], seed + index)

        def on_step(scenario, index, step):
            for bay in bays:
                if bay.scenario is scenario:
                    bay.step = step.what

        stop = threading.Event()
        players = [
            threading.Thread(target=bay.scenario.play, args=(bay.board.stimulus, on_step, stop), daemon=True) for bay in bays
        ]
        for player in players:
            player.start()

        reported = {bay.device_id: 0 for bay in bays}

        def refresh(live):
            # Each change the gateway stored is printed once, above the live table.
            for bay in bays:
                changes = _stored_changes(store, bay.device_id)
                for state in changes[reported[bay.device_id] :]:
                    live.console.print("%5.1f s  %s: %s" % (time.monotonic() - started, bay.device_id, state))
                reported[bay.device_id] = len(changes)
            live.update(_table(bays, store, started))

        with Live(_table(bays, store, started), console=console, refresh_per_second=4, transient=not console.is_terminal) as live:
            while any(player.is_alive() for player in players):
                time.sleep(TABLE_REFRESH_S)
                refresh(live)
            for bay in bays:
                bay.step = "done"
            deadline = time.monotonic() + SETTLE_TIMEOUT_S
            while time.monotonic() < deadline:
                if all(_stored_changes(store, bay.device_id) == bay.scenario.expected_changes() for bay in bays):
                    break
                time.sleep(TABLE_REFRESH_S)
                refresh(live)
            refresh(live)
        if not console.is_terminal:
            console.print(_table(bays, store, started))

        for bay in bays:
            bay.detected = _node_events(bay.board)
            bay.delivered = _stored_changes(store, bay.device_id)
        store.close()
    finally:
        for bay in bays:
            bay.board.stop()
        gateway.stop()

    return _summary(bays, console, time.monotonic() - started)


def _summary(bays, console, seconds):
    played = sum(len(bay.scenario.expected_changes()) for bay in bays)
    detected = sum(_matching(bay.scenario.expected_changes(), bay.detected) for bay in bays)
    delivered = sum(_matching(bay.scenario.expected_changes(), bay.delivered) for bay in bays)
    extra = sum(max(0, len(bay.delivered) - len(bay.scenario.expected_changes())) for bay in bays)

    table = Table(title="Summary")
    for column in ("bays", "changes played", "detected", "delivered to the gateway", "lost", "unexpected", "time"):
        table.add_column(column)
    table.add_row(str(len(bays)), str(played), str(detected), str(delivered), str(played - delivered), str(extra), "%.0f s" % seconds)
    console.print(table)
    for bay in bays:
        expected = bay.scenario.expected_changes()
        if bay.delivered != expected or bay.detected != expected:
            console.print(
                "[bold red]%s[/]: played %s, detected %s, delivered %s" % (bay.device_id, expected, bay.detected, bay.delivered)
            )
    ok = detected == played and delivered == played and extra == 0
    console.print("[bold green]every played change was detected and delivered[/]" if ok else "[bold red]changes were missed or lost[/]")
    return 0 if ok else 1


def _matching(expected, seen):
    """Count the changes of `expected` that `seen` has in the same order, from the start."""
    count = 0
    for wanted, got in zip(expected, seen):
        if wanted != got:
            break
        count += 1
    return count


@click.command("demo")
@click.option("--dir", "work_dir", type=click.Path(file_okay=False, path_type=Path), help="Folder for the demo's boards and databases. Default: a new temporary folder.")
@click.option("--boards", "boards_count", type=click.IntRange(1, 16), default=BOARD_COUNT, show_default=True, help="Number of virtual boards.")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the scenarios' random durations and distances.")
def demo_command(work_dir, boards_count, seed):
    """Run the main job on a virtual fleet: gateway, boards, firmware, scenario, summary."""
    if work_dir is None:
        work_dir = Path(tempfile.mkdtemp(prefix="baysense-demo-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    status = run_demo(work_dir, Console(), boards_count, seed)
    raise click.exceptions.Exit(status)
