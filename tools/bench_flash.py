"""Benchmark: write a 1.5 MB image to a virtual ESP32 at 460800 virtual baud with esptool.

Compares the time esptool reports for the write with the time its compressed bytes need on a
UART at that baud (10 bits a byte), the physical limit a real bridge imposes. Prints the
figures and appends them to docs/benchmarks.md.

Run alone: .venv/bin/python tools/bench_flash.py [--no-record]
"""

import argparse
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from esptool.bin_image import ELFSection, ESP32FirmwareImage

from baysense.rom.server import BackgroundServer

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "benchmarks.md"
IMAGE_BYTES = 1536 * 1024
BAUD = 460800
ROM_BAUD = 115200  # the chip starts here; esptool switches to BAUD once its stub runs
FLASH_SIZE = 4 * 1024 * 1024
ESPTOOL_TIMEOUT_S = 600  # 1.5 MB at 460800 baud needs about 35 s uncompressed; generous bound
RANDOM_SEED = 1  # same image on every run, so runs compare


def build_image(path):
    """Write an ESP32 app image of IMAGE_BYTES that compresses about as well as firmware does.

    MicroPython's ESP32 firmware deflates to roughly 60 % of its size (esptool reports
    1.5 MB -> about 0.95 MB); a mix of random bytes and repeated text gets close to that.
    """
    generator = random.Random(RANDOM_SEED)
    words = [b"machine", b"network", b"Pin", b"socket", b"esp32", b"mp_obj_t", b"return", b"\x00\x00\x00"]
    parts = []
    size = 0
    while size < IMAGE_BYTES - 64:
        if generator.random() < 0.5:
            chunk = generator.randbytes(256)
        else:
            chunk = b" ".join(generator.choice(words) for _ in range(40))
        parts.append(chunk)
        size += len(chunk)
    body = b"".join(parts)[: IMAGE_BYTES - 64]

    image = ESP32FirmwareImage(append_digest=False)
    image.segments = [ELFSection(b".flash.rodata", 0x3FFB0000, body, 0)]
    image.entrypoint = 0x40080000
    path.write_bytes(image.save(None))


def run(record):
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        image = folder / "firmware.bin"
        build_image(image)
        image_size = image.stat().st_size

        with BackgroundServer(folder / "flash.bin", "esp32", flash_size=FLASH_SIZE, baud=ROM_BAUD) as rom:
            command = [
                sys.executable, "-m", "esptool", "--port", rom.url, "--baud", str(BAUD),
                "--before", "no-reset", "--after", "no-reset", "write-flash", "0x1000", str(image),
            ]
            started = time.monotonic()
            result = subprocess.run(command, capture_output=True, text=True, timeout=ESPTOOL_TIMEOUT_S)
            total_s = time.monotonic() - started

        if result.returncode != 0:
            sys.exit("bench_flash: esptool failed:\n%s%s" % (result.stdout, result.stderr))
        wrote = re.search(r"Wrote (\d+) bytes \((\d+) compressed\) at \S+ in ([\d.]+) seconds", result.stdout)
        if wrote is None:
            sys.exit("bench_flash: esptool's 'Wrote ...' line not found in its output:\n%s" % result.stdout)
        compressed = int(wrote.group(2))
        write_s = float(wrote.group(3))

    wire_s = compressed * 10 / BAUD
    ratio = write_s / wire_s
    lines = [
        "image: %d bytes, %d compressed (%.0f %%)" % (image_size, compressed, 100.0 * compressed / image_size),
        "esptool write phase: %.2f s; compressed bytes on the wire at %d baud: %.2f s; ratio %.2f"
        % (write_s, BAUD, wire_s, ratio),
        "whole esptool run (connect, stub upload at %d baud, write, verify): %.2f s" % (ROM_BAUD, total_s),
    ]
    print("\n".join(lines))
    if record:
        append_results(lines)


def append_results(lines):
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    section = [
        "",
        "## Flashing a virtual ESP32 (tools/bench_flash.py, %s)" % time.strftime("%Y-%m-%d"),
        "",
        "Command: `.venv/bin/python tools/bench_flash.py` (esptool write-flash of a 1.5 MB image,"
        " compressed, at 460800 virtual baud; the ROM starts at 115200).",
        "Machine: %d CPUs (`nproc`), %s, Python %s." % (len(os.sched_getaffinity(0)), cpu, platform.python_version()),
        "",
    ] + ["- %s" % line for line in lines]
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmarks\n")
    with open(RESULTS, "a") as handle:
        handle.write("\n".join(section) + "\n")
    print("appended to %s" % RESULTS.relative_to(ROOT))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-record", action="store_true", help="print the figures without appending them")
    arguments = parser.parse_args()
    run(record=not arguments.no_record)


if __name__ == "__main__":
    main()
