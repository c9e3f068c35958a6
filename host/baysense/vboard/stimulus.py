"""The stimulus channel of a virtual board: the simulated world its sensors measure.

The world is a JSON object in the board's sim/stimulus.json. Keys: distance_mm,
distance_noise_mm, echo, drop_edge_rate, field, field_noise, i2c_error, presence, link, rssi
(see vboard/hal/sim_devices.py for their meaning). Writes are atomic (a rename), so the board
never reads half a file.
"""

import json
import os
import threading
from pathlib import Path

DEFAULT_WORLD = {
    "distance_mm": 2600,
    "distance_noise_mm": 0,
    "echo": True,
    "drop_edge_rate": 0.0,
    "field": [0, 0, 0],
    "field_noise": 0,
    "i2c_error": False,
    "presence": 0,
    "link": True,
    "rssi": -58,
}


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
        """Change some keys of the world and keep the others."""
        unknown = set(values) - set(DEFAULT_WORLD)
        if unknown:
            raise ValueError("unknown stimulus keys %s; known: %s" % (sorted(unknown), sorted(DEFAULT_WORLD)))
        with self._lock:
            world = self.read()
            world.update(values)
            temporary = self.path.with_name("stimulus.json.%d.tmp" % os.getpid())
            temporary.write_text(json.dumps(world))
            os.replace(temporary, self.path)
