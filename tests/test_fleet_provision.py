"""`baysense fleet provision` on virtual boards against a real gateway, resumed after interrupts."""

import json
import os
import sqlite3
import shutil
import signal
import stat
import subprocess
import sys
import time

import pytest
from esptool.bin_image import ELFSection, ESP32FirmwareImage

from baysense import boards
from baysense.cli import main
from baysense.fleet import manifest as manifest_module
from baysense.fleet.progress import INTERRUPTED, OK, SITE, Progress
from baysense.fleet.runner import Options, Run, esp32_ports, exit_status
from baysense.errors import DeviceError
from baysense.fleet.steps import NODE_START_TIMEOUT_S, wait_for_output
from baysense.gateway.server import GatewayThread
from baysense.paths import FIRMWARE_DIR
from baysense.registry import Registry
from baysense.rom.server import BackgroundServer
from baysense.vboard.board import VirtualBoard
from baysense.zerotier.fake import FakeCentral, FakeZeroTierOne

BOARD_COUNT = 3
MISSING_PORT = "/dev/baysense-no-such-port"
# Seconds to wait for the nodes' own heartbeats after the run restarted them.
HEARTBEAT_WAIT_S = 10
ZT_TOKEN = "fleetTESTtoken0000000001"
ZT_NETWORK = "1a2b3c4d5e000042"
ZT_CENTRAL_NETWORK = "8056c2e21c000042"
GATEWAY_MEMBER = "0badc0ffee"
SLOW_BAUD = 38400
ESP32_DRAM = 0x3FFB0000
ESP32_IMAGE_OFFSET = 0x1000


@pytest.fixture(scope="module")
def firmware(tmp_path_factory):
    """A copy of the node firmware, so edits in the checkout during a test do not change its inputs."""
    snapshot = tmp_path_factory.mktemp("firmware")
    shutil.copytree(FIRMWARE_DIR, snapshot, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    return snapshot


@pytest.fixture
def virtual_boards(tmp_path):
    board = boards.load("virtual")
    started = []
    try:
        for index in range(BOARD_COUNT):
            started.append(VirtualBoard(tmp_path / ("board%d" % index), board).start())
        yield started
    finally:
        for virtual in started:
            virtual.stop()


@pytest.fixture
def registry_path(tmp_path):
    path = tmp_path / "registry.db"
    Registry(path).close()
    return path


@pytest.fixture
def gateway(tmp_path, registry_path):
    with GatewayThread(tmp_path / "gateway.db", registry_path) as thread:
        yield thread


def write_manifest(tmp_path, gateway, ports, extra="", community="lot-7", heartbeat_s=60, name="site.toml"):
    bays = "".join('[[bays]]\nid = "b%d"\nport = "%s"\n\n' % (index + 1, port) for index, port in enumerate(ports))
    text = 'community = "%s"\ngateway = "%s:%d"\nboard = "virtual"\nheartbeat_s = %d\n%s\n\n%s' % (
        community, gateway.address[0], gateway.address[1], heartbeat_s, extra, bays)
    path = tmp_path / name
    path.write_text(text)
    return path


def provision_json(capsys, manifest_path, registry_path, firmware, *more):
    command = ["fleet", "provision", str(manifest_path), "--registry", str(registry_path), "--firmware-dir", str(firmware)]
    status = main([*command, "--json", *more])
    report = json.loads(capsys.readouterr().out)
    return status, {bay["bay"]: bay for bay in report["bays"]}, report


def health_device_ids(gateway_db):
    with sqlite3.connect(gateway_db) as db:
        return {row[0] for row in db.execute("SELECT device_id FROM health")}


def test_provision_three_boards_then_skip(firmware, tmp_path, virtual_boards, gateway, registry_path, capsys):
    path = write_manifest(tmp_path, gateway, [virtual.port for virtual in virtual_boards])

    status, bays, report = provision_json(capsys, path, registry_path, firmware)

    assert status == 0
    assert report["status"] == 0
    assert [bays[bay]["result"] for bay in ("b1", "b2", "b3")] == [OK, OK, OK], report
    assert "gateway ack" in bays["b1"]["detail"]
    with Registry(registry_path) as registry:
        assert {row["device_id"]: row["bay"] for row in registry.devices()} == {"b1": "b1", "b2": "b2", "b3": "b3"}
        key = bytes(registry.device("b1")["key"])
    log_file = tmp_path / "site-logs" / "b1.log"
    assert stat.S_IMODE(log_file.stat().st_mode) == 0o600
    assert "selftest: ok" in log_file.read_text()
    assert key.hex() not in log_file.read_text()
    assert key.hex() not in json.dumps(report)

    # The restarted nodes report on their own.
    deadline = time.monotonic() + HEARTBEAT_WAIT_S
    while health_device_ids(tmp_path / "gateway.db") != {"b1", "b2", "b3"} and time.monotonic() < deadline:
        time.sleep(0.1)
    assert health_device_ids(tmp_path / "gateway.db") == {"b1", "b2", "b3"}

    started = time.monotonic()
    status, bays, _ = provision_json(capsys, path, registry_path, firmware)

    assert status == 0
    assert {bay["result"] for bay in bays.values()} == {"skipped"}
    assert time.monotonic() - started < 2  # done bays touch no board


def test_failing_port_does_not_stop_others(firmware, tmp_path, virtual_boards, gateway, registry_path, capsys):
    ports = [virtual_boards[0].port, MISSING_PORT, virtual_boards[1].port]
    path = write_manifest(tmp_path, gateway, ports)

    status, bays, _ = provision_json(capsys, path, registry_path, firmware)

    assert status == 1
    assert bays["b1"]["result"] == OK, bays["b1"]["detail"]
    assert bays["b3"]["result"] == OK, bays["b3"]["detail"]
    assert bays["b2"]["result"] == "failed"
    assert "port not found (%s)" % MISSING_PORT in bays["b2"]["detail"]


def test_failure_reason_in_summary(firmware, tmp_path, virtual_boards, gateway, registry_path, capsys):
    path = write_manifest(tmp_path, gateway, [virtual_boards[0].port, MISSING_PORT])

    status = main(["fleet", "provision", str(path), "--registry", str(registry_path), "--firmware-dir", str(firmware)])

    output = capsys.readouterr()
    assert status == 1
    assert "failed b2 (%s)" % MISSING_PORT in output.out
    assert "port not found" in output.out
    assert "b1\t%s\trestart\tok" % virtual_boards[0].port in output.err  # one line per step off a terminal


def test_interrupt_then_resume(firmware, tmp_path, virtual_boards, gateway, registry_path):
    path = write_manifest(tmp_path, gateway, [virtual.port for virtual in virtual_boards])
    manifest = manifest_module.load(path)

    def interrupt(bay_id, step):
        if bay_id == "b2" and step == "selftest":
            raise KeyboardInterrupt

    outcomes = Run(manifest, registry_path, Options(firmware_dir=firmware, before_step=interrupt)).execute()

    assert exit_status(outcomes) == 130
    by_bay = {outcome.bay: outcome for outcome in outcomes}
    assert by_bay["b2"].result == INTERRUPTED
    assert by_bay["b2"].step == "selftest"
    with Registry(registry_path) as registry:
        steps = Progress(registry, "lot-7").steps("b2")
        assert steps["provision"]["result"] == OK
        assert steps["selftest"]["result"] == INTERRUPTED
        assert "restart" not in steps

    outcomes = Run(manifest, registry_path, Options(firmware_dir=firmware)).execute()

    assert exit_status(outcomes) == 0
    assert {outcome.result for outcome in outcomes} <= {OK, "skipped"}
    resumed = (tmp_path / "site-logs" / "b2.log").read_text()
    assert "steps selftest, restart" in resumed
    with Registry(registry_path) as registry:
        steps = Progress(registry, "lot-7").steps("b2")
        assert {step: row["result"] for step, row in steps.items()} == {
            "deploy": OK, "provision": OK, "selftest": OK, "restart": OK}


def test_changed_input_redoes_later_steps(firmware, tmp_path, virtual_boards, gateway, registry_path):
    path = write_manifest(tmp_path, gateway, [virtual_boards[0].port], heartbeat_s=60)
    assert exit_status(Run(manifest_module.load(path), registry_path, Options(firmware_dir=firmware)).execute()) == 0

    path = write_manifest(tmp_path, gateway, [virtual_boards[0].port], heartbeat_s=30)
    outcomes = Run(manifest_module.load(path), registry_path, Options(firmware_dir=firmware)).execute()

    assert exit_status(outcomes) == 0
    assert outcomes[0].result == OK
    log_text = (tmp_path / "site-logs" / "b1.log").read_text()
    assert "steps provision, selftest, restart" in log_text
    assert "provision: ok" in log_text
    assert "device b1 updated" in log_text


def test_auto_bays_take_boards_in_order(firmware, tmp_path, virtual_boards, gateway, registry_path):
    path = write_manifest(tmp_path, gateway, ["auto", "auto"])
    manifest = manifest_module.load(path)
    plugged = []

    def port_source():
        return list(plugged)

    def interrupt_second(bay_id, step):
        if bay_id == "b2" and step == "selftest":
            raise KeyboardInterrupt

    # In the first run board 1 is listed before board 0, and b2 is interrupted.
    plugged.extend([virtual_boards[1].port, virtual_boards[0].port])
    outcomes = Run(manifest, registry_path, Options(firmware_dir=firmware, port_source=port_source, before_step=interrupt_second, auto_wait_s=5)).execute()
    by_bay = {outcome.bay: outcome for outcome in outcomes}
    assert by_bay["b1"].port == virtual_boards[1].port
    assert by_bay["b2"].port == virtual_boards[0].port
    assert exit_status(outcomes) == 130

    # Re-run with the boards seen in the other order: board 0 carries b2's id and gets b2 back.
    plugged.reverse()
    outcomes = Run(manifest, registry_path, Options(firmware_dir=firmware, port_source=port_source, auto_wait_s=5)).execute()
    by_bay = {outcome.bay: outcome for outcome in outcomes}
    assert exit_status(outcomes) == 0
    assert by_bay["b2"].port == virtual_boards[0].port
    assert by_bay["b2"].result == OK


def test_auto_bay_without_board_fails(firmware, tmp_path, virtual_boards, gateway, registry_path):
    path = write_manifest(tmp_path, gateway, [virtual_boards[0].port, "auto"])

    outcomes = Run(manifest_module.load(path), registry_path, Options(firmware_dir=firmware, port_source=list, auto_wait_s=0.2)).execute()

    by_bay = {outcome.bay: outcome for outcome in outcomes}
    assert exit_status(outcomes) == 1
    assert by_bay["b1"].result == OK
    assert by_bay["b2"].result == "failed"
    assert "no ESP32 board was plugged in" in by_bay["b2"].detail


def token_file(tmp_path):
    path = tmp_path / "zt.token"
    path.write_text(ZT_TOKEN)
    os.chmod(path, 0o600)
    return path


def test_zerotier_controller_authorizes_gateway(firmware, tmp_path, virtual_boards, gateway, registry_path, capsys):
    with FakeZeroTierOne(ZT_TOKEN) as controller:
        controller.host_network(ZT_NETWORK, name="lot-7")
        extra = '[zerotier]\nnetwork = "%s"\nmember = "%s"\napi = "controller"\nurl = "%s"\ntoken_file = "zt.token"\n' % (
            ZT_NETWORK, GATEWAY_MEMBER, controller.url)
        token_file(tmp_path)
        path = write_manifest(tmp_path, gateway, [virtual_boards[0].port], extra=extra)

        status, bays, _ = provision_json(capsys, path, registry_path, firmware)

        assert status == 0
        assert bays[SITE]["result"] == OK
        member = controller.controller_member(ZT_NETWORK, GATEWAY_MEMBER)
        assert member["authorized"] is True
        assert member["name"] == "baysense gateway lot-7"
        posts = [request for request in controller.requests if request.method == "POST"]
        assert len(posts) == 1

        status, bays, _ = provision_json(capsys, path, registry_path, firmware)

        assert status == 0
        assert bays[SITE]["result"] == "skipped"
        assert len([request for request in controller.requests if request.method == "POST"]) == 1


def test_zerotier_central_failure_keeps_boards(firmware, tmp_path, virtual_boards, gateway, registry_path, capsys, monkeypatch):
    with FakeCentral(ZT_TOKEN) as central:
        central.add_network(ZT_CENTRAL_NETWORK, name="lot-7")
        extra = '[zerotier]\nnetwork = "%s"\nmember = "%s"\napi = "central"\nurl = "%s"\n' % (
            ZT_CENTRAL_NETWORK, GATEWAY_MEMBER, central.url)
        path = write_manifest(tmp_path, gateway, [virtual_boards[0].port], extra=extra)
        monkeypatch.delenv("BAYSENSE_ZT_CENTRAL_TOKEN_FILE", raising=False)
        monkeypatch.setenv("ZEROTIER_CENTRAL_TOKEN", "wrongTOKEN000000000000001")

        status, bays, _ = provision_json(capsys, path, registry_path, firmware)

        assert status == 1
        assert bays[SITE]["result"] == "failed"
        assert bays["b1"]["result"] == OK
        assert central.member(ZT_CENTRAL_NETWORK, GATEWAY_MEMBER) is None

        monkeypatch.setenv("ZEROTIER_CENTRAL_TOKEN", ZT_TOKEN)
        status, bays, _ = provision_json(capsys, path, registry_path, firmware)

        assert status == 0
        assert bays[SITE]["result"] == OK
        assert bays["b1"]["result"] == "skipped"
        member = central.member(ZT_CENTRAL_NETWORK, GATEWAY_MEMBER)
        assert member["config"]["authorized"] is True
        assert member["description"] == "Baysense gateway of lot-7, UDP %s:%d" % gateway.address


def test_sigint_then_resume(firmware, tmp_path, gateway, registry_path):
    # Boards paced at 38400 bit/s, so the deploy step (about 25 KB) runs for seconds and is still
    # running when SIGINT arrives, even on a loaded machine.
    board = boards.load("virtual")
    paced = [VirtualBoard(tmp_path / ("paced%d" % index), board, baud=SLOW_BAUD).start() for index in range(2)]
    try:
        path = write_manifest(tmp_path, gateway, [virtual.port for virtual in paced])
        # A shell starts background jobs with SIGINT ignored and children inherit that, so the
        # command sets Python's own handler first, as an interactive start would have it.
        launcher = "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); " \
                   "from baysense.cli import main; sys.exit(main())"
        command = [sys.executable, "-c", launcher, "fleet", "provision", str(path), "--registry", str(registry_path),
                   "--firmware-dir", str(firmware)]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = []
        for line in process.stderr:
            lines.append(line)
            if "\tdeploy\trunning" in line:
                process.send_signal(signal.SIGINT)
                break
        rest, _ = process.communicate(timeout=60)
        assert process.returncode == 130, "".join(lines) + rest

        with Registry(registry_path) as registry:
            progress = Progress(registry, "lot-7")
            assert {progress.steps(bay).get("restart") for bay in ("b1", "b2")} == {None}

        finished = subprocess.run(command, capture_output=True, text=True, timeout=120)

        assert finished.returncode == 0, finished.stderr
        with Registry(registry_path) as registry:
            progress = Progress(registry, "lot-7")
            for bay in ("b1", "b2"):
                assert {row["result"] for row in progress.steps(bay).values()} == {OK}
    finally:
        for virtual in paced:
            virtual.stop()


def write_esp32_image(path, fill):
    image = ESP32FirmwareImage()
    image.segments = [ELFSection(b".dram0.data", ESP32_DRAM, os.urandom(8 * 1024) + bytes([fill]) * 8 * 1024, 0)]
    image.entrypoint = 0x40080000
    data = image.save(None)
    path.write_bytes(data)
    return data


def test_flash_step_then_changed_image(firmware, tmp_path, virtual_boards, gateway, registry_path, capsys):
    flash_file = tmp_path / "flash.bin"
    image = write_esp32_image(tmp_path / "micropython.bin", 0x11)
    with BackgroundServer(flash_file, "esp32", flash_size=4 * 1024 * 1024) as rom:
        path = write_manifest(tmp_path, gateway, [virtual_boards[0].port],
                              extra='[firmware]\nimage = "micropython.bin"\nflash = true\n')
        path.write_text(path.read_text() + 'flash_port = "%s"\n' % rom.url)

        status, bays, _ = provision_json(capsys, path, registry_path, firmware)

        assert status == 0, bays["b1"]["detail"]
        with open(flash_file, "rb") as handle:
            handle.seek(ESP32_IMAGE_OFFSET)
            assert handle.read(len(image)) == image
        log_text = (tmp_path / "site-logs" / "b1.log").read_text()
        assert "steps flash, deploy, provision, selftest, restart" in log_text
        assert "md5 verified" in log_text

        # A new image redoes the flash and every step after it; --no-flash leaves the flash alone.
        write_esp32_image(tmp_path / "micropython.bin", 0x22)
        status, bays, _ = provision_json(capsys, path, registry_path, firmware)

        assert status == 0, bays["b1"]["detail"]
        log_text = (tmp_path / "site-logs" / "b1.log").read_text()
        assert log_text.count("steps flash, deploy, provision, selftest, restart") == 2

        status, bays, _ = provision_json(capsys, path, registry_path, firmware, "--no-flash")

        assert status == 0
        assert bays["b1"]["result"] == "skipped"
        log_text = (tmp_path / "site-logs" / "b1.log").read_text()
        assert log_text.count("steps flash") == 2


def test_wifi_password_file_must_be_private(firmware, tmp_path, gateway, registry_path, capsys):
    secret = tmp_path / "wifi.secret"
    secret.write_text("hunter22\n")
    os.chmod(secret, 0o644)
    path = write_manifest(tmp_path, gateway, [MISSING_PORT], extra='[wifi]\nssid = "lot-net"\npassword_file = "wifi.secret"\n')

    status = main(["fleet", "provision", str(path), "--registry", str(registry_path), "--firmware-dir", str(firmware)])

    error = capsys.readouterr().err
    assert status == 1
    assert "readable by group or others" in error
    assert "run `chmod 600 %s`" % secret in error
    assert "hunter22" not in error


def test_wifi_password_reaches_board(firmware, tmp_path, virtual_boards, gateway, registry_path, capsys):
    secret = tmp_path / "wifi.secret"
    secret.write_text("hunter22\n")
    os.chmod(secret, 0o600)
    path = write_manifest(tmp_path, gateway, [virtual_boards[0].port],
                          extra='[wifi]\nssid = "lot-net"\npassword_file = "wifi.secret"\n')

    status, bays, _ = provision_json(capsys, path, registry_path, firmware)

    assert status == 0, bays["b1"]["detail"]
    config = json.loads((virtual_boards[0].fs_dir / "config.json").read_text())
    assert config["wifi"] == {"ssid": "lot-net", "password": "hunter22"}
    assert "hunter22" not in (tmp_path / "site-logs" / "b1.log").read_text()

    # A manifest without [wifi] keeps the board's Wi-Fi settings and changes the rest.
    path = write_manifest(tmp_path, gateway, [virtual_boards[0].port], heartbeat_s=45)
    status, bays, _ = provision_json(capsys, path, registry_path, firmware)

    assert status == 0, bays["b1"]["detail"]
    assert "device b1 updated" in (tmp_path / "site-logs" / "b1.log").read_text()
    config = json.loads((virtual_boards[0].fs_dir / "config.json").read_text())
    assert config["wifi"] == {"ssid": "lot-net", "password": "hunter22"}
    assert config["heartbeat_s"] == 45
    assert "hunter22" not in (tmp_path / "site-logs" / "b1.log").read_text()


def test_serial_number_resolves_to_port(firmware, tmp_path, virtual_boards, gateway, registry_path, monkeypatch):
    # baysense.ports looks up a board's USB serial number. Here its list shows the virtual
    # board as a CP210x bridge with serial number VB0001.
    listed = [{"device": virtual_boards[0].port, "serial_number": "VB0001", "bridge": "cp210x", "vid_pid": "10c4:ea60"}]
    monkeypatch.setattr("baysense.ports.list_ports", lambda: listed)
    path = write_manifest(tmp_path, gateway, [virtual_boards[0].port])
    path.write_text(path.read_text().replace('port = "%s"' % virtual_boards[0].port, 'serial = "VB0001"')
                    + '[[bays]]\nid = "b2"\nport = "%s"\n' % virtual_boards[0].port)

    outcomes = Run(manifest_module.load(path), registry_path, Options(firmware_dir=firmware)).execute()

    by_bay = {outcome.bay: outcome for outcome in outcomes}
    assert by_bay["b1"].result == OK, by_bay["b1"].detail
    assert by_bay["b1"].port == virtual_boards[0].port
    assert by_bay["b2"].result == "failed"
    assert "also bay b1's board" in by_bay["b2"].detail


def test_auto_lists_only_esp32_bridges(monkeypatch):
    listed = [
        {"device": "/dev/ttyS0", "serial_number": None, "bridge": None},
        {"device": "/dev/ttyUSB0", "serial_number": "A1", "bridge": "cp210x"},
        {"device": "/dev/ttyACM0", "serial_number": "B2", "bridge": "espressif-native"},
    ]
    monkeypatch.setattr("baysense.ports.list_ports", lambda: listed)

    assert esp32_ports() == ["/dev/ttyUSB0", "/dev/ttyACM0"]


def test_selftest_waits_for_first_magnetometer_sample(firmware, tmp_path, gateway, registry_path, capsys):
    # A QMC5883L just configured has no sample yet, which its status byte reports as no data.
    virtual = VirtualBoard(tmp_path / "magnetometer", boards.load("virtual-magnetometer")).start()
    try:
        path = write_manifest(tmp_path, gateway, [virtual.port])
        path.write_text(path.read_text().replace('board = "virtual"', 'board = "virtual-magnetometer"'))

        status, bays, _ = provision_json(capsys, path, registry_path, firmware)

        assert status == 0, bays["b1"]["detail"]
        assert bays["b1"]["result"] == OK
        assert "sensor fault" not in bays["b1"]["detail"]
        assert "gateway ack" in bays["b1"]["detail"]
    finally:
        virtual.stop()


def board_files(virtual):
    return {path.relative_to(virtual.fs_dir).as_posix(): path.read_bytes() for path in virtual.fs_dir.rglob("*") if path.is_file()}


def test_incomplete_firmware_dir_touches_no_board(firmware, tmp_path, virtual_boards, gateway, registry_path, capsys):
    incomplete = tmp_path / "fw-incomplete"
    shutil.copytree(firmware, incomplete)
    (incomplete / "field_decision.py").unlink()
    before = board_files(virtual_boards[0])
    path = write_manifest(tmp_path, gateway, [virtual_boards[0].port])

    status = main(["fleet", "provision", str(path), "--registry", str(registry_path), "--firmware-dir", str(incomplete)])

    error = capsys.readouterr().err
    assert status == 1
    assert "field_decision.py not found in %s (detector.py imports it)" % incomplete in error
    assert "copy firmware/field_decision.py into that folder" in error
    assert board_files(virtual_boards[0]) == before
    with Registry(registry_path) as registry:
        assert Progress(registry, "lot-7").rows() == []


def test_node_stopping_at_start_fails_at_once(firmware, tmp_path, virtual_boards, gateway, registry_path, capsys):
    # A main.py that stops with ImportError: the restart step must end on the traceback, not
    # wait out its timeout twice.
    stopping = tmp_path / "fw-stopping"
    shutil.copytree(firmware, stopping)
    main_py = stopping / "main.py"
    main_py.write_text("raise ImportError(\"no module named 'spare'\")\n" + main_py.read_text())
    path = write_manifest(tmp_path, gateway, [virtual_boards[0].port])

    status, bays, _ = provision_json(capsys, path, registry_path, stopping)

    assert status == 1
    outcome = bays["b1"]
    assert (outcome["result"], outcome["step"]) == ("failed", "restart")
    expected = "the node on %s stopped at start (ImportError: no module named 'spare')" % virtual_boards[0].port
    assert expected in outcome["detail"]
    assert "b'" not in outcome["detail"]
    log_text = (tmp_path / "site-logs" / "b1.log").read_text()
    assert "restart attempt" not in log_text
    with Registry(registry_path) as registry:
        restart = Progress(registry, "lot-7").steps("b1")["restart"]
    assert restart["result"] == "failed"
    # Well under one NODE_START_TIMEOUT_S: the traceback prints within a second of the reset.
    assert outcome["seconds"] < NODE_START_TIMEOUT_S


class SilentAfterOutput:
    """A device whose board printed `printed` once and then nothing: only what wait_for_output reads."""

    port = "/dev/pts/fake"
    in_waiting = 0

    def __init__(self, printed):
        self.log = bytearray(printed)
        self.serial = self

    def read(self, count):
        time.sleep(0.01)
        return b""


def test_start_timeout_quotes_text_lines():
    device = SilentAfterOutput(b"MPY: soft reboot\r\nlink: joining Wi-Fi 'lot-net'\r\nlink: still joining\r\n")

    with pytest.raises(DeviceError) as raised:
        wait_for_output(device, b"node b1 firmware", 0, 0.2, "the node's start line after the restart")

    error = raised.value
    assert error.message == "timed out after 0.2 s waiting for the node's start line after the restart on /dev/pts/fake"
    assert error.hint == ("check the board's log; its last output was: MPY: soft reboot | link: joining Wi-Fi 'lot-net'"
                          " | link: still joining")
    assert "\\r" not in str(error)
