"""The board a test gets: code, files, resets, deploy and provision, and the serial output.

Every operation first brings the board to the state it needs through the strategy. Exec and
file operations need the repl, which stops the node, and the resets end with the node
running. So a test never leaves the board in a state the next step cannot handle.
"""

import logging
import os

from ..deploy import board_mpy_version, build, compiler_mpy_version, deploy
from ..device import EXEC_TIMEOUT_S
from ..errors import ConfigError, DeviceException
from ..paths import FIRMWARE_DIR
from ..provision import ENV_WIFI_PASSWORD, provision
from ..registry import Registry
from .strategy import FIRMWARE, REPL, Strategy
from .wait import ExpectationTimeout, wait_until

log = logging.getLogger(__name__)

# Seconds between heartbeats of a node under test: often enough that a test waiting for one
# (the link is back, the firmware version) waits a few seconds, not a minute.
HEARTBEAT_S = 10
# How long (seconds) a test waits for a line the board should print now.
OUTPUT_TIMEOUT_S = 15.0
# Files a new session removes from a board: outbox frames signed with an earlier session's key
# would never be acknowledged by this session's gateway and would block the queue.
STALE_FILES = ("/outbox.log", "/outbox.ack")
ENV_WIFI_SSID = "BAYSENSE_WIFI_SSID"


class Board:
    """One board under test, virtual or real; `bay` moves the car in front of its sensor."""

    def __init__(self, name, definition, target, console, device_id, gateway, firmware_dir=FIRMWARE_DIR):
        self.name = name
        self.firmware_dir = firmware_dir
        self.definition = definition
        self.target = target
        self.console = console
        self.device_id = device_id
        self.gateway = gateway
        self.strategy = Strategy(name, target, console, self._prepare)
        self.bay = None
        self.log_dir = None
        self._test_mark = 0

    def __repr__(self):
        return "Board(%s, %s, %s)" % (self.name, self.definition["name"], self.state)

    @property
    def kind(self):
        """The sensor kind: "ultrasonic", "magnetometer" or "presence"."""
        return self.definition["sensor"]["kind"]

    @property
    def virtual(self):
        return self.target.virtual

    @property
    def port(self):
        return self.console.port

    @property
    def state(self):
        return self.strategy.state

    # -- states and resets

    def transition(self, state, reason=""):
        """Bring the board to "off", "bootloader", "repl" or "firmware" (see strategy.py)."""
        self.strategy.transition(state, reason)

    def start_firmware(self):
        """Start the node afresh (a soft reset) and return its BootReport."""
        if self.state == FIRMWARE:
            return self.strategy.restart_firmware("soft")
        self.strategy.transition(FIRMWARE, "fresh start")
        return self.strategy.last_boot

    def soft_reset(self):
        """Ctrl-D: MicroPython restarts and runs main.py; return the node's BootReport."""
        return self.strategy.restart_firmware("soft")

    def hard_reset(self):
        """machine.reset() on the board; return the node's BootReport."""
        return self.strategy.restart_firmware("hard")

    def power_cycle(self):
        """Power cut on a virtual board, EN pulse on a real one; return the node's BootReport.

        On a port without modem lines this is machine.reset() (see power_on_reset_unsupported).
        """
        return self.strategy.restart_firmware("power")

    @property
    def power_on_reset_unsupported(self):
        """The reason power_cycle() gives no power-on reset (cause 1) on this board, or None."""
        return self.target.power_on_reset_unsupported()

    @property
    def bootloader_chip(self):
        """The chip esptool saw in the last bootloader state, e.g. "ESP32-D0WD-V3 (revision v3.0)"."""
        return self.strategy.bootloader_chip

    # -- code and files (the node stops: they need the repl)

    def exec(self, code, timeout=EXEC_TIMEOUT_S):
        """Run code on the board; return its output. A device exception raises DeviceException."""
        with self._repl("exec") as device:
            return device.exec(code, timeout)

    def eval(self, expression, timeout=EXEC_TIMEOUT_S):
        with self._repl("eval") as device:
            return device.eval(expression, timeout)

    def read_file(self, path):
        with self._repl("read a file") as device:
            return device.read_file(path)

    def write_file(self, path, data):
        with self._repl("write a file") as device:
            device.write_file(path, data)

    def listdir(self, path="/"):
        with self._repl("list files") as device:
            return device.listdir(path)

    def remove(self, path):
        with self._repl("remove a file") as device:
            device.remove(path)

    def deploy(self):
        """Bring the board's firmware in line with the firmware folder; return the actions taken."""
        with self._repl("deploy") as device:
            return deploy(device, self._build(device))

    def _build(self, device):
        # .mpy when the board loads the bytecode version mpy-cross emits, else sources.
        return build(self.firmware_dir, compile_mpy=board_mpy_version(device) == compiler_mpy_version())

    def provision(self, rotate_key=False):
        """Provision the board for the session's gateway; return provision()'s outcome."""
        with self._repl("provision") as device:
            return self._provision(device, rotate_key)

    def _repl(self, reason):
        self.strategy.transition(REPL, reason)
        return self.console.use()

    def _prepare(self, device):
        # Runs once per session, in the repl state, before the node first starts.
        actions = deploy(device, self._build(device))
        log.info("%s: deployed %s, %d file(s) changed", self.name, self.firmware_dir, len(actions))
        for path in STALE_FILES:
            try:
                device.remove(path)
            except DeviceException as error:
                if error.errno != 2:  # ENOENT: nothing to remove
                    raise
        self._provision(device, rotate_key=False)

    def _provision(self, device, rotate_key):
        wifi = {}
        if not self.virtual:
            if not os.environ.get(ENV_WIFI_SSID):
                raise ConfigError(
                    "no Wi-Fi network set for the real board %s" % self.name,
                    "set %s and %s in the environment (never on the command line)" % (ENV_WIFI_SSID, ENV_WIFI_PASSWORD),
                )
            wifi = {"ssid": os.environ[ENV_WIFI_SSID], "password": os.environ.get(ENV_WIFI_PASSWORD, "")}
        with Registry(self.gateway.registry_path) as registry:
            outcome = provision(
                device,
                registry,
                self.device_id,
                self.gateway.address,
                self.definition,
                wifi=wifi,
                rotate_key=rotate_key,
                heartbeat_s=HEARTBEAT_S,
            )
        log.info("%s: provisioned as %s for %s: %s", self.name, self.device_id, self.gateway.address, outcome)
        return outcome

    # -- output

    def mark(self):
        """Return the current end of the serial output, for expect(since=...)."""
        return self.console.mark()

    def output(self, since=None):
        """Return the board's serial output since the test started (or since a mark)."""
        return self.console.text(self._test_mark if since is None else since)

    def expect(self, pattern, timeout_s=OUTPUT_TIMEOUT_S, since=None):
        """Wait until the output after `since` (default: the test's start) matches the regex; return the match."""
        start = self._test_mark if since is None else since
        return wait_until(
            lambda: self.console.search(pattern, start), timeout_s, "%r in the output of %s" % (pattern, self.name), [self]
        )

    def expect_absent(self, pattern, for_s, since=None):
        """Fail if the output after `since` matches the regex during the next `for_s` seconds."""
        start = self._test_mark if since is None else since
        try:
            found = wait_until(lambda: self.console.search(pattern, start), for_s, "%r" % pattern)
        except ExpectationTimeout:
            return
        raise ExpectationTimeout(
            "%s printed %r, which the test expected not to see" % (self.name, found.group(0)), self.describe()
        )

    def describe(self):
        """Return the last lines of output and the path of the whole log, for failure messages."""
        self.save_log()
        where = self.log_dir / ("serial-%s.log" % self.name) if self.log_dir else self.console.log_path
        return "last output of %s (%s, state %s):\n%s\nfull serial log: %s" % (
            self.name,
            self.port or "port closed",
            self.state,
            self.console.tail(self._test_mark),
            where,
        )

    # -- per-test logs

    def begin_test(self, log_dir):
        self.log_dir = log_dir
        self._test_mark = self.console.mark()

    def save_log(self):
        """Write the output since the test started to the test's log folder."""
        if self.log_dir is None:
            return
        path = self.log_dir / ("serial-%s.log" % self.name)
        path.write_text(self.console.text(self._test_mark))
        return path

    def end_test(self):
        path = self.save_log()
        self.log_dir = None
        return path
