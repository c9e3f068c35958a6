"""The main job end to end: real firmware on a virtual board reports to a real gateway.

Everything goes through the CLI as a user runs it: deploy and provision over the board's
port, the node detects a car on its simulated ranger, the gateway stores what it acknowledged,
and `baysense status --json` shows it.
"""

import json
import re
import time

from baysense import protocol
from baysense.cli import main
from baysense.gateway.store import Store
from baysense.paths import FIRMWARE_DIR
from baysense.scenario import EMPTY_MM, Scenario, Step

# Long enough for the virtual board's on and off delays (2 s and 3 s) plus sampling and resends.
STATE_TIMEOUT_S = 15


def stored_states(db_path, device_id):
    with Store(db_path, create=False) as store:
        reports = store.reports(device_id)
    return [
        protocol.STATE_NAMES[protocol.parse_state(report["body"])[0]]
        for report in reports
        if report["frame_type"] == protocol.FRAME_STATE
    ]


def wait_for_states(db_path, device_id, expected):
    deadline = time.monotonic() + STATE_TIMEOUT_S
    while time.monotonic() < deadline:
        states = stored_states(db_path, device_id)
        if len(states) >= len(expected):
            return states
        time.sleep(0.1)
    return stored_states(db_path, device_id)


def test_car_reported_end_to_end(make_vboard, gateway_thread, registry_path, capsys):
    board = make_vboard("bay-07")
    host, port = gateway_thread.address
    gateway = "%s:%d" % (host, port)

    assert main(["deploy", "--port", board.port]) == 0
    assert main(["provision", "--port", board.port, "--device-id", "bay-07", "--gateway", gateway]) == 0
    output = capsys.readouterr().out
    assert "bay-07: created" in output
    key = json.loads((board.fs_dir / "config.json").read_text())["key"]
    assert key not in output  # the key is never printed

    scenario = Scenario("bay-07", [Step("car", 5, 900), Step("empty", 6, EMPTY_MM)])
    scenario.play(board.stimulus)
    states = wait_for_states(gateway_thread.db_path, "bay-07", scenario.expected_changes())
    if states[:1] == ["vacant"]:
        states = states[1:]  # the node's first decision after boot, taken before the car came
    assert states == ["occupied", "vacant"]

    assert main(["status", "--db", str(gateway_thread.db_path), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    bay = next(row for row in status["bays"] if row["device_id"] == "bay-07")
    assert bay["state"] == "vacant"
    version = re.search(r'^VERSION = "([^"]+)"', (FIRMWARE_DIR / "node.py").read_text(), re.M).group(1)
    assert bay["firmware"] == version
    # The node boots the moment provisioning ends. Its first heartbeat can reach the gateway
    # before the gateway rereads the registry and be rejected as unknown, so it is sent again.
    rejected = dict(status["rejected"])
    assert rejected.pop("unknown_device", 0) <= 1
    assert sum(rejected.values()) == 0


def test_redeploy_sends_nothing(make_vboard, capsys):
    board = make_vboard()
    assert main(["deploy", "--port", board.port, "--no-reset"]) == 0
    capsys.readouterr()
    assert main(["deploy", "--port", board.port, "--no-reset"]) == 0
    assert "firmware up to date" in capsys.readouterr().out


def test_redeploy_restarts_firmware(make_vboard, capsys):
    # Deploying interrupts the running firmware, so even a deploy that changes nothing must
    # start it again.
    board = make_vboard()
    assert main(["deploy", "--port", board.port]) == 0
    resets = len(board.resets)
    assert main(["deploy", "--port", board.port]) == 0
    assert "firmware up to date" in capsys.readouterr().out
    assert len(board.resets) == resets + 1
    assert board.resets[-1][0] == "soft"
