# The board's `machine` on the virtual board: a simulated ESP32.
#
# Pins, IRQs, I2C, the watchdog and resets behave as MicroPython's esp32 port documents them,
# closely enough that the node firmware runs unchanged. Simulated sensors (sim_devices.py) are
# wired to pins as sim/wiring.json sets and read the simulated world from sim/stimulus.json.

import sys

_saved_path = sys.path
sys.path = []
try:
    import machine as _machine
    import micropython
    import time as _real_time
finally:
    sys.path = _saved_path

import _sim

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

_pins = {}


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1
    IRQ_RISING = 1
    IRQ_FALLING = 2
    WAKE_LOW = 4
    WAKE_HIGH = 5

    def __init__(self, id, mode=-1, pull=-1, value=None):
        if not isinstance(id, int) or not 0 <= id <= 48:
            raise ValueError("invalid pin")
        self.id = id
        self._level = 0
        self._handler = None
        self._trigger = 0
        self._listeners = []
        self.init(mode, pull, value)
        _pins[id] = self
        import sim_devices

        sim_devices.attach(self)

    def init(self, mode=-1, pull=-1, value=None):
        if mode != -1:
            self._mode = mode
        if value is not None:
            self.value(value)

    def value(self, level=None):
        if level is None:
            return self._level
        self._set(1 if level else 0)

    def __call__(self, level=None):
        return self.value(level)

    def on(self):
        self._set(1)

    def off(self):
        self._set(0)

    def irq(self, handler=None, trigger=3, hard=False, wake=None):
        # ESP32 pin IRQs are soft unless hard=True: the handler is scheduled, not run at once.
        self._handler = handler
        self._trigger = trigger
        self._hard = hard
        return self

    def _set(self, level):
        previous = self._level
        self._level = level
        if previous != level:
            for listener in self._listeners:
                listener(self, level)

    def drive(self, level):
        """Set an input pin's level from a simulated device, raising its IRQ as the edge would."""
        previous = self._level
        self._level = level
        if previous == level or self._handler is None:
            return
        edge = Pin.IRQ_RISING if level else Pin.IRQ_FALLING
        if self._trigger & edge:
            if self._hard:
                self._handler(self)
            else:
                micropython.schedule(self._handler, self)

    def __repr__(self):
        return "Pin(%d)" % self.id


class Signal:
    def __init__(self, pin, invert=False):
        self._pin = pin
        self._invert = invert

    def value(self, level=None):
        if level is None:
            return self._pin.value() ^ self._invert
        self._pin.value((1 if level else 0) ^ self._invert)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class I2C:
    def __init__(self, id=0, scl=None, sda=None, freq=400000, timeout=50000):
        import sim_devices

        self._bus = sim_devices.i2c_bus()

    def scan(self):
        return self._bus.scan()

    def readfrom_mem_into(self, addr, memaddr, buf, addrsize=8):
        self._bus.device(addr).read_into(memaddr, buf)

    def readfrom_mem(self, addr, memaddr, nbytes, addrsize=8):
        buf = bytearray(nbytes)
        self.readfrom_mem_into(addr, memaddr, buf)
        return bytes(buf)

    def writeto_mem(self, addr, memaddr, buf, addrsize=8):
        self._bus.device(addr).write(memaddr, buf)

    def writeto(self, addr, buf, stop=True):
        if len(buf):
            self._bus.device(addr).write(buf[0], buf[1:])
        return 1

    def readfrom_into(self, addr, buf, stop=True):
        self._bus.device(addr).read_into(None, buf)


SoftI2C = I2C


class Timer:
    ONE_SHOT = 0
    PERIODIC = 1

    # NOTE: callbacks run when the firmware sleeps (time.sleep*), not on a hardware timer, so a
    # firmware that busy-waits without sleeping never gets them.
    def __init__(self, id=0, **kwargs):
        self._callback = None
        if kwargs:
            self.init(**kwargs)

    def init(self, mode=PERIODIC, period=1000, callback=None, freq=None):
        if freq:
            period = 1000 // freq
        self._mode = mode
        self._period = period
        self._callback = callback
        self._due = _real_time.ticks_add(_real_time.ticks_ms(), period)
        import time

        time.add_poller(self._poll)

    def _poll(self):
        if self._callback is None:
            return
        now = _real_time.ticks_ms()
        if _real_time.ticks_diff(now, self._due) >= 0:
            callback = self._callback
            if self._mode == Timer.PERIODIC:
                self._due = _real_time.ticks_add(self._due, self._period)
            else:
                self._callback = None
            micropython.schedule(callback, self)

    def deinit(self):
        self._callback = None


class WDT:
    """The task watchdog: the supervisor resets the board when feeds stop for `timeout` ms."""

    # A feed touches a file in sim/; more often than this (milliseconds) it is skipped, which
    # keeps the simulation cheap and is far below any useful watchdog timeout.
    _FEED_WRITE_MS = 250

    def __init__(self, id=0, timeout=5000):
        if timeout < 1:
            raise ValueError("WDT timeout too short")
        self._timeout = timeout
        self._written = None
        with _sim.host_open(_sim.SIM_DIR + "/wdt_timeout_ms", "w") as f:
            f.write(str(timeout))
        self.feed()

    def feed(self):
        now = _real_time.ticks_ms()
        if self._written is not None and _real_time.ticks_diff(now, self._written) < WDT._FEED_WRITE_MS:
            return
        self._written = now
        with _sim.host_open(_sim.SIM_DIR + "/wdt_fed", "w") as f:
            f.write(str(now))


def reset_cause():
    return _sim.RESET_CAUSE


def reset():
    _sim.request_reset("hard")


def soft_reset():
    raise SystemExit


def unique_id():
    identity = _sim.wiring().get("mac", "24:0a:c4:00:00:01")
    return bytes(int(part, 16) for part in identity.split(":"))


_frequency = [160000000]


def freq(hz=None):
    if hz is None:
        return _frequency[0]
    _frequency[0] = hz


def idle():
    _real_time.sleep_ms(1)


def lightsleep(ms=None):
    import time

    time.sleep_ms(ms or 0)


def deepsleep(ms=None):
    _sim.request_reset("deepsleep")


def disable_irq():
    return 0


def enable_irq(state=0):
    pass


time_pulse_us = _machine.time_pulse_us
