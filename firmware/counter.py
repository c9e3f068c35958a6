# The frame counter: strictly increasing for the device's whole life, across reboots and
# power cuts, without a flash write for every frame.
#
# The file holds the first value not yet reserved. At boot the node reserves a block of
# BLOCK values by writing start + BLOCK, then hands out values from the block; when the block
# runs out it reserves the next. A reset skips at most the unused rest of a block, and the
# gateway accepts any counter above the last one it stored, so a skip is harmless. The new
# bound is written to a temporary file and renamed over the old one (rename is atomic on
# LittleFS and POSIX), so a power cut leaves either the old bound or the new one.

import os

from micropython import const

BLOCK = const(64)
MAX_COUNTER = const(0xFFFFFFFF)


class CounterExhausted(Exception):
    pass


class Counter:
    def __init__(self, path="/counter.dat"):
        self._path = path
        self._next = self._read_bound()
        self._limit = self._next
        self._reserve()

    def _read_bound(self):
        try:
            with open(self._path) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            # No file yet (first boot) or one cut off before its first rename finished.
            return 1

    def _reserve(self):
        limit = self._limit + BLOCK
        if limit > MAX_COUNTER:
            raise CounterExhausted("frame counter exhausted: provision a new device id")
        temporary = self._path + ".tmp"
        with open(temporary, "w") as f:
            f.write(str(limit))
        os.rename(temporary, self._path)
        self._limit = limit

    def next(self):
        if self._next >= self._limit:
            self._reserve()
        value = self._next
        self._next += 1
        return value

    @property
    def value(self):
        """The next value next() returns."""
        return self._next
