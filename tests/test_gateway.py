"""The gateway end to end on loopback: reports, acks, registry changes, CLI and status."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from baysense import protocol
from baysense.cli import main
from baysense.gateway.server import GatewayThread
from baysense.gateway.settings import Settings
from baysense.gateway.simnode import SimNode, provision
from baysense.gateway.status import FAULT_NAMES
from baysense.gateway.store import Store
from baysense.registry import Registry

# Seconds a test waits for a process or a condition before failing.
WAIT_S = 10

FAST = Settings(stats_flush_s=0.05, registry_poll_s=0.1)


def wait_for(predicate, timeout=WAIT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    return predicate()


@pytest.fixture
def registry(tmp_path):
    return tmp_path / "registry.db"


@pytest.fixture
def keys(registry):
    return provision(registry, ["bay-1", "bay-2"])


@pytest.fixture
def gateway(tmp_path, registry, keys):
    thread = GatewayThread(tmp_path / "gateway.db", registry, settings=FAST)
    thread.start()
    yield thread
    thread.stop()


def stats(db_path):
    with Store(db_path) as store:
        return store.stats()


def test_state_report_stored_and_acked(gateway, keys):
    with SimNode("bay-1", keys["bay-1"], gateway.address) as node:
        counter = node.report_state(protocol.STATE_OCCUPIED, value=42)

    with Store(gateway.gateway.db_path) as store:
        bays = store.bays()
        reports = store.reports("bay-1")
    assert counter == 1
    assert len(bays) == 1
    assert bays[0]["device_id"] == "bay-1"
    assert bays[0]["state"] == "occupied"
    assert bays[0]["value"] == 42
    assert bays[0]["counter"] == 1
    assert [report["counter"] for report in reports] == [1]


def test_since_moves_only_on_change(gateway, keys):
    with SimNode("bay-1", keys["bay-1"], gateway.address) as node:
        node.report_state(protocol.STATE_OCCUPIED)
        with Store(gateway.gateway.db_path) as store:
            first = store.bays()[0]
        node.report_state(protocol.STATE_OCCUPIED)
        with Store(gateway.gateway.db_path) as store:
            repeated = store.bays()[0]
        node.report_state(protocol.STATE_VACANT)
        with Store(gateway.gateway.db_path) as store:
            changed = store.bays()[0]

    assert repeated["since"] == first["since"]
    assert repeated["counter"] == 2
    assert changed["state"] == "vacant"
    assert changed["since"] > first["since"]
    assert changed["changes"] == 2


def test_heartbeat_health_stored(gateway, keys):
    with SimNode("bay-2", keys["bay-2"], gateway.address) as node:
        node.report_heartbeat(uptime_s=3600, reset_cause=4, free_heap=61234, rssi_dbm=-71, outbox_depth=3, fault_flags=0x11, version="1.2.3")

    with Store(gateway.gateway.db_path) as store:
        bay = store.bays()[0]
    assert bay["state"] is None
    assert bay["uptime_s"] == 3600
    assert bay["reset_cause"] == 4
    assert bay["free_heap"] == 61234
    assert bay["rssi_dbm"] == -71
    assert bay["outbox_depth"] == 3
    assert bay["fault_flags"] == 0x11
    assert bay["firmware"] == "1.2.3"


def test_retransmission_acked_again(gateway, keys):
    db_path = gateway.gateway.db_path
    with SimNode("bay-1", keys["bay-1"], gateway.address) as node:
        counter, frame = node.state_frame(protocol.STATE_OCCUPIED)
        node.deliver(counter, frame)
        with Store(db_path) as store:
            before = (store.bays(), store.reports())

        node.send(frame)
        acked_again = node.wait_ack(counter, WAIT_S)

    with Store(db_path) as store:
        after = (store.bays(), store.reports())
    assert acked_again
    assert after == before
    assert wait_for(lambda: stats(db_path).get("resent_state") == 1)


def test_resend_before_commit_acked_after(gateway, keys):
    # The COMMIT waits until the test releases it, so the resent frame finds its report pending.
    store = gateway.gateway._store
    real_finish = store.finish
    release = threading.Event()

    def finish():
        release.wait(WAIT_S)
        real_finish()

    store.finish = finish
    with SimNode("bay-1", keys["bay-1"], gateway.address) as node:
        counter, frame = node.state_frame(protocol.STATE_OCCUPIED)
        node.send(frame)
        node.send(frame)
        acked_before_commit = node.wait_ack(counter, 0.3)
        release.set()
        first_ack = node.wait_ack(counter, WAIT_S)
        second_ack = node.wait_ack(counter, WAIT_S)

    db_path = gateway.gateway.db_path
    with Store(db_path) as store_reader:
        reports = store_reader.reports()
    assert not acked_before_commit
    assert first_ack
    assert second_ack
    assert [report["counter"] for report in reports] == [counter]
    assert wait_for(lambda: stats(db_path).get("resent_state") == 1)
    assert wait_for(lambda: stats(db_path).get("acked") == 2)


def test_ack_verifies_under_device_key(gateway, keys):
    with SimNode("bay-1", keys["bay-1"], gateway.address) as node:
        counter, frame = node.state_frame(protocol.STATE_VACANT)
        node.send(frame)
        node.sock.settimeout(WAIT_S)
        datagram = node.sock.recv(protocol.MAX_FRAME)

    ack = protocol.decode(datagram)
    assert ack.type == protocol.FRAME_ACK
    assert ack.device_id == "bay-1"
    assert ack.counter == counter
    assert ack.verify(keys["bay-1"])
    assert not ack.verify(keys["bay-2"])
    assert protocol.parse_ack(ack.body) == protocol.ACK_STORED


def test_device_provisioned_later_accepted(gateway, registry):
    new_keys = provision(registry, ["bay-9"])
    provisioned = time.monotonic()

    with SimNode("bay-9", new_keys["bay-9"], gateway.address) as node:
        node.report_state(protocol.STATE_OCCUPIED, timeout=WAIT_S)
    elapsed = time.monotonic() - provisioned

    # Polled every 0.1 s here; the margin is for a busy test machine.
    assert elapsed < 2.5


def test_key_rotation_takes_effect(gateway, registry, keys):
    db_path = gateway.gateway.db_path
    with SimNode("bay-1", keys["bay-1"], gateway.address) as node:
        node.report_state(protocol.STATE_OCCUPIED)
        node.report_state(protocol.STATE_VACANT)

    rotated = provision(registry, ["bay-1"])["bay-1"]
    assert rotated != keys["bay-1"]
    time.sleep(3 * FAST.registry_poll_s)

    # A re-flashed node starts its counter again; the new key starts a new sequence.
    with SimNode("bay-1", rotated, gateway.address) as node:
        node.report_state(protocol.STATE_OCCUPIED, timeout=WAIT_S)
    with SimNode("bay-1", keys["bay-1"], gateway.address, counter=10) as old:
        counter, frame = old.state_frame(protocol.STATE_VACANT)
        old.send(frame)
        assert not old.wait_ack(counter, 0.3)

    with Store(db_path) as store:
        bay = store.bays()[0]
    assert bay["state"] == "occupied"
    assert bay["counter"] == 1
    assert wait_for(lambda: stats(db_path).get("rejected_bad_mac") == 1)


def test_new_device_accepted_before_poll(tmp_path, registry, keys):
    # The registry poll is an hour away, so only the reload on an unknown device can let the
    # first frame of a board provisioned after the start through.
    settings = Settings(stats_flush_s=0.05, registry_poll_s=3600)
    with GatewayThread(tmp_path / "gateway.db", registry, settings=settings) as thread:
        new_key = provision(registry, ["bay-new"])["bay-new"]
        with SimNode("bay-new", new_key, thread.address) as node:
            counter, frame = node.state_frame(protocol.STATE_OCCUPIED)
            node.send(frame)
            acked = node.wait_ack(counter, WAIT_S)
        db_path = thread.gateway.db_path
        assert wait_for(lambda: stats(db_path).get("accepted_state") == 1)

    assert acked
    assert stats(db_path).get("rejected_unknown_device") is None


def test_revoked_device_rejected(gateway, registry, keys):
    db_path = gateway.gateway.db_path
    with Registry(registry) as reg:
        reg.revoke("bay-2")
    time.sleep(3 * FAST.registry_poll_s)

    with SimNode("bay-2", keys["bay-2"], gateway.address) as node:
        counter, frame = node.state_frame(protocol.STATE_OCCUPIED)
        node.send(frame)
        acked = node.wait_ack(counter, 0.3)

    assert not acked
    assert wait_for(lambda: stats(db_path).get("rejected_revoked_device") == 1)
    with Store(db_path) as store:
        assert store.reports() == []


def test_gateway_restart_keeps_counters(tmp_path, registry, keys):
    db_path = tmp_path / "gateway.db"
    with GatewayThread(db_path, registry, settings=FAST) as first:
        with SimNode("bay-1", keys["bay-1"], first.address) as node:
            node.report_state(protocol.STATE_OCCUPIED)
            node.report_state(protocol.STATE_VACANT)
            _, stale = node.state_frame(protocol.STATE_OCCUPIED)

    with GatewayThread(db_path, registry, settings=FAST) as second:
        with SimNode("bay-1", keys["bay-1"], second.address, counter=0) as rebooted:
            counter, frame = rebooted.state_frame(protocol.STATE_FAULT)
            rebooted.send(frame)
            assert not rebooted.wait_ack(counter, 0.3)
        assert wait_for(lambda: stats(db_path).get("rejected_old_counter") == 1)

    with Store(db_path) as store:
        assert store.bays()[0]["state"] == "vacant"
        assert stale  # built but never sent: counter 3 stays free


def start_cli_gateway(tmp_path, registry, listen="127.0.0.1:0"):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "baysense.cli", "gateway", "--listen", listen, "--db", str(tmp_path / "gateway.db"), "--registry", str(registry)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = process.stdout.readline()
    return process, line


def test_cli_prints_port_and_stops_on_sigterm(tmp_path, registry, keys):
    process, line = start_cli_gateway(tmp_path, registry)
    try:
        assert line.startswith("listening: udp://127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        assert port > 0
        with SimNode("bay-1", keys["bay-1"], ("127.0.0.1", port)) as node:
            node.report_state(protocol.STATE_OCCUPIED, value=7)
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(WAIT_S)
        stderr = process.stderr.read()
    assert returncode == 0, stderr
    assert "Traceback" not in stderr


def cli_gateway_lines(tmp_path, registry):
    # The first two lines of a CLI gateway's output, after which it is stopped.
    process, line = start_cli_gateway(tmp_path, registry)
    try:
        second = process.stdout.readline()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(WAIT_S)
    return line, second


def test_cli_names_registry_and_devices(tmp_path, registry, keys):
    line, second = cli_gateway_lines(tmp_path, registry)
    assert line.startswith("listening: udp://127.0.0.1:")
    assert second == "registry: %s (2 devices)\n" % registry


def test_cli_warns_of_empty_registry(tmp_path):
    registry = tmp_path / "new-registry.db"
    line, second = cli_gateway_lines(tmp_path, registry)
    assert line.startswith("listening: ")
    assert second.startswith("registry: %s (no devices yet: reports are rejected until" % registry)


def test_cli_rejects_registry_in_missing_folder(tmp_path, capsys):
    registry = tmp_path / "nosuch" / "registry.db"
    status = main(["gateway", "--listen", "127.0.0.1:0", "--db", str(tmp_path / "g.db"), "--registry", str(registry)])
    error = capsys.readouterr().err
    assert status == 1
    assert "registry folder %s not found (registry %s)" % (registry.parent, registry) in error
    assert "--registry or $BAYSENSE_REGISTRY" in error
    assert not registry.parent.exists()
    assert not (tmp_path / "g.db").exists()


def test_cli_rejects_db_in_missing_folder(tmp_path, registry, capsys):
    db_path = tmp_path / "nosuch" / "lot.db"
    status = main(["gateway", "--listen", "127.0.0.1:0", "--db", str(db_path), "--registry", str(registry)])
    assert status == 1
    assert "folder of --db %s not found" % db_path in capsys.readouterr().err
    assert not db_path.parent.exists()


def test_cli_stops_on_sigint(tmp_path, registry, keys):
    process, line = start_cli_gateway(tmp_path, registry)
    process.send_signal(signal.SIGINT)
    returncode = process.wait(WAIT_S)
    assert line.startswith("listening: ")
    assert returncode == 0, process.stderr.read()


def test_cli_rejects_bad_listen_address(tmp_path, registry, capsys):
    status = main(["gateway", "--listen", "127.0.0.1", "--db", str(tmp_path / "g.db"), "--registry", str(registry)])
    assert status == 1
    assert "invalid listen address (127.0.0.1)" in capsys.readouterr().err


def test_status_json_lists_bays_and_rejections(gateway, keys, capsys):
    db_path = gateway.gateway.db_path
    with SimNode("bay-1", keys["bay-1"], gateway.address) as node:
        node.report_state(protocol.STATE_OCCUPIED)
        node.report_heartbeat(rssi_dbm=-55)
        node.send(b"\x01\x02")
    assert wait_for(lambda: stats(db_path).get("rejected_too_short") == 1)

    status = main(["status", "--db", str(db_path), "--json"])
    output = json.loads(capsys.readouterr().out)

    assert status == 0
    assert output["bays"][0]["device_id"] == "bay-1"
    assert output["bays"][0]["state"] == "occupied"
    assert output["bays"][0]["counter"] == 2
    assert output["bays"][0]["rssi_dbm"] == -55
    assert output["bays"][0]["health"] == "ok"
    assert output["rejected"] == {"too_short": 1}
    assert output["tallies"]["accepted_state"] == 1


def test_status_table_shows_bay(gateway, keys, capsys):
    with SimNode("bay-2", keys["bay-2"], gateway.address) as node:
        node.report_state(protocol.STATE_VACANT)
        node.report_heartbeat(fault_flags=2, version="fw-9")

    status = main(["status", "--db", str(gateway.gateway.db_path)])
    output = capsys.readouterr().out

    assert status == 0
    assert output.splitlines()[0].split()[:4] == ["device", "state", "since", "counter"]
    row = output.splitlines()[1].split()
    assert row[0] == "bay-2"
    assert row[1] == "vacant"
    assert "faults" in row
    assert "fw-9" in row


def test_status_table_names_fault_reason(gateway, keys, capsys):
    with SimNode("bay-1", keys["bay-1"], gateway.address) as node:
        counter, frame = node.state_frame(protocol.STATE_FAULT, reason=3)
        node.deliver(counter, frame)

    assert main(["status", "--db", str(gateway.gateway.db_path)]) == 0
    row = capsys.readouterr().out.splitlines()[1]
    assert row.split()[:3] == ["bay-1", "fault", "(stuck)"]


def test_status_fault_names_match_firmware():
    from baysense.replay.firmware import load_firmware_detector

    assert FAULT_NAMES == load_firmware_detector().FAULT_NAMES


def test_status_missing_db_names_fix(tmp_path, capsys):
    status = main(["status", "--db", str(tmp_path / "none.db")])
    assert status == 1
    assert "gateway database not found" in capsys.readouterr().err


@pytest.mark.parametrize("failing_step", ["write", "finish"])
def test_failed_commit_sends_no_ack(gateway, keys, failing_step):
    # "write" fails while the rows go in, "finish" in the COMMIT (the fsync) in the writer thread.
    store = gateway.gateway._store
    real_write = store.write
    real_finish = store.finish
    written = []
    failures = []

    def write(reports, tallies):
        written.append(len(reports))
        if failing_step == "write" and reports and not failures:
            failures.append(len(reports))
            raise sqlite3.OperationalError("disk I/O error")
        return real_write(reports, tallies)

    def finish():
        if failing_step == "finish" and written[-1] and not failures:
            failures.append(written[-1])
            raise sqlite3.OperationalError("disk I/O error")
        real_finish()

    store.write = write
    store.finish = finish
    with SimNode("bay-1", keys["bay-1"], gateway.address) as node:
        counter, frame = node.state_frame(protocol.STATE_OCCUPIED)
        node.send(frame)
        acked_first = node.wait_ack(counter, 0.3)
        node.deliver(counter, frame)

    db_path = gateway.gateway.db_path
    with Store(db_path) as store_reader:
        reports = store_reader.reports()
    assert failures == [1]
    assert not acked_first
    assert [report["counter"] for report in reports] == [1]
    assert wait_for(lambda: stats(db_path).get("store_failed") == 1)


def test_status_rejects_other_database(registry, keys, capsys):
    status = main(["status", "--db", str(registry)])
    assert status == 1
    assert "cannot read the gateway database" in capsys.readouterr().err


def test_node_reboot_skips_counter_block(gateway, keys):
    db_path = gateway.gateway.db_path
    with SimNode("bay-1", keys["bay-1"], gateway.address) as node:
        node.report_state(protocol.STATE_OCCUPIED)
        node.report_state(protocol.STATE_VACANT)

    # After a reboot the node continues from its next reserved block of 64.
    with SimNode("bay-1", keys["bay-1"], gateway.address, counter=64) as rebooted:
        counter = rebooted.report_state(protocol.STATE_OCCUPIED)

    # A node that lost its counter file starts again at 1 and is rejected.
    with SimNode("bay-1", keys["bay-1"], gateway.address, counter=0) as reset:
        stale_counter, frame = reset.state_frame(protocol.STATE_FAULT)
        reset.send(frame)
        acked = reset.wait_ack(stale_counter, 0.3)

    assert counter == 65
    assert not acked
    assert wait_for(lambda: stats(db_path).get("rejected_old_counter") == 1)
    with Store(db_path) as store:
        bay = store.bays()[0]
    assert bay["state"] == "occupied"
    assert bay["counter"] == 65
