"""Board definitions: every file in boards/ validates, and broken variants are rejected."""

import copy
import json

import pytest

from baysense import boards
from baysense.errors import ConfigError
from baysense.paths import BOARDS_DIR

REQUIRED_BOARDS = {
    "esp32-devkitc-hcsr04": ("esp32", "cp210x", "ultrasonic", "hc-sr04"),
    "esp32s3-devkitc-jsnsr04t": ("esp32s3", "espressif-native", "ultrasonic", "jsn-sr04t"),
    "esp32c3-qmc5883l": ("esp32c3", "espressif-native", "magnetometer", "qmc5883l"),
    "virtual": ("esp32", "virtual", "ultrasonic", "hc-sr04"),
}


@pytest.mark.parametrize("name", boards.names())
def test_every_board_file_validates(name):
    board = boards.load(name)
    assert board["name"] == name
    assert board["image_offset"] == boards.CHIPS[board["chip"]]


@pytest.mark.parametrize("name", sorted(REQUIRED_BOARDS))
def test_required_boards_present(name):
    chip, bridge, kind, model = REQUIRED_BOARDS[name]
    board = boards.load(name)
    assert board["chip"] == chip
    assert board["usb_bridge"] == bridge
    assert board["sensor"]["kind"] == kind
    assert board["sensor"]["model"] == model


def test_load_by_path():
    board = boards.load(str(BOARDS_DIR / "virtual.json"))
    assert board["name"] == "virtual"


def test_unknown_board_lists_known():
    with pytest.raises(ConfigError) as raised:
        boards.load("no-such-board")
    assert "board definition not found (no-such-board)" in str(raised.value)
    assert "esp32-devkitc-hcsr04" in str(raised.value)


def test_invalid_json_names_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "name": "x",\n  oops\n}')
    with pytest.raises(ConfigError, match="invalid JSON at line 3"):
        boards.load(str(path))


def broken(change):
    board = copy.deepcopy(json.loads((BOARDS_DIR / "esp32-devkitc-hcsr04.json").read_text()))
    change(board)
    return board


BROKEN_VARIANTS = {
    "missing chip": (lambda b: b.pop("chip"), "missing field 'chip'"),
    "missing sensor": (lambda b: b.pop("sensor"), "missing field 'sensor'"),
    "flash size as text": (lambda b: b.update(flash_size_bytes="4MB"), "field 'flash_size_bytes' must be int"),
    "flash size as bool": (lambda b: b.update(flash_size_bytes=True), "field 'flash_size_bytes' must be int"),
    "unknown field": (lambda b: b.update(colour="red"), "unknown fields \\['colour'\\]"),
    "unknown chip": (lambda b: b.update(chip="esp8266"), "unknown chip 'esp8266'"),
    "wrong offset": (lambda b: b.update(image_offset=0), "image_offset 0x0 is wrong for esp32"),
    "odd flash size": (lambda b: b.update(flash_size_bytes=3 * 1024 * 1024), "is not 1, 2, 4, 8, 16 or 32 MB"),
    "unknown bridge": (lambda b: b.update(usb_bridge="pl2303"), "unknown usb_bridge 'pl2303'"),
    "unknown sensor kind": (lambda b: b["sensor"].update(kind="lidar"), "unknown sensor kind 'lidar'"),
    "missing echo pin": (lambda b: b["sensor"]["pins"].pop("echo"), "sensor.pins must name echo, trigger"),
    "pin out of range": (lambda b: b["sensor"]["pins"].update(echo=49), "sensor.pins.echo = 49 is not a GPIO number"),
    "pin as text": (lambda b: b["sensor"]["pins"].update(trigger="D5"), "sensor.pins.trigger = 'D5'"),
    "negative delay": (
        lambda b: b["detector"].update(on_delay_ms=-1),
        r"detector.on_delay_ms \(on_delay_ms -1 is out of range\): set it to 0\.\.86400000",
    ),
    "negative sensor period": (
        lambda b: b["sensor"].update(sample_period_ms=-1),
        "sensor.sample_period_ms = -1 must be a non-negative integer: write it as a whole number of milliseconds",
    ),
    "fractional range": (lambda b: b["sensor"].update(range_max_mm=4000.5), "sensor.range_max_mm = 4000.5"),
}


@pytest.mark.parametrize("variant", sorted(BROKEN_VARIANTS))
def test_broken_variant_rejected(variant, tmp_path):
    change, message = BROKEN_VARIANTS[variant]
    path = tmp_path / "variant.json"
    path.write_text(json.dumps(broken(change)))
    with pytest.raises(ConfigError, match=message) as raised:
        boards.load(str(path))
    assert str(path) in str(raised.value)


def test_magnetometer_pins_required():
    board = json.loads((BOARDS_DIR / "esp32c3-qmc5883l.json").read_text())
    del board["sensor"]["pins"]["drdy"]
    with pytest.raises(ConfigError, match="sensor.pins must name drdy, scl, sda"):
        boards.validate(board, "esp32c3 variant")


def virtual_variant(tmp_path, change, name="variant.json"):
    board = json.loads((BOARDS_DIR / "virtual.json").read_text())
    change(board)
    path = tmp_path / name
    path.write_text(json.dumps(board))
    return path


FIRMWARE_REJECTS = {
    # variant: (change, key, words the firmware's message must add)
    "activity out of range": (lambda b: b["detector"].update(activity_samples=1000), "activity_samples", ["1000", "2..64"]),
    "thresholds crossed": (lambda b: b["detector"].update(vacant_above_mm=1000), "occupied_below_mm", ["1000", "1400"]),
    "required threshold missing": (lambda b: b["detector"].pop("occupied_below_mm"), "occupied_below_mm", ["missing"]),
}


@pytest.mark.parametrize("variant", sorted(FIRMWARE_REJECTS))
def test_detector_the_firmware_rejects(variant, tmp_path):
    change, key, words = FIRMWARE_REJECTS[variant]
    path = virtual_variant(tmp_path, change)
    with pytest.raises(ConfigError) as raised:
        boards.load(str(path))
    message = str(raised.value)
    assert message.startswith("%s: " % path)
    assert "detector.%s" % key in message
    for word in words:
        assert word in message
    assert message.endswith(" in %s" % path)


def test_detector_key_error_names_key(tmp_path):
    # A firmware copy may still raise KeyError for a setting without a default.
    firmware = tmp_path / "firmware"
    firmware.mkdir()
    (firmware / "detector.py").write_text(
        "class Detector:\n    def __init__(self, settings):\n        settings['occupied_below_mm']\n"
    )
    board = boards.load("virtual")
    del board["detector"]["occupied_below_mm"]
    with pytest.raises(ConfigError) as raised:
        boards.check_detector(board, "copy.json", firmware)
    message = str(raised.value)
    assert "copy.json: detector.occupied_below_mm is missing" in message
    assert "add it to the detector section" in message


# "1: 2" contains the ": " that separates the firmware's message from its fix.
@pytest.mark.parametrize("value", ["2000", 2.5, True, None, "1: 2"])
def test_detector_setting_must_be_integer(value, tmp_path):
    path = virtual_variant(tmp_path, lambda b: b["detector"].update(gap_ms=value))
    with pytest.raises(ConfigError) as raised:
        boards.load(str(path))
    message = str(raised.value)
    assert "%s: the node's firmware would reject detector.gap_ms (gap_ms %r is not an integer)" % (path, value) in message
    assert "set it to a whole number in 0..86400000" in message


def test_detector_key_of_other_kind_rejected(tmp_path):
    board = json.loads((BOARDS_DIR / "esp32c3-qmc5883l.json").read_text())
    board["detector"]["occupied_below_mm"] = 1000
    path = tmp_path / "magnetometer.json"
    path.write_text(json.dumps(board))

    with pytest.raises(ConfigError) as raised:
        boards.load(str(path))

    assert raised.value.message == "%s: detector.occupied_below_mm is not a setting of the magnetometer detector" % path
    assert raised.value.hint == "remove it, because only the ultrasonic detector reads it"


def test_detector_negative_counts_accepted():
    # The magnetometer's valid range is in signed counts, so only _ms, _mm, ... must be >= 0.
    board = boards.load("virtual-magnetometer")
    board["detector"]["valid_min_counts"] = -2000
    assert boards.check_detector(board, "magnetometer variant") is board


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-8-sig", "utf-32"])
def test_load_utf16_and_bom(encoding, tmp_path):
    # PowerShell's `>` writes UTF-16 with a byte order mark, and Notepad may add a UTF-8 one.
    original = json.loads((BOARDS_DIR / "virtual.json").read_text())
    path = tmp_path / "windows.json"
    path.write_bytes(json.dumps(original, indent=2).encode(encoding))
    assert boards.load(str(path)) == original


def test_load_non_unicode_names_fix(tmp_path):
    text = json.dumps(json.loads((BOARDS_DIR / "virtual.json").read_text()))
    path = tmp_path / "latin.json"
    path.write_bytes(text.replace("Virtual board", "Virtuel board \u00e9").encode("latin-1"))
    with pytest.raises(ConfigError) as raised:
        boards.load(str(path))
    message = str(raised.value)
    assert "board definition %s is not UTF-8 or UTF-16 text (byte 0xe9 at offset" % path in message
    assert "save it as UTF-8" in message


def test_load_rejects_non_object(tmp_path):
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="invalid board definition, a list: write one JSON object"):
        boards.load(str(path))


def test_load_misspelt_detector_key(tmp_path):
    definition = json.loads((BOARDS_DIR / "virtual.json").read_text())
    definition["detector"]["on_dealy_ms"] = 3000
    path = tmp_path / "typo.json"
    path.write_text(json.dumps(definition))
    with pytest.raises(ConfigError) as raised:
        boards.load(str(path))
    message = str(raised.value)
    assert "%s: detector.on_dealy_ms is not a setting of the ultrasonic detector" % path in message
    assert "did you mean on_delay_ms?" in message


def test_load_unknown_detector_key_without_match(tmp_path):
    definition = json.loads((BOARDS_DIR / "virtual-magnetometer.json").read_text())
    definition["detector"]["colour"] = 1
    path = tmp_path / "unknown.json"
    path.write_text(json.dumps(definition))
    with pytest.raises(ConfigError) as raised:
        boards.load(str(path))
    assert "detector.colour is not a setting of the magnetometer detector" in str(raised.value)
    assert "docs/detector.md lists the settings" in str(raised.value)
