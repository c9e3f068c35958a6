"""Loading the detector's modules of a firmware folder into the host process."""

import json
import shutil
import sys
import types

import pytest

from baysense.cli import main
from baysense.errors import ConfigError
from baysense.firmware_imports import module_names
from baysense.replay.firmware import FirmwareLoader, detector_modules, load_firmware_detector
from mpy.helpers import FIRMWARE_DIR

DETECTOR_MODULES = ["detector", "detector_settings", "distance_decision", "field_decision", "filters", "threshold_decision"]
ULTRASONIC = {"kind": "ultrasonic", "occupied_below_mm": 1200, "vacant_above_mm": 1500}
DEFAULT_ON_DELAY = '"on_delay_ms": 2000,'
SLOW_ON_DELAY = '"on_delay_ms": 20000,'


def copy_detector(folder, skip=()):
    """Copy the detector's modules of firmware/ into `folder`, leaving out `skip`; return it."""
    folder.mkdir()
    for name in detector_modules(FIRMWARE_DIR):
        if name not in skip:
            shutil.copy(FIRMWARE_DIR / (name + ".py"), folder)
    return folder


def slow_copy(folder):
    """Copy the detector with the ultrasonic on delay defaulting to 20 s instead of 2 s."""
    copy_detector(folder)
    settings = folder / "detector_settings.py"
    source = settings.read_text()
    assert DEFAULT_ON_DELAY in source
    settings.write_text(source.replace(DEFAULT_ON_DELAY, SLOW_ON_DELAY, 1))
    return folder


def source_of(instance):
    """Return the path of the file that defines the instance's class."""
    return type(instance).__init__.__code__.co_filename


def test_detector_modules_listed():
    assert detector_modules(FIRMWARE_DIR) == DETECTOR_MODULES


def test_two_folders_keep_own_code(tmp_path):
    copy = slow_copy(tmp_path / "fw")

    project = load_firmware_detector(FIRMWARE_DIR)
    trial = load_firmware_detector(copy)

    assert project.DEFAULTS["ultrasonic"]["on_delay_ms"] == 2000
    assert trial.DEFAULTS["ultrasonic"]["on_delay_ms"] == 20000
    project_detector = project.Detector(ULTRASONIC)
    trial_detector = trial.Detector(ULTRASONIC)
    assert project_detector.decision.on_delay_ms == 2000
    assert trial_detector.decision.on_delay_ms == 20000
    # The decision module is imported when a Detector is built, and comes from its own folder.
    assert source_of(project_detector.decision) == str(FIRMWARE_DIR / "distance_decision.py")
    assert source_of(trial_detector.decision) == str(copy / "distance_decision.py")


def test_loads_are_independent():
    first = load_firmware_detector(FIRMWARE_DIR)
    second = load_firmware_detector(FIRMWARE_DIR)
    assert first is not second
    assert first.Detector is not second.Detector


def test_no_bare_names_in_sys_modules():
    names = module_names(FIRMWARE_DIR)
    before = set(sys.modules)

    firmware = load_firmware_detector(FIRMWARE_DIR)
    for settings in ({"kind": "magnetometer"}, {"kind": "presence"}, ULTRASONIC):
        firmware.Detector(settings)

    added = set(sys.modules) - before
    assert not added & names
    assert not [name for name in added if name.startswith("baysense_firmware")]


def test_host_module_of_same_name_ignored(monkeypatch):
    # A host module named like a firmware module neither shadows the firmware's nor is replaced.
    host_filters = types.ModuleType("filters")
    monkeypatch.setitem(sys.modules, "filters", host_filters)

    loader = FirmwareLoader(FIRMWARE_DIR)
    detector = loader.load("detector").Detector({"kind": "magnetometer"})

    assert source_of(detector.decision._spread) == str(FIRMWARE_DIR / "filters.py")
    assert sys.modules["filters"] is host_filters


@pytest.mark.parametrize("missing", ["filters", "field_decision"])
def test_copy_missing_module_rejected(tmp_path, missing):
    copy = copy_detector(tmp_path / "fw", skip=[missing])
    expected = "%s.py not found in %s (" % (missing, copy)
    fix = "copy firmware/%s.py into that folder" % missing

    with pytest.raises(ConfigError, match="not found") as raised:
        detector_modules(copy)
    assert raised.value.message.startswith(expected)
    assert fix in raised.value.hint

    # Rejected at load, before any Detector is built: field_decision.py is imported only by a
    # magnetometer Detector, but the MicroPython engine and a deploy need it all the same.
    with pytest.raises(ConfigError, match="not found") as raised:
        load_firmware_detector(copy)
    assert raised.value.message.startswith(expected)
    assert fix in raised.value.hint


def test_copy_invalid_module_rejected(tmp_path):
    copy = copy_detector(tmp_path / "fw")
    (copy / "filters.py").write_text("def push(:\n")
    expected = "invalid Python in %s, line 1" % (copy / "filters.py")

    with pytest.raises(ConfigError, match="invalid Python") as raised:
        detector_modules(copy)
    assert raised.value.args[0].startswith(expected)

    with pytest.raises(ConfigError, match="invalid Python") as raised:
        load_firmware_detector(copy)
    assert raised.value.args[0].startswith(expected)


@pytest.mark.parametrize("engine", ["micropython", "cpython"])
def test_replay_firmware_option_runs_copy(tmp_path, capsys, engine):
    # A 10 s stay is missed only if the copy, with its 20 s on delay, ran.
    copy = slow_copy(tmp_path / "fw")
    settings = tmp_path / "ultrasonic.json"
    settings.write_text(json.dumps({"occupied_below_mm": 1200, "vacant_above_mm": 1500}))
    rows = ["%d,%d,%d,%d" % (i, i * 100, 2500 if i < 50 or i >= 150 else 900, int(50 <= i < 150)) for i in range(250)]
    trace = tmp_path / "stay.txt"
    trace.write_text("\n".join(rows) + "\n")
    arguments = ["replay", str(trace), "--settings", str(settings), "--kind", "ultrasonic", "--engine", engine, "--json"]

    assert main(arguments) == 0
    assert json.loads(capsys.readouterr().out)["episodes_correct"] == 1

    assert main(arguments + ["--firmware", str(copy)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["episodes_correct"] == 0
    assert summary["results"][0]["events"] == []

    # The project's detector again, after the copy ran in this process.
    assert main(arguments) == 0
    assert json.loads(capsys.readouterr().out)["episodes_correct"] == 1


def test_replay_copy_missing_module(tmp_path, capsys):
    copy = copy_detector(tmp_path / "fw", skip=["filters"])
    trace = tmp_path / "a.txt"
    trace.write_text("0,0,356,0\n")

    assert main(["replay", str(trace), "--firmware", str(copy)]) == 1
    assert "filters.py not found in %s" % copy in capsys.readouterr().err


@pytest.mark.parametrize("engine", ["micropython", "cpython"])
def test_engines_reject_same_copy(tmp_path, capsys, engine):
    # An ultrasonic replay never builds the magnetometer's decision, yet both engines reject a
    # copy without it, as a deploy of that copy is rejected.
    copy = copy_detector(tmp_path / "fw", skip=["field_decision"])
    trace = tmp_path / "a.txt"
    trace.write_text("0,0,356,0\n")
    arguments = ["replay", str(trace), "--board", "esp32-devkitc-hcsr04", "--engine", engine, "--firmware", str(copy)]

    assert main(arguments) == 1
    error = capsys.readouterr().err
    assert "field_decision.py not found in %s (detector.py imports it)" % copy in error
    assert "copy firmware/field_decision.py into that folder" in error
