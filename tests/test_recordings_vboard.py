"""Real recordings played on a virtual board's ranger, checked at the gateway.

The edgeai recordings hold an 8x8 time-of-flight distance grid over one bay at about 1 Hz.
Each row becomes the simulated ranger's distance (the median of the zones that saw a target),
played ten times faster than recorded. Their rig is a scale model: the empty floor is about
1.06 m from the sensor and the cars' roofs about 0.46 m, so the board's thresholds are set for
that mounting height, as an installer sets them for a real bay.
"""

import csv
import statistics
import threading
import time

import pytest

from baysense import boards, protocol
from baysense.deploy import deploy
from baysense.device import Device
from baysense.gateway.store import Store
from baysense.provision import provision
from baysense.registry import Registry

PLAYBACK_SPEEDUP = 10
SETTLE_S = 8  # the off delay plus a resend after the last row


def rig_board():
    board = boards.load("virtual")
    board["detector"].update(occupied_below_mm=800, vacant_above_mm=950)
    return board


def grid_distances(path):
    """One distance per row: the median of the zones with a target (0 means none)."""
    distances = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            zones = [int(float(row["d%d_mm" % i])) for i in range(64)]
            seen = [zone for zone in zones if zone > 0]
            distances.append(int(statistics.median(seen)) if seen else None)
    return distances


def play(board, distances):
    for distance in distances:
        if distance is None:
            board.stimulus.set(echo=False)
        else:
            board.stimulus.set(echo=True, distance_mm=distance, distance_noise_mm=5)
        time.sleep(1 / PLAYBACK_SPEEDUP)


def stored_states(db_path, device_id):
    with Store(db_path, create=False) as store:
        return [
            protocol.STATE_NAMES[protocol.parse_state(r["body"])[0]]
            for r in store.reports(device_id)
            if r["frame_type"] == protocol.FRAME_STATE
        ]


@pytest.mark.slow
def test_edgeai_empty_and_parked(shared_data, make_vboard, gateway_thread, registry_path):
    folder = shared_data / "tof-magnetic" / "edgeai"
    cases = {
        "empty": folder / "case10_empty.csv",
        "parked": folder / "case07_c1c2_L-M_stationary.csv",
    }
    host, port = gateway_thread.address
    board_def = rig_board()
    rigs = {}
    for name, path in cases.items():
        board = make_vboard(name, board_def)
        distances = grid_distances(path)
        board.stimulus.set(distance_mm=distances[0] or 1057)
        with Device(board.port) as device, Registry(registry_path) as registry:
            deploy(device)
            provision(device, registry, name, "%s:%d" % (host, port), board_def)
            device.soft_reset(run_main=True)
        rigs[name] = (board, distances)

    players = [threading.Thread(target=play, args=rig) for rig in rigs.values()]
    for player in players:
        player.start()
    for player in players:
        player.join()
    time.sleep(SETTLE_S)

    # A node reports its first decision after boot, so an empty bay may report "vacant" once.
    assert set(stored_states(gateway_thread.db_path, "empty")) <= {"vacant"}
    assert stored_states(gateway_thread.db_path, "parked") == ["occupied"]
