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
from baysense.device import BoardMemoryError, Device, _open_error, printed_tail
from baysense.errors import DeviceError, DeviceException
from baysense.transfer import DEFLATE_WBITS, WRITE_FRAME, deflate_frames, escape, file_frames, raw_frames, unescape
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


@given(st.binary(max_size=3 * WRITE_FRAME))
def test_raw_frames_fit_and_join(data):
    frames = raw_frames(data)
    assert all(len(frame) <= WRITE_FRAME for frame in frames)
    assert b"".join(unescape(frame) for frame in frames) == data


def test_raw_frames_all_escaped_bytes():
    data = b"\x03" * (WRITE_FRAME + 5)
    frames = raw_frames(data)
    assert [len(frame) for frame in frames] == [WRITE_FRAME, WRITE_FRAME, 2 * 5]
    assert b"".join(unescape(frame) for frame in frames) == data


def test_deflate_frames_split_incompressible_blocks():
    import zlib

    data = os.urandom(20000)
    frames = deflate_frames(data)
    assert all(len(frame) <= WRITE_FRAME for frame in frames)
    joined = b"".join(zlib.decompress(unescape(frame), -DEFLATE_WBITS) for frame in frames)
    assert joined == data


def test_file_frames_compress_only_when_it_pays():
    text = b"import time\nprint('bay', time.time())\n" * 200
    frames, wbits = file_frames(text, can_inflate=True)
    assert wbits == DEFLATE_WBITS
    assert sum(len(frame) for frame in frames) < len(text) / 4
    assert file_frames(text, can_inflate=False)[1] == 0
    assert file_frames(os.urandom(5000), can_inflate=True)[1] == 0
    assert file_frames(b"", can_inflate=True) == ([], 0)


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


@pytest.mark.parametrize("compress", [False, None])
@pytest.mark.parametrize("tail", [b"\x10", b"\x03", b"\x10\x03\x10"])
def test_write_escapes_at_frame_edge(device, board, tail, compress):
    # Without compression, the escape pair of the frame's last byte would not fit in it.
    data = b"a" * (WRITE_FRAME - 1) + tail + b"b" * 10
    device.write_file("/edge.bin", data, compress=compress)
    assert (board.fs_dir / "edge.bin").read_bytes() == data


def test_board_can_inflate(device):
    assert device.can_inflate() is True


@pytest.mark.parametrize("compress", [False, None])
def test_write_compressible_file(device, board, compress):
    data = (b"\x03\x10 firmware line %d\n" * 3000) % tuple(range(3000))
    device.write_file("/big.py", data, compress=compress)
    assert (board.fs_dir / "big.py").read_bytes() == data


def test_write_without_deflate_on_board(device, board):
    device._can_inflate = False  # as on a build without the deflate module
    data = b"same line\n" * 2000
    device.write_file("/plain.txt", data)
    assert (board.fs_dir / "plain.txt").read_bytes() == data
    device._can_inflate = None


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


def test_soft_reset_from_raw_repl_runs_main(tmp_path):
    virtual = VirtualBoard(tmp_path / "reset", boards.load("virtual")).start()
    try:
        (virtual.fs_dir / "main.py").write_text("print('main ran')\n")
        with Device(virtual.port) as device:
            device.exec("x = 1")
            device.soft_reset(run_main=True)
            assert [kind for kind, _when in virtual.resets] == ["soft"]
            assert device.eval("6 * 7") == 42
        assert b"main ran" in (virtual.state_dir / "serial.log").read_bytes()
    finally:
        virtual.stop()


# Fills the heap with 3000-byte blocks, then the room left with smaller ones, and frees every
# other 3000-byte block. Plenty of memory is then free, but no free run is large enough for
# 4096 bytes, whatever the heap held before (the board's paths and banner differ from run to
# run). This is how a node stopped with Ctrl-C leaves the heap: its modules and buffers stay,
# with small gaps between them.
FRAGMENT_HEAP = """import gc
_hold = []
_fill = []
try:
 while True:
  _hold.append(bytearray(3000))
except MemoryError:
 pass
for size in (1024, 256, 64, 16):
 try:
  while True:
   _fill.append(bytearray(size))
 except MemoryError:
  pass
for i in range(0, len(_hold), 2):
 _hold[i] = None
gc.collect()
"""


def test_transfers_free_a_fragmented_heap(tmp_path):
    virtual = VirtualBoard(tmp_path / "fragmented", boards.load("virtual")).start()
    try:
        data = os.urandom(6000)
        with Device(virtual.port) as device:
            device.exec(FRAGMENT_HEAP)
            with pytest.raises(DeviceException, match="MemoryError"):
                device.exec("bytearray(4096)")

            device.write_file("/probe.bin", data)
            assert (virtual.fs_dir / "probe.bin").read_bytes() == data
            assert not (virtual.fs_dir / "probe.bin.part").exists()

            device.exec(FRAGMENT_HEAP)
            assert device.read_file("/probe.bin") == data

            # The soft reset that freed the heap left the board in the raw REPL.
            assert device.in_raw_repl
            assert device.eval("'_hold' in globals()") is False
        assert [kind for kind, _when in virtual.resets] == ["soft", "soft"]
    finally:
        virtual.stop()


def test_memory_error_names_boot_py(tmp_path):
    virtual = VirtualBoard(tmp_path / "greedy-boot", boards.load("virtual")).start()
    try:
        old = b"OLD = 1\n" * 100
        (virtual.fs_dir / "module.py").write_bytes(old)
        # A boot.py that keeps a fragmented heap: the soft reset before a transfer runs it again.
        (virtual.fs_dir / "boot.py").write_text("import builtins\n" + FRAGMENT_HEAP + "builtins._hold = _hold\nbuiltins._fill = _fill\n")
        with Device(virtual.port) as device:
            with pytest.raises(BoardMemoryError) as raised:
                device.write_file("/module.py", os.urandom(6000), compress=False)

            message = str(raised.value)
            assert "MemoryError on the board: memory allocation failed, allocating 4096 bytes" in message
            assert "(while transferring /module.py)" in message
            assert "boot.py keeps too much memory: move that work to main.py, then retry" in message
            assert isinstance(raised.value, DeviceException)
            assert raised.value.exc_type == "MemoryError"
            assert device.eval("2 + 3") == 5

        assert (virtual.fs_dir / "module.py").read_bytes() == old
        assert not (virtual.fs_dir / "module.py.part").exists()
    finally:
        virtual.stop()


def test_printed_tail_names_empty_output():
    assert printed_tail(b"") == "The board printed nothing."
    assert printed_tail(bytearray(b"  \r\n")) == "The board printed nothing."


def test_printed_tail_decodes_the_end():
    assert printed_tail(b"MicroPython v1.24\r\n>>> ") == "The board printed: MicroPython v1.24\r\n>>>"
    assert printed_tail(b"ab" * 150, size=4) == "The board printed: abab"


def test_open_error_names_next_step():
    error = _open_error("socket://127.0.0.1:4999", OSError("Could not open port: [Errno 111] Connection refused"))
    assert "cannot open port socket://127.0.0.1:4999" in str(error)
    assert "nothing listens at socket://127.0.0.1:4999" in str(error)


def test_missing_port_names_vboard_and_environment():
    error = _open_error("/dev/pts/77", OSError("[Errno 2] could not open port /dev/pts/77: No such file or directory"))
    message = str(error)
    assert "port not found (/dev/pts/77)" in message
    assert "the `port:` line that `baysense vboard` printed" in message
    assert "$BAYSENSE_PORT" in message
