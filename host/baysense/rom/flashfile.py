"""The virtual board's SPI flash: a file of exactly the flash size, erased bytes 0xFF."""

import hashlib
import logging
import os

from ..errors import ConfigError

log = logging.getLogger(__name__)

SECTOR_SIZE = 0x1000  # smallest erase unit of the SPI NOR flash on ESP32 modules
ERASED = 0xFF
MD5_CHUNK_BYTES = 64 * 1024  # read size while hashing, to keep memory flat on 16 MB flash

# JEDEC manufacturer and memory type of a Winbond W25Q-series part (common on ESP32 modules);
# the third RDID byte is log2 of the capacity in bytes.
JEDEC_MANUFACTURER = 0xEF
JEDEC_MEMORY_TYPE = 0x40


class FlashRangeError(ValueError):
    """An access outside the flash."""


class FlashFile:
    """A flash chip backed by a file; writes program bits like NOR flash (1 -> 0 only)."""

    def __init__(self, path, size=None):
        self.path = os.fspath(path)
        exists = os.path.exists(self.path)
        if exists:
            actual = os.path.getsize(self.path)
            if size is not None and actual != size:
                raise ConfigError(
                    "flash file %s is %d bytes, not the flash size %d" % (self.path, actual, size),
                    "delete it to start with erased flash, or pass --flash-size %d" % actual,
                )
            size = actual
        if size is None or size <= 0 or size % SECTOR_SIZE:
            raise ConfigError(
                "invalid flash size (%r)" % size, "give a whole number of 4096-byte sectors, e.g. 4194304"
            )
        self.size = size
        if not exists:
            with open(self.path, "wb") as handle:
                chunk = bytes([ERASED]) * SECTOR_SIZE
                for _ in range(size // SECTOR_SIZE):
                    handle.write(chunk)
            log.info("created erased flash file %s (%d bytes)", self.path, size)
        self._fd = os.open(self.path, os.O_RDWR)

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @property
    def jedec_id(self):
        """The 24-bit RDID response as the SPI controller returns it (first byte lowest)."""
        capacity = self.size.bit_length() - 1
        return JEDEC_MANUFACTURER | (JEDEC_MEMORY_TYPE << 8) | (capacity << 16)

    def check_range(self, offset, length):
        if offset < 0 or length < 0 or offset + length > self.size:
            raise FlashRangeError(
                "range 0x%x..0x%x is outside the %d-byte flash" % (offset, offset + length, self.size)
            )

    def read(self, offset, length):
        self.check_range(offset, length)
        return os.pread(self._fd, length, offset)

    def program(self, offset, data):
        """Program `data` at `offset`: each bit can only go from 1 to 0, as on NOR flash."""
        self.check_range(offset, len(data))
        old = os.pread(self._fd, len(data), offset)
        merged = (int.from_bytes(old, "little") & int.from_bytes(data, "little")).to_bytes(len(data), "little")
        os.pwrite(self._fd, merged, offset)

    def erase(self, offset, length):
        """Erase every sector that [offset, offset + length) touches."""
        if length == 0:
            return
        start = offset - offset % SECTOR_SIZE
        end = -(-(offset + length) // SECTOR_SIZE) * SECTOR_SIZE
        self.check_range(start, end - start)
        os.pwrite(self._fd, bytes([ERASED]) * (end - start), start)

    def erase_all(self):
        self.erase(0, self.size)

    def md5(self, offset, length):
        self.check_range(offset, length)
        digest = hashlib.md5()
        position = offset
        while position < offset + length:
            step = min(MD5_CHUNK_BYTES, offset + length - position)
            digest.update(os.pread(self._fd, step, position))
            position += step
        return digest.digest()
