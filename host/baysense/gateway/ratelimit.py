"""Token buckets for frames per device and per source, and a limiter for repeated log lines."""

import time
from collections import OrderedDict


class BucketTable:
    """One token bucket per key, at most `max_buckets` of them (least recently used dropped).

    Each bucket allows `rate` events per second on average and `burst` at once. A bucket is a
    list [tokens, time of the last refill] that take() updates itself, which saves a method call
    on the gateway's path: it takes from two buckets for every datagram.
    """

    def __init__(self, rate, burst, max_buckets):
        self.rate = rate
        self.burst = burst
        self.max_buckets = max_buckets
        self._buckets = OrderedDict()

    def take(self, key, now):
        """Spend one token of `key`'s bucket at time `now` (seconds); return False if none is left."""
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            bucket = [self.burst, now]
            buckets[key] = bucket
            if len(buckets) > self.max_buckets:
                buckets.popitem(last=False)
        else:
            buckets.move_to_end(key)
            elapsed = now - bucket[1]
            if elapsed > 0:
                bucket[0] = min(self.burst, bucket[0] + elapsed * self.rate)
                bucket[1] = now
        if bucket[0] < 1.0:
            return False
        bucket[0] -= 1.0
        return True

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
