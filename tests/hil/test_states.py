"""The board state machine, code and files on the board, and errors raised on it."""

import pytest

from baysense.errors import DeviceException
from baysense.hil.wait import ExpectationTimeout

# The start of the chip description esptool reads from each chip's bootloader.
CHIP_DESCRIPTIONS = {"esp32": "ESP32", "esp32s3": "ESP32-S3", "esp32c3": "ESP32-C3"}


def test_off_bootloader_firmware(board, hil_log_dir):
    board.transition("off")
    assert board.state == "off"

    board.transition("bootloader")
    assert board.state == "bootloader"
    assert board.bootloader_chip.startswith(CHIP_DESCRIPTIONS[board.definition["chip"]])

    boot = board.start_firmware()
    assert board.state == "firmware"
    assert boot.device_id == board.device_id
    assert board.eval("1 + 1") == 2
    assert board.state == "repl"

    logged = (hil_log_dir / "hil.log").read_text()
    for transition in ("firmware -> off", "off -> bootloader", "bootloader -> repl", "repl -> firmware", "firmware -> repl"):
        assert transition in logged


@pytest.mark.board_state("off")
def test_board_state_marker(board):
    assert board.state == "off"
    if board.virtual:
        assert board.port is None  # the process is stopped; a real board's port stays open, holding EN low


@pytest.mark.board_state("repl")
def test_device_error_raised_on_host(board):
    with pytest.raises(DeviceException) as raised:
        board.exec("import os\nos.remove('/no-such-file')")

    assert raised.value.exc_type == "OSError"
    assert raised.value.errno == 2
    assert "OSError" in raised.value.traceback_text


@pytest.mark.board_state("repl")
def test_files_round_trip(board):
    data = bytes(range(256)) * 20

    board.write_file("/hil-probe.bin", data)
    listed = {name for name, _is_dir, _size in board.listdir("/")}
    read_back = board.read_file("/hil-probe.bin")
    board.remove("/hil-probe.bin")

    assert "hil-probe.bin" in listed
    assert read_back == data
    assert "hil-probe.bin" not in {name for name, _is_dir, _size in board.listdir("/")}


def test_resets_report_their_cause(board, gateway):
    # After machine.reset() the esp32 port's machine.reset_cause() is 5, SOFT_RESET, because the
    # chip restarts through esp_restart(). HARD_RESET is 2.
    start = gateway.last_counter(board.device_id)

    assert board.hard_reset().reset_cause == 5
    gateway.wait_for_heartbeat(board, after=start, where=lambda fields: fields["reset_cause"] == 5)
    assert board.soft_reset().device_id == board.device_id
    assert "soft reboot" in board.output()


def test_power_cycle_reports_power_on(board, gateway):
    # Reset cause 1 is power-on; an EN reset counts as one.
    if board.power_on_reset_unsupported:
        pytest.skip(board.power_on_reset_unsupported)
    start = gateway.last_counter(board.device_id)

    assert board.power_cycle().reset_cause == 1
    gateway.wait_for_heartbeat(board, after=start, where=lambda fields: fields["reset_cause"] == 1)


def test_deploy_is_incremental(board):
    # The first deploy brings in anything edited in the firmware folder since the session began.
    board.deploy()
    assert board.deploy() == []
    assert board.state == "repl"


def test_failed_expectation_shows_output(board, hil_log_dir):
    with pytest.raises(ExpectationTimeout) as raised:
        board.expect(r"a line the node never prints", timeout_s=0.5)

    message = str(raised.value)
    assert "timed out after 0.5 s" in message
    assert "node %s firmware" % board.device_id in message
    assert str(hil_log_dir / ("serial-%s.log" % board.name)) in message
    assert (hil_log_dir / ("serial-%s.log" % board.name)).read_text().count("node %s firmware" % board.device_id) == 1
