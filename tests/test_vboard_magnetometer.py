"""The virtual magnetometer's noise: seeded, and enough that an idle bay is no stuck sensor."""

import copy
import json
import os
import re
import subprocess
import time

from baysense import boards
from baysense.paths import HAL_DIR, micropython_command
from baysense.vboard.stimulus import DEFAULT_WORLD, FIELD_NOISE_COUNTS

import node_harness as harness

# Short enough to wait for in a test, instead of the board file's 60 s.
STUCK_AFTER_MS = 3000
FAULT_AFTER_MS = 500
# Seconds to wait for the node's first decision, and for the still board's fault after it.
WAIT_S = 30
FAULT_LINE = re.compile(r"bay: fault reason (\d+)")
FAULT_STUCK = 3  # FAULT_STUCK in firmware/detector.py


def magnetometer_board():
    board = copy.deepcopy(boards.load("virtual-magnetometer"))
    board["detector"].update(stuck_after_ms=STUCK_AFTER_MS, fault_after_ms=FAULT_AFTER_MS)
    return board


def start_idle_board(tmp_path, name, world):
    """Start a node on a virtual magnetometer board whose bay stays empty in `world`."""
    board = magnetometer_board()
    state_dir = tmp_path / name
    (state_dir / "sim").mkdir(parents=True)
    (state_dir / "sim" / "stimulus.json").write_text(json.dumps(dict(DEFAULT_WORLD, **world)))
    # Nothing listens at this loopback port: the node prints its states whether or not they are acked.
    harness.install(state_dir, harness.node_config("idle-%s" % name, bytes(32), ("127.0.0.1", 9), board))
    return harness.start_board(state_dir, board)


def first_decision_time(board):
    """Wait for the node's first decision since boot; return the monotonic time it was seen."""
    found = harness.wait_for(lambda: "bay: first decision since boot" in harness.serial_log(board.state_dir))
    assert found, "no first decision from %s:\n%s" % (board.state_dir, harness.serial_log(board.state_dir)[-2000:])
    return time.monotonic()


def test_idle_magnetometer_stays_vacant(tmp_path):
    # A board with a perfectly still field beside it shows that the wait reaches the stuck check.
    noisy = start_idle_board(tmp_path, "noisy", {})
    still = start_idle_board(tmp_path, "still", {"field_noise": 0})
    try:
        noisy_decided = first_decision_time(noisy)
        still_fault = harness.wait_for(lambda: FAULT_LINE.search(harness.serial_log(still.state_dir)), timeout=WAIT_S)
        idle_until = noisy_decided + (STUCK_AFTER_MS + FAULT_AFTER_MS) / 1000 + 2
        while time.monotonic() < idle_until:
            time.sleep(0.1)
        noisy_log = harness.serial_log(noisy.state_dir)
    finally:
        noisy.stop()
        still.stop()

    assert still_fault, "the still board reported no fault:\n%s" % harness.serial_log(still.state_dir)[-2000:]
    assert int(still_fault.group(1)) == FAULT_STUCK
    assert FAULT_LINE.search(noisy_log) is None, noisy_log[-2000:]
    states = re.findall(r"bay: (occupied|vacant|fault) reason", noisy_log)
    assert states[-1:] == ["vacant"], noisy_log[-2000:]


NOISE_SCRIPT = """
import sim_devices
values = []
for seed in (1, 1, 2):
    noise = sim_devices._Noise()
    values.append([noise.gauss(%d, seed) for _ in range(2000)])
print(repr(values))
"""


def test_field_noise_repeats_from_seed(tmp_path):
    env = dict(os.environ, MICROPYPATH=str(HAL_DIR), BAYSENSE_VBOARD_FS=str(tmp_path), BAYSENSE_VBOARD_SIM=str(tmp_path))
    result = subprocess.run(
        micropython_command() + ["-c", NOISE_SCRIPT % FIELD_NOISE_COUNTS],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    first, again, other = eval(result.stdout)  # a list of float lists, printed by MicroPython's repr

    assert first == again
    assert first != other
    mean = sum(first) / len(first)
    deviation = (sum((value - mean) ** 2 for value in first) / len(first)) ** 0.5
    assert abs(mean) < 0.2
    assert 0.8 * FIELD_NOISE_COUNTS < deviation < 1.2 * FIELD_NOISE_COUNTS
    assert max(abs(value) for value in first) <= 3 * FIELD_NOISE_COUNTS


def test_noise_seed_is_a_stimulus_setting(tmp_path, capsys):
    from baysense.cli import main

    (tmp_path / "sim").mkdir()
    assert main(["stimulus", "--dir", str(tmp_path), "noise_seed=7", "field_noise=0"]) == 0
    world = json.loads((tmp_path / "sim" / "stimulus.json").read_text())
    assert world["noise_seed"] == 7
    assert world["field_noise"] == 0

    assert main(["stimulus", "--dir", str(tmp_path), "noise_seed=-1"]) == 1
    assert "noise_seed must be an integer in 0..4294967295" in capsys.readouterr().err


def test_hal_noise_defaults_match_world(tmp_path):
    # The HAL runs on MicroPython and cannot import stimulus.py, so it repeats two defaults.
    env = dict(os.environ, MICROPYPATH=str(HAL_DIR), BAYSENSE_VBOARD_FS=str(tmp_path), BAYSENSE_VBOARD_SIM=str(tmp_path))
    script = "import sim_devices\nprint(sim_devices._FIELD_NOISE_DEFAULT, sim_devices._NOISE_SEED_DEFAULT)\n"
    result = subprocess.run(
        micropython_command() + ["-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr

    field_noise, noise_seed = result.stdout.split()
    assert int(field_noise) == DEFAULT_WORLD["field_noise"]
    assert int(noise_seed) == DEFAULT_WORLD["noise_seed"]
