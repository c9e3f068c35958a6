"""Port listing and --port resolution, over serial.tools.list_ports results built here."""

import json

import pytest
import serial.tools.list_ports
from serial.tools.list_ports_common import ListPortInfo

from baysense import ports
from baysense.cli import main
from baysense.errors import ConfigError


def port_info(device, vid=None, pid=None, serial_number=None, location=None, description="n/a"):
    info = ListPortInfo(device, skip_link_detection=True)
    info.vid = vid
    info.pid = pid
    info.serial_number = serial_number
    info.location = location
    info.description = description
    info.manufacturer = "maker" if vid is not None else None
    return info


DEVKITC = port_info("/dev/ttyUSB0", 0x10C4, 0xEA60, "0001A1", "1-1.2:1.0", "CP2102 USB to UART Bridge Controller")
S3 = port_info("/dev/ttyACM0", 0x303A, 0x1001, "F4:12:FA:00:00:01", "1-1.3:1.0", "USB JTAG/serial debug unit")
ARDUINO = port_info("/dev/ttyACM1", 0x2341, 0x0043, "ARD1", "1-1.4:1.0", "Arduino Uno")
BUILTIN = port_info("/dev/ttyS0")


@pytest.fixture
def plugged(monkeypatch):
    """Set the ports serial.tools.list_ports reports: plugged([info, ...])."""

    def plug(infos):
        monkeypatch.setattr(serial.tools.list_ports, "comports", lambda *args, **kwargs: list(infos))

    return plug


@pytest.mark.parametrize(
    "vid, pid, bridge",
    [
        (0x10C4, 0xEA60, "cp210x"),
        (0x1A86, 0x7523, "ch340"),
        (0x1A86, 0x55D4, "ch9102"),
        (0x0403, 0x6001, "ftdi"),
        (0x0403, 0x6010, "ftdi"),
        (0x0403, 0x6014, "ftdi"),
        (0x0403, 0x6015, "ftdi"),
        (0x303A, 0x1001, "espressif-native"),
        (0x303A, 0x0002, "espressif-native"),
        (0x2341, 0x0043, None),
        (0x0403, 0x1234, None),
        (None, None, None),
    ],
)
def test_bridge_of(vid, pid, bridge):
    assert ports.bridge_of(vid, pid) == bridge


def test_list_ports_fields(plugged):
    plugged([S3, BUILTIN, DEVKITC])
    listed = ports.list_ports()
    assert [port["device"] for port in listed] == ["/dev/ttyACM0", "/dev/ttyS0", "/dev/ttyUSB0"]
    s3 = listed[0]
    assert s3["vid_pid"] == "303a:1001"
    assert s3["serial_number"] == "F4:12:FA:00:00:01"
    assert s3["location"] == "1-1.3:1.0"
    assert s3["bridge"] == "espressif-native"
    assert listed[1]["vid_pid"] is None
    assert listed[1]["bridge"] is None


def test_resolve_plain_path_and_url(plugged):
    plugged([])
    assert ports.resolve_port("/dev/ttyUSB3") == "/dev/ttyUSB3"
    assert ports.resolve_port("socket://127.0.0.1:7000") == "socket://127.0.0.1:7000"


def test_resolve_from_environment(plugged, monkeypatch):
    plugged([DEVKITC])
    monkeypatch.setenv("BAYSENSE_PORT", "/dev/ttyUSB9")
    assert ports.resolve_port(None) == "/dev/ttyUSB9"
    monkeypatch.setenv("BAYSENSE_PORT", "auto")
    assert ports.resolve_port("") == "/dev/ttyUSB0"


def test_resolve_nothing_given(monkeypatch):
    monkeypatch.delenv("BAYSENSE_PORT", raising=False)
    with pytest.raises(ConfigError, match="no port given"):
        ports.resolve_port(None)


def test_auto_one_candidate(plugged):
    plugged([BUILTIN, ARDUINO, DEVKITC])
    assert ports.resolve_port("auto") == "/dev/ttyUSB0"


def test_auto_no_candidate_lists_ports(plugged):
    plugged([BUILTIN, ARDUINO])
    with pytest.raises(ConfigError) as raised:
        ports.resolve_port("auto")
    message = str(raised.value)
    assert "no port with an ESP32 USB bridge" in message
    assert "/dev/ttyACM1 (2341:0043, serial ARD1)" in message


def test_auto_many_candidates_lists_them(plugged):
    plugged([DEVKITC, ARDUINO, S3])
    with pytest.raises(ConfigError) as raised:
        ports.resolve_port("auto")
    message = str(raised.value)
    assert "found 2 ESP32 boards" in message
    assert "/dev/ttyUSB0 (10c4:ea60, serial 0001A1)" in message
    assert "/dev/ttyACM0 (303a:1001, serial F4:12:FA:00:00:01)" in message
    assert "ttyACM1" not in message
    assert "--port id:SERIAL" in message


def test_id_selects_by_serial_number(plugged):
    plugged([DEVKITC, S3, ARDUINO])
    assert ports.resolve_port("id:F4:12:FA:00:00:01") == "/dev/ttyACM0"
    assert ports.resolve_port("id:0001A1") == "/dev/ttyUSB0"


def test_id_not_found(plugged):
    plugged([DEVKITC])
    with pytest.raises(ConfigError, match="no serial port with USB serial number 'XYZ'"):
        ports.resolve_port("id:XYZ")
    with pytest.raises(ConfigError, match="empty USB serial number"):
        ports.resolve_port("id:")


def test_id_shared_by_two_channels(plugged):
    # A dual-channel FT2232 shows one serial number on both of its ports.
    plugged(
        [
            port_info("/dev/ttyUSB1", 0x0403, 0x6010, "FT1", "1-2:1.0"),
            port_info("/dev/ttyUSB2", 0x0403, 0x6010, "FT1", "1-2:1.1"),
        ]
    )
    with pytest.raises(ConfigError, match="2 serial ports have USB serial number 'FT1'"):
        ports.resolve_port("id:FT1")


def test_ports_command_table(plugged, capsys):
    plugged([DEVKITC, BUILTIN, S3])
    assert main(["ports"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["PORT", "VID:PID", "SERIAL", "LOCATION", "ESP32", "BRIDGE", "DESCRIPTION"]
    devkitc = next(line for line in lines if line.startswith("/dev/ttyUSB0"))
    for field in ("10c4:ea60", "0001A1", "1-1.2:1.0", "cp210x"):
        assert field in devkitc
    assert devkitc.endswith("CP2102 USB to UART Bridge Controller")
    builtin = next(line for line in lines if line.startswith("/dev/ttyS0"))
    assert builtin.split()[1:5] == ["-", "-", "-", "-"]


def test_ports_command_json(plugged, capsys):
    plugged([S3])
    assert main(["ports", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed == [
        {
            "device": "/dev/ttyACM0",
            "vid_pid": "303a:1001",
            "serial_number": "F4:12:FA:00:00:01",
            "location": "1-1.3:1.0",
            "description": "USB JTAG/serial debug unit",
            "manufacturer": "maker",
            "bridge": "espressif-native",
        }
    ]


def test_ports_command_none(plugged, capsys):
    plugged([])
    assert main(["ports"]) == 0
    assert "no serial ports found" in capsys.readouterr().out


def test_deploy_port_auto_error_reaches_cli(plugged, capsys):
    plugged([DEVKITC, S3])
    assert main(["deploy", "--port", "auto", "--dry-run"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("baysense: --port auto found 2 ESP32 boards")


# ---- port values that cannot work, caught before a port is opened --------------------------

BAD_PORTS = {
    "no port number": ("socket://127.0.0.1", "no host or TCP port number in --port socket://127.0.0.1: write it as socket://127.0.0.1:4000"),
    "no host": ("rfc2217://:4000", "no host or TCP port number in --port rfc2217://:4000"),
    "port too large": ("socket://127.0.0.1:99999", "invalid TCP port number in --port socket://127.0.0.1:99999: use a port from 1 to 65535"),
    "port zero": ("socket://127.0.0.1:0", "invalid TCP port number in --port socket://127.0.0.1:0"),
    "misspelt protocol": ("sockt://127.0.0.1:1", "unknown port protocol 'sockt' in --port sockt://127.0.0.1:1: use a device path such as /dev/ttyUSB0, or socket://"),
    "upper-case protocol": ("SOCKET://127.0.0.1:1", "unknown port protocol 'SOCKET'"),
}


@pytest.mark.parametrize("spec, message", BAD_PORTS.values(), ids=BAD_PORTS.keys())
def test_resolve_rejects_bad_url(spec, message):
    with pytest.raises(ConfigError) as raised:
        ports.resolve_port(spec)
    assert message in str(raised.value)


def test_unknown_protocol_lists_known():
    with pytest.raises(ConfigError) as raised:
        ports.resolve_port("sockt://127.0.0.1:1")
    assert "pyserial protocols: " in str(raised.value)
    assert "rfc2217" in str(raised.value)
    assert "socket" in str(raised.value)


def test_resolve_keeps_valid_urls():
    for spec in ("socket://127.0.0.1:1", "rfc2217://localhost:65535", "loop://", "socket://[::1]:4000"):
        assert ports.resolve_port(spec) == spec


def test_resolve_rejects_folder_and_file(tmp_path):
    with pytest.raises(ConfigError) as raised:
        ports.resolve_port(str(tmp_path))
    assert "--port %s is a folder, not a serial port" % tmp_path in str(raised.value)
    assert "/dev/ttyUSB0 (see `baysense ports`)" in str(raised.value)

    regular = tmp_path / "notes.txt"
    regular.write_text("")
    with pytest.raises(ConfigError) as raised:
        ports.resolve_port(str(regular))
    assert "--port %s is a regular file, not a serial port" % regular in str(raised.value)


def test_deploy_missing_port_number_reaches_cli(capsys):
    assert main(["deploy", "--port", "socket://127.0.0.1", "--dry-run"]) == 1
    error = capsys.readouterr().err
    assert error == (
        "baysense: no host or TCP port number in --port socket://127.0.0.1: write it as "
        "socket://127.0.0.1:4000 or rfc2217://127.0.0.1:4000\n"
    )


def test_open_error_hints_from_pyserial():
    # The texts come from pyserial itself, opening a closed TCP port and a non-tty device.
    import socket

    import serial

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = "socket://127.0.0.1:%d" % probe.getsockname()[1]
    with pytest.raises(serial.SerialException) as refused:
        serial.serial_for_url(closed, timeout=0.05)
    hint = ports.open_error_hint(closed, str(refused.value))
    assert hint.startswith("nothing listens at %s: start the virtual board" % closed)

    with pytest.raises(serial.SerialException) as not_tty:
        serial.serial_for_url("/dev/null", timeout=0.05)
    hint = ports.open_error_hint("/dev/null", str(not_tty.value))
    assert hint == "/dev/null is not a serial port: pass the board's device path, such as /dev/ttyUSB0 (see `baysense ports`)"

    assert ports.open_error_hint("/dev/ttyUSB0", "some other failure") is None
