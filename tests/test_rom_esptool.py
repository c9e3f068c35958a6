"""Unmodified esptool, run as a command, against the virtual ESP32, ESP32-S3 and ESP32-C3."""

import os
import subprocess
import sys

import pytest

from baysense.rom.server import BackgroundServer

FLASH_SIZE = 4 * 1024 * 1024
ESPTOOL_TIMEOUT_S = 60  # one esptool run takes under a second here; this only stops a hang
CHIPS = ["esp32", "esp32s3", "esp32c3"]
STUB_MODES = {"stub": [], "no-stub": ["--no-stub"]}


def esptool(url, *args):
    command = [sys.executable, "-m", "esptool", "--port", url, "--before", "no-reset", "--after", "no-reset", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=ESPTOOL_TIMEOUT_S)


def flash_bytes(path, offset, length):
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(length)


@pytest.fixture(scope="module", params=CHIPS)
def board(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    flash_path = folder / "flash.bin"
    with BackgroundServer(flash_path, request.param, flash_size=FLASH_SIZE) as rom:
        yield request.param, rom.url, flash_path, folder


@pytest.fixture(scope="module")
def payload():
    # Half random (incompressible), half zeros, so compressed writes carry real deflate blocks.
    return os.urandom(12 * 1024) + bytes(12 * 1024) + b"end"


@pytest.mark.parametrize("mode", STUB_MODES)
def test_identity_commands(board, mode):
    chip, url, _flash, _folder = board
    names = {"esp32": "ESP32-D0WD-V3", "esp32s3": "ESP32-S3", "esp32c3": "ESP32-C3"}

    chip_id = esptool(url, *STUB_MODES[mode], "chip-id")
    assert chip_id.returncode == 0, chip_id.stdout + chip_id.stderr
    assert names[chip] in chip_id.stdout

    flash_id = esptool(url, *STUB_MODES[mode], "flash-id")
    assert flash_id.returncode == 0, flash_id.stdout + flash_id.stderr
    assert "Detected flash size: 4MB" in flash_id.stdout

    mac = esptool(url, *STUB_MODES[mode], "read-mac")
    assert mac.returncode == 0, mac.stdout + mac.stderr
    assert "MAC:                24:0a:c4:" in mac.stdout


@pytest.mark.parametrize("mode", STUB_MODES)
@pytest.mark.parametrize("compression", ["--compress", "--no-compress"])
def test_write_verify_read(board, mode, compression, payload):
    chip, url, flash_path, folder = board
    image = folder / "payload.bin"
    image.write_bytes(payload)
    offset = 0x20000 if compression == "--compress" else 0x30000

    written = esptool(url, *STUB_MODES[mode], "write-flash", compression, hex(offset), str(image))
    assert written.returncode == 0, written.stdout + written.stderr
    assert flash_bytes(flash_path, offset, len(payload)) == payload
    assert flash_bytes(flash_path, offset + len(payload), 16) == b"\xff" * 16

    verified = esptool(url, *STUB_MODES[mode], "verify-flash", hex(offset), str(image))
    assert verified.returncode == 0, verified.stdout + verified.stderr

    readback = folder / ("readback-%s.bin" % mode)
    read = esptool(url, *STUB_MODES[mode], "read-flash", hex(offset), str(len(payload)), str(readback))
    if mode == "no-stub" and chip != "esp32":
        # Only the ESP32 ROM has READ_FLASH_SLOW; later ROMs reject it as a real chip does.
        assert read.returncode != 0
        assert "0105" in read.stdout + read.stderr
        return
    assert read.returncode == 0, read.stdout + read.stderr
    assert readback.read_bytes() == payload


@pytest.mark.parametrize("mode", STUB_MODES)
def test_erase_region(board, mode):
    _chip, url, flash_path, folder = board
    image = folder / "sector.bin"
    image.write_bytes(b"\x00" * 0x2000)
    assert esptool(url, "write-flash", "0x40000", str(image)).returncode == 0

    erased = esptool(url, *STUB_MODES[mode], "erase-region", "0x41000", "0x1000")
    assert erased.returncode == 0, erased.stdout + erased.stderr
    assert flash_bytes(flash_path, 0x40000, 0x1000) == b"\x00" * 0x1000
    assert flash_bytes(flash_path, 0x41000, 0x1000) == b"\xff" * 0x1000


@pytest.mark.parametrize("mode", STUB_MODES)
def test_erase_flash(board, mode):
    _chip, url, flash_path, folder = board
    image = folder / "marker.bin"
    image.write_bytes(b"\x12" * 0x1000)
    assert esptool(url, "write-flash", "0x3ff000", str(image)).returncode == 0

    erased = esptool(url, *STUB_MODES[mode], "erase-flash")
    if mode == "no-stub":
        # esptool itself rejects this, because the ROM has no ERASE_FLASH.
        assert erased.returncode != 0
        assert "does not support function erase_flash" in erased.stdout + erased.stderr
        assert flash_bytes(flash_path, 0x3FF000, 4) == b"\x12" * 4
        return
    assert erased.returncode == 0, erased.stdout + erased.stderr
    assert os.path.getsize(flash_path) == FLASH_SIZE
    assert flash_bytes(flash_path, 0, FLASH_SIZE) == b"\xff" * FLASH_SIZE
