"""baysense provision against a virtual board: identity, key, idempotence, rotation, secrecy."""

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from baysense import boards, provision
from baysense.cli import main
from baysense.deploy import deploy
from baysense.device import Device
from baysense.errors import ConfigError, DeviceError, DeviceException
from baysense.gateway.keys import KeyRing
from baysense.gateway.server import GatewayThread
from baysense.registry import Registry
from baysense.vboard.board import VirtualBoard
from node_harness import wait_for

MPREMOTE = str(Path(sys.executable).parent / "mpremote")
MPREMOTE_TIMEOUT_S = 30
GATEWAY = "127.0.0.1:5683"


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    virtual = VirtualBoard(tmp_path_factory.mktemp("provision"), boards.load("virtual")).start()
    yield virtual
    virtual.stop()


@pytest.fixture
def blank(board):
    (board.fs_dir / "config.json").unlink(missing_ok=True)
    return board


@pytest.fixture
def registry_file(tmp_path):
    return tmp_path / "registry.db"


def board_config(board):
    return json.loads((board.fs_dir / "config.json").read_text())


def registry_key(path, device_id):
    with Registry(path) as registry:
        row = registry.device(device_id)
        return bytes(row["key"]), row["key_version"]


def run_provision(board, registry_file, *extra, verbose=False):
    # -vv logs at DEBUG level, and also re-raises errors with their traceback.
    return main(
        ["-vv"] * verbose
        + [
            "provision",
            "--port",
            board.port,
            "--device-id",
            "bay-7",
            "--gateway",
            GATEWAY,
            "--registry",
            str(registry_file),
            "--no-reset",
            *extra,
        ]
    )


def test_created_then_unchanged(blank, registry_file):
    virtual = boards.load("virtual")
    with Registry(registry_file) as registry, Device(blank.port) as device:
        assert provision.provision(device, registry, "bay-7", GATEWAY, virtual) == "created"
        written = (blank.fs_dir / "config.json").stat().st_mtime_ns
        assert provision.provision(device, registry, "bay-7", GATEWAY, virtual) == "unchanged"
        assert (blank.fs_dir / "config.json").stat().st_mtime_ns == written

    key, version = registry_key(registry_file, "bay-7")
    assert len(key) == provision.KEY_SIZE
    assert version == 1
    config = board_config(blank)
    assert config["device_id"] == "bay-7"
    assert config["key"] == key.hex()
    assert config["gateway"] == GATEWAY
    assert config["board"] == virtual
    assert not (blank.fs_dir / "config.json.part").exists()


def test_rotation_changes_key_in_registry_board_and_gateway(blank, registry_file):
    virtual = boards.load("virtual")
    with Registry(registry_file) as registry, Device(blank.port) as device:
        provision.provision(device, registry, "bay-7", GATEWAY, virtual)
    old_key, _version = registry_key(registry_file, "bay-7")
    keyring = KeyRing(registry_file)
    try:
        assert keyring.keys["bay-7"][0] == old_key

        with Registry(registry_file) as registry, Device(blank.port) as device:
            outcome = provision.provision(device, registry, "bay-7", GATEWAY, virtual, rotate_key=True)
        assert outcome == "rotated"

        new_key, version = registry_key(registry_file, "bay-7")
        assert new_key != old_key
        assert version == 2
        assert board_config(blank)["key"] == new_key.hex()
        assert keyring.refresh() is True
        assert keyring.keys["bay-7"][0] == new_key
    finally:
        keyring.close()


def test_wiped_board_gets_a_new_key(blank, registry_file):
    # A wiped board restarts its frame counter at 1, which the gateway accepts only under a
    # new key: under the old one those frames would be replays.
    virtual = boards.load("virtual")
    with Registry(registry_file) as registry, Device(blank.port) as device:
        provision.provision(device, registry, "bay-7", GATEWAY, virtual)
        old_key, _version = registry_key(registry_file, "bay-7")
        (blank.fs_dir / "config.json").unlink()
        assert provision.provision(device, registry, "bay-7", GATEWAY, virtual) == "rotated"
    new_key, version = registry_key(registry_file, "bay-7")
    assert new_key != old_key
    assert version == 2
    assert board_config(blank)["key"] == new_key.hex()


def test_revoked_device_gets_a_new_key(blank, registry_file):
    virtual = boards.load("virtual")
    with Registry(registry_file) as registry, Device(blank.port) as device:
        provision.provision(device, registry, "bay-7", GATEWAY, virtual)
        old_key = bytes(registry.device("bay-7")["key"])
        registry.revoke("bay-7")
        assert provision.provision(device, registry, "bay-7", GATEWAY, virtual) == "rotated"
        row = registry.device("bay-7")
    assert bytes(row["key"]) != old_key
    assert row["revoked"] == 0
    assert board_config(blank)["key"] == bytes(row["key"]).hex()


def test_cli_never_shows_the_key(blank, registry_file, capsys, caplog, tmp_path):
    password_file = tmp_path / "wifi-password"
    password_file.write_text("hunter2-wifi\n")
    password_file.chmod(0o600)
    serial_log = blank.state_dir / "serial.log"
    serial_before = serial_log.stat().st_size
    logs = []

    class Recording(Device):
        def close(self):
            logs.append(bytes(self.log))
            super().close()

    with caplog.at_level(logging.DEBUG):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(provision, "Device", Recording)
            wifi = ["--wifi-ssid", "lot-3", "--wifi-password-file", str(password_file)]
            assert run_provision(blank, registry_file, *wifi, verbose=True) == 0
            assert run_provision(blank, registry_file, *wifi, "--rotate-key", verbose=True) == 0
            assert run_provision(blank, registry_file, *wifi, verbose=True) == 0
    captured = capsys.readouterr()

    assert captured.out.splitlines() == ["bay-7: created", "bay-7: rotated", "bay-7: unchanged"]
    with serial_log.open("rb") as handle:
        handle.seek(serial_before)
        serial_output = handle.read()
    key, version = registry_key(registry_file, "bay-7")
    assert version == 2
    assert board_config(blank)["key"] == key.hex()
    secrets_to_hide = [key.hex(), key.hex().upper(), repr(key), "hunter2-wifi"]
    assert len(logs) == 3
    for secret in secrets_to_hide:
        assert secret not in captured.out
        assert secret not in captured.err
        assert secret not in caplog.text
        assert secret.encode() not in serial_output
        for device_log in logs:
            assert secret.encode() not in device_log


def test_cli_wifi_password_from_environment(blank, registry_file, monkeypatch, capsys):
    monkeypatch.setenv("BAYSENSE_WIFI_PASSWORD", "from-environment")
    assert run_provision(blank, registry_file, "--wifi-ssid", "lot-3") == 0
    assert board_config(blank)["wifi"] == {"ssid": "lot-3", "password": "from-environment"}
    assert "from-environment" not in capsys.readouterr().out


def test_cli_rejects_password_on_command_line(blank, registry_file, capsys):
    assert run_provision(blank, registry_file, "--wifi-ssid", "lot-3", "--wifi-password", "secret") == 2
    assert "No such option" in capsys.readouterr().err
    assert not (blank.fs_dir / "config.json").exists()


def test_cli_without_password_source_fails(blank, registry_file, monkeypatch, capsys):
    monkeypatch.delenv("BAYSENSE_WIFI_PASSWORD", raising=False)
    assert run_provision(blank, registry_file, "--wifi-ssid", "lot-3") == 1
    assert "no Wi-Fi password given" in capsys.readouterr().err
    assert not (blank.fs_dir / "config.json").exists()


def test_cli_rejects_readable_registry(blank, registry_file, capsys):
    Registry(registry_file).close()
    registry_file.chmod(0o644)
    assert run_provision(blank, registry_file) == 1
    error = capsys.readouterr().err
    assert "readable by group or others" in error
    assert "chmod 600" in error
    assert not (blank.fs_dir / "config.json").exists()


@pytest.mark.parametrize(
    "device_id, gateway, message",
    [
        ("bad id", GATEWAY, "invalid device id 'bad id'"),
        ("-lead", GATEWAY, "invalid device id '-lead'"),
        ("x" * 33, GATEWAY, "invalid device id"),
        ("bay-1", "127.0.0.1", "invalid gateway address '127.0.0.1'"),
        ("bay-1", "127.0.0.1:0", "invalid gateway address"),
        ("bay-1", "127.0.0.1:70000", "invalid gateway address"),
    ],
)
def test_invalid_input_writes_nothing(blank, registry_file, device_id, gateway, message):
    with Registry(registry_file) as registry, Device(blank.port) as device:
        with pytest.raises(ConfigError, match=message):
            provision.provision(device, registry, device_id, gateway, boards.load("virtual"))
        assert registry.devices() == []
    assert not (blank.fs_dir / "config.json").exists()


def test_mpremote_reads_provisioned_config(blank, registry_file):
    with Registry(registry_file) as registry, Device(blank.port) as device:
        provision.provision(device, registry, "bay-7", GATEWAY, boards.load("virtual"))
    result = subprocess.run(
        [MPREMOTE, "connect", blank.port, "exec", "import json; print(json.load(open('/config.json'))['device_id'])"],
        capture_output=True,
        text=True,
        timeout=MPREMOTE_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "bay-7"


def test_gateway_address_checks():
    for bad in ("http://127.0.0.1:4700", "127.0.0.1:99999", "127.0.0.1:0", "localhost", ":4700"):
        with pytest.raises(ConfigError) as error:
            provision.check_gateway(bad)
        assert repr(bad) in str(error.value)
        assert "1 to 65535" in str(error.value)
    assert provision.check_gateway("gateway.local:4700") == "gateway.local:4700"


def test_gateway_scheme_names_fix():
    # The form the gateway prints on its listening: line.
    with pytest.raises(ConfigError) as error:
        provision.check_gateway("udp://127.0.0.1:4700")
    message = str(error.value)
    assert "invalid gateway address 'udp://127.0.0.1:4700': the node takes HOST:PORT without a scheme (udp://)" in message
    assert "write 127.0.0.1:4700;" in message


@pytest.mark.parametrize(
    "address, host, problem",
    [
        ("127.0.0.300:4700", "127.0.0.300", "is not an IPv4 address"),
        ("127.0.0.l:4700", "127.0.0.l", "is not an IPv4 address"),
        ("10.0.1:4700", "10.0.1", "is not an IPv4 address"),
        ("gate_way.local:4700", "gate_way.local", "is not a valid host name"),
        ("gateway..local:4700", "gateway..local", "is not a valid host name"),
        ("-gateway.local:4700", "-gateway.local", "is not a valid host name"),
        ("%s.local:4700" % ("a" * 64), "a" * 64 + ".local", "is not a valid host name"),
    ],
)
def test_gateway_host_checked_without_lookup(address, host, problem):
    with pytest.raises(ConfigError) as error:
        provision.check_gateway(address)
    message = str(error.value)
    assert "invalid gateway address %r: %r %s" % (address, host, problem) in message
    assert "for example 192.168.1.10:4700" in message


def test_gateway_valid_hosts_accepted():
    for address in ("192.168.1.10:4700", "localhost:4700", "gw-1.lot7.example:5683", "2001.example:4700"):
        assert provision.check_gateway(address) == address


def test_cli_invalid_gateway_writes_nothing(blank, registry_file, capsys):
    status = main(
        ["provision", "--port", blank.port, "--device-id", "bay-7", "--gateway", "127.0.0.300:4700",
         "--registry", str(registry_file), "--no-reset"]
    )
    assert status == 1
    assert "'127.0.0.300' is not an IPv4 address" in capsys.readouterr().err
    assert not (blank.fs_dir / "config.json").exists()
    with Registry(registry_file) as registry:
        assert registry.devices() == []


def test_cli_registry_in_missing_folder_rejected(blank, tmp_path, capsys):
    registry_file = tmp_path / "nosuch" / "registry.db"
    status = main(
        ["provision", "--port", blank.port, "--device-id", "bay-7", "--gateway", "127.0.0.1:4700",
         "--registry", str(registry_file), "--no-reset"]
    )
    error = capsys.readouterr().err
    assert status == 1
    assert "registry folder %s not found (registry %s)" % (registry_file.parent, registry_file) in error
    assert not registry_file.parent.exists()
    assert not (blank.fs_dir / "config.json").exists()


def test_cli_keeps_wifi_without_ssid(blank, registry_file, tmp_path, capsys, caplog):
    password_file = tmp_path / "wifi-password"
    password_file.write_text("hunter2-wifi\n")
    password_file.chmod(0o600)
    logs = []

    class Recording(Device):
        def close(self):
            logs.append(bytes(self.log))
            super().close()

    wifi = ["--wifi-ssid", "lot-3", "--wifi-password-file", str(password_file)]
    assert run_provision(blank, registry_file, *wifi) == 0
    key_before = board_config(blank)["key"]
    with caplog.at_level(logging.DEBUG), pytest.MonkeyPatch.context() as patch:
        patch.setattr(provision, "Device", Recording)
        assert run_provision(blank, registry_file, "--heartbeat", "45", verbose=True) == 0
        assert run_provision(blank, registry_file, "--heartbeat", "45", verbose=True) == 0
    captured = capsys.readouterr()

    assert captured.out.splitlines() == ["bay-7: created", "bay-7: updated", "bay-7: unchanged"]
    config = board_config(blank)
    assert config["wifi"] == {"ssid": "lot-3", "password": "hunter2-wifi"}
    assert config["heartbeat_s"] == 45
    assert config["key"] == key_before
    # The board read the password back to the host: it must not show in what the board printed.
    assert len(logs) == 2
    for device_log in logs:
        assert b"hunter2-wifi" not in device_log
        assert b"hunter2-wifi".hex().encode() not in device_log
    assert "hunter2-wifi" not in caplog.text


def test_cli_no_wifi_clears_settings(blank, registry_file, monkeypatch, capsys):
    monkeypatch.setenv("BAYSENSE_WIFI_PASSWORD", "from-environment")
    assert run_provision(blank, registry_file, "--wifi-ssid", "lot-3") == 0
    key_before = board_config(blank)["key"]

    assert run_provision(blank, registry_file, "--no-wifi") == 0

    assert capsys.readouterr().out.splitlines() == ["bay-7: created", "bay-7: updated"]
    assert board_config(blank)["wifi"] == {}
    assert board_config(blank)["key"] == key_before


def test_cli_wifi_ssid_and_no_wifi_conflict(blank, registry_file, capsys):
    assert run_provision(blank, registry_file, "--wifi-ssid", "lot-3", "--no-wifi") == 1
    error = capsys.readouterr().err
    assert "--wifi-ssid and --no-wifi both given" in error
    assert "pass --wifi-ssid to set the network, or --no-wifi to clear it" in error
    assert not (blank.fs_dir / "config.json").exists()


def test_invalid_board_config_stops_provision(blank, registry_file, capsys):
    # Without valid JSON on the board its Wi-Fi settings cannot be kept, so provision stops.
    (blank.fs_dir / "config.json").write_text("{not json")
    assert run_provision(blank, registry_file) == 1
    error = capsys.readouterr().err
    assert "the Wi-Fi settings in /config.json on %s are not valid JSON" % blank.port in error
    assert "--wifi-ssid" in error
    assert "--no-wifi" in error
    assert (blank.fs_dir / "config.json").read_text() == "{not json"
    with Registry(registry_file) as registry:
        assert registry.devices() == []

    assert run_provision(blank, registry_file, "--no-wifi") == 0
    assert board_config(blank)["wifi"] == {}


class FailingDevice(Device):
    """A Device whose config writes fail as a test sets: before or after the file is replaced.

    `write_failures` lists what each write_file() call does: "memory" raises the board's
    MemoryError before writing, "after" writes and then raises a timeout with a hint, "ok" writes.
    `unreadable` makes every sha256() after a failed write raise.
    """

    def __init__(self, port, write_failures, unreadable=False):
        super().__init__(port)
        self.write_failures = list(write_failures)
        self.unreadable = unreadable
        self.failed = False
        self.run_main = []  # the run_main argument of each soft_reset()

    def write_file(self, path, data, **options):
        failure = self.write_failures.pop(0) if self.write_failures else "ok"
        if failure == "memory":
            self.failed = True
            raise DeviceException("MemoryError", "memory allocation failed, allocating 4096 bytes", "")
        super().write_file(path, data, **options)
        if failure == "after":
            self.failed = True
            raise DeviceError("timed out after 5 s waiting for the output of the code on %s" % self.port, "reset the board and retry")

    def sha256(self, path):
        if self.failed and self.unreadable:
            raise DeviceError("timed out after 5 s waiting for the raw REPL on %s" % self.port, "reset the board")
        return super().sha256(path)

    def soft_reset(self, run_main=True):
        self.run_main.append(run_main)
        super().soft_reset(run_main)


def provision_once(board, registry_file, device, **options):
    with Registry(registry_file) as registry:
        return provision.provision(device, registry, "bay-7", GATEWAY, boards.load("virtual"), **options)


def test_failed_rotation_restores_previous_key(blank, registry_file):
    with Device(blank.port) as device:
        provision_once(blank, registry_file, device)
    old_key, _version = registry_key(registry_file, "bay-7")
    keyring = KeyRing(registry_file)
    try:
        with FailingDevice(blank.port, ["memory"]) as device:
            with pytest.raises(DeviceError) as raised:
                provision_once(blank, registry_file, device, rotate_key=True)
        message = str(raised.value)
        assert "writing /config.json to %s failed: MemoryError on the board" % blank.port in message
        assert "the registry has the previous key again, as the board has" in message
        assert "Run the same provision command again" in message

        key, version = registry_key(registry_file, "bay-7")
        assert key == old_key
        assert version == 1
        assert board_config(blank)["key"] == old_key.hex()
        keyring.refresh()
        assert keyring.keys["bay-7"][0] == old_key
    finally:
        keyring.close()


def test_failed_creation_leaves_no_device(blank, registry_file):
    with FailingDevice(blank.port, ["memory"]) as device:
        with pytest.raises(DeviceError) as raised:
            provision_once(blank, registry_file, device)
    message = str(raised.value)
    assert "the registry no longer lists the new device, and the board did not get its config" in message
    assert "Run the same provision command again" in message
    with Registry(registry_file) as registry:
        assert registry.devices() == []
    assert not (blank.fs_dir / "config.json").exists()


def test_rotation_failing_after_write_keeps_new_key(blank, registry_file):
    # The board replaced its config before the error: board and registry both have the new key.
    with Device(blank.port) as device:
        provision_once(blank, registry_file, device)
    old_key, _version = registry_key(registry_file, "bay-7")

    with FailingDevice(blank.port, ["after"]) as device:
        assert provision_once(blank, registry_file, device, rotate_key=True) == "rotated"

    key, version = registry_key(registry_file, "bay-7")
    assert key != old_key
    assert version == 2
    assert board_config(blank)["key"] == key.hex()


def test_rotation_unreadable_board_restores_registry(blank, registry_file):
    with Device(blank.port) as device:
        provision_once(blank, registry_file, device)
    old_key, _version = registry_key(registry_file, "bay-7")

    with FailingDevice(blank.port, ["after"], unreadable=True) as device:
        with pytest.raises(DeviceError) as raised:
            provision_once(blank, registry_file, device, rotate_key=True)

    message = str(raised.value)
    assert "writing /config.json to %s failed: timed out after 5 s" % blank.port in message
    assert "(reset the board and retry)" in message
    assert "the registry has the previous key again, but the board could not be read back" in message
    assert "may have the new one. Run the same provision command again" in message
    assert registry_key(registry_file, "bay-7") == (old_key, 1)
    # The next run writes the registry's key to the board, so both agree again.
    with Device(blank.port) as device:
        assert provision_once(blank, registry_file, device) == "updated"
    assert board_config(blank)["key"] == old_key.hex()
    assert registry_key(registry_file, "bay-7") == (old_key, 1)


def test_cli_failed_rotation_restarts_firmware(blank, registry_file, capsys, monkeypatch):
    assert run_provision(blank, registry_file) == 0
    old_key, _version = registry_key(registry_file, "bay-7")
    opened = []

    def failing_device(port):
        opened.append(FailingDevice(port, ["memory"]))
        return opened[-1]

    monkeypatch.setattr(provision, "Device", failing_device)
    status = main(
        ["provision", "--port", blank.port, "--device-id", "bay-7", "--gateway", GATEWAY,
         "--registry", str(registry_file), "--rotate-key"]
    )

    assert status == 1
    error = capsys.readouterr().err
    assert "writing /config.json to %s failed: MemoryError on the board" % blank.port in error
    assert "Run the same provision command again" in error
    # The firmware that provision stopped runs again.
    assert opened[0].run_main == [True]
    assert registry_key(registry_file, "bay-7") == (old_key, 1)
    assert board_config(blank)["key"] == old_key.hex()


def test_cli_board_the_firmware_rejects_writes_nothing(blank, registry_file, tmp_path, capsys):
    board = boards.load("virtual")
    board["detector"]["activity_samples"] = 1000
    board_file = tmp_path / "trial-bad.json"
    board_file.write_text(json.dumps(board))

    assert run_provision(blank, registry_file, "--board", str(board_file)) == 1

    error = capsys.readouterr().err
    assert "%s: the node's firmware would reject detector.activity_samples" % board_file in error
    assert "activity_samples 1000 is out of range" in error
    assert "set it to 2..64 in %s" % board_file in error
    assert not (blank.fs_dir / "config.json").exists()
    assert not registry_file.exists()


def test_cli_board_negative_delay_gives_range(blank, registry_file, tmp_path, capsys):
    board = boards.load("virtual")
    board["detector"]["on_delay_ms"] = -1
    board_file = tmp_path / "negative.json"
    board_file.write_text(json.dumps(board))

    assert run_provision(blank, registry_file, "--board", str(board_file)) == 1

    error = capsys.readouterr().err
    assert "%s: the node's firmware would reject detector.on_delay_ms (on_delay_ms -1 is out of range)" % board_file in error
    assert "set it to 0..86400000 in %s" % board_file in error
    assert not (blank.fs_dir / "config.json").exists()
    assert not registry_file.exists()


@pytest.fixture
def node_board(tmp_path):
    # A board with the firmware on it, which the self-test runs.
    virtual = VirtualBoard(tmp_path / "node", boards.load("virtual")).start()
    with Device(virtual.port) as device:
        deploy(device)
    yield virtual
    virtual.stop()


def test_cli_check_runs_selftest(node_board, registry_file, tmp_path, capsys):
    Registry(registry_file).close()
    with GatewayThread(tmp_path / "gateway.db", registry_file) as gateway:
        address = "127.0.0.1:%d" % gateway.address[1]
        status = main(
            ["provision", "--port", node_board.port, "--device-id", "bay-9", "--gateway", address,
             "--registry", str(registry_file), "--no-wifi", "--check"]
        )
    output = capsys.readouterr().out
    assert status == 0
    assert "bay-9: created" in output
    assert "bay-9: self-test passed: sensor" in output
    assert "gateway acknowledged heartbeat" in output


def test_cli_check_fails_without_gateway(node_board, registry_file, capsys):
    # No gateway listens on this port, so no heartbeat is acknowledged.
    status = main(
        ["provision", "--port", node_board.port, "--device-id", "bay-9", "--gateway", GATEWAY,
         "--registry", str(registry_file), "--no-wifi", "--check"]
    )
    captured = capsys.readouterr()
    assert status == 1
    assert "bay-9: created" in captured.out
    assert "the gateway did not acknowledge" in captured.err
    assert "check that a gateway listens at the address the board was provisioned with" in captured.err
    # The config stays, and the firmware was restarted with it.
    assert board_config(node_board)["gateway"] == GATEWAY
    log = node_board.state_dir / "serial.log"
    assert wait_for(lambda: b"node bay-9 firmware" in log.read_bytes())
