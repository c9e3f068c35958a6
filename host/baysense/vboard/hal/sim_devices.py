# Simulated sensors of the virtual board, wired to pins by sim/wiring.json.
#
# wiring.json comes from the board definition's "sensor" section:
#   {"kind": "ultrasonic", "pins": {"trigger": 5, "echo": 18}}
#   {"kind": "magnetometer", "pins": {"drdy": 3}, "i2c_address": 13}
#   {"kind": "presence", "pins": {"input": 4}}
# The simulated world comes from sim/stimulus.json, written by the host:
#   distance_mm, distance_noise_mm, echo (false: no echo, as an unplugged ranger),
#   drop_edge_rate (0..1: share of echo edges whose IRQ is lost), field ([x, y, z] counts),
#   field_noise (counts), noise_seed, i2c_error (true: the magnetometer does not acknowledge
#   its address), presence (0 or 1).
# distance_noise_mm and field_noise are standard deviations. The noise comes from a generator
# seeded with noise_seed, so a board given the same seed and world draws the same sequence of
# noise after each boot.

import sys

_saved_path = sys.path
sys.path = []
try:
    import micropython
    import random
    import time as _real_time
finally:
    sys.path = _saved_path

import _sim
import time as _board_time

# Speed of sound at 20 °C: 343 m/s, so an echo lasts 5.83 µs for each millimetre of range.
_US_PER_MM = 2000 / 343
# The HC-SR04 raises its echo line about 450 µs after the trigger pulse ends.
_ECHO_START_US = 450

_wiring = None
_models = {}


def _wiring_for(kind):
    global _wiring
    if _wiring is None:
        _wiring = _sim.wiring().get("sensor", {})
    if _wiring.get("kind") == kind:
        return _wiring
    return None


# The defaults of vboard/stimulus.py's DEFAULT_WORLD, for a stimulus file written without them.
# tests/test_vboard_magnetometer.py checks that the two agree.
_FIELD_NOISE_DEFAULT = 2
_NOISE_SEED_DEFAULT = 1


class _Noise:
    """Sensor noise from a xorshift32 generator of its own, restarted whenever the seed changes.

    Not `random`: the firmware draws from it too (the link's back-off jitter), which would
    make the noise depend on what the node did.
    """

    def __init__(self):
        self._seed = None
        self._state = 1

    def _uniform(self):
        # Marsaglia's xorshift32 (shifts 13, 17, 5): returns a number in [0, 1).
        x = self._state
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self._state = x
        return x / 4294967296

    def gauss(self, sigma, seed):
        """Return noise with standard deviation `sigma` (a sum of three uniforms, close to normal)."""
        if seed != self._seed:
            self._seed = seed
            self._state = (seed & 0xFFFFFFFF) or 1  # xorshift never leaves 0
        if not sigma:
            return 0
        # Three uniforms on [0, 1) have a variance of 3/12, so the sum's deviation is 0.5.
        return (self._uniform() + self._uniform() + self._uniform() - 1.5) * 2 * sigma


_noise = _Noise()


def _gauss(sigma, world):
    return _noise.gauss(sigma, world.get("noise_seed", _NOISE_SEED_DEFAULT))


class UltrasonicModel:
    """An HC-SR04: a falling trigger edge produces an echo pulse as long as the range."""

    def __init__(self, pins):
        self.trigger_id = pins["trigger"]
        self.echo_id = pins["echo"]
        self.echo = None
        self._edges = [0, 0]
        self._fire_rise = self._fire_rise_edge
        self._fire_fall = self._fire_fall_edge

    def attach(self, pin):
        if pin.id == self.echo_id:
            self.echo = pin
        elif pin.id == self.trigger_id:
            pin._listeners.append(self._on_trigger)

    def _on_trigger(self, pin, level):
        if level or self.echo is None:
            return
        world = _sim.stimulus()
        if not world.get("echo", True):
            return
        distance = world.get("distance_mm", 3000) + _gauss(world.get("distance_noise_mm", 0), world)
        start = _real_time.ticks_add(_real_time.ticks_us(), _ECHO_START_US)
        width = int(max(distance, 20) * _US_PER_MM)
        self._edges[0] = start
        self._edges[1] = _real_time.ticks_add(start, width)
        drop_rate = world.get("drop_edge_rate", 0)
        if not drop_rate or random.random() >= drop_rate:
            self._schedule(self._fire_rise)
        if not drop_rate or random.random() >= drop_rate:
            self._schedule(self._fire_fall)

    def _schedule(self, function):
        try:
            micropython.schedule(function, None)
        except RuntimeError:
            pass  # "schedule queue full": the edge is lost, as on an ESP32

    def _fire_rise_edge(self, _):
        self._deliver(1, self._edges[0])

    def _fire_fall_edge(self, _):
        self._deliver(0, self._edges[1])

    def _deliver(self, level, instant):
        echo = self.echo
        handler = echo._handler
        echo._level = level
        if handler is None:
            return
        _board_time.edge_override[0] = instant
        try:
            handler(echo)
        finally:
            _board_time.edge_override[0] = None


class PresenceModel:
    """A radar or IR presence module: a digital output that follows stimulus "presence"."""

    def __init__(self, pins):
        self.input_id = pins["input"]
        self.pin = None

    def attach(self, pin):
        if pin.id == self.input_id:
            self.pin = pin
            _board_time.add_poller(self.poll)
            self.poll()

    def poll(self):
        level = 1 if _sim.stimulus().get("presence", 0) else 0
        self.pin.drive(level)


class QMC5883L:
    """A QMC5883L magnetometer at its I2C address; data-ready pulses on the DRDY pin."""

    REG_DATA = 0x00
    REG_STATUS = 0x06
    REG_CONTROL1 = 0x09
    REG_SET_RESET = 0x0B
    REG_CHIP_ID = 0x0D

    def __init__(self, pins):
        self.registers = bytearray(14)
        self.registers[self.REG_CHIP_ID] = 0xFF
        self.drdy_id = pins.get("drdy")
        self.drdy = None
        self._period_ms = 100
        self._next = _real_time.ticks_ms()
        _board_time.add_poller(self.poll)

    def attach(self, pin):
        if pin.id == self.drdy_id:
            self.drdy = pin

    def _check(self):
        if _sim.stimulus().get("i2c_error"):
            raise OSError(19)  # ENODEV, what machine.I2C raises when nothing acknowledges

    def poll(self):
        if not self.registers[self.REG_CONTROL1] & 0x01:
            return  # standby mode: no measurements
        now = _real_time.ticks_ms()
        if _real_time.ticks_diff(now, self._next) < 0:
            return
        self._next = _real_time.ticks_add(now, self._period_ms)
        world = _sim.stimulus()
        field = world.get("field", (0, 0, 0))
        noise = world.get("field_noise", _FIELD_NOISE_DEFAULT)
        for axis in range(3):
            value = int(field[axis] + _gauss(noise, world))
            value = max(-32768, min(32767, value)) & 0xFFFF
            self.registers[2 * axis] = value & 0xFF
            self.registers[2 * axis + 1] = value >> 8
        self.registers[self.REG_STATUS] |= 0x01
        if self.drdy is not None:
            self.drdy.drive(1)
            self.drdy.drive(0)

    def read_into(self, register, buf):
        self._check()
        if register is None:
            register = 0
        for i in range(len(buf)):
            buf[i] = self.registers[(register + i) % len(self.registers)]
        if register <= self.REG_STATUS < register + len(buf) or register == self.REG_DATA:
            self.registers[self.REG_STATUS] &= ~0x01

    def write(self, register, data):
        self._check()
        for i in range(len(data)):
            self.registers[(register + i) % len(self.registers)] = data[i]
        if register == self.REG_CONTROL1:
            # ODR bits 2-3: 10, 50, 100 or 200 Hz
            rate = (10, 50, 100, 200)[(self.registers[self.REG_CONTROL1] >> 2) & 3]
            self._period_ms = 1000 // rate


class I2CBus:
    def __init__(self):
        self.devices = {}

    def scan(self):
        try:
            for device in self.devices.values():
                device._check()
        except OSError:
            return []
        return sorted(self.devices)

    def device(self, address):
        found = self.devices.get(address)
        if found is None:
            raise OSError(19)  # ENODEV
        return found


_bus = [None]


def i2c_bus():
    if _bus[0] is None:
        bus = I2CBus()
        wiring = _wiring_for("magnetometer")
        if wiring is not None:
            model = _model("magnetometer", wiring)
            bus.devices[wiring.get("i2c_address", 13)] = model
        _bus[0] = bus
    return _bus[0]


_KINDS = {"ultrasonic": UltrasonicModel, "presence": PresenceModel, "magnetometer": QMC5883L}


def _model(kind, wiring):
    model = _models.get(kind)
    if model is None:
        model = _KINDS[kind](wiring.get("pins", {}))
        _models[kind] = model
    return model


def attach(pin):
    """Connect a newly created Pin to the simulated sensor wired to it, if any."""
    global _wiring
    if _wiring is None:
        _wiring = _sim.wiring().get("sensor", {})
    kind = _wiring.get("kind")
    if kind not in _KINDS:
        return
    if pin.id in _wiring.get("pins", {}).values():
        _model(kind, _wiring).attach(pin)
