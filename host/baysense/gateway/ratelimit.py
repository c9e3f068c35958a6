"""Token buckets for frames per device and per source, and a limiter for repeated log lines."""

import time
from collections import OrderedDict


class TokenBucket:
    """Allows `rate` events per second on average and `burst` at once."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate, burst, now):
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, now):
        """Spend one token; return False when none is left."""
        elapsed = now - self.stamp
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class BucketTable:
    """One token bucket per key, at most `max_buckets` of them (least recently used dropped)."""

    def __init__(self, rate, burst, max_buckets):
        self.rate = rate
        self.burst = burst
        self.max_buckets = max_buckets
        self._buckets = OrderedDict()

    def take(self, key, now):
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst, now)
            self._buckets[key] = bucket
            if len(self._buckets) > self.max_buckets:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(now)

    def __len__(self):
        return len(self._buckets)


class LogLimiter:
    """Passes `burst` log lines per key per `window_s`, then counts the rest.

    The first line allowed after a window closes reports how many were suppressed in it.
    """

    def __init__(self, logger, burst, window_s, clock=time.monotonic):
        self.logger = logger
        self.burst = burst
        self.window_s = window_s
        self.clock = clock
        self._windows = {}  # key -> [window start, lines logged, lines suppressed]

    def log(self, level, key, message, *args, exc_info=False):
        now = self.clock()
        window = self._windows.get(key)
        if window is None or now - window[0] >= self.window_s:
            if window is not None and window[2]:
                self.logger.log(
                    level, "suppressed %d similar lines (%s) in the last %.0f s", window[2], key, now - window[0]
                )
            window = [now, 0, 0]
            self._windows[key] = window
        if window[1] < self.burst:
            window[1] += 1
            self.logger.log(level, message, *args, exc_info=exc_info)
        else:
            window[2] += 1
