# Occupancy decision for one parking bay, one reading per sample.
#
# Runs on MicroPython (the node) and on CPython (host tests and replay checks). The per-sample
# path (update, fault) uses small integers and preallocated arrays only: a float is a heap
# object on the ESP32 port, and this path runs for every sample, so it must not allocate.
# docs/detector.md describes the settings, the state machine and how the defaults were chosen.

from array import array

try:
    from micropython import const
except ImportError:  # CPython

    def const(value):
        return value


try:
    from time import ticks_diff
except ImportError:  # CPython: the same wrapping arithmetic as ticks_diff on the ESP32 port
    _TICKS_PERIOD = 1 << 30
    _TICKS_HALF = 1 << 29

    def ticks_diff(end, start):
        return ((end - start + _TICKS_HALF) & (_TICKS_PERIOD - 1)) - _TICKS_HALF


# Same numbers as STATE_* in protocol.py, repeated so the detector runs without the frame code.
STATE_VACANT = const(0)
STATE_OCCUPIED = const(1)
STATE_FAULT = const(2)
STATE_NAMES = ("vacant", "occupied", "fault")

# Fault reasons, sent in the reason byte of a state frame.
FAULT_NONE = const(0)
FAULT_NO_ECHO = const(1)  # ultrasonic: no echo edge before the echo timeout
FAULT_OUT_OF_RANGE = const(2)  # a reading outside the valid range set for the sensor
FAULT_STUCK = const(3)  # the reading has not changed for stuck_after_ms
FAULT_BUS = const(4)  # an I2C read or write failed
FAULT_NO_DATA = const(5)  # no sample arrived in time (data-ready pin or ranger silent)
FAULT_OVERFLOW = const(6)  # the magnetometer flagged a measurement overflow
FAULT_EDGES_DROPPED = const(7)  # ultrasonic: echo edges lost, so no ping of the sample was valid
FAULT_NAMES = ("none", "no echo", "out of range", "stuck", "bus error", "no data", "overflow", "edges dropped")

KIND_ULTRASONIC = "ultrasonic"
KIND_MAGNETOMETER = "magnetometer"
KIND_PRESENCE = "presence"
KINDS = (KIND_ULTRASONIC, KIND_MAGNETOMETER, KIND_PRESENCE)

# Phases of the field state machine (magnetometer). The reported state is derived from them.
PHASE_CALIBRATING = const(0)
PHASE_VACANT = const(1)
PHASE_ARRIVING = const(2)
PHASE_OCCUPIED = const(3)
PHASE_LEAVING = const(4)
PHASE_NAMES = ("calibrating", "vacant", "arriving", "occupied", "leaving")

_NO_WISH = const(-1)
_FIXED_SHIFT = const(8)
_SETTLE_SHIFT = const(3)  # baseline follows 1/8 of the gap per sample while it settles  # baselines are kept in 1/256 count so slow drift is not rounded away

# Ring sizes are fixed at start-up; settings larger than these are rejected.
MAX_SMOOTH_SAMPLES = const(32)
MAX_ACTIVITY_SAMPLES = const(64)
MAX_CALIBRATION_SAMPLES = const(96)

DEFAULTS = {
    "ultrasonic": {
        "on_delay_ms": 2000,
        "off_delay_ms": 3000,
        "fault_after_ms": 5000,
        "stuck_after_ms": 0,
        "valid_min_mm": 20,
        "valid_max_mm": 4500,
    },
    "magnetometer": {
        "on_delay_ms": 6000,
        "quiet_ms": 1500,
        "exit_min_ms": 4000,
        "fault_after_ms": 5000,
        "stuck_after_ms": 60000,
        "calibration_ms": 2000,
        "calibration_max_ms": 3500,
        "warmup_ms": 1500,
        "settle_ms": 8000,
        "gap_ms": 1000,
        "band_noise_percent": 200,
        "noise_samples": 32,
        "smooth_samples": 5,
        "second_smooth_samples": 3,
        "activity_samples": 8,
        "band_min_counts": 12,
        "band_spread_percent": 200,
        "drift_samples": 256,
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


def _setting(settings, defaults, name):
    if name in settings:
        return int(settings[name])
    return int(defaults[name])


def _power_of_two_at_least(count):
    shift = 0
    while (1 << shift) < count:
        shift += 1
    return shift


class MovingSum:
    """Sum of the last `size` values, in a preallocated ring; push() allocates nothing."""

    def __init__(self, size):
        self.size = size
        self._ring = array("i", [0] * size)
        self.clear()

    def clear(self):
        self._count = 0
        self._index = 0
        self._sum = 0

    def full(self):
        return self._count == self.size

    def push(self, value):
        """Add a value; return the sum over the window, scaled up while it is still filling."""
        ring = self._ring
        index = self._index
        if self._count < self.size:
            self._count += 1
        else:
            self._sum -= ring[index]
        ring[index] = value
        self._sum += value
        index += 1
        if index == self.size:
            index = 0
        self._index = index
        if self._count < self.size:
            return self._sum * self.size // self._count
        return self._sum


class Detector:
    """Vacant/occupied/fault decision for one bay, with time hysteresis.

    `settings` is a board's "detector" section plus "kind"; missing keys take DEFAULTS[kind].
    After __init__, update() and fault() allocate nothing.
    """

    def __init__(self, settings):
        kind = settings.get("kind", KIND_ULTRASONIC)
        if kind not in KINDS:
            raise ValueError("detector kind %r is not one of %s" % (kind, ", ".join(KINDS)))
        self.kind = kind
        defaults = DEFAULTS[kind]
        self.on_delay_ms = _setting(settings, defaults, "on_delay_ms")
        self.fault_after_ms = _setting(settings, defaults, "fault_after_ms")
        self.stuck_after_ms = _setting(settings, defaults, "stuck_after_ms")

        self.state = STATE_VACANT
        self.reason = FAULT_NONE
        self.value = 0
        self.phase = PHASE_VACANT

        self._faulting = False
        self._fault_since = 0
        self._have_sample = False
        self._last_raw = 0
        self._raw_since = 0

        if kind == KIND_MAGNETOMETER:
            self._init_field(settings, defaults)
        else:
            self._init_level(settings, defaults)

    # ---- common path -------------------------------------------------------------------

    def update(self, value, now_ms):
        """Feed one reading; return True when self.state changed."""
        if value < self.valid_min or value > self.valid_max:
            return self.fault(FAULT_OUT_OF_RANGE, now_ms)

        if not self._have_sample or value != self._last_raw:
            self._have_sample = True
            self._last_raw = value
            self._raw_since = now_ms
        elif self.stuck_after_ms and ticks_diff(now_ms, self._raw_since) >= self.stuck_after_ms:
            return self.fault(FAULT_STUCK, now_ms)
        self._faulting = False

        if self.kind == KIND_MAGNETOMETER:
            wish = self._field_update(value, now_ms)
        else:
            wish = self._level_update(value, now_ms)
        if wish == _NO_WISH:
            return False
        return self._report(wish)

    def fault(self, reason, now_ms):
        """Record a sensor fault; the state becomes fault once faults last fault_after_ms.

        A valid sample in between restarts the count, so one lost echo or I2C glitch is
        absorbed. Return True when self.state changed.
        """
        if not self._faulting:
            self._faulting = True
            self._fault_since = now_ms
        if self.state == STATE_FAULT:
            self.reason = reason
            return False
        if ticks_diff(now_ms, self._fault_since) < self.fault_after_ms:
            return False
        self.reason = reason
        self.state = STATE_FAULT
        self._forget_decision()
        return True

    def calibrate(self):
        """Re-learn the vacant baseline from the next calibration_ms of samples.

        Only the magnetometer has a learned baseline; the other kinds use fixed thresholds.
        The reported state is kept until the calibration ends.
        """
        if self.kind == KIND_MAGNETOMETER:
            self._start_calibration()

    def _report(self, state):
        if state == self.state:
            return False
        self.state = state
        self.reason = FAULT_NONE
        return True

    def _forget_decision(self):
        # After a fault the next state must be decided from fresh samples, with the delays.
        if self.kind == KIND_MAGNETOMETER:
            self._start_calibration()
        else:
            self._pending = _NO_WISH
            self._decided = _NO_WISH

    # ---- ultrasonic and presence: fixed thresholds with time hysteresis ------------------

    def _init_level(self, settings, defaults):
        self.off_delay_ms = _setting(settings, defaults, "off_delay_ms")
        if self.kind == KIND_ULTRASONIC:
            self.occupied_below = int(settings["occupied_below_mm"])
            self.vacant_above = int(settings["vacant_above_mm"])
            if self.occupied_below >= self.vacant_above:
                raise ValueError(
                    "occupied_below_mm (%d) must be less than vacant_above_mm (%d)"
                    % (self.occupied_below, self.vacant_above)
                )
            self.valid_min = _setting(settings, defaults, "valid_min_mm")
            self.valid_max = _setting(settings, defaults, "valid_max_mm")
        else:
            self.valid_min = 0
            self.valid_max = 1
        self._decided = STATE_VACANT
        self._pending = _NO_WISH
        self._pending_since = 0

    def _level_update(self, value, now_ms):
        self.value = value
        if self.kind == KIND_PRESENCE:
            wish = STATE_OCCUPIED if value else STATE_VACANT
        elif value <= self.occupied_below:
            wish = STATE_OCCUPIED
        elif value >= self.vacant_above:
            wish = STATE_VACANT
        else:
            wish = _NO_WISH  # between the thresholds: keep the current decision

        if wish == _NO_WISH or wish == self._decided:
            self._pending = _NO_WISH
            return wish
        if wish != self._pending:
            self._pending = wish
            self._pending_since = now_ms
            return _NO_WISH
        delay = self.on_delay_ms if wish == STATE_OCCUPIED else self.off_delay_ms
        if ticks_diff(now_ms, self._pending_since) < delay:
            return _NO_WISH
        self._decided = wish
        self._pending = _NO_WISH
        self.phase = PHASE_OCCUPIED if wish == STATE_OCCUPIED else PHASE_VACANT
        return wish

    # ---- magnetometer: baseline, noise band and vehicle transients -----------------------

    def _init_field(self, settings, defaults):
        self.quiet_ms = _setting(settings, defaults, "quiet_ms")
        self.exit_min_ms = _setting(settings, defaults, "exit_min_ms")
        self.calibration_ms = _setting(settings, defaults, "calibration_ms")
        self.band_min = _setting(settings, defaults, "band_min_counts")
        self.band_spread_percent = _setting(settings, defaults, "band_spread_percent")
        self.valid_min = _setting(settings, defaults, "valid_min_counts")
        self.valid_max = _setting(settings, defaults, "valid_max_counts")
        smooth = _setting(settings, defaults, "smooth_samples")
        activity = _setting(settings, defaults, "activity_samples")
        if not 1 <= smooth <= MAX_SMOOTH_SAMPLES:
            raise ValueError("smooth_samples (%d) must be 1..%d" % (smooth, MAX_SMOOTH_SAMPLES))
        if not 2 <= activity <= MAX_ACTIVITY_SAMPLES:
            raise ValueError("activity_samples (%d) must be 2..%d" % (activity, MAX_ACTIVITY_SAMPLES))
        self._drift_shift = _power_of_two_at_least(_setting(settings, defaults, "drift_samples"))

        second = _setting(settings, defaults, "second_smooth_samples")
        if not 1 <= second <= MAX_SMOOTH_SAMPLES:
            raise ValueError("second_smooth_samples (%d) must be 1..%d" % (second, MAX_SMOOTH_SAMPLES))
        self._first_average = MovingSum(smooth)
        self._second_average = MovingSum(second)
        self._smooth_divisor = smooth * second
        self._smooth_ring = array("i", [0] * activity)
        self._smooth_size = activity
        self._calibration_capacity = MAX_CALIBRATION_SAMPLES
        self._calibration_ring = array("i", [0] * MAX_CALIBRATION_SAMPLES)
        self._calibration_times = array("i", [0] * MAX_CALIBRATION_SAMPLES)
        self._calibration_scratch = array("i", [0] * MAX_CALIBRATION_SAMPLES)
        self.calibration_max_ms = _setting(settings, defaults, "calibration_max_ms")
        self.warmup_ms = _setting(settings, defaults, "warmup_ms")
        self.band_noise_percent = _setting(settings, defaults, "band_noise_percent")
        self._noise_shift = _power_of_two_at_least(_setting(settings, defaults, "noise_samples"))
        self._noise_fixed = 0
        self.settle_ms = _setting(settings, defaults, "settle_ms")
        self.gap_ms = _setting(settings, defaults, "gap_ms")
        self.active_presence = int(settings.get("active_presence", 1))
        self._present_at = 0
        self._calibrated_at = 0
        self._confident = False
        self.band = self.band_min
        self.baseline = 0
        self.level = 0
        self._baseline_fixed = 0
        self._level_fixed = 0
        self._start_calibration()

    def _start_calibration(self):
        self.phase = PHASE_CALIBRATING
        self._first_average.clear()
        self._second_average.clear()
        self._smooth_count = 0
        self._smooth_index = 0
        self._calibration_armed = False
        self._calibration_since = 0
        self._calibration_count = 0
        self._event_since = 0
        self._disturbed_at = 0
        self._settling = False

    def _smooth(self, value):
        # Two moving averages in cascade: each puts spectral nulls at multiples of
        # (sample rate / its length), so together they remove periodic interference at two
        # frequencies with less lag than one long average.
        first = self._first_average.push(value)
        return self._second_average.push(first) // self._smooth_divisor

    def _activity(self, smooth):
        # Spread (max - min) of the smoothed signal over the last activity_samples.
        ring = self._smooth_ring
        index = self._smooth_index
        ring[index] = smooth
        index += 1
        if index == self._smooth_size:
            index = 0
        self._smooth_index = index
        if self._smooth_count < self._smooth_size:
            self._smooth_count += 1
        count = self._smooth_count
        low = ring[0]
        high = low
        for i in range(1, count):
            sample = ring[i]
            if sample < low:
                low = sample
            elif sample > high:
                high = sample
        return high - low

    def _field_update(self, value, now_ms):
        smooth = self._smooth(value)
        spread = self._activity(smooth)
        phase = self.phase

        if phase == PHASE_CALIBRATING:
            self.value = 0
            self._calibrate_step(smooth, now_ms)
            return _NO_WISH

        band = self.band
        offset = smooth - (self._baseline_fixed >> _FIXED_SHIFT)
        if offset < 0:
            offset = -offset
        self.value = offset
        active = spread > band  # the field is changing: a vehicle moves over the sensor
        if active:
            self._disturbed_at = now_ms
        quiet = ticks_diff(now_ms, self._disturbed_at) >= self.quiet_ms

        if phase == PHASE_VACANT:
            if active:
                self.phase = PHASE_ARRIVING
                self._event_since = now_ms
                self._present_at = now_ms
            else:
                self._follow_baseline(smooth, spread, now_ms)
            return STATE_VACANT

        if phase == PHASE_ARRIVING:
            return self._arriving(smooth, offset, band, active, now_ms)

        level_offset = smooth - (self._level_fixed >> _FIXED_SHIFT)
        if level_offset < 0:
            level_offset = -level_offset

        if phase == PHASE_OCCUPIED:
            if self._settling:
                # The vehicle is still manoeuvring: follow its field until it is quiet.
                self._level_fixed = smooth << _FIXED_SHIFT
                if quiet:
                    self._settling = False
            elif active:
                self.phase = PHASE_LEAVING
                self._event_since = now_ms
            else:
                self._level_fixed += ((smooth << _FIXED_SHIFT) - self._level_fixed) >> self._drift_shift
            return STATE_OCCUPIED

        # PHASE_LEAVING: wait until the field is quiet, then decide from the transient's length
        # and where the field settled.
        if not quiet:
            return STATE_OCCUPIED
        lasted = ticks_diff(self._disturbed_at, self._event_since)
        level_gap = (self._level_fixed - self._baseline_fixed) >> _FIXED_SHIFT
        if level_gap < 0:
            level_gap = -level_gap
        if lasted >= self.exit_min_ms or (offset <= band and level_gap > band):
            # A manoeuvre as long as a departure, or a clear return to the empty bay's field.
            self.phase = PHASE_VACANT
            if offset > band:
                self._baseline_fixed = smooth << _FIXED_SHIFT  # the empty bay's field moved
            return STATE_VACANT
        self.phase = PHASE_OCCUPIED
        self._level_fixed = smooth << _FIXED_SHIFT
        return STATE_OCCUPIED

    def _arriving(self, smooth, offset, band, active, now_ms):
        # A vehicle is present while the field sits away from the baseline; brief returns
        # shorter than gap_ms (a manoeuvre swinging through the baseline) are bridged.
        # Until the baseline is trusted, only the transient itself counts.
        confident = self._confident
        if (confident and offset > band) or ((self.active_presence or not confident) and active):
            self._present_at = now_ms
        absent = ticks_diff(now_ms, self._present_at) >= self.gap_ms
        if absent:
            # It passed by. An untrusted baseline restarts here, at the quiet field.
            self.phase = PHASE_VACANT
            if not confident:
                self._baseline_fixed = smooth << _FIXED_SHIFT
            return STATE_VACANT
        if ticks_diff(now_ms, self._event_since) < self.on_delay_ms:
            return STATE_VACANT
        # Present for longer than a passing vehicle takes: it has stopped, and may still be
        # manoeuvring, so its field is followed until the field is quiet.
        self.phase = PHASE_OCCUPIED
        self._settling = True
        self._level_fixed = smooth << _FIXED_SHIFT
        return STATE_OCCUPIED

    def _follow_baseline(self, smooth, spread, now_ms):
        # A slow change without a transient is drift of the empty bay's field. Until the
        # baseline has been watched for settle_ms it follows faster, because a sensor that is
        # still settling makes the calibration window a poor estimate.
        shift = self._drift_shift
        if not self._confident:
            shift = _SETTLE_SHIFT
            if ticks_diff(now_ms, self._calibrated_at) >= self.settle_ms:
                self._confident = True
        self._baseline_fixed += ((smooth << _FIXED_SHIFT) - self._baseline_fixed) >> shift
        self._track_noise(spread)

    def _track_noise(self, spread):
        # The band follows the quiet-time spread, so a band learned while the sensor was
        # still settling shrinks back to the real noise level.
        self._noise_fixed += ((spread << _FIXED_SHIFT) - self._noise_fixed) >> self._noise_shift
        band = (self._noise_fixed >> _FIXED_SHIFT) * self.band_noise_percent // 100
        self.band = band if band > self.band_min else self.band_min

    def _calibrate_step(self, smooth, now_ms):
        # Keep the last calibration_ms of smoothed samples; accept them as the empty bay's
        # field once the older and newer halves agree, so a settling sensor or a vehicle
        # leaving during calibration is not learned as the baseline.
        if not self._second_average.full():
            return  # the moving averages are not full yet
        if not self._calibration_armed:
            self._calibration_armed = True
            self._calibration_since = now_ms
            self._calibration_count = 0
        if ticks_diff(now_ms, self._calibration_since) < self.warmup_ms:
            return  # the sensor and the filters are still settling
        ring = self._calibration_ring
        times = self._calibration_times
        count = self._calibration_count
        if count == self._calibration_capacity:
            for i in range(1, count):
                ring[i - 1] = ring[i]
                times[i - 1] = times[i]
            count -= 1
        ring[count] = smooth
        times[count] = ticks_diff(now_ms, self._calibration_since)
        count += 1
        self._calibration_count = count
        newest = times[count - 1]
        if newest - times[0] < self.calibration_ms:
            return
        window_start = 0
        while window_start < count - 2 and newest - times[window_start + 1] >= self.calibration_ms:
            window_start += 1
        # Drop samples older than the window, so the next call sees only the window.
        if window_start:
            for i in range(window_start, count):
                ring[i - window_start] = ring[i]
                times[i - window_start] = times[i]
            count -= window_start
            self._calibration_count = count

        half = count >> 1
        older = self._median_of(0, half)
        newer = self._median_of(half, count)
        whole = self._median_of(0, count)
        scratch = self._calibration_scratch
        spread = scratch[(3 * count) >> 2] - scratch[count >> 2]  # interquartile range
        band = spread * self.band_spread_percent // 100
        if band < self.band_min:
            band = self.band_min
        drift = newer - older
        if drift < 0:
            drift = -drift
        waited = ticks_diff(now_ms, self._calibration_since)
        if drift * 2 > band and waited < self.calibration_max_ms:
            return
        self.baseline = whole
        self._baseline_fixed = whole << _FIXED_SHIFT
        self.band = band
        self._noise_fixed = (band * 100 // self.band_noise_percent) << _FIXED_SHIFT
        self._calibrated_at = now_ms
        self._confident = False
        self.phase = PHASE_VACANT

    def _median_of(self, start, end):
        # Insertion-sort ring[start:end] into the scratch array (no allocation); return its median.
        ring = self._calibration_ring
        scratch = self._calibration_scratch
        size = end - start
        for i in range(size):
            sample = ring[start + i]
            j = i - 1
            while j >= 0 and scratch[j] > sample:
                scratch[j + 1] = scratch[j]
                j -= 1
            scratch[j + 1] = sample
        return scratch[size >> 1]
