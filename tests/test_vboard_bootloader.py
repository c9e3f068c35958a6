"""`baysense vboard --bootloader`: esptool flashes the board, then its REPL starts.

Over rfc2217:// esptool drives DTR and RTS as on a DevKit: into download mode before the
write, and a hard reset into the new image after it.
"""

import os
import subprocess
import sys
import threading
from pathlib import Path

from esptool.bin_image import ELFSection, ESP32FirmwareImage

ESPTOOL = str(Path(sys.executable).parent / "esptool")
LINE_TIMEOUT_S = 30


def app_image(path):
    """Write a small valid ESP32 app image (one segment) to path."""
    image = ESP32FirmwareImage(append_digest=True)
    image.segments = [ELFSection(b".dram0.data", 0x3FFB0000, os.urandom(2048), 0)]
    image.entrypoint = 0x40080000
    path.write_bytes(image.save(None))


def read_line(process):
    """Return the next line vboard prints, failing after LINE_TIMEOUT_S instead of hanging."""
    lines = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(LINE_TIMEOUT_S)
    assert lines and lines[0], "vboard printed no line within %d s" % LINE_TIMEOUT_S
    return lines[0].strip()


def test_esptool_flash_then_repl(tmp_path):
    image = tmp_path / "micropython.bin"
    app_image(image)
    process = subprocess.Popen(
        [sys.executable, "-m", "baysense.cli", "vboard", "--dir", str(tmp_path / "b"), "--bootloader", "--rfc2217"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = read_line(process)
        assert first.startswith("port: rfc2217://127.0.0.1:")
        url = first.split(": ", 1)[1]

        result = subprocess.run(
            [ESPTOOL, "--port", url, "write-flash", "0x1000", str(image)],  # resets by DTR/RTS
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr

        repl = read_line(process)
        assert repl.startswith("repl: /dev/pts/")
        port = repl.split(": ", 1)[1]
        flash = (tmp_path / "b" / "flash.bin").read_bytes()
        assert flash[0x1000 : 0x1000 + image.stat().st_size] == image.read_bytes()

        mpremote = str(Path(sys.executable).parent / "mpremote")
        output = subprocess.run([mpremote, "connect", port, "exec", "print(6 * 7)"], capture_output=True, text=True, timeout=30)
        assert output.stdout.strip() == "42"
    finally:
        process.terminate()
        process.wait(10)
