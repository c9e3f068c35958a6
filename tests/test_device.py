"""Device against a virtual board: exec, eval, files, the streamed write and a cut-off transfer."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from baysense import boards
from baysense.device import WRITE_FRAME, Device, escape, unescape
from baysense.errors import DeviceError, DeviceException
from baysense.vboard.board import VirtualBoard

MPREMOTE = str(Path(sys.executable).parent / "mpremote")
MPREMOTE_TIMEOUT_S = 30


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    virtual = VirtualBoard(tmp_path_factory.mktemp("device"), boards.load("virtual")).start()
    yield virtual
    virtual.stop()


@pytest.fixture
def device(board):
    with Device(board.port) as connected:
        yield connected


@given(st.binary(max_size=600))
def test_escape_round_trip(data):
    encoded = escape(data)
    assert unescape(encoded) == data
    assert b"\x03" not in encoded


def test_escape_keeps_other_bytes():
    data = bytes(byte for byte in range(256) if byte not in (0x03, 0x10))
    assert escape(data) == data


def test_exec_and_eval(device):
    assert device.exec("print(6 * 7)") == b"42\r\n"
    assert device.eval("[1, 'two', None]") == [1, "two", None]


def test_exec_raises_device_exception(device):
    with pytest.raises(DeviceException) as raised:
        device.exec("open('/no/such/file')")
    assert raised.value.exc_type == "OSError"
    assert raised.value.errno == 2
    assert device.eval("1 + 1") == 2


def test_write_files_every_byte_value(device, board):
    data = bytes(range(256)) * 50 + os.urandom(9000)
    device.write_files([("/every.bin", data), ("/empty.bin", b"")])
    assert (board.fs_dir / "every.bin").read_bytes() == data
    assert (board.fs_dir / "empty.bin").read_bytes() == b""
    assert not (board.fs_dir / "every.bin.part").exists()


@pytest.mark.parametrize("tail", [b"\x10", b"\x03", b"\x10\x03\x10"])
def test_write_escape_pair_across_frames(device, board, tail):
    # The escape pair for the last byte starts at the frame's last byte and ends in the next.
    data = b"a" * (WRITE_FRAME - 1) + tail + b"b" * 10
    device.write_file("/edge.bin", data)
    assert (board.fs_dir / "edge.bin").read_bytes() == data


def test_write_creates_folders(device, board):
    device.write_file("/lib/deep/module.py", b"X = 1\n")
    assert (board.fs_dir / "lib" / "deep" / "module.py").read_bytes() == b"X = 1\n"
    assert device.eval("__import__('os').stat('/lib/deep')[0] & 0x4000") == 0x4000


def test_write_into_file_as_folder_fails(device, board):
    device.write_file("/plain", b"not a folder")
    with pytest.raises(DeviceException) as raised:
        device.write_file("/plain/child.py", b"x")
    assert raised.value.exc_type == "OSError"
    # The receiver stopped before any data was sent, so the REPL is in step for the next call.
    assert device.eval("2 + 3") == 5


def test_read_file_sha256_and_remove(device, board):
    data = os.urandom(10000)
    device.write_file("/read.bin", data)
    assert device.read_file("/read.bin") == data
    assert device.sha256("/read.bin") == __import__("hashlib").sha256(data).hexdigest()
    assert device.sha256("/missing.bin") is None
    device.remove("/read.bin")
    assert not (board.fs_dir / "read.bin").exists()


def test_listdir_and_walk(device):
    device.makedirs("/walk/a/b")
    device.write_files([("/walk/one.txt", b"1"), ("/walk/a/b/two.txt", b"22")])
    names = {name: is_dir for name, is_dir, _size in device.listdir("/walk")}
    assert names == {"one.txt": False, "a": True}
    assert set(device.walk("/walk")) == {"/walk/one.txt", "/walk/a/b/two.txt"}


def test_mpremote_reads_what_device_wrote(device, board, tmp_path):
    data = bytes(range(256)) * 20
    device.write_file("/shared.bin", data)
    device.close()
    local = tmp_path / "copy.bin"
    result = subprocess.run(
        [MPREMOTE, "connect", board.port, "cp", ":/shared.bin", str(local)],
        capture_output=True,
        text=True,
        timeout=MPREMOTE_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr
    assert local.read_bytes() == data


def test_power_cut_during_write_keeps_old_file(tmp_path):
    # At 115200 baud the 60 KB file takes about 5 s, so the cut lands mid-transfer.
    virtual = VirtualBoard(tmp_path / "cut", boards.load("virtual"), baud=115200).start()
    try:
        old = b"OLD = 1\n" * 100
        with Device(virtual.port) as device:
            device.write_file("/module.py", old)
            new = os.urandom(60 * 1024)
            failures = []

            def write():
                try:
                    device.write_file("/module.py", new, timeout=2.0)
                except DeviceError as error:
                    failures.append(error)

            writer = threading.Thread(target=write)
            writer.start()
            time.sleep(1.5)
            virtual.power_cycle()
            writer.join(30)

            assert not writer.is_alive()
            assert len(failures) == 1
            assert (virtual.fs_dir / "module.py").read_bytes() == old
            part = virtual.fs_dir / "module.py.part"
            assert not part.exists() or len(part.read_bytes()) < len(new)

            # The same Device finds the rebooted board again and the next write completes.
            newer = os.urandom(2048)
            device.write_file("/module.py", newer)
            assert (virtual.fs_dir / "module.py").read_bytes() == newer
    finally:
        virtual.stop()
