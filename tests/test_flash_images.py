"""Image checks that run before `baysense flash` touches a board."""

import hashlib
import os
import struct

import pytest
from esptool.bin_image import ELFSection, ESP32C3FirmwareImage, ESP32FirmwareImage, ESP32S3FirmwareImage

from baysense.images import ImageError, check_image_for_board, parse_image

FOUR_MB = 4 * 1024 * 1024
IMAGE_CLASSES = {"esp32": ESP32FirmwareImage, "esp32s3": ESP32S3FirmwareImage, "esp32c3": ESP32C3FirmwareImage}
DRAM = {"esp32": 0x3FFB0000, "esp32s3": 0x3FC88000, "esp32c3": 0x3FC88000}


def esptool_image(chip, size=2048, digest=True):
    """Return an app image for `chip` written by esptool's own image writer."""
    image = IMAGE_CLASSES[chip](append_digest=digest)
    image.segments = [ELFSection(b".dram0.data", DRAM[chip], os.urandom(size), 0)]
    image.entrypoint = 0x40080000
    return image.save(None)


def handmade_image(chip_id, segments, hash_appended=False):
    """Return an image laid out byte by byte: header, extended header, segments, checksum."""
    header = struct.pack("<BBBBI", 0xE9, len(segments), 2, 0x20, 0x40080000)
    extended = struct.pack("<B3sHBHHIB", 0xEE, b"\x00\x00\x00", chip_id, 0, 0, 0xFFFF, 0, int(hash_appended))
    body = bytearray(header + extended)
    checksum = 0xEF
    for address, data in segments:
        body += struct.pack("<II", address, len(data)) + data
        for byte in data:
            checksum ^= byte
    body += b"\x00" * (15 - len(body) % 16)
    body.append(checksum)
    if hash_appended:
        body += hashlib.sha256(body).digest()
    return bytes(body)


@pytest.mark.parametrize("chip", sorted(IMAGE_CLASSES))
def test_esptool_images_parse(chip):
    for digest in (True, False):
        data = esptool_image(chip, digest=digest)
        info = parse_image(data)
        assert info.chip == chip
        assert info.length == len(data)


def test_handmade_image_parses():
    data = handmade_image(9, [(0x3FC88000, b"\x01\x02\x03"), (0x40378000, b"\xaa" * 100)], hash_appended=True)
    info = parse_image(data)
    assert info.chip == "esp32s3"
    assert info.segment_count == 2
    assert info.entry_point == 0x40080000
    assert info.header_flash_size == FOUR_MB


def test_bad_magic():
    data = bytearray(esptool_image("esp32"))
    data[0] = 0x7F  # an ELF file starts with 0x7F 'E' 'L' 'F'
    with pytest.raises(ImageError) as raised:
        parse_image(bytes(data), "firmware.elf")
    assert "firmware.elf has no ESP image magic byte (found 0x7f, expected 0xe9)" in str(raised.value)


def test_bad_checksum():
    data = bytearray(handmade_image(0, [(0x3FFB0000, b"\x10" * 64)]))
    data[24 + 8] ^= 0x01
    with pytest.raises(ImageError) as raised:
        parse_image(bytes(data))
    assert "fails its checksum" in str(raised.value)


def test_bad_sha256():
    data = bytearray(esptool_image("esp32c3", digest=True))
    data[-1] ^= 0x01
    with pytest.raises(ImageError) as raised:
        parse_image(bytes(data))
    assert "SHA-256" in str(raised.value)


def test_truncated_image():
    data = esptool_image("esp32s3", size=4096)
    with pytest.raises(ImageError) as raised:
        parse_image(data[:1000])
    assert "truncated" in str(raised.value)


def test_too_short_and_bad_segment_count():
    with pytest.raises(ImageError):
        parse_image(b"\xe9\x01")
    data = bytearray(handmade_image(0, [(0x3FFB0000, b"\x10")]))
    data[1] = 0
    with pytest.raises(ImageError) as raised:
        parse_image(bytes(data))
    assert "segment count (0)" in str(raised.value)


def test_wrong_chip_for_board():
    with pytest.raises(ImageError) as raised:
        check_image_for_board(esptool_image("esp32s3"), "esp32", 0x1000, FOUR_MB, "s3.bin")
    assert "s3.bin is built for esp32s3, but the board is esp32" in str(raised.value)
    assert "build the firmware for esp32" in str(raised.value)


def test_wrong_offset_for_chip():
    with pytest.raises(ImageError) as raised:
        check_image_for_board(esptool_image("esp32"), "esp32", 0x0, FOUR_MB)
    assert "flash the image at 0x1000" in str(raised.value)
    with pytest.raises(ImageError):
        check_image_for_board(esptool_image("esp32c3"), "esp32c3", 0x1000, FOUR_MB)


def test_image_larger_than_flash():
    data = esptool_image("esp32c3") + b"\xff" * (2 * 1024 * 1024)
    with pytest.raises(ImageError) as raised:
        check_image_for_board(data, "esp32c3", 0x0, 2 * 1024 * 1024, "big.bin")
    assert "does not fit in 2097152 bytes of flash" in str(raised.value)


def test_valid_image_for_board():
    info = check_image_for_board(esptool_image("esp32"), "esp32", 0x1000, FOUR_MB)
    assert info.chip == "esp32"
