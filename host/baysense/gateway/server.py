"""The asyncio UDP gateway: receives frames, stores reports, then acknowledges them.

Reports accepted while a commit runs wait for the next one, so one fsync covers a batch; an ack
is sent only after the commit that stored its report returned.
"""

import asyncio
import logging
import socket
import sqlite3
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from .. import protocol
from ..errors import BaysenseError, ConfigError
from .ingest import ACCEPTED, ACK_LATER, ACK_NOW, Ingest
from .keys import KeyRing
from .settings import Settings
from .store import Store

log = logging.getLogger(__name__)

# One byte more than the largest frame, so an oversized datagram shows as oversized instead of
# arriving cut to a size that might parse.
RECEIVE_SIZE = protocol.MAX_FRAME + 1
# Datagrams read per wake-up before other work (commits finishing, timers) gets a turn.
MAX_READS_PER_WAKEUP = 512
# Receive-to-ack times kept for the bench's percentiles.
LATENCY_SAMPLES = 200_000
# Seconds GatewayThread waits for the gateway to start or stop before giving up.
THREAD_START_TIMEOUT_S = 10
THREAD_STOP_TIMEOUT_S = 30

ACK_BODY = protocol.ack_body(protocol.ACK_STORED)


def format_address(host, port):
    """Return HOST:PORT, with brackets around an IPv6 host."""
    if ":" in host:
        return "[%s]:%d" % (host, port)
    return "%s:%d" % (host, port)


class Gateway:
    """The UDP gateway over one SQLite database and one device registry."""

    def __init__(self, db_path, registry_path=None, settings=None):
        self.db_path = db_path
        self.registry_path = registry_path
        self.settings = settings or Settings()
        self.address = None
        self.latencies = deque(maxlen=LATENCY_SAMPLES)  # seconds from receipt to ack sent
        self.ingest = None
        self._sock = None
        self._store = None
        self._keyring = None
        self._writer = None
        self._pending = []
        self._flush = None  # the running commit's future
        self._tasks = []
        self._loop = None

    async def start(self, host="127.0.0.1", port=0):
        """Open the database and the registry and start listening; return (host, port)."""
        self._loop = asyncio.get_running_loop()
        self._store = Store(self.db_path)
        self._keyring = KeyRing(self.registry_path)
        self.ingest = Ingest(self._keyring, self._store.counters(), self.settings)
        self._sock = _bind(host, port, self.settings.receive_buffer)
        self.address = self._sock.getsockname()[:2]
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="baysense-gateway-store")
        self._loop.add_reader(self._sock.fileno(), self._on_readable)
        self._tasks = [
            asyncio.create_task(self._poll_registry()),
            asyncio.create_task(self._flush_stats()),
        ]
        log.info(
            "gateway listening on udp://%s, database %s, registry %s (%d devices)",
            format_address(*self.address),
            self.db_path,
            self._keyring.registry.path,
            len(self._keyring.keys),
        )
        return self.address

    async def stop(self):
        """Stop receiving, store and ack what was accepted, and close everything."""
        if self._sock is None:
            return
        self._loop.remove_reader(self._sock.fileno())
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        while self._flush is not None or self._pending:
            if self._flush is None:
                self._start_flush()
            await asyncio.wait([self._flush])
        await self._loop.run_in_executor(self._writer, self._store.commit, [], self.ingest.take_tallies())
        await self._loop.run_in_executor(self._writer, self._store.close)
        self._writer.shutdown(wait=True)
        self._keyring.close()
        self._sock.close()
        self._sock = None
        log.info("gateway on udp://%s stopped", format_address(*self.address))

    def _on_readable(self):
        sock = self._sock
        for _ in range(MAX_READS_PER_WAKEUP):
            try:
                datagram, source = sock.recvfrom(RECEIVE_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as error:
                log.warning("receiving on udp://%s failed: %s", format_address(*self.address), error)
                break
            self._handle(datagram, source, time.perf_counter())
        if self._pending and self._flush is None:
            self._start_flush()

    def _handle(self, datagram, source, received):
        decision = self.ingest.receive(datagram, source)
        kind = decision.kind
        if kind == ACCEPTED:
            decision.report.ack_to.append((source, received))
            self._pending.append(decision.report)
        elif kind == ACK_NOW:
            self._send_ack(decision.key, decision.device_id, decision.counter, source, received)
        elif kind == ACK_LATER:
            decision.report.ack_to.append((source, received))

    def _start_flush(self):
        batch = self._pending[: self.settings.max_batch]
        del self._pending[: len(batch)]
        tallies = self.ingest.take_tallies()
        future = self._loop.run_in_executor(self._writer, self._store.commit, batch, tallies)
        self._flush = future
        future.add_done_callback(lambda done: self._flush_done(done, batch, tallies))

    def _flush_done(self, future, batch, tallies):
        self._flush = None
        error = future.exception()
        if error is not None:
            self._recover(error, batch, tallies)
        else:
            for report in batch:
                self.ingest.committed(report)
                for source, received in report.ack_to:
                    self._send_ack(report.ack_key, report.device_id, report.counter, source, received)
        if self._pending and self._sock is not None:
            self._start_flush()

    def _recover(self, error, batch, tallies):
        # Nothing in the batch was acked, so the nodes resend it. The replay state goes back to
        # what the database holds, plus the reports that still wait for a commit.
        log.error("storing %d reports in %s failed, none acknowledged: %s", len(batch), self.db_path, error)
        self.ingest.tallies.update(tallies)
        self.ingest.tallies["store_failed"] += len(batch)
        try:
            with Store(self.db_path) as store:
                counters = store.counters()
        except (sqlite3.Error, BaysenseError) as reload_error:
            log.error("reading the counters back from %s failed: %s", self.db_path, reload_error)
            return
        self.ingest.load(counters)
        for report in self._pending:
            self.ingest.note_pending(report)

    def _send_ack(self, key, device_id, counter, source, received):
        ack = protocol.encode(key, protocol.FRAME_ACK, device_id, counter, ACK_BODY)
        try:
            self._sock.sendto(ack, source)
        except OSError as error:
            # The node resends the frame and gets the ack again.
            self.ingest.tallies["ack_failed"] += 1
            self.ingest.log_limiter.log(
                logging.WARNING, "ack_failed", "sending the ack for %r #%d to %s failed: %s", device_id, counter, source, error
            )
            return
        self.ingest.tallies["acked"] += 1
        self.latencies.append(time.perf_counter() - received)

    async def _poll_registry(self):
        while True:
            await asyncio.sleep(self.settings.registry_poll_s)
            self._keyring.refresh()

    async def _flush_stats(self):
        while True:
            await asyncio.sleep(self.settings.stats_flush_s)
            if self._flush is None and not self._pending and self.ingest.tallies:
                self._start_flush()


def _bind(host, port, receive_buffer):
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    except socket.gaierror as error:
        raise ConfigError("cannot resolve listen address %s (%s)" % (host, error), "pass an IP address") from error
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.bind(address)
    except OSError as error:
        sock.close()
        raise ConfigError(
            "cannot listen on udp://%s (%s)" % (format_address(host, port), error.strerror),
            "choose another port, or stop the process that holds it",
        ) from error
    sock.setblocking(False)
    return sock


class GatewayThread:
    """A Gateway running on its own event loop in a background thread, for tests and the demo."""

    def __init__(self, db_path, registry_path=None, host="127.0.0.1", port=0, settings=None):
        self.gateway = Gateway(db_path, registry_path, settings)
        self.host = host
        self.port = port
        self.address = None
        self._thread = None
        self._loop = None
        self._stopping = None
        self._started = threading.Event()
        self._error = None

    def start(self):
        """Start the thread; return the (host, port) the gateway listens on."""
        self._thread = threading.Thread(target=self._run, name="baysense-gateway", daemon=True)
        self._thread.start()
        if not self._started.wait(THREAD_START_TIMEOUT_S):
            raise RuntimeError("gateway did not start within %d s" % THREAD_START_TIMEOUT_S)
        if self._error is not None:
            raise self._error
        return self.address

    def stop(self):
        if self._loop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(THREAD_STOP_TIMEOUT_S)
        self._thread = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def _run(self):
        asyncio.run(self._main())

    async def _main(self):
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            self.address = await self.gateway.start(self.host, self.port)
        except BaseException as error:  # handed to start() in the caller's thread
            self._error = error
            self._started.set()
            return
        self._started.set()
        await self._stopping.wait()
        await self.gateway.stop()
