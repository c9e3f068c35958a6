"""The bench controller's driver, run on a virtual board standing in for the controller board.

The virtual board has nothing wired to the controller's pins, so these tests check the driver's
code on MicroPython and the levels it sets. The echo timing can only be checked on a real bench.
"""

import json

import pytest

from baysense.errors import ConfigError
from baysense.hil.controller import DEFAULT_WIRING, ECHO_US_PER_MM, BenchController, load_wiring

# A falling edge on the controller's trigger input, as when the node's trigger pulse ends.
# drive() is the virtual board's way to move an input pin from outside the firmware.
TRIGGER = "_bench_trigger.drive(1)\n_bench_trigger.drive(0)\nimport time\ntime.sleep_ms(50)"


@pytest.fixture
def controller(make_vboard):
    virtual = make_vboard("controller")
    driver = BenchController(virtual.port).install()
    yield driver
    driver.close()


def test_outputs_start_safe_and_follow_calls(controller):
    assert controller.levels() == {"echo_out": 0, "presence_out": 0, "coil_out": 0, "sensor_power_out": 1}

    controller.set_presence(True)
    controller.set_coil(True)
    controller.set_sensor_power(False)

    assert controller.levels() == {"echo_out": 0, "presence_out": 1, "coil_out": 1, "sensor_power_out": 0}


def test_echo_follows_each_trigger(controller):
    controller.set_echo_distance(1000)
    controller.device.exec(TRIGGER)
    controller.device.exec(TRIGGER)

    assert controller.echoes_sent() == 2
    assert controller.device.eval("_bench_echo_us[0]") == round(1000 * ECHO_US_PER_MM)
    assert controller.levels()["echo_out"] == 0


def test_silenced_echo_sends_nothing(controller):
    controller.silence_echo()
    controller.device.exec(TRIGGER)

    assert controller.echoes_sent() == 0


def test_wiring_file(tmp_path):
    path = tmp_path / "wiring.json"
    path.write_text(json.dumps({"echo_out": 4}))
    assert load_wiring(path) == dict(DEFAULT_WIRING, echo_out=4)

    path.write_text(json.dumps({"echo": 4}))
    with pytest.raises(ConfigError, match="unknown pins"):
        load_wiring(path)
