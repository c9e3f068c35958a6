"""The board's states as an explicit state machine, each transition logged and checked.

    unknown --> off, bootloader, repl, firmware
    off <--> bootloader <--> repl <--> firmware   (and every other pair, through repl)

- off: no power (a virtual board's process stopped; a real chip held in reset by EN).
- bootloader: the ROM serial bootloader, which esptool talks to.
- repl: MicroPython at its prompt, the node not running (what exec and file copies need).
- firmware: the node's main loop running; the node has printed its start line.

A transition is done by the target's physical steps and then verified: esptool synchronises
with the bootloader, the REPL shows its prompt after Ctrl-C, the node prints its start line.
A failed transition leaves the state "unknown", so the next request starts from a reset.
"""

import logging
import re
import time
from dataclasses import dataclass

from esptool.cmds import detect_chip
from esptool.util import FatalError

from ..errors import BaysenseError, ConfigError, DeviceError
from ..node_output import NODE_FAILED, failure_line

log = logging.getLogger(__name__)

UNKNOWN = "unknown"
OFF = "off"
BOOTLOADER = "bootloader"
REPL = "repl"
FIRMWARE = "firmware"
STATES = (OFF, BOOTLOADER, REPL, FIRMWARE)

# How long (seconds) a board may take from reset to its REPL prompt or the node's start line.
# An ESP32 takes about 1 s, a virtual board about 0.3 s; a first boot that formats the
# filesystem takes a few seconds more.
BOOT_TIMEOUT_S = 20.0
# Pause (seconds) between Ctrl-C attempts while a board boots: a Ctrl-C sent before
# MicroPython runs is lost.
PROMPT_RETRY_S = 0.2
# How often (seconds) the output is searched for the node's start line.
START_POLL_S = 0.05

NODE_START = re.compile(
    r"node (?P<device_id>\S+) firmware (?P<version>\S+) reset cause (?P<reset_cause>\d+) outbox (?P<outbox>\d+)"
    r"(?: counter (?P<counter>\d+))?"
)
BOOTED_TO_PROMPT = re.compile(r"^>>> ", re.MULTILINE)


class TransitionUnsupported(BaysenseError):
    """The target cannot reach the requested state (the plugin turns this into a skip)."""


@dataclass(frozen=True)
class BootReport:
    """The node's start line, parsed."""

    device_id: str
    version: str
    reset_cause: int
    outbox: int
    counter: int | None  # the next frame counter, where the firmware prints it


class Strategy:
    """Brings one board to a requested state and keeps track of where it is."""

    def __init__(self, name, target, console, prepare):
        self.name = name
        self.target = target
        self.console = console
        self.prepare = prepare  # prepare(device): deploy and provision, run once in the repl state
        self.prepared = False
        self.state = UNKNOWN
        self.bootloader_chip = None
        self.last_boot = None

    def transition(self, wanted, reason=""):
        """Bring the board to `wanted`; nothing happens when it is there already."""
        if wanted not in STATES:
            raise ConfigError("unknown board state %r" % wanted, "use one of: %s" % ", ".join(STATES))
        if wanted == self.state:
            return
        why = self.target.unsupported(wanted)
        if why:
            raise TransitionUnsupported("%s cannot reach the %s state" % (self.name, wanted), why)
        if wanted == FIRMWARE and self.state != REPL:
            self.transition(REPL, "on the way to firmware")
        self._run(wanted, getattr(self, "_to_" + wanted), reason)

    def restart_firmware(self, how="soft"):
        """Restart the node: "soft" (Ctrl-D), "hard" (machine.reset()) or "power" (power cut or EN).

        Returns the node's BootReport. A soft restart goes through the repl state, where the
        board is prepared if it was not yet.
        """
        actions = {"soft": self._soft_restart, "hard": self._hard_restart, "power": self._power_restart}
        if how not in actions:
            raise ConfigError("unknown restart %r" % how, "use one of: %s" % ", ".join(actions))
        if how in ("soft", "hard") and self.state != REPL:
            # Both go through the REPL, and stopping the node first keeps the KeyboardInterrupt
            # traceback out of the output searched for the restart.
            self.transition(REPL, "for a %s reset" % how)
        self._run(FIRMWARE, actions[how], "%s restart" % how)
        return self.last_boot

    # -- the transitions

    def _run(self, wanted, action, reason):
        previous = self.state
        started = time.monotonic()
        log.info("%s: %s -> %s%s", self.name, previous, wanted, " (%s)" % reason if reason else "")
        try:
            action()
        except BaseException as error:
            self.state = UNKNOWN
            log.error("%s: %s -> %s failed after %.1f s: %s", self.name, previous, wanted, time.monotonic() - started, error)
            raise
        self.state = wanted
        log.info("%s: reached %s in %.1f s", self.name, wanted, time.monotonic() - started)

    def _to_off(self):
        self.target.power_off()

    def _to_bootloader(self):
        url = self.target.enter_bootloader()
        try:
            with detect_chip(url, connect_mode=self.target.bootloader_connect_mode) as loader:
                self.bootloader_chip = loader.get_chip_description()
        except (FatalError, OSError) as error:
            raise DeviceError(
                "the bootloader of %s did not respond to esptool on %s" % (self.name, url),
                "check the USB cable and the auto-reset circuit, or hold BOOT while pressing EN: %s" % error,
            ) from error
        log.info("%s: esptool identified the chip: %s", self.name, self.bootloader_chip)

    def _to_repl(self):
        if self.state in (UNKNOWN, OFF, BOOTLOADER):
            mark = self.target.power_on()
            if mark is not None:
                self._wait_for_boot(mark)
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while True:
            try:
                with self.console.use() as device:
                    device.interrupt()
                return
            except DeviceError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(PROMPT_RETRY_S)

    def _wait_for_boot(self, mark):
        # Ctrl-C sent while the board still boots is lost on a chip and races the virtual
        # board's start-up, so wait until main.py has got somewhere: the node started,
        # stopped, or left MicroPython at its prompt. A board showing none of these (other
        # firmware) gets its Ctrl-C after BOOT_TIMEOUT_S anyway.
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while time.monotonic() < deadline:
            text = self.console.text(mark)
            if NODE_START.search(text) or NODE_FAILED.search(text) or BOOTED_TO_PROMPT.search(text):
                return
            time.sleep(START_POLL_S)
        log.warning("%s: no node start line or prompt within %.0f s of power-on", self.name, BOOT_TIMEOUT_S)

    def _to_firmware(self):
        self._soft_restart()

    def _soft_restart(self):
        with self.console.use() as device:
            if not self.prepared:
                self.prepare(device)
                self.prepared = True
            mark = self.console.mark()
            device.soft_reset(run_main=True)
        self.last_boot = self.wait_for_start(mark)

    def _hard_restart(self):
        mark = self.console.mark()
        with self.console.use() as device:
            device.hard_reset()
        self.last_boot = self.wait_for_start(mark)

    def _power_restart(self):
        mark = self.target.reset()
        self.last_boot = self.wait_for_start(mark)

    def wait_for_start(self, mark):
        """Wait for the node's start line after `mark`; fail early if the node stopped instead."""
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while True:
            text = self.console.text(mark)
            started = NODE_START.search(text)
            if started:
                return BootReport(
                    started["device_id"],
                    started["version"],
                    int(started["reset_cause"]),
                    int(started["outbox"]),
                    int(started["counter"]) if started["counter"] else None,
                )
            failed = NODE_FAILED.search(text)
            if failed:
                raise DeviceError(
                    "the node on %s stopped at start (%s)" % (self.name, failure_line(text, failed)),
                    "its output was:\n%s" % self.console.tail(mark),
                )
            if time.monotonic() >= deadline:
                raise DeviceError(
                    "timed out after %.0f s waiting for the node on %s to start" % (BOOT_TIMEOUT_S, self.name),
                    "its output was:\n%s" % self.console.tail(mark),
                )
            time.sleep(START_POLL_S)
