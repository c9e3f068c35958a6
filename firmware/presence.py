# Digital presence input: the output pin of a radar or PIR module, read through an edge IRQ.
#
# The interrupt handler stores the pin level and the time of the edge in preallocated fields;
# read() turns that into a debounced 0/1 for the detector. Both allocate nothing. The pin
# comes from the board layer, so this module never imports `machine`.

try:
    from time import ticks_ms, ticks_diff
except ImportError:  # CPython
    from detector import ticks_diff
    from time import monotonic_ns

    def ticks_ms():
        return (monotonic_ns() // 1000000) & ((1 << 30) - 1)


class PresenceInput:
    """A debounced digital input; `active_high` False inverts modules that pull low on presence."""

    def __init__(self, pin, debounce_ms=50, active_high=True):
        if debounce_ms < 0:
            raise ValueError("debounce_ms must be >= 0, got %d" % debounce_ms)
        self.pin = pin
        self.debounce_ms = debounce_ms
        self._invert = 0 if active_high else 1
        self.edges = 0  # edges seen by the handler (a chattering output shows up here)
        self._raw = pin.value() ^ self._invert
        self._edge_ms = ticks_ms()
        self.value = self._raw
        self._handler = self._on_edge  # bound once, so irq() gets no fresh bound method

    def start(self):
        self.pin.irq(handler=self._handler, trigger=self.pin.IRQ_RISING | self.pin.IRQ_FALLING)

    def stop(self):
        self.pin.irq(handler=None)

    def _on_edge(self, pin):
        # Soft IRQ on the ESP32 port: it may run late, so the level is read again here
        # rather than inferred from the edge's direction.
        self._raw = pin.value() ^ self._invert
        self._edge_ms = ticks_ms()
        self.edges += 1

    def read(self, now_ms):
        """Return the debounced level: a new level counts once it has held for debounce_ms."""
        if self._raw != self.value and ticks_diff(now_ms, self._edge_ms) >= self.debounce_ms:
            self.value = self._raw
        return self.value
