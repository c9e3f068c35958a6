"""The bay in front of a board's sensor: an empty bay, a parked car, an unplugged sensor, the link.

Tests speak in these terms and never in distances or fields, so one test runs on every sensor
kind and on both kinds of bench. A VirtualBay writes the virtual board's simulated world; a
BenchBay drives a bench controller (controller.py) wired to a real board's sensor lines.
"""

import logging

from ..errors import BaysenseError
from .wait import hold

log = logging.getLogger(__name__)

# A magnetometer's field (QMC5883L counts at 8 gauss) over an empty bay and with a car parked
# over it: the earth's field plus a car's steel shifts each axis by some hundreds of counts.
EMPTY_BAY_FIELD = [180, -260, 420]
PARKED_CAR_FIELD = [270, -120, -180]
# Margins (mm) from the detector's thresholds to the simulated distances, so sensor noise
# never puts a reading between the thresholds.
CAR_MARGIN_MM = 500
EMPTY_MARGIN_MM = 800


class StimulusUnsupported(BaysenseError):
    """The bench cannot produce this stimulus for this sensor (the plugin skips the test)."""


class VirtualBay:
    """The simulated world of one virtual board."""

    def __init__(self, board_name, stimulus, definition):
        self.board_name = board_name
        self.stimulus = stimulus
        self.kind = definition["sensor"]["kind"]
        detector = definition["detector"]
        sensor = definition["sensor"]
        if self.kind == "ultrasonic":
            self.car_distance_mm = max(detector["occupied_below_mm"] - CAR_MARGIN_MM, sensor.get("range_min_mm", 20) + 50)
            self.empty_distance_mm = min(detector["vacant_above_mm"] + EMPTY_MARGIN_MM, sensor.get("range_max_mm", 4000) - 100)

    def vacant(self):
        """Set an empty bay, a working sensor and a working link."""
        world = {"echo": True, "i2c_error": False, "link": True, "drop_edge_rate": 0.0}
        world.update(self._bay(parked=False))
        self._set("vacant", **world)

    def occupied(self):
        """Park a car over the sensor."""
        self._set("occupied", **self._bay(parked=True))

    def pass_by(self, seconds):
        """Put a car over the sensor for `seconds`, then take it away, as a car driving past."""
        self.occupied()
        hold(seconds)
        self.vacant_bay()

    def vacant_bay(self):
        """Take the car away, leaving the sensor and the link as they are."""
        self._set("car gone", **self._bay(parked=False))

    def unplug(self):
        """Make the sensor stop responding, as when its cable is pulled."""
        if self.kind == "ultrasonic":
            self._set("sensor unplugged", echo=False)
        elif self.kind == "magnetometer":
            self._set("sensor unplugged", i2c_error=True)
        else:
            raise StimulusUnsupported(
                "a presence module's output cannot show that it is unplugged",
                "its input reads as an empty bay; the detector's stuck_after_ms is the only check",
            )

    def plug(self):
        self._set("sensor plugged", echo=True, i2c_error=False)

    def link(self, up):
        """Bring the board's Wi-Fi link up or down (datagrams are lost both ways while down)."""
        self._set("link up" if up else "link down", link=bool(up))

    def _bay(self, parked):
        if self.kind == "ultrasonic":
            return {"distance_mm": self.car_distance_mm if parked else self.empty_distance_mm}
        if self.kind == "magnetometer":
            return {"field": PARKED_CAR_FIELD if parked else EMPTY_BAY_FIELD}
        return {"presence": 1 if parked else 0}

    def _set(self, what, **values):
        log.info("%s: bay stimulus: %s %s", self.board_name, what, values)
        self.stimulus.set(**values)


class BenchBay:
    """A real board's bay, moved by a bench controller; the link is the gateway's socket."""

    def __init__(self, board_name, controller, definition, gateway):
        self.board_name = board_name
        self.controller = controller
        self.gateway = gateway
        self.kind = definition["sensor"]["kind"]
        detector = definition["detector"]
        if self.kind == "ultrasonic":
            self.car_distance_mm = detector["occupied_below_mm"] - CAR_MARGIN_MM
            self.empty_distance_mm = detector["vacant_above_mm"] + EMPTY_MARGIN_MM

    def vacant(self):
        if self.controller is not None:
            self.plug()
            self.vacant_bay()
        if not self.gateway.running:
            self.gateway.resume()

    def occupied(self):
        log.info("%s: bench: car parked", self.board_name)
        self._set_bay(parked=True)

    def vacant_bay(self):
        log.info("%s: bench: car gone", self.board_name)
        self._set_bay(parked=False)

    def pass_by(self, seconds):
        self.occupied()
        hold(seconds)
        self.vacant_bay()

    def unplug(self):
        controller = self._controller()
        if self.kind == "ultrasonic":
            controller.silence_echo()
        elif self.kind == "magnetometer":
            controller.set_sensor_power(False)
        else:
            raise StimulusUnsupported(
                "a presence module's output cannot show that it is unplugged",
                "its input reads as an empty bay; the detector's stuck_after_ms is the only check",
            )

    def plug(self):
        controller = self._controller()
        if self.kind == "magnetometer":
            controller.set_sensor_power(True)
        elif self.kind == "ultrasonic":
            controller.set_echo_distance(self.empty_distance_mm)

    def link(self, up):
        """Stop or restart the gateway: a bench cannot cut the board's Wi-Fi, but it can stop the far end."""
        if up:
            self.gateway.resume()
        else:
            self.gateway.pause()

    def _set_bay(self, parked):
        controller = self._controller()
        if self.kind == "ultrasonic":
            controller.set_echo_distance(self.car_distance_mm if parked else self.empty_distance_mm)
        elif self.kind == "magnetometer":
            controller.set_coil(parked)
        else:
            controller.set_presence(parked)

    def _controller(self):
        if self.controller is None:
            raise StimulusUnsupported(
                "no bench controller to move the car in front of %s" % self.board_name,
                "wire one as docs/hil.md shows and pass --bench-controller PORT",
            )
        return self.controller
