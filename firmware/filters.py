# Filters of the detector's readings, in preallocated rings: push() allocates nothing.
#
# MovingSum and Spread filter every reading of a decision. Transient records the shape of one
# magnetometer transient. The decisions also keep slow levels (baselines, noise) as
# exponential averages in fixed point: FIXED_SHIFT and shift_for() set their precision and
# length.

from array import array

try:
    from micropython import const
except ImportError:  # CPython

    def const(value):
        return value


FIXED_SHIFT = const(8)  # levels kept in 1/256 count, so slow drift is not rounded away


def shift_for(count):
    # The power of two at least `count`, as a shift: an average over ~count samples.
    shift = 0
    while (1 << shift) < count:
        shift += 1
    return shift


class MovingSum:
    # Sum of the last `size` values, in a preallocated ring; push() allocates nothing.

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
        # Add a value; return the sum over the window, scaled up while it is still filling.
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


class Spread:
    # Max minus min of the last `size` values, in a preallocated ring.

    def __init__(self, size):
        self.size = size
        self._ring = array("i", [0] * size)
        self.clear()

    def clear(self):
        self._count = 0
        self._index = 0

    def push(self, value):
        ring = self._ring
        index = self._index
        ring[index] = value
        index += 1
        if index == self.size:
            index = 0
        self._index = index
        if self._count < self.size:
            self._count += 1
        low = ring[0]
        high = low
        for i in range(1, self._count):
            sample = ring[i]
            if sample < low:
                low = sample
            elif sample > high:
                high = sample
        return high - low


class Transient:
    # Shape of one field transient: its largest spread and the highest and lowest field.

    def __init__(self):
        self.start(0)

    def start(self, smooth):
        self.peak_spread = 0
        self.high = smooth
        self.low = smooth

    def push(self, smooth, spread):
        if spread > self.peak_spread:
            self.peak_spread = spread
        if smooth > self.high:
            self.high = smooth
        elif smooth < self.low:
            self.low = smooth

    def overshoot(self, level, other_level):
        # Return how far the field swung beyond the span between two levels, in counts.
        if level > other_level:
            high, low = level, other_level
        else:
            high, low = other_level, level
        beyond = self.high - high
        if low - self.low > beyond:
            beyond = low - self.low
        if beyond < 0:
            return 0
        return beyond
