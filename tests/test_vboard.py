"""The virtual board as a USB board: unmodified mpremote, REPL modes, resets, confinement."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from baysense.device import Device
from baysense.errors import DeviceException

MPREMOTE = str(Path(sys.executable).parent / "mpremote")
MPREMOTE_TIMEOUT_S = 30


def mpremote(port, *args):
    result = subprocess.run(
        [MPREMOTE, "connect", port, *args], capture_output=True, text=True, timeout=MPREMOTE_TIMEOUT_S
    )
    assert result.returncode == 0, "mpremote %s failed: %s %s" % (args, result.stdout, result.stderr)
    return result.stdout


def wait_for(condition, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for %s" % what)


def test_vboard_command_prints_port_first(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "baysense.cli", "vboard", "--dir", str(tmp_path / "b")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first = process.stdout.readline()
        assert first.startswith("port: /dev/pts/")
        port = first.split(": ", 1)[1].strip()
        assert "hello from the board" in mpremote(port, "exec", "print('hello from the board')")
    finally:
        process.terminate()
        process.wait(10)
    assert process.returncode == 0


def test_mpremote_file_commands(make_vboard, tmp_path):
    board = make_vboard()
    local = tmp_path / "payload.bin"
    data = bytes(range(256)) * 80  # 20 KB with every byte value
    local.write_bytes(data)

    mpremote(board.port, "cp", str(local), ":payload.bin")
    assert (board.fs_dir / "payload.bin").read_bytes() == data

    listing = mpremote(board.port, "ls")
    assert "20480 payload.bin" in listing  # sizes shown, as on an ESP32

    copy = tmp_path / "back.bin"
    mpremote(board.port, "cp", ":payload.bin", str(copy))
    assert copy.read_bytes() == data

    (board.fs_dir / "note.txt").write_text("parking\n")
    assert mpremote(board.port, "cat", "note.txt") == "parking\n"

    mpremote(board.port, "rm", "payload.bin")
    assert not (board.fs_dir / "payload.bin").exists()


def test_files_confined_to_board_folder(make_vboard):
    board = make_vboard()
    with Device(board.port) as device:
        with pytest.raises(DeviceException) as error:
            device.exec("open('/etc/hostname')")
        assert error.value.errno == 2
        device.exec("f = open('/../../escape.txt', 'w'); f.write('x'); f.close()")
        assert device.eval("__import__('os').listdir('/')") == ["escape.txt"]
    assert (board.fs_dir / "escape.txt").exists()
    assert not (board.state_dir.parent / "escape.txt").exists()


def test_esp32_identity(make_vboard):
    board = make_vboard()
    with Device(board.port) as device:
        assert device.eval("__import__('os').uname().sysname") == "esp32"
        assert device.eval("__import__('machine').reset_cause()") == 1  # PWRON_RESET
    log = (board.state_dir / "serial.log").read_bytes()
    assert b"rst:0x1 (POWERON_RESET)" in log
    assert b"Generic ESP32 module with ESP32" in log
    assert b"linux" not in log


def test_raw_repl_soft_reset_skips_main(make_vboard):
    board = make_vboard()
    (board.fs_dir / "main.py").write_text("import sys\nsys.modules['ran_main'] = 1\n")
    (board.fs_dir / "boot.py").write_text("import sys\nsys.modules['ran_boot'] = 1\n")
    with Device(board.port) as device:
        device.enter_raw_repl(soft_reset=True)
        assert device.eval("'ran_boot' in __import__('sys').modules") is True
        assert device.eval("'ran_main' in __import__('sys').modules") is False
    assert board.resets[-1][0] == "soft"
    assert b"MPY: soft reboot\r\n" in (board.state_dir / "serial.log").read_bytes()


def test_friendly_soft_reset_runs_main(make_vboard):
    board = make_vboard()
    (board.fs_dir / "main.py").write_text("print('main ran')\n")
    with Device(board.port) as device:
        device.soft_reset(run_main=True)
        device._read_until(b"main ran\r\n", 10, "main.py's output")


def test_ctrl_c_interrupts_running_main(make_vboard):
    board = make_vboard()
    (board.fs_dir / "main.py").write_text("import time\nprint('looping')\nwhile True:\n    time.sleep_ms(10)\n")
    with Device(board.port) as device:
        device.soft_reset(run_main=True)
        device._read_until(b"looping", 10, "main.py to start")
        device.interrupt()
        assert device.eval("1 + 1") == 2
    assert b"KeyboardInterrupt" in (board.state_dir / "serial.log").read_bytes()


def test_ctrl_c_interrupts_busy_loop(make_vboard):
    board = make_vboard()
    with Device(board.port) as device:
        device.enter_raw_repl()
        device._send_code(b"while True:\n    pass\n")
        time.sleep(0.3)
        device._write(b"\x03")
        device._read_until(b"KeyboardInterrupt", 10, "the interrupt")
        device._read_until(b">", 10, "the raw REPL prompt")
        assert device.eval("2 * 21") == 42
    assert board.resets == []


def test_power_cycle_boots_again(make_vboard):
    board = make_vboard()
    (board.fs_dir / "main.py").write_text("print('booted')\n")
    board.power_cycle()
    wait_for(lambda: board.resets and board.resets[-1][0] == "poweron", what="the power-on reset")
    log = board.state_dir / "serial.log"
    wait_for(lambda: b"booted" in log.read_bytes(), what="main.py after the power cut")


def test_machine_reset_is_software_reset(make_vboard):
    board = make_vboard()
    with Device(board.port) as device:
        device.hard_reset()
        wait_for(lambda: board.resets and board.resets[-1][0] == "hard", what="the reset")
        device.interrupt()
        assert device.eval("__import__('machine').reset_cause()") == 5  # SOFT_RESET, as for esp_restart()
    assert b"rst:0xc (SW_CPU_RESET)" in (board.state_dir / "serial.log").read_bytes()


def test_watchdog_resets_stalled_loop(make_vboard):
    board = make_vboard()
    (board.fs_dir / "main.py").write_text(
        "import machine, time\n"
        "if machine.reset_cause() != machine.WDT_RESET:\n"
        "    wdt = machine.WDT(timeout=500)\n"
        "    time.sleep(5)\n"
    )
    board.power_cycle()
    wait_for(lambda: board.resets and board.resets[-1][0] == "wdt", timeout=15, what="the watchdog reset")
    log = (board.state_dir / "serial.log").read_bytes()
    assert b"task_wdt: Task watchdog got triggered" in log
    assert b"rst:0x7 (TG0WDT_SYS_RESET)" in log


def test_stimulus_command_changes_world(make_vboard, capsys):
    from baysense.cli import main

    board = make_vboard()
    assert main(["stimulus", "--dir", str(board.state_dir), "distance_mm=900", "echo=false"]) == 0
    world = board.stimulus.read()
    assert world["distance_mm"] == 900
    assert world["echo"] is False

    assert main(["stimulus", "--dir", str(board.state_dir), "distance_mm=near"]) == 1
    assert "invalid value for distance_mm: 'near'" in capsys.readouterr().err
    assert board.stimulus.read()["distance_mm"] == 900  # the bad value changed nothing


def test_busy_port_named_in_error(make_vboard):
    import serial

    from baysense.errors import DeviceError

    board = make_vboard()
    with serial.Serial(board.port, exclusive=True):
        with pytest.raises(DeviceError) as error:
            Device(board.port)
    assert "port busy (%s)" % board.port in str(error.value)
    with Device(board.port) as device:  # free again once the other program closed it
        assert device.eval("1") == 1


# ---- stimulus and board definitions given bad input ----------------------------------------

BAD_STIMULUS = {
    "distance as text": ('distance_mm="900"', 'invalid stimulus value distance_mm="900": distance_mm must be a number in 0..65535'),
    "presence of two": ("presence=2", "invalid stimulus value presence=2: presence must be 0 or 1 (or true or false)"),
    "field of two axes": ("field=[1,2]", "invalid stimulus value field=[1, 2]: field must be a list of three numbers [x, y, z] in -32768..32767"),
    "edge rate above one": ("drop_edge_rate=1.5", "invalid stimulus value drop_edge_rate=1.5: drop_edge_rate must be a number in 0..1"),
    "positive rssi": ("rssi=20", "invalid stimulus value rssi=20: rssi must be an integer in -120..0"),
    "echo as number": ("echo=1", "invalid stimulus value echo=1: echo must be true or false"),
}


@pytest.fixture
def board_dir(tmp_path):
    # A stopped board's folder: the stimulus command only writes its sim/stimulus.json.
    (tmp_path / "sim").mkdir()
    return tmp_path


@pytest.mark.parametrize("setting, message", BAD_STIMULUS.values(), ids=BAD_STIMULUS.keys())
def test_stimulus_rejects_bad_value(board_dir, capsys, setting, message):
    from baysense.cli import main

    assert main(["stimulus", "--dir", str(board_dir), "distance_mm=900"]) == 0
    before = (board_dir / "sim" / "stimulus.json").read_text()
    capsys.readouterr()

    assert main(["stimulus", "--dir", str(board_dir), "link=false", setting]) == 1
    assert "baysense: %s\n" % message in capsys.readouterr().err
    assert (board_dir / "sim" / "stimulus.json").read_text() == before  # link=false was not written either


def test_stimulus_accepts_valid_values(board_dir, capsys):
    import json

    from baysense.cli import main

    settings = ["distance_mm=450.5", "presence=true", "field=[-32768,0,32767]", "drop_edge_rate=1", "rssi=-120"]
    assert main(["stimulus", "--dir", str(board_dir), *settings]) == 0
    world = json.loads((board_dir / "sim" / "stimulus.json").read_text())
    assert world["distance_mm"] == 450.5
    assert world["presence"] is True
    assert world["field"] == [-32768, 0, 32767]
    assert world["drop_edge_rate"] == 1
    assert world["rssi"] == -120
    assert world["echo"] is True  # a key not given keeps its value


def test_stimulus_schema_covers_world():
    from baysense.vboard.stimulus import DEFAULT_WORLD, WORLD_SCHEMA, check_world

    assert set(WORLD_SCHEMA) == set(DEFAULT_WORLD)
    check_world(DEFAULT_WORLD)  # the defaults themselves must pass


def test_stimulus_rejects_parent_folder(tmp_path, capsys):
    from baysense.cli import main

    (tmp_path / "bay1" / "sim").mkdir(parents=True)
    assert main(["stimulus", "--dir", str(tmp_path), "distance_mm=900"]) == 1
    error = capsys.readouterr().err
    assert "%s is not a virtual board's folder (it has no sim/ folder)" % tmp_path in error
    assert "pass the folder of the `dir:` line that `baysense vboard` printed" in error
    assert "Traceback" not in error
    assert list(tmp_path.iterdir()) == [tmp_path / "bay1"]  # no temporary file left behind
