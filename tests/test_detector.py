"""The bay detector on CPython: thresholds, delays, faults, baseline and transients.

test_detector_mpy.py runs the same scenarios on the MicroPython interpreter.
"""

import random

import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from baysense.replay.firmware import FirmwareLoader
from mpy import ranger_traces, scenarios
from mpy.helpers import FIRMWARE_DIR, run_micropython

# The firmware's modules import each other by bare names (firmware/ is not a package). The
# loader resolves those names to firmware/ without adding them to sys.modules.
FIRMWARE = FirmwareLoader(FIRMWARE_DIR)
firmware = FIRMWARE.load("detector")
filters = FIRMWARE.load("filters")

ULTRASONIC = {
    "kind": "ultrasonic",
    "occupied_below_mm": 1400,
    "vacant_above_mm": 1700,
    "on_delay_ms": 2000,
    "off_delay_ms": 3000,
    "fault_after_ms": 5000,
}
PERIOD_MS = 100


def feed(detector, times, values):
    """Feed samples; return the (time_ms, state) of every reported change."""
    events = []
    for now, value in zip(times, values):
        if detector.update(value, now):
            events.append((now, detector.state))
    return events


def states(events):
    return [state for _, state in events]


def _triangle(phase):
    fraction = phase % 1.0
    return 2 * fraction if fraction < 0.5 else 2 * (1 - fraction)


def field_segments(segments, period_ms=90, noise=3, seed=0):
    """Build a magnetometer trace from (duration_ms, from_level, to_level, swing) segments.

    Each segment ramps from one level to the next, with three swings of up to `swing` counts
    on top, as a vehicle's steel moving over the sensor gives.
    """
    rng = random.Random(seed)
    times, values = [], []
    now = 0
    for duration, start, end, swing in segments:
        steps = max(1, duration // period_ms)
        for step in range(steps):
            phase = step / steps
            level = start + (end - start) * phase + swing * _triangle(phase * 3)
            times.append(now)
            values.append(int(level) + rng.randint(-noise, noise))
            now += period_ms
    return times, values


def test_ultrasonic_occupied_after_on_delay():
    detector = firmware.Detector(ULTRASONIC)
    times, values = scenarios.distance_trace(PERIOD_MS, [(5000, 2500), (10000, 900), (10000, 2500)])
    events = feed(detector, times, values)
    assert states(events) == [firmware.STATE_OCCUPIED, firmware.STATE_VACANT]
    assert events[0][0] == 5000 + 2000
    assert events[1][0] == 15000 + 3000


def test_ultrasonic_short_presence_ignored():
    detector = firmware.Detector(ULTRASONIC)
    times, values = scenarios.distance_trace(PERIOD_MS, [(5000, 2500), (1500, 900), (5000, 2500)])
    assert feed(detector, times, values) == []


def test_ultrasonic_between_thresholds_keeps_state():
    detector = firmware.Detector(ULTRASONIC)
    times, values = scenarios.distance_trace(PERIOD_MS, [(5000, 900), (20000, 1550)])
    assert states(feed(detector, times, values)) == [firmware.STATE_OCCUPIED]


def test_single_fault_is_absorbed():
    detector = firmware.Detector(ULTRASONIC)
    assert not detector.fault(firmware.FAULT_NO_ECHO, 0)
    assert not detector.update(2500, 100)
    assert not detector.fault(firmware.FAULT_NO_ECHO, 6000)
    assert detector.state == firmware.STATE_VACANT


def test_lasting_fault_reported_with_reason():
    detector = firmware.Detector(ULTRASONIC)
    detector.update(2500, 0)
    changed = [detector.fault(firmware.FAULT_NO_ECHO, now) for now in range(100, 6000, 100)]
    assert changed.count(True) == 1
    assert detector.state == firmware.STATE_FAULT
    assert detector.reason == firmware.FAULT_NO_ECHO


def test_out_of_range_is_fault_not_vacant():
    detector = firmware.Detector(dict(ULTRASONIC, valid_max_mm=4000))
    times, values = scenarios.distance_trace(PERIOD_MS, [(3000, 900), (7000, 9000)])
    events = feed(detector, times, values)
    assert states(events) == [firmware.STATE_OCCUPIED, firmware.STATE_FAULT]
    assert detector.reason == firmware.FAULT_OUT_OF_RANGE


def test_recovery_from_fault_waits_for_delay():
    detector = firmware.Detector(ULTRASONIC)
    for now in range(0, 6000, 100):
        detector.fault(firmware.FAULT_NO_ECHO, now)
    assert detector.state == firmware.STATE_FAULT
    events = feed(detector, range(6000, 12000, 100), [2500] * 60)
    assert events == [(6000 + 3000, firmware.STATE_VACANT)]
    assert detector.reason == firmware.FAULT_NONE


def test_stuck_reading_is_fault():
    detector = firmware.Detector(dict(ULTRASONIC, stuck_after_ms=10000))
    times, values = scenarios.distance_trace(PERIOD_MS, [(20000, 2500)])
    events = feed(detector, times, values)
    assert states(events) == [firmware.STATE_FAULT]
    assert detector.reason == firmware.FAULT_STUCK


def test_ticks_wrap_keeps_delays():
    # Start 1 s before the ESP32 port's ticks_ms wraps at 2**30.
    start = (1 << 30) - 1000
    detector = firmware.Detector(ULTRASONIC)
    times, values = scenarios.distance_trace(PERIOD_MS, [(3000, 2500), (5000, 900)])
    wrapped = [(start + t) & ((1 << 30) - 1) for t in times]
    events = feed(detector, wrapped, values)
    assert len(events) == 1
    assert firmware.ticks_diff(events[0][0], start) == 3000 + 2000


def test_invalid_thresholds_raise():
    with pytest.raises(ValueError, match="occupied_below_mm"):
        firmware.Detector(dict(ULTRASONIC, occupied_below_mm=1800))


def test_unknown_kind_raises():
    with pytest.raises(ValueError, match="kind"):
        firmware.Detector({"kind": "lidar"})


def test_presence_debounced_by_delays():
    detector = firmware.Detector({"kind": "presence", "on_delay_ms": 1000, "off_delay_ms": 2000})
    times, values = scenarios.distance_trace(PERIOD_MS, [(2000, 0), (500, 1), (2000, 0), (3000, 1), (3000, 0)])
    assert states(feed(detector, times, values)) == [firmware.STATE_OCCUPIED, firmware.STATE_VACANT]


def test_moving_sum_over_window():
    window = filters.MovingSum(3)
    assert window.push(3) == 9  # scaled while filling: 3 * 3 / 1
    window.push(6)
    assert window.push(9) == 18
    assert window.full()
    assert window.push(12) == 27


# ---- ultrasonic: baseline, drift and vehicle transients ----------------------------------
#
# The traces come from tests/mpy/ranger_traces.py, which describes what they model: an
# HC-SR04 2600 mm above the floor, a sample every 250 ms, and cars, people and drives-through.

FLOOR = ranger_traces.FLOOR_MM
RANGER_MS = ranger_traces.PERIOD_MS
ENTRY_MIN_MS = firmware.DEFAULTS["ultrasonic"]["entry_min_ms"]


def test_ultrasonic_calibrates_empty_bay():
    detector = firmware.Detector(ULTRASONIC)
    times, values = ranger_traces.Recorder(seed=1).steady(5000).trace()
    assert feed(detector, times, values) == []
    assert detector.phase == firmware.PHASE_VACANT
    assert abs(detector.decision.baseline - FLOOR) <= ranger_traces.NOISE_MM
    assert detector.decision.band == firmware.DEFAULTS["ultrasonic"]["level_band_min_mm"]


def test_ultrasonic_hidden_car_seen_by_transients():
    # The parked car reads like the empty bay: only its entry and exit show it.
    times, values, (arrival, leaving, departure) = ranger_traces.hidden_car(seed=2)
    events = feed(firmware.Detector(ULTRASONIC), times, values)
    assert states(events) == [firmware.STATE_OCCUPIED, firmware.STATE_VACANT]
    assert arrival + ENTRY_MIN_MS <= events[0][0] <= arrival + ENTRY_MIN_MS + 1000
    assert departure <= events[1][0] <= departure + ULTRASONIC["off_delay_ms"] + 1000


def test_ultrasonic_hidden_car_jsn_sr04t_noise():
    times, values, _ = ranger_traces.hidden_car(noise_mm=ranger_traces.JSN_NOISE_MM, seed=3)
    detector = firmware.Detector(ULTRASONIC)
    events = feed(detector, times, values)
    assert states(events) == [firmware.STATE_OCCUPIED, firmware.STATE_VACANT]
    # The activity band grew with the learned noise, above its floor.
    assert detector.decision.activity_band > firmware.DEFAULTS["ultrasonic"]["activity_band_min_mm"]


def test_ultrasonic_drive_through_ignored():
    times, values = ranger_traces.drive_through(seed=4)
    assert feed(firmware.Detector(ULTRASONIC), times, values) == []


def test_ultrasonic_walk_through_ignored():
    times, values = ranger_traces.walk_through(seed=5)
    assert feed(firmware.Detector(ULTRASONIC), times, values) == []


def test_ultrasonic_person_beside_hidden_car():
    # A person walks under the sensor while the car is parked: too short for an exit.
    recorder = ranger_traces.Recorder(seed=6).steady(10000).swing(5000).steady(30000)
    recorder.passer(1400).steady(30000)
    events = feed(firmware.Detector(ULTRASONIC), *recorder.trace())
    assert states(events) == [firmware.STATE_OCCUPIED]


def test_ultrasonic_low_bonnet_seen_by_level():
    # 1850 mm is beyond vacant_above_mm (1700), but 750 mm short of the learned floor.
    recorder = ranger_traces.Recorder(seed=7).steady(10000).steady(20000, ranger_traces.BONNET_MM).steady(20000)
    events = feed(firmware.Detector(ULTRASONIC), *recorder.trace())
    assert states(events) == [firmware.STATE_OCCUPIED, firmware.STATE_VACANT]
    assert events[0][0] == 10000 + ULTRASONIC["on_delay_ms"]
    assert events[1][0] == 30000 + ULTRASONIC["off_delay_ms"]


def test_ultrasonic_drift_followed_while_vacant():
    # The air warms by about 9 degrees over 10 min: the floor reads 40 mm nearer.
    recorder = ranger_traces.Recorder(seed=8).steady(10000).drift(600000, FLOOR, FLOOR - 40).steady(20000, FLOOR - 40)
    detector = firmware.Detector(ULTRASONIC)
    assert feed(detector, *recorder.trace()) == []
    assert abs(detector.decision.baseline - (FLOOR - 40)) <= ranger_traces.NOISE_MM


def test_ultrasonic_no_drift_while_occupied():
    recorder = ranger_traces.Recorder(seed=9).steady(10000).steady(600000, 2200)
    detector = firmware.Detector(ULTRASONIC)
    assert states(feed(detector, *recorder.trace())) == [firmware.STATE_OCCUPIED]
    assert abs(detector.decision.baseline - FLOOR) <= ranger_traces.NOISE_MM


def test_ultrasonic_car_at_boot_not_learned():
    # A car is parked under the sensor at boot, then leaves, and only then is the floor learned.
    recorder = ranger_traces.Recorder(seed=10).steady(20000, 900).swing(3000).steady(20000)
    detector = firmware.Detector(ULTRASONIC)
    times, values = recorder.trace()
    events = feed(detector, times[:80], values[:80])
    assert states(events) == [firmware.STATE_OCCUPIED]
    assert detector.phase == firmware.PHASE_CALIBRATING
    assert states(feed(detector, times[80:], values[80:])) == [firmware.STATE_VACANT]
    assert abs(detector.decision.baseline - FLOOR) <= ranger_traces.NOISE_MM


def test_ultrasonic_calibrate_relearns_floor():
    detector = firmware.Detector(ULTRASONIC)
    feed(detector, *ranger_traces.Recorder(seed=11).steady(10000).trace())
    detector.calibrate()
    assert detector.phase == firmware.PHASE_CALIBRATING
    moved = ranger_traces.Recorder(seed=12, start_ms=10000).steady(10000, 3000).trace()
    assert feed(detector, *moved) == []
    assert abs(detector.decision.baseline - 3000) <= ranger_traces.NOISE_MM


def test_ultrasonic_fault_keeps_baseline():
    # The low bonnet stays through an 8 s loss of echoes: occupied again, on the old
    # baseline, because the absolute thresholds alone would read 1850 mm as vacant.
    recorder = ranger_traces.Recorder(seed=13).steady(10000).steady(60000, ranger_traces.BONNET_MM)
    detector = firmware.Detector(ULTRASONIC)
    events = []
    for now, value in zip(*recorder.trace()):
        if 30000 <= now < 38000:
            changed = detector.fault(firmware.FAULT_NO_ECHO, now)
        else:
            changed = detector.update(value, now)
        if changed:
            events.append((now, detector.state))
    assert states(events) == [firmware.STATE_OCCUPIED, firmware.STATE_FAULT, firmware.STATE_OCCUPIED]
    assert events[2][0] == 38000 + ULTRASONIC["on_delay_ms"]


def test_ultrasonic_no_echo_under_hidden_car_is_fault():
    times, values, (arrival, leaving, _) = ranger_traces.hidden_car(seed=14)
    detector = firmware.Detector(ULTRASONIC)
    events = []
    for now, value in zip(times, values):
        if now >= leaving - 10000:
            changed = detector.fault(firmware.FAULT_NO_ECHO, now)
        else:
            changed = detector.update(value, now)
        if changed:
            events.append((now, detector.state))
    assert states(events) == [firmware.STATE_OCCUPIED, firmware.STATE_FAULT]
    assert detector.reason == firmware.FAULT_NO_ECHO


def test_invalid_activity_samples_raise():
    with pytest.raises(ValueError, match="activity_samples"):
        firmware.Detector(dict(ULTRASONIC, activity_samples=1))


# Settings a node cannot use, and the message each must give: the key, the value, the range.
BAD_SETTINGS = {
    "negative delay": ({"on_delay_ms": -5}, "on_delay_ms -5 is out of range: set it to 0..86400000"),
    "delay as text": ({"on_delay_ms": "2000"}, "on_delay_ms '2000' is not an integer: set it to a whole number in 0..86400000"),
    "delay as float": ({"on_delay_ms": 2.5}, "on_delay_ms 2.5 is not an integer: set it to a whole number in 0..86400000"),
    "delay as bool": ({"off_delay_ms": True}, "off_delay_ms True is not an integer"),
    "delay past ticks": ({"on_delay_ms": 99999999999999999}, "on_delay_ms 99999999999999999 is out of range: set it to 0..86400000"),
    "negative percent": ({"level_band_noise_percent": -1}, "level_band_noise_percent -1 is out of range: set it to 0..10000"),
    "huge distance": ({"valid_max_mm": 1 << 40}, "valid_max_mm 1099511627776 is out of range: set it to 0..65535"),
    "zero drift samples": ({"drift_samples": 0}, "drift_samples 0 is out of range: set it to 1..65536"),
    "activity window": ({"activity_samples": 1000}, "activity_samples 1000 is out of range: set it to 2..64"),
}


@pytest.mark.parametrize("change, message", BAD_SETTINGS.values(), ids=BAD_SETTINGS.keys())
def test_settings_rejected_with_range(change, message):
    with pytest.raises(ValueError) as raised:
        firmware.Detector(dict(ULTRASONIC, **change))
    assert message in str(raised.value)


def test_required_threshold_missing_named():
    settings = dict(ULTRASONIC)
    del settings["occupied_below_mm"]
    with pytest.raises(ValueError) as raised:
        firmware.Detector(settings)
    assert str(raised.value) == "detector setting occupied_below_mm is missing: add it to the board's detector section"


def test_magnetometer_settings_checked():
    with pytest.raises(ValueError) as raised:
        firmware.Detector({"kind": "magnetometer", "valid_min_counts": -40000})
    assert str(raised.value) == "valid_min_counts -40000 is out of range: set it to -32768..32767"
    with pytest.raises(ValueError) as raised:
        firmware.Detector({"kind": "magnetometer", "smooth_samples": 33})
    assert str(raised.value) == "smooth_samples 33 is out of range: set it to 1..32"


@pytest.mark.parametrize("name", ["level_band_noise_percent", "activity_band_noise_percent"])
def test_zero_noise_percent_rejected(name):
    # The calibration divides by this percent, so 0 must fail at start-up, not mid-calibration.
    with pytest.raises(ValueError) as raised:
        firmware.Detector({"kind": "magnetometer", name: 0})
    assert str(raised.value) == "%s 0 is out of range: set it to 1..10000" % name

    source = (
        "from detector import Detector\n"
        "try:\n"
        "    Detector({'kind': 'magnetometer', %r: 0})\n"
        "    print('accepted')\n"
        "except ValueError as error:\n"
        "    print(error)\n" % name
    )
    assert run_micropython(source).strip() == "%s 0 is out of range: set it to 1..10000" % name


def test_unknown_kind_names_choices():
    with pytest.raises(ValueError) as raised:
        firmware.Detector({"kind": "lidar"})
    assert str(raised.value) == "detector kind 'lidar' is unknown: set it to one of ultrasonic, magnetometer, presence"


def test_valid_settings_kept_unchanged():
    # The check must not change a value it accepts, nor the defaults of a key left out.
    detector = firmware.Detector(dict(ULTRASONIC, on_delay_ms=0, valid_max_mm=65535, stuck_after_ms=86400000))
    assert detector.decision.on_delay_ms == 0
    assert detector.decision.off_delay_ms == 3000
    assert detector.valid_max == 65535
    assert detector.stuck_after_ms == 86400000
    assert detector.decision.entry_min_ms == firmware.DEFAULTS["ultrasonic"]["entry_min_ms"]


def test_every_default_in_range():
    # A default outside its own range would stop every node of that kind at start-up.
    for kind in firmware.KINDS:
        settings = {"kind": kind, "occupied_below_mm": 1400, "vacant_above_mm": 1700}
        assert firmware.Detector(settings).kind == kind


def test_settings_rejected_on_micropython():
    # The node runs the check on MicroPython, so its messages must match there too.
    source = (
        "from detector import Detector\n"
        "base = {'kind': 'ultrasonic', 'occupied_below_mm': 1400, 'vacant_above_mm': 1700}\n"
        "for change in ({'on_delay_ms': -5}, {'on_delay_ms': '2000'}, {'on_delay_ms': 2.5},\n"
        "               {'on_delay_ms': 99999999999999999}, {'gap_ms': True}):\n"
        "    settings = dict(base)\n"
        "    settings.update(change)\n"
        "    try:\n"
        "        Detector(settings)\n"
        "        print('accepted')\n"
        "    except ValueError as error:\n"
        "        print(error)\n"
    )
    lines = run_micropython(source).splitlines()
    assert lines == [
        "on_delay_ms -5 is out of range: set it to 0..86400000",
        "on_delay_ms '2000' is not an integer: set it to a whole number in 0..86400000",
        "on_delay_ms 2.5 is not an integer: set it to a whole number in 0..86400000",
        "on_delay_ms 99999999999999999 is out of range: set it to 0..86400000",
        "gap_ms True is not an integer: set it to a whole number in 0..86400000",
    ]


@hypothesis_settings(max_examples=40, deadline=None)
@given(
    entry_ms=st.integers(4000, 6000),
    parked_ms=st.integers(10000, 120000),
    exit_ms=st.integers(3000, 5000),
    noise=st.integers(0, ranger_traces.JSN_NOISE_MM),
    seed=st.integers(0, 10000),
)
def test_hidden_car_one_episode(entry_ms, parked_ms, exit_ms, noise, seed):
    times, values, _ = ranger_traces.hidden_car(entry_ms, parked_ms, exit_ms, noise_mm=noise, seed=seed)
    events = feed(firmware.Detector(ULTRASONIC), times, values)
    assert states(events) == [firmware.STATE_OCCUPIED, firmware.STATE_VACANT]


@hypothesis_settings(max_examples=40, deadline=None)
@given(
    car_ms=st.integers(500, 2100),
    person_ms=st.integers(300, 1400),
    person_mm=st.integers(800, 1500),
    noise=st.integers(0, ranger_traces.JSN_NOISE_MM),
    seed=st.integers(0, 10000),
)
def test_passers_by_no_events(car_ms, person_ms, person_mm, noise, seed):
    # A car driving through at 10 km/h or faster, then a person walking through.
    recorder = ranger_traces.Recorder(noise_mm=noise, seed=seed).steady(10000).swing(car_ms).steady(10000)
    recorder.passer(person_ms, person_mm).steady(10000)
    assert feed(firmware.Detector(ULTRASONIC), *recorder.trace()) == []


@hypothesis_settings(max_examples=40, deadline=None)
@given(
    parked_mm=st.integers(800, FLOOR - 150),
    parked_ms=st.integers(3000, 60000),
    noise=st.integers(0, ranger_traces.JSN_NOISE_MM),
    seed=st.integers(0, 10000),
)
def test_visible_car_one_episode(parked_mm, parked_ms, noise, seed):
    # Any steady distance 150 mm or more short of the floor is a car, at or beyond 1700 mm too.
    recorder = ranger_traces.Recorder(noise_mm=noise, seed=seed).steady(10000).swing(2000)
    recorder.steady(parked_ms, parked_mm).swing(2000).steady(20000)
    events = feed(firmware.Detector(ULTRASONIC), *recorder.trace())
    assert states(events) == [firmware.STATE_OCCUPIED, firmware.STATE_VACANT]


# ---- magnetometer ------------------------------------------------------------------------

MAGNETOMETER = {"kind": "magnetometer"}


def test_field_parked_car_with_shift():
    times, values, (arrival, leaving, departure) = scenarios.field_trace(seed=1)
    events = feed(firmware.Detector(MAGNETOMETER), times, values)
    assert states(events) == [firmware.STATE_OCCUPIED, firmware.STATE_VACANT]
    assert arrival <= events[0][0] <= arrival + 15000
    assert leaving <= events[1][0] <= departure + 15000


def test_field_parked_car_without_shift():
    # Only the entry and exit transients show this car.
    times, values, (arrival, leaving, departure) = scenarios.field_trace(shift=0, seed=2)
    events = feed(firmware.Detector(MAGNETOMETER), times, values)
    assert states(events) == [firmware.STATE_OCCUPIED, firmware.STATE_VACANT]
    assert arrival <= events[0][0] <= arrival + 15000
    assert leaving <= events[1][0] <= departure + 15000


def test_field_passing_car_ignored():
    # A 2 s pass: the filters stretch it by about 2 s, still short of on_delay_ms (4.5 s).
    times, values = scenarios.passing_trace(pass_ms=2000, dip=200, seed=3)
    assert feed(firmware.Detector(MAGNETOMETER), times, values) == []


def test_field_calibrate_relearns_baseline():
    detector = firmware.Detector(MAGNETOMETER)
    times, values = scenarios.distance_trace(90, [(20000, 300)], noise_mm=3)
    feed(detector, times, values)
    assert abs(detector.decision.baseline - 300) <= 3
    detector.calibrate()
    assert detector.phase == firmware.PHASE_CALIBRATING
    later, moved = scenarios.distance_trace(90, [(20000, 900)], noise_mm=3, seed=4)
    events = feed(detector, [t + 20000 for t in later], moved)
    assert events == []
    assert abs(detector.decision.baseline - 900) <= 3


def test_field_stuck_sensor_is_fault():
    detector = firmware.Detector(MAGNETOMETER)
    times, values = scenarios.distance_trace(90, [(10000, 300)], noise_mm=3)
    feed(detector, times, values)
    stuck_times = range(10000, 10000 + 70000, 90)
    events = feed(detector, stuck_times, [301] * len(stuck_times))
    assert states(events) == [firmware.STATE_FAULT]
    assert detector.reason == firmware.FAULT_STUCK


def test_field_short_stay_reported():
    # 2.5 s in, 2 s standing 200 counts off the baseline, 2 s out: the field never settles
    # for off_delay_ms, so only its return to the baseline shows the departure.
    segments = [(20000, 300, 300, 0), (2500, 300, 500, 80), (2000, 500, 500, 0), (2000, 500, 300, 80), (20000, 300, 300, 0)]
    times, values = field_segments(segments, seed=1)
    events = feed(firmware.Detector(MAGNETOMETER), times, values)
    assert states(events) == [firmware.STATE_OCCUPIED, firmware.STATE_VACANT]
    assert 20000 <= events[0][0] <= 20000 + 15000
    assert 26500 <= events[1][0] <= 26500 + 15000


def test_field_calibration_skips_transient():
    # A vehicle passes 3.5 s after start-up, inside the warm-up and calibration time.
    segments = [(3500, 300, 300, 0), (2000, 300, 300, 150), (20000, 300, 300, 0), (8000, 300, 380, 120), (30000, 380, 380, 0)]
    times, values = field_segments(segments, seed=2)
    detector = firmware.Detector(MAGNETOMETER)
    events = feed(detector, times, values)
    assert abs(detector.decision.baseline - 300) <= 3
    assert states(events) == [firmware.STATE_OCCUPIED]
    assert 25500 <= events[0][0] <= 25500 + 15000


def test_field_departure_ending_near_baseline():
    # The car stood 120 counts off; after a 2 s exit the field ends 18 counts off the old
    # baseline: outside the level band, but much nearer to the baseline than to the car.
    segments = [(20000, 300, 300, 0), (8000, 300, 420, 120), (30000, 420, 420, 0), (2000, 420, 318, 60), (20000, 318, 318, 0)]
    times, values = field_segments(segments, seed=3)
    detector = firmware.Detector(MAGNETOMETER)
    events = feed(detector, times, values)
    assert detector.decision.band < 18
    assert states(events) == [firmware.STATE_OCCUPIED, firmware.STATE_VACANT]
    assert 58000 <= events[1][0] <= 60000 + 15000


def test_field_move_far_off_baseline_not_departure():
    # A car standing on the empty bay's level moves for 6 s and ends 150 counts off it,
    # beyond occupied_above_delta (75): still a car, however long the transient.
    segments = [(20000, 300, 300, 0), (8000, 300, 300, 120), (30000, 300, 300, 0), (6000, 300, 450, 120), (30000, 450, 450, 0)]
    times, values = field_segments(segments, seed=4)
    events = feed(firmware.Detector(MAGNETOMETER), times, values)
    assert states(events) == [firmware.STATE_OCCUPIED]


def test_field_no_arrival_right_after_departure():
    # The departing car swings the field again 2 s after vacant is reported, for 5 s.
    segments = [
        (20000, 300, 300, 0),
        (8000, 300, 420, 120),
        (30000, 420, 420, 0),
        (8000, 420, 300, 120),
        (5000, 300, 300, 0),
        (5000, 300, 300, 100),
        (20000, 300, 300, 0),
    ]
    times, values = field_segments(segments, seed=5)
    detector = firmware.Detector(dict(MAGNETOMETER, rearm_ms=5000))
    assert states(feed(detector, times, values)) == [firmware.STATE_OCCUPIED, firmware.STATE_VACANT]


# ---- properties --------------------------------------------------------------------------


@hypothesis_settings(max_examples=60, deadline=None)
@given(
    vacant_ms=st.integers(1000, 20000),
    present_ms=st.integers(0, 30000),
    distance=st.integers(300, 1300),
    noise=st.integers(0, 90),
)
def test_vehicle_longer_than_on_delay_one_occupied(vacant_ms, present_ms, distance, noise):
    # Noise stays inside the threshold band: readings never cross 1400 mm while present.
    presence = ULTRASONIC["on_delay_ms"] + PERIOD_MS + present_ms
    times, values = scenarios.distance_trace(PERIOD_MS, [(vacant_ms, 2500), (presence, distance)], noise, seed=present_ms)
    events = feed(firmware.Detector(ULTRASONIC), times, values)
    assert states(events) == [firmware.STATE_OCCUPIED]


@hypothesis_settings(max_examples=60, deadline=None)
@given(level=st.integers(1800, 3800), noise=st.integers(0, 90), seed=st.integers(0, 1000))
def test_distance_noise_in_band_no_events(level, noise, seed):
    times, values = scenarios.distance_trace(PERIOD_MS, [(30000, level)], noise, seed=seed)
    assert feed(firmware.Detector(ULTRASONIC), times, values) == []


@hypothesis_settings(max_examples=15, deadline=None)
@given(baseline=st.integers(-2000, 2000), noise=st.integers(1, 8), seed=st.integers(0, 10000))
def test_field_noise_in_band_no_events(baseline, noise, seed):
    # noise >= 1: a reading that never changes is a stuck sensor, reported as a fault.
    times, values = scenarios.distance_trace(90, [(60000, baseline)], noise, seed=seed)
    assert feed(firmware.Detector(MAGNETOMETER), times, values) == []


@hypothesis_settings(max_examples=15, deadline=None)
@given(
    shift=st.sampled_from([0, 30, -30, 80, -80, 200]),
    swing=st.integers(100, 300),
    parked_ms=st.integers(20000, 60000),
    noise=st.integers(1, 5),
    seed=st.integers(0, 10000),
)
def test_field_parked_vehicle_one_episode(shift, swing, parked_ms, noise, seed):
    times, values, _ = scenarios.field_trace(shift=shift, swing=swing, parked_ms=parked_ms, noise=noise, seed=seed)
    events = feed(firmware.Detector(MAGNETOMETER), times, values)
    assert states(events) == [firmware.STATE_OCCUPIED, firmware.STATE_VACANT]


def test_field_fault_recovery_keeps_parked_car():
    # A parked car, a 6 s I2C outage, then the same field: occupied again, never vacant.
    detector = firmware.Detector(MAGNETOMETER)
    times, values, (arrival, leaving, _) = scenarios.field_trace(shift=80, parked_ms=60000, seed=6)
    outage_start = arrival + 30000
    events = []
    for now, value in zip(times, values):
        if now >= leaving:
            break
        if outage_start <= now < outage_start + 6000:
            changed = detector.fault(firmware.FAULT_BUS, now)
        else:
            changed = detector.update(value, now)
        if changed:
            events.append((now, detector.state))
    assert states(events) == [firmware.STATE_OCCUPIED, firmware.STATE_FAULT, firmware.STATE_OCCUPIED]
    assert detector.reason == firmware.FAULT_NONE


def test_field_fault_recovery_to_vacant():
    detector = firmware.Detector(MAGNETOMETER)
    times, values = scenarios.distance_trace(90, [(60000, 300)], noise_mm=3, seed=7)
    events = []
    for now, value in zip(times, values):
        if 20000 <= now < 27000:
            changed = detector.fault(firmware.FAULT_BUS, now)
        else:
            changed = detector.update(value, now)
        if changed:
            events.append((now, detector.state))
    assert states(events) == [firmware.STATE_FAULT, firmware.STATE_VACANT]
    assert events[1][0] < 27000 + 6000  # filters refilled plus off_delay_ms, no recalibration


def test_field_creeping_car_occupied():
    # The car creeps in: the field ramps 35 counts over 4 s with no swing, too slowly for the
    # spread to pass the activity band, and then stays. Drift tracking alone would follow it.
    segments = [(20000, 300, 300, 0), (4000, 300, 335, 0), (30000, 335, 335, 0)]
    times, values = field_segments(segments, seed=7)
    events = feed(firmware.Detector(MAGNETOMETER), times, values)
    assert states(events) == [firmware.STATE_OCCUPIED]
    assert 20000 <= events[0][0] <= 20000 + 15000


def test_field_slow_drift_not_arrival():
    # The empty bay's field drifts 40 counts in 10 minutes, as with temperature: no arrival.
    segments = [(20000, 300, 300, 0), (600000, 300, 340, 0), (20000, 340, 340, 0)]
    times, values = field_segments(segments, seed=8)
    assert feed(firmware.Detector(MAGNETOMETER), times, values) == []


def test_field_arrival_during_calibration():
    # The car arrives 2.5 s after start, while the calibration still runs, and parks 60
    # counts off the empty bay's field: the calibration must not learn it as the baseline.
    segments = [(2500, 300, 300, 0), (3000, 300, 360, 20), (25000, 360, 360, 0), (4000, 360, 300, 30), (20000, 300, 300, 0)]
    times, values = field_segments(segments, seed=9)
    events = feed(firmware.Detector(MAGNETOMETER), times, values)
    assert states(events) == [firmware.STATE_OCCUPIED, firmware.STATE_VACANT]
    assert events[0][0] <= 2500 + 15000
    assert 30500 <= events[1][0] <= 34500 + 15000


def test_field_pass_during_calibration_ignored():
    # A car drives over the sensor 2.5 s after start: the field swings up as it comes and
    # down as it goes, then comes back. (A swing one way only is what a car parked with no
    # offset does.)
    segments = [(2500, 300, 300, 0), (1250, 300, 300, 60), (1250, 300, 300, -60), (20000, 300, 300, 0)]
    times, values = field_segments(segments, seed=10)
    assert feed(firmware.Detector(MAGNETOMETER), times, values) == []
