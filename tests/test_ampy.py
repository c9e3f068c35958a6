"""Unmodified adafruit-ampy against a virtual board: ls, put, get, run, rm.

ampy uses the plain raw REPL (no raw-paste), soft-resets on every connection and then sends
Ctrl-C twice after a fixed 0.5 s, which is the timing these tests exercise.
"""

import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial

from baysense import boards
from baysense.vboard.board import VirtualBoard

AMPY = str(Path(sys.executable).parent / "ampy")
AMPY_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    virtual = VirtualBoard(tmp_path_factory.mktemp("ampy"), boards.load("virtual")).start()
    yield virtual
    virtual.stop()


def ampy(port, *args):
    result = subprocess.run([AMPY, "--port", port, *args], capture_output=True, text=True, timeout=AMPY_TIMEOUT_S)
    assert result.returncode == 0, "ampy %s failed: %s %s" % (args, result.stdout, result.stderr[-2000:])
    return result.stdout


def test_put_ls_get_rm(board, tmp_path):
    data = bytes(range(256)) * 30  # 7.5 KB with every byte value
    local = tmp_path / "payload.bin"
    local.write_bytes(data)

    ampy(board.port, "put", str(local), "/payload.bin")
    assert (board.fs_dir / "payload.bin").read_bytes() == data

    assert "/payload.bin" in ampy(board.port, "ls").split()

    copy = tmp_path / "copy.bin"
    ampy(board.port, "get", "/payload.bin", str(copy))
    assert copy.read_bytes() == data

    ampy(board.port, "rm", "/payload.bin")
    assert not (board.fs_dir / "payload.bin").exists()


def test_run_prints_output(board, tmp_path):
    script = tmp_path / "hello.py"
    script.write_text("import sys\nprint('ran on', sys.platform, 6 * 7)\n")
    assert "ran on" in ampy(board.port, "run", str(script))
    assert " 42" in ampy(board.port, "run", str(script))


def test_put_folder_and_ls_recursive(board, tmp_path):
    folder = tmp_path / "lib"
    folder.mkdir()
    (folder / "a.py").write_text("A = 1\n")
    ampy(board.port, "put", str(folder), "/lib")
    assert (board.fs_dir / "lib" / "a.py").read_text() == "A = 1\n"
    assert "/lib/a.py" in ampy(board.port, "ls", "-r", "/").split()


def test_reads_file_written_by_baysense(board, tmp_path):
    from baysense.device import Device

    data = bytes(range(256)) * 8
    with Device(board.port) as device:
        device.write_file("/from-baysense.bin", data)
    copy = tmp_path / "copy.bin"
    ampy(board.port, "get", "/from-baysense.bin", str(copy))
    assert copy.read_bytes() == data


def test_ctrl_c_at_raw_prompt_after_soft_reset(board):
    # ampy's timing: Ctrl-C may reach the restarted interpreter before it reads its stdin,
    # where an ESP32 only clears the raw REPL line and must not reboot again.
    with serial.Serial(board.port, 115200, timeout=0.05) as port:

        def read_until(ending, timeout=10.0):
            data = b""
            deadline = time.monotonic() + timeout
            while not data.endswith(ending) and time.monotonic() < deadline:
                data += port.read(1)
            return data

        port.write(b"\r\x03\x03")
        time.sleep(0.3)
        port.reset_input_buffer()
        port.write(b"\r\x01")
        read_until(b"raw REPL; CTRL-B to exit\r\n>")
        outputs = []
        for _attempt in range(6):
            port.write(b"\x04")
            read_until(b"soft reboot\r\n")
            read_until(b"raw REPL; CTRL-B to exit\r\n>")
            port.write(b"\x03")
            time.sleep(0.2)
            port.write(b"print(1)\x04")
            outputs.append(read_until(b"\x04>", 5))
        port.write(b"\x02")
    assert outputs == [b"OK1\r\n\x04\x04>"] * 6
