"""Boot and version report: the node starts, prints its version and reports it to the gateway."""

import re

from baysense.paths import FIRMWARE_DIR


def firmware_version():
    match = re.search(r'^VERSION = "([^"]+)"', (FIRMWARE_DIR / "node.py").read_text(), re.MULTILINE)
    assert match, "firmware/node.py has no VERSION line"
    return match.group(1)


def test_boot_reports_version(board, gateway):
    report = board.soft_reset()

    assert report.device_id == board.device_id
    assert report.version == firmware_version()
    assert report.outbox == 0
    heartbeat = gateway.wait_for_heartbeat(board)
    assert heartbeat.fields["firmware"] == firmware_version()
