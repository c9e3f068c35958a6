"""The field decision's weak-departure confirmation and stood-still arrival, on synthetic traces.

The traces use test_detector.py's field_segments: a 90 ms sample period, 3 counts of noise and
(duration_ms, from_level, to_level, swing) segments. The baseline is 300 counts.
"""

from test_detector import MAGNETOMETER, feed, field_segments, firmware, states

DEFAULTS = firmware.DEFAULTS["magnetometer"]
CONFIRM_MS = DEFAULTS["departure_confirm_ms"]
OFF_DELAY_MS = DEFAULTS["off_delay_ms"]
FILTER_LAG_MS = 2000  # the two moving averages and the spread window stretch a change by about this

ARRIVAL = [(20000, 300, 300, 0), (8000, 300, 420, 120), (30000, 420, 420, 0)]
GENTLE_ARRIVAL = [(20000, 300, 300, 0), (8000, 300, 420, 30), (30000, 420, 420, 0)]
SLIDE_END_MS = 20000 + 8000 + 30000 + 8000


def test_field_weak_departure_waits_for_confirmation():
    # The field slides back to the baseline in 8 s without a swing, as a car rolling out of
    # the bay slowly gives, and then stays there. The arrival swings little beyond the parked
    # level, so the departure has no arrival swing to mirror (test_detector_mirror.py).
    segments = GENTLE_ARRIVAL + [(8000, 420, 300, 0), (20000, 300, 300, 0)]
    events = feed(firmware.Detector(MAGNETOMETER), *field_segments(segments, seed=11))
    assert states(events) == [firmware.STATE_OCCUPIED, firmware.STATE_VACANT]
    assert events[1][0] >= SLIDE_END_MS + CONFIRM_MS - FILTER_LAG_MS
    assert events[1][0] <= SLIDE_END_MS + CONFIRM_MS + FILTER_LAG_MS


def test_field_strong_departure_not_delayed():
    # The same slide with swings of 120 counts, as a car driving over the sensor gives.
    segments = ARRIVAL + [(8000, 420, 300, 120), (20000, 300, 300, 0)]
    events = feed(firmware.Detector(MAGNETOMETER), *field_segments(segments, seed=12))
    assert states(events) == [firmware.STATE_OCCUPIED, firmware.STATE_VACANT]
    assert events[1][0] <= SLIDE_END_MS + OFF_DELAY_MS + FILTER_LAG_MS


def test_field_car_rolling_back_stays_occupied():
    # The parked car rolls off the sensor, waits 5 s on the empty bay's level and rolls back.
    segments = ARRIVAL + [(8000, 420, 300, 0), (5000, 300, 300, 0), (8000, 300, 420, 0), (30000, 420, 420, 0)]
    events = feed(firmware.Detector(MAGNETOMETER), *field_segments(segments, seed=13))
    assert states(events) == [firmware.STATE_OCCUPIED]


def test_field_creeping_car_occupied_once_still():
    # A car creeps in: the field moves 50 counts in 3 s and then stays still, far off the
    # baseline, before on_delay_ms has passed since the arrival began.
    segments = [(20000, 300, 300, 0), (3000, 300, 350, 0), (30000, 350, 350, 0)]
    times, values = field_segments(segments, seed=14)
    detector = firmware.Detector(MAGNETOMETER)
    arriving_at = None
    occupied_at = None
    for now, value in zip(times, values):
        changed = detector.update(value, now)
        if arriving_at is None and detector.phase == firmware.PHASE_ARRIVING:
            arriving_at = now
        if changed and detector.state == firmware.STATE_OCCUPIED:
            occupied_at = now
            break
    assert arriving_at is not None
    assert occupied_at is not None
    assert occupied_at - arriving_at < DEFAULTS["on_delay_ms"]
