"""The gateway killed with SIGKILL while nodes report: no acknowledged report is lost or doubled."""

import signal
import subprocess
import sys
import threading
import time

from baysense import protocol
from baysense.gateway.simnode import SimNode, provision
from baysense.gateway.store import Store

DEVICES = 8
REPORTS_PER_DEVICE = 30
# Seconds a node keeps resending one report; covers the gateway being down between restarts.
DELIVER_TIMEOUT_S = 30
RESEND_S = 0.05
# Seconds between two reports of one node, so that reports are in flight at each kill.
REPORT_INTERVAL_S = 0.04
WAIT_S = 10


def start_gateway(db_path, registry, port=0):
    process = subprocess.Popen(
        [sys.executable, "-m", "baysense.cli", "gateway", "--listen", "127.0.0.1:%d" % port, "--db", str(db_path), "--registry", str(registry)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = process.stdout.readline()
    assert line.startswith("listening: udp://127.0.0.1:"), line
    return process, int(line.rsplit(":", 1)[1])


def run_node(node, errors):
    try:
        for number in range(REPORTS_PER_DEVICE):
            counter, frame = node.state_frame(number % 2, value=number)
            node.deliver(counter, frame, timeout=DELIVER_TIMEOUT_S, resend_s=RESEND_S)
            time.sleep(REPORT_INTERVAL_S)
    except Exception as error:  # reported by the test thread
        errors.append(error)


def test_sigkill_loses_no_acked_report(tmp_path):
    registry = tmp_path / "registry.db"
    db_path = tmp_path / "gateway.db"
    keys = provision(registry, ["bay-%02d" % number for number in range(DEVICES)])
    process, port = start_gateway(db_path, registry)
    nodes = [SimNode(device_id, key, ("127.0.0.1", port)) for device_id, key in keys.items()]
    errors = []
    threads = [threading.Thread(target=run_node, args=(node, errors)) for node in nodes]
    kills = 0

    try:
        for thread in threads:
            thread.start()
        for pause in (0.3, 0.5):
            time.sleep(pause)
            process.send_signal(signal.SIGKILL)
            process.wait(WAIT_S)
            kills += 1
            time.sleep(0.2)
            process, restarted_port = start_gateway(db_path, registry, port)
            assert restarted_port == port
        for thread in threads:
            thread.join(DELIVER_TIMEOUT_S * 2)
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(WAIT_S)
        for node in nodes:
            node.close()

    assert errors == []
    assert kills == 2
    assert returncode == 0
    # Resends show that reports were in flight while the gateway was down.
    assert sum(node.sends for node in nodes) > DEVICES * REPORTS_PER_DEVICE
    with Store(db_path) as store:
        bays = {bay["device_id"]: bay for bay in store.bays()}
        reports = store.reports()
    for node in nodes:
        stored = [report["counter"] for report in reports if report["device_id"] == node.device_id]
        assert node.acked == list(range(1, REPORTS_PER_DEVICE + 1))
        assert sorted(stored) == node.acked
        bay = bays[node.device_id]
        # States alternate, so each report applied once is one change. An older report applied
        # again after a newer one would flip the state back and count extra changes.
        assert bay["changes"] == REPORTS_PER_DEVICE
        assert bay["counter"] == REPORTS_PER_DEVICE
        assert bay["value"] == REPORTS_PER_DEVICE - 1
        assert bay["state"] == protocol.STATE_NAMES[(REPORTS_PER_DEVICE - 1) % 2]
