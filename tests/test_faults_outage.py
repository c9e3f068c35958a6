"""A long Wi-Fi outage on a virtual board while cars come and go: every change arrives once, in order.

The board runs the real firmware on the MicroPython unix port and reports to a real gateway on
loopback. Its timings are the defaults divided by node_harness.SCALE (100), so the 10-minute
outage lasts 6 real seconds and the resend back-off tops out at 0.3 s instead of 30 s.
"""

import re

import pytest

from baysense.gateway.simnode import provision

import node_harness as harness

DEVICE_ID = "bay-01"
OUTAGE_SIMULATED_S = 10 * 60
OUTAGE_REAL_S = OUTAGE_SIMULATED_S / harness.SCALE
CHANGES = 8  # cars arriving and leaving during the outage
# After the link is back the backlog must be through within this many real seconds: a few
# scaled maximum back-offs plus one round trip per frame.
DELIVERY_S = 5
LINK_ERRORS_FLAG = 0x04  # FAULT_FLAG_LINK_ERRORS in firmware/node.py

_BAY_LINE = re.compile(r"bay: (\w+) reason \d+ value -?\d+ counter (\d+)")


@pytest.fixture
def site(tmp_path):
    registry = tmp_path / "registry.db"
    keys = provision(registry, [DEVICE_ID])
    gateway = harness.start_gateway(tmp_path, registry)
    board_def = harness.fast_board()
    state_dir = tmp_path / "board"
    harness.install(state_dir, harness.node_config(DEVICE_ID, keys[DEVICE_ID], gateway.address, board_def))
    board = harness.start_board(state_dir, board_def)
    yield board, tmp_path / "gateway.db"
    board.stop()
    gateway.stop()


def node_changes(state_dir):
    """Return [(counter, state)] of the changes the node logged on its serial port."""
    return [(int(counter), state) for state, counter in _BAY_LINE.findall(harness.serial_log(state_dir))]


def test_outage_changes_arrive_once_in_order(site):
    board, db = site
    assert harness.wait_for(lambda: harness.heartbeats(db, DEVICE_ID)), "no heartbeat before the outage"
    # The node reports its first decision after boot ("vacant" here) before the outage starts.
    assert harness.wait_for(lambda: harness.state_reports(db, DEVICE_ID)), "no state report after boot"

    board.stimulus.set(link=False)
    harness.wait_for(lambda: False, timeout=0.2)  # the board reads its world every 50 ms
    stored_before = len(harness.reports(db, DEVICE_ID))

    expected = []
    step_s = OUTAGE_REAL_S / CHANGES
    for i in range(CHANGES):
        occupied = i % 2 == 0
        board.stimulus.set(distance_mm=harness.OCCUPIED_MM if occupied else harness.VACANT_MM)
        expected.append("occupied" if occupied else "vacant")
        assert harness.wait_for(lambda: len(node_changes(board.state_dir)) == i + 2, timeout=step_s + 2), (
            "the node did not decide change %d during the outage" % (i + 1)
        )
        harness.wait_for(lambda: False, timeout=max(0.0, step_s - 0.4))

    assert len(harness.reports(db, DEVICE_ID)) == stored_before, "frames reached the gateway over a dead link"

    board.stimulus.set(link=True)
    delivered = harness.wait_for(
        lambda: len(harness.state_reports(db, DEVICE_ID)) >= CHANGES + 1, timeout=DELIVERY_S
    )
    assert delivered, "only %d of %d changes arrived" % (len(harness.state_reports(db, DEVICE_ID)) - 1, CHANGES)
    harness.wait_for(lambda: False, timeout=0.3)  # room for a duplicate to show up

    stored = harness.state_reports(db, DEVICE_ID)
    logged = node_changes(board.state_dir)
    assert [state for _, state in stored] == ["vacant"] + expected
    assert stored == logged, "the gateway's reports differ from the changes the node decided"
    counters = [counter for counter, _ in stored]
    assert counters == sorted(counters), "reports were stored out of counter order"
    assert len(set(counters)) == len(counters), "a report was stored twice"

    stats = harness.gateway_stats(db)
    assert stats.get("rejected_old_counter", 0) == 0
    assert stats.get("rejected_reused_counter", 0) == 0
    assert stats.get("rejected_bad_mac", 0) == 0

    # The first heartbeat after the backlog reports an empty outbox.
    after = harness.wait_for(
        lambda: [h for h in harness.heartbeats(db, DEVICE_ID) if h["counter"] > counters[-1]], timeout=DELIVERY_S
    )
    assert after, "no heartbeat after the backlog"
    assert after[0]["outbox_depth"] == 0
    # Socket errors (0x04) may be flagged if the link fell between a check and a send.
    assert after[0]["fault_flags"] & ~LINK_ERRORS_FLAG == 0, after[0]
