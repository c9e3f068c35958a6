"""`baysense flash` end to end against the virtual board's bootloader."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from esptool.bin_image import ELFSection, ESP32C3FirmwareImage, ESP32FirmwareImage, ESP32S3FirmwareImage

from baysense.cli import main
from baysense.flash import FlashError, flash_image, translate_error
from baysense.images import ImageError
from baysense.rom.boot import probe_image
from baysense.rom.server import BackgroundServer

FLASH_SIZE = 4 * 1024 * 1024
IMAGE_CLASSES = {"esp32": ESP32FirmwareImage, "esp32s3": ESP32S3FirmwareImage, "esp32c3": ESP32C3FirmwareImage}
DRAM = {"esp32": 0x3FFB0000, "esp32s3": 0x3FC88000, "esp32c3": 0x3FC88000}
OFFSETS = {"esp32": 0x1000, "esp32s3": 0x0, "esp32c3": 0x0}


def write_image(path, chip, size=24 * 1024):
    image = IMAGE_CLASSES[chip]()
    # Random bytes keep the test honest about compression; zeros let deflate hide mistakes.
    image.segments = [ELFSection(b".dram0.data", DRAM[chip], os.urandom(size // 2) + bytes(size // 2), 0)]
    image.entrypoint = 0x40080000
    data = image.save(None)
    path.write_bytes(data)
    return data


@pytest.mark.parametrize("chip", sorted(IMAGE_CLASSES))
def test_flash_writes_and_verifies(chip, tmp_path, capsys):
    flash = tmp_path / "flash.bin"
    data = write_image(tmp_path / "firmware.bin", chip)
    with BackgroundServer(flash, chip, flash_size=FLASH_SIZE) as rom:
        status = main(["flash", "--port", rom.url, str(tmp_path / "firmware.bin")])
    assert status == 0
    output = capsys.readouterr().out
    assert "at 0x%x on %s" % (OFFSETS[chip], chip) in output
    assert "verified" in output
    with open(flash, "rb") as handle:
        handle.seek(OFFSETS[chip])
        assert handle.read(len(data)) == data
    assert probe_image(flash, chip) is True


def test_flash_erase_clears_rest(tmp_path):
    flash = tmp_path / "flash.bin"
    content = bytearray(b"\xff" * FLASH_SIZE)
    content[0x300000:0x300010] = b"old filesystem!!"
    flash.write_bytes(bytes(content))
    write_image(tmp_path / "firmware.bin", "esp32c3")
    with BackgroundServer(flash, "esp32c3") as rom:
        assert main(["flash", "--port", rom.url, "--erase", str(tmp_path / "firmware.bin")]) == 0
    with open(flash, "rb") as handle:
        handle.seek(0x300000)
        assert handle.read(16) == b"\xff" * 16


def test_flash_wrong_chip_image(tmp_path, capsys):
    flash = tmp_path / "flash.bin"
    write_image(tmp_path / "s3.bin", "esp32s3")
    with BackgroundServer(flash, "esp32", flash_size=FLASH_SIZE) as rom:
        status = main(["flash", "--port", rom.url, str(tmp_path / "s3.bin")])
    assert status == 1
    error = capsys.readouterr().err
    assert "wrong chip" in error
    assert "is built for esp32s3" in error
    assert "flash a firmware build for esp32" in error
    assert open(flash, "rb").read(0x2000) == b"\xff" * 0x2000  # nothing written


def test_flash_wrong_chip_option(tmp_path, capsys):
    write_image(tmp_path / "firmware.bin", "esp32")
    with BackgroundServer(tmp_path / "flash.bin", "esp32c3", flash_size=FLASH_SIZE) as rom:
        status = main(["flash", "--port", rom.url, "--chip", "esp32", str(tmp_path / "firmware.bin")])
    assert status == 1
    assert "the board on %s is ESP32-C3, not ESP32" % rom.url in capsys.readouterr().err


def test_flash_broken_image_before_connect(tmp_path):
    broken = tmp_path / "broken.bin"
    broken.write_bytes(b"\x7fELF" + bytes(100))
    # Nothing listens on this port: the image check must fail first.
    with pytest.raises(ImageError) as raised:
        flash_image("socket://127.0.0.1:9", broken)
    assert "no ESP image magic byte" in str(raised.value)


def test_flash_image_too_big_for_flash(tmp_path):
    data = write_image(tmp_path / "firmware.bin", "esp32c3")
    (tmp_path / "big.bin").write_bytes(data + b"\xff" * (1024 * 1024))
    with BackgroundServer(tmp_path / "flash.bin", "esp32c3", flash_size=1024 * 1024) as rom:
        with pytest.raises(ImageError) as raised:
            flash_image(rom.url, tmp_path / "big.bin")
    assert "does not fit in 1048576 bytes of flash" in str(raised.value)


def test_flash_no_response(tmp_path):
    write_image(tmp_path / "firmware.bin", "esp32")
    silent = socket.create_server(("127.0.0.1", 0))
    connections = []
    accepting = threading.Thread(target=lambda: connections.append(silent.accept()), daemon=True)
    accepting.start()
    port = "socket://127.0.0.1:%d" % silent.getsockname()[1]
    try:
        with pytest.raises(FlashError) as raised:
            flash_image(port, tmp_path / "firmware.bin", connect_attempts=1)
    finally:
        silent.close()
    assert "no response from the bootloader" in str(raised.value)
    assert "hold BOOT while pressing EN" in str(raised.value)


def test_flash_nothing_listening(tmp_path):
    write_image(tmp_path / "firmware.bin", "esp32")
    probe = socket.create_server(("127.0.0.1", 0))
    free_port = probe.getsockname()[1]
    probe.close()
    with pytest.raises(FlashError) as raised:
        flash_image("socket://127.0.0.1:%d" % free_port, tmp_path / "firmware.bin", connect_attempts=1)
    assert "nothing listens on socket://127.0.0.1:%d" % free_port in str(raised.value)


@pytest.mark.parametrize(
    "message, expected",
    [
        ("could not open port /dev/ttyUSB0: [Errno 13] Permission denied: '/dev/ttyUSB0'", "dialout on Debian/Ubuntu, uucp on Arch"),
        ("Could not exclusively lock port /dev/ttyUSB0: [Errno 11] Resource temporarily unavailable", "port busy"),
        ("could not open port /dev/ttyUSB0: [Errno 16] Device or resource busy", "close the program"),
        ("could not open port /dev/ttyUSB9: [Errno 2] No such file or directory", "port not found"),
        ("Failed to connect to ESP32: No serial data received.", "hold BOOT while pressing EN"),
    ],
)
def test_port_error_messages(message, expected):
    assert expected in str(translate_error(RuntimeError(message), "/dev/ttyUSB0"))


def test_flash_permission_denied_on_device(tmp_path):
    # A serial device node the user may not open, as /dev/ttyUSB0 is before joining dialout.
    # Root opens any node, so the check runs as the unprivileged user "nobody" (uid 65534).
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) not found; it runs the check as an unprivileged user")
    folder = Path(tempfile.mkdtemp())
    try:
        folder.chmod(0o755)
        device = folder / "ttyUSB0"
        device.write_bytes(b"")
        device.chmod(0o600)
        script = (
            "from baysense.flash import connect\n"
            "try:\n    connect(%r, 'auto', 1)\n"
            "except Exception as error:\n    print(error)\n" % str(device)
        )
        prefix = [setpriv, "--reuid", "65534", "--regid", "65534", "--clear-groups"] if os.geteuid() == 0 else []
        result = subprocess.run(
            prefix + [sys.executable, "-c", script],
            capture_output=True, text=True, timeout=60, env=dict(os.environ, HOME=str(folder)),
        )
    finally:
        shutil.rmtree(folder)
    assert "permission denied opening %s" % device in result.stdout, result.stdout + result.stderr
    assert "dialout on Debian/Ubuntu, uucp on Arch" in result.stdout


def test_flash_port_busy(tmp_path):
    # A pseudo-terminal plays /dev/ttyUSB0. Another program has it open with an exclusive lock,
    # as esptool, mpremote and serial monitors take.
    import pty

    import serial

    write_image(tmp_path / "firmware.bin", "esp32")
    controller, device_fd = pty.openpty()
    device = os.ttyname(device_fd)
    holder = serial.Serial(device, exclusive=True)
    try:
        with pytest.raises(FlashError) as raised:
            flash_image(device, tmp_path / "firmware.bin", connect_attempts=1)
    finally:
        holder.close()
        os.close(device_fd)
        os.close(controller)
    assert "port busy (%s)" % device in str(raised.value)
