"""The field decision's departures of a car whose parked field is the empty bay's.

The traces come from scenarios.field_trace with shift=0. The car swings the field on its way
in and out (all swings lift it) and leaves it on the 300-count baseline while parked. Each
case below made the reach test drop the departure before it was limited to a field that ends
off the baseline. Noise left the smoothed field a count or two beyond the parked level, on
the side away from the baseline, and the exit's swing on that side fell just short of the
arrival's.
"""

import pytest

from mpy import scenarios
from test_detector import MAGNETOMETER, feed, firmware, states
from test_detector_mpy import _heap_lock_run

OCCUPIED = firmware.STATE_OCCUPIED
VACANT = firmware.STATE_VACANT

# (swing, parked_ms, noise, seed): field_trace arguments with shift=0.
NO_OFFSET_CARS = [
    (169, 21691, 3, 186),
    (274, 22274, 4, 8659),
    (297, 29389, 5, 672),
    (159, 24317, 5, 5247),
    (272, 24049, 4, 344),
]

# A vacant counts as on time up to 15 s after the exit manoeuvre ends, as in the scoring of
# recorded episodes.
DEPARTURE_WINDOW_MS = 15000


@pytest.mark.parametrize("swing, parked_ms, noise, seed", NO_OFFSET_CARS)
def test_no_offset_car_departure_reported(swing, parked_ms, noise, seed):
    times, values, truth = scenarios.field_trace(shift=0, swing=swing, parked_ms=parked_ms, noise=noise, seed=seed)
    _, departure_start, departure_end = truth
    events = feed(firmware.Detector(MAGNETOMETER), times, values)
    assert states(events) == [OCCUPIED, VACANT]
    assert events[1][0] >= departure_start
    assert events[1][0] <= departure_end + DEPARTURE_WINDOW_MS


@pytest.mark.parametrize("swing, parked_ms, noise, seed", NO_OFFSET_CARS)
def test_no_offset_car_departure_without_reach(swing, parked_ms, noise, seed):
    # The reach test leaves a field back on the baseline alone, so turning it off changes no
    # event here.
    times, values, _ = scenarios.field_trace(shift=0, swing=swing, parked_ms=parked_ms, noise=noise, seed=seed)
    with_reach = feed(firmware.Detector(MAGNETOMETER), times, values)
    without_reach = feed(firmware.Detector(dict(MAGNETOMETER, departure_reach_percent=0)), times, values)
    assert with_reach == without_reach


def test_no_offset_departure_allocates_nothing():
    # Two of the cars one after the other, on the MicroPython unix port under the heap lock.
    values = []
    for swing, parked_ms, noise, seed in NO_OFFSET_CARS[:2]:
        values += scenarios.field_trace(shift=0, swing=swing, parked_ms=parked_ms, noise=noise, seed=seed)[1]
    # The signal's list literal alone needs more than an ESP32-sized heap to parse.
    changes, state = _heap_lock_run(MAGNETOMETER, values, [0] * len(values), 90, heapsize="512K")
    assert changes == 4  # occupied, vacant, for each car
    assert state == VACANT
