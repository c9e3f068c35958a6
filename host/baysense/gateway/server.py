"""The asyncio UDP gateway: receives frames, stores reports, then acknowledges them.

Group commit: each wake-up drains the socket (up to MAX_READS_PER_WAKEUP datagrams) and runs
the ingest checks. The accepted reports are written into one SQLite transaction on the event
loop's thread, and its COMMIT, which waits for the fsync, runs in a writer thread. Only when the
COMMIT has returned are the acks of its reports sent. Meanwhile the loop keeps receiving and
checking the next datagrams, whose reports wait for the next transaction.

With the load of tools/bench_gateway.py on the 2-core machine of docs/benchmarks.md, the COMMIT
in the writer thread gave 47,000 to 67,000 reports/s at 14.7 to 15.4 us of server CPU a report,
and the same code with the COMMIT on the loop's thread 33,000 to 35,000 at 16.2 to 16.4 us. The
statements stay on the loop's thread because CPython's sqlite3 module releases the GIL around
each row's step: in the writer thread they would trade the GIL with the loop for every row. An
earlier version that ran whole commits in a worker thread reached only 20,000 to 32,000.
"""

import asyncio
import logging
import socket
import sqlite3
import threading
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
# Datagrams read per wake-up, so that the loop also gets to the registry poll and finished commits.
MAX_READS_PER_WAKEUP = 512
# Receive-to-ack times kept for the bench's percentiles.
LATENCY_SAMPLES = 200_000
# Seconds GatewayThread waits for the gateway to start or stop before giving up.
THREAD_START_TIMEOUT_S = 10
THREAD_STOP_TIMEOUT_S = 30


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
        self._pending = []  # accepted reports waiting for the next transaction
        self._committing = None  # the future of the COMMIT running in the writer thread
        self._acks = []  # (ack, address, receive time, device id, counter) to send
        self._writer = None
        self._tasks = []
        self._loop = None

    async def start(self, host="127.0.0.1", port=0):
        """Open the database and the registry and start listening; return (host, port)."""
        self._loop = asyncio.get_running_loop()
        self._store = Store(self.db_path)
        try:
            self._keyring = KeyRing(self.registry_path)
            try:
                self.ingest = Ingest(self._keyring, self._store.counters(), self.settings)
                self._sock = _bind(host, port, self.settings.receive_buffer)
            except BaseException:
                self._keyring.close()
                raise
        except BaseException:
            self._store.close()
            raise
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="baysense-commit")
        self.address = self._sock.getsockname()[:2]
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

    @property
    def registry_devices(self):
        """Return (registry path, number of devices with a key) as last read."""
        return self._keyring.registry.path, len(self._keyring.keys)

    async def stop(self):
        """Stop receiving, store and ack what was accepted, and close everything."""
        if self._sock is None:
            return
        self._loop.remove_reader(self._sock.fileno())
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._drain()
        self._writer.shutdown()
        self._store.close()
        self._keyring.close()
        self._sock.close()
        self._sock = None
        log.info("gateway on udp://%s stopped", format_address(*self.address))

    async def _drain(self):
        # Commit what was accepted, then the tallies, one transaction at a time. A failed commit
        # drops the reports waiting behind it (see _recover), so the first loop ends.
        while self._committing is not None or self._pending:
            if self._committing is not None:
                await asyncio.wait([self._committing])
            else:
                self._start_commit()
        if self.ingest.tallies:
            self._start_commit()
            if self._committing is not None:
                await asyncio.wait([self._committing])
        self._send_acks()

    def _on_readable(self):
        receive = self._sock.recvfrom
        handle = self._handle
        # One clock reading per datagram serves the rate limits and the receive-to-ack latency.
        clock = self.ingest.clock
        for _ in range(MAX_READS_PER_WAKEUP):
            try:
                datagram, source = receive(RECEIVE_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as error:
                log.warning("receiving on udp://%s failed: %s", format_address(*self.address), error)
                break
            try:
                handle(datagram, source, clock())
            except Exception:  # a bug: log it and keep serving the other datagrams
                self.ingest.tallies["rejected_internal_error"] += 1
                self.ingest.log_limiter.log(
                    logging.ERROR, "internal_error", "handling a datagram from %s failed", source, exc_info=True
                )
        if self._pending and self._committing is None:
            self._start_commit()
        if self._acks:
            self._send_acks()

    def _handle(self, datagram, source, received):
        # `received` is the receive time on the ingest's clock.
        decision = self.ingest.receive(datagram, source, received)
        kind = decision.kind
        if kind == ACCEPTED:
            self._pending.append(decision.report)
        elif kind == ACK_NOW:
            ack = decision.key.ack(decision.counter)
            self._acks.append((ack, source, received, decision.device_id, decision.counter))
        elif kind == ACK_LATER:
            report = decision.report
            if report.resent_to is None:
                report.resent_to = []
            report.resent_to.append((source, received))

    def _start_commit(self):
        """Write the waiting reports and the tallies into a transaction, and COMMIT it in the writer thread."""
        batch = self._pending[: self.settings.max_batch]
        del self._pending[: len(batch)]
        tallies = self.ingest.take_tallies()
        try:
            self._store.write(batch, tallies)
        except sqlite3.Error as error:
            self._store.rollback()
            self._recover(error, batch, tallies)
            return
        self._committing = self._loop.run_in_executor(self._writer, self._store.finish)
        self._committing.add_done_callback(lambda future: self._on_committed(future, batch, tallies))

    def _on_committed(self, future, batch, tallies):
        self._committing = None
        error = future.exception()
        if error is not None:
            if not isinstance(error, sqlite3.Error):
                raise error
            self._store.rollback()
            self._recover(error, batch, tallies)
        # The next COMMIT starts before these acks go out, so that its fsync overlaps the sends.
        if self._pending:
            self._start_commit()
        if error is None:
            self._ack_committed(batch)
        self._send_acks()

    def _ack_committed(self, batch):
        """Send the acks of a committed batch; queue those owed to retransmissions."""
        self.ingest.committed(batch)
        send = self._sock.sendto
        clock = self.ingest.clock
        latencies = self.latencies
        sent = 0
        for report in batch:
            ack = report.ack_key.ack(report.counter)
            try:
                send(ack, report.source)
            except OSError as error:
                self._ack_failed(report.device_id, report.counter, report.source, error)
            else:
                sent += 1
                latencies.append(clock() - report.arrived)
            if report.resent_to is not None:
                for source, received in report.resent_to:
                    self._acks.append((ack, source, received, report.device_id, report.counter))
        if sent:
            self.ingest.tallies["acked"] += sent

    def _send_acks(self):
        acks = self._acks
        self._acks = []
        send = self._sock.sendto
        clock = self.ingest.clock
        latencies = self.latencies
        sent = 0
        for ack, source, received, device_id, counter in acks:
            try:
                send(ack, source)
            except OSError as error:
                self._ack_failed(device_id, counter, source, error)
                continue
            sent += 1
            latencies.append(clock() - received)
        if sent:
            self.ingest.tallies["acked"] += sent

    def _ack_failed(self, device_id, counter, source, error):
        # The node resends the frame and gets the ack again.
        self.ingest.tallies["ack_failed"] += 1
        self.ingest.log_limiter.log(
            logging.WARNING, "ack_failed", "sending the ack for %r #%d to %s failed: %s", device_id, counter, source, error
        )

    def _recover(self, error, batch, tallies):
        # Nothing in the batch was acked, so the nodes resend it. The replay state goes back to
        # what the database holds, and the reports still waiting are dropped too: their nodes
        # resend them as well.
        log.error("storing %d reports in %s failed, none acknowledged: %s", len(batch), self.db_path, error)
        self.ingest.tallies.update(tallies)
        self.ingest.tallies["store_failed"] += len(batch) + len(self._pending)
        self._pending.clear()
        try:
            counters = self._store.counters()
        except (sqlite3.Error, BaysenseError) as reload_error:
            log.error("reading the counters back from %s failed: %s", self.db_path, reload_error)
            return
        self.ingest.load(counters)

    async def _poll_registry(self):
        while True:
            await asyncio.sleep(self.settings.registry_poll_s)
            self._keyring.refresh()

    async def _flush_stats(self):
        # Tallies go out with the next batch of reports; this writes them when no report comes.
        while True:
            await asyncio.sleep(self.settings.stats_flush_s)
            if self.ingest.tallies and self._committing is None:
                self._start_commit()


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
