"""Resends of an unacknowledged frame back off exponentially, and heartbeats wait behind it.

The virtual board reports to a UDP socket of the test's that records datagrams and never
acknowledges, as a gateway that is down while the Wi-Fi link is up.
"""

import socket
import time

from baysense import protocol

import node_harness as harness

DEVICE_ID = "bay-01"
KEY = bytes(range(32))
RETRY_MIN_MS = 100
RETRY_MAX_MS = 800
# Delays between sends of the same frame, before jitter: doubled each time up to the maximum.
EXPECTED_MS = [100, 200, 400, 800, 800]
JITTER = 0.25  # the node adds up to a quarter of each delay
# Lateness allowed per resend (ms): the loop's 5 ms sleep plus one sample, which can block for
# a ping of up to 30 ms on this board.
SLACK_MS = 60


def test_resend_backoff_without_ack(tmp_path):
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(0.1)
    board_def = harness.fast_board()
    state_dir = tmp_path / "board"
    timing = {"retry_min_ms": RETRY_MIN_MS, "retry_max_ms": RETRY_MAX_MS}
    harness.install(state_dir, harness.node_config(DEVICE_ID, KEY, listener.getsockname(), board_def, timing))
    board = harness.start_board(state_dir, board_def)
    received = []
    try:
        deadline = time.monotonic() + 2 + sum(EXPECTED_MS) * (1 + JITTER) / 1000 + 1
        while time.monotonic() < deadline:
            try:
                datagram = listener.recv(1024)
            except socket.timeout:
                continue
            received.append((time.monotonic(), protocol.decode(datagram), datagram))
            if sum(1 for _, frame, _ in received if frame.type == protocol.FRAME_STATE) > len(EXPECTED_MS) + 1:
                break
    finally:
        board.stop()
        listener.close()

    assert received, "the board sent nothing"
    assert received[0][1].type == protocol.FRAME_HEARTBEAT, "the first frame after boot is a heartbeat"
    states = [(at, raw) for at, frame, raw in received if frame.type == protocol.FRAME_STATE]
    assert len(states) >= len(EXPECTED_MS) + 1, "only %d sends of the state frame" % len(states)
    assert all(raw == states[0][1] for _, raw in states), "a different frame went out before the first was acked"
    first_state = next(i for i, (_, frame, _) in enumerate(received) if frame.type == protocol.FRAME_STATE)
    assert all(frame.type == protocol.FRAME_STATE for _, frame, _ in received[first_state:]), (
        "a heartbeat went out while the outbox waited for an ack"
    )

    gaps_ms = [(states[i + 1][0] - states[i][0]) * 1000 for i in range(len(EXPECTED_MS))]
    for gap, expected in zip(gaps_ms, EXPECTED_MS):
        assert gap >= expected * 0.95, "resent after %.0f ms, expected at least %d ms: %s" % (gap, expected, gaps_ms)
        assert gap <= expected * (1 + JITTER) + SLACK_MS, "resent after %.0f ms, expected at most %.0f ms: %s" % (
            gap,
            expected * (1 + JITTER) + SLACK_MS,
            gaps_ms,
        )
