# The detector's settings: the defaults of each kind, and the checks on a board's values.
#
# Every setting is read once, when a Detector is built, and must be an integer in the range
# that its unit allows (SETTING_RANGES). docs/detector.md describes each setting.

try:
    from micropython import const
except ImportError:  # CPython

    def const(value):
        return value


# Ring sizes are fixed at start-up, and settings larger than these are rejected.
MAX_SMOOTH_SAMPLES = const(32)
MAX_ACTIVITY_SAMPLES = const(64)

# Defaults per kind. The magnetometer values were tuned on recorded parking episodes, and the
# ultrasonic values follow from a ranger's noise and a vehicle's speed (see docs/detector.md).
# A board's "detector" section overrides any of them.
DEFAULTS = {
    "ultrasonic": {
        "on_delay_ms": 2000,
        "off_delay_ms": 3000,
        "entry_min_ms": 3000,
        "exit_min_ms": 2000,
        "gap_ms": 1000,
        "fault_after_ms": 5000,
        "stuck_after_ms": 0,
        "calibration_ms": 3000,
        "calibration_spread_mm": 80,
        "level_band_min_mm": 100,
        "level_band_noise_percent": 300,
        "activity_band_min_mm": 60,
        "activity_band_noise_percent": 300,
        "activity_samples": 3,
        "drift_samples": 64,
        "valid_min_mm": 20,
        "valid_max_mm": 4500,
    },
    "magnetometer": {
        "on_delay_ms": 4500,
        "off_delay_ms": 2000,
        "exit_min_ms": 3000,
        "gap_ms": 1000,
        "fault_after_ms": 5000,
        "stuck_after_ms": 60000,
        "warmup_ms": 4000,
        "calibration_ms": 1000,
        "calibration_max_ms": 10000,
        "calibration_activity_delta": 24,
        "hold_ms": 1000,
        "return_offset_percent": 500,
        "still_spread_percent": 10,
        "return_ms": 1500,
        "return_nearer_percent": 27,
        "departure_offset_percent": 25,
        "departure_spread_percent": 250,
        "departure_overshoot_percent": 150,
        "departure_confirm_ms": 9000,
        "departure_confirm_return_percent": 100,
        "arrival_settle_ms": 700,
        "arrival_max_ms": 12000,
        "arrival_offset_percent": 90,
        "arrival_swing_delta": 8,
        "departure_mirror_min_delta": 30,
        "departure_mirror_percent": 50,
        "departure_mirror_nearer_percent": 60,
        "departure_reach_percent": 100,
        "rearm_ms": 5000,
        "creep_delta": 12,
        "creep_ms": 2000,
        "creep_samples": 256,
        "calibration_shift_delta": 25,
        "calibration_recheck_ms": 2000,
        "smooth_samples": 16,
        "second_smooth_samples": 3,
        "activity_samples": 8,
        "vacant_below_delta": 8,
        "occupied_above_delta": 75,
        "level_band_iqr_percent": 150,
        "level_band_noise_percent": 250,
        "activity_band_calibration_percent": 40,
        "activity_band_noise_percent": 200,
        "noise_samples": 32,
        "drift_samples": 32,
        "valid_min_counts": -32768,
        "valid_max_counts": 32767,
    },
    "presence": {
        "on_delay_ms": 2000,
        "off_delay_ms": 5000,
        "fault_after_ms": 5000,
        "stuck_after_ms": 0,
    },
}


# Valid range of a setting, by the unit its name ends in. The bounds keep every value, and
# a mm or counts value times a percent, inside the ESP32 port's small ints (+-2**30), and
# every time far inside ticks_diff's horizon (2**29 ms, about 6.2 days).
MAX_SETTING_MS = const(86400000)  # one day: no delay of a parking bay needs more
MAX_SETTING_MM = const(65535)  # the largest distance a 16-bit ranger register can contain
MAX_SETTING_DELTA = const(65535)  # the widest span of a 16-bit magnetometer reading
MAX_SETTING_PERCENT = const(10000)  # 100 times: 65535 * 10000 still fits a small int
MAX_AVERAGE_SAMPLES = const(65536)  # hours of samples at any supported rate
SETTING_RANGES = (
    ("_ms", 0, MAX_SETTING_MS),
    ("_mm", 0, MAX_SETTING_MM),
    ("_delta", 0, MAX_SETTING_DELTA),
    ("_percent", 0, MAX_SETTING_PERCENT),
    ("_samples", 1, MAX_AVERAGE_SAMPLES),
    ("_counts", -32768, 32767),  # the signed 16-bit reading of the supported magnetometers
)


def read_setting(settings, defaults, name, low=None, high=None):
    # Read one setting and check it, once at start-up: a float or a string would allocate on
    # every sample, and a value out of range would wrap the tick arithmetic or overflow.
    # `low` and `high`, where given, replace the range of the setting's unit, for a setting
    # that sizes a preallocated buffer or divides: every message then gives the same range.
    if name in settings:
        value = settings[name]
    elif name in defaults:
        value = defaults[name]
    else:
        raise ValueError("detector setting %s is missing: add it to the board's detector section" % name)
    for suffix, unit_low, unit_high in SETTING_RANGES:
        if name.endswith(suffix):
            break
    else:  # a name without a unit suffix: a count
        unit_low = 0
        unit_high = MAX_SETTING_DELTA
    if low is None:
        low = unit_low
    if high is None:
        high = unit_high
    # type() and not isinstance(): True and False are ints to isinstance on CPython.
    if type(value) is not int:
        raise ValueError("%s %r is not an integer: set it to a whole number in %d..%d" % (name, value, low, high))
    if not low <= value <= high:
        raise ValueError("%s %d is out of range: set it to %d..%d" % (name, value, low, high))
    return value

