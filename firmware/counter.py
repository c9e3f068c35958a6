# The frame counter: strictly increasing for the device's whole life, across reboots and
# power cuts, without a flash write for every frame.
#
# The file contains the first value not yet reserved, in decimal. At boot the node reserves a
# block of BLOCK values by writing start + BLOCK, then hands out values from the block; when
# the block runs out it reserves the next one. So flash is written once per BLOCK frames (and
# once per boot), and a reset skips at most the unused rest of a block. The gateway accepts
# any counter above the last one it stored, so a skip is harmless.
#
# The new bound is written to a temporary file and renamed over the old one (rename is atomic
# on LittleFS and POSIX), so a power cut leaves either the old bound or the new one, never a
# mix. A value is handed out only after the write that reserves it returned.

import os

from micropython import const

BLOCK = const(64)
MAX_COUNTER = 0xFFFFFFFF  # the frame's counter field is u32
FIRST = const(1)


class CounterExhausted(Exception):
    pass


def _read_number(path):
    # Return the decimal number in the file, None when it is missing, -1 when it is unreadable.
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    # Damaged flash can hold any bytes, and decoding them as text may raise UnicodeError.
    try:
        return int(data.decode().strip())
    except (UnicodeError, ValueError):
        return -1


class Counter:
    """Frame counters of one device, starting no lower than `floor`, a value never used yet.

    The node passes one above the highest counter in its outbox, so a counter file lost to a
    flash fault cannot make the counter go back below a frame still waiting to be sent.
    """

    def __init__(self, path="/counter.dat", floor=FIRST, block=BLOCK):
        self._path = path
        self._temporary = path + ".tmp"
        self._block = block
        self.reservations = 0  # flash writes of the bound since boot
        # True when the counter file existed but could not be read: the counter then continues
        # from `floor`, which is only as good as what the outbox still contains.
        self.recovered = False

        bound = _read_number(path)
        if bound is not None and bound < 0:
            self.recovered = True
            bound = None
        # A temporary file left by a power cut after its write but before the rename contains a
        # bound that may already have been handed out from, so it counts too.
        pending = _read_number(self._temporary)
        start = max(FIRST, floor, bound or 0, pending or 0)

        self._next = start
        self._limit = start
        self._reserve()

    def _reserve(self):
        limit = self._next + self._block
        if limit > MAX_COUNTER + 1:
            raise CounterExhausted("frame counter exhausted: provision a new device id")
        with open(self._temporary, "w") as f:
            f.write(str(limit))
        os.rename(self._temporary, self._path)
        self._limit = limit
        self.reservations += 1

    def next(self):
        """Return the next counter value, reserving a new block on flash when needed."""
        if self._next >= self._limit:
            self._reserve()
        value = self._next
        self._next += 1
        return value

    @property
    def value(self):
        """The value the next call of next() returns."""
        return self._next

    @property
    def limit(self):
        """The bound on flash: the first value not reserved."""
        return self._limit
