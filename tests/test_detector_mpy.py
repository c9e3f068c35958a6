"""The detector and the sensor drivers on the MicroPython interpreter.

These run the firmware files unchanged on the unix port: the per-sample path and the interrupt
handlers under micropython.heap_lock() (any allocation raises MemoryError there), and the
scenario tests of test_detector.py compared event for event with CPython.
"""

import json
import random

import pytest

from baysense.deploy import build
from baysense.paths import HAL_DIR
from baysense.replay.engine import CPythonEngine, MicroPythonEngine
from baysense.replay.traces import Trace
from mpy import ranger_traces, scenarios
from mpy.helpers import ESP32_HEAP, FIRMWARE_DIR, run_micropython

ULTRASONIC = {
    "kind": "ultrasonic",
    "occupied_below_mm": 1400,
    "vacant_above_mm": 1700,
    "on_delay_ms": 2000,
    "off_delay_ms": 3000,
    "fault_after_ms": 5000,
    "stuck_after_ms": 60000,
}
MAGNETOMETER = {"kind": "magnetometer"}
PRESENCE = {"kind": "presence", "on_delay_ms": 1000, "off_delay_ms": 2000}

# Drives a detector through state changes, faults, a stuck reading and a recalibration with
# the heap locked. The signal is prepared in an array first, so the loop itself allocates
# nothing and any MemoryError comes from the detector.
HEAP_LOCK_DETECTOR = """
import array
import json
import micropython
from detector import Detector, FAULT_NO_ECHO

settings = json.loads(%(settings)r)
values = array.array("i", %(values)r)
faults = array.array("i", %(faults)r)
detector = Detector(settings)
detector.update(values[0], 0)


def drive(detector, values, faults):
    # A function, so the loop's names are locals: new module globals would grow a dict.
    changes = 0
    now = 0
    micropython.heap_lock()
    try:
        for i in range(1, len(values)):
            now += %(period)d
            if faults[i]:
                changed = detector.fault(FAULT_NO_ECHO, now)
            else:
                changed = detector.update(values[i], now)
            if changed:
                changes += 1
            if i == %(calibrate_at)d:
                detector.calibrate()
    finally:
        micropython.heap_unlock()
    return changes


changes = drive(detector, values, faults)
print(changes, detector.state)
"""


@pytest.fixture(scope="module")
def compiled_firmware(tmp_path_factory):
    """Return a folder of the firmware compiled with mpy-cross, as deploy puts it on a node.

    A node loads .mpy files and never compiles its modules, which takes heap the node then
    lacks. Ahead of firmware/ on the path, these are imported.
    """
    folder = tmp_path_factory.mktemp("mpy")
    for path, data in build(FIRMWARE_DIR).items():
        if path.endswith(".mpy"):
            (folder / path.lstrip("/")).write_bytes(data)
    return folder


def _heap_lock_run(settings, values, faults, period_ms, calibrate_at=-1, heapsize=ESP32_HEAP, before=()):
    source = HEAP_LOCK_DETECTOR % {
        "settings": json.dumps(settings),
        "values": list(values),
        "faults": list(faults),
        "period": period_ms,
        "calibrate_at": calibrate_at,
    }
    changes, state = map(int, run_micropython(source, heapsize, before=before).split())
    return changes, state


@pytest.mark.parametrize("kind", ["magnetometer", "ultrasonic", "presence"])
def test_detector_sources_fit_esp32_heap(kind):
    # A board that cannot load this mpy-cross's .mpy gets the sources. Each decision is a
    # module of its own, so compiling the largest one fits an ESP32's heap. docs/benchmarks.md
    # has each kind's figure on the 64-bit unix port, from tools/detector_heap.py.
    settings = dict(ULTRASONIC) if kind == "ultrasonic" else {"kind": kind}
    source = "from detector import Detector\nprint(Detector(%r).kind)\n" % settings
    assert run_micropython(source, heapsize=ESP32_HEAP).split() == [kind]


def test_ultrasonic_update_allocates_nothing(compiled_firmware):
    # Calibration, a car that reads like the floor, a drive-through, lost echoes, a reading
    # out of range, a recalibration: every branch of the ultrasonic decision under the lock.
    _, values, _ = ranger_traces.hidden_car(parked_ms=20000, seed=1)
    recorder = ranger_traces.Recorder(seed=2).steady(4000, 900).swing(2000).steady(6000)
    recorder.steady(6000, ranger_traces.BONNET_MM).steady(4000).steady(2000, 9000).steady(4000)
    values = list(values) + recorder.values + ranger_traces.drive_through(seed=3)[1]
    faults = [0] * len(values)
    for i in range(180, 220):  # 10 s of lost echoes over the empty bay
        faults[i] = 1
    changes, state = _heap_lock_run(ULTRASONIC, values, faults, ranger_traces.PERIOD_MS, len(values) - 40, before=[compiled_firmware])
    # The hidden car: occupied, vacant. Lost echoes: fault, vacant. The car at 900 mm and the
    # low bonnet: occupied, vacant twice. The 2 s out of range and the drive-through: nothing.
    assert changes == 8
    assert state == 0


def test_magnetometer_update_allocates_nothing():
    _, values, _ = scenarios.field_trace(seed=3)
    stuck = [values[-1]] * 800  # 72 s without a single count of change
    _, recovered = scenarios.distance_trace(90, [(20000, values[-1])], noise_mm=3, seed=4)
    values = list(values) + stuck + list(recovered)
    faults = [0] * len(values)
    # The signal's list literal alone needs more than an ESP32-sized heap to parse.
    changes, state = _heap_lock_run(MAGNETOMETER, values, faults, 90, calibrate_at=len(values) - 10, heapsize="512K")
    assert changes == 4  # occupied, vacant, fault (stuck), vacant (resumed)
    assert state == 0


def test_magnetometer_arrival_rules_allocate_nothing():
    # A car that arrives while the calibration runs and leaves again, then one that creeps in
    # without a transient. This runs the calibration's warm-up hypothesis and the creep test
    # under the heap lock.
    rng = random.Random(11)
    levels = [300] * 28 + [300 + 2 * i for i in range(33)] + [366] * 280 + [366 - 2 * i for i in range(33)]
    levels += [300] * 330 + [300 + i for i in range(35)] + [335] * 330
    values = [level + rng.randint(-3, 3) for level in levels]
    changes, state = _heap_lock_run(MAGNETOMETER, values, [0] * len(values), 90, heapsize="512K")
    assert changes == 3  # occupied, vacant, occupied
    assert state == 1


def test_presence_update_allocates_nothing(compiled_firmware):
    _, values = scenarios.distance_trace(50, [(3000, 0), (4000, 1), (4000, 0)])
    changes, state = _heap_lock_run(PRESENCE, values, [0] * len(values), 50, before=[compiled_firmware])
    assert changes == 2
    assert state == 0


# Fake I2C bus and pin with the machine module's method names, written so that calling them
# allocates nothing either (the handler runs under the heap lock).
DRIVER_FAKES = """
import micropython

class FakePin:
    IRQ_RISING = 1
    IRQ_FALLING = 2

    def __init__(self):
        self.level = 0
        self.handler = None

    def value(self):
        return self.level

    def irq(self, handler=None, trigger=0):
        self.handler = handler

    def fire(self):
        self.handler(self)

class FakeI2C:
    def __init__(self):
        self.registers = bytearray(16)
        self.registers[0x0D] = 0xFF
        self.fail = False

    def readfrom_mem_into(self, address, register, buffer):
        if self.fail:
            raise OSError(19)
        registers = self.registers
        for i in range(len(buffer)):
            buffer[i] = registers[register + i]

    def writeto_mem(self, address, register, buffer):
        self.registers[register] = buffer[0]
"""

HEAP_LOCK_DRIVERS = DRIVER_FAKES + """
from magnetometer import QMC5883L
from presence import PresenceInput
from detector import FAULT_OVERFLOW, FAULT_NONE

bus = FakeI2C()
ready = FakePin()
sensor = QMC5883L(bus, drdy=ready, axis="sum")
sensor.start()
bus.registers[0] = 0x10   # x = 16
bus.registers[3] = 0xFF   # y = -256 + 0x00 -> 0xFF00 = -256
bus.registers[4] = 0x20   # z = 32
bus.registers[6] = 0x01   # data ready

presence_pin = FakePin()
presence = PresenceInput(presence_pin, debounce_ms=20)
presence.start()



def drive(sensor, ready, presence, presence_pin, bus):
    micropython.heap_lock()
    try:
        valid = 0
        for i in range(200):
            ready.fire()
            if sensor.pending() and sensor.read():
                valid += 1
            presence_pin.level = i & 1
            presence_pin.fire()
            presence.read(i * 10)
        bus.registers[6] = 0x03   # ready + overflow
        overflow = sensor.read()
    finally:
        micropython.heap_unlock()
    return valid, overflow


valid, overflow = drive(sensor, ready, presence, presence_pin, bus)
reason = sensor.reason
print(valid, sensor.value, sensor.ready_count, overflow, reason == FAULT_OVERFLOW, presence.edges)
"""


def test_driver_handlers_allocate_nothing(compiled_firmware):
    output = run_micropython(HEAP_LOCK_DRIVERS, before=[compiled_firmware]).split()
    assert output[0] == "200"  # every sample read
    assert output[1] == str(16 + 256 + 32)  # |x| + |y| + |z|
    assert output[2] == "200"  # every data-ready edge counted
    assert output[3] == "False"  # an overflowing sample is not valid
    assert output[4] == "True"
    assert output[5] == "200"


BOARD_LAYER_SENSORS = DRIVER_FAKES + """
from magnetometer import Magnetometer
from presence import Presence

bus = FakeI2C()
bus.registers[4] = 0x64   # z = 100
bus.registers[6] = 0x01   # data ready
field = Magnetometer(bus, FakePin(), {"i2c_address": 13, "sample_period_ms": 100, "axis": "z"})
pin = FakePin()
pin.level = 1
presence = Presence(pin, {"debounce_ms": 0})


def drive(field, presence):
    micropython.heap_lock()
    try:
        faults = field.sample() + presence.sample()
    finally:
        micropython.heap_unlock()
    return faults


faults = drive(field, presence)
print(faults, field.value, presence.value, field.read(), bus.registers[9])
"""


def test_board_layer_sensors_sample_without_allocating(compiled_firmware):
    output = run_micropython(BOARD_LAYER_SENSORS, before=[compiled_firmware])
    assert output.split()[:3] == ["0", "100", "1"]  # no fault, z = 100, presence seen
    assert "(100, 0)" in output  # read(): the board layer's (value, fault) tuple
    # 0x11: 512x oversampling (0x00), 8 G range (0x10), 10 Hz for a 100 ms period (0x00), continuous (0x01)
    assert output.split()[-1] == "17"


# The board layer builds the sensor from a board's sensor section, on the virtual board's HAL
# (a simulated I2C magnetometer and input pin driven by sim/stimulus.json).
VIRTUAL_BOARD_SENSOR = """
import time
import board

sensor = board.make_sensor(%(sensor)r)
valid = 0
for i in range(12):
    time.sleep_ms(110)
    value, fault = sensor.read()
    if not fault:
        valid += 1
print(valid, value)
"""


@pytest.mark.parametrize(
    "sensor, stimulus, expected",
    [
        (
            {"kind": "magnetometer", "pins": {"sda": 8, "scl": 9, "drdy": 3}, "i2c_address": 13, "sample_period_ms": 100},
            {"field": [100, -200, 300], "field_noise": 0},
            600,  # |x| + |y| + |z|
        ),
        ({"kind": "presence", "pins": {"input": 4}, "debounce_ms": 50}, {"presence": 1}, 1),
    ],
    ids=["magnetometer", "presence"],
)
def test_sensor_on_virtual_board_hal(tmp_path, sensor, stimulus, expected):
    (tmp_path / "fs").mkdir()
    (tmp_path / "sim").mkdir()
    (tmp_path / "sim" / "stimulus.json").write_text(json.dumps(stimulus))
    wiring = {key: sensor[key] for key in ("kind", "pins", "i2c_address") if key in sensor}
    (tmp_path / "sim" / "wiring.json").write_text(json.dumps({"sensor": wiring}))
    environment = {"BAYSENSE_VBOARD_FS": str(tmp_path / "fs"), "BAYSENSE_VBOARD_SIM": str(tmp_path / "sim")}
    # The simulated HAL and compiling the drivers from source take heap a node does not spend
    # (a node loads precompiled .mpy files), so this run gets more than an ESP32's heap.
    source = VIRTUAL_BOARD_SENSOR % {"sensor": sensor}
    output = run_micropython(source, heapsize="512K", before=[HAL_DIR], environment=environment)
    valid, value = map(int, output.split())
    assert valid == 12
    assert value == expected


def test_magnetometer_bus_error_is_reported(compiled_firmware):
    source = DRIVER_FAKES + """
from magnetometer import QMC5883L
from detector import FAULT_BUS
bus = FakeI2C()
sensor = QMC5883L(bus)
sensor.start()
bus.fail = True
print(sensor.read(), sensor.reason == FAULT_BUS)
"""
    assert run_micropython(source, before=[compiled_firmware]).split() == ["False", "True"]


def test_magnetometer_wrong_chip_raises(compiled_firmware):
    source = DRIVER_FAKES + """
from magnetometer import QMC5883L
bus = FakeI2C()
bus.registers[0x0D] = 0x12
try:
    QMC5883L(bus).start()
except OSError as error:
    print("OSError", error)
"""
    assert run_micropython(source, before=[compiled_firmware]).startswith("OSError")


def _events(engine, trace, settings):
    return [(e.time_ms, e.state, e.reason) for e in engine.run(trace, settings).events]


SCENARIOS = [
    ("parked with shift", MAGNETOMETER, lambda: scenarios.field_trace(seed=1)[:2]),
    ("parked without shift", MAGNETOMETER, lambda: scenarios.field_trace(shift=0, seed=2)[:2]),
    ("passing", MAGNETOMETER, lambda: scenarios.passing_trace(seed=3)),
    (
        "short stay",
        MAGNETOMETER,
        lambda: scenarios.field_trace(shift=200, swing=80, entry_ms=2500, parked_ms=2500, exit_ms=2000, seed=4)[:2],
    ),
    ("ultrasonic stay", ULTRASONIC, lambda: scenarios.distance_trace(100, [(5000, 2500), (10000, 900), (9000, 2500)], 30)),
    # tests/mpy/ranger_traces.py describes what these model and why the numbers fit an HC-SR04.
    ("hidden car", ULTRASONIC, lambda: ranger_traces.hidden_car(seed=21)[:2]),
    (
        "hidden car, jsn-sr04t noise",
        ULTRASONIC,
        lambda: ranger_traces.hidden_car(noise_mm=ranger_traces.JSN_NOISE_MM, seed=22)[:2],
    ),
    ("drive-through", ULTRASONIC, lambda: ranger_traces.drive_through(seed=23)),
    ("walk-through", ULTRASONIC, lambda: ranger_traces.walk_through(seed=24)),
    (
        "low bonnet",
        ULTRASONIC,
        lambda: ranger_traces.Recorder(seed=25).steady(10000).steady(20000, ranger_traces.BONNET_MM).steady(20000).trace(),
    ),
    (
        "person beside hidden car",
        ULTRASONIC,
        lambda: ranger_traces.Recorder(seed=26).steady(10000).swing(5000).steady(30000).passer(1400).steady(30000).trace(),
    ),
    (
        "drift while vacant",
        ULTRASONIC,
        lambda: ranger_traces.Recorder(seed=27).steady(10000).drift(600000, 2600, 2560).trace(),
    ),
]


@pytest.fixture(scope="module")
def micropython_engine():
    engine = MicroPythonEngine()
    yield engine
    engine.close()


@pytest.mark.parametrize("name, settings, build", SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_same_events_on_both_interpreters(micropython_engine, name, settings, build):
    times, values = build()
    trace = Trace(name, list(times), list(values))
    on_micropython = _events(micropython_engine, trace, settings)
    on_cpython = _events(CPythonEngine(), trace, settings)
    assert on_micropython == on_cpython


def test_replay_measures_no_allocation(micropython_engine):
    times, values, _ = scenarios.field_trace(seed=5)
    run = micropython_engine.run(Trace("field", times, values), MAGNETOMETER)
    assert run.samples == len(values)
    assert run.allocated_bytes == 0
    assert 0 < run.detector_bytes < 8192


def test_hidden_car_on_micropython(micropython_engine):
    times, values, (arrival, _, departure) = ranger_traces.hidden_car(seed=28)
    run = micropython_engine.run(Trace("hidden car", times, values), ULTRASONIC)
    assert [event.state for event in run.events] == [1, 0]  # occupied, vacant
    assert arrival < run.events[0].time_ms < departure < run.events[1].time_ms
    assert run.allocated_bytes == 0
    assert 0 < run.detector_bytes < 2048
