"""Key rotation with frames waiting in the outbox: none is lost, each keeps its counter and body.

Frames in a virtual board's outbox were signed with the old key when `baysense provision
--rotate-key` gives the board a new one. At the next boot the node re-signs them with the new
key, keeping each frame's counter and body, and the gateway accepts them under the new key.
"""

import struct
import zlib

from baysense import protocol
from baysense.gateway.keys import key_id
from baysense.gateway.simnode import provision
from baysense.registry import Registry

import node_harness as harness

DEVICE_ID = "bay-01"
CHANGES = 3


def outbox_frames(path):
    """Return the frames of an outbox log (record format in docs/node.md)."""
    data = path.read_bytes()
    frames = []
    offset = 0
    while offset < len(data):
        (length,) = struct.unpack_from("!H", data, offset + 1)
        (crc,) = struct.unpack_from("!I", data, offset + 3 + length)
        assert crc == zlib.crc32(data[offset + 1 : offset + 3 + length]) & 0xFFFFFFFF
        frames.append(protocol.decode(data[offset + 3 : offset + 3 + length]))
        offset += 3 + length + 4
    return frames


def test_rotation_resigns_outbox_frames(tmp_path):
    registry = tmp_path / "registry.db"
    old_key = provision(registry, [DEVICE_ID])[DEVICE_ID]
    gateway = harness.start_gateway(tmp_path, registry)
    db = tmp_path / "gateway.db"
    board = harness.start_fast_board(tmp_path, DEVICE_ID, old_key, gateway.address)
    log_path = board.fs_dir / "outbox.log"
    try:
        assert harness.wait_for(lambda: harness.state_reports(db, DEVICE_ID)), "no state report after boot"
        board.stimulus.set(link=False)
        harness.wait_for(lambda: False, timeout=0.2)
        for i in range(CHANGES):
            board.stimulus.set(distance_mm=harness.OCCUPIED_MM if i % 2 == 0 else harness.VACANT_MM)
            assert harness.wait_for(lambda: log_path.exists() and len(outbox_frames(log_path)) == i + 1)
        before = outbox_frames(log_path)
        assert all(frame.verify(old_key) for frame in before)

        status = harness.rotate_key(board, DEVICE_ID, gateway.address, registry)
        assert status == 0
        with Registry(registry) as reg:
            new_key = bytes(reg.device(DEVICE_ID)["key"])
        assert new_key != old_key

        assert harness.wait_for(lambda: "re-signed or dropped 3 frame(s)" in harness.serial_log(board.state_dir)), (
            "the node did not re-sign its outbox after the rotation"
        )
        after = outbox_frames(log_path)[:CHANGES]
        assert [f.counter for f in after] == [f.counter for f in before]
        assert [f.body for f in after] == [f.body for f in before]
        assert [f.type for f in after] == [f.type for f in before]
        assert all(frame.verify(new_key) for frame in after)
        assert not any(frame.verify(old_key) for frame in after)

        board.stimulus.set(link=True)
        new_id = key_id(new_key)
        delivered = harness.wait_for(
            lambda: [r for r in harness.reports(db, DEVICE_ID) if r["key_id"] == new_id][:CHANGES]
        )
        assert len(delivered) == CHANGES, "only %d of %d frames arrived under the new key" % (len(delivered), CHANGES)
        assert [r["counter"] for r in delivered] == [f.counter for f in before]
        assert [r["body"] for r in delivered] == [f.body for f in before]
        assert harness.gateway_stats(db).get("rejected_bad_mac", 0) == 0
    finally:
        board.stop()
        gateway.stop()
