"""Serve the virtual chip's bootloader to esptool over TCP (`socket://HOST:PORT`).

A TCP connection carries no DTR or RTS, so nothing can reset the chip: each new connection is
taken as a reset into download mode, as a person holding BOOT while pressing EN would do before
each esptool run. `rfc2217.serve_rfc2217()` serves the same chip with modem lines.
"""

import logging
import os
import socket
import threading
import time

from . import slip
from .chips import chip_by_name, virtual_mac
from .flashfile import FlashFile
from .loader import Bootloader
from .rfc2217 import Rfc2217Link

log = logging.getLogger(__name__)

RECEIVE_BYTES = 65536
POLL_INTERVAL_S = 0.2  # how often blocking waits look at the stop flag
BITS_PER_BYTE = 10  # 8N1 framing: start bit, 8 data bits, stop bit


class Pacer:
    """Delays a byte stream to what a UART at `baud` could carry (None: no delay)."""

    def __init__(self, baud):
        self.baud = baud
        self._free_at = 0.0

    def wait(self, byte_count):
        if not self.baud:
            return
        now = time.monotonic()
        self._free_at = max(now, self._free_at) + byte_count * BITS_PER_BYTE / self.baud
        delay = self._free_at - now
        if delay > 0:
            time.sleep(delay)


class Session:
    """One host connection: SLIP frames in and out, paced to the chip's baud rate."""

    def __init__(self, link, baud, stop_event):
        self.link = link
        self.stop_event = stop_event
        self.closed = False
        self._decoder = slip.Decoder()
        self._frames = []
        self._outgoing = Pacer(baud)
        self._incoming = Pacer(baud)

    def set_baud(self, baud):
        self._outgoing.baud = baud
        self._incoming.baud = baud

    def send(self, payload):
        self.send_raw(slip.encode(payload))

    def send_raw(self, data):
        """Send bytes unframed, as the ROM's boot messages go out."""
        self._outgoing.wait(len(data))
        self.link.send(data)

    def discard_input(self):
        self._frames.clear()
        self._decoder = slip.Decoder()

    def read_frame(self, timeout=None):
        """Return the next frame, or None when the link closes, the server stops or `timeout` passes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._frames:
            if self.closed or self.stop_event.is_set():
                return None
            wait = POLL_INTERVAL_S
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    return None
            data = self.link.receive(wait)
            if data is None:
                self.closed = True
                return None
            if data:
                self._incoming.wait(len(data))
                self._frames.extend(self._decoder.feed(data))
            self._drop_invalid()
        return self._frames.pop(0)

    def _drop_invalid(self):
        for frame in [f for f in self._frames if isinstance(f, slip.SlipError)]:
            # A ROM drops a frame it cannot decode and sends no response, so esptool times out.
            log.warning("dropped a frame: %s", frame)
            self._frames.remove(frame)


class SocketLink:
    """A connected TCP socket with receive(timeout) -> bytes, b"" on timeout, None when closed."""

    def __init__(self, connection):
        self.connection = connection

    def receive(self, timeout):
        self.connection.settimeout(max(timeout, 0.001))
        try:
            data = self.connection.recv(RECEIVE_BYTES)
        except socket.timeout:
            return b""
        except OSError:
            return None
        return data or None

    def send(self, data):
        self.connection.sendall(data)

    def close(self):
        pass


def run_session(board, link, stop_event):
    """Serve one connection until it closes or `stop_event` is set."""
    session = Session(link, board.baud, stop_event)
    link.session = session
    while True:
        frame = session.read_frame()
        if frame is None:
            return
        try:
            board.handle(frame, session)
        except OSError as error:
            log.info("connection lost while answering: %s", error)
            return


def open_board(flash_path, chip, flash_size=None, baud=None, mac=None, on_app_start=None):
    """Return a Bootloader for `chip` ("esp32", "esp32s3", "esp32c3") on the flash file."""
    chip_record = chip_by_name(chip) if isinstance(chip, str) else chip
    flash = FlashFile(flash_path, flash_size)
    return Bootloader(
        chip_record,
        flash,
        mac or virtual_mac(os.path.abspath(flash.path)),
        baud=baud,
        on_app_start=on_app_start,
    )


def serve(
    flash_path,
    chip,
    host="127.0.0.1",
    port=0,
    baud=None,
    on_ready=None,
    flash_size=None,
    stop_event=None,
    mac=None,
    on_app_start=None,
    rfc2217=False,
):
    """Serve the bootloader on `host`:`port` until `stop_event` is set (forever if None).

    `on_ready(url)` is called with "socket://HOST:PORT" once the port listens. `baud` paces
    both directions to that UART rate until esptool changes it; None serves at full speed.
    `flash_size` creates a missing flash file of that many bytes (erased to 0xFF).
    `on_app_start(reason)` is called when the chip leaves the loader for its application, on
    the connection's thread, so it must return quickly (start the REPL elsewhere).
    With `rfc2217` the URL is "rfc2217://HOST:PORT" and DTR/RTS drive EN and IO0 as on a
    DevKit; a new connection then resets nothing.
    """
    stop_event = stop_event or threading.Event()
    board = open_board(flash_path, chip, flash_size, baud, mac, on_app_start)
    listener = socket.create_server((host, port))
    listener.settimeout(POLL_INTERVAL_S)
    bound_host, bound_port = listener.getsockname()[:2]
    url = "%s://%s:%d" % ("rfc2217" if rfc2217 else "socket", bound_host, bound_port)
    log.info("bootloader of a virtual %s listening on %s", board.chip.display_name, url)
    if on_ready is not None:
        on_ready(url)

    try:
        while not stop_event.is_set():
            try:
                connection, peer = listener.accept()
            except socket.timeout:
                continue
            with connection:
                connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if rfc2217:
                    log.info("host connected from %s:%d over RFC 2217", *peer[:2])
                    link = Rfc2217Link(connection, board, flash_path)
                else:
                    log.info("host connected from %s:%d; chip reset into download mode", *peer[:2])
                    board.reset()
                    link = SocketLink(connection)
                try:
                    run_session(board, link, stop_event)
                finally:
                    link.close()
            log.info("host disconnected")
    finally:
        listener.close()
        board.flash.close()


class BackgroundServer:
    """serve() on a thread, for tests and tools: `with BackgroundServer(...) as rom: rom.url`."""

    def __init__(self, flash_path, chip, **options):
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error = None
        self.url = None

        def ready(url):
            self.url = url
            self._ready.set()

        def run():
            try:
                serve(flash_path, chip, on_ready=ready, stop_event=self._stop, **options)
            except BaseException as error:  # reported to the starting thread by start()
                self._error = error
                self._ready.set()

        self._thread = threading.Thread(target=run, name="rom-server", daemon=True)

    def start(self, timeout=10.0):
        self._thread.start()
        self._ready.wait(timeout)
        if self._error is not None:
            raise self._error
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
