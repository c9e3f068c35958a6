# The node's board layer: the only firmware module that imports `machine`.
#
# It turns the board definition in config.json (pins, sensor kind and settings) into a
# sensor object whose sample() returns a fault code and leaves the reading in .value, so the
# rest of the firmware never names a pin or a chip.

import machine


def make_sensor(sensor):
    kind = sensor["kind"]
    pins = sensor["pins"]
    if kind == "ultrasonic":
        from ranger import Ranger

        trigger = machine.Pin(pins["trigger"], machine.Pin.OUT, value=0)
        echo = machine.Pin(pins["echo"], machine.Pin.IN)
        return Ranger(trigger, echo, sensor)
    if kind == "magnetometer":
        from magnetometer import Magnetometer

        i2c = machine.I2C(0, scl=machine.Pin(pins["scl"]), sda=machine.Pin(pins["sda"]), freq=sensor.get("i2c_frequency_hz", 400000))
        drdy = machine.Pin(pins["drdy"], machine.Pin.IN)
        return Magnetometer(i2c, drdy, sensor)
    if kind == "presence":
        from presence import Presence

        return Presence(machine.Pin(pins["input"], machine.Pin.IN), sensor)
    raise ValueError("unknown sensor kind %r in config.json" % kind)


def watchdog(timeout_ms):
    return machine.WDT(timeout=timeout_ms)


def reset_cause():
    return machine.reset_cause()


def reset():
    machine.reset()
