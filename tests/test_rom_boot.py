"""Boot behaviour of the virtual chip: image probe, ROM boot log, RFC 2217 resets, pacing, CLI."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from esptool.bin_image import ELFSection, ESP32C3FirmwareImage, ESP32FirmwareImage

from baysense.rom import slip
from baysense.rom.boot import probe_image, rom_boot_log
from baysense.rom.chips import ESP32, ESP32C3, mac_crc8
from baysense.rom.server import BackgroundServer

FLASH_SIZE = 1024 * 1024
SERIAL_LOGS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "serial-logs"
ESPTOOL_TIMEOUT_S = 120


def app_image(chip):
    """Return a small valid app image for `chip`, as esptool's image writer lays it out."""
    if chip == "esp32":
        image = ESP32FirmwareImage()
        image.segments = [ELFSection(b".dram0.data", 0x3FFB0000, os.urandom(512), 0)]
    else:
        image = ESP32C3FirmwareImage()
        image.segments = [ELFSection(b".dram0.data", 0x3FC88000, os.urandom(512), 0)]
    image.entrypoint = 0x40080000
    return image.save(None)


def write_flash_file(path, offset, data):
    content = bytearray(b"\xff" * FLASH_SIZE)
    content[offset : offset + len(data)] = data
    path.write_bytes(bytes(content))


def test_probe_finds_valid_image(tmp_path):
    flash = tmp_path / "flash.bin"
    write_flash_file(flash, 0x1000, app_image("esp32"))
    assert probe_image(flash, "esp32") is True


def test_probe_rejects_erased_flash(tmp_path):
    flash = tmp_path / "flash.bin"
    write_flash_file(flash, 0, b"")
    assert probe_image(flash, "esp32") is False
    assert probe_image(flash, "esp32c3") is False


def test_probe_rejects_wrong_offset_and_chip(tmp_path):
    flash = tmp_path / "flash.bin"
    write_flash_file(flash, 0x0, app_image("esp32"))
    assert probe_image(flash, "esp32") is False  # an ESP32 boots from 0x1000
    write_flash_file(flash, 0x0, app_image("esp32c3"))
    assert probe_image(flash, "esp32c3") is True
    assert probe_image(flash, "esp32s3") is False  # C3 image on an S3


def test_probe_rejects_corrupt_image(tmp_path):
    flash = tmp_path / "flash.bin"
    image = bytearray(app_image("esp32c3"))
    image[40] ^= 0xFF
    write_flash_file(flash, 0, bytes(image))
    assert probe_image(flash, "esp32c3") is False


def test_boot_log_download_mode():
    text = rom_boot_log("esp32", "poweron", download=True)
    assert text.startswith("ets Jun  8 2016 00:22:57\n")
    assert "rst:0x1 (POWERON_RESET),boot:0x3 (DOWNLOAD_BOOT(UART0/UART1/SDIO_REI_REO_V2))" in text
    assert text.endswith("waiting for download\n")


def test_boot_log_invalid_header(tmp_path):
    flash = tmp_path / "flash.bin"
    write_flash_file(flash, 0, b"\x12\x34\x56\x78")
    text = rom_boot_log("esp32c3", "poweron", flash_path=flash)
    assert text.startswith("ESP-ROM:esp32c3-api1-20210207\nBuild:Feb  7 2021\n")
    assert "rst:0x1 (POWERON),boot:0xc (SPI_FAST_FLASH_BOOT)" in text
    assert "invalid header: 0x78563412" in text
    assert "rst:0x10 (RTCWDT_RTC_RST)" in text  # the retries after the watchdog reset


def test_boot_log_matches_real_c3_transcript():
    transcript = SERIAL_LOGS / "esp32c3_esptool_flash_id_and_rom_boot__micropython_issue8412.txt"
    if not transcript.exists():
        pytest.skip("serial-log transcripts not found at %s" % SERIAL_LOGS)
    real = transcript.read_text()
    ours = rom_boot_log("esp32c3", "poweron")
    for line in ours.splitlines()[:5]:
        assert line in real, line


def test_boot_log_matches_esptool_detection():
    # esptool's connect() reads the boot log with this pattern to tell download mode apart.
    import re

    pattern = re.compile(rb"boot:(0x[0-9a-fA-F]+)(.*waiting for download)?", re.DOTALL)
    for chip in ("esp32", "esp32s3", "esp32c3"):
        download = pattern.search(rom_boot_log(chip, "poweron", download=True).encode())
        assert download.group(2) is not None
        flash_boot = pattern.search(rom_boot_log(chip, "poweron").encode())
        assert flash_boot.group(2) is None


def test_mac_crc_matches_espefuse():
    from espefuse.efuse.esp32.fields import EfuseMacField

    mac = bytes((0x24, 0x0A, 0xC4, 0x01, 0x02, 0x03))
    assert mac_crc8(mac) == EfuseMacField.calc_crc(mac[::-1])


def test_chip_records_match_esptool():
    from esptool.targets import CHIP_DEFS

    for record in (ESP32, ESP32C3):
        target = CHIP_DEFS[record.name]
        assert target.IMAGE_CHIP_ID == record.image_chip_id
        assert target.BOOTLOADER_FLASH_OFFSET == record.image_offset
        assert target.SPI_REG_BASE == record.spi_base
        assert target.UART_CLKDIV_REG == record.uart_clkdiv_reg
    assert CHIP_DEFS["esp32"].MAGIC_VALUE == ESP32.magic_value


def test_rfc2217_reset_into_download_mode(tmp_path):
    flash = tmp_path / "flash.bin"
    started = []
    with BackgroundServer(flash, "esp32", flash_size=FLASH_SIZE, rfc2217=True, on_app_start=started.append) as rom:
        assert rom.url.startswith("rfc2217://127.0.0.1:")
        # Default reset: esptool toggles DTR/RTS to enter download mode and hard-resets after.
        # --no-stub keeps the run short: pyserial's RFC 2217 client costs about 0.2 s a command.
        result = subprocess.run(
            [sys.executable, "-m", "esptool", "--port", rom.url, "--no-stub", "read-mac"],
            capture_output=True, text=True, timeout=ESPTOOL_TIMEOUT_S,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "MAC:                24:0a:c4:" in result.stdout
    assert "Hard resetting via RTS pin" in result.stdout
    assert started == []  # erased flash: the hard reset finds no image to start


def test_rfc2217_hard_reset_starts_app(tmp_path):
    import serial

    flash = tmp_path / "flash.bin"
    write_flash_file(flash, 0x1000, app_image("esp32"))
    started = []
    with BackgroundServer(flash, "esp32", rfc2217=True, on_app_start=started.append) as rom:
        port = serial.serial_for_url(rom.url, timeout=1)
        try:
            port.dtr = False
            port.rts = True  # EN low
            port.rts = False  # EN released with IO0 high: boot from flash
            deadline = time.monotonic() + 5
            while not started and time.monotonic() < deadline:
                time.sleep(0.05)
            port.dtr = True  # DTR asserted: reset into download mode
            banner = port.read(200)
        finally:
            port.close()
    assert started == ["reset into a valid image"]
    assert b"waiting for download" in banner


def test_pacing_follows_baud(tmp_path):
    # 4 KB read back at 115200 baud needs about 0.36 s on the wire (10 bits a byte).
    from esptool.targets import CHIP_DEFS

    with BackgroundServer(tmp_path / "flash.bin", "esp32", flash_size=FLASH_SIZE, baud=115200) as rom:
        esp = CHIP_DEFS["esp32"](rom.url, 115200)
        try:
            esp.connect("no-reset", 1, warnings=False)
            stub = esp.run_stub()
            started = time.monotonic()
            stub.read_flash(0, 4096)
            slow = time.monotonic() - started

            stub.change_baud(921600)
            started = time.monotonic()
            stub.read_flash(0, 4096)
            fast = time.monotonic() - started
        finally:
            esp._port.close()
    assert slow >= 4096 * 10 / 115200
    assert fast < slow / 3


def test_rom_command_prints_port_first(tmp_path):
    flash = tmp_path / "flash.bin"
    process = subprocess.Popen(
        [sys.executable, "-m", "baysense.cli", "rom", "--chip", "esp32c3", "--flash", str(flash),
         "--flash-size", str(FLASH_SIZE)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        first = process.stdout.readline()
        assert first.startswith("port: socket://127.0.0.1:")
        url = first.split()[1]
        result = subprocess.run(
            [sys.executable, "-m", "esptool", "--port", url, "--before", "no-reset", "--after", "no-reset",
             "chip-id"], capture_output=True, text=True, timeout=ESPTOOL_TIMEOUT_S,
        )
        assert "ESP32-C3" in result.stdout
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert os.path.getsize(flash) == FLASH_SIZE


def test_slip_round_trip():
    payload = bytes(range(256)) + b"\xc0\xdb\xc0"
    decoder = slip.Decoder()
    encoded = slip.encode(payload)
    assert b"\xc0" not in encoded[1:-1]
    frames = decoder.feed(b"noise" + encoded[:10]) + decoder.feed(encoded[10:])
    assert frames == [payload]
