# Ultrasonic: the distance against the empty bay's, and the transients of a vehicle.

from detector import (
    KIND_ULTRASONIC,
    NO_WISH,
    PHASE_ARRIVING,
    PHASE_CALIBRATING,
    PHASE_LEAVING,
    PHASE_OCCUPIED,
    PHASE_RESUMING,
    PHASE_VACANT,
    STATE_OCCUPIED,
    STATE_VACANT,
    ticks_diff,
)
from detector_settings import MAX_ACTIVITY_SAMPLES, read_setting
from filters import FIXED_SHIFT, Spread, shift_for
from threshold_decision import ThresholdDecision

# Settings of the ultrasonic decision, read into attributes of the same names. A loop over
# names keeps down the heap that compiling this module from source takes.
DISTANCE_SETTINGS = (
    "occupied_below_mm",
    "vacant_above_mm",
    "entry_min_ms",
    "exit_min_ms",
    "gap_ms",
    "calibration_ms",
    "calibration_spread_mm",
    "level_band_min_mm",
    "level_band_noise_percent",
    "activity_band_min_mm",
    "activity_band_noise_percent",
)

# The ultrasonic decision's state, all 0 at first. The baseline (the empty bay's distance),
# band and activity_band are in mm, and the other names are times in ms, sums and flags.
# Each is created in __init__, so setting one per sample never grows the instance's dict
# (an allocation).
DISTANCE_STATE = (
    "baseline",
    "band",
    "activity_band",
    "_baseline_fixed",
    "_sum",
    "_high",
    "_calibration_since",
    "_disturbed_at",
    "_event_since",
    "_settling",
    "_exit_pending",
)


class DistanceDecision(ThresholdDecision):
    # Ultrasonic: the distance against the empty bay's, and the transients of a vehicle.
    #
    # The ThresholdDecision underneath decides on the distance, with the board's absolute
    # thresholds until the empty bay's distance (the floor, or the far wall of a side-mounted
    # sensor) has been learned. Then a vehicle is a distance shorter than that baseline by more
    # than the level band (or at most occupied_below_mm), and the empty bay one within half
    # the band. So a car that shows in the distance comes and goes with the on and off delays.
    #
    # A car can also read like the empty bay, when its sloped bonnet or glass sends the echo
    # away or its distance is within the noise. Only its transients show it: while it drives
    # in or out, the readings swing between bumper, bonnet, roof and floor, and the spread of
    # the last activity_samples readings exceeds the activity band.
    #
    # vacant -> arriving: the readings swing.
    # arriving -> occupied: they swung (gaps shorter than gap_ms bridged) over entry_min_ms,
    #     longer than a person or a car driving through takes to cross the beam.
    # arriving -> vacant: no swing for gap_ms first (a passer-by).
    # occupied -> leaving: an exit transient starts, once the entry's readings were quiet
    #     for off_delay_ms.
    # leaving -> vacant: the transient lasted exit_min_ms, then quiet for off_delay_ms.
    # leaving -> occupied: shorter than exit_min_ms (a person, a door).

    def __init__(self, settings, defaults):
        ThresholdDecision.__init__(self, KIND_ULTRASONIC, settings, defaults)
        for name in DISTANCE_SETTINGS:
            setattr(self, name, read_setting(settings, defaults, name))
        self._drift_shift = shift_for(read_setting(settings, defaults, "drift_samples"))
        # Narrower than its unit allows, because the buffer is preallocated.
        activity = read_setting(settings, defaults, "activity_samples", 2, MAX_ACTIVITY_SAMPLES)
        self._spread = Spread(activity)
        for name in DISTANCE_STATE:
            setattr(self, name, 0)
        self.restart()

    def restart(self):
        # Learn the baseline afresh. The absolute thresholds decide until it is learned.
        self.phase = PHASE_CALIBRATING
        self.occupied_below = self.occupied_below_mm
        self.vacant_above = self.vacant_above_mm
        self._calibration_count = 0
        self._spread.clear()
        self._hidden = False

    def resume(self):
        # Decide afresh after a fault, on the distance alone and against the baseline learned
        # before it. A car may have come or gone during the fault, and its transient is lost.
        # NOTE: so a car the distance does not show resumes as vacant, and its exit then
        # reads as an arrival: the bay shows occupied until the next long transient.
        ThresholdDecision.restart(self)
        self._spread.clear()
        self._hidden = False
        if self.phase != PHASE_CALIBRATING:
            self.phase = PHASE_RESUMING

    def decide(self, value, now_ms):
        spread = self._spread.push(value)
        phase = self.phase
        wish = ThresholdDecision.decide(self, value, now_ms)
        if phase == PHASE_CALIBRATING:
            # Learn from a window of calibration_ms in which the spread stayed within
            # calibration_spread_mm and the thresholds decided vacant (so every reading was at
            # or beyond vacant_above_mm): nothing moved under the sensor and no vehicle stood
            # there. Its mean is the empty bay's distance, and its largest spread the noise.
            # A vehicle, or an obstacle nearer than an empty bay can be, would hide the next
            # car if it were learned, so the window restarts after it.
            self.phase = phase
            if spread > self.calibration_spread_mm or wish != STATE_VACANT:
                self._calibration_count = 0
            if not self._calibration_count:
                self._calibration_since = now_ms
                self._sum = 0
                self._high = 0
            self._calibration_count += 1
            self._sum += value
            self._high = max(self._high, spread)
            if ticks_diff(now_ms, self._calibration_since) < self.calibration_ms:
                return wish
            noise = self._high
            self.band = max(self.level_band_min_mm, noise * self.level_band_noise_percent // 100)
            self.activity_band = max(self.activity_band_min_mm, noise * self.activity_band_noise_percent // 100)
            self._baseline_fixed = (self._sum // self._calibration_count) << FIXED_SHIFT
            # No transient yet: the last swing gap_ms ago ended and lasted nothing.
            self._event_since = self._disturbed_at = now_ms - self.gap_ms
            # Learned: this sample places the thresholds, below.
        decided = self.decided
        if decided != STATE_VACANT:
            # A car that shows in the distance, or no decision yet after a fault.
            self.phase = PHASE_RESUMING if decided == NO_WISH else PHASE_OCCUPIED
            self._hidden = False
            return decided

        # The latest transient: its first and last swing, with gaps shorter than gap_ms
        # bridged. A vehicle standing near without swinging is left to the thresholds.
        if spread > self.activity_band:
            if ticks_diff(now_ms, self._disturbed_at) >= self.gap_ms:
                self._event_since = now_ms
            self._disturbed_at = now_ms
        lasted = ticks_diff(self._disturbed_at, self._event_since)
        swing_over = ticks_diff(now_ms, self._disturbed_at) >= self.gap_ms
        quiet = ticks_diff(now_ms, self._disturbed_at) >= self.off_delay_ms

        if self._hidden:
            if self._settling:
                # The entry's transient is no exit: the exit is the next one after a quiet time.
                self._settling = not quiet
                self._event_since = self._disturbed_at
            elif lasted >= self.exit_min_ms:
                self._exit_pending = True
            if self._exit_pending and quiet:
                self._hidden = False
                self.phase = PHASE_VACANT
                return STATE_VACANT
            self.phase = PHASE_OCCUPIED if swing_over else PHASE_LEAVING
            return STATE_OCCUPIED

        if swing_over:
            self.phase = PHASE_VACANT
            if wish != STATE_VACANT:
                return STATE_VACANT  # nearer than the empty bay: no drift
            # A slow change without a transient is drift, such as the speed of sound changing
            # with the air's temperature. A farther distance is followed too: the calibration
            # learned something that has gone, such as a car parked at boot.
            self._baseline_fixed += ((value << FIXED_SHIFT) - self._baseline_fixed) >> self._drift_shift
            baseline = self._baseline_fixed >> FIXED_SHIFT
            self.baseline = baseline
            self.occupied_below = max(self.occupied_below_mm, baseline - self.band)
            self.vacant_above = max(baseline - self.band // 2, self.occupied_below + 1)
            return STATE_VACANT
        self.phase = PHASE_ARRIVING
        if lasted < self.entry_min_ms:
            return STATE_VACANT
        # Swinging for longer than a passer-by takes, and not standing near: a car that
        # reads like the empty bay has stopped.
        # NOTE: a car crawling through slower than about 5 km/h swings as long as one parking.
        # It is taken as an arrival, and the bay shows occupied until the next long transient.
        self.phase = PHASE_OCCUPIED
        self._hidden = True
        self._settling = True
        self._exit_pending = False
        return STATE_OCCUPIED

