"""`baysense replay`: reading traces, scoring episodes, and replays of real recordings."""

import json

import pytest

from baysense.cli import main
from baysense.errors import ConfigError
from baysense.paths import FIRMWARE_DIR
from baysense.replay import load_settings, replay
from baysense.replay.engine import Event, open_engine
from baysense.replay.scoring import label_episodes, score_episodes
from baysense.replay.traces import expand_paths, read_trace
from mpy.helpers import DATA_DIR

RDVD = DATA_DIR / "magnetic" / "rdvd"
EDGEAI = DATA_DIR / "tof-magnetic" / "edgeai"
CSM_EMPTY = DATA_DIR / "magnetic" / "csm-hmc5883" / "data3.txt"

needs_data = pytest.mark.skipif(
    not RDVD.is_dir(), reason="recorded data sets not found at %s (clone the shared data beside the repo)" % DATA_DIR
)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


# ---- reading traces ----------------------------------------------------------------------


def test_headerless_four_columns_use_rdvd_layout(tmp_path):
    path = write(tmp_path, "a.txt", "0,1000,356,0\n1,1090,355,1\n2,1180,357,1\n")
    trace = read_trace(path)
    assert trace.times_ms == [0, 90, 180]
    assert trace.values == [356, 355, 357]
    assert trace.labels == [0, 1, 1]


def test_header_names_columns(tmp_path):
    path = write(tmp_path, "a.csv", "time_ms,distance,label\n0,2500,0\n100,900,1\n")
    trace = read_trace(path, value="distance")
    assert trace.values == [2500, 900]
    assert trace.labels == [0, 1]


def test_columns_option_names_headerless(tmp_path):
    path = write(tmp_path, "a.csv", "5,0,2500\n6,250,900\n")
    trace = read_trace(path, columns=["n", "t", "mm"], value="mm", time_column="t")
    assert trace.times_ms == [0, 250]
    assert trace.values == [2500, 900]
    assert trace.labels is None


def test_whitespace_axes_with_period(tmp_path):
    path = write(tmp_path, "a.txt", "-245 312 -700\n-245 314 -701\n")
    trace = read_trace(path, value="z", period_ms=40)
    assert trace.times_ms == [0, 40]
    assert trace.values == [-700, -701]


def test_default_value_of_axes_is_norm(tmp_path):
    path = write(tmp_path, "a.txt", "3 4 0\n0 0 5\n")
    assert read_trace(path, period_ms=40).values == [5, 5]


def test_median_nonzero_over_glob(tmp_path):
    text = "timestamp,d0_mm,d1_mm,d2_mm,other\n2025-10-13T12:09:18,0,1000,1200,7\n2025-10-13T12:09:19,0,0,0,7\n"
    trace = read_trace(write(tmp_path, "a.csv", text), value="median_nonzero(d*_mm)")
    assert trace.times_ms == [0, 1000]
    assert trace.values == [1100, 0]


def test_median_far_counts_empty_zones_as_far(tmp_path):
    text = "time_ms,d0_mm,d1_mm,d2_mm\n0,0,0,900\n1000,800,900,0\n"
    trace = read_trace(write(tmp_path, "a.csv", text), value="median_far(d*_mm, 4000)")
    assert trace.values == [4000, 900]


def test_scale_before_rounding(tmp_path):
    path = write(tmp_path, "a.csv", "time_ms,mx\n0,-0.6168\n1000,1.0048\n")
    assert read_trace(path, value="mx", scale=100).values == [-62, 100]


@pytest.mark.parametrize(
    "text, options, message",
    [
        ("a,b\n1,2\n", {}, "no 'value' column"),
        ("time_ms,v\n1,2\n", {"value": "w"}, "value column 'w' not found"),
        ("time_ms,v\n1,2\n", {"value": "spread(v)"}, "unknown reduction"),
        ("time_ms,v\n1,2\n", {"value": "mean(q*)"}, "no column matches"),
        ("v\n1\n", {"value": "v"}, "no time column"),
        ("1,2\n", {}, "2 columns and no header"),
        ("time_ms,v\n1,x2\n", {"value": "v"}, "line 2"),
    ],
)
def test_bad_input_raises_config_error(tmp_path, text, options, message):
    with pytest.raises(ConfigError, match=message):
        read_trace(write(tmp_path, "a.csv", text), **options)


def test_folders_expand_in_natural_order(tmp_path):
    for name in ("sample10.txt", "sample2.txt", "notes.md"):
        write(tmp_path, name, "0,0,1,0\n")
    assert [p.name for p in expand_paths([tmp_path])] == ["sample2.txt", "sample10.txt"]


def test_missing_path_raises(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        expand_paths([tmp_path / "none.txt"])


# ---- scoring -----------------------------------------------------------------------------


def episode_of(events, rise=20000, fall=60000):
    times = list(range(0, 80000, 100))
    labels = [1 if rise <= t < fall else 0 for t in times]
    episodes = score_episodes(label_episodes(times, labels), [Event(t, s, 0, 0) for t, s in events])
    assert len(episodes) == 1
    return episodes[0]


@pytest.mark.parametrize(
    "events, correct",
    [
        ([(18000, 1), (75000, 0)], True),  # both at the edges of their windows
        ([(17900, 1), (61000, 0)], False),  # occupied too early
        ([(35100, 1), (61000, 0)], False),  # occupied too late
        ([(25000, 1), (57900, 0)], False),  # vacant too early
        ([(25000, 1)], False),  # vacant missing
        ([(25000, 1), (40000, 0), (45000, 1), (61000, 0)], False),  # a flap in between
        ([(25000, 1), (61000, 0), (70000, 2)], False),  # a fault is another event
        ([], False),
    ],
)
def test_episode_windows(events, correct):
    assert episode_of(events).correct is correct


def test_two_episodes_scored_apart():
    times = list(range(0, 200000, 100))
    labels = [1 if 20000 <= t < 60000 or 120000 <= t < 160000 else 0 for t in times]
    events = [Event(22000, 1, 0, 0), Event(62000, 0, 0, 0), Event(125000, 1, 0, 0)]
    first, second = score_episodes(label_episodes(times, labels), events)
    assert first.correct
    assert not second.correct
    assert second.problems == ["0 vacant reports near the departure"]


# ---- settings and the command ------------------------------------------------------------


def test_settings_from_board_and_overrides():
    settings = load_settings(board="esp32c3-qmc5883l", overrides=["on_delay_ms=1234"])
    assert settings["kind"] == "magnetometer"
    assert settings["on_delay_ms"] == 1234


def test_settings_file_detector_section(tmp_path):
    path = write(tmp_path, "s.json", json.dumps({"occupied_below_mm": 1000, "vacant_above_mm": 1200}))
    settings = load_settings(settings_file=path, kind="ultrasonic")
    assert settings == {"occupied_below_mm": 1000, "vacant_above_mm": 1200, "kind": "ultrasonic"}


def test_bad_override_rejected():
    with pytest.raises(ConfigError, match="NAME=INTEGER"):
        load_settings(board="virtual", overrides=["on_delay_ms"])


def test_command_prints_json_summary(tmp_path, capsys):
    rows = ["%d,%d,%d,%d" % (i, i * 100, 2500 if i < 50 or i >= 150 else 900, int(50 <= i < 150)) for i in range(250)]
    path = write(tmp_path, "stay.txt", "\n".join(rows) + "\n")
    status = main(["replay", str(path), "--board", "virtual", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert status == 0
    assert summary["files"] == 1
    assert summary["episodes"] == 1
    assert summary["episodes_correct"] == 1
    assert summary["episode_accuracy"] == 1.0
    assert summary["cost"]["allocated_bytes_per_sample"] == 0
    assert [e["state"] for e in summary["results"][0]["events"]] == ["occupied", "vacant"]


def test_firmware_option_without_detector(tmp_path, capsys):
    assert main(["replay", str(tmp_path), "--firmware", str(tmp_path)]) == 1
    assert "detector.py not found" in capsys.readouterr().err


def test_firmware_checked_before_board(tmp_path, capsys):
    # The copy lacks the decision modules and the board does not exist: the copy is reported first.
    copy = tmp_path / "fw"
    copy.mkdir()
    for name in ("detector.py", "detector_settings.py"):
        (copy / name).write_text((FIRMWARE_DIR / name).read_text())
    trace = write(tmp_path, "a.txt", "0,0,300,0\n")

    assert main(["replay", str(trace), "--board", "nosuch", "--firmware", str(copy)]) == 1
    error = capsys.readouterr().err
    assert "not found in %s (" % copy in error
    assert "board definition not found" not in error


def test_firmware_option_invalid_source(tmp_path, capsys):
    (tmp_path / "detector.py").write_text("def update(:\n")
    trace = write(tmp_path, "a.txt", "0,0,356,0\n")

    assert main(["replay", str(trace), "--firmware", str(tmp_path)]) == 1
    assert "invalid Python in %s, line 1" % (tmp_path / "detector.py") in capsys.readouterr().err


def test_command_reports_bad_input(tmp_path, capsys):
    path = write(tmp_path, "bad.csv", "a,b\n1,2\n")
    assert main(["replay", str(path)]) == 1
    assert "no 'value' column" in capsys.readouterr().err


# ---- real recordings (a few files; tools/bench_detector.py replays the whole sets) ----------


@needs_data
def test_rdvd_parking_files_scored():
    files = [RDVD / "parking" / ("sample%d.txt" % n) for n in (5, 14, 59, 95)]
    summary = replay(files, load_settings(board="esp32c3-qmc5883l"))
    assert summary["files"] == 4
    assert summary["episodes"] == 4
    assert summary["episodes_correct"] >= 3
    assert summary["cost"]["allocated_bytes_per_sample"] == 0


@needs_data
def test_rdvd_traffic_never_occupied():
    files = [RDVD / "traffic" / ("sample%d.txt" % n) for n in (1, 2, 3, 10)]
    summary = replay(files, load_settings(board="esp32c3-qmc5883l"), negative=True)
    assert summary["negatives"] == 4
    assert summary["negatives_with_false_occupied"] == 0


@needs_data
def test_edgeai_grid_reduced_to_distance():
    options = {"value": "median_far(d*_mm, 4000)"}
    settings = load_settings(board="esp32-devkitc-hcsr04")
    empty = replay([EDGEAI / "case10_empty.csv"], settings, read_options=options)
    assert empty["results"][0]["events"] == []
    parked = replay([EDGEAI / "case07_c1c2_L-M_stationary.csv"], settings, read_options=options)
    assert [e["state"] for e in parked["results"][0]["events"]] == ["occupied"]


@needs_data
def test_csm_empty_run_has_no_state_change():
    summary = replay([CSM_EMPTY], load_settings(board="esp32c3-qmc5883l"), read_options={"period_ms": 40, "value": "z"})
    assert summary["results"][0]["samples"] > 6000
    assert summary["results"][0]["events"] == []


def test_detector_error_on_micropython_reported(tmp_path):
    path = write(tmp_path, "a.txt", "0,0,300,0\n1,90,301,0\n")
    settings = {"kind": "magnetometer", "smooth_samples": 99}
    with pytest.raises(ConfigError, match="smooth_samples 99 is out of range: set it to 1..32"):
        replay([path], settings)


# ---- settings the detector rejects -------------------------------------------------------

STAY_ROWS = "\n".join(
    "%d,%d,%d,%d" % (i, i * 100, 2500 if i < 50 or i >= 150 else 900, int(50 <= i < 150)) for i in range(250)
)
ULTRASONIC_SECTION = {"occupied_below_mm": 1200, "vacant_above_mm": 1500}


def assert_clean_error(text, message):
    # A user error is one line: the detector's message and the fix, with no Python frames.
    assert message in text
    assert "--set NAME=INTEGER" in text
    assert "Traceback" not in text
    assert 'File "' not in text
    assert "--engine cpython" not in text


@pytest.mark.parametrize("engine", ["micropython", "cpython"])
@pytest.mark.parametrize(
    "override, message",
    [
        ("activity_samples=1000", "activity_samples 1000 is out of range: set it to 2..64"),
        ("on_delay_ms=-5", "on_delay_ms -5 is out of range: set it to 0..86400000"),
        ("on_delay_ms=99999999999999999", "on_delay_ms 99999999999999999 is out of range: set it to 0..86400000"),
    ],
)
def test_command_rejects_bad_override(tmp_path, capsys, engine, override, message):
    path = write(tmp_path, "stay.txt", STAY_ROWS + "\n")
    status = main(["replay", str(path), "--set", override, "--engine", engine])
    captured = capsys.readouterr()
    assert status == 1
    assert captured.out == ""
    assert_clean_error(captured.err, message)


@pytest.mark.parametrize("engine", ["micropython", "cpython"])
@pytest.mark.parametrize(
    "section, message",
    [
        (dict(ULTRASONIC_SECTION, on_delay_ms="2000"), "on_delay_ms '2000' is not an integer"),
        (dict(ULTRASONIC_SECTION, on_delay_ms=2.5), "on_delay_ms 2.5 is not an integer"),
        ({"vacant_above_mm": 1500}, "detector setting occupied_below_mm is missing"),
    ],
)
def test_command_rejects_bad_settings_file(tmp_path, capsys, engine, section, message):
    path = write(tmp_path, "stay.txt", STAY_ROWS + "\n")
    settings = write(tmp_path, "settings.json", json.dumps(section))
    status = main(["replay", str(path), "--settings", str(settings), "--kind", "ultrasonic", "--engine", engine])
    assert status == 1
    assert_clean_error(capsys.readouterr().err, message)


@pytest.mark.parametrize("engine", ["micropython", "cpython"])
def test_engine_rejects_settings_then_continues(tmp_path, engine):
    # replay() called with settings that bypassed load_settings: the engine reports them as a
    # ConfigError, and the same interpreter still replays the next trace.
    trace = read_trace(write(tmp_path, "stay.txt", STAY_ROWS + "\n"))
    good = dict(ULTRASONIC_SECTION, kind="ultrasonic")
    runner = open_engine(engine)
    try:
        with pytest.raises(ConfigError) as raised:
            runner.run(trace, dict(good, gap_ms=-1))
        assert "gap_ms -1 is out of range: set it to 0..86400000" in str(raised.value)
        assert [event.state for event in runner.run(trace, good).events] == [1, 0]
    finally:
        runner.close()


def test_settings_without_kind_named(tmp_path, capsys):
    settings = write(tmp_path, "settings.json", json.dumps(ULTRASONIC_SECTION))
    path = write(tmp_path, "stay.txt", STAY_ROWS + "\n")
    assert main(["replay", str(path), "--settings", str(settings)]) == 1
    error = capsys.readouterr().err
    assert "the detector settings name no sensor kind" in error
    assert "pass --kind ultrasonic|magnetometer|presence" in error
    assert "None" not in error


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-be", "utf-32"])
def test_settings_file_any_json_encoding(tmp_path, encoding):
    # Notepad can save UTF-8 with a byte order mark, and PowerShell's `>` writes UTF-16.
    path = tmp_path / "settings.json"
    path.write_bytes(json.dumps(dict(ULTRASONIC_SECTION, on_delay_ms=1234)).encode(encoding))
    settings = load_settings(settings_file=path, kind="ultrasonic")
    assert settings == dict(ULTRASONIC_SECTION, on_delay_ms=1234, kind="ultrasonic")


def test_settings_file_not_text_rejected(tmp_path):
    path = tmp_path / "settings.json"
    path.write_bytes('{"on_delay_ms": "\u00e9"}'.encode("latin-1"))
    with pytest.raises(ConfigError) as raised:
        load_settings(settings_file=path, kind="ultrasonic")
    assert str(raised.value) == "settings %s is not UTF-8 or UTF-16 text (byte 0xe9 at offset 17): save it as UTF-8" % path


# ---- settings messages agree ------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 33])
@pytest.mark.parametrize("engine", ["micropython", "cpython"])
def test_smooth_samples_same_range_both_sides(tmp_path, capsys, engine, value):
    path = write(tmp_path, "a.txt", "0,0,300,0\n")
    arguments = ["replay", str(path), "--board", "esp32c3-qmc5883l", "--engine", engine, "--set", "smooth_samples=%d" % value]

    assert main(arguments) == 1
    error = capsys.readouterr().err
    assert "smooth_samples %d is out of range: set it to 1..32" % value in error


@pytest.mark.parametrize(
    "name, fix",
    [
        ("occupied_below_mm", "remove it, because only the ultrasonic detector reads it"),
        ("on_dealy_ms", "did you mean on_delay_ms?"),
    ],
)
def test_set_other_kind_key_warned(caplog, name, fix):
    settings = load_settings(board="esp32c3-qmc5883l", overrides=["%s=1000" % name])

    assert settings[name] == 1000
    expected = "detector setting %r is not used by the magnetometer detector: %s" % (name, fix)
    assert expected in caplog.text


def test_set_own_kind_key_not_warned(caplog):
    load_settings(board="esp32-devkitc-hcsr04", overrides=["occupied_below_mm=1000"])

    assert "is not used" not in caplog.text
