"""The checks a datagram passes before its report is stored, in the order they run.

size -> source rate -> decode -> frame type -> device -> MAC -> device rate -> counter -> body

Nothing here does I/O: the server feeds datagrams in and sends the acks and commits that the
decisions call for, so tests can drive every check directly.
"""

import logging
import time
from collections import Counter

from .. import protocol
from .ratelimit import BucketTable, LogLimiter
from .store import Report

log = logging.getLogger(__name__)

# Decisions
ACCEPTED = "accepted"  # a new report: store it, then ack it
ACK_NOW = "ack_now"  # a retransmission of the last report, which is already stored: ack again
ACK_LATER = "ack_later"  # a retransmission of the last report before its batch is committed
REJECTED = "rejected"

# Rejection reasons beyond the protocol module's FrameError reasons.
REASON_RATE_SOURCE = "rate_source"
REASON_RATE_DEVICE = "rate_device"
REASON_UNEXPECTED_TYPE = "unexpected_type"  # an ack sent to the gateway
REASON_UNKNOWN_DEVICE = "unknown_device"
REASON_REVOKED_DEVICE = "revoked_device"
REASON_BAD_MAC = "bad_mac"
REASON_OLD_COUNTER = "old_counter"  # below the last accepted counter (a replay or a stale frame)
REASON_REUSED_COUNTER = "reused_counter"  # the last accepted counter with different content
REASON_COUNTER_JUMP = "counter_jump"


class Decision:
    """The verdict on one datagram, with the report, device, counter and key to act on it."""

    __slots__ = ("kind", "reason", "report", "device_id", "counter", "key")

    def __init__(self, kind, reason=None, report=None, device_id=None, counter=None, key=None):
        self.kind = kind
        self.reason = reason
        self.report = report
        self.device_id = device_id
        self.counter = counter
        self.key = key

    def __repr__(self):
        return "Decision(%s, %s)" % (self.kind, self.reason or self.device_id)


class DeviceCounter:
    """A device's replay state: the last accepted counter and frame tag, under one key."""

    __slots__ = ("key_id", "counter", "tag", "pending")

    def __init__(self, key_id, counter, tag, pending=None):
        self.key_id = key_id
        self.counter = counter
        self.tag = tag
        self.pending = pending  # the Report for `counter` until its batch is committed, else None


class Ingest:
    """Checks datagrams against the keys, the replay state and the rate limits."""

    def __init__(self, keyring, counters, settings, clock=time.monotonic):
        self.keyring = keyring
        self.settings = settings
        self.clock = clock
        self.devices = {}
        self.load(counters)
        self.sources = BucketTable(settings.source_rate, settings.source_burst, settings.max_buckets)
        self.device_buckets = BucketTable(settings.device_rate, settings.device_burst, settings.max_buckets)
        self.tallies = Counter()
        self.log_limiter = LogLimiter(log, settings.log_burst, settings.log_window_s)

    def load(self, counters):
        """Replace the replay state with `counters` ({device_id: (key_id, counter, tag)})."""
        self.devices = {
            device_id: DeviceCounter(kid, counter, tag) for device_id, (kid, counter, tag) in counters.items()
        }

    def take_tallies(self):
        """Return the tallies since the last call and start new ones."""
        tallies = self.tallies
        self.tallies = Counter()
        return tallies

    def receive(self, datagram, source):
        """Check one datagram from `source` ((host, port)) and return a Decision."""
        size = len(datagram)
        if size > protocol.MAX_FRAME:
            return self._reject(protocol.REASON_TOO_LONG, source, "%d bytes, maximum %d", size, protocol.MAX_FRAME)

        now = self.clock()
        if not self.sources.take(source[0], now):
            return self._reject(REASON_RATE_SOURCE, source, "over %.0f frames/s", self.settings.source_rate)

        try:
            frame = protocol.decode(datagram)
        except protocol.FrameError as error:
            return self._reject(error.reason, source, "%s", error)
        if frame.type == protocol.FRAME_ACK:
            return self._reject(REASON_UNEXPECTED_TYPE, source, "ack frame from %r", frame.device_id)

        device_id = frame.device_id
        entry = self.keyring.keys.get(device_id)
        if entry is None:
            if device_id in self.keyring.revoked:
                return self._reject(REASON_REVOKED_DEVICE, source, "device %r", device_id)
            return self._reject(REASON_UNKNOWN_DEVICE, source, "device %r", device_id)
        key, kid = entry
        if not frame.verify(key):
            return self._reject(REASON_BAD_MAC, source, "device %r counter %d", device_id, frame.counter)

        # After the MAC, so that frames forged in a device's name cannot spend its budget.
        if not self.device_buckets.take(device_id, now):
            return self._reject(
                REASON_RATE_DEVICE, source, "device %r over %.0f frames/s", device_id, self.settings.device_rate
            )

        return self._check_counter(frame, key, kid, source)

    def _check_counter(self, frame, key, kid, source):
        device_id = frame.device_id
        counter = frame.counter
        state = self.devices.get(device_id)
        if state is not None and state.key_id != kid:
            # Frames under the old key can no longer verify, so a new key starts a new counter
            # sequence (a re-flashed node may start again from zero).
            log.info("device %r has a new key: its counter sequence starts again", device_id)
            state = None

        if state is not None:
            if counter == state.counter:
                if not protocol.tags_equal(frame.tag, state.tag):
                    return self._reject(REASON_REUSED_COUNTER, source, "device %r counter %d", device_id, counter)
                self.tallies["resent_" + _FRAME_NAMES[frame.type]] += 1
                if state.pending is not None:
                    return Decision(ACK_LATER, report=state.pending, device_id=device_id, counter=counter, key=key)
                return Decision(ACK_NOW, device_id=device_id, counter=counter, key=key)
            if counter < state.counter:
                return self._reject(
                    REASON_OLD_COUNTER, source, "device %r counter %d, last accepted %d", device_id, counter, state.counter
                )
            if counter - state.counter > self.settings.max_counter_jump:
                return self._reject(
                    REASON_COUNTER_JUMP,
                    source,
                    "device %r counter %d, last accepted %d, maximum step %d",
                    device_id,
                    counter,
                    state.counter,
                    self.settings.max_counter_jump,
                )

        try:
            if frame.type == protocol.FRAME_STATE:
                fields = protocol.parse_state(frame.body)
            else:
                fields = protocol.parse_heartbeat(frame.body)
        except protocol.FrameError as error:
            return self._reject(error.reason, source, "device %r counter %d: %s", device_id, counter, error)

        report = Report(
            device_id=device_id,
            counter=counter,
            frame_type=frame.type,
            body=frame.body,
            fields=fields,
            received=time.time(),
            source="%s:%d" % (source[0], source[1]),
            key_id=kid,
            tag=frame.tag,
            ack_key=key,
        )
        self.devices[device_id] = DeviceCounter(kid, counter, frame.tag, report)
        self.tallies["accepted_" + _FRAME_NAMES[frame.type]] += 1
        return Decision(ACCEPTED, report=report, device_id=device_id, counter=counter, key=key)

    def committed(self, report):
        """Note that `report` is stored, so a retransmission of it is acked at once."""
        state = self.devices.get(report.device_id)
        if state is not None and state.pending is report:
            state.pending = None

    def _reject(self, reason, source, detail, *args):
        self.tallies["rejected_" + reason] += 1
        self.log_limiter.log(
            logging.WARNING, reason, "rejected datagram from %s:%s: %s (" + detail + ")", source[0], source[1], reason, *args
        )
        return Decision(REJECTED, reason=reason)


_FRAME_NAMES = {protocol.FRAME_STATE: "state", protocol.FRAME_HEARTBEAT: "heartbeat"}
