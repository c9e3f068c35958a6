"""The virtual ROM's responses to bad input: esptool's usual errors within bounded time."""

import socket
import struct
import subprocess
import sys
import time

import pytest
from esptool.loader import ESPLoader
from esptool.targets import CHIP_DEFS
from esptool.util import FatalError

from baysense.rom import protocol, slip
from baysense.rom.server import BackgroundServer

FLASH_SIZE = 1024 * 1024
ESPTOOL_TIMEOUT_S = 60
# esptool waits 3 s (its DEFAULT_TIMEOUT) for a response, so a dropped frame fails by then.
ANSWER_BOUND_S = 10


@pytest.fixture(params=["esp32", "esp32c3"])
def rom(request, tmp_path):
    with BackgroundServer(tmp_path / "flash.bin", request.param, flash_size=FLASH_SIZE) as server:
        yield request.param, server.url


@pytest.fixture
def loader(rom):
    chip, url = rom
    esp = CHIP_DEFS[chip](url, 115200)
    esp.connect("no-reset", 1, warnings=False)
    yield esp
    esp._port.close()


def raw_request(sock, command, data, check=0, length=None):
    length = len(data) if length is None else length
    sock.sendall(slip.encode(struct.pack("<BBHI", 0, command, length, check) + data))


def read_response(sock):
    decoder = slip.Decoder()
    sock.settimeout(ANSWER_BOUND_S)
    while True:
        frames = decoder.feed(sock.recv(4096))
        if frames:
            return frames[0]


def test_rom_bad_checksum(loader):
    loader.flash_begin(1024, 0x10000)
    block = b"\x5a" * loader.FLASH_WRITE_SIZE
    started = time.monotonic()
    with pytest.raises(FatalError) as raised:
        loader.check_command(
            "write to target flash",
            loader.ESP_CMDS["FLASH_DATA"],
            struct.pack("<IIII", len(block), 0, 0, 0) + block,
            loader.checksum(block) ^ 0x01,
        )
    assert "result was 0107: Checksum error" in str(raised.value)
    assert time.monotonic() - started < ANSWER_BOUND_S


def test_stub_bad_checksum(loader):
    stub = loader.run_stub()
    stub.flash_begin(4096, 0x10000)
    block = b"\x5a" * 4096
    with pytest.raises(FatalError) as raised:
        stub.check_command(
            "write to target flash",
            stub.ESP_CMDS["FLASH_DATA"],
            struct.pack("<IIII", len(block), 0, 0, 0) + block,
            stub.checksum(block) ^ 0x01,
        )
    assert "result was C100: Bad data checksum" in str(raised.value)


def test_rom_flash_begin_past_end(loader):
    with pytest.raises(FatalError) as raised:
        loader.flash_begin(0x2000, FLASH_SIZE - 0x1000)
    assert "Failed to enter flash download mode" in str(raised.value)
    assert "0106" in str(raised.value)


def test_stub_read_past_end(loader):
    stub = loader.run_stub()
    with pytest.raises(FatalError) as raised:
        stub.read_flash(FLASH_SIZE - 0x1000, 0x2000)
    assert "result was C400: Failed SPI operation" in str(raised.value)


def test_rom_length_mismatch(rom):
    _chip, url = rom
    host, port = url[len("socket://") :].split(":")
    with socket.create_connection((host, int(port))) as sock:
        raw_request(sock, protocol.READ_REG, struct.pack("<I", 0x40001000), length=8)
        answer = read_response(sock)
    direction, command, _size, _value = struct.unpack_from("<BBHI", answer)
    assert (direction, command) == (1, protocol.READ_REG)
    assert answer[8:10] == b"\x01\x05"


def test_corrupt_frame_then_recovery(rom):
    chip, url = rom
    host, port = url[len("socket://") :].split(":")
    with socket.create_connection((host, int(port))) as sock:
        # 0xDB followed by 0x00 is no valid SLIP escape: the ROM drops the frame unanswered.
        sock.sendall(b"\xc0\x00\x0a\x04\x00\x00\x00\x00\x00\xdb\x00\x10\x00\x40\xc0")
        sock.settimeout(0.5)
        with pytest.raises(socket.timeout):
            sock.recv(4096)
        raw_request(sock, protocol.READ_REG, struct.pack("<I", 0x40001000))
        answer = read_response(sock)
    value = struct.unpack_from("<I", answer, 4)[0]
    assert value == {"esp32": 0x00F01D83, "esp32c3": 0x1B31506F}[chip]


def test_esptool_times_out_on_dropped_frame(loader):
    started = time.monotonic()
    loader._port.write(b"\xc0\x00\x0a\x04\x00\x00\x00\x00\x00\xdb\x00\x10\x00\x40\xc0")
    with pytest.raises(FatalError) as raised:
        loader.command(timeout=1)
    # slip_reader's messages for "nothing (more) arrived before the timeout"
    timeouts = ("Timed out waiting for packet", "Serial data stream stopped", "No serial data received")
    assert any(message in str(raised.value) for message in timeouts), str(raised.value)
    assert time.monotonic() - started < ANSWER_BOUND_S


def test_esptool_write_past_end(rom, tmp_path):
    _chip, url = rom
    image = tmp_path / "big.bin"
    image.write_bytes(b"\x00" * 0x2000)
    result = subprocess.run(
        [sys.executable, "-m", "esptool", "--port", url, "--before", "no-reset", "--after", "no-reset",
         "write-flash", hex(FLASH_SIZE - 0x1000), str(image)],
        capture_output=True, text=True, timeout=ESPTOOL_TIMEOUT_S,
    )
    assert result.returncode != 0
    assert "will not fit in 1048576 bytes of flash" in result.stdout + result.stderr


def test_unknown_command_rejected(loader):
    with pytest.raises(FatalError) as raised:
        loader.check_command("run a made-up command", 0x7E, b"")
    assert "0105" in str(raised.value)
