"""The field decision's arrival rules against vehicles driving through, on synthetic and padded traces.

The synthetic traces use test_detector.py's field_segments: a 90 ms sample period, 3 counts of
noise and (duration_ms, from_level, to_level, swing) segments. The baseline is 300 counts. A
positive swing lifts the field by up to that many counts three times within the segment, and a
negative one lowers it.
"""

import pytest

from baysense import boards
from baysense.replay.traces import expand_paths, read_trace
from mpy.helpers import DATA_DIR
from test_detector import MAGNETOMETER, feed, field_segments, firmware, states
from test_detector_mpy import _heap_lock_run

OCCUPIED = firmware.STATE_OCCUPIED

# The arrival rules as they were before arrival_settle_ms: occupied once on_delay_ms has passed.
WITHOUT_SETTLE = dict(MAGNETOMETER, arrival_settle_ms=0)

QUIET = (20000, 300, 300, 0)
ARRIVAL_MS = 20000

# One vehicle drives over the sensor in 4 s: up by 60 counts as it comes, down by 60 as it goes.
LONG_PASS = [QUIET, (2000, 300, 300, 60), (2000, 300, 300, -60), (30000, 300, 300, 0)]

# Two vehicles 1.5 s apart, each swinging the field both ways.
CONVOY = [
    QUIET,
    (1500, 300, 300, 60),
    (1500, 300, 300, -60),
    (1500, 300, 300, 0),
    (1500, 300, 300, 50),
    (1500, 300, 300, -50),
    (30000, 300, 300, 0),
]

# A car that parks with no offset: its arrival lowers the field for 4 s, and the field ends
# back on the baseline.
ZERO_OFFSET_CAR = [QUIET, (4000, 300, 300, -60), (30000, 300, 300, 0)]

# A car that manoeuvres for 8 s and parks 100 counts off the baseline.
PARKING = [QUIET, (8000, 300, 400, 80), (30000, 400, 400, 0)]
PARKED_AT_MS = ARRIVAL_MS + 8000

# A car that keeps the field swinging both ways about the baseline for 20 s, longer than
# arrival_max_ms. The field then moves to 60 counts off the baseline over 30 s.
LONG_MANOEUVRE = [QUIET] + [(2000, 300, 300, 80 if i % 2 else -80) for i in range(10)] + [(30000, 300, 360, 0)]

# The RDVD traffic recordings, each with its own first 1.5 s repeated in front for this long,
# so that both passes of every file come after the calibration.
TRAFFIC_LEADS_MS = (8000, 12000, 20000)
LEAD_SOURCE_MS = 1500
PADDED_PERIOD_MS = 90
# Files (of 180) with a false occupied at the defaults, measured when the rules were tuned.
PADDED_FALSE_OCCUPIED_MAX = 10

RDVD_TRAFFIC = DATA_DIR / "magnetic" / "rdvd" / "traffic"


def test_long_pass_not_occupied():
    times, values = field_segments(LONG_PASS, seed=41)
    assert feed(firmware.Detector(MAGNETOMETER), times, values) == []


def test_long_pass_occupied_without_settle():
    # The same pass is present for longer than on_delay_ms minus gap_ms.
    times, values = field_segments(LONG_PASS, seed=41)
    assert states(feed(firmware.Detector(WITHOUT_SETTLE), times, values)) == [OCCUPIED]


def test_convoy_not_occupied():
    times, values = field_segments(CONVOY, seed=42)
    assert feed(firmware.Detector(MAGNETOMETER), times, values) == []


def test_convoy_occupied_without_swing_test():
    # With the both-ways test off, a field that settles on the baseline is a car parked with no
    # offset, so the convoy reads as one.
    times, values = field_segments(CONVOY, seed=42)
    detector = firmware.Detector(dict(MAGNETOMETER, arrival_swing_delta=0))
    assert states(feed(detector, times, values)) == [OCCUPIED]


def test_zero_offset_car_occupied():
    times, values = field_segments(ZERO_OFFSET_CAR, seed=43)
    events = feed(firmware.Detector(MAGNETOMETER), times, values)
    assert states(events) == [OCCUPIED]
    assert events[0][0] <= ARRIVAL_MS + 15000


def test_parked_car_occupied_once_settled():
    times, values = field_segments(PARKING, seed=44)
    events = feed(firmware.Detector(MAGNETOMETER), times, values)
    assert states(events) == [OCCUPIED]
    assert events[0][0] >= PARKED_AT_MS
    assert events[0][0] <= PARKED_AT_MS + 15000


def test_long_manoeuvre_occupied_at_max():
    times, values = field_segments(LONG_MANOEUVRE, seed=45)
    settings = firmware.DEFAULTS["magnetometer"]
    events = feed(firmware.Detector(MAGNETOMETER), times, values)
    assert states(events) == [OCCUPIED]
    assert events[0][0] >= ARRIVAL_MS + settings["arrival_max_ms"]
    assert events[0][0] <= ARRIVAL_MS + settings["arrival_max_ms"] + 2000


def padded_traffic(traffic_dir, leads_ms=TRAFFIC_LEADS_MS):
    """Yield (name, times, values) for every traffic file and lead, built in memory."""
    for path in expand_paths([traffic_dir]):
        trace = read_trace(path)
        start = trace.times_ms[0]
        source = [value for time, value in zip(trace.times_ms, trace.values) if time - start < LEAD_SOURCE_MS]
        for lead_ms in leads_ms:
            count = lead_ms // PADDED_PERIOD_MS
            lead = (source * (count // len(source) + 1))[:count]
            values = lead + list(trace.values)
            times = [i * PADDED_PERIOD_MS for i in range(len(values))]
            yield "%s+%dms" % (path.name, lead_ms), times, values


def count_false_occupied(settings, leads_ms=TRAFFIC_LEADS_MS):
    """Return the names of the padded traffic files in which `settings` report an occupied."""
    files = []
    for name, times, values in padded_traffic(RDVD_TRAFFIC, leads_ms):
        if OCCUPIED in states(feed(firmware.Detector(settings), times, values)):
            files.append(name)
    return files


@pytest.mark.skipif(not RDVD_TRAFFIC.is_dir(), reason="RDVD traffic recordings not found at %s" % RDVD_TRAFFIC)
def test_padded_traffic_false_occupied():
    settings = dict(boards.load("esp32c3-qmc5883l")["detector"], kind="magnetometer")
    with_settle = count_false_occupied(settings)
    without_settle = count_false_occupied(dict(settings, arrival_settle_ms=0))
    assert len(with_settle) <= PADDED_FALSE_OCCUPIED_MAX, with_settle
    assert len(without_settle) > len(with_settle)


def test_pass_rules_allocate_nothing():
    # A long pass, a convoy, a car parked with no offset and a car that manoeuvres for longer
    # than arrival_max_ms, on the MicroPython unix port under the heap lock.
    values = []
    for segments, seed in ((LONG_PASS, 41), (CONVOY[1:], 42), (ZERO_OFFSET_CAR[1:], 43)):
        values += field_segments(segments, seed=seed)[1]
    # The signal's list literal alone needs more than an ESP32-sized heap to parse.
    changes, state = _heap_lock_run(MAGNETOMETER, values, [0] * len(values), 90, heapsize="512K")
    assert changes == 1  # occupied (the car with no offset), which stays parked
    assert state == OCCUPIED
