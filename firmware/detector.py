# Occupancy decision for one parking bay, one reading per sample: the Detector front.
#
# Runs on MicroPython (the node) and on CPython (host tests and replay checks). The per-sample
# path (update, fault) uses small integers and preallocated arrays only: a float is a heap
# object on the ESP32 port, and this path runs for every sample, so it must not allocate.
# docs/detector.md describes the settings, the state machines and how the defaults were chosen.
#
# This module contains the states, fault reasons, kinds and phases, and the faults common to
# every kind. The settings and their ranges are in detector_settings.py, the filters in
# filters.py, and each kind's decision in a module of its own: threshold_decision.py
# (presence, and the base of the ultrasonic one), distance_decision.py (ultrasonic) and
# field_decision.py (magnetometer). A Detector imports only its own kind's decision, so a node
# never loads the code of the other kinds.

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

from detector_settings import DEFAULTS, read_setting

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

# Phases of the field state machine. The reported state follows from them.
PHASE_CALIBRATING = const(0)
PHASE_VACANT = const(1)
PHASE_ARRIVING = const(2)
PHASE_OCCUPIED = const(3)
PHASE_LEAVING = const(4)
PHASE_RESUMING = const(5)
PHASE_NAMES = ("calibrating", "vacant", "arriving", "occupied", "leaving", "resuming")

NO_WISH = const(-1)  # a decision returned by a sample that changes nothing


class Detector:
    # Vacant/occupied/fault decision for one bay.
    #
    # `settings` is a board's "detector" section plus "kind"; missing keys take DEFAULTS[kind].
    # The faults, the stuck-reading check and the range check are common. The decision itself
    # is a DistanceDecision (ultrasonic), a ThresholdDecision (presence) or a FieldDecision
    # (magnetometer). After __init__, update() and fault() allocate nothing. The classes of
    # the detector's modules carry comments, not docstrings: a node compiling the source
    # itself (deployed with .py files) needs heap for every docstring.

    def __init__(self, settings):
        kind = settings.get("kind", KIND_ULTRASONIC)
        if kind not in KINDS:
            raise ValueError("detector kind %r is unknown: set it to one of %s" % (kind, ", ".join(KINDS)))
        self.kind = kind
        defaults = DEFAULTS[kind]
        self.fault_after_ms = read_setting(settings, defaults, "fault_after_ms")
        self.stuck_after_ms = read_setting(settings, defaults, "stuck_after_ms")
        # Imported here and not at the top: a decision module imports the states and phases
        # from this one, and a node needs the code of its own kind only.
        if kind == KIND_MAGNETOMETER:
            from field_decision import FieldDecision

            self.decision = FieldDecision(settings, defaults)
        elif kind == KIND_ULTRASONIC:
            from distance_decision import DistanceDecision

            self.decision = DistanceDecision(settings, defaults)
        else:
            from threshold_decision import ThresholdDecision

            self.decision = ThresholdDecision(kind, settings, defaults)
        self.valid_min = self.decision.valid_min
        self.valid_max = self.decision.valid_max

        self.state = STATE_VACANT
        self.reason = FAULT_NONE
        self.value = 0

        self._faulting = False
        self._fault_since = 0
        self._have_sample = False
        self._last_raw = 0
        self._raw_since = 0

    @property
    def phase(self):
        return self.decision.phase

    def update(self, value, now_ms):
        # Feed one reading; return True when self.state changed.
        if value < self.valid_min or value > self.valid_max:
            return self.fault(FAULT_OUT_OF_RANGE, now_ms)

        if not self._have_sample or value != self._last_raw:
            self._have_sample = True
            self._last_raw = value
            self._raw_since = now_ms
        elif self.stuck_after_ms and ticks_diff(now_ms, self._raw_since) >= self.stuck_after_ms:
            return self.fault(FAULT_STUCK, now_ms)
        self._faulting = False

        decision = self.decision
        wish = decision.decide(value, now_ms)
        self.value = decision.value
        if wish == NO_WISH or wish == self.state:
            return False
        self.state = wish
        self.reason = FAULT_NONE
        return True

    def fault(self, reason, now_ms):
        # Record a sensor fault; the state becomes fault once faults last fault_after_ms.
        # A valid sample in between restarts the count, so one lost echo or I2C glitch is
        # absorbed. Return True when self.state changed.
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
        # The next state must come from fresh samples, through the delays again.
        self.decision.resume()
        return True

    def calibrate(self):
        # Re-learn the empty bay's baseline from the next samples; call it while the bay is
        # vacant. A presence input has no baseline and ignores this. The magnetometer keeps
        # the reported state until the calibration ends, then it is vacant. The ultrasonic
        # kind decides on its absolute thresholds until then.
        if self.kind != KIND_PRESENCE:
            self.decision.restart()

