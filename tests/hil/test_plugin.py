"""The plugin's options and skips, in pytest sessions run inside this one."""

from pathlib import Path

import pytest

from baysense.errors import ConfigError
from baysense.hil.bench import Bench, BenchTooSmall
from baysense.hil.options import BoardSpec, bench_specs, parse_board

pytest_plugins = ["pytester"]


def test_board_option_parsing():
    assert parse_board("/dev/ttyUSB0") == BoardSpec("/dev/ttyUSB0")
    assert parse_board("/dev/ttyUSB0@esp32c3-qmc5883l") == BoardSpec("/dev/ttyUSB0", "esp32c3-qmc5883l")
    assert parse_board("virtual@virtual-presence") == BoardSpec("virtual", "virtual-presence")
    # An @ that names no board definition belongs to the port.
    assert parse_board("rfc2217://bench@host:4000") == BoardSpec("rfc2217://bench@host:4000")


def test_board_option_unknown_definition():
    for text in ("virtual@nosuch", "/dev/ttyUSB0@nosuch"):
        with pytest.raises(ConfigError) as raised:
            parse_board(text)
        assert str(raised.value).startswith("board definition not found (nosuch) in --board %s: use a .json path or one of:" % text)
        assert "virtual-magnetometer" in str(raised.value)


def test_board_option_typo_stops_run(pytester):
    pytester.makepyfile("def test_any(board):\n    pass\n")
    result = pytester.runpytest("--board", "virtual@nosuch")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: board definition not found (nosuch) in --board virtual@nosuch: use a .json path or one of: *"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_incomplete_firmware_copy_stops_run(pytester, tmp_path):
    import shutil

    from baysense.paths import FIRMWARE_DIR

    copy = tmp_path / "fw-nofield"
    shutil.copytree(FIRMWARE_DIR, copy)
    (copy / "field_decision.py").unlink()
    pytester.makepyfile("def test_one(board):\n    pass\n\ndef test_two(board):\n    pass\n")
    result = pytester.runpytest("--firmware", str(copy))

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    output = result.stdout.str() + result.stderr.str()
    assert output.count("ERROR: field_decision.py not found in %s (detector.py imports it)" % copy) == 1
    assert "Traceback" not in output


def test_bench_specs_sources():
    environ = {"BAYSENSE_BOARDS": "/dev/ttyUSB0, /dev/ttyUSB1@esp32c3-qmc5883l"}

    assert bench_specs([], None, environ) == [BoardSpec("/dev/ttyUSB0"), BoardSpec("/dev/ttyUSB1", "esp32c3-qmc5883l")]
    assert bench_specs(["virtual"], 2, environ) == [BoardSpec("virtual")] * 3
    assert bench_specs([], None, {}) == []
    with pytest.raises(ConfigError, match="negative"):
        bench_specs([], -1, {})


def test_hardware_test_skips_on_virtual_bench(pytester):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.hardware
        def test_needs_hardware(board):
            pass
        """
    )
    result = pytester.runpytest("-rs")

    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*needs a real board: pass --board PORT (or set BAYSENSE_BOARDS)*"])


def test_board_option_missing_port_stops_run(pytester):
    pytester.makepyfile("def test_any(board):\n    pass\n")
    missing = str(pytester.path / "ttyNONE")

    for text in ("%s@virtual" % missing, missing):
        result = pytester.runpytest("--board", text)

        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(["ERROR: port not found (%s) in --board %s: plug the board in and pass a device path*" % (missing, text)])
        assert "@DEFINITION" not in result.stderr.str()
        assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_board_option_regular_file_stops_run(pytester):
    pytester.makepyfile("def test_any(board):\n    pass\n")
    result = pytester.runpytest("--board", "%s@virtual" % (pytester.path / "test_board_option_regular_file_stops_run.py"))

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: *test_board_option_regular_file_stops_run.py in --board * is a regular file, not a serial port: *"])


def test_missing_port_in_environment_stops_run(pytester, monkeypatch):
    missing = str(pytester.path / "ttyNONE")
    monkeypatch.setenv("BAYSENSE_BOARDS", "%s@virtual" % missing)
    pytester.makepyfile("def test_plain():\n    pass\n\ndef test_one(board):\n    pass\n\ndef test_two(board):\n    pass\n")
    result = pytester.runpytest()

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    output = result.stdout.str() + result.stderr.str()
    assert output.count("ERROR: port not found (%s) in $BAYSENSE_BOARDS: plug the board in" % missing) == 1
    assert "Traceback" not in output
    assert "test_two" not in output  # the run stopped at the first test that needs a board


def test_definition_read_names_busy_port(make_vboard):
    import serial

    from baysense.hil.bench import _definition_on_board

    virtual = make_vboard("busy")
    with serial.Serial(virtual.port, exclusive=True):
        with pytest.raises(ConfigError) as raised:
            _definition_on_board(virtual.port)

    message = str(raised.value)
    assert message.startswith("cannot read the board definition on %s: port busy (%s): another program has it open" % (virtual.port, virtual.port))
    assert "@DEFINITION" not in message


def test_definition_read_checks_detector(make_vboard):
    import json

    from baysense import boards
    from baysense.hil.bench import _definition_on_board

    virtual = make_vboard("bad-detector")
    definition = boards.load("virtual")
    definition["detector"]["on_delay_ms"] = -1
    (virtual.fs_dir / "config.json").write_text(json.dumps({"board": definition}))

    with pytest.raises(ConfigError) as raised:
        _definition_on_board(virtual.port)
    message = str(raised.value)
    assert "the /config.json on %s" % virtual.port in message
    assert "on_delay_ms -1 is out of range" in message


def test_real_board_needs_reachable_gateway(pytester):
    # /dev/null exists, so the port check passes, and it is never opened: the bench is refused first.
    pytester.makepyfile("def test_any(board):\n    pass\n")
    result = pytester.runpytest("--board", "/dev/null@esp32-devkitc-hcsr04")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    output = result.stdout.str() + result.stderr.str()
    assert "ERROR: a real board cannot reach a gateway on 127.0.0.1: pass --gateway-listen" in output
    assert "Traceback" not in output


def test_real_bench_never_adds_virtual_boards(tmp_path):
    # The port is never opened and the gateway never started: the bench is too small first.
    # 192.0.2.1 is a documentation address, given only to pass the reachability check.
    bench = Bench([BoardSpec("/dev/ttyNONE", "esp32-devkitc-hcsr04")], tmp_path, gateway_host="192.0.2.1")
    try:
        with pytest.raises(BenchTooSmall, match="0 of the 1 board"):
            bench.acquire(1, "magnetometer")
        assert [board.kind for board in bench.boards] == ["ultrasonic"]
        assert not bench.gateway.running
    finally:
        bench.close()


def test_plain_tests_start_nothing(pytester):
    pytester.makepyfile("def test_plain():\n    assert True\n")
    result = pytester.runpytest("-p", "no:cacheprovider")

    result.assert_outcomes(passed=1)
    assert not list(pytester.path.rglob("gateway.db"))


def test_board_on_a_port_without_modem_lines(pytester, make_vboard, monkeypatch):
    # A virtual board run on its own, as `baysense vboard` does, passed by its port path: the
    # plugin treats it as a real board on a port without DTR/RTS.
    virtual = make_vboard("external")
    monkeypatch.setenv("BAYSENSE_WIFI_SSID", "bench")
    pytester.makepyfile(
        """
        def test_serial_target(board, gateway):
            assert not board.virtual
            assert board.power_cycle().reset_cause == 5  # machine.reset(): no EN line to pulse
            gateway.wait_for_heartbeat(board)

        def test_off_unreachable(board):
            board.transition("off")

        def test_bay_needs_controller(bay):
            pass
        """
    )
    power_on_test = "%s::test_power_cycle_reports_power_on" % (Path(__file__).parent / "test_states.py")
    result = pytester.runpytest("-rs", "--board", "%s@virtual" % virtual.port, ".", power_on_test)

    result.assert_outcomes(passed=1, skipped=3)
    result.stdout.fnmatch_lines(
        [
            "*has no DTR/RTS lines to hold EN or IO0, so the off state is out of reach*",
            "*needs a bench controller to move the car on a real bench: pass --bench-controller PORT*",
            "*has no DTR/RTS lines to pulse EN, so a power cycle there is machine.reset(),"
            " which reports reset cause 5 (SOFT_RESET), not 1 (PWRON_RESET)*",
        ]
    )
