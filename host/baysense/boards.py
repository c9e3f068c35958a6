"""Board definitions (boards/*.json): chip, flash, pins, sensor and detector settings.

A definition is data checked against SCHEMA here, so a typo in a board file is reported with
the file, the field and the fix instead of surfacing later as a wrong pin on a real board.
"""

import json
from pathlib import Path

from .errors import ConfigError
from .paths import BOARDS_DIR

CHIPS = {
    # chip -> where the MicroPython image starts in flash (the second-stage bootloader's offset)
    "esp32": 0x1000,
    "esp32s3": 0x0,
    "esp32c3": 0x0,
}
SENSOR_KINDS = {
    "ultrasonic": {"trigger", "echo"},
    "magnetometer": {"sda", "scl", "drdy"},
    "presence": {"input"},
}
USB_BRIDGES = {"cp210x", "ch340", "ch9102", "ftdi", "espressif-native", "virtual"}

# field -> (type, required)
SCHEMA = {
    "name": (str, True),
    "description": (str, True),
    "chip": (str, True),
    "flash_size_bytes": (int, True),
    "image_offset": (int, True),
    "usb_bridge": (str, True),
    "sensor": (dict, True),
    "detector": (dict, True),
    "mac": (str, False),
}


def validate(board, source="board definition"):
    """Check one board definition; raise ConfigError naming the file, field and fix."""
    for field, (kind, required) in SCHEMA.items():
        if field not in board:
            if required:
                raise ConfigError("%s: missing field %r" % (source, field), "add it (see boards/virtual.json)")
            continue
        if not isinstance(board[field], kind) or isinstance(board[field], bool):
            raise ConfigError(
                "%s: field %r must be %s, got %r" % (source, field, kind.__name__, board[field]),
                "fix the value's type",
            )
    unknown = set(board) - set(SCHEMA)
    if unknown:
        raise ConfigError("%s: unknown fields %s" % (source, sorted(unknown)), "remove them or fix their spelling")

    chip = board["chip"]
    if chip not in CHIPS:
        raise ConfigError("%s: unknown chip %r" % (source, chip), "use one of %s" % ", ".join(sorted(CHIPS)))
    if board["image_offset"] != CHIPS[chip]:
        raise ConfigError(
            "%s: image_offset %#x is wrong for %s" % (source, board["image_offset"], chip),
            "MicroPython images for %s start at %#x" % (chip, CHIPS[chip]),
        )
    size = board["flash_size_bytes"]
    if size not in tuple(2**n * 1024 * 1024 for n in range(6)):
        raise ConfigError("%s: flash_size_bytes %d is not 1, 2, 4, 8, 16 or 32 MB" % (source, size), "fix the size")
    if board["usb_bridge"] not in USB_BRIDGES:
        raise ConfigError(
            "%s: unknown usb_bridge %r" % (source, board["usb_bridge"]), "use one of %s" % ", ".join(sorted(USB_BRIDGES))
        )

    sensor = board["sensor"]
    kind = sensor.get("kind")
    if kind not in SENSOR_KINDS:
        raise ConfigError(
            "%s: unknown sensor kind %r" % (source, kind), "use one of %s" % ", ".join(sorted(SENSOR_KINDS))
        )
    pins = sensor.get("pins")
    if not isinstance(pins, dict) or not SENSOR_KINDS[kind] <= set(pins):
        raise ConfigError(
            "%s: sensor.pins must name %s" % (source, ", ".join(sorted(SENSOR_KINDS[kind]))), "add the missing pins"
        )
    for name, number in pins.items():
        if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number <= 48:
            raise ConfigError("%s: sensor.pins.%s = %r is not a GPIO number" % (source, name, number), "use 0 to 48")
    for settings_name in ("sensor", "detector"):
        for name, value in board[settings_name].items():
            if name.endswith(("_ms", "_us", "_mm", "_hz")) and (not isinstance(value, int) or value < 0):
                raise ConfigError(
                    "%s: %s.%s = %r must be a non-negative integer" % (source, settings_name, name, value),
                    "the suffix gives its unit",
                )
    return board


def load(name_or_path):
    """Load and validate a board by name (boards/NAME.json) or by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = BOARDS_DIR / (name_or_path + ".json")
    try:
        board = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError("board definition not found (%s)" % name_or_path, "known boards: %s" % ", ".join(names()))
    except json.JSONDecodeError as error:
        raise ConfigError("%s: invalid JSON at line %d: %s" % (path, error.lineno, error.msg), "fix the file")
    return validate(board, str(path))


def names():
    return sorted(p.stem for p in BOARDS_DIR.glob("*.json"))
