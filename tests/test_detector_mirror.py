"""The field decision's comparison of a departure with the same car's arrival, on synthetic traces.

The traces use test_detector.py's field_segments: a 90 ms sample period, 3 counts of noise and
(duration_ms, from_level, to_level, swing) segments. The baseline is 300 counts. A positive
swing lifts the field by up to that many counts three times within the segment, and a negative
one lowers it.
"""

from test_detector import MAGNETOMETER, feed, field_segments, firmware, states
from test_detector_mpy import _heap_lock_run

OCCUPIED = firmware.STATE_OCCUPIED
VACANT = firmware.STATE_VACANT

# The car drives in with swings of up to 120 counts and parks 120 counts off the baseline.
# The smoothed field rises to about 486 on the way in, some 66 counts beyond the parked level.
SWINGING_ARRIVAL = [(20000, 300, 300, 0), (8000, 300, 420, 120), (30000, 420, 420, 0)]
SWINGING_ARRIVAL_MS = 20000 + 8000 + 30000

# The parked car rolls back in 8 s, without a swing, until its field is on the baseline. It
# stays there for 20 s, longer than departure_confirm_ms, then drives off with swings that
# lift the field the way its arrival did.
ROLL_THEN_DRIVE_OFF = SWINGING_ARRIVAL + [
    (8000, 420, 300, 0),
    (20000, 300, 300, 0),
    (9000, 300, 300, 200),
    (20000, 300, 300, 0),
]
DRIVE_OFF_START_MS = SWINGING_ARRIVAL_MS + 8000 + 20000

# The car leaves in 1 s, shorter than exit_min_ms, with a swing the way its arrival went. The
# field ends 45 counts off the baseline and takes 16 s to settle back onto it.
SLOW_SETTLING_EXIT = SWINGING_ARRIVAL + [
    (1000, 420, 345, 250),
    (6000, 345, 315, 0),
    (10000, 315, 303, 0),
    (20000, 303, 300, 0),
]

# The car drives in with swings of up to 60 counts and parks 40 counts off the baseline. The
# smoothed field rises to about 371 on the way in.
SMALL_ARRIVAL = [(20000, 300, 300, 0), (6000, 300, 340, 60), (30000, 340, 340, 0)]
SMALL_ARRIVAL_MS = 20000 + 6000 + 30000


def test_roll_onto_baseline_not_departure():
    times, values = field_segments(ROLL_THEN_DRIVE_OFF, seed=31)
    events = feed(firmware.Detector(MAGNETOMETER), times, values)
    assert states(events) == [OCCUPIED, VACANT]
    assert events[1][0] >= DRIVE_OFF_START_MS
    assert events[1][0] <= DRIVE_OFF_START_MS + 9000 + 15000


def test_roll_reads_as_departure_without_mirror():
    # With the comparison off, the roll is a confirmed weak departure and the drive-off a new
    # arrival.
    times, values = field_segments(ROLL_THEN_DRIVE_OFF, seed=31)
    detector = firmware.Detector(dict(MAGNETOMETER, departure_mirror_min_delta=0))
    assert states(feed(detector, times, values)) == [OCCUPIED, VACANT, OCCUPIED]


def test_slow_settling_exit_reported():
    times, values = field_segments(SLOW_SETTLING_EXIT, seed=32)
    events = feed(firmware.Detector(MAGNETOMETER), times, values)
    assert states(events) == [OCCUPIED, VACANT]
    assert events[1][0] >= SWINGING_ARRIVAL_MS
    assert events[1][0] <= SWINGING_ARRIVAL_MS + 1000 + 15000


def test_slow_settling_exit_missed_without_rule():
    # Without the rule, the field is followed as the parked level while it settles, so the
    # car never leaves.
    times, values = field_segments(SLOW_SETTLING_EXIT, seed=32)
    detector = firmware.Detector(dict(MAGNETOMETER, departure_mirror_nearer_percent=0))
    assert states(feed(detector, times, values)) == [OCCUPIED]


def test_manoeuvre_beyond_parked_level_stays_occupied():
    # A 6 s manoeuvre dips the field and leaves it at 355, beyond the parked level (340) and
    # away from the baseline. The field never reached the height of the arrival.
    segments = SMALL_ARRIVAL + [(6000, 340, 355, -60), (30000, 355, 355, 0)]
    times, values = field_segments(segments, seed=33)
    assert states(feed(firmware.Detector(MAGNETOMETER), times, values)) == [OCCUPIED]


def test_manoeuvre_beyond_parked_level_without_reach():
    # With the reach test off, the same manoeuvre is a departure: it lasted exit_min_ms and
    # ended within occupied_above_delta of the baseline.
    segments = SMALL_ARRIVAL + [(6000, 340, 355, -60), (30000, 355, 355, 0)]
    times, values = field_segments(segments, seed=33)
    detector = firmware.Detector(dict(MAGNETOMETER, departure_reach_percent=0))
    assert states(feed(detector, times, values)) == [OCCUPIED, VACANT]


def test_departure_beyond_parked_level_reported():
    # A departure may end beyond the parked level, where the empty bay's field has moved,
    # when it swung at least as far as the arrival did.
    segments = SMALL_ARRIVAL + [(5000, 340, 350, 100), (30000, 350, 350, 0)]
    times, values = field_segments(segments, seed=34)
    events = feed(firmware.Detector(MAGNETOMETER), times, values)
    assert states(events) == [OCCUPIED, VACANT]
    assert events[1][0] <= SMALL_ARRIVAL_MS + 5000 + 15000


def test_mirror_rules_allocate_nothing():
    # The roll and drive-off, then the manoeuvre beyond the parked level of a second car, on
    # the MicroPython unix port under the heap lock.
    _, first = field_segments(ROLL_THEN_DRIVE_OFF, seed=31)
    _, second = field_segments(SMALL_ARRIVAL[1:] + [(6000, 340, 355, -60), (30000, 355, 355, 0)], seed=33)
    values = list(first) + list(second)
    # The signal's list literal alone needs more than an ESP32-sized heap to parse.
    changes, state = _heap_lock_run(MAGNETOMETER, values, [0] * len(values), 90, heapsize="512K")
    assert changes == 3  # occupied, vacant (the drive-off), occupied (the second car)
    assert state == OCCUPIED
