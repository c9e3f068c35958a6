"""A MicroPython board over its REPL: exec, eval, files and resets, written once.

Every host command (deploy, provision, fleet, the HIL plugin) reaches a board through Device.
The port is anything pyserial opens: a USB serial device, a virtual board's pseudo-terminal,
`socket://host:port` or `rfc2217://host:port`.

The raw REPL protocol: Ctrl-A enters it and the board prints `raw REPL; CTRL-B to exit` and
`>`. Code is sent either plainly (then Ctrl-D, and the board replies `OK`) or in raw-paste
mode (Ctrl-E `A` Ctrl-A, and the board replies `R\\x01` and a window size, then sends Ctrl-A
each time the sender may add another window). The board then runs the code and sends its output, Ctrl-D,
the error output, Ctrl-D and `>`.
"""

import ast
import base64
import hashlib
import logging
import re
import threading
import time

import serial

from .errors import DeviceError, DeviceException
from .ports import ENV_PORT, open_error_hint
from .transfer import ACK, INFLATE_PROBE, READ_CHUNK, READER_CODE, RECEIVER_CODE, WRITE_FRAME, file_frames

log = logging.getLogger(__name__)

DEFAULT_BAUD = 115200

# How long (seconds) opening a port locked by another program is retried before "port busy".
BUSY_RETRY_S = 2.0

# How long (seconds) the board may take to show a prompt after Ctrl-C or Ctrl-A. Generous,
# because a busy firmware loop only takes Ctrl-C between two bytecodes of a slow call.
PROMPT_TIMEOUT_S = 5.0
# How long (seconds) to wait for the friendly prompt after Ctrl-C before trying Ctrl-B; a board
# at a prompt answers Ctrl-C within milliseconds.
RAW_PROMPT_GRACE_S = 1.0
# How long a soft reset may take, boot.py included.
SOFT_RESET_TIMEOUT_S = 10.0
# Default limit for one exec; long operations pass their own.
EXEC_TIMEOUT_S = 10.0
# Seconds the board may take to write one frame to flash and acknowledge it, on top of the
# frame's time on the wire. This is generous because a flash erase takes tens of milliseconds.
FRAME_WRITE_MARGIN_S = 5.0
RAW_PROMPT = b"raw REPL; CTRL-B to exit\r\n>"
SOFT_REBOOT = b"soft reboot\r\n"

_ERROR_LINE = re.compile(r"^(\w+(?:\.\w+)*): ?(.*)$")
_ERRNO = re.compile(r"^\[Errno (\d+)\]")


# CPython 3.11 keeps the AST constructor's recursion depth in state shared by all threads, so
# ast.literal_eval in several threads at once fails at random with "SystemError: AST constructor
# recursion depth mismatch" (CPython issue gh-106905, seen here on 3.11.7). Fleet workers parse
# board replies in parallel, so every parse goes through this lock.
_PARSE_LOCK = threading.Lock()


def literal(text):
    """Parse a Python literal from a board's reply; safe to call from several threads."""
    with _PARSE_LOCK:
        return ast.literal_eval(text)


class BoardMemoryError(DeviceException):
    """A file transfer ran out of memory on the board, though a soft reset had just freed its heap."""

    def __init__(self, path, error):
        super().__init__(error.exc_type, "%s (while transferring %s)" % (error.device_message, path), error.traceback_text)
        self.hint = (
            "the soft reset before the transfer leaves only what boot.py allocates, so boot.py keeps too"
            " much memory: move that work to main.py, then retry"
        )


class Device:
    """One board. Use as a context manager, or call close()."""

    def __init__(self, port, baud=DEFAULT_BAUD, exclusive=True):
        self.port = port
        deadline = time.monotonic() + BUSY_RETRY_S
        while True:
            try:
                self.serial = serial.serial_for_url(port, baudrate=baud, timeout=0.05, exclusive=exclusive)
                break
            except serial.SerialException as error:
                # A port that another tool (or this one's previous step) is still closing holds
                # its lock a moment longer, so a busy port is tried again briefly.
                if "lock" not in str(error) or time.monotonic() > deadline:
                    raise _open_error(port, error) from error
                time.sleep(0.1)
            except ValueError as error:
                raise DeviceError("invalid port (%s)" % port, str(error)) from error
        self.in_raw_repl = False
        self._can_inflate = None  # whether the board has `deflate`, once asked
        self._rx = bytearray()  # received but not yet consumed
        self.log = bytearray()  # everything the board printed since we opened it

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            if self.in_raw_repl:
                self.exit_raw_repl()
        except (DeviceError, serial.SerialException, OSError):
            pass
        self.serial.close()

    # -- bytes

    def _write(self, data):
        try:
            self.serial.write(data)
        except serial.SerialException as error:
            raise DeviceError("write to %s failed" % self.port, str(error)) from error

    def _fill(self):
        """Move whatever the board sent into the receive buffer; wait briefly if nothing did."""
        waiting = self.serial.in_waiting
        chunk = self.serial.read(waiting if waiting else 1)
        if chunk:
            self._rx += chunk
            self.log += chunk

    def _take(self, count):
        data = bytes(self._rx[:count])
        del self._rx[:count]
        return data

    def _read_until(self, ending, timeout, what):
        """Read until `ending`; return everything read, ending included."""
        deadline = time.monotonic() + timeout
        while True:
            at = self._rx.find(ending)
            if at >= 0:
                return self._take(at + len(ending))
            if time.monotonic() > deadline:
                raise DeviceError(
                    "timed out after %.0f s waiting for %s on %s" % (timeout, what, self.port),
                    "is MicroPython running on the board? %s" % printed_tail(self._rx),
                )
            self._fill()

    def _drain(self, quiet_s=0.05):
        """Discard input until the board has been quiet for quiet_s seconds."""
        self._rx.clear()
        while True:
            time.sleep(quiet_s)
            waiting = self.serial.in_waiting
            if not waiting:
                return
            self.log += self.serial.read(waiting)

    # -- REPL modes

    def interrupt(self):
        """Stop whatever runs (main.py included) and get to the friendly REPL prompt."""
        self._write(b"\r\x03\x03")
        try:
            self._read_until(b">>> ", RAW_PROMPT_GRACE_S, "the REPL prompt after Ctrl-C")
        except DeviceError:
            # Ctrl-C in the raw REPL prints no prompt (an earlier transfer may have been cut
            # off there): Ctrl-B leaves it for the friendly REPL, which prints one.
            self._write(b"\x02")
            self._read_until(b">>> ", PROMPT_TIMEOUT_S, "the REPL prompt after Ctrl-C")
        self._drain()
        self.in_raw_repl = False

    def enter_raw_repl(self, soft_reset=False):
        if not self.in_raw_repl:
            self.interrupt()
            self._write(b"\r\x01")
            self._read_until(RAW_PROMPT, PROMPT_TIMEOUT_S, "the raw REPL")
            self.in_raw_repl = True
        if soft_reset:
            self._write(b"\x04")
            self._read_until(SOFT_REBOOT, SOFT_RESET_TIMEOUT_S, "the soft reboot banner")
            self._read_until(RAW_PROMPT, SOFT_RESET_TIMEOUT_S, "the raw REPL after a soft reset")

    def exit_raw_repl(self):
        self._write(b"\r\x02")
        self.in_raw_repl = False

    def soft_reset(self, run_main=True):
        """Soft reset; with run_main the board also runs main.py (a reset from the friendly REPL)."""
        if run_main:
            if self.in_raw_repl:
                # Nothing runs in the raw REPL, so Ctrl-B reaches a prompt without a Ctrl-C.
                self._rx.clear()
                self.exit_raw_repl()
                self._read_until(b">>> ", PROMPT_TIMEOUT_S, "the REPL prompt after Ctrl-B")
            else:
                self.interrupt()
            self._write(b"\x04")
            self._read_until(SOFT_REBOOT, SOFT_RESET_TIMEOUT_S, "the soft reboot banner")
        else:
            self.enter_raw_repl(soft_reset=True)

    def hard_reset(self):
        """Reset the chip as the EN button does, through machine.reset()."""
        self.enter_raw_repl()
        self._send_code(b"import machine\nmachine.reset()")
        self.in_raw_repl = False

    # -- code

    def _send_code(self, code):
        """Send code in the raw REPL, in raw-paste mode when the board has it."""
        self._write(b"\x05A\x01")
        answer = self._read_until_any((b"R\x00", b"R\x01", b"raw REPL; CTRL-B to exit\r\n>"), "a raw-paste answer")
        if answer.endswith(b"R\x01"):
            window = int.from_bytes(self._read_exact(2, "the raw-paste window size"), "little")
            self._send_raw_paste(code, window)
            return
        # No raw-paste (an older board, or one that declined with R\x00): send the code plainly.
        for start in range(0, len(code), 256):
            self._write(code[start : start + 256])
            time.sleep(0.01)
        self._write(b"\x04")
        self._read_until(b"OK", EXEC_TIMEOUT_S, "OK after the code")

    def _read_exact(self, count, what):
        deadline = time.monotonic() + PROMPT_TIMEOUT_S
        while len(self._rx) < count:
            if time.monotonic() > deadline:
                raise DeviceError("timed out waiting for %s on %s" % (what, self.port), "reset the board and retry")
            self._fill()
        return self._take(count)

    def _read_until_any(self, endings, what):
        deadline = time.monotonic() + PROMPT_TIMEOUT_S
        while True:
            for ending in endings:
                at = self._rx.find(ending)
                if at >= 0:
                    return self._take(at + len(ending))
            if time.monotonic() > deadline:
                raise DeviceError("timed out waiting for %s on %s" % (what, self.port), "reset the board and retry")
            self._fill()

    def _send_raw_paste(self, code, window):
        remaining = window
        view = memoryview(code)
        while view:
            while remaining == 0 or self._rx or self.serial.in_waiting:
                if not self._rx:
                    self._fill()
                flow = self._take(1)
                if flow == b"\x01":
                    remaining += window
                elif flow == b"\x04":
                    self._write(b"\x04")
                    raise DeviceError("the board aborted the raw-paste transfer", "reset the board and retry")
                elif not flow and remaining:
                    break
            count = min(remaining, len(view))
            self._write(view[:count])
            view = view[count:]
            remaining -= count
        self._write(b"\x04")
        self._read_until(b"\x04", EXEC_TIMEOUT_S, "the end of the raw-paste transfer")

    def exec(self, code, timeout=EXEC_TIMEOUT_S):
        """Run code on the board; return its output. A device exception is raised as DeviceException."""
        if isinstance(code, str):
            code = code.encode()
        self.enter_raw_repl()
        self._send_code(code)
        return self._finish_exec(timeout)

    def _finish_exec(self, timeout):
        """Read what the running code prints up to the raw REPL prompt; raise its exception."""
        output = self._read_until(b"\x04", timeout, "the output of the code")[:-1]
        error = self._read_until(b"\x04", timeout, "the error output of the code")[:-1]
        self._read_until(b">", PROMPT_TIMEOUT_S, "the raw REPL prompt")
        if error:
            raise _device_exception(error.decode(errors="replace"))
        return output

    def eval(self, expression, timeout=EXEC_TIMEOUT_S):
        """Evaluate a Python literal-valued expression on the board and return its value."""
        output = self.exec("print(repr(%s))" % expression, timeout=timeout)
        text = output.decode().strip()
        try:
            return literal(text)
        except (ValueError, SyntaxError) as error:
            raise DeviceError("the board returned a value that is not a literal: %r" % text[:200], "eval() only literals") from error

    # -- files

    def listdir(self, path="/"):
        """Return [(name, is_dir, size)] of a folder on the board."""
        entries = self.eval("[(e[0], e[1] == 0x4000, e[3] if len(e) > 3 else 0) for e in __import__('os').ilistdir(%r)]" % path)
        return [tuple(entry) for entry in entries]

    def walk(self, path="/"):
        """Return {path: size} of every file below path."""
        files = {}
        for name, is_dir, size in self.listdir(path):
            child = path.rstrip("/") + "/" + name
            if is_dir:
                files.update(self.walk(child))
            else:
                files[child] = size
        return files

    def read_file(self, path):
        """Return a file's bytes, sent by the board as base64 lines of READ_CHUNK bytes each.

        Soft-resets the board into the raw REPL first (see free_heap), and reads in one exec.
        """
        self.free_heap()
        size = self.eval("__import__('os').stat(%r)[6]" % path)
        # Base64 sends 4 bytes for every 3, plus a line end per chunk, at 10 bits a byte.
        wire_bytes = size * 4 // 3 + (size // READ_CHUNK + 1) * 2
        timeout = EXEC_TIMEOUT_S + wire_bytes * 10 / (self.serial.baudrate or DEFAULT_BAUD)
        try:
            output = self.exec(READER_CODE % {"path": path, "chunk": READ_CHUNK}, timeout=timeout)
        except DeviceException as error:
            if error.exc_type == "MemoryError":
                raise BoardMemoryError(path, error) from error
            raise

        data = b"".join(base64.b64decode(line) for line in output.split())
        if len(data) != size:
            raise DeviceError(
                "read %d of the %d bytes of %s on %s" % (len(data), size, path, self.port),
                "is another program writing the file? Retry when it is done",
            )
        return data

    def free_heap(self):
        """Soft-reset into the raw REPL, so that the board's heap contains only what boot.py allocates.

        A node stopped with Ctrl-C keeps its modules, buffers and interrupt handlers in the
        heap. On the virtual board after `provision` that was 89 KB of 142 KB, with no free
        block over 4.6 KB (micropython.mem_info()), so a 4 KB transfer buffer failed now and
        then. A soft reset frees all of it. In the raw REPL, MicroPython's esp32 port (like
        the virtual board) then runs boot.py but not main.py, so the node stays stopped.
        mpremote 1.29 soft-resets the same way before its first command. Anything a caller
        defined in the REPL is lost.
        """
        self.enter_raw_repl(soft_reset=True)

    def write_file(self, path, data, timeout=None, compress=None):
        """Write a file atomically: to a temporary name first, then renamed over the old one."""
        self.write_files([(path, data)], timeout=timeout, compress=compress)

    def write_files(self, files, timeout=None, compress=None):
        """Write several files in one exec, each atomically, creating their folders.

        The board runs transfer.RECEIVER_CODE, which requests each frame with ACK, so the host
        never sends more than the board has room for. A file is written to PATH.part and
        renamed over PATH only when complete: a transfer cut off at any point leaves every
        file either old or new. With `compress` None (or True), a file is deflated when the
        board can inflate and the file shrinks by transfer.DEFLATE_MIN_SAVING; with False,
        never. `timeout` (seconds) bounds each wait for the board, by default the time of one
        frame at the port's baud rate plus FRAME_WRITE_MARGIN_S. The board is soft-reset into
        the raw REPL first (see free_heap).
        """
        self.free_heap()
        can_inflate = compress is not False and self.can_inflate()
        plan = [(path, *file_frames(bytes(data), can_inflate)) for path, data in files]
        arguments = [(path, [len(frame) for frame in frames], wbits) for path, frames, wbits in plan]
        call = "_bs_put(%r, %d)\n" % (arguments, WRITE_FRAME)
        frame_timeout = timeout or WRITE_FRAME * 10 / (self.serial.baudrate or DEFAULT_BAUD) + FRAME_WRITE_MARGIN_S

        self.enter_raw_repl()
        self._send_code(RECEIVER_CODE + call.encode())
        try:
            self._send_frames(plan, frame_timeout)
        except DeviceException as error:
            if error.exc_type == "MemoryError":
                raise BoardMemoryError(", ".join(path for path, _data in files), error) from error
            raise
        except DeviceError:
            # The board is somewhere unknown (rebooted, or still reading): resynchronise on the
            # next call.
            self.in_raw_repl = False
            raise

    def can_inflate(self):
        """Return whether the board has MicroPython's `deflate` module; asked once per Device."""
        if self._can_inflate is None:
            self._can_inflate = self.exec(INFLATE_PROBE).strip() == b"True"
        return self._can_inflate

    def _send_frames(self, plan, frame_timeout):
        for path, frames, _wbits in plan:
            for frame in frames:
                if not self._wait_for_ack(path, frame_timeout):
                    # The receiver stopped: its traceback follows.
                    return self._finish_exec(frame_timeout)
                self._write(frame)
        return self._finish_exec(frame_timeout)

    def _wait_for_ack(self, path, timeout):
        """Wait for the receiver's ACK; return False when something else arrives instead."""
        deadline = time.monotonic() + timeout
        while not self._rx:
            if time.monotonic() > deadline:
                raise DeviceError(
                    "timed out after %.0f s waiting for the board to accept %s on %s" % (timeout, path, self.port),
                    "reset the board (the file on it is unchanged) and retry",
                )
            self._fill()
        if self._rx[0] == ACK:
            del self._rx[:1]
            return True
        return False

    def sha256(self, path):
        """Return the hex SHA-256 of a file on the board, or None if it does not exist."""
        code = (
            "import hashlib, binascii\n"
            "try:\n"
            " f = open(%r, 'rb')\n"
            "except OSError:\n"
            " print(None)\n"
            "else:\n"
            " h = hashlib.sha256()\n"
            " while True:\n"
            "  c = f.read(1024)\n"
            "  if not c:\n"
            "   break\n"
            "  h.update(c)\n"
            " f.close()\n"
            " print(repr(binascii.hexlify(h.digest()).decode()))\n"
        ) % path
        return literal(self.exec(code).decode().strip())

    def remove(self, path):
        self.exec("import os\nos.remove(%r)" % path)

    def makedirs(self, path):
        self.exec(
            "import os\np = ''\nfor part in %r.strip('/').split('/'):\n"
            " p += '/' + part\n try:\n  os.mkdir(p)\n except OSError:\n  pass" % path
        )


def local_sha256(data):
    return hashlib.sha256(data).hexdigest()


def _device_exception(text):
    lines = [line for line in text.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else text
    match = _ERROR_LINE.match(last)
    if not match:
        return DeviceException("Exception", last, text)
    exc_type, message = match.groups()
    number = _ERRNO.match(message)
    if number is None and exc_type == "OSError" and message.isdigit():
        return DeviceException(exc_type, message, text, errno=int(message))
    return DeviceException(exc_type, message, text, errno=int(number.group(1)) if number else None)


def printed_tail(data, size=200):
    """Describe the last `size` bytes a board printed, for an error message."""
    text = bytes(data[-size:]).decode(errors="replace").strip()
    return "The board printed: %s" % text if text else "The board printed nothing."


def _open_error(port, error):
    text = str(error)
    if "Permission denied" in text or "Errno 13" in text:
        return DeviceError(
            "permission denied opening %s" % port,
            "add yourself to the group that owns it (`sudo usermod -aG dialout $USER` on Debian and Ubuntu,"
            " uucp on Arch), then log in again",
        )
    if "Errno 2" in text or "No such file" in text or "could not open port" in text and "No such" in text:
        return DeviceError(
            "port not found (%s)" % port,
            "is the board plugged in? List ports with `baysense ports`, or use the `port:` line that"
            " `baysense vboard` printed. A --port left out takes $%s, which may be stale" % ENV_PORT,
        )
    if "busy" in text.lower() or "Errno 16" in text or "lock" in text.lower():
        return DeviceError(
            "port busy (%s)" % port, "another program has it open (a serial monitor, mpremote, another baysense): close it"
        )
    return DeviceError("cannot open port %s" % port, open_error_hint(port, text) or text)
