"""The watchdog resets a virtual board whose main loop stops, and the next boot reports why.

The board's main.py here runs the real Node, but on the first boot its sensor read blocks for
good after a few samples, as a driver stuck on a bus would. The virtual board's supervisor
enforces machine.WDT, so the board must reset, and the heartbeat after that reset must carry
reset cause 3 (machine.WDT_RESET on the esp32 port).
"""

from baysense.gateway.simnode import provision

import node_harness as harness

DEVICE_ID = "bay-01"
WATCHDOG_MS = 1000
WDT_RESET = 3
POWERON_RESET = 1

# The first boot writes /hung before it blocks. Later boots find it and run normally.
HANGING_MAIN = """
import os
import time

import config
import node

firmware = node.Node(config.load())
try:
    os.stat("/hung")
    first_boot = False
except OSError:
    first_boot = True

if first_boot:
    sample = firmware.sensor.sample
    samples = [0]

    def sample_then_hang():
        samples[0] += 1
        if samples[0] > 10:
            with open("/hung", "w") as f:
                f.write("1")
            print("test: the sensor read blocks from now on")
            while True:
                time.sleep_ms(50)
        return sample()

    firmware.sensor.sample = sample_then_hang

firmware.run()
"""


def test_watchdog_resets_hung_loop(tmp_path):
    registry = tmp_path / "registry.db"
    keys = provision(registry, [DEVICE_ID])
    gateway = harness.start_gateway(tmp_path, registry)
    board_def = harness.fast_board()
    state_dir = tmp_path / "board"
    config = harness.node_config(DEVICE_ID, keys[DEVICE_ID], gateway.address, board_def, {"watchdog_ms": WATCHDOG_MS})
    harness.install(state_dir, config, {"main.py": HANGING_MAIN})
    board = harness.start_board(state_dir, board_def)
    db = tmp_path / "gateway.db"
    try:
        assert harness.wait_for(lambda: board.resets), "the watchdog did not reset the hung board"
        assert board.resets[0][0] == "wdt"
        log = harness.serial_log(state_dir)
        assert "the sensor read blocks" in log
        assert "task_wdt: Task watchdog got triggered" in log

        after = harness.wait_for(lambda: [h for h in harness.heartbeats(db, DEVICE_ID) if h["reset_cause"] == WDT_RESET])
        assert after, "no heartbeat with reset cause %d after the watchdog reset" % WDT_RESET
        first = harness.heartbeats(db, DEVICE_ID)[0]
        assert first["reset_cause"] == POWERON_RESET
        assert after[0]["counter"] > first["counter"]
        harness.wait_for(lambda: len(board.resets) > 1, timeout=2 * WATCHDOG_MS / 1000)
        assert [kind for kind, _ in board.resets] == ["wdt"], "the healthy second boot was reset too"
    finally:
        board.stop()
        gateway.stop()
