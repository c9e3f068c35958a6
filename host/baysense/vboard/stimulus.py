"""The stimulus channel of a virtual board: the simulated world its sensors measure.

The world is a JSON object in the board's sim/stimulus.json. Keys: distance_mm,
distance_noise_mm, echo, drop_edge_rate, field, field_noise, noise_seed, i2c_error, presence,
link, rssi (see vboard/hal/sim_devices.py for their meaning). Writes are atomic (a rename), so
the board never reads half a file.

The magnetometer's field has noise by default (FIELD_NOISE_COUNTS), because a real QMC5883L's
reading is never perfectly still. With field_noise 0 the reading never changes, and the
detector's stuck-reading check reports a fault after stuck_after_ms, as it would on a chip
that stopped measuring.
"""

import json
import os
import threading
from pathlib import Path

from ..errors import ConfigError

# Standard deviation of the simulated field on each axis, in counts. An estimate, not a
# measurement: a few counts, so that consecutive readings differ as on a still chip at the
# driver's 8 gauss range. The detector's thresholds on the boards are 8 counts and more.
FIELD_NOISE_COUNTS = 2
# Seed of the simulated sensors' noise: the same seed and world give the same readings.
NOISE_SEED = 1

DEFAULT_WORLD = {
    "distance_mm": 2600,
    "distance_noise_mm": 0,
    "echo": True,
    "drop_edge_rate": 0.0,
    "field": [0, 0, 0],
    "field_noise": FIELD_NOISE_COUNTS,
    "noise_seed": NOISE_SEED,
    "i2c_error": False,
    "presence": 0,
    "link": True,
    "rssi": -58,
}

# Valid values of each key: "number" (int or float), "integer", "boolean", "presence" (0, 1,
# true or false) or "field" (three numbers), with the inclusive range of the numbers.
# The simulated sensors use them as they are, so a string or a value out of range would raise
# inside the board's MicroPython process and stop its node.
WORLD_SCHEMA = {
    "distance_mm": ("number", 0, 65535),  # what a 16-bit ranger register can report
    "distance_noise_mm": ("number", 0, 65535),
    "echo": ("boolean", None, None),
    "drop_edge_rate": ("number", 0, 1),  # a share of the echo edges
    "field": ("field", -32768, 32767),  # the signed 16-bit counts of a QMC5883L axis
    "field_noise": ("number", 0, 32767),
    "noise_seed": ("integer", 0, 2**32 - 1),  # the generator's state is 32 bits
    "i2c_error": ("boolean", None, None),
    "presence": ("presence", 0, 1),
    "link": ("boolean", None, None),
    "rssi": ("integer", -120, 0),  # dBm, as Wi-Fi drivers report it: 0 is the strongest
}
TYPE_NAMES = {
    "number": "a number",
    "integer": "an integer",
    "boolean": "true or false",
    "presence": "0 or 1 (or true or false)",
    "field": "a list of three numbers [x, y, z]",
}


def _is_number(value):
    # bool is an int subclass in Python, but `true` is no distance.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _value_valid(kind, value, low, high):
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "presence":
        if isinstance(value, bool):
            return True
        return _is_number(value) and value in (0, 1)
    if kind == "field":
        return (
            isinstance(value, (list, tuple))
            and len(value) == 3
            and all(_is_number(axis) and low <= axis <= high for axis in value)
        )
    if kind == "integer" and not (isinstance(value, int) and not isinstance(value, bool)):
        return False
    return _is_number(value) and low <= value <= high


def check_world(values):
    """Raise ConfigError for the first key of `values` that is unknown or has an invalid value."""
    for key, value in values.items():
        if key not in WORLD_SCHEMA:
            raise ConfigError("unknown stimulus key %r" % key, "known keys: %s" % ", ".join(sorted(WORLD_SCHEMA)))
        kind, low, high = WORLD_SCHEMA[key]
        if _value_valid(kind, value, low, high):
            continue
        expected = TYPE_NAMES[kind]
        if kind in ("number", "integer", "field"):
            expected += " in %s..%s" % (low, high)
        raise ConfigError("invalid stimulus value %s=%s" % (key, json.dumps(value)), "%s must be %s" % (key, expected))


class Stimulus:
    """Reads and changes one virtual board's simulated world."""

    def __init__(self, sim_dir):
        self.path = Path(sim_dir) / "stimulus.json"
        self._lock = threading.Lock()

    def read(self):
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return dict(DEFAULT_WORLD)

    def set(self, **values):
        """Change some keys of the world and keep the others. An invalid value raises ConfigError."""
        check_world(values)
        with self._lock:
            world = self.read()
            world.update(values)
            temporary = self.path.with_name("stimulus.json.%d.tmp" % os.getpid())
            temporary.write_text(json.dumps(world))
            os.replace(temporary, self.path)
