"""Several boards at once, reporting to one gateway."""

import pytest


@pytest.mark.boards(3)
def test_boards_report_in_parallel(boards, gateway):
    assert len({board.device_id for board in boards}) == 3
    starts = {board.device_id: gateway.last_counter(board.device_id) for board in boards}

    for board in boards:
        board.bay.occupied()
    arrivals = [gateway.wait_for_state(board, "occupied", after=starts[board.device_id]) for board in boards]
    for board in boards:
        board.bay.vacant_bay()
    departures = [
        gateway.wait_for_state(board, "vacant", after=arrival.counter) for board, arrival in zip(boards, arrivals)
    ]

    for board in boards:
        assert gateway.bay(board.device_id)["state"] == "vacant"
    assert [report.device_id for report in departures] == [board.device_id for board in boards]
