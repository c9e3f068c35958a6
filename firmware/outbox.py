# The outbox: frames kept on flash from before they are sent until the gateway acknowledges
# them, so that no state change is lost to an outage, a reboot or a power cut.
#
# Records are appended to one log file, each
#   magic 0xB5 | length u16 | frame (length bytes) | CRC-32 of the length and frame bytes, u32
# in network byte order. A record cut off by a power cut fails its length or CRC check. Loading
# drops such a record, looks for the next valid record after it (so damage in the middle
# costs only the damaged record), keeps every valid one and rewrites the log without the bad
# bytes.
#
# Acknowledged frames are not erased one by one: the counter of the newest acknowledged frame
# is kept in a second small file, and records at or below it are skipped at load. The log is
# deleted once everything in it is acknowledged, and rewritten without the acknowledged
# records once there are `capacity` of them, so it never contains more than 2 * capacity records.
#
# Bounded: at most `capacity` unacknowledged frames. When a frame arrives and the outbox is
# full, the oldest frame is dropped and counted in `dropped`: the newest state of a bay
# matters more than its history, and the gateway accepts the later counters without a gap
# check.
#
# Every file change is either an append (a cut leaves a torn last record, which loading drops)
# or a write to a temporary file renamed over the old one (atomic on LittleFS and POSIX).

import os
import struct
from binascii import crc32

from micropython import const

CAPACITY = const(64)
MAGIC = const(0xB5)
HEAD_SIZE = const(3)  # magic, length
TAIL_SIZE = const(4)  # CRC-32
MAX_RECORD_FRAME = const(512)  # larger than any protocol frame: a longer length field is damage
MIN_RECORD_FRAME = const(10)  # version, type, id_len, a 1-byte id, counter u32, body_len u16
_ID_LEN_AT = const(2)  # frame byte holding the device id's length: version, type, id_len


def frame_counter(frame):
    """Return the counter field of an encoded frame (after version, type, id_len, device id)."""
    offset = 3 + frame[_ID_LEN_AT]
    return struct.unpack_from("!I", frame, offset)[0]


def record(frame):
    """Return the bytes of one log record holding `frame`."""
    head = struct.pack("!BH", MAGIC, len(frame))
    crc = crc32(frame, crc32(head[1:])) & 0xFFFFFFFF
    return head + frame + struct.pack("!I", crc)


def _record_at(data, offset):
    # Return the frame of a valid record starting at `offset`, or None.
    size = len(data)
    if size - offset < HEAD_SIZE + TAIL_SIZE or data[offset] != MAGIC:
        return None
    length = struct.unpack_from("!H", data, offset + 1)[0]
    if length < MIN_RECORD_FRAME or length > MAX_RECORD_FRAME:
        return None
    end = offset + HEAD_SIZE + length
    if end + TAIL_SIZE > size:
        return None
    stored = struct.unpack_from("!I", data, end)[0]
    if crc32(data[offset + 1 : end]) & 0xFFFFFFFF != stored:
        return None
    frame = data[offset + HEAD_SIZE : end]
    if 3 + frame[_ID_LEN_AT] + 6 > length:
        return None  # too short to hold its own counter and body length
    return frame


def parse_log(data):
    """Return (frames, damaged): the valid records' frames in order, and the bad spans skipped."""
    frames = []
    damaged = 0
    offset = 0
    size = len(data)
    in_damage = False
    while offset < size:
        frame = _record_at(data, offset)
        if frame is None:
            if not in_damage:
                damaged += 1
                in_damage = True
            offset += 1
            continue
        in_damage = False
        frames.append(frame)
        offset += HEAD_SIZE + len(frame) + TAIL_SIZE
    return frames, damaged


class Outbox:
    def __init__(self, log_path="/outbox.log", acked_path="/outbox.ack", capacity=CAPACITY):
        self._log_path = log_path
        self._acked_path = acked_path
        self.capacity = capacity
        self.frames = []
        self.dropped = 0  # frames dropped since boot because the outbox was full
        self.damaged = 0  # spans of bad bytes dropped from the log at load
        self._acked = self._read_acked()
        self._stale = 0  # acknowledged records still in the log file
        self._load()

    def _read_acked(self):
        try:
            with open(self._acked_path, "rb") as f:
                return int(f.read().decode().strip())
        except (OSError, UnicodeError, ValueError):
            # No acknowledgement yet, or a file lost to damage: resending frames the gateway
            # already has costs only an ack, because it acks a repeat of its last counter.
            return 0

    def _load(self):
        try:
            with open(self._log_path, "rb") as f:
                data = f.read()
        except OSError:
            return
        frames, damaged = parse_log(data)
        kept = []
        for frame in frames:
            if frame_counter(frame) > self._acked:
                kept.append(frame)
        # Frames beyond capacity can only come from an older firmware with a larger outbox.
        while len(kept) > self.capacity:
            kept.pop(0)
            self.dropped += 1
        self.frames = kept
        self.damaged = damaged
        if damaged:
            print("outbox: dropped", damaged, "damaged or cut-off record(s) from", self._log_path)
        if damaged or len(kept) != len(frames):
            self._rewrite()

    def _rewrite(self):
        if not self.frames:
            self._remove_log()
            return
        temporary = self._log_path + ".tmp"
        with open(temporary, "wb") as f:
            for frame in self.frames:
                f.write(record(frame))
        os.rename(temporary, self._log_path)
        self._stale = 0

    def _remove_log(self):
        try:
            os.remove(self._log_path)
        except OSError:
            pass  # already gone
        self._stale = 0

    def append(self, frame):
        """Store a frame on flash; return only once it is written.

        When the outbox is full the oldest frame is dropped first (see the file's header).
        """
        if len(self.frames) >= self.capacity:
            self.frames.pop(0)
            self.dropped += 1
            self.frames.append(frame)
            self._rewrite()
            return
        self.frames.append(frame)
        with open(self._log_path, "ab") as f:
            f.write(record(frame))

    def replace(self, frames):
        """Replace every frame at once (after re-signing them), atomically on flash."""
        self.frames = list(frames)
        self._rewrite()

    def head(self):
        return self.frames[0] if self.frames else None

    def __len__(self):
        return len(self.frames)

    def last_counter(self):
        """Return the highest counter this outbox has seen: its last frame, else the last ack."""
        if self.frames:
            return max(self._acked, frame_counter(self.frames[-1]))
        return self._acked

    def ack(self, counter):
        """Remove the head frame if `counter` acknowledges it; return True if it did."""
        if not self.frames or frame_counter(self.frames[0]) != counter:
            return False
        self.frames.pop(0)
        self._acked = counter

        # The ack file first: if power is cut before the log shrinks, loading skips the frame.
        temporary = self._acked_path + ".tmp"
        with open(temporary, "w") as f:
            f.write(str(counter))
        os.rename(temporary, self._acked_path)

        if not self.frames:
            self._remove_log()
        else:
            self._stale += 1
            if self._stale >= self.capacity:
                self._rewrite()
        return True
