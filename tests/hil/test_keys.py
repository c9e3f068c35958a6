"""Key rotation: the node reports under its new key, and the old key is refused."""

import socket

from baysense import protocol
from baysense.hil.wait import wait_until
from baysense.registry import Registry


def registry_row(gateway, device_id):
    with Registry(gateway.registry_path) as registry:
        return dict(registry.device(device_id))


def test_key_rotation(board, bay, gateway):
    gateway.wait_for_heartbeat(board)
    before = gateway.reports(board.device_id)[-1]  # the newest report, signed with the old key
    old = registry_row(gateway, board.device_id)

    assert board.provision(rotate_key=True) == "rotated"
    board.soft_reset()
    bay.occupied()
    report = gateway.wait_for_state(board, "occupied", after=before.counter)

    new = registry_row(gateway, board.device_id)
    assert new["key_version"] == old["key_version"] + 1
    assert new["key"] != old["key"]
    assert report.key_id != before.key_id

    # A frame signed with the retired key is rejected, even with a counter the gateway would take.
    rejected = gateway.stats().get("rejected_bad_mac", 0)
    body = protocol.state_body(protocol.STATE_VACANT, 0, 0, 0)
    forged = protocol.encode(bytes(old["key"]), protocol.FRAME_STATE, board.device_id, report.counter + 100, body)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(forged, (gateway.host, gateway.port))
    wait_until(lambda: gateway.stats().get("rejected_bad_mac", 0) > rejected, 10, "the gateway to reject the old key", [board])
    assert gateway.bay(board.device_id)["state"] == "occupied"
