"""The bench: the boards a session tests, the gateway they report to, and the bench controller.

A bench made of virtual boards only grows on demand: a test that needs a magnetometer board,
or more boards than there are, gets new virtual ones. A bench with a real board never does,
so a run meant for hardware cannot pass on simulations alone.
"""

import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .. import boards as board_definitions
from ..device import Device
from ..errors import BaysenseError, ConfigError, DeviceError
from ..firmware_imports import check_node_folder
from ..paths import FIRMWARE_DIR
from .board import Board
from .console import Console
from .controller import BenchController, load_wiring
from .gateway import HilGateway
from .options import VIRTUAL, BoardSpec
from .stimulus import BenchBay, VirtualBay
from .targets import SerialTarget, VirtualTarget

log = logging.getLogger(__name__)

# The board definition a virtual board of each sensor kind gets.
VIRTUAL_DEFINITIONS = {"ultrasonic": "virtual", "magnetometer": "virtual-magnetometer", "presence": "virtual-presence"}
# Boards started or prepared at once: each virtual board is one MicroPython process.
MAX_PARALLEL = 8
_UNSAFE_ID_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]")


class BenchTooSmall(BaysenseError):
    """The bench has no board the test can use (the plugin turns this into a skip)."""


class Bench:
    """The boards of one pytest session, created on first use and stopped at the end."""

    def __init__(self, specs, folder, gateway_host="127.0.0.1", controller_port=None, wiring_path=None, firmware_dir=None):
        self.folder = Path(folder)
        self.firmware_dir = Path(firmware_dir) if firmware_dir else FIRMWARE_DIR
        if not (self.firmware_dir / "main.py").is_file():
            raise ConfigError(
                "no main.py in the firmware folder %s" % self.firmware_dir,
                "pass --firmware with the folder that contains the node's main.py",
            )
        # Every module the node imports must be there too, or every test fails at the deploy.
        check_node_folder(self.firmware_dir)
        # Board folders contain device keys, and test logs may show board files: private to this user.
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.elastic = all(spec.port == VIRTUAL for spec in specs)
        self.gateway = HilGateway(self._subfolder("gateway"), gateway_host)
        self.controller_port = controller_port
        self.wiring_path = wiring_path
        self.controller = None
        self.boards = []
        self._virtual_count = 0
        self._started = False
        for spec in specs:
            self.boards.append(self._make_board(spec))
        if gateway_host.startswith("127.") and not all(_reaches_loopback(spec.port) for spec in specs):
            raise ConfigError(
                "a real board cannot reach a gateway on %s" % gateway_host,
                "pass --gateway-listen with this machine's address on the board's Wi-Fi network",
            )

    @property
    def has_real_board(self):
        return any(not board.virtual for board in self.boards)

    def start(self):
        """Start the gateway and the bench controller (once)."""
        if self._started:
            return
        self.gateway.start()
        if self.controller_port:
            self.controller = BenchController(self.controller_port, load_wiring(self.wiring_path)).install()
            for board in self.boards:
                if not board.virtual:
                    board.bay = BenchBay(board.name, self.controller, board.definition, self.gateway)
        self._started = True

    def close(self):
        for board in self.boards:
            try:
                board.target.shutdown()
            except (BaysenseError, OSError) as error:
                log.warning("stopping %s failed: %s", board.name, error)
            board.console.shutdown()
        if self.controller is not None:
            self.controller.close()
        self.gateway.stop()

    def acquire(self, count=1, kind=None):
        """Return `count` boards with a sensor of `kind`, adding virtual ones if allowed.

        With no kind, a real bench gives boards of any kind, and a virtual one gives ultrasonic
        boards (the default definition), so the same test gets the same boards each run.
        """
        if kind is None and self.elastic:
            kind = "ultrasonic"
        chosen = [board for board in self.boards if kind is None or board.kind == kind][:count]
        while len(chosen) < count and self.elastic:
            definition = VIRTUAL_DEFINITIONS[kind or "ultrasonic"]
            board = self._make_board(BoardSpec(VIRTUAL, definition))
            self.boards.append(board)
            chosen.append(board)
        if len(chosen) < count:
            wanted = "%d board(s)%s" % (count, " with a %s sensor" % kind if kind else "")
            raise BenchTooSmall(
                "the bench has %d of the %s this test needs" % (len(chosen), wanted),
                "pass one --board PORT@DEFINITION for each (see docs/hil.md)",
            )
        self.start()
        return chosen

    def run_on_each(self, boards, action):
        """Call action(board) on every board at once; re-raise the first failure."""
        if len(boards) == 1:
            return [action(boards[0])]
        with ThreadPoolExecutor(max_workers=min(len(boards), MAX_PARALLEL)) as pool:
            futures = [pool.submit(action, board) for board in boards]
            return [future.result() for future in futures]

    # -- building boards

    def _make_board(self, spec):
        if spec.port == VIRTUAL:
            self._virtual_count += 1
            name = "v%d" % self._virtual_count
            definition = board_definitions.load(spec.definition or VIRTUAL_DEFINITIONS["ultrasonic"])
            folder = self._subfolder("boards", name)
            console = Console(name, folder / "console.log")
            target = VirtualTarget(name, folder / "state", definition, console)
            device_id = "hil-%s-%s" % (name, definition["sensor"]["kind"])
            board = Board(name, definition, target, console, device_id, self.gateway, self.firmware_dir)
            board.bay = VirtualBay(name, target.stimulus, definition)
            return board

        name = _UNSAFE_ID_CHARACTERS.sub("_", Path(spec.port).name or spec.port)[:24]
        definition = board_definitions.load(spec.definition) if spec.definition else _definition_on_board(spec.port)
        folder = self._subfolder("boards", name)
        console = Console(name, folder / "console.log")
        target = SerialTarget(name, spec.port, definition, console)
        board = Board(name, definition, target, console, "hil-%s" % name, self.gateway, self.firmware_dir)
        board.bay = BenchBay(name, None, definition, self.gateway)
        return board

    def _subfolder(self, *parts):
        folder = self.folder.joinpath(*parts)
        # Virtual boards keep their keys in here: private to this user, as the registry is.
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        return folder


def _definition_on_board(port):
    """Return the board definition a real board was provisioned with (its /config.json)."""
    hint = "pass --board %s@DEFINITION with one of: %s" % (port, ", ".join(board_definitions.names()))
    try:
        device = Device(port)
    except DeviceError as error:
        # The port is what is wrong (not found, busy, no permission), so its own fix comes first.
        raise ConfigError("cannot read the board definition on %s: %s" % (port, error.message), error.hint) from error
    try:
        with device:
            config = json.loads(device.read_file("/config.json"))
    except (DeviceError, ValueError) as error:
        raise ConfigError("cannot tell which board definition %s has (%s)" % (port, error), hint) from error
    definition = config.get("board")
    if not isinstance(definition, dict):
        raise ConfigError("the /config.json on %s has no board definition" % port, hint)
    return board_definitions.check_definition(definition, "the /config.json on %s" % port)


def _reaches_loopback(port):
    """Return True for ports whose board runs on this machine: virtual, a pseudo-terminal, a loopback URL."""
    if port == VIRTUAL or port.startswith("/dev/pts/"):
        return True
    return bool(re.match(r"^(socket|rfc2217)://(127\.|localhost[:/])", port))
