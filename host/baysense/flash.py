"""`baysense flash`: check a firmware image, then write and verify it with esptool's loader.

The image is checked before the board is touched (magic byte, checksum), and again against the
chip esptool detects (chip id, flash offset, flash size). Writing uses the flasher stub and
compressed blocks, as `esptool write-flash` does, then compares the flash's MD5 with the file's.
"""

import hashlib
import logging
import re
import sys
import time
import zlib
from dataclasses import dataclass

import click

from .errors import BaysenseError, DeviceError
from .images import IMAGE_OFFSETS, check_image_for_board, parse_image
from .ports import port_option, resolve_port

log = logging.getLogger(__name__)

ROM_BAUD = 115200  # every ESP ROM loader starts at this rate
DEFAULT_BAUD = 460800  # esptool's default after the stub runs; CP210x and CH340 bridges carry it
DEFAULT_CONNECT_ATTEMPTS = 7  # esptool's default: about 7 reset-and-sync rounds, 5 s on a bench
# Chip names as esptool's detect_chip reports them, to ours.
ESPTOOL_CHIP_NAMES = {"ESP32": "esp32", "ESP32-S3": "esp32s3", "ESP32-C3": "esp32c3"}
LINUX_SERIAL_GROUPS = "dialout on Debian/Ubuntu, uucp on Arch"


class FlashError(DeviceError):
    """Flashing failed on the board or on the way to it."""


@dataclass(frozen=True)
class FlashResult:
    chip: str
    offset: int
    size: int
    compressed_size: int
    seconds: float
    md5: str


def flash_image(port, image_path, chip="auto", erase=False, baud=DEFAULT_BAUD,
                connect_attempts=DEFAULT_CONNECT_ATTEMPTS, progress=None):
    """Write the image at `image_path` to the board on `port` and verify it; return a FlashResult.

    `port` is a device path, a `socket://` / `rfc2217://` URL, `auto` or `id:SERIAL` (see
    `baysense.ports.resolve_port`). `progress(done, total)` is called with uncompressed byte
    counts while writing.
    """
    with open(image_path, "rb") as handle:
        image = handle.read()
    name = str(image_path)
    info = parse_image(image, name)

    port = resolve_port(port)
    esp = connect(port, chip, connect_attempts)
    try:
        detected = ESPTOOL_CHIP_NAMES.get(esp.CHIP_NAME)
        if detected is None:
            raise FlashError(
                "unsupported chip on %s (%s)" % (port, esp.CHIP_NAME), "Baysense supports ESP32, ESP32-S3 and ESP32-C3"
            )
        if info.chip != detected:
            raise FlashError(
                "wrong chip: %s is built for %s, but the board on %s is %s" % (name, info.chip, port, detected),
                "flash a firmware build for %s" % detected,
            )
        offset = IMAGE_OFFSETS[detected]

        esp = _run_stub(esp)
        if baud > ROM_BAUD:
            esp.change_baud(baud)
        _attach_flash(esp)
        flash_size = _flash_size(esp)
        check_image_for_board(image, detected, offset, flash_size, name)

        if erase:
            log.info("erasing the whole flash of the %s on %s", detected, port)
            esp.erase_flash()
        started = time.monotonic()
        compressed_size = _write(esp, offset, image, progress)
        md5 = _verify(esp, offset, image)
        seconds = time.monotonic() - started
        esp.hard_reset()
    except BaysenseError:
        raise
    except Exception as error:
        raise translate_error(error, port) from error
    finally:
        esp._port.close()

    return FlashResult(detected, offset, len(image), compressed_size, seconds, md5)


def connect(port, chip, attempts):
    """Open `port` and sync with the ROM loader; return esptool's loader for the chip."""
    from esptool.cmds import detect_chip
    from esptool.targets import CHIP_DEFS

    mode = "no-reset" if port.startswith("socket://") else "default-reset"
    try:
        if chip == "auto":
            return detect_chip(port, ROM_BAUD, mode, connect_attempts=attempts)
        esp = CHIP_DEFS[chip](port, ROM_BAUD)
        esp.connect(mode, attempts)
        return esp
    except Exception as error:
        raise translate_error(error, port) from error


# Errors on opening or syncing with a port, as esptool and pyserial word them, in the order
# they are tried: (pattern, what failed, how to fix it). esptool's own wording "the port is busy
# or doesn't exist" covers every open failure, so only the operating system's errors count.
PORT_ERRORS = [
    (
        r"Errno 13|Permission denied",
        "permission denied opening %s",
        "add yourself to the group that owns serial ports (%s): `sudo usermod -aG dialout $USER` "
        "(uucp on Arch), then log out and in again" % LINUX_SERIAL_GROUPS,
    ),
    (
        r"Connection refused|Errno 111",
        "nothing listens on %s",
        "start the virtual board (`baysense rom` or `baysense vboard --bootloader`) first",
    ),
    (
        r"Errno 2\b|No such file|FileNotFoundError",
        "port not found (%s)",
        "check the cable and the port name: `ls /dev/ttyUSB* /dev/ttyACM*`",
    ),
    (
        r"Errno 16|Errno 11|Device or resource busy|exclusively lock|Access is denied",
        "port busy (%s)",
        "close the program that has it open (a serial monitor, mpremote, another baysense), then retry",
    ),
]
# esptool's wording when no reply to its SYNC frames came; the fix depends on the port's kind.
NO_RESPONSE = r"Failed to connect|No serial data received|Timed out waiting for packet"
DOWNLOAD_MODE_FIX = "hold BOOT while pressing EN to enter download mode, then retry"
VIRTUAL_BOOTLOADER = "`baysense vboard --bootloader` (or `baysense rom`) and pass the socket:// port it prints"
# Device names of pseudo-terminals on Linux and macOS. A USB-serial bridge is never one, but
# the REPL port of `baysense vboard` is, and it has no bootloader.
PSEUDO_TERMINAL_PREFIXES = ("/dev/pts/", "/dev/ttys")


def _no_response_fix(port):
    if port.startswith(PSEUDO_TERMINAL_PREFIXES):
        return "%s is a pseudo-terminal, such as a virtual board's REPL port, which has no bootloader: start the board with %s" % (
            port,
            VIRTUAL_BOOTLOADER,
        )
    if "://" in port:
        return "%s; for a virtual board, start it with %s" % (DOWNLOAD_MODE_FIX, VIRTUAL_BOOTLOADER)
    return DOWNLOAD_MODE_FIX


def translate_error(error, port):
    """Return a FlashError naming what failed on `port` and how to fix it."""
    text = str(error)

    wrong_chip = re.search(r"This chip is (\S+), not (\S+)\.", text)
    if wrong_chip:
        return FlashError(
            "wrong chip: the board on %s is %s, not %s" % (port, wrong_chip.group(1), wrong_chip.group(2)),
            "pass --chip auto or the board's chip",
        )

    for pattern, failure, fix in PORT_ERRORS:
        if re.search(pattern, text):
            return FlashError(failure % port, fix)
    if re.search(NO_RESPONSE, text):
        return FlashError("no response from the bootloader on %s" % port, _no_response_fix(port))

    first_line = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return FlashError(
        "flashing failed on %s: %s" % (port, first_line),
        "retry; if it fails again, run with -v and check the cable and power supply",
    )


def _run_stub(esp):
    from esptool.cmds import run_stub

    return run_stub(esp)


def _attach_flash(esp):
    from esptool.cmds import attach_flash

    attach_flash(esp)


def _flash_size(esp):
    from esptool.cmds import detect_flash_size
    from esptool.util import flash_size_bytes

    size = detect_flash_size(esp)
    if size is None:
        raise FlashError("could not detect the flash size of the board", "check the module's flash chip; retry")
    return flash_size_bytes(size)


def _write(esp, offset, image, progress):
    """Write `image` at `offset` in compressed blocks; return the compressed size."""
    from esptool.loader import DEFAULT_TIMEOUT, ERASE_WRITE_TIMEOUT_PER_MB, ESPLoader, timeout_per_mb

    compressed = zlib.compress(image, 9)
    esp.flash_defl_begin(len(image), len(compressed), offset)
    inflater = zlib.decompressobj()
    done = 0
    for seq, start in enumerate(range(0, len(compressed), esp.FLASH_WRITE_SIZE)):
        block = compressed[start : start + esp.FLASH_WRITE_SIZE]
        written = len(inflater.decompress(block))
        # The stub writes a block while the next arrives; allow for its erase and write time.
        timeout = max(DEFAULT_TIMEOUT, timeout_per_mb(ERASE_WRITE_TIMEOUT_PER_MB, written))
        esp.flash_defl_block(block, seq, timeout=timeout)
        done += written
        if progress is not None:
            progress(done, len(image))
    # The stub acknowledges a block before writing it; a register read returns only after the
    # last block is in flash.
    esp.read_reg(ESPLoader.CHIP_DETECT_MAGIC_REG_ADDR, timeout=timeout_per_mb(ERASE_WRITE_TIMEOUT_PER_MB, len(image)))
    return len(compressed)


def _verify(esp, offset, image):
    expected = hashlib.md5(image).hexdigest()
    actual = esp.flash_md5sum(offset, len(image))
    if actual != expected:
        raise FlashError(
            "verification failed: flash MD5 %s, image MD5 %s at 0x%x" % (actual, expected, offset),
            "retry at a lower --baud; if it fails again the flash chip may be worn or the supply weak",
        )
    return expected


@click.command("flash")
@port_option
@click.option("--chip", default="auto", type=click.Choice(["auto"] + sorted(IMAGE_OFFSETS)), show_default=True,
              help="Expected chip; auto detects it.")
@click.option("--erase", is_flag=True, help="Erase the whole flash before writing (clears the filesystem).")
@click.option("--baud", default=DEFAULT_BAUD, show_default=True, help="UART rate in bit/s after the stub starts.")
@click.option("--connect-attempts", default=DEFAULT_CONNECT_ATTEMPTS, show_default=True,
              help="Reset-and-sync rounds before giving up.")
@click.argument("image", type=click.Path(exists=True, dir_okay=False))
def flash_command(port, chip, erase, baud, connect_attempts, image):
    """Check IMAGE, write it to the board's flash at the chip's boot offset, and verify it."""
    _quiet_esptool()
    if sys.stderr.isatty():
        result = _flash_with_bar(port, image, chip, erase, baud, connect_attempts)
    else:
        result = flash_image(port, image, chip, erase, baud, connect_attempts)
    click.echo(
        "flashed %s: %d bytes (%d compressed) at 0x%x on %s in %.1f s, md5 %s verified"
        % (image, result.size, result.compressed_size, result.offset, result.chip, result.seconds, result.md5)
    )


def _flash_with_bar(port, image, chip, erase, baud, connect_attempts):
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TimeRemainingColumn(), transient=True) as bar:
        task = bar.add_task("writing", total=None)

        def update(done, total):
            bar.update(task, completed=done, total=total)

        return flash_image(port, image, chip, erase, baud, connect_attempts, progress=update)


def _quiet_esptool():
    # esptool prints its own stages and progress to stdout; baysense prints one summary instead.
    from esptool.logger import log as esptool_log

    esptool_log.set_verbosity("silent")
