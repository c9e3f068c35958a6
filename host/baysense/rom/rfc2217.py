"""RFC 2217 (serial over telnet) for the virtual chip, with a DevKit's auto-reset circuit.

A DevKit wires the USB bridge's DTR and RTS through two transistors to EN and IO0. With RTS
asserted and DTR not, EN is pulled low, which resets the chip. With DTR asserted and RTS not,
IO0 is pulled low. The chip samples IO0 when EN rises: low boots the ROM loader ("waiting for
download"), high boots from flash.

Over RFC 2217 each line change is a separate telnet message, and pyserial's client waits up
to 50 ms for each acknowledgement, so line states that last microseconds on a USB bridge last
tens of milliseconds here and the circuit's timing cannot be replayed line by line. Like
Espressif's esp_rfc2217_server (esptool 5.6), the server therefore reads esptool's sequences as
what they are meant to do: DTR asserted starts a reset into download mode, RTS released while
DTR is not asserted is a hard reset that boots from flash.

NOTE: esptool over RFC 2217 is slow (about 0.2 s a command with pyserial 3.5's client),
because the client re-sends every port setting and polls for each answer whenever esptool
changes its read timeout, which it does around each command.
"""

import logging

import serial
from serial.rfc2217 import PortManager

from .boot import probe_image, rom_boot_log

log = logging.getLogger(__name__)


class VirtualUart:
    """The serial port object PortManager drives: line settings and the modem control lines."""

    def __init__(self, on_download_reset, on_hard_reset, on_purge):
        self.baudrate = 115200
        self.bytesize = serial.EIGHTBITS
        self.parity = serial.PARITY_NONE
        self.stopbits = serial.STOPBITS_ONE
        self.xonxoff = False
        self.rtscts = False
        self.break_condition = False
        self.cts = self.dsr = self.ri = self.cd = False
        self._dtr = False
        self._rts = False
        self._download_sequence = False
        self._on_download_reset = on_download_reset
        self._on_hard_reset = on_hard_reset
        self._on_purge = on_purge

    @property
    def dtr(self):
        return self._dtr

    @dtr.setter
    def dtr(self, value):
        self._dtr = bool(value)
        if not self._dtr:
            self._download_sequence = False
        elif not self._download_sequence:
            self._download_sequence = True
            self._on_download_reset()

    @property
    def rts(self):
        return self._rts

    @rts.setter
    def rts(self, value):
        was_asserted = self._rts
        self._rts = bool(value)
        if was_asserted and not self._rts and not self._download_sequence:
            self._on_hard_reset()

    def reset_input_buffer(self):
        self._on_purge()

    def reset_output_buffer(self):
        pass  # output is written to the socket at once; nothing waits in a buffer


class Rfc2217Link:
    """A telnet connection carrying RFC 2217: data in and out, control options to the UART."""

    def __init__(self, connection, board, flash_path):
        self.connection = connection
        self.board = board
        self.flash_path = flash_path
        self.session = None
        self.uart = VirtualUart(self._download_reset, self._hard_reset, self._purge)
        self.manager = PortManager(self.uart, self, logger=None)

    def write(self, data):
        """Send raw telnet bytes (PortManager's connection interface)."""
        self.connection.sendall(data)

    def receive(self, timeout):
        self.connection.settimeout(max(timeout, 0.001))
        try:
            raw = self.connection.recv(65536)
        except TimeoutError:
            return b""
        except OSError:
            return None
        if not raw:
            return None
        return b"".join(self.manager.filter(raw))

    def send(self, data):
        self.write(b"".join(self.manager.escape(data)))

    def close(self):
        pass

    def _purge(self):
        if self.session is not None:
            self.session.discard_input()

    def _download_reset(self):
        log.info("DTR asserted: reset with IO0 low, ROM loader waiting for download")
        self._reset_board()
        self._print(rom_boot_log(self.board.chip, "poweron", download=True))

    def _hard_reset(self):
        chip = self.board.chip
        self._reset_board()
        if probe_image(self.flash_path, chip):
            log.info("RTS released: reset with IO0 high, valid image, starting the application")
            self.board.start_app("reset into a valid image")
            return
        log.info("RTS released: reset with IO0 high, no valid image at 0x%x", chip.image_offset)
        self.board.halt_on_invalid_image()
        self._print(rom_boot_log(chip, "poweron", download=False, flash_path=self.flash_path))

    def _reset_board(self):
        self.board.reset()
        if self.session is not None:
            self.session.set_baud(self.board.baud)  # a reset chip talks at its ROM rate again

    def _print(self, text):
        if self.session is not None:
            self.session.send_raw(text.encode())
