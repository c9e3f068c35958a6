"""Token buckets for frames per device and per source, and a limiter for repeated log lines."""

import itertools
import time

# Share of the size limit that a sweep of the bucket table frees at least. When dropping the full
# buckets frees less, the entries added first are dropped too. The next sweep is then far away, so a
# new key costs amortized constant time even while every bucket is in use.
SWEEP_FREES_AT_LEAST = 0.25

# Tokens that take() lets a bucket be short of one and still accept, far above float rounding.
TOKEN_SLACK = 1e-6


class BucketTable:
    """One token bucket per key: `rate` events per second on average and `burst` at once.

    A bucket is stored as one float, the time at which it is full again (the generic cell rate
    algorithm's theoretical arrival time). It accepts and rejects as a bucket of `burst` tokens
    refilled at `rate` tokens per second would, within TOKEN_SLACK. A take costs one dict lookup
    and no list update, which matters because the gateway takes from two buckets per datagram.
    A full bucket is the same as an absent key, so at most `max_buckets` are kept by dropping
    full ones first (see _sweep).
    """

    def __init__(self, rate, burst, max_buckets):
        if rate <= 0:
            raise ValueError("rate must be above 0 events/s, got %r" % rate)
        self.rate = rate
        self.burst = burst
        self.max_buckets = max_buckets
        self._interval = 1.0 / rate  # seconds one token takes to refill
        # How far ahead of now the full time may be while one token is left: burst - 1 tokens,
        # plus TOKEN_SLACK so that rounding in the sums of intervals keeps the last token of a burst.
        self._tolerance = (burst - 1.0 + TOKEN_SLACK) / rate
        self._full_at = {}

    def take(self, key, now):
        """Spend one token of `key`'s bucket at time `now` (seconds); return False if none is left."""
        full_at = self._full_at.get(key)
        if full_at is None:
            if len(self._full_at) >= self.max_buckets:
                self._sweep(now)
            full_at = now
        elif full_at < now:
            full_at = now
        if full_at - now > self._tolerance:
            return False
        self._full_at[key] = full_at + self._interval
        return True

    def _sweep(self, now):
        table = self._full_at
        size = len(table)
        for key in [key for key, full_at in table.items() if full_at <= now]:
            del table[key]
        target = int(self.max_buckets * (1.0 - SWEEP_FREES_AT_LEAST))
        if size - len(table) < self.max_buckets * SWEEP_FREES_AT_LEAST and len(table) > target:
            # Most buckets are in use, as in a flood from many addresses. The entries added first
            # (not the least recently used) are dropped, and their keys start again with a full burst.
            for key in list(itertools.islice(table, len(table) - target)):
                del table[key]

    def __len__(self):
        return len(self._full_at)


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
