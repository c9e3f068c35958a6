"""Power cuts on a virtual board: a cut-off outbox write is dropped, the rest kept, the counter never goes back.

The board's interpreter is killed with SIGKILL, as a power cut stops an ESP32 wherever it is.
A kill rarely lands inside the few microseconds of a file write. So one test writes the torn
record itself, the way a cut during an append leaves it, and another kills the board at
random instants while it reports changes.
"""

import random
import struct
import zlib

import pytest

from baysense import protocol
from baysense.gateway.simnode import provision

import node_harness as harness

DEVICE_ID = "bay-01"
BLOCK = 64  # counter.BLOCK in firmware/counter.py
POWER_CUTS = 8
# Seconds the test waits for the board to boot again after a cut.
BOOT_S = 10


def parse_records(data):
    """Return the frames of an outbox log, following the record format in docs/node.md."""
    frames = []
    offset = 0
    while offset < len(data):
        assert data[offset] == 0xB5, "no record magic at byte %d" % offset
        (length,) = struct.unpack_from("!H", data, offset + 1)
        frame = data[offset + 3 : offset + 3 + length]
        (crc,) = struct.unpack_from("!I", data, offset + 3 + length)
        assert crc == zlib.crc32(data[offset + 1 : offset + 3 + length]) & 0xFFFFFFFF
        frames.append(frame)
        offset += 3 + length + 4
    return frames


def record_bytes(frame):
    head = struct.pack("!H", len(frame))
    return b"\xb5" + head + frame + struct.pack("!I", zlib.crc32(head + frame) & 0xFFFFFFFF)


@pytest.fixture
def site(tmp_path):
    registry = tmp_path / "registry.db"
    keys = provision(registry, [DEVICE_ID])
    gateway = harness.start_gateway(tmp_path, registry)
    board_def = harness.fast_board()
    state_dir = tmp_path / "board"
    harness.install(state_dir, harness.node_config(DEVICE_ID, keys[DEVICE_ID], gateway.address, board_def))
    running = []

    def start():
        board = harness.start_board(state_dir, board_def)
        running.append(board)
        return board

    def power_off(board):
        # VirtualBoard.stop() fails when called twice, so each board is stopped once.
        running.remove(board)
        board.stop()

    yield start, power_off, tmp_path / "gateway.db", keys[DEVICE_ID]
    for board in running:
        board.stop()
    gateway.stop()


def toggle(board, occupied):
    board.stimulus.set(distance_mm=harness.OCCUPIED_MM if occupied else harness.VACANT_MM)


def test_power_cut_mid_append_drops_torn_record(site):
    start, power_off, db, key = site
    board = start()
    assert harness.wait_for(lambda: harness.heartbeats(db, DEVICE_ID)), "no heartbeat after boot"
    assert harness.wait_for(lambda: harness.state_reports(db, DEVICE_ID)), "no state report after boot"
    board.stimulus.set(link=False)
    harness.wait_for(lambda: False, timeout=0.2)

    log_path = board.fs_dir / "outbox.log"
    for i in range(3):
        toggle(board, i % 2 == 0)
        assert harness.wait_for(lambda: log_path.exists() and len(parse_records(log_path.read_bytes())) == i + 1)
    power_off(board)
    kept = parse_records(log_path.read_bytes())
    kept_counters = [protocol.decode(frame).counter for frame in kept]

    # The cut came in the middle of writing a fourth record.
    fourth = protocol.encode(
        key, protocol.FRAME_STATE, DEVICE_ID, kept_counters[-1] + 1, protocol.state_body(1, 0, 0, 480)
    )
    torn = record_bytes(fourth)[:40]
    log_path.write_bytes(log_path.read_bytes() + torn)

    board = start()
    assert harness.wait_for(lambda: "dropped 1 damaged or cut-off record" in harness.serial_log(board.state_dir)), (
        "the node did not report the cut-off record"
    )
    # Whole records only: the three kept ones, then what the new boot appended (its report of
    # the bay, still occupied, comes about a second after boot).
    whole = b"".join(record_bytes(frame) for frame in kept)
    assert log_path.read_bytes().startswith(whole), "the kept records changed"
    assert parse_records(log_path.read_bytes())[:3] == kept

    board.stimulus.set(link=True)
    assert harness.wait_for(lambda: len(harness.state_reports(db, DEVICE_ID)) >= 5), "the backlog did not arrive"
    stored = harness.state_reports(db, DEVICE_ID)
    assert [counter for counter, _ in stored[1:4]] == kept_counters
    assert [state for _, state in stored] == ["vacant", "occupied", "vacant", "occupied", "occupied"]

    # The report after the cut has a counter from a block reserved after it, above them all.
    newest = stored[4][0]
    assert newest > kept_counters[-1] + 1
    assert newest > BLOCK

    health = harness.wait_for(lambda: [h for h in harness.heartbeats(db, DEVICE_ID) if h["counter"] > newest])
    assert health, "no heartbeat after the backlog"
    assert health[0]["fault_flags"] & 0x08, "the heartbeat does not flag the damaged outbox (0x08)"
    assert health[0]["reset_cause"] == 1  # a power-on reset


def test_random_power_cuts_counter_never_back(site):
    start, _, db, _ = site
    board = start()
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    assert harness.wait_for(lambda: harness.heartbeats(db, DEVICE_ID)), "no heartbeat after boot"

    occupied = False
    for cut in range(POWER_CUTS):
        occupied = not occupied
        toggle(board, occupied)
        harness.wait_for(lambda: False, timeout=rng.uniform(0.05, 0.6))
        pid = board.pid
        board.power_cycle()
        assert harness.wait_for(lambda: board.pid not in (None, pid), timeout=BOOT_S), "seed %d: no reboot" % seed

    # Settle: the last state must reach the gateway, then an empty outbox shows in a heartbeat.
    final = "occupied" if occupied else "vacant"
    assert harness.wait_for(
        lambda: harness.state_reports(db, DEVICE_ID) and harness.state_reports(db, DEVICE_ID)[-1][1] == final
    ), "seed %d: the final state %s never arrived" % (seed, final)
    last_report = harness.reports(db, DEVICE_ID)[-1]["counter"]
    assert harness.wait_for(
        lambda: [h for h in harness.heartbeats(db, DEVICE_ID) if h["counter"] > last_report and h["outbox_depth"] == 0]
    ), "seed %d: no heartbeat with an empty outbox" % seed

    counters = [report["counter"] for report in harness.reports(db, DEVICE_ID)]
    assert counters == sorted(counters), "seed %d: counters out of order: %s" % (seed, counters)
    assert len(set(counters)) == len(counters), "seed %d: a counter was stored twice" % seed
    stats = harness.gateway_stats(db)
    assert stats.get("rejected_old_counter", 0) == 0, "seed %d: the counter went back" % seed
    assert stats.get("rejected_reused_counter", 0) == 0, "seed %d: a counter was reused" % seed
    assert [kind for kind, _ in board.resets].count("poweron") == POWER_CUTS

    bound = int((board.fs_dir / "counter.dat").read_text())
    assert bound > max(counters), "the reserved bound on flash is below a counter in use"


def test_lost_counter_file_resumes_above_outbox(site):
    # Flash damage takes the counter file while frames wait in the outbox: the counter must
    # continue above them, or the gateway would reject every new frame as a replay.
    start, power_off, db, _ = site
    board = start()
    assert harness.wait_for(lambda: harness.state_reports(db, DEVICE_ID)), "no state report after boot"
    board.stimulus.set(link=False)
    harness.wait_for(lambda: False, timeout=0.2)
    log_path = board.fs_dir / "outbox.log"
    toggle(board, True)
    assert harness.wait_for(lambda: log_path.exists() and parse_records(log_path.read_bytes()))
    power_off(board)
    waiting = protocol.decode(parse_records(log_path.read_bytes())[-1]).counter
    (board.fs_dir / "counter.dat").write_bytes(b"\xff\xff\xff")

    board = start()
    board.stimulus.set(link=True)
    toggle(board, False)
    assert harness.wait_for(lambda: len(harness.state_reports(db, DEVICE_ID)) >= 3), "the changes did not arrive"
    stored = harness.state_reports(db, DEVICE_ID)
    assert stored[1] == (waiting, "occupied")
    assert stored[2][0] > waiting
    health = harness.wait_for(lambda: [h for h in harness.heartbeats(db, DEVICE_ID) if h["counter"] > stored[2][0]])
    assert health, "no heartbeat after the changes"
    assert health[0]["fault_flags"] & 0x10, "the heartbeat does not flag the recovered counter (0x10)"
    stats = harness.gateway_stats(db)
    assert stats.get("rejected_old_counter", 0) == 0
