"""How to power, reset and boot one kind of board: a virtual board or a board on a serial port.

A target does the physical steps only, such as starting a process or toggling a modem line.
The strategy decides which steps a state change needs and checks that the board got there.
"""

import logging
import time

from esptool.reset import HardReset

from ..errors import DeviceError
from ..rom.server import BackgroundServer
from ..vboard.board import VirtualBoard
from ..vboard.stimulus import Stimulus

log = logging.getLogger(__name__)

# Boards whose USB bridge drives EN and IO0 from RTS and DTR (the DevKit auto-reset circuit).
# A chip on its own USB port (USB-Serial-JTAG) leaves the bus while EN is low instead.
BRIDGED_USB = {"cp210x", "ch340", "ch9102", "ftdi"}
# How long (seconds) a chip on its own USB port may take to come back on the bus after a reset.
REENUMERATE_TIMEOUT_S = 5.0
REENUMERATE_POLL_S = 0.1


class VirtualTarget:
    """A virtual board in `state_dir`; its bootloader is the virtual ROM on a TCP port.

    The virtual board and the virtual ROM are separate programs, so the bootloader state
    stops the interpreter and serves the ROM on the board's flash file, at a socket:// URL
    instead of the pseudo-terminal. The ROM resets into download mode on each connection.
    """

    virtual = True
    bootloader_connect_mode = "no-reset"

    def __init__(self, name, state_dir, definition, console, baud=None):
        self.name = name
        self.state_dir = state_dir
        self.definition = definition
        self.console = console
        self.baud = baud
        self.vboard = None
        self.rom = None
        # The world is set before the first power-on, so the board boots into it.
        (state_dir / "sim").mkdir(mode=0o700, parents=True, exist_ok=True)
        self.stimulus = Stimulus(state_dir / "sim")

    def unsupported(self, state):
        return None

    def power_on_reset_unsupported(self):
        return None

    @property
    def serial_log_path(self):
        """The board's own record of what it printed, kept by the virtual board."""
        return self.state_dir / "serial.log"

    def power_off(self):
        self.console.close()
        if self.vboard is not None:
            self.vboard.stop()
            self.vboard = None
        if self.rom is not None:
            self.rom.stop()
            self.rom = None

    def enter_bootloader(self):
        """Power off, then serve the virtual ROM; return the URL esptool connects to."""
        self.power_off()
        self.rom = BackgroundServer(
            self.state_dir / "flash.bin", self.definition["chip"], flash_size=self.definition["flash_size_bytes"]
        ).start()
        return self.rom.url

    def power_on(self):
        """Start the board if it is off and open its console.

        Returns the console mark from which the boot shows, or None when the board was running.
        """
        if self.rom is not None:
            self.rom.stop()
            self.rom = None
        mark = None
        if self.vboard is None:
            mark = self.console.mark()
            self.vboard = VirtualBoard(self.state_dir, self.definition, baud=self.baud).start()
        if not self.console.is_open:
            self.console.open(self.vboard.port)
        return mark

    def reset(self):
        """Cut the power and restore it: the interpreter dies wherever it is, then boots.

        Returns the console mark from which the boot shows.
        """
        mark = self.console.mark()
        self.vboard.power_cycle()
        return mark

    def shutdown(self):
        self.power_off()


class SerialTarget:
    """A board on a serial port, reset through its modem lines as esptool does.

    A port without modem lines (a pseudo-terminal, a `socket://` URL, a bridge with DTR and
    RTS not wired) cannot reach EN or IO0. Such a board is reset with machine.reset() through
    its REPL, and has no off or bootloader state.
    """

    virtual = False
    bootloader_connect_mode = "default-reset"

    def __init__(self, name, port, definition, console):
        self.name = name
        self.port = port
        self.definition = definition
        self.console = console
        self.native_usb = definition["usb_bridge"] not in BRIDGED_USB
        self.serial_log_path = console.log_path
        self._modem_lines = None  # unknown until the port is open

    @property
    def modem_lines(self):
        """True when the port can drive DTR and RTS (and so EN and IO0)."""
        if self._modem_lines is None:
            if not self.console.is_open:
                self.console.open(self.port)
            with self.console.use() as device:
                try:
                    device.serial.dtr = True  # what pyserial set at open, so nothing moves
                    self._modem_lines = True
                except OSError as error:
                    log.info("%s: %s has no modem lines (%s): resets go through machine.reset()", self.name, self.port, error)
                    self._modem_lines = False
        return self._modem_lines

    def unsupported(self, state):
        if state in ("off", "bootloader") and not self.modem_lines:
            return "%s has no DTR/RTS lines to hold EN or IO0, so the %s state is out of reach" % (self.port, state)
        if state == "off" and self.native_usb:
            return (
                "%s is on the chip's own USB port (%s): holding EN low would take the port off the bus,"
                " so the off state needs a power relay, which this plugin does not drive yet"
                % (self.name, self.definition["usb_bridge"])
            )
        return None

    def power_on_reset_unsupported(self):
        """Return why reset() here is no power-on reset, or None when it is one."""
        if not self.modem_lines:
            return (
                "%s has no DTR/RTS lines to pulse EN, so a power cycle there is machine.reset(),"
                " which reports reset cause 5 (SOFT_RESET), not 1 (PWRON_RESET)" % self.port
            )
        return None

    def power_off(self):
        """Hold the chip in reset: RTS asserted pulls EN low on the DevKit auto-reset circuit."""
        if not self.console.is_open:
            self.console.open(self.port)
        with self.console.use() as device:
            device.serial.dtr = False  # IO0 high, so releasing EN later boots the firmware
            device.serial.rts = True

    def enter_bootloader(self):
        """Free the port for esptool, whose reset sequence puts the chip in download mode."""
        self.console.close()
        return self.port

    def power_on(self):
        """Reset the chip so it boots from flash, with its console open.

        Returns the console mark from which the boot shows.
        """
        if not self.console.is_open:
            self.console.open(self.port)
        return self.reset()

    def reset(self):
        """Pulse EN, or call machine.reset() on a port without modem lines.

        Returns the console mark from which the boot shows.
        """
        if not self.modem_lines:
            with self.console.use() as device:
                # The Ctrl-C that stops the node prints a traceback: mark after it.
                device.enter_raw_repl()
                mark = self.console.mark()
                device.hard_reset()
            return mark
        # NOTE: written from esptool's reset code and the DevKitC schematic, and not yet run on
        # a bench. A USB hub or bridge quirk there may need a longer hold.
        mark = self.console.mark()
        with self.console.use() as device:
            device.serial.dtr = False
            HardReset(device.serial, uses_usb=self.native_usb).reset()
        if self.native_usb:
            self._reopen_after_reset()
        return mark

    def _reopen_after_reset(self):
        self.console.close()
        deadline = time.monotonic() + REENUMERATE_TIMEOUT_S
        while True:
            try:
                self.console.open(self.port)
                return
            except DeviceError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(REENUMERATE_POLL_S)

    def shutdown(self):
        self.console.close()
