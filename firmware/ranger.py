# Ultrasonic ranger (HC-SR04, JSN-SR04T): echo edges timed by a Pin IRQ handler.
#
# ESP32 pin IRQs are soft: the handler is scheduled and runs late, or not at all when the
# schedule queue (8 entries) is full. So the handler only records the instant of each edge,
# a ping that lost an edge is discarded and counted, and a sample is the median of several
# pings. A sample with no valid ping is a fault, never a distance.

from array import array
from time import sleep_ms, sleep_us, ticks_diff, ticks_us

from micropython import const

MAX_PINGS = const(9)
TRIGGER_PULSE_US = const(10)  # the HC-SR04 datasheet requires at least 10 µs
POLL_US = const(100)  # how often ping() checks whether the echo ended

# Faults a sample can report; the same codes as FAULT_* in detector.py.
FAULT_NONE = const(0)
FAULT_NO_ECHO = const(1)
FAULT_OUT_OF_RANGE = const(2)
FAULT_EDGES_DROPPED = const(7)


class Ranger:
    def __init__(self, trigger, echo, settings):
        self._trigger = trigger
        self._echo = echo
        self._pings = min(MAX_PINGS, settings.get("pings_per_sample", 5))
        self._timeout_us = settings.get("echo_timeout_us", 30000)
        self._interval_ms = settings.get("ping_interval_ms", 60)
        self._min_mm = settings.get("range_min_mm", 20)
        self._max_mm = settings.get("range_max_mm", 4000)
        self._widths = array("i", [0] * MAX_PINGS)

        # Edge state written by the handler; set here so the handler never adds an attribute.
        self._rise_us = 0
        self._rising_seen = 0
        self._width_us = -1
        self.dropped_edges = 0
        self.timeouts = 0
        self.value = 0
        self.fault = FAULT_NONE

        trigger.value(0)
        # Bind once: creating the bound method in the IRQ registration on every ping would allocate.
        self._handler = self._on_edge
        echo.irq(handler=self._handler, trigger=echo.IRQ_RISING | echo.IRQ_FALLING)

    def _on_edge(self, pin):
        # Runs for every echo edge; allocates nothing.
        now = ticks_us()
        if pin.value():
            self._rise_us = now
            self._rising_seen = 1
        elif self._rising_seen:
            self._width_us = ticks_diff(now, self._rise_us)
            self._rising_seen = 0
        else:
            self.dropped_edges += 1  # a falling edge whose rising edge was lost

    def ping(self):
        """Send one ping; return the echo width in µs, or -1 when no complete echo came back."""
        self._width_us = -1
        self._rising_seen = 0
        self._trigger.value(1)
        sleep_us(TRIGGER_PULSE_US)
        self._trigger.value(0)
        start = ticks_us()
        while self._width_us < 0:
            if ticks_diff(ticks_us(), start) > self._timeout_us:
                if self._rising_seen:
                    self.dropped_edges += 1  # the falling edge was lost
                    return -2
                self.timeouts += 1
                return -1
            sleep_us(POLL_US)
        return self._width_us

    def sample(self):
        """Measure one sample into value; return its fault code (0 = valid). No allocation.

        value is the median of this sample's valid pings, in mm.
        """
        widths = self._widths
        count = 0
        lost = 0
        for i in range(self._pings):
            if i:
                sleep_ms(self._interval_ms)
            width = self.ping()
            if width >= 0:
                widths[count] = width
                count += 1
            elif width == -2:
                lost += 1
        if count == 0:
            self.fault = FAULT_EDGES_DROPPED if lost else FAULT_NO_ECHO
            return self.fault
        # Insertion sort of the few valid widths, in place.
        for i in range(1, count):
            width = widths[i]
            j = i - 1
            while j >= 0 and widths[j] > width:
                widths[j + 1] = widths[j]
                j -= 1
            widths[j + 1] = width
        # Sound travels 343 mm/ms at 20 °C, out and back.
        self.value = widths[count // 2] * 343 // 2000
        if self.value < self._min_mm or self.value > self._max_mm:
            self.fault = FAULT_OUT_OF_RANGE
        else:
            self.fault = FAULT_NONE
        return self.fault

    def read(self):
        """Return (distance in mm, fault code); allocates a tuple, unlike sample()."""
        self.sample()
        return self.value, self.fault
