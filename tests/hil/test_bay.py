"""A car arriving and leaving, and a car passing by, for each sensor kind."""

from conftest import each_sensor_kind, passer_by_seconds, stay_parked, wait_until_settled


@each_sensor_kind()
def test_car_arrives_and_leaves(board, bay, gateway, kind):
    assert board.kind == kind
    wait_until_settled(board)
    start = gateway.last_counter(board.device_id)

    bay.occupied()
    arrived = gateway.wait_for_state(board, "occupied", after=start)
    board.expect(r"bay: occupied reason 0")
    stay_parked(board)

    bay.vacant_bay()
    left = gateway.wait_for_state(board, "vacant", after=arrived.counter)
    board.expect(r"bay: vacant reason 0")

    assert left.counter > arrived.counter
    between = gateway.state_reports(board.device_id, after=arrived.counter)
    assert [report.state for report in between if report.counter < left.counter] == []


@each_sensor_kind()
def test_passer_by_ignored(board, bay, gateway, kind):
    wait_until_settled(board)
    start = gateway.last_counter(board.device_id)
    mark = board.mark()

    bay.pass_by(passer_by_seconds(board))

    # Nothing may be reported for longer than the on-delay after the car has gone.
    quiet_s = board.definition["detector"]["on_delay_ms"] / 1000 + 1
    board.expect_absent(r"bay: occupied", for_s=quiet_s, since=mark)
    states = [report.state for report in gateway.state_reports(board.device_id, after=start)]
    assert "occupied" not in states
