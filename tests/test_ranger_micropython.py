"""The ultrasonic ranger on MicroPython: its IRQ handler and its sample path allocate nothing."""

from tests.mpy.helpers import run_micropython

FAKE_PINS = """
import micropython
from array import array
import ranger


class FakePin:
    IRQ_RISING = 1
    IRQ_FALLING = 2

    def __init__(self):
        self.level = 0
        self.handler = None

    def value(self, level=None):
        if level is None:
            return self.level
        self.level = level

    def irq(self, handler=None, trigger=3):
        self.handler = handler


class ScriptedRanger(ranger.Ranger):
    # Pings return preset echo widths, so sample() runs without a sensor.
    def __init__(self, trigger, echo, settings, widths):
        super().__init__(trigger, echo, settings)
        self.script = array("i", widths)
        self.next = 0

    def ping(self):
        width = self.script[self.next]
        self.next = (self.next + 1) % len(self.script)
        return width


settings = {"pings_per_sample": 5, "ping_interval_ms": 0, "range_min_mm": 20, "range_max_mm": 4000}
"""


def test_edge_handler_allocates_nothing():
    output = run_micropython(
        FAKE_PINS
        + """
echo = FakePin()
r = ranger.Ranger(FakePin(), echo, settings)
handler = echo.handler
echo.level = 1
micropython.heap_lock()
try:
    handler(echo)
    echo.level = 0
    handler(echo)
    handler(echo)  # a falling edge whose rising edge was lost
finally:
    micropython.heap_unlock()
print(r.dropped_edges, r._width_us >= 0)
"""
    )
    assert output.split() == ["1", "True"]


def test_sample_allocates_nothing():
    output = run_micropython(
        FAKE_PINS
        + """
# 1000 mm is an echo of 5831 us; one ping timed out (-1) and one lost an edge (-2).
r = ScriptedRanger(FakePin(), FakePin(), settings, [5831, -1, 5800, -2, 5900])
micropython.heap_lock()
try:
    fault = r.sample()
finally:
    micropython.heap_unlock()
print(fault, r.value)
"""
    )
    fault, value = output.split()
    assert fault == "0"
    assert 990 <= int(value) <= 1010


def test_sample_without_echo_is_fault():
    output = run_micropython(
        FAKE_PINS
        + """
r = ScriptedRanger(FakePin(), FakePin(), settings, [-1])
print(r.sample(), ranger.FAULT_NO_ECHO)
r = ScriptedRanger(FakePin(), FakePin(), settings, [-2, -1])
print(r.sample(), ranger.FAULT_EDGES_DROPPED)
r = ScriptedRanger(FakePin(), FakePin(), settings, [40000])
print(r.sample(), ranger.FAULT_OUT_OF_RANGE)
"""
    )
    for line in output.strip().splitlines():
        got, expected = line.split()
        assert got == expected
