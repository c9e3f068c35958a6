"""Reset behaviour of the chip: a valid image in flash starts, otherwise the ROM complains.

`probe_image()` lets the virtual board decide whether to boot MicroPython. `rom_boot_log()`
returns the text a real chip's ROM prints on UART0 at 115200 baud when it enters download
mode, or when it finds no valid image and keeps resetting.
"""

import os

from ..errors import BaysenseError
from ..images import parse_image
from .chips import chip_by_name

# Read this much of the first image when probing: enough for MicroPython's second-stage
# bootloader (about 25 KB on ESP32) with room for larger builds.
PROBE_BYTES = 128 * 1024
# The ROM retries an invalid image after a watchdog reset; the log shows a few rounds.
INVALID_IMAGE_REPEATS = 3

BOOT_REASONS = ("poweron", "software", "watchdog")


def probe_image(flash_path, chip):
    """Return True if the flash file contains a valid app image for `chip` at its boot offset."""
    chip_record = chip_by_name(chip) if isinstance(chip, str) else chip
    with open(flash_path, "rb") as handle:
        handle.seek(chip_record.image_offset)
        data = handle.read(PROBE_BYTES)
    try:
        info = parse_image(data, os.fspath(flash_path))
    except BaysenseError:
        return False
    return info.chip == chip_record.name


def rom_boot_log(chip, reason="poweron", download=False, flash_path=None):
    """Return the ROM's boot messages for `chip` after a reset for `reason`.

    With `download` (IO0 held low) the ROM announces "waiting for download". Otherwise it
    boots from SPI flash and, with no valid image, prints "invalid header" with the first word
    it read (from `flash_path` when given, else 0xffffffff: erased flash) and resets again.
    """
    chip_record = chip_by_name(chip) if isinstance(chip, str) else chip
    if reason not in chip_record.reset_names:
        raise BaysenseError(
            "unknown reset reason (%s)" % reason, "use one of: %s" % ", ".join(BOOT_REASONS)
        )

    if download:
        return _reset_line(chip_record, reason, chip_record.download_boot) + "waiting for download\n"

    first_word = _first_word(flash_path, chip_record.image_offset)
    lines = []
    for round_index in range(INVALID_IMAGE_REPEATS):
        # The first round has the caller's reason; the retries follow a watchdog reset.
        round_reason = reason if round_index == 0 else "watchdog"
        lines.append(_reset_line(chip_record, round_reason, chip_record.flash_boot))
        lines.append(_flash_config_lines(chip_record))
        lines.append("invalid header: 0x%08x\n" % first_word)
    return "".join(lines)


def _reset_line(chip, reason, boot_mode):
    return "%srst:%s,boot:%s\n" % (chip.rom_banner, chip.reset_names[reason], boot_mode)


def _flash_config_lines(chip):
    if chip.name == "esp32":
        return (
            "configsip: 0, SPIWP:0xee\n"
            "clk_drv:0x00,q_drv:0x00,d_drv:0x00,cs0_drv:0x00,hd_drv:0x00,wp_drv:0x00\n"
            "mode:DIO, clock div:2\n"
        )
    return "SPIWP:0xee\nmode:DIO, clock div:1\n"


def _first_word(flash_path, offset):
    if flash_path is None:
        return 0xFFFFFFFF
    with open(flash_path, "rb") as handle:
        handle.seek(offset)
        head = handle.read(4).ljust(4, b"\xff")
    return int.from_bytes(head, "little")


