"""Faults: the sensor unplugged, the link dropped and restored, a reboot in the middle of reporting."""

from conftest import each_sensor_kind, wait_until_settled

# Detector fault reasons sent in a state report (FAULT_* in firmware/detector.py).
FAULT_NO_ECHO = 1
FAULT_BUS = 4
UNPLUGGED_REASON = {"ultrasonic": FAULT_NO_ECHO, "magnetometer": FAULT_BUS}
# Gateway tallies of frames rejected because their counter went back or was reused.
COUNTER_REJECTIONS = ("rejected_old_counter", "rejected_reused_counter")


def fault_wait_s(board):
    """The detector's fault delay plus room for the report to reach the gateway."""
    return board.definition["detector"]["fault_after_ms"] / 1000 + 10


@each_sensor_kind()
def test_sensor_unplugged(board, bay, gateway, kind):
    wait_until_settled(board)
    start = gateway.last_counter(board.device_id)

    bay.unplug()
    fault = gateway.wait_for_state(board, "fault", after=start, timeout_s=fault_wait_s(board))
    board.expect(r"bay: fault reason %d" % UNPLUGGED_REASON[kind])

    bay.plug()
    recovered = gateway.wait_for_state(board, "vacant", after=fault.counter, timeout_s=fault_wait_s(board))

    assert fault.reason == UNPLUGGED_REASON[kind]
    assert recovered.reason == 0


def test_link_dropped_and_restored(board, bay, gateway):
    start = gateway.last_counter(board.device_id)
    mark = board.mark()

    bay.link(False)
    bay.occupied()
    board.expect(r"bay: occupied", since=mark)
    bay.vacant_bay()
    board.expect(r"bay: vacant reason 0", since=mark)
    assert gateway.state_reports(board.device_id, after=start) == []

    bay.link(True)
    gateway.wait_for_state(board, "vacant", after=start)

    # Every change the node printed reached the gateway, once and in order.
    printed = [int(counter) for counter in _bay_counters(board.output(since=mark))]
    stored = gateway.state_reports(board.device_id, after=start)
    assert [report.state for report in stored] == ["occupied", "vacant"]
    assert [report.counter for report in stored] == printed
    assert not any(gateway.stats().get(name) for name in COUNTER_REJECTIONS)


def test_reboot_while_reporting(board, bay, gateway):
    start = gateway.last_counter(board.device_id)
    mark = board.mark()

    # A change waits in the outbox (the link is down) when the power goes.
    bay.link(False)
    bay.occupied()
    board.expect(r"bay: occupied", since=mark)
    boot = board.power_cycle()
    assert boot.outbox == 1

    bay.link(True)
    arrived = gateway.wait_for_state(board, "occupied", after=start)
    bay.vacant_bay()
    left = gateway.wait_for_state(board, "vacant", after=arrived.counter)

    # The counter never goes back: every stored report, in arrival order, is above the last.
    counters = [report.counter for report in gateway.reports(board.device_id)]
    assert counters == sorted(set(counters))
    assert left.counter > arrived.counter
    if boot.counter is not None:
        assert boot.counter > arrived.counter
    assert not any(gateway.stats().get(name) for name in COUNTER_REJECTIONS)


def _bay_counters(output):
    import re

    return re.findall(r"bay: (?:occupied|vacant|fault) reason \d+ value -?\d+ counter (\d+)", output)
