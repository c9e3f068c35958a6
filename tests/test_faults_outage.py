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
OUTBOX_DROPPED_FLAG = 0x02  # FAULT_FLAG_OUTBOX_DROPPED in firmware/node.py
SMALL_OUTBOX = 3

_BAY_LINE = re.compile(r"bay: (\w+) reason \d+ value -?\d+ counter (\d+)")


@pytest.fixture
def make_site(tmp_path):
    started = []

    def make(**extra):
        registry = tmp_path / "registry.db"
        keys = provision(registry, [DEVICE_ID])
        gateway = harness.start_gateway(tmp_path, registry)
        started.append(gateway)
        board_def = harness.fast_board()
        state_dir = tmp_path / "board"
        config = harness.node_config(DEVICE_ID, keys[DEVICE_ID], gateway.address, board_def, **extra)
        harness.install(state_dir, config)
        board = harness.start_board(state_dir, board_def)
        started.append(board)
        return board, tmp_path / "gateway.db"

    yield make
    for part in reversed(started):
        part.stop()


def take_link_down(board):
    """Cut the board's link and wait until the board has seen it."""
    board.stimulus.set(link=False)
    harness.wait_for(lambda: False, timeout=0.2)  # the board reads its world every 50 ms


def cars_during_outage(board, changes, outage_s):
    """Take the link down, alternate occupied and vacant `changes` times; return the states."""
    take_link_down(board)
    decided_before = len(node_changes(board.state_dir))

    expected = []
    step_s = outage_s / changes
    for i in range(changes):
        occupied = i % 2 == 0
        board.stimulus.set(distance_mm=harness.OCCUPIED_MM if occupied else harness.VACANT_MM)
        expected.append("occupied" if occupied else "vacant")
        decided = decided_before + i + 1
        assert harness.wait_for(lambda: len(node_changes(board.state_dir)) == decided, timeout=step_s + 2), (
            "the node did not decide change %d during the outage" % (i + 1)
        )
        harness.wait_for(lambda: False, timeout=max(0.0, step_s - 0.4))
    return expected


def node_changes(state_dir):
    """Return [(counter, state)] of the changes the node logged on its serial port."""
    return [(int(counter), state) for state, counter in _BAY_LINE.findall(harness.serial_log(state_dir))]


def test_outage_changes_arrive_once_in_order(make_site):
    board, db = make_site()
    assert harness.wait_for(lambda: harness.heartbeats(db, DEVICE_ID)), "no heartbeat before the outage"
    # The node reports its first decision after boot ("vacant" here) before the outage starts.
    assert harness.wait_for(lambda: harness.state_reports(db, DEVICE_ID)), "no state report after boot"
    # Counted once the link is down, since a heartbeat may still arrive until then.
    take_link_down(board)
    stored_before = len(harness.reports(db, DEVICE_ID))

    expected = cars_during_outage(board, CHANGES, OUTAGE_REAL_S)

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


def test_outage_overflow_drops_oldest(make_site):
    board, db = make_site(outbox_capacity=SMALL_OUTBOX)
    assert harness.wait_for(lambda: harness.state_reports(db, DEVICE_ID)), "no state report after boot"

    expected = cars_during_outage(board, SMALL_OUTBOX + 2, 2.5)
    board.stimulus.set(link=True)
    assert harness.wait_for(lambda: len(harness.state_reports(db, DEVICE_ID)) >= 1 + SMALL_OUTBOX, timeout=DELIVERY_S)
    harness.wait_for(lambda: False, timeout=0.3)  # room for a dropped frame to show up wrongly

    stored = harness.state_reports(db, DEVICE_ID)
    logged = node_changes(board.state_dir)
    assert [state for _, state in stored[1:]] == expected[-SMALL_OUTBOX:], "the outbox did not keep the newest"
    assert stored[1:] == logged[-SMALL_OUTBOX:]

    newest = stored[-1][0]
    after = harness.wait_for(lambda: [h for h in harness.heartbeats(db, DEVICE_ID) if h["counter"] > newest])
    assert after, "no heartbeat after the backlog"
    assert after[0]["fault_flags"] & OUTBOX_DROPPED_FLAG, "the heartbeat does not flag the dropped frames"
