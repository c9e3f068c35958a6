# The board's `time` on the virtual board: MicroPython's own, plus two things a simulated
# sensor needs. ticks_us() returns the simulated instant of an echo edge while that edge's
# IRQ handler runs, because the handler runs later than the edge it reports (as a soft IRQ
# does on an ESP32). The sleep functions let the simulated world move on (pin levels, IRQs).

import sys

_saved_path = sys.path
sys.path = []
try:
    import time as _time
    from time import *  # noqa: F401,F403
finally:
    sys.path = _saved_path

_ticks_us = _time.ticks_us
_sleep_ms = _time.sleep_ms
_sleep_us = _time.sleep_us

# [edge instant in ticks_us, or None]; a list so the handler wrapper can set it without a global
edge_override = [None]
_pollers = []


def ticks_us():
    override = edge_override[0]
    if override is not None:
        return override
    return _ticks_us()


def add_poller(function):
    """Call function() whenever the firmware sleeps; simulated devices update their pins there."""
    _pollers.append(function)


def _poll():
    for function in _pollers:
        function()


def sleep_ms(ms):
    _poll()
    _sleep_ms(ms)


def sleep_us(us):
    _poll()
    _sleep_us(us)


def sleep(seconds):
    _poll()
    _time.sleep(seconds)
