# Magnetometer: a vehicle is seen by its transients and by the field's offset.

from array import array

from detector import (
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
from detector_settings import MAX_ACTIVITY_SAMPLES, MAX_SETTING_PERCENT, MAX_SMOOTH_SAMPLES, read_setting
from filters import FIXED_SHIFT, MovingSum, Spread, Transient, shift_for

try:
    from micropython import const
except ImportError:  # CPython

    def const(value):
        return value


# About 8.7 s at 11 samples/s. A calibration_ms longer than this many samples is never
# spanned, so such a window is only taken at calibration_max_ms.
MAX_CALIBRATION_SAMPLES = const(96)


def _clamp(value, low, high):
    if value < low:
        return low
    if value > high:
        return high
    return value


# Settings of the field decision, read into attributes of the same names. A loop over names
# keeps down the heap that compiling this module from source takes.
FIELD_SETTINGS = (
    "on_delay_ms",
    "off_delay_ms",
    "exit_min_ms",
    "gap_ms",
    "warmup_ms",
    "calibration_ms",
    "calibration_max_ms",
    "calibration_shift_delta",
    "calibration_recheck_ms",
    "return_ms",
    "return_offset_percent",
    "return_nearer_percent",
    "still_spread_percent",
    "hold_ms",
    "departure_offset_percent",
    "departure_spread_percent",
    "departure_overshoot_percent",
    "departure_confirm_ms",
    "departure_confirm_return_percent",
    "rearm_ms",
    "creep_delta",
    "creep_ms",
    "arrival_settle_ms",
    "arrival_max_ms",
    "arrival_offset_percent",
    "arrival_swing_delta",
    "departure_mirror_min_delta",
    "departure_mirror_percent",
    "departure_mirror_nearer_percent",
    "departure_reach_percent",
)


class FieldDecision:
    # Magnetometer: a vehicle is seen by its transients and by the field's offset.
    #
    # The raw counts pass two moving averages, which null periodic interference. Two measures
    # are then compared with bands learned from the noise. The offset of the field from the
    # empty bay's baseline is compared with the level band. The spread of the field over a
    # short window, high while a vehicle moves over the sensor, is compared with the activity
    # band.
    #
    # calibrating -> vacant: a quiet and steady window of calibration_ms after warmup_ms, or
    #     the window as it is at calibration_max_ms.
    # calibrating -> arriving: that window lies more than calibration_shift_delta from the
    #     first quiet and steady window of the warm-up. A car arrived during the calibration,
    #     so the warm-up window is taken as the empty bay, and the arrival is timed from the
    #     field's first swing after that window.
    # arriving -> vacant, with the warm-up window as the baseline: the accepted window lay
    #     nearer than calibration_shift_delta but at least that window's level band from it,
    #     the arrival started within calibration_recheck_ms of the calibration, and the field
    #     went quiet for off_delay_ms off the baseline, inside that window's level band. A
    #     vehicle was passing while the window was accepted, and its field has gone.
    # vacant -> arriving: the field starts changing, no sooner than rearm_ms after a
    #     departure. Or it moved more than creep_delta from its slow reference level and
    #     stayed there for creep_ms without a transient (a car creeping in).
    # arriving -> occupied: the field kept changing or stayed off the baseline for
    #     on_delay_ms, longer than a passing vehicle takes (gaps shorter than gap_ms are
    #     bridged), and then stood quiet for arrival_settle_ms, either off the baseline or
    #     back on it after swinging one way only (a car parked with no offset). Or
    #     arrival_max_ms passed since the first change, or the field already stood still
    #     well off the baseline for hold_ms.
    # arriving -> vacant: it went quiet and back to the baseline for gap_ms first (a
    #     passer-by). A field back on the baseline after swinging both ways by
    #     arrival_swing_delta or more is a passer-by too, if it was present for less than
    #     arrival_max_ms.
    # occupied, still settling -> vacant: a short stay, the field stood still well off the
    #     baseline for hold_ms and is back on it for return_ms.
    # occupied -> leaving: the field starts changing again, after it had settled.
    # leaving -> vacant: it went quiet for off_delay_ms within occupied_above_delta of the
    #     baseline, after a transient of at least exit_min_ms (a departure manoeuvre), or back
    #     at (or much nearer to) the baseline after sitting off it. A weak transient (small
    #     spread, no swing beyond the parked level and the baseline) must stay quiet for
    #     departure_confirm_ms instead, because a parked car rolling a little can move the
    #     field back onto the baseline for several seconds.
    # The departure is also compared with this car's arrival, since a car leaves along the
    # path it came in. A transient that swung the field the way the arrival did and ended
    # much nearer the baseline than the parked level is a departure too. A weak departure,
    # once confirmed, is dropped if the arrival swung far and the transient did not swing
    # the same way. A departure that ends off the baseline, beyond the parked level and away
    # from the baseline, is dropped if the field did not reach as far as the arrival swung on
    # that side.
    # leaving -> occupied: a short disturbance, or a vehicle moving within the bay, including
    #     the departures dropped above.

    def __init__(self, settings, defaults):
        get = read_setting
        for name in FIELD_SETTINGS:
            setattr(self, name, get(settings, defaults, name))
        self._creep_shift = shift_for(get(settings, defaults, "creep_samples"))
        self.calibration_activity = get(settings, defaults, "calibration_activity_delta")
        self.band_min = get(settings, defaults, "vacant_below_delta")
        self.band_max = get(settings, defaults, "occupied_above_delta")
        if self.band_min > self.band_max:
            raise ValueError(
                "vacant_below_delta (%d) must not exceed occupied_above_delta (%d)" % (self.band_min, self.band_max)
            )
        self.level_iqr_percent = get(settings, defaults, "level_band_iqr_percent")
        # At least 1: the noise estimates are the bands divided by the two noise percents.
        self.level_noise_percent = get(settings, defaults, "level_band_noise_percent", 1, MAX_SETTING_PERCENT)
        self.activity_calibration_percent = get(settings, defaults, "activity_band_calibration_percent")
        self.activity_noise_percent = get(settings, defaults, "activity_band_noise_percent", 1, MAX_SETTING_PERCENT)
        self.valid_min = get(settings, defaults, "valid_min_counts")
        self.valid_max = get(settings, defaults, "valid_max_counts")
        self._noise_shift = shift_for(get(settings, defaults, "noise_samples"))
        self._drift_shift = shift_for(get(settings, defaults, "drift_samples"))

        # Narrower than their unit allows, because the buffers are preallocated.
        first = get(settings, defaults, "smooth_samples", 1, MAX_SMOOTH_SAMPLES)
        second = get(settings, defaults, "second_smooth_samples", 1, MAX_SMOOTH_SAMPLES)
        activity = get(settings, defaults, "activity_samples", 2, MAX_ACTIVITY_SAMPLES)
        self._first_average = MovingSum(first)
        self._second_average = MovingSum(second)
        self._smooth_divisor = first * second
        self._spread = Spread(activity)
        self._transient = Transient()
        # The current car's arrival, from its first change until it has settled. Its departure
        # is compared with it, because a car leaves along the path it came in.
        self._arrival = Transient()
        self._calibration_values = array("i", [0] * MAX_CALIBRATION_SAMPLES)
        self._calibration_times = array("i", [0] * MAX_CALIBRATION_SAMPLES)
        self._sorted = array("i", [0] * MAX_CALIBRATION_SAMPLES)

        self.value = 0  # |field - baseline| in counts, after smoothing
        self.baseline = 0
        self.band = self.band_min
        self.activity_band = self.band_min
        self._baseline_fixed = 0
        self._level_fixed = 0
        self._reference_fixed = 0  # the slow reference level of the vacant field
        self._offset_noise_fixed = 0
        self._spread_noise_fixed = 0
        self._calibrated = False
        self._resume_off = -1
        self.restart()

    def resume(self):
        # Decide afresh after a fault, against the baseline learned before it. A car may have
        # parked or left during the fault, so the first state comes from the field's offset:
        # off the baseline for on_delay_ms is occupied, on it for off_delay_ms is vacant.
        # Without a baseline yet, this is a calibration.
        if not self._calibrated:
            self.restart()
            return
        self.phase = PHASE_RESUMING
        self._first_average.clear()
        self._second_average.clear()
        self._spread.clear()
        self._event_since = 0
        self._resume_off = -1  # -1 until the filters are full: 1 off the baseline, 0 on it
        self._baseline_doubtful = False
        self._rechecking = False

    def restart(self):
        # Start over from calibration: filters emptied, baseline and bands re-learned.
        self.phase = PHASE_CALIBRATING
        self._first_average.clear()
        self._second_average.clear()
        self._spread.clear()

        self._calibration_started = False
        self._calibration_since = 0
        self._calibration_count = 0
        self._calibration_spread = 0

        self._event_since = 0
        self._disturbed_at = 0
        self._present_at = 0
        self._settling = False
        self._moved_at = 0
        self._stood_still = False
        self._still_since = -1
        self._stood_level = 0
        self._returned_since = -1
        self._rearming = False
        self._vacated_at = 0
        self._moved_since = 0  # the last time the field was within creep_delta of the reference

        self._warming = True
        self._early_level = 0
        self._early_band = -1  # -1 until a quiet and steady window of the warm-up is found
        # The field's extremes since that window, and the time of its first swing after it
        # (-1 until then): the start of an arrival that the calibration finds at its end.
        self._early_high = 0
        self._early_low = 0
        self._early_swing_at = -1

        # The accepted window lay at least the warm-up window's level band from it. Set until
        # calibration_recheck_ms after the calibration, or until the first arrival, which is
        # then rechecked (see _recheck_baseline).
        self._baseline_doubtful = False
        self._calibrated_at = 0
        self._rechecking = False
        self._confirming = False

    def decide(self, value, now_ms):
        # Two moving averages in cascade. An average over N samples nulls the multiples of
        # (sample rate / N), so the pair removes periodic interference at the frequencies
        # their lengths pick, and smooths what is left.
        smooth = self._second_average.push(self._first_average.push(value)) // self._smooth_divisor
        spread = self._spread.push(smooth)
        if self.phase == PHASE_CALIBRATING:
            self.value = 0
            self._calibrate(smooth, spread, now_ms)
            return NO_WISH

        offset = smooth - (self._baseline_fixed >> FIXED_SHIFT)
        if offset < 0:
            offset = -offset
        self.value = offset
        active = spread > self.activity_band
        if active:
            self._disturbed_at = now_ms

        phase = self.phase
        if phase == PHASE_RESUMING:
            return self._resuming(smooth, offset, now_ms)
        if phase == PHASE_VACANT:
            return self._vacant(smooth, spread, offset, active, now_ms)
        if phase == PHASE_ARRIVING:
            return self._arriving(smooth, spread, offset, active, now_ms)
        quiet = ticks_diff(now_ms, self._disturbed_at) >= self.off_delay_ms
        if phase == PHASE_OCCUPIED:
            return self._occupied(smooth, spread, offset, active, quiet, now_ms)
        return self._leaving(smooth, spread, offset, quiet, now_ms)

    def _resuming(self, smooth, offset, now_ms):
        if not self._second_average.full():
            return NO_WISH
        off_baseline = 1 if offset > self.band else 0
        if off_baseline != self._resume_off:
            self._resume_off = off_baseline
            self._event_since = now_ms
            return NO_WISH
        waited = ticks_diff(now_ms, self._event_since)
        if off_baseline and waited >= self.on_delay_ms:
            self.phase = PHASE_OCCUPIED
            self._settling = True
            self._watch_short_stay()
            self._level_fixed = smooth << FIXED_SHIFT
            self._arrival.start(smooth)  # its arrival was not seen, so there is none to mirror
            return STATE_OCCUPIED
        if not off_baseline and waited >= self.off_delay_ms:
            self.phase = PHASE_VACANT
            # The creep test starts afresh: its reference is from before the fault.
            self._reference_fixed = self._baseline_fixed
            self._moved_since = now_ms
            return STATE_VACANT
        return NO_WISH

    def _vacant(self, smooth, spread, offset, active, now_ms):
        if self._rearming:
            # The vehicle that just left may still be moving beside the bay, so its field is
            # neither an arrival nor drift.
            if ticks_diff(now_ms, self._vacated_at) < self.rearm_ms:
                return STATE_VACANT
            self._rearming = False
            self._reference_fixed = self._baseline_fixed
            self._moved_since = now_ms
        if self._baseline_doubtful and ticks_diff(now_ms, self._calibrated_at) >= self.calibration_recheck_ms:
            # A vehicle passing during the calibration drives off at once. A later arrival is
            # a new vehicle, so it does not recheck the baseline.
            self._baseline_doubtful = False
        if active:
            return self._arrive(smooth, now_ms)
        if self.creep_delta:
            # A car that creeps in over a few seconds moves the field without a transient, and
            # the drift tracking below follows it. A reference level that follows the vacant
            # field far more slowly (over about creep_samples) still shows the move. A field
            # more than creep_delta from it for creep_ms is an arrival, and the baseline goes
            # back to the reference.
            reference = self._reference_fixed
            reference += ((smooth << FIXED_SHIFT) - reference) >> self._creep_shift
            self._reference_fixed = reference
            moved = smooth - (reference >> FIXED_SHIFT)
            if -self.creep_delta <= moved <= self.creep_delta:
                self._moved_since = now_ms
            elif ticks_diff(now_ms, self._moved_since) >= self.creep_ms:
                self._baseline_fixed = reference
                return self._arrive(smooth, now_ms)
        # A slow change without a transient is drift of the empty bay's field.
        self._baseline_fixed += ((smooth << FIXED_SHIFT) - self._baseline_fixed) >> self._drift_shift
        self._follow_noise(spread, offset)
        return STATE_VACANT

    def _arrive(self, smooth, now_ms):
        self._rechecking = self._baseline_doubtful
        self._baseline_doubtful = False
        self.phase = PHASE_ARRIVING
        self._arrival.start(smooth)
        self._event_since = now_ms
        self._present_at = now_ms
        self._moved_since = now_ms
        self._watch_short_stay()
        return STATE_VACANT

    def _arriving(self, smooth, spread, offset, active, now_ms):
        # Present while the field changes or sits off the baseline; returns to the baseline
        # shorter than gap_ms (a manoeuvre swinging through it) are bridged.
        if active or offset > self.band:
            self._present_at = now_ms
        self._arrival.push(smooth, spread)
        self._short_stay_over(smooth, offset, spread, now_ms)
        if ticks_diff(now_ms, self._present_at) >= self.gap_ms:
            self.phase = PHASE_VACANT  # it passed by
            return STATE_VACANT
        back = self._rechecking and self._back_at_warmup_level(smooth, offset)
        if back and ticks_diff(now_ms, self._disturbed_at) >= self.off_delay_ms:
            return self._recheck_baseline(now_ms)

        # Already standing still far off the baseline (a car that creeps in changes the field
        # late and slowly): it has stopped.
        if self._stood_still:
            return self._occupy(smooth)

        # Present for longer than a passing vehicle takes. A long pass, or two vehicles in
        # convoy, can be present that long too, so the field must also have settled. Up to
        # arrival_max_ms the decision waits for that. It may still be manoeuvring, so its
        # field is followed until it is quiet.
        elapsed = ticks_diff(now_ms, self._event_since)
        if elapsed < self.on_delay_ms:
            return STATE_VACANT
        if elapsed < self.arrival_max_ms and (back or self._passing(offset, now_ms)):
            return STATE_VACANT
        return self._occupy(smooth)

    def _passing(self, offset, now_ms):
        # Return True while the arrival may still be a vehicle driving through: the field has
        # not been quiet for arrival_settle_ms yet, or it settled back on the baseline after
        # swinging both ways.
        if ticks_diff(now_ms, self._disturbed_at) < self.arrival_settle_ms:
            return True
        if offset * 100 > self.band * self.arrival_offset_percent:
            return False

        # A vehicle driving over the sensor swings the field one way as it comes and the
        # other way as it goes. A car that parks with no offset swung it one way only. This
        # test is reached only if arrival_settle_ms is shorter than gap_ms, because gap_ms
        # ends an arrival that is quiet on the baseline.
        if not self.arrival_swing_delta:
            return False
        baseline = self._baseline_fixed >> FIXED_SHIFT
        above = self._arrival.high - baseline
        below = baseline - self._arrival.low
        return above >= self.arrival_swing_delta and below >= self.arrival_swing_delta

    def _back_at_warmup_level(self, smooth, offset):
        # Return True when the field is off the baseline but inside the level band of the
        # warm-up's steady window. A car parked with no offset ends back on the baseline.
        if offset <= self.band:
            return False
        moved = smooth - self._early_level
        return -self._early_band <= moved <= self._early_band

    def _recheck_baseline(self, now_ms):
        # The calibration accepted a window while a vehicle's field was still present: the
        # vehicle drove off at once, and the field went back to where it stood in the
        # warm-up. Its "arrival" is the empty bay's field coming back, so the warm-up window
        # becomes the baseline, and the bay stays vacant.
        self._rechecking = False
        self._learn_baseline(self._early_level, self._early_band, now_ms)
        return STATE_VACANT

    def _learn_baseline(self, level, band, now_ms):
        self.baseline = level
        self._baseline_fixed = level << FIXED_SHIFT
        self._reference_fixed = self._baseline_fixed
        self._moved_since = now_ms
        self.band = band
        self._offset_noise_fixed = (band * 100 // self.level_noise_percent) << FIXED_SHIFT
        self.phase = PHASE_VACANT

    def _occupy(self, smooth):
        self.phase = PHASE_OCCUPIED
        self._settling = True
        self._level_fixed = smooth << FIXED_SHIFT
        return STATE_OCCUPIED

    def _occupied(self, smooth, spread, offset, active, quiet, now_ms):
        if self._settling:
            self._level_fixed = smooth << FIXED_SHIFT
            self._arrival.push(smooth, spread)
            if self._short_stay_over(smooth, offset, spread, now_ms):
                return self._vacate(now_ms)
            if quiet:
                self._settling = False
        elif active:
            self.phase = PHASE_LEAVING
            self._event_since = now_ms
            self._transient.start(smooth)
            self._confirming = False
        else:
            self._level_fixed += ((smooth << FIXED_SHIFT) - self._level_fixed) >> self._drift_shift
        return STATE_OCCUPIED

    def _watch_short_stay(self):
        self._stood_still = False
        self._still_since = -1
        self._returned_since = -1

    def _short_stay_over(self, smooth, offset, spread, now_ms):
        # Return True once a short stay has ended. The field held still well off the baseline
        # for hold_ms: a vehicle standing, not one swinging through while it manoeuvres. Then
        # it was back on the baseline, or much nearer to it than to where it stood, for
        # return_ms. Called from the first change on, because a short stay can be over
        # before on_delay_ms has passed.

        # A car that stops far off the baseline can keep the smoothed field moving by a few
        # percent of its offset. That is more than the activity band learned on the empty bay,
        # so a spread that is small beside the offset counts as still too.
        far = offset * 100 > self.band * self.return_offset_percent
        still = spread <= self.activity_band or spread * 100 <= offset * self.still_spread_percent
        if far and still:
            if self._still_since < 0:
                self._still_since = now_ms
            elif ticks_diff(now_ms, self._still_since) >= self.hold_ms:
                self._stood_still = True
                self._stood_level = smooth
        else:
            self._still_since = -1
        moved = smooth - self._stood_level
        if moved < 0:
            moved = -moved
        back = offset <= self.band or offset * 100 <= moved * self.return_nearer_percent
        if not self._stood_still or not back:
            self._returned_since = -1
            return False
        if self._returned_since < 0:
            self._returned_since = now_ms
        return ticks_diff(now_ms, self._returned_since) >= self.return_ms

    def _leaving(self, smooth, spread, offset, quiet, now_ms):
        self._transient.push(smooth, spread)
        if not quiet:
            return STATE_OCCUPIED

        band = self.band
        lasted = ticks_diff(self._disturbed_at, self._event_since)
        parked = self._level_fixed >> FIXED_SHIFT
        baseline = self._baseline_fixed >> FIXED_SHIFT
        parked_offset = parked - baseline
        if parked_offset < 0:
            parked_offset = -parked_offset
        moved = smooth - parked
        if moved < 0:
            moved = -moved

        # A car that stood off the baseline left if the field is back on the baseline, or
        # much nearer to it than to the parked level (the empty bay's field may have moved).
        # NOTE: a car that moves off the sensor and back within its stay reads as a
        # departure and a new arrival. Only a weak transient waits for confirmation first, a
        # departure unlike the car's arrival is dropped below, and docs/detector.md counts the
        # misses left.
        nearer = offset <= band or offset * 100 <= moved * self.departure_offset_percent
        departed = (nearer and parked_offset > band) or lasted >= self.exit_min_ms
        settling_back = False
        if not departed and offset * 100 <= moved * self.departure_mirror_nearer_percent:
            # The field swung the way this car's arrival did and ended much nearer the
            # baseline than the parked level. That is a departure whose field still settles
            # back onto the baseline, too slowly for the tests above.
            settling_back = self._mirrors_arrival(parked, baseline) > 0
            departed = settling_back
        if offset > self.band_max:
            # An offset above occupied_above_delta always counts as a vehicle, so a field
            # that ends there is a vehicle that moved within the bay, however long the
            # transient lasted.
            departed = False
        elif self._confirming:
            # A weak departure remains valid while the field's distance from the baseline is
            # at most departure_confirm_return_percent % of its distance from the parked level.
            departed = offset * 100 <= moved * self.departure_confirm_return_percent
        if departed and self._needs_confirming(parked, baseline):
            self._confirming = True
            if ticks_diff(now_ms, self._disturbed_at) < self.departure_confirm_ms:
                return STATE_OCCUPIED
            # A car that swung the field far beyond the span as it arrived swings it that way
            # again as it leaves. A weak transient that did not is a car rolling in the bay.
            departed = self._mirrors_arrival(parked, baseline) >= 0

        # The reach test is for a field that ends off the baseline. A car parked with no
        # offset leaves the field inside the level band, where noise alone can put it a count or
        # two beyond the parked level.
        if departed and self.departure_reach_percent and offset > band and self._stopped_short(smooth, parked, baseline):
            departed = False
        if departed:
            if offset > band and not settling_back:
                # A departure that ends off the old baseline: the empty bay's field moved.
                self._baseline_fixed = smooth << FIXED_SHIFT
            return self._vacate(now_ms)
        self.phase = PHASE_OCCUPIED
        self._level_fixed = smooth << FIXED_SHIFT
        return STATE_OCCUPIED

    def _needs_confirming(self, parked, baseline):
        # A car driving off swings the field hard or beyond both its parked level and the
        # baseline. A transient that does neither may be a parked car rolling a little. Once
        # a departure waits, a later transient restarts the wait instead of ending it.
        if self._confirming:
            return True
        transient = self._transient
        if transient.peak_spread * 100 >= self.activity_band * self.departure_spread_percent:
            return False
        swing = transient.overshoot(parked, baseline)
        return swing * 100 < self.band * self.departure_overshoot_percent

    def _mirrors_arrival(self, parked, baseline):
        # Compare the leaving transient with the arrival, beyond the span between the parked
        # level and the baseline, on the side where the arrival swung farther. Return 1 when
        # the transient swung that way by at least departure_mirror_percent % of the
        # arrival's swing, and -1 when it did not. Return 0 when the arrival swung less than
        # departure_mirror_min_delta counts beyond the span, so there is nothing to mirror.
        if parked > baseline:
            high, low = parked, baseline
        else:
            high, low = baseline, parked
        arrival = self._arrival
        above = arrival.high - high
        below = low - arrival.low
        if above >= below:
            arrived, left = above, self._transient.high - high
        else:
            arrived, left = below, low - self._transient.low
        if not self.departure_mirror_min_delta or arrived < self.departure_mirror_min_delta:
            return 0
        if left * 100 >= arrived * self.departure_mirror_percent:
            return 1
        return -1

    def _stopped_short(self, smooth, parked, baseline):
        # Return True when the field ended beyond the parked level, on the side away from the
        # baseline, but the transient did not reach as far as the arrival swung that way. A
        # car that left would have driven back through its arrival's path.
        if parked > baseline:
            if smooth <= parked:
                return False
            arrived = self._arrival.high - baseline
            left = self._transient.high - baseline
        else:
            if smooth >= parked:
                return False
            arrived = baseline - self._arrival.low
            left = baseline - self._transient.low
        return left * 100 < arrived * self.departure_reach_percent

    def _vacate(self, now_ms):
        self.phase = PHASE_VACANT
        self._rearming = True
        self._vacated_at = now_ms
        return STATE_VACANT

    def _follow_noise(self, spread, offset):
        # Both bands follow the quiet-time noise, so bands learned while the sensor was
        # still settling move to the real noise level.
        self._spread_noise_fixed += ((spread << FIXED_SHIFT) - self._spread_noise_fixed) >> self._noise_shift
        band = (self._spread_noise_fixed >> FIXED_SHIFT) * self.activity_noise_percent // 100
        self.activity_band = _clamp(band, self.band_min, self.band_max)
        self._offset_noise_fixed += ((offset << FIXED_SHIFT) - self._offset_noise_fixed) >> self._noise_shift
        band = (self._offset_noise_fixed >> FIXED_SHIFT) * self.level_noise_percent // 100
        self.band = _clamp(band, self.band_min, self.band_max)

    def _calibrate(self, smooth, spread, now_ms):
        # Keep the last calibration_ms of smoothed samples, and accept them as the empty bay's
        # field once their older and newer halves agree. A sensor still settling, or a vehicle
        # leaving during calibration, is then not learned as the baseline.
        if not self._second_average.full():
            return
        if not self._calibration_started:
            self._calibration_started = True
            self._calibration_since = now_ms
        elapsed = ticks_diff(now_ms, self._calibration_since)
        if spread > self.calibration_activity:
            # A vehicle moved: the window must start after it, and the activity band is
            # learned from quiet samples only.
            self._moved_at = elapsed
            self._calibration_spread = 0
        if self._early_band >= 0:
            # The activity band is not learned yet, so a swing is a spread above its floor.
            if self._early_swing_at < 0 and spread > self.band_min:
                self._early_swing_at = now_ms
            if smooth > self._early_high:
                self._early_high = smooth
            elif smooth < self._early_low:
                self._early_low = smooth
        warming = elapsed < self.warmup_ms
        if warming and not self.calibration_shift_delta:
            return
        if not warming and self._warming:
            # The window that may become the baseline starts after the warm-up.
            self._warming = False
            self._calibration_count = 0
        if not warming and spread > self._calibration_spread:
            self._calibration_spread = spread
        count = self._append_calibration(smooth, elapsed)
        if count < 4:
            return

        half = count >> 1
        older = self._median_of(0, half)
        newer = self._median_of(half, count)
        whole = self._median_of(0, count)
        ordered = self._sorted
        interquartile = ordered[(3 * count) >> 2] - ordered[count >> 2]
        band = _clamp(interquartile * self.level_iqr_percent // 100, self.band_min, self.band_max)
        drift = newer - older
        if drift < 0:
            drift = -drift
        # Steady: the halves agree, and no vehicle moved within the window.
        steady = drift * 2 <= band and elapsed - self._moved_at >= self.calibration_ms
        if warming:
            # A second hypothesis of the empty bay's field, in case a car arrives while the
            # calibration still runs: the first steady window, before it could have come.
            if steady and self._early_band < 0:
                self._early_level = whole
                self._early_band = band
                self._early_high = whole
                self._early_low = whole
            return
        if not steady and elapsed < self.calibration_max_ms:
            return  # wait for a steady window

        arrived = False
        if self._early_band >= 0:
            shift = whole - self._early_level
            if shift < 0:
                shift = -shift
            if shift > self.calibration_shift_delta:
                # The field settled far from where it stood in the warm-up: a car arrived
                # during the calibration, and learning its field would hide it.
                arrived = True
                whole = self._early_level
                band = self._early_band
            elif shift >= self._early_band:
                # Nearer than that, the window may also hold a vehicle that is still passing
                # and drives off at once. The first arrival rechecks it.
                self._baseline_doubtful = True
                self._calibrated_at = now_ms
        self._learn_baseline(whole, band, now_ms)
        activity_band = self._calibration_spread * self.activity_calibration_percent // 100
        self.activity_band = _clamp(activity_band, self.band_min, self.band_max)
        self._spread_noise_fixed = (self.activity_band * 100 // self.activity_noise_percent) << FIXED_SHIFT
        self._calibrated = True
        if arrived:
            self._arrive(smooth, now_ms)
            # Timed from the first swing after the warm-up's steady window, as for a car
            # arriving at a vacant bay, with that swing in the arrival's shape. Timed from
            # now, a car parked with no offset is back on the baseline for gap_ms before
            # on_delay_ms has passed, and reads as a passer-by.
            if self._early_swing_at >= 0:
                self._event_since = self._early_swing_at
            arrival = self._arrival
            if self._early_high > arrival.high:
                arrival.high = self._early_high
            if self._early_low < arrival.low:
                arrival.low = self._early_low

    def _append_calibration(self, smooth, elapsed):
        # Add one sample; keep only the newest samples that span calibration_ms. Returns the
        # number kept once they span it, or 0 while they do not yet.
        values = self._calibration_values
        times = self._calibration_times
        count = self._calibration_count
        if count == MAX_CALIBRATION_SAMPLES:
            self._drop_oldest(1)
            count -= 1
        values[count] = smooth
        times[count] = elapsed
        count += 1
        self._calibration_count = count
        if elapsed - times[0] < self.calibration_ms:
            return 0
        surplus = 0
        while surplus < count - 2 and elapsed - times[surplus + 1] >= self.calibration_ms:
            surplus += 1
        if surplus:
            self._drop_oldest(surplus)
            count -= surplus
            self._calibration_count = count
        return count

    def _drop_oldest(self, number):
        values = self._calibration_values
        times = self._calibration_times
        for i in range(number, self._calibration_count):
            values[i - number] = values[i]
            times[i - number] = times[i]

    def _median_of(self, start, end):
        # Insertion-sort values[start:end] into self._sorted (no allocation); return the median.
        values = self._calibration_values
        ordered = self._sorted
        size = end - start
        for i in range(size):
            sample = values[start + i]
            j = i - 1
            while j >= 0 and ordered[j] > sample:
                ordered[j + 1] = ordered[j]
                j -= 1
            ordered[j + 1] = sample
        return ordered[size >> 1]

