"""Heartbeats of a virtual board carry its health, as the gateway stores it."""

import re

from baysense.gateway.simnode import provision
from baysense.paths import FIRMWARE_DIR

import node_harness as harness

DEVICE_ID = "bay-01"
RSSI_DBM = -71
FIRMWARE_VERSION = re.search(r'^VERSION = "([^"]+)"', (FIRMWARE_DIR / "node.py").read_text(), re.M).group(1)
HEARTBEAT_MS = 300
# The board's heap is 142 KB with about 29 KB taken by the simulated HAL (vboard/board.py), so
# a firmware that leaks or bloats shows far below this.
MIN_FREE_HEAP = 40_000


def test_heartbeat_health_fields(tmp_path):
    registry = tmp_path / "registry.db"
    keys = provision(registry, [DEVICE_ID])
    gateway = harness.start_gateway(tmp_path, registry)
    db = tmp_path / "gateway.db"
    board_def = harness.fast_board()
    state_dir = tmp_path / "board"
    config = harness.node_config(DEVICE_ID, keys[DEVICE_ID], gateway.address, board_def, {"heartbeat_ms": HEARTBEAT_MS})
    harness.install(state_dir, config)
    board = harness.start_board(state_dir, board_def)
    board.stimulus.set(rssi=RSSI_DBM)
    try:
        found = harness.wait_for(lambda: [h for h in harness.heartbeats(db, DEVICE_ID) if h["uptime_s"] >= 2])
        assert found, "no heartbeat after two seconds of uptime"
    finally:
        board.stop()
        gateway.stop()

    health = found[0]
    assert health["reset_cause"] == 1  # power-on
    assert health["rssi_dbm"] == RSSI_DBM
    assert health["firmware"] == FIRMWARE_VERSION
    assert health["outbox_depth"] == 0
    assert health["fault_flags"] == 0
    assert health["free_heap"] >= MIN_FREE_HEAP
    every = harness.heartbeats(db, DEVICE_ID)
    uptimes = [h["uptime_s"] for h in every]
    assert uptimes == sorted(uptimes)
    assert len(every) >= 2000 // HEARTBEAT_MS - 1, "%d heartbeats in two seconds at one per %d ms" % (len(every), HEARTBEAT_MS)
