"""Virtual boards running the node firmware against a real gateway, for the node's tests.

Time is scaled: the node's timings in config.json are the defaults divided by SCALE, so one
simulated minute passes in 60 / SCALE real seconds. Sensing cannot be scaled the same way (an
ultrasonic ping takes its real time), so the detector's delays are shortened separately.
"""

import copy
import json
import os
import subprocess
import time
from pathlib import Path

from baysense import boards, protocol
from baysense.cli import main
from baysense.deploy import build
from baysense.gateway.server import GatewayThread
from baysense.gateway.settings import Settings
from baysense.gateway.store import Store
from baysense.paths import FIRMWARE_DIR, micropython_command
from baysense.vboard.board import VirtualBoard

# Real seconds per simulated second are 1 / SCALE.
SCALE = 100

# The node's default timings (firmware/node.py and link.py) divided by SCALE, with two
# exceptions. retry_min_ms is 20 ms rather than 2.5 ms, so that an ack usually comes back
# before the first resend (a resend before it is harmless, because the gateway acks a repeat of
# its last counter). The watchdog keeps its 30 s, because sensing runs in real time.
SCALED_TIMING = {
    "retry_min_ms": 20,
    "retry_max_ms": 30000 // SCALE,
    "wifi_retry_min_ms": 1000 // SCALE,
    "wifi_retry_max_ms": 60000 // SCALE,
    "heartbeat_ms": 60000 // SCALE,
    "watchdog_ms": 30000,
}

# One ping a sample and short detector delays, so a car's arrival is reported in about half a
# second instead of the default two to three seconds. The node's report of its state after
# boot then comes about a second after boot instead of five.
FAST_SENSOR = {"pings_per_sample": 1, "sample_period_ms": 50, "ping_interval_ms": 10}
FAST_DETECTOR = {"on_delay_ms": 200, "off_delay_ms": 200, "fault_after_ms": 1000}

OCCUPIED_MM = 500
VACANT_MM = 2600

# Seconds a test waits for a condition before failing.
WAIT_S = 20

# A gateway that writes its tallies and reloads the registry quickly, and whose rate limits
# let a backlog through without back-off (the rate limits have their own tests).
GATEWAY_SETTINGS = Settings(stats_flush_s=0.05, registry_poll_s=0.1, device_rate=100.0, device_burst=200.0)

_firmware_cache = {}


def firmware_files():
    """Return {board path: bytes} of the firmware compiled with mpy-cross, built once per run."""
    if not _firmware_cache:
        _firmware_cache.update(build())
    return _firmware_cache


def fast_board():
    board = copy.deepcopy(boards.load("virtual"))
    board["sensor"].update(FAST_SENSOR)
    board["detector"].update(FAST_DETECTOR)
    return board


def node_config(device_id, key, gateway_address, board, timing=None, **extra):
    return {
        **extra,
        "device_id": device_id,
        "key": key.hex(),
        "gateway": "%s:%d" % tuple(gateway_address[:2]),
        "wifi": {},
        "board": board,
        "heartbeat_s": 60,
        "timing": dict(SCALED_TIMING, **(timing or {})),
    }


def install(state_dir, config, extra_files=None):
    """Put the firmware and config.json into a board's filesystem folder, as deploy would."""
    fs = Path(state_dir) / "fs"
    fs.mkdir(parents=True, exist_ok=True)
    for path, data in firmware_files().items():
        (fs / path.lstrip("/")).write_bytes(data)
    (fs / "config.json").write_text(json.dumps(config))
    for name, text in (extra_files or {}).items():
        (fs / name).write_text(text)


def start_board(state_dir, board):
    return VirtualBoard(state_dir, board).start()


def start_fast_board(tmp_path, device_id, key, gateway_address):
    """Install and start a fast virtual board reporting to `gateway_address`; return it."""
    board_def = fast_board()
    state_dir = tmp_path / "board"
    install(state_dir, node_config(device_id, key, gateway_address, board_def))
    return start_board(state_dir, board_def)


def rotate_key(board, device_id, gateway_address, registry_path):
    """Run `baysense provision --rotate-key` on the board; return its exit status."""
    gateway = "%s:%d" % gateway_address
    return main(
        ["provision", "--port", board.port, "--device-id", device_id, "--gateway", gateway, "--registry", str(registry_path), "--rotate-key"]
    )


def start_gateway(tmp_path, registry_path):
    thread = GatewayThread(tmp_path / "gateway.db", registry_path, settings=GATEWAY_SETTINGS)
    thread.start()
    return thread


def wait_for(predicate, timeout=WAIT_S, interval=0.05):
    """Poll predicate() until it returns something true; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def reports(db_path, device_id):
    """Return the gateway's stored reports of one device, in the order they were received."""
    with Store(db_path) as store:
        return store.reports(device_id)


def state_reports(db_path, device_id):
    """Return [(counter, state name)] of stored state reports, in the order received."""
    found = []
    for report in reports(db_path, device_id):
        if report["frame_type"] == protocol.FRAME_STATE:
            state = protocol.parse_state(report["body"])[0]
            found.append((report["counter"], protocol.STATE_NAMES[state]))
    return found


def heartbeats(db_path, device_id):
    """Return the stored heartbeats' health dicts, in the order received, each with its counter."""
    found = []
    for report in reports(db_path, device_id):
        if report["frame_type"] == protocol.FRAME_HEARTBEAT:
            health = protocol.parse_heartbeat(report["body"])
            health["counter"] = report["counter"]
            found.append(health)
    return found


def gateway_stats(db_path):
    with Store(db_path) as store:
        return store.stats()


def serial_log(state_dir):
    path = Path(state_dir) / "serial.log"
    return path.read_bytes().decode(errors="replace") if path.exists() else ""


def run_micropython(script, cwd, timeout=30, first_path=None):
    """Run a MicroPython script with the firmware modules importable; return the process.

    Modules in `first_path` (a folder) shadow the firmware's and the built-in ones, for fakes.
    """
    path = [str(FIRMWARE_DIR), ".frozen"]
    if first_path is not None:
        path.insert(0, str(first_path))
    env = dict(os.environ, MICROPYPATH=":".join(path))
    return subprocess.run(
        micropython_command() + ["-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
