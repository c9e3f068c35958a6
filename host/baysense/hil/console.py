"""A board's serial console: one Device, and every byte the board printed, kept in order.

A board prints whether or not the host is running code on it: the node's `bay:` lines come
while a test waits on the gateway. A monitor thread reads the port whenever no Device
operation has it open for itself, so the output stays whole. Unread, it would be lost: a USB
serial bridge drops bytes when its buffer is full. Everything is appended to one session-long
log file as it arrives, so the log survives a test that hangs or a run that is killed.
"""

import logging
import re
import threading

import serial

from ..device import Device
from ..errors import DeviceError

log = logging.getLogger(__name__)

# How often (seconds) the monitor reads the port. A pseudo-terminal buffers about 4 KB and a
# node prints a few lines a second, so nothing overflows in between.
MONITOR_INTERVAL_S = 0.05
# Lines of output shown in a failure message.
TAIL_LINES = 20


class Console:
    """The serial port of one board and its output since the session started."""

    def __init__(self, name, log_path):
        self.name = name
        self.log_path = log_path
        self.port = None
        self.device = None
        self.output = bytearray()
        self._device_log_seen = 0
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._read_errors = 0
        self._log_file = open(log_path, "ab", buffering=0)
        self._monitor = threading.Thread(target=self._run_monitor, name="hil-console-%s" % name, daemon=True)
        self._monitor.start()

    # -- the port

    def open(self, port):
        """Open `port` (closing the one open before); the output buffer carries on."""
        with self._lock:
            self._close_device()
            self.device = Device(port)
            self.port = port
            self._device_log_seen = 0
        log.debug("console of %s opened on %s", self.name, port)

    def close(self):
        with self._lock:
            self._close_device()

    def shutdown(self):
        """Stop the monitor and close the port and the log file."""
        self._stopping.set()
        self._monitor.join(timeout=2)
        self.close()
        self._log_file.close()

    @property
    def is_open(self):
        return self.device is not None

    def use(self):
        """Return a context manager giving exclusive use of the Device."""
        return _DeviceSession(self)

    def _close_device(self):
        device = self.device
        if device is None:
            return
        self._collect()
        try:
            device.close()
        except (serial.SerialException, OSError) as error:
            log.warning("closing %s of %s failed: %s", self.port, self.name, error)
        self.device = None
        self.port = None

    # -- output

    def mark(self):
        """Return the current end of the output, for reading only what comes after it."""
        with self._lock:
            self._collect()
            return len(self.output)

    def text(self, since=0):
        with self._lock:
            self._collect()
            data = bytes(self.output[since:])
        return data.decode(errors="replace").replace("\r\n", "\n")

    def tail(self, since=0, lines=TAIL_LINES):
        kept = self.text(since).rstrip("\n").split("\n")[-lines:]
        return "\n".join(kept)

    def search(self, pattern, since=0):
        """Return the first match of the regex `pattern` in the output after `since`, or None."""
        return re.search(pattern, self.text(since), re.MULTILINE)

    def _collect(self):
        # The Device keeps what it read during an operation in its own log. The new part is
        # moved here at once, so output read by the Device and by the monitor stays in order.
        device = self.device
        if device is None:
            return
        fresh = bytes(device.log[self._device_log_seen :])
        self._device_log_seen = len(device.log)
        self._append(fresh)

    def _append(self, data):
        if not data:
            return
        self.output += data
        self._log_file.write(data)

    def _run_monitor(self):
        while not self._stopping.wait(MONITOR_INTERVAL_S):
            # Skip a round while a Device operation has the port, because that operation reads the output.
            if not self._lock.acquire(blocking=False):
                continue
            try:
                self._read_waiting()
            finally:
                self._lock.release()

    def _read_waiting(self):
        device = self.device
        if device is None:
            return
        self._collect()
        try:
            waiting = device.serial.in_waiting
            data = device.serial.read(waiting) if waiting else b""
        except (serial.SerialException, OSError) as error:
            # A board resetting over native USB leaves the bus for a moment; log the first few.
            self._read_errors += 1
            if self._read_errors <= 3:
                log.warning("reading %s of %s failed: %s", self.port, self.name, error)
            return
        self._append(data)


class _DeviceSession:
    def __init__(self, console):
        self.console = console

    def __enter__(self):
        self.console._lock.acquire()
        if self.console.device is None:
            self.console._lock.release()
            raise DeviceError("the console of %s is closed" % self.console.name, "bring the board to the repl or firmware state first")
        return self.console.device

    def __exit__(self, *exc):
        try:
            self.console._collect()
        finally:
            self.console._lock.release()
