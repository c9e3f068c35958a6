"""A car that arrives while the field decision still calibrates, on synthetic traces.

The traces use test_detector.py's field_segments (a 90 ms sample period, 3 counts of noise);
the empty bay's field is 300 counts.
"""

from test_detector import MAGNETOMETER, feed, field_segments, firmware, states
from test_detector_mpy import _heap_lock_run

OCCUPIED = firmware.STATE_OCCUPIED

ARRIVAL_MS = 2500  # inside the 4 s warm-up, after its first steady window
# A car that parks with no offset: its arrival lowers the field for 4 s, and the field ends
# back on the empty bay's level before the calibration window is accepted.
ZERO_OFFSET_ARRIVAL = [(ARRIVAL_MS, 300, 300, 0), (4000, 300, 300, -60), (30000, 300, 300, 0)]


def test_calibration_zero_offset_car_occupied():
    for seed in range(40, 45):
        times, values = field_segments(ZERO_OFFSET_ARRIVAL, seed=seed)
        events = feed(firmware.Detector(MAGNETOMETER), times, values)
        assert states(events) == [OCCUPIED], seed
        assert events[0][0] <= ARRIVAL_MS + 15000, seed


def test_calibration_arrival_allocates_nothing():
    # The arrival found at the end of the calibration, on the MicroPython unix port under
    # the heap lock.
    values = field_segments(ZERO_OFFSET_ARRIVAL, seed=40)[1]
    # The signal's list literal alone needs more than an ESP32-sized heap to parse.
    changes, state = _heap_lock_run(MAGNETOMETER, values, [0] * len(values), 90, heapsize="512K")
    assert changes == 1
    assert state == OCCUPIED
