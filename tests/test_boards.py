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
    "negative delay": (lambda b: b["detector"].update(on_delay_ms=-1), "detector.on_delay_ms = -1 must be a non-negative"),
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
