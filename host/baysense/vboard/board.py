"""The virtual board: the MicroPython unix port behind a pseudo-terminal, as an ESP32 on USB.

A client (mpremote, ampy, esptool's serial code, our own Device) opens the pseudo-terminal
path and gets what an ESP32 running MicroPython gives: the friendly and raw REPLs, raw-paste,
Ctrl-C that interrupts running code, Ctrl-D soft resets with the `soft reboot` banner, and ROM
boot messages after a hard reset, a watchdog reset or a power cut.

The unix port has no soft reset (Ctrl-D ends the process), so the supervisor here restarts
the interpreter and prints what the board would. Everything the board's firmware touches
lives in the board's folder: `fs/` is the board's filesystem and `sim/` the simulated world.
"""

import errno
import json
import logging
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import threading
import time
import tty
from pathlib import Path

from ..paths import HAL_DIR, MPY_CROSS, micropython_command
from . import banners
from .stimulus import DEFAULT_WORLD, Stimulus

log = logging.getLogger(__name__)

# machine.reset_cause() values of the esp32 port, by the reset that started the interpreter.
# "hard" is machine.reset() (a hard reset in MicroPython's documentation), which the esp32 port
# reports as 5, SOFT_RESET, because the chip restarts through esp_restart().
RESET_CAUSES = {"poweron": 1, "wdt": 3, "deepsleep": 4, "hard": 5}

# An ESP32 gives MicroPython about 110 KB of heap. The simulated HAL takes about 29 KB here
# (measured after importing all of it), while on a real chip that code is C outside the heap.
# So the board gets 142 KB, and the firmware finds about what it would on an ESP32.
HEAP_SIZE = "142K"

# Output is held this long (seconds) waiting for the rest of a line, so that the unix port's
# banner, printed in pieces, is replaced whole.
OUTPUT_HOLD_S = 0.005

# Maximum output (bytes) kept for a client that reads slowly or not at all. Past this the oldest
# is dropped, so a board left running for hours does not hand a new client all its history.
OUTPUT_QUEUE_LIMIT = 256 * 1024
# Bytes written to the port at once; with --baud each write is paced, so small writes keep
# the pacing smooth.
PUMP_CHUNK = 1024

# Input that follows a Ctrl-C waits for the prompt the Ctrl-C brings, at most this long
# (seconds), in case the running code catches KeyboardInterrupt and never returns to a prompt.
HOLD_LIMIT_S = 3.0

# How often (seconds) the watchdog file is checked.
WDT_CHECK_S = 0.2

RAW_REPL_MARKER = b"raw REPL; CTRL-B to exit\r\n"
FRIENDLY_MARKER = b'Type "help()" for more information.'
# Prompts of the REPLs waiting for input: friendly, continuation, paste mode, and the raw REPL's
# prompt after entering it or after a block ran.
PROMPTS = (b">>> ", b"... ", b"=== ", b"\r\n>", b"\x04>")

CTRL_C = 0x03

_LONE_LF = re.compile(rb"(?<!\r)\n")


class VirtualBoard:
    """One virtual board. start() returns once its port exists; stop() ends it."""

    def __init__(self, state_dir, board, baud=None):
        self.state_dir = Path(state_dir).resolve()
        self._hal_dir = HAL_DIR
        self.fs_dir = self.state_dir / "fs"
        self.sim_dir = self.state_dir / "sim"
        self.board = board
        self.baud = baud
        self.stimulus = Stimulus(self.sim_dir)
        self.port = None
        self.mode = "friendly"
        self.resets = []  # (kind, time) of every reset, for tests and logs

        self._client_master = None
        self._client_slave = None
        self._child = None
        self._child_master = None
        self._reset_cause = RESET_CAUSES["poweron"]
        self._power_cut = False
        self._stopping = False
        self._held_input = bytearray()
        self._held_since = 0.0
        self._entering_raw = False
        self._phase = "booting"  # booting, idle (at a prompt) or running (code the client sent)
        self._interrupt_pending = False
        self._pending_output = bytearray()
        self._output_queue = bytearray()
        self._last_output_byte = b""
        self._tail = b""
        self._thread = None
        self._wake_read, self._wake_write = os.pipe()
        self._serial_log = None
        self._lock = threading.Lock()

    # -- lifecycle

    def start(self):
        # The board's files include its key: keep the whole folder private to this user.
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.state_dir.chmod(0o700)
        self.fs_dir.mkdir(parents=True, exist_ok=True)
        self.sim_dir.mkdir(parents=True, exist_ok=True)
        self._write_wiring()
        if not self.stimulus.path.exists():
            self.stimulus.set(**DEFAULT_WORLD)
        for stale in ("reset_request", "wdt_timeout_ms", "wdt_fed"):
            (self.sim_dir / stale).unlink(missing_ok=True)
        self._serial_log = open(self.state_dir / "serial.log", "ab", buffering=0)
        self._prepare_hal()

        self._client_master, self._client_slave = pty.openpty()
        tty.setraw(self._client_slave)
        os.set_blocking(self._client_master, False)
        self.port = os.ttyname(self._client_slave)

        self._emit(banners.rom_boot("poweron"))
        self._spawn(run_main=True)
        self._thread = threading.Thread(target=self._relay, name="vboard-%s" % self.state_dir.name, daemon=True)
        self._thread.start()
        log.info("virtual board %s on %s", self.state_dir, self.port)
        return self

    def stop(self):
        if self._stopping:
            return
        self._stopping = True
        os.write(self._wake_write, b"x")
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._kill_child()
        for fd in (self._client_master, self._client_slave, self._wake_read, self._wake_write):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        if self._serial_log is not None:
            self._serial_log.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def power_cycle(self):
        """Cut the power: the interpreter dies wherever it is, then the board boots again."""
        with self._lock:
            self._power_cut = True
            if self._child is not None:
                self._child.send_signal(signal.SIGKILL)

    @property
    def pid(self):
        child = self._child
        return child.pid if child is not None else None

    # -- the interpreter

    def _write_wiring(self):
        sensor = self.board.get("sensor", {})
        wiring = {"sensor": sensor, "mac": self.board.get("mac", "24:0a:c4:00:00:01")}
        (self.sim_dir / "wiring.json").write_text(json.dumps(wiring))

    def _prepare_hal(self):
        """Compile the simulated HAL to .mpy once per start, as a real chip has it in ROM."""
        target = self.state_dir / "hal"
        target.mkdir(exist_ok=True)
        for source in HAL_DIR.glob("*.py"):
            if source.name == "_boot.py":
                shutil.copyfile(source, target / source.name)
                continue
            compiled = target / (source.stem + ".mpy")
            result = subprocess.run(
                [MPY_CROSS, "-o", str(compiled), "-s", source.name, str(source)], capture_output=True, text=True
            )
            if result.returncode != 0:
                raise RuntimeError("mpy-cross failed on the HAL module %s: %s" % (source.name, result.stderr))
        self._hal_dir = target

    def _spawn(self, run_main):
        (self.sim_dir / "running_scripts").unlink(missing_ok=True)
        master, slave = pty.openpty()
        tty.setraw(slave)
        env = dict(os.environ)
        env.update(
            MICROPYPATH=str(self._hal_dir),
            BAYSENSE_VBOARD_FS=str(self.fs_dir),
            BAYSENSE_VBOARD_SIM=str(self.sim_dir),
            BAYSENSE_RESET_CAUSE=str(self._reset_cause),
            BAYSENSE_RUN_MAIN="1" if run_main else "0",
        )
        argv = micropython_command() + ["-X", "heapsize=" + HEAP_SIZE, "-i", str(self._hal_dir / "_boot.py")]
        self._child = subprocess.Popen(
            argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=self.fs_dir,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        self._child_master = master
        self.mode = "friendly"
        self._phase = "booting"  # until the first prompt: boot.py and main.py run
        self._interrupt_pending = False
        log.debug("interpreter started, pid %d, run_main=%s", self._child.pid, run_main)

    def _kill_child(self):
        child = self._child
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGKILL)
            child.wait()
        if self._child_master is not None:
            os.close(self._child_master)
            self._child_master = None
        self._child = None

    def _restart(self):
        """Handle the interpreter's exit the way the chip would."""
        child = self._child
        returncode = child.wait()
        os.close(self._child_master)
        self._child_master = None
        self._child = None

        marker = self.sim_dir / "reset_request"
        requested = marker.read_text().strip() if marker.exists() else None
        marker.unlink(missing_ok=True)
        with self._lock:
            power_cut = self._power_cut
            self._power_cut = False

        if power_cut:
            kind = "poweron"
        elif requested in RESET_CAUSES:
            kind = requested
        elif returncode in (0, -signal.SIGINT):
            # 0: Ctrl-D or SystemExit. SIGINT: a Ctrl-C that reached a prompt, where the port
            # has no handler; the REPL state is lost either way, as after a soft reset.
            kind = "soft"
        else:
            log.warning("interpreter ended with status %s; rebooting as after a panic", returncode)
            kind = "hard"
        self.resets.append((kind, time.time()))
        log.info("board reset: %s", kind)

        for stale in ("wdt_timeout_ms", "wdt_fed"):
            (self.sim_dir / stale).unlink(missing_ok=True)
        self._pending_output.clear()
        self._tail = b""
        if kind == "soft":
            self._emit(banners.SOFT_REBOOT)
            in_raw = self.mode == "raw"
            self._spawn(run_main=not in_raw)
            if in_raw:
                # A soft reset in the raw REPL comes back in the raw REPL, skipping main.py.
                # NOTE: boot.py's output is not shown in this case, unlike on an ESP32.
                self._entering_raw = True
                os.write(self._child_master, b"\r\x01")
            return
        self._reset_cause = RESET_CAUSES[kind]
        self._emit(banners.rom_boot(kind))
        self._spawn(run_main=True)

    def _check_watchdog(self):
        try:
            timeout_ms = int((self.sim_dir / "wdt_timeout_ms").read_text())
            fed = (self.sim_dir / "wdt_fed").stat().st_mtime
        except (OSError, ValueError):
            return
        if time.time() - fed > timeout_ms / 1000:
            uptime_ms = int(time.monotonic() * 1000) % 100000
            self._emit(banners.TASK_WDT % (uptime_ms, uptime_ms))
            (self.sim_dir / "reset_request").write_text("wdt")
            if self._child is not None:
                self._child.send_signal(signal.SIGKILL)

    # -- the relay between the client's port and the interpreter

    def _relay(self):
        next_wdt_check = time.monotonic()
        while not self._stopping:
            fds = [self._client_master, self._wake_read]
            if self._child_master is not None:
                fds.append(self._child_master)
            busy = self._pending_output or self._interrupt_pending or self._held_input
            timeout = OUTPUT_HOLD_S if busy else WDT_CHECK_S
            writable = [self._client_master] if self._output_queue else []
            readable, ready, _ = select.select(fds, writable, [], timeout)
            if ready:
                self._pump_output()
            if self._stopping:
                break

            got_output = False
            if self._child_master is not None and self._child_master in readable:
                try:
                    data = os.read(self._child_master, 4096)
                except OSError as error:
                    if error.errno != errno.EIO:
                        raise
                    data = b""
                if data:
                    got_output = True
                    self._from_child(data)
                else:
                    self._flush_output()
                    self._restart()
            if self._client_master in readable:
                self._from_client()
            if self._pending_output and not got_output:
                self._flush_output()
            self._deliver_interrupt()
            self._release_held_input()

            now = time.monotonic()
            if now >= next_wdt_check:
                next_wdt_check = now + WDT_CHECK_S
                self._check_watchdog()

    def _from_client(self):
        try:
            data = os.read(self._client_master, 4096)
        except BlockingIOError:
            return
        except OSError as error:
            if error.errno == errno.EIO:
                return  # no client has the port open
            raise
        self._pace(len(data))
        if self._entering_raw or self._child is None:
            self._held_input += data
            return
        self._to_child(data)

    def _to_child(self, data):
        # An ESP32 turns Ctrl-C into KeyboardInterrupt while code runs. The unix port does so
        # only on SIGINT, so a Ctrl-C away from a prompt becomes one (see _deliver_interrupt).
        if self._held_input or (self._interrupt_pending and self._phase != "idle"):
            self._held_input += data
            return
        if CTRL_C in data and self._phase != "idle":
            # What follows the Ctrl-C is meant for the prompt it brings, so it waits for it.
            at = data.rindex(b"\x03")
            self._held_input += data[at + 1 :]
            self._held_since = time.monotonic()
            data = data[:at].replace(b"\x03", b"")
            self._interrupt_pending = True
            self._deliver_interrupt()
        if data and self._child_master is not None:
            if self._phase == "idle" and _starts_code(data, self.mode):
                self._phase = "running"
            os.write(self._child_master, data)

    def _release_held_input(self):
        """Pass on input that waited for a prompt, once one came (or after HOLD_LIMIT_S)."""
        if not self._held_input or self._interrupt_pending or self._entering_raw or self._child is None:
            return
        if self._phase != "idle" and time.monotonic() - self._held_since < HOLD_LIMIT_S:
            return
        held = bytes(self._held_input)
        self._held_input.clear()
        self._to_child(held)

    def _deliver_interrupt(self):
        """Turn a pending Ctrl-C into SIGINT once the interpreter can take one.

        The port handles SIGINT only while it runs code; at a prompt, and before the
        interpreter has started, SIGINT would end the process. So while booting, SIGINT waits
        until _boot.py marks that it runs boot.py and main.py, and a Ctrl-C that meets a
        prompt is passed on as the byte, which the REPL takes as "cancel the line".
        """
        if not self._interrupt_pending or self._child is None:
            return
        if self._phase == "idle":
            self._interrupt_pending = False
            os.write(self._child_master, b"\x03")
            return
        if self._phase == "booting" and not (self.sim_dir / "running_scripts").exists():
            return
        self._interrupt_pending = False
        try:
            self._child.send_signal(signal.SIGINT)
        except ProcessLookupError:
            pass

    def _from_child(self, data):
        if self._entering_raw:
            # Swallow the restarted interpreter's banner until it reaches the raw REPL.
            self._tail = (self._tail + data)[-256:]
            at = self._tail.find(RAW_REPL_MARKER)
            if at < 0:
                return
            self._entering_raw = False
            self.mode = "raw"
            rest = self._tail[at:]
            self._tail = rest  # the prompt's ">" may come in the next read
            self._phase = "idle" if rest.endswith(PROMPTS) else "running"
            self._pending_output += rest
            if self._held_input:
                held = bytes(self._held_input)
                self._held_input.clear()
                self._to_child(held)
            return

        window = self._tail + data
        if window.endswith(PROMPTS):
            self._phase = "idle"
        if RAW_REPL_MARKER.rstrip() in window:
            self.mode = "raw"
        elif FRIENDLY_MARKER in window:
            self.mode = "friendly"
        self._tail = window[-64:]
        self._pending_output += data

    def _flush_output(self):
        if not self._pending_output:
            return
        data = bytes(self._pending_output)
        self._pending_output.clear()
        data = banners.UNIX_BANNER.sub(banners.MICROPYTHON_BANNER, data)
        self._emit(_crlf(data, self._last_output_byte))

    def _emit(self, data):
        if not data:
            return
        self._last_output_byte = data[-1:]
        if self._serial_log is not None:
            self._serial_log.write(data)
        self._output_queue += data
        if len(self._output_queue) > OUTPUT_QUEUE_LIMIT:
            # No client reads the port: keep the newest output, as a host's serial buffer would.
            del self._output_queue[: len(self._output_queue) - OUTPUT_QUEUE_LIMIT]
        self._pump_output()

    def _pump_output(self):
        """Write queued output to the port as far as the client's side takes it now."""
        while self._output_queue:
            try:
                written = os.write(self._client_master, self._output_queue[:PUMP_CHUNK])
            except BlockingIOError:
                return  # the client reads slowly: the relay loop waits until it can write
            del self._output_queue[:written]
            self._pace(written)

    def _pace(self, count):
        if self.baud:
            time.sleep(count * 10 / self.baud)


def _starts_code(data, mode):
    """Tell whether input at a prompt may start running code: Enter in the friendly REPL
    (a complete line runs), Ctrl-D in the raw REPL (the block runs)."""
    if mode == "raw":
        return b"\x04" in data
    return b"\r" in data or b"\n" in data


def _crlf(data, previous):
    """Turn each lone \\n into \\r\\n, as the ESP32's UART driver does for print() output."""
    converted = _LONE_LF.sub(b"\r\n", data)
    if previous == b"\r" and data[:1] == b"\n":
        converted = converted[1:]  # that \n completed a \r\n split across two reads
    return converted
