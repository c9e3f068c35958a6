"""firmware/outbox.py run by the MicroPython unix port: order, acks, cut-off records, capacity.

Each test runs one MicroPython script in its own temporary folder, with the firmware modules
on MICROPYPATH. The script's asserts run on MicroPython; a failing one shows in the
interpreter's output, which the pytest assert prints.
"""

import struct
import zlib

import pytest

from node_harness import run_micropython

# Helpers every script starts with: frames shaped like protocol frames (version, type,
# id_len, device id, counter, body, tag) without the cost of HMAC.
PRELUDE = """
import os, struct
import outbox
from outbox import Outbox, frame_counter, record

def frame(counter, body=b"state"):
    ident = b"bay-01"
    return struct.pack("!BBB", 1, 1, len(ident)) + ident + struct.pack("!IH", counter, len(body)) + body + bytes(32)

def counters(box):
    return [frame_counter(f) for f in box.frames]

def size(path):
    try:
        return os.stat(path)[6]
    except OSError:
        return -1
"""


def run(tmp_path, body):
    result = run_micropython(PRELUDE + body + "\nprint('PASS')\n", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert output.strip().endswith("PASS"), output
    return result.stdout


def frame_bytes(counter, body=b"state"):
    ident = b"bay-01"
    return struct.pack("!BBB", 1, 1, len(ident)) + ident + struct.pack("!IH", counter, len(body)) + body + bytes(32)


def record_bytes(frame):
    # The record format as docs/node.md states it, written here independently of outbox.py.
    head = struct.pack("!H", len(frame))
    crc = zlib.crc32(head + frame) & 0xFFFFFFFF
    return b"\xb5" + head + frame + struct.pack("!I", crc)


def test_outbox_order_survives_reload(tmp_path):
    run(
        tmp_path,
        """
box = Outbox("outbox.log", "outbox.ack")
for n in (3, 4, 9):
    box.append(frame(n))
again = Outbox("outbox.log", "outbox.ack")
assert counters(again) == [3, 4, 9], counters(again)
assert again.head() == frame(3)
assert again.damaged == 0
assert again.last_counter() == 9
""",
    )


def test_outbox_record_format_matches_docs(tmp_path):
    run(
        tmp_path,
        """
box = Outbox("outbox.log", "outbox.ack")
box.append(frame(7))
box.append(frame(8, b"longer body"))
""",
    )
    expected = record_bytes(frame_bytes(7)) + record_bytes(frame_bytes(8, b"longer body"))
    assert (tmp_path / "outbox.log").read_bytes() == expected


def test_outbox_ack_only_removes_head(tmp_path):
    run(
        tmp_path,
        """
box = Outbox("outbox.log", "outbox.ack")
for n in (1, 2, 3):
    box.append(frame(n))
assert not box.ack(2), "an ack for a frame behind the head must not remove anything"
assert counters(box) == [1, 2, 3]
assert box.ack(1)
assert not box.ack(1), "a repeated ack must not remove the next frame"
assert counters(box) == [2, 3]
again = Outbox("outbox.log", "outbox.ack")
assert counters(again) == [2, 3], counters(again)
assert again.last_counter() == 3
""",
    )


def test_outbox_log_removed_when_all_acked(tmp_path):
    run(
        tmp_path,
        """
box = Outbox("outbox.log", "outbox.ack")
box.append(frame(5))
box.append(frame(6))
assert box.ack(5)
assert box.ack(6)
assert size("outbox.log") == -1, "the log should be deleted once everything is acknowledged"
again = Outbox("outbox.log", "outbox.ack")
assert len(again) == 0
assert again.last_counter() == 6, "the last ack must survive a reboot"
""",
    )


def test_outbox_every_cut_point_drops_only_last(tmp_path):
    # Cut the last record at every byte offset, as a power cut during the append could.
    run(
        tmp_path,
        """
whole = record(frame(1)) + record(frame(2))
last = record(frame(3))
for cut in range(1, len(last)):
    with open("outbox.log", "wb") as f:
        f.write(whole + last[:cut])
    box = Outbox("outbox.log", "outbox.ack")
    assert counters(box) == [1, 2], (cut, counters(box))
    assert box.damaged == 1, (cut, box.damaged)
    with open("outbox.log", "rb") as f:
        assert f.read() == whole, "cut %d: the log was not rewritten without the torn record" % cut
""",
    )


def test_outbox_damage_midway_keeps_later_records(tmp_path):
    run(
        tmp_path,
        """
records = [record(frame(n)) for n in (1, 2, 3, 4)]
damaged = bytearray(records[1])
damaged[12] ^= 0xFF
with open("outbox.log", "wb") as f:
    f.write(records[0] + bytes(damaged) + records[2] + records[3])
box = Outbox("outbox.log", "outbox.ack")
assert counters(box) == [1, 3, 4], counters(box)
assert box.damaged == 1
""",
    )


def test_outbox_garbage_log_loads_empty(tmp_path):
    run(
        tmp_path,
        """
with open("outbox.log", "wb") as f:
    f.write(b"\\xb5\\xff\\xff" + bytes(range(256)) * 4)
box = Outbox("outbox.log", "outbox.ack")
assert len(box) == 0
assert box.damaged == 1
assert size("outbox.log") == -1
""",
    )


def test_outbox_full_drops_oldest(tmp_path):
    run(
        tmp_path,
        """
box = Outbox("outbox.log", "outbox.ack", capacity=4)
for n in range(1, 7):
    box.append(frame(n))
assert counters(box) == [3, 4, 5, 6], counters(box)
assert box.dropped == 2
again = Outbox("outbox.log", "outbox.ack", capacity=4)
assert counters(again) == [3, 4, 5, 6], counters(again)
""",
    )


def test_outbox_log_size_is_bounded(tmp_path):
    # Acks while new frames keep arriving, so the log is never empty: compaction must bound it.
    run(
        tmp_path,
        """
box = Outbox("outbox.log", "outbox.ack", capacity=4)
box.append(frame(1))
largest = 0
for n in range(2, 200):
    box.append(frame(n))
    assert box.ack(n - 1)
    largest = max(largest, size("outbox.log"))
assert counters(box) == [199]
assert largest <= 2 * 4 * len(record(frame(1))), largest
""",
    )


def test_outbox_replace_rewrites_log(tmp_path):
    run(
        tmp_path,
        """
box = Outbox("outbox.log", "outbox.ack")
for n in (1, 2):
    box.append(frame(n))
box.replace([frame(1, b"new1"), frame(2, b"new2")])
again = Outbox("outbox.log", "outbox.ack")
assert again.frames == [frame(1, b"new1"), frame(2, b"new2")]
""",
    )


def test_outbox_ignores_leftover_temporary(tmp_path):
    # A power cut during a rewrite leaves the temporary file; the log itself is still whole.
    run(
        tmp_path,
        """
box = Outbox("outbox.log", "outbox.ack")
box.append(frame(1))
with open("outbox.log.tmp", "wb") as f:
    f.write(record(frame(1))[:9])
again = Outbox("outbox.log", "outbox.ack")
assert counters(again) == [1]
assert again.damaged == 0
""",
    )


def test_outbox_ack_file_cut_keeps_frames(tmp_path):
    # An unreadable ack file means frames are resent, never lost.
    run(
        tmp_path,
        """
box = Outbox("outbox.log", "outbox.ack")
for n in (1, 2):
    box.append(frame(n))
with open("outbox.ack", "wb") as f:
    f.write(b"\\xff\\xfe")
again = Outbox("outbox.log", "outbox.ack")
assert counters(again) == [1, 2]
""",
    )


@pytest.mark.parametrize("length_field", [0, 0xFFFF])
def test_outbox_bad_length_field(tmp_path, length_field):
    (tmp_path / "outbox.log").write_bytes(
        record_bytes(frame_bytes(1)) + b"\xb5" + struct.pack("!H", length_field) + bytes(8)
    )
    run(
        tmp_path,
        """
box = Outbox("outbox.log", "outbox.ack")
assert counters(box) == [1], counters(box)
assert box.damaged == 1
""",
    )


def test_outbox_rejects_too_short_record(tmp_path):
    # A record whose CRC matches but whose frame cannot hold a counter is damage, not a frame.
    run(
        tmp_path,
        """
with open("outbox.log", "wb") as f:
    f.write(record(b"\\x01\\x01") + record(frame(1)) + record(b"\\x01\\x01\\x20" + bytes(8)))
box = Outbox("outbox.log", "outbox.ack")
assert counters(box) == [1], counters(box)
assert box.damaged == 2, box.damaged
""",
    )
