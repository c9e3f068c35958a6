"""ESP application images: parse and check one before it goes to a board.

The layout is Espressif's app image format, as the ROM and esptool read it. An 8-byte header
has magic 0xE9, segment count, SPI flash mode, flash size and frequency, and entry point. A
16-byte extended header has the chip id as u16 at byte 12 and a "hash appended" flag at byte
23. Each segment follows as load address, length and data. The data is followed by padding up to a 16-byte boundary whose last
byte is a checksum (0xEF XORed with every segment byte), and a SHA-256 of the whole image when
the flag is set.
"""

import hashlib
import struct
from dataclasses import dataclass

from .errors import BaysenseError

IMAGE_MAGIC = 0xE9
HEADER = struct.Struct("<BBBBI")
EXTENDED_HEADER = struct.Struct("<B3sHBHHIB")  # wp pin, drive, chip id, revisions, hash flag
HEADER_BYTES = HEADER.size + EXTENDED_HEADER.size  # 24
SEGMENT_HEADER = struct.Struct("<II")
MAX_SEGMENTS = 16  # the ROM loader and esptool reject images with more segments
CHECKSUM_SEED = 0xEF
SHA256_BYTES = 32

# Image chip ids from the extended header, as esptool 5.6's targets define them.
CHIP_IDS = {0: "esp32", 5: "esp32c3", 9: "esp32s3"}
# Flash offset of the first image each chip's ROM boots (the second-stage bootloader, or the
# start of a merged MicroPython firmware.bin).
IMAGE_OFFSETS = {"esp32": 0x1000, "esp32s3": 0x0, "esp32c3": 0x0}
FLASH_SIZE_CODES = {0: 1 << 20, 1: 2 << 20, 2: 4 << 20, 3: 8 << 20, 4: 16 << 20}


class ImageError(BaysenseError):
    """An image file that is not a valid ESP app image for the board at hand."""


@dataclass(frozen=True)
class ImageInfo:
    """Fields read from an app image's headers."""

    chip_id: int
    chip: str  # "esp32", "esp32s3", "esp32c3" or "unknown (id N)"
    entry_point: int
    segment_count: int
    header_flash_size: int  # bytes, from the header's size code (None when the code is unknown)
    length: int  # bytes up to the end of the checksum (and SHA-256, if appended)


def parse_image(data, name="image"):
    """Parse `data` as an app image and check its checksum; raise ImageError if it is not valid."""
    if len(data) < HEADER_BYTES:
        raise ImageError(
            "%s is too short for an ESP app image (%d bytes)" % (name, len(data)),
            "use the .bin file the firmware build produced, not an .elf or a partial download",
        )
    magic, segment_count, _mode, size_freq, entry = HEADER.unpack_from(data)
    if magic != IMAGE_MAGIC:
        raise ImageError(
            "%s has no ESP image magic byte (found 0x%02x, expected 0xe9)" % (name, magic),
            "pass a firmware .bin built for ESP chips (for MicroPython: firmware.bin from the ESP32 port)",
        )
    _wp, _drive, chip_id, _rev, _min_rev, _max_rev, _reserved, hash_appended = EXTENDED_HEADER.unpack_from(
        data, HEADER.size
    )
    if segment_count == 0 or segment_count > MAX_SEGMENTS:
        raise ImageError(
            "%s has an invalid segment count (%d)" % (name, segment_count),
            "the file is corrupt: rebuild or download it again",
        )

    position = HEADER_BYTES
    checksum = CHECKSUM_SEED
    for index in range(segment_count):
        if position + SEGMENT_HEADER.size > len(data):
            raise _truncated(name, index)
        _address, length = SEGMENT_HEADER.unpack_from(data, position)
        position += SEGMENT_HEADER.size
        if position + length > len(data):
            raise _truncated(name, index)
        for byte in data[position : position + length]:
            checksum ^= byte
        position += length

    checksum_at = position + 15 - position % 16
    if checksum_at >= len(data):
        raise _truncated(name, segment_count)
    if data[checksum_at] != checksum:
        raise ImageError(
            "%s fails its checksum (stored 0x%02x, computed 0x%02x)" % (name, data[checksum_at], checksum),
            "the file is corrupt: rebuild or download it again",
        )
    length = checksum_at + 1
    if hash_appended == 1:
        digest = data[length : length + SHA256_BYTES]
        if hashlib.sha256(data[:length]).digest() != digest:
            raise ImageError(
                "%s fails its appended SHA-256" % name, "the file is corrupt: rebuild or download it again"
            )
        length += SHA256_BYTES

    return ImageInfo(
        chip_id=chip_id,
        chip=CHIP_IDS.get(chip_id, "unknown (id %d)" % chip_id),
        entry_point=entry,
        segment_count=segment_count,
        header_flash_size=FLASH_SIZE_CODES.get(size_freq >> 4),
        length=length,
    )


def check_image_for_board(data, chip, offset, flash_size, name="image"):
    """Check that `data` is an image for `chip` at `offset` that fits `flash_size` bytes.

    Return the ImageInfo; raise ImageError naming what does not match and how to fix it.
    """
    info = parse_image(data, name)
    if info.chip != chip:
        raise ImageError(
            "%s is built for %s, but the board is %s" % (name, info.chip, chip),
            "download or build the firmware for %s" % chip,
        )
    expected_offset = IMAGE_OFFSETS[chip]
    if offset != expected_offset:
        raise ImageError(
            "flash offset 0x%x is wrong for %s (its ROM boots from 0x%x)" % (offset, chip, expected_offset),
            "flash the image at 0x%x" % expected_offset,
        )
    if offset + len(data) > flash_size:
        raise ImageError(
            "%s is %d bytes and does not fit in %d bytes of flash from offset 0x%x"
            % (name, len(data), flash_size, offset),
            "use a firmware build for a %d MB flash or smaller" % (flash_size >> 20),
        )
    return info


def _truncated(name, segment_index):
    return ImageError(
        "%s is truncated (it ends inside segment %d)" % (name, segment_index),
        "the file is incomplete: download or copy it again",
    )
