# The outbox: state-change frames kept on flash from before they are sent until the gateway
# acknowledges them, so that no change is lost to an outage, a reboot or a power cut.
#
# Records are appended to one log file:
#   magic 0xB5 | length u16 | frame (length bytes) | CRC-32 of length and frame, u32
# (big-endian). A record cut off by a power cut fails its length or CRC check; loading stops
# at the first such record, keeps every record before it and rewrites the log without it.
# Acknowledged frames are not erased one by one: the counter of the newest acknowledged frame
# is kept in a second small file, and the log is emptied once everything in it is acknowledged.
#
# Bounded: at most MAX_FRAMES unacknowledged frames. When full, the oldest frame is dropped
# (and counted in `dropped`): the newest state of a bay matters more than its history.

import os
import struct
from binascii import crc32

from micropython import const

MAX_FRAMES = const(64)
_MAGIC = const(0xB5)
_HEAD = const(3)
_TAIL = const(4)
# Bytes of the counter field inside a frame: version, type, id_len, device id, then counter.
_ID_LEN_AT = const(2)


def frame_counter(frame):
    offset = 3 + frame[_ID_LEN_AT]
    return struct.unpack_from("!I", frame, offset)[0]


class Outbox:
    def __init__(self, log_path="/outbox.log", acked_path="/outbox.ack"):
        self._log_path = log_path
        self._acked_path = acked_path
        self.frames = []
        self.dropped = 0
        self.discarded_records = 0
        self._acked = self._read_acked()
        self._load()

    def _read_acked(self):
        try:
            with open(self._acked_path) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return 0

    def _load(self):
        try:
            with open(self._log_path, "rb") as f:
                data = f.read()
        except OSError:
            return
        offset = 0
        size = len(data)
        while offset < size:
            if size - offset < _HEAD + _TAIL or data[offset] != _MAGIC:
                break
            length = struct.unpack_from("!H", data, offset + 1)[0]
            end = offset + _HEAD + length
            if end + _TAIL > size:
                break
            stored_crc = struct.unpack_from("!I", data, end)[0]
            if crc32(data[offset + 1 : end]) & 0xFFFFFFFF != stored_crc:
                break
            frame = data[offset + _HEAD : end]
            if frame_counter(frame) > self._acked:
                self.frames.append(frame)
            offset = end + _TAIL
        if offset < size:
            self.discarded_records += 1
            print("outbox: dropped a cut-off record at byte", offset)
            self._rewrite()

    def _record(self, frame):
        head = struct.pack("!BH", _MAGIC, len(frame))
        crc = crc32(head[1:] + frame) & 0xFFFFFFFF
        return head + frame + struct.pack("!I", crc)

    def _rewrite(self):
        temporary = self._log_path + ".tmp"
        with open(temporary, "wb") as f:
            for frame in self.frames:
                f.write(self._record(frame))
        os.rename(temporary, self._log_path)

    def append(self, frame):
        """Store a frame on flash; return only once it is written."""
        if len(self.frames) >= MAX_FRAMES:
            self.frames.pop(0)
            self.dropped += 1
            self.frames.append(frame)
            self._rewrite()
            return
        self.frames.append(frame)
        with open(self._log_path, "ab") as f:
            f.write(self._record(frame))

    def head(self):
        return self.frames[0] if self.frames else None

    def __len__(self):
        return len(self.frames)

    def ack(self, counter):
        """Remove the head frame if `counter` acknowledges it; return True if it did."""
        if not self.frames or frame_counter(self.frames[0]) != counter:
            return False
        self.frames.pop(0)
        self._acked = counter
        if not self.frames:
            try:
                os.remove(self._log_path)
            except OSError:
                pass
        temporary = self._acked_path + ".tmp"
        with open(temporary, "w") as f:
            f.write(str(counter))
        os.rename(temporary, self._acked_path)
        return True
