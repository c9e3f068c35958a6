# Presence, and the base of the ultrasonic decision: fixed thresholds with time hysteresis.

from detector import KIND_PRESENCE, NO_WISH, PHASE_OCCUPIED, PHASE_VACANT, STATE_OCCUPIED, STATE_VACANT, ticks_diff
from detector_settings import read_setting


class ThresholdDecision:
    # Fixed thresholds with time hysteresis: ultrasonic distance, or a 0/1 presence input.

    def __init__(self, kind, settings, defaults):
        self.on_delay_ms = read_setting(settings, defaults, "on_delay_ms")
        self.off_delay_ms = read_setting(settings, defaults, "off_delay_ms")
        self.presence = kind == KIND_PRESENCE
        if self.presence:
            self.occupied_below = 0
            self.vacant_above = 1
            self.valid_min = 0
            self.valid_max = 1
        else:
            # No defaults: these two depend on the mounting height of the sensor.
            self.occupied_below = read_setting(settings, {}, "occupied_below_mm")
            self.vacant_above = read_setting(settings, {}, "vacant_above_mm")
            if self.occupied_below >= self.vacant_above:
                raise ValueError(
                    "occupied_below_mm (%d) must be less than vacant_above_mm (%d)"
                    % (self.occupied_below, self.vacant_above)
                )
            self.valid_min = read_setting(settings, defaults, "valid_min_mm")
            self.valid_max = read_setting(settings, defaults, "valid_max_mm")
        self.value = 0
        self.phase = PHASE_VACANT
        self.decided = STATE_VACANT
        self._pending = NO_WISH
        self._pending_since = 0

    def restart(self):
        self.decided = NO_WISH
        self._pending = NO_WISH

    def resume(self):
        self.restart()

    def decide(self, value, now_ms):
        self.value = value
        if self.presence:
            wish = STATE_OCCUPIED if value else STATE_VACANT
        elif value <= self.occupied_below:
            wish = STATE_OCCUPIED
        elif value >= self.vacant_above:
            wish = STATE_VACANT
        else:
            wish = NO_WISH  # between the thresholds: keep the current decision

        if wish == NO_WISH or wish == self.decided:
            self._pending = NO_WISH
            return wish
        if wish != self._pending:
            self._pending = wish
            self._pending_since = now_ms
            return NO_WISH
        delay = self.on_delay_ms if wish == STATE_OCCUPIED else self.off_delay_ms
        if ticks_diff(now_ms, self._pending_since) < delay:
            return NO_WISH
        self.decided = wish
        self._pending = NO_WISH
        self.phase = PHASE_OCCUPIED if wish == STATE_OCCUPIED else PHASE_VACANT
        return wish
