"""Board definitions (boards/*.json): chip, flash, pins, sensor and detector settings.

A definition is data checked against SCHEMA here, so a typo in a board file is reported with
the file, the field and the fix instead of surfacing later as a wrong pin on a real board.
"""

import difflib
import functools
import re
from pathlib import Path

from . import jsonfile
from .errors import ConfigError
from .paths import BOARDS_DIR, FIRMWARE_DIR

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
# A detector setting's name, as the firmware's error messages spell it: on_delay_ms.
SETTING_NAME = re.compile(r"\b[a-z][a-z0-9]*_[a-z0-9_]+\b")
# The unit a sensor setting's name ends in, for messages.
UNIT_NAMES = {"ms": "milliseconds", "us": "microseconds", "mm": "millimetres", "hz": "hertz"}
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


def check_definition(board, source="board definition", firmware_dir=FIRMWARE_DIR):
    """Check a whole board definition: its schema, then its detector section; return it.

    Raise ConfigError naming the file, field and fix, as validate() and check_detector() do.
    """
    validate(board, source)
    return check_detector(board, source, firmware_dir)


def validate(board, source="board definition"):
    """Check a board definition, except the values of its detector section; return it.

    Raise ConfigError naming the file, field and fix. check_detector() checks the detector
    section against the firmware, and check_definition() runs both.
    """
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
    # The detector section is checked by the firmware's own Detector (check_detector), which
    # gives each setting's range; a second check here would disagree with it.
    for name, value in board["sensor"].items():
        if name.endswith(("_ms", "_us", "_mm", "_hz")) and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise ConfigError(
                "%s: sensor.%s = %r must be a non-negative integer" % (source, name, value),
                "write it as a whole number of %s, 0 or more" % UNIT_NAMES[name.rsplit("_", 1)[1]],
            )
    return board


# Settings a kind's detector needs that have no default, beside DEFAULTS[kind].
REQUIRED_DETECTOR_KEYS = {"ultrasonic": {"occupied_below_mm", "vacant_above_mm"}}


def detector_setting_names(firmware, kind):
    """Return the setting names the `kind` detector of a loaded firmware reads, or None.

    None means every name is taken: a firmware copy under trial may have no DEFAULTS table.
    """
    defaults = getattr(firmware, "DEFAULTS", None)
    if not defaults:
        return None
    return set(defaults.get(kind, ())) | REQUIRED_DETECTOR_KEYS.get(kind, set())


def unknown_setting_fix(firmware, name, kind):
    """Return the fix for a detector setting `name` that the `kind` detector does not read."""
    others = [other for other in sorted(firmware.DEFAULTS) if other != kind and name in detector_setting_names(firmware, other)]
    if others:
        readers = "the %s detector" % others[0] if len(others) == 1 else "the %s detectors" % " and ".join(others)
        return "remove it, because only %s reads it" % readers
    close = difflib.get_close_matches(name, sorted(detector_setting_names(firmware, kind)), n=1)
    if close:
        return "did you mean %s?" % close[0]
    return "check its spelling; docs/detector.md lists the settings"


def check_detector(board, source="board definition", firmware_dir=FIRMWARE_DIR):
    """Build the firmware's Detector from the board's detector section, as the node does at boot.

    A setting the firmware rejects would stop the node at boot, so it is reported here, before
    anything is written to a board. Raise ConfigError naming the file, the key and the fix.
    """
    settings = dict(board["detector"])
    kind = settings["kind"] = board["sensor"]["kind"]
    firmware = _firmware_detector(Path(firmware_dir))

    # The firmware ignores names it does not know, so a misspelt key would keep its default.
    known = detector_setting_names(firmware, kind)
    unknown = sorted(set(board["detector"]) - known) if known is not None else []
    if unknown:
        name = unknown[0]
        raise ConfigError(
            "%s: detector.%s is not a setting of the %s detector" % (source, name, kind),
            unknown_setting_fix(firmware, name, kind),
        )

    try:
        firmware.Detector(settings)
    except KeyError as error:
        key = error.args[0] if error.args else "?"
        raise ConfigError(
            "%s: detector.%s is missing" % (source, key),
            "the %s detector has no default for it: add it to the detector section" % settings["kind"],
        ) from None
    except (ValueError, TypeError) as error:
        key = _named_key(str(error))
        where = "detector.%s" % key if key else "the detector section"
        # The firmware's messages end in their fix after ": ", as in "on_delay_ms -1 is out
        # of range: set it to 0..86400000". The last one counts, because a value shown in the
        # message, such as the string "1: 2", may contain one too.
        problem, _, fix = str(error).rpartition(": ")
        if not problem:
            problem, fix = fix, ""
        raise ConfigError(
            "%s: the node's firmware would reject %s (%s)" % (source, where, problem),
            "%s in %s" % (fix, source) if fix else "fix %s in %s" % (where, source),
        ) from None
    return board


def _named_key(message):
    """Return the first setting name in the firmware's message, or None.

    Every detector setting's name has an underscore, and the firmware's messages name the
    setting they are about before any other.
    """
    match = SETTING_NAME.search(message)
    return match.group(0) if match else None


@functools.lru_cache(maxsize=4)
def _firmware_detector(firmware_dir):
    # Imported here: the replay package imports this module.
    from .replay.engine import load_firmware_detector

    return load_firmware_detector(firmware_dir)


def load(name_or_path, firmware_dir=FIRMWARE_DIR):
    """Load and validate a board by name (boards/NAME.json) or by path.

    The detector section is checked against the Detector in `firmware_dir`. The file may be
    UTF-8 (with or without a byte order mark), UTF-16 or UTF-32: PowerShell's `>` writes UTF-16.
    """
    path = Path(name_or_path)
    if not path.suffix:
        path = BOARDS_DIR / (name_or_path + ".json")
    if not path.exists():
        raise ConfigError("board definition not found (%s)" % name_or_path, "known boards: %s" % ", ".join(names()))
    if path.is_dir():
        raise ConfigError("board definition %s is a folder" % path, "name a .json file")
    board = jsonfile.load(path, "board definition")
    if not isinstance(board, dict):
        raise ConfigError(
            "%s: invalid board definition, a %s" % (path, type(board).__name__),
            "write one JSON object, as in boards/virtual.json",
        )
    return check_definition(board, str(path), firmware_dir)


def names():
    return sorted(p.stem for p in BOARDS_DIR.glob("*.json"))
