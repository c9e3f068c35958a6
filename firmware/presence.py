# Digital presence input: the output pin of a radar or PIR module, read through an edge IRQ.
#
# The interrupt handler stores the pin level and the time of the edge in preallocated fields,
# and read() turns them into a debounced 0/1 for the detector. Neither allocates. The pin
# comes from the board layer, so this module never imports `machine`.

try:
    import micropython
except ImportError:  # CPython
    micropython = None

try:
    from time import ticks_ms, ticks_diff
except ImportError:  # CPython
    from detector import ticks_diff
    from time import monotonic_ns

    def ticks_ms():
        return (monotonic_ns() // 1000000) & ((1 << 30) - 1)


# Room for the traceback of an exception raised inside an interrupt handler. The unix port
# has no such call, hence the check.
if micropython is not None and hasattr(micropython, "alloc_emergency_exception_buf"):
    micropython.alloc_emergency_exception_buf(100)

FAULT_NONE = 0  # the same code as in detector.py: a digital input has no fault of its own


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


class Presence:
    """The board layer's presence sensor: a PresenceInput set up from the sensor section.

    Sensor settings used: debounce_ms (default 50), active_high (default true).
    """

    def __init__(self, pin, settings):
        self.input = PresenceInput(pin, settings.get("debounce_ms", 50), settings.get("active_high", True))
        self.input.start()
        self.value = self.input.value
        self.fault = FAULT_NONE

    def sample(self):
        """Read the debounced level into value; return the fault code (always 0). No allocation."""
        self.value = self.input.read(ticks_ms())
        return FAULT_NONE

    def read(self):
        """Return (value, fault code), the board layer's sensor interface."""
        self.sample()
        return self.value, FAULT_NONE
