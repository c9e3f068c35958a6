"""The pytest plugin: options, markers and fixtures for hardware-in-the-loop tests.

Registered by the package (entry point `pytest11`), so every pytest run in this environment
loads it. It adds options, markers and fixtures only: a test that uses none of its fixtures
starts no board and no gateway, and pays nothing.

Fixtures: `board` (one board, brought to the requested state), `boards` (several at once),
`bay` (the stimulus in front of `board`'s sensor), `gateway` (the session's gateway) and
`hil_log_dir` (the test's log folder). Markers: `sensor(kind)`, `boards(count)`,
`board_state(state)` and `hardware`. docs/hil.md is the guide.
"""

import functools
import logging
import os
import re
from pathlib import Path

import pytest

from ..errors import ConfigError
from .options import ENV_BOARDS, bench_specs, check_port, parse_board

# The bench, the boards and the gateway are imported inside the fixtures: pytest loads this
# plugin in every run, and a run that uses none of its fixtures should not pay for esptool,
# the gateway and the virtual board.

log = logging.getLogger(__name__)

# Boards the `boards` fixture gives when the test has no boards(count) marker.
DEFAULT_BOARD_COUNT = 2
_UNSAFE_PATH_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]+")


def pytest_addoption(parser):
    group = parser.getgroup("baysense", "Baysense hardware-in-the-loop tests")
    group.addoption(
        "--board",
        action="append",
        default=[],
        metavar="PORT[@DEFINITION]",
        help="Test the board on PORT (a serial device or a pyserial URL; `virtual` starts a virtual board)."
        " DEFINITION names its boards/*.json; without it a real board's is read from its /config.json."
        " Repeat for several boards. Default: $%s, else virtual boards started as tests need them." % ENV_BOARDS,
    )
    group.addoption("--boards", type=int, metavar="N", help="Start N virtual boards with the default definition.")
    group.addoption(
        "--bench-controller",
        metavar="PORT",
        help="Serial port of the bench controller, the second MicroPython board that moves the car on a real bench.",
    )
    group.addoption(
        "--bench-wiring", metavar="FILE", help="JSON file naming the bench controller's GPIOs (see docs/hil.md)."
    )
    group.addoption(
        "--gateway-listen",
        default="127.0.0.1",
        metavar="HOST",
        help="Address the session's gateway listens on; a real board needs one it can reach over Wi-Fi.",
    )
    group.addoption(
        "--firmware", metavar="DIR", help="Firmware folder deployed to every board. Default: firmware/ of this checkout."
    )
    group.addoption("--hil-logs", metavar="DIR", help="Folder for the boards' logs, one subfolder per test. Default: pytest's temporary folder.")


def pytest_configure(config):
    # A mistyped --board, or a port that does not exist, fails the run at once with one line,
    # instead of an error in each test. $BAYSENSE_BOARDS is checked only when a test needs a
    # board, so that a stale value on a bench machine does not stop test runs that use no board.
    for text in config.getoption("board"):
        try:
            check_port(parse_board(text).port, "--board %s" % text.strip())
        except ConfigError as error:
            raise pytest.UsageError(str(error)) from error
    config.addinivalue_line("markers", "sensor(kind): the test needs a board with this sensor kind")
    config.addinivalue_line("markers", "boards(count): the `boards` fixture gives this many boards")
    config.addinivalue_line("markers", "board_state(state): bring the board to off, bootloader, repl or firmware (default)")
    config.addinivalue_line("markers", "hardware: the test needs a real board (--board PORT)")


# -- session


@pytest.fixture(scope="session")
def hil_bench(request, tmp_path_factory):
    """The session's Bench: boards, gateway and bench controller, stopped at the end."""
    from .bench import Bench

    config = request.config
    folder = config.getoption("hil_logs") or tmp_path_factory.getbasetemp() / "hil"
    # A bench that cannot be built would fail every test that needs a board, each with the
    # same traceback, so the run stops with the error's one line instead.
    try:
        specs = bench_specs(config.getoption("board"), config.getoption("boards"), os.environ)
        if not config.getoption("board"):
            for spec in specs:
                check_port(spec.port, "$%s" % ENV_BOARDS)
        bench = Bench(
            specs,
            folder,
            gateway_host=config.getoption("gateway_listen"),
            controller_port=config.getoption("bench_controller"),
            wiring_path=config.getoption("bench_wiring"),
            firmware_dir=config.getoption("firmware"),
        )
    except ConfigError as error:
        pytest.exit("ERROR: %s" % error, returncode=pytest.ExitCode.USAGE_ERROR)
    yield bench
    bench.close()


@pytest.fixture(scope="session")
def gateway(hil_bench):
    """The session's gateway (HilGateway): the real UDP gateway and queries on its store."""
    hil_bench.start()
    return hil_bench.gateway


# -- per test


@pytest.fixture
def hil_log_dir(request, hil_bench):
    """This test's log folder: the boards' serial output and the plugin's log (transitions included)."""
    folder = Path(hil_bench.folder) / "tests" / _UNSAFE_PATH_CHARACTERS.sub("_", request.node.nodeid).strip("_")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    handler = logging.FileHandler(folder / "hil.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    package_logger = logging.getLogger("baysense")
    previous_level = package_logger.level
    package_logger.setLevel(logging.INFO)
    package_logger.addHandler(handler)
    request.node.user_properties.append(("hil_log_dir", str(folder)))
    yield folder
    package_logger.removeHandler(handler)
    package_logger.setLevel(previous_level)
    handler.close()


@pytest.fixture
def board(request, hil_bench, gateway, hil_log_dir):
    """One board in the state the test requests (default: the node freshly started, bay empty)."""
    [chosen] = _setup_boards(request, hil_bench, 1, hil_log_dir)
    yield _SkipUnsupported(chosen)
    _teardown_boards(hil_bench, [chosen])


@pytest.fixture
def boards(request, hil_bench, gateway, hil_log_dir):
    """Several boards at once, each like `board`; the count comes from the boards(count) marker."""
    marker = request.node.get_closest_marker("boards")
    count = marker.args[0] if marker else DEFAULT_BOARD_COUNT
    chosen = _setup_boards(request, hil_bench, count, hil_log_dir)
    yield [_SkipUnsupported(item) for item in chosen]
    _teardown_boards(hil_bench, chosen)


@pytest.fixture
def bay(board):
    """The stimulus in front of `board`'s sensor: vacant(), occupied(), pass_by(s), unplug(), plug(), link(up)."""
    stimulus = board.bay
    # A VirtualBay has no controller attribute; a BenchBay without a controller has None.
    if getattr(stimulus, "controller", False) is None:
        pytest.skip("needs a bench controller to move the car on a real bench: pass --bench-controller PORT (docs/hil.md)")
    return _SkipUnsupported(stimulus)


def _setup_boards(request, bench, count, log_dir):
    from .bench import BenchTooSmall
    from .strategy import FIRMWARE, STATES

    if request.node.get_closest_marker("hardware") and not bench.has_real_board:
        pytest.skip("needs a real board: pass --board PORT (or set %s)" % ENV_BOARDS)
    sensor = request.node.get_closest_marker("sensor")
    kind = sensor.args[0] if sensor else None
    try:
        chosen = bench.acquire(count, kind)
    except BenchTooSmall as error:
        pytest.skip(str(error))

    state_marker = request.node.get_closest_marker("board_state")
    state = state_marker.args[0] if state_marker else FIRMWARE
    if state not in STATES:
        raise pytest.UsageError("board_state(%r): use one of %s" % (state, ", ".join(STATES)))

    for item in chosen:
        item.begin_test(log_dir)
        request.node.user_properties.append(("serial_log", str(log_dir / ("serial-%s.log" % item.name))))
    try:
        bench.run_on_each(chosen, functools.partial(_prepare_for_test, state=state))
    except _unsupported_errors() as error:
        pytest.skip(str(error))
    for item in chosen:
        # After the setup, so a board started by it shows its port.
        request.node.user_properties.append(("board", "%s %s %s" % (item.name, item.definition["name"], item.port or "(port closed)")))
    return chosen


def _prepare_for_test(item, state):
    from .strategy import FIRMWARE

    # An empty bay and a working sensor and link first, so every test starts from the same world.
    if item.bay is not None:
        item.bay.vacant()
    if state == FIRMWARE:
        item.start_firmware()
    else:
        item.transition(state, "requested by the test")


def _teardown_boards(bench, chosen):
    for item in chosen:
        item.end_test()
    if not bench.gateway.running:
        bench.gateway.resume()  # a test that paused it must not leave the next one without a gateway


def _unsupported_errors():
    """Return the errors for what a bench cannot do, which become skips."""
    from .stimulus import StimulusUnsupported
    from .strategy import TransitionUnsupported

    return (TransitionUnsupported, StimulusUnsupported)


class _SkipUnsupported:
    """Passes everything through to the wrapped object; calls the bench cannot do become skips."""

    def __init__(self, wrapped):
        object.__setattr__(self, "_wrapped", wrapped)

    def __getattr__(self, name):
        value = getattr(self._wrapped, name)
        if name == "bay" and value is not None:
            return _SkipUnsupported(value)
        if not callable(value) or isinstance(value, type):
            return value

        @functools.wraps(value)
        def call(*args, **kwargs):
            try:
                return value(*args, **kwargs)
            except _unsupported_errors() as error:
                pytest.skip(str(error))

        return call

    def __setattr__(self, name, value):
        setattr(self._wrapped, name, value)

    def __repr__(self):
        return repr(self._wrapped)
