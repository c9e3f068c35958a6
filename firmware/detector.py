# Occupancy decision for one parking bay, from one reading per sample.
#
# Runs on MicroPython (the node) and CPython (host tests). The per-sample path uses small
# integers only, because a float is a heap object on the ESP32 port and this path must not
# allocate. docs/detector.md describes the settings and the state machine.

try:
    from micropython import const
except ImportError:  # CPython

    def const(value):
        return value


try:
    from time import ticks_diff
except ImportError:  # CPython: same arithmetic as MicroPython's ticks_diff on the ESP32 port
    _TICKS_PERIOD = 1 << 30
    _TICKS_HALF = 1 << 29

    def ticks_diff(end, start):
        return ((end - start + _TICKS_HALF) & (_TICKS_PERIOD - 1)) - _TICKS_HALF


# Same numbers as STATE_* in protocol.py (not imported, so a detector test needs no frames).
STATE_VACANT = const(0)
STATE_OCCUPIED = const(1)
STATE_FAULT = const(2)

# Fault reasons, sent in the state frame's reason byte.
FAULT_NONE = const(0)
FAULT_NO_ECHO = const(1)  # ultrasonic: no echo edge before the echo timeout
FAULT_OUT_OF_RANGE = const(2)  # a reading outside the sensor's valid range
FAULT_STUCK = const(3)  # the reading has not changed for stuck_after_ms
FAULT_BUS = const(4)  # I2C read or write failed
FAULT_NO_DATA = const(5)  # no sample arrived (data-ready pin silent)
FAULT_OVERFLOW = const(6)  # magnetometer reported a measurement overflow
FAULT_NAMES = ("none", "no echo", "out of range", "stuck", "bus error", "no data", "overflow")

KIND_ULTRASONIC = "ultrasonic"
KIND_MAGNETOMETER = "magnetometer"
KIND_PRESENCE = "presence"

# Internal decision, kept apart from the reported state so a fault can end in either.
_UNDECIDED = const(-1)


class Detector:
    """Vacant/occupied/fault decision with time hysteresis for one bay.

    `settings` is a board's "detector" section plus "kind". After __init__ the per-sample
    methods (update, fault) allocate nothing.
    """

    def __init__(self, settings):
        self.kind = settings.get("kind", KIND_ULTRASONIC)
        if self.kind not in (KIND_ULTRASONIC, KIND_MAGNETOMETER, KIND_PRESENCE):
            raise ValueError("detector kind %r is not ultrasonic, magnetometer or presence" % (self.kind,))
        self.on_delay_ms = int(settings.get("on_delay_ms", 2000))
        self.off_delay_ms = int(settings.get("off_delay_ms", 3000))
        self.fault_after_ms = int(settings.get("fault_after_ms", 5000))
        # 0 turns the stuck-reading check off.
        self.stuck_after_ms = int(settings.get("stuck_after_ms", 0))
        if self.kind == KIND_ULTRASONIC:
            self.occupied_below = int(settings["occupied_below_mm"])
            self.vacant_above = int(settings["vacant_above_mm"])
            self.valid_min = int(settings.get("valid_min_mm", 20))
            self.valid_max = int(settings.get("valid_max_mm", 4500))
        elif self.kind == KIND_MAGNETOMETER:
            self.occupied_above = int(settings.get("occupied_above_delta", 60))
            self.vacant_below = int(settings.get("vacant_below_delta", 30))
            self.valid_min = int(settings.get("valid_min_counts", -32768))
            self.valid_max = int(settings.get("valid_max_counts", 32767))
            self.calibration_ms = int(settings.get("calibration_ms", 3000))
        else:
            self.valid_min = 0
            self.valid_max = 1

        self.state = STATE_VACANT
        self.reason = FAULT_NONE
        self.value = 0
        self._decision = STATE_VACANT
        self._pending = _UNDECIDED
        self._pending_since = 0
        self._fault_since = 0
        self._faulting = False
        self._last_raw = 0
        self._raw_since = 0
        self._started = False
        self._baseline = 0
        self._calibrating = self.kind == KIND_MAGNETOMETER
        self._calibration_sum = 0
        self._calibration_count = 0
        self._calibration_since = 0
        self._calibration_armed = False

    def calibrate(self):
        """Re-learn the vacant baseline from the samples of the next calibration_ms."""
        if self.kind == KIND_MAGNETOMETER:
            self._calibrating = True
            self._calibration_armed = False

    def update(self, value, now_ms):
        """Feed one reading; return True when self.state changed."""
        if value < self.valid_min or value > self.valid_max:
            return self.fault(FAULT_OUT_OF_RANGE, now_ms)

        if not self._started or value != self._last_raw:
            self._last_raw = value
            self._raw_since = now_ms
            self._started = True
        elif self.stuck_after_ms and ticks_diff(now_ms, self._raw_since) >= self.stuck_after_ms:
            return self.fault(FAULT_STUCK, now_ms)
        self._faulting = False

        if self.kind == KIND_MAGNETOMETER:
            if self._calibrating:
                self._learn_baseline(value, now_ms)
                self.value = 0
                return self._leave_fault()
            wanted = self._magnetic_want(value)
        elif self.kind == KIND_ULTRASONIC:
            self.value = value
            wanted = self._distance_want(value)
        else:
            self.value = value
            wanted = STATE_OCCUPIED if value else STATE_VACANT

        return self._settle(wanted, now_ms)

    def fault(self, reason, now_ms):
        """Record a sensor fault; the state becomes fault once faults last fault_after_ms."""
        if not self._faulting:
            self._faulting = True
            self._fault_since = now_ms
        self.reason = reason
        if self.state == STATE_FAULT:
            return False
        if ticks_diff(now_ms, self._fault_since) < self.fault_after_ms:
            return False
        self.state = STATE_FAULT
        self._decision = _UNDECIDED
        self._pending = _UNDECIDED
        return True

    def _leave_fault(self):
        if self.state != STATE_FAULT:
            self.reason = FAULT_NONE
            return False
        # Stay in fault until the samples decide, so a recovery never reports an unchecked state.
        return False

    def _learn_baseline(self, value, now_ms):
        if not self._calibration_armed:
            self._calibration_armed = True
            self._calibration_since = now_ms
            self._calibration_sum = 0
            self._calibration_count = 0
        self._calibration_sum += value
        self._calibration_count += 1
        if ticks_diff(now_ms, self._calibration_since) >= self.calibration_ms:
            self._baseline = self._calibration_sum // self._calibration_count
            self._calibrating = False

    def _magnetic_want(self, value):
        delta = value - self._baseline
        if delta < 0:
            delta = -delta
        self.value = delta
        if delta >= self.occupied_above:
            return STATE_OCCUPIED
        if delta <= self.vacant_below:
            return STATE_VACANT
        return _UNDECIDED

    def _distance_want(self, value):
        if value <= self.occupied_below:
            return STATE_OCCUPIED
        if value >= self.vacant_above:
            return STATE_VACANT
        return _UNDECIDED

    def _settle(self, wanted, now_ms):
        # Time hysteresis: a new decision must hold for its delay before it is taken.
        if wanted == _UNDECIDED or wanted == self._decision:
            self._pending = _UNDECIDED
            if self.state == STATE_FAULT and wanted == self._decision and wanted != _UNDECIDED:
                return self._report(wanted)
            return False
        if wanted != self._pending:
            self._pending = wanted
            self._pending_since = now_ms
            return False
        delay = self.on_delay_ms if wanted == STATE_OCCUPIED else self.off_delay_ms
        if ticks_diff(now_ms, self._pending_since) < delay:
            return False
        self._decision = wanted
        self._pending = _UNDECIDED
        return self._report(wanted)

    def _report(self, state):
        self.reason = FAULT_NONE
        if state == self.state:
            return False
        self.state = state
        return True
