"""The field decision's departure margin and its stand-still test, on synthetic traces.

The traces use test_detector.py's field_segments: a 90 ms sample period, 3 counts of noise and
(duration_ms, from_level, to_level, swing) segments. The baseline is 300 counts.
"""

import pytest

from test_detector import MAGNETOMETER, feed, field_segments, firmware, states

DEFAULTS = firmware.DEFAULTS["magnetometer"]

# A 5 s stay: 2.5 s in, 2 s standing 200 to 240 counts off the baseline, 2 s out. While it
# stands, the field drifts by 20 counts a second, so its spread over the activity window
# (about 14 counts) is above the smallest activity band (8) but below 10 % of the offset.
DRIFTING_STAY = [
    (20000, 300, 300, 0),
    (2500, 300, 500, 80),
    (2000, 500, 540, 0),
    (2000, 540, 300, 80),
    (20000, 300, 300, 0),
]
DRIFTING_STAY_END_MS = 20000 + 2500 + 2000 + 2000

# The car stood 120 counts off. After a 2 s exit, shorter than exit_min_ms, the field ends 18
# counts off the old baseline: outside the level band, and 18 % of the way back to the car.
NEAR_BASELINE_EXIT = [
    (20000, 300, 300, 0),
    (8000, 300, 420, 120),
    (30000, 420, 420, 0),
    (2000, 420, 318, 60),
    (20000, 318, 318, 0),
]
NEAR_BASELINE_EXIT_END_MS = 20000 + 8000 + 30000 + 2000


def test_drifting_short_stay_reported():
    times, values = field_segments(DRIFTING_STAY, seed=21)
    events = feed(firmware.Detector(MAGNETOMETER), times, values)
    assert states(events) == [firmware.STATE_OCCUPIED, firmware.STATE_VACANT]
    assert events[1][0] >= DRIFTING_STAY_END_MS - 2000
    assert events[1][0] <= DRIFTING_STAY_END_MS + 15000


def test_drifting_short_stay_needs_relative_stillness():
    # With the spread judged against the activity band alone, the drifting car never stands
    # still, so its return to the baseline is not a departure.
    times, values = field_segments(DRIFTING_STAY, seed=21)
    detector = firmware.Detector(dict(MAGNETOMETER, still_spread_percent=0))
    assert states(feed(detector, times, values)) == [firmware.STATE_OCCUPIED]


@pytest.mark.parametrize(
    "settings, expected",
    [
        ({}, [firmware.STATE_OCCUPIED, firmware.STATE_VACANT]),
        ({"return_nearer_percent": 0}, [firmware.STATE_OCCUPIED, firmware.STATE_VACANT]),
        ({"departure_offset_percent": 0}, [firmware.STATE_OCCUPIED]),
    ],
    ids=["defaults", "short_stay_margin_off", "departure_margin_off"],
)
def test_departure_margin_apart_from_short_stay(settings, expected):
    # Only departure_offset_percent decides whether a short exit that ends just outside the
    # level band is a departure. return_nearer_percent is the short-stay rule's margin alone.
    times, values = field_segments(NEAR_BASELINE_EXIT, seed=3)
    detector = firmware.Detector(dict(MAGNETOMETER, **settings))
    events = feed(detector, times, values)
    assert detector.decision.band < 18
    assert states(events) == expected
    if len(events) == 2:
        assert events[1][0] >= NEAR_BASELINE_EXIT_END_MS
        assert events[1][0] <= NEAR_BASELINE_EXIT_END_MS + 15000
