"""The bench controller: a second MicroPython board that plays the bay for a real board's sensor.

It is driven through Device like any board. install() puts a small responder in its REPL
namespace; the methods then change what the responder does, one short exec each:

- ultrasonic: the controller watches the node's trigger line and responds to each trigger
  with a pulse on the node's echo line as long as the echo of the requested distance (the sensor's
  own echo output is disconnected), or with nothing (an unplugged ranger);
- presence: the controller drives the node's presence input high or low;
- magnetometer: the controller switches a coil near the sensor through a MOSFET (the car's
  field) and the sensor's supply through a second one (an unplugged sensor).

docs/hil.md shows the wiring. Pins are the controller's GPIO numbers, set by a JSON file.
"""

import json
import logging

from ..device import Device
from ..errors import ConfigError

log = logging.getLogger(__name__)

# The controller's GPIOs, unless a wiring file names others.
DEFAULT_WIRING = {
    "trigger_in": 25,  # from the node's trigger pin
    "echo_out": 26,  # to the node's echo pin, in place of the ranger's echo (both are 3.3 V logic)
    "presence_out": 27,  # to the node's presence input
    "coil_out": 32,  # gate of the MOSFET switching the coil beside the magnetometer
    "sensor_power_out": 33,  # gate of the MOSFET switching the sensor's supply (high: powered)
}
# Speed of sound at 20 °C is 343 m/s: an echo lasts 2000/343 µs per millimetre of range.
ECHO_US_PER_MM = 2000 / 343
# An HC-SR04 raises its echo line about 450 µs after the trigger pulse ends.
ECHO_DELAY_US = 450

# Runs on the controller. Names start with _bench so they never clash with a user's REPL
# variables. The handler is a soft IRQ: it runs a little late, which shifts the echo pulse but
# does not change its width, and the width is what the node measures.
RESPONDER = """
import machine, time
_bench_pins = %(pins)r
_bench_trigger = machine.Pin(_bench_pins['trigger_in'], machine.Pin.IN)
_bench_echo = machine.Pin(_bench_pins['echo_out'], machine.Pin.OUT, value=0)
_bench_presence = machine.Pin(_bench_pins['presence_out'], machine.Pin.OUT, value=0)
_bench_coil = machine.Pin(_bench_pins['coil_out'], machine.Pin.OUT, value=0)
_bench_power = machine.Pin(_bench_pins['sensor_power_out'], machine.Pin.OUT, value=1)
_bench_echo_us = [0, 0]
def _bench_respond(pin):
    width = _bench_echo_us[0]
    if width:
        time.sleep_us(%(delay)d)
        _bench_echo.value(1)
        time.sleep_us(width)
        _bench_echo.value(0)
        _bench_echo_us[1] += 1
_bench_trigger.irq(handler=_bench_respond, trigger=machine.Pin.IRQ_FALLING)
"""


def load_wiring(path):
    """Return the controller's pins: DEFAULT_WIRING updated from the JSON file at `path`."""
    wiring = dict(DEFAULT_WIRING)
    if path is None:
        return wiring
    try:
        changes = json.loads(open(path).read())
    except (OSError, ValueError) as error:
        raise ConfigError("cannot read the bench wiring file %s" % path, str(error)) from error
    unknown = set(changes) - set(DEFAULT_WIRING)
    if unknown:
        raise ConfigError("unknown pins in %s: %s" % (path, sorted(unknown)), "known: %s" % ", ".join(DEFAULT_WIRING))
    wiring.update(changes)
    return wiring


class BenchController:
    """A MicroPython board on `port`, wired to the node's sensor lines as `wiring` sets out."""

    def __init__(self, port, wiring=None):
        self.wiring = dict(wiring or DEFAULT_WIRING)
        self.device = Device(port)
        self.port = port

    def install(self):
        """Load the responder: no echo, presence low, coil off, sensor powered."""
        self.device.exec(RESPONDER % {"pins": self.wiring, "delay": ECHO_DELAY_US})
        log.info("bench controller on %s ready, pins %s", self.port, self.wiring)
        return self

    def close(self):
        self.device.close()

    def set_echo_distance(self, distance_mm):
        """Respond to every trigger with the echo of an object `distance_mm` away."""
        width_us = round(distance_mm * ECHO_US_PER_MM)
        self.device.exec("_bench_echo_us[0] = %d" % width_us)

    def silence_echo(self):
        """Respond to no trigger, as a ranger with its cable pulled."""
        self.device.exec("_bench_echo_us[0] = 0")

    def echoes_sent(self):
        """Return how many echo pulses the controller has sent since install()."""
        return self.device.eval("_bench_echo_us[1]")

    def set_presence(self, present):
        self.device.exec("_bench_presence.value(%d)" % bool(present))

    def set_coil(self, on):
        self.device.exec("_bench_coil.value(%d)" % bool(on))

    def set_sensor_power(self, on):
        self.device.exec("_bench_power.value(%d)" % bool(on))

    def levels(self):
        """Return {pin name: level} of the controller's outputs."""
        names = ("echo_out", "presence_out", "coil_out", "sensor_power_out")
        values = self.device.eval(
            "(_bench_echo.value(), _bench_presence.value(), _bench_coil.value(), _bench_power.value())"
        )
        return dict(zip(names, values))
