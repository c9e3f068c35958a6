"""The checks a datagram passes before its report is stored, in the order they run.

size -> source rate -> decode -> frame type -> device -> MAC -> device rate -> counter -> body

Nothing here does I/O: the server feeds datagrams in and sends the acks and commits that the
decisions call for, so tests can drive every check directly.
"""

import logging
import struct
import time
from collections import Counter

from .. import protocol
from .ratelimit import BucketTable, LogLimiter
from .signing import DeviceKey
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

_FRAME_NAMES = {protocol.FRAME_STATE: "state", protocol.FRAME_HEARTBEAT: "heartbeat"}
_ACCEPTED_TALLY = {frame_type: "accepted_" + name for frame_type, name in _FRAME_NAMES.items()}
_RESENT_TALLY = {frame_type: "resent_" + name for frame_type, name in _FRAME_NAMES.items()}
_RESIGNED_TALLY = {frame_type: "resigned_" + name for frame_type, name in _FRAME_NAMES.items()}

# Minimum time between the registry reads that datagrams failing the header checks (an
# unknown device, or a malformed frame) trigger before the next poll. A read is one SQLite
# query, and such datagrams may come in a flood.
KEY_REFRESH_INTERVAL_S = 0.05

# Counter and body length, which follow the device id.
_COUNTER_AND_BODY_LEN = struct.Struct("!IH")


class Decision:
    """The verdict on one datagram, with the report, device, counter and key to act on it.

    `key` is the device's DeviceKey, which signs the ack.
    """

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
    """A device's replay state: the last accepted frame's counter, tag, type and body, under one key."""

    __slots__ = ("key_id", "counter", "tag", "frame_type", "body", "pending")

    def __init__(self, key_id, counter, tag, frame_type=None, body=None, pending=None):
        self.key_id = key_id
        self.counter = counter
        self.tag = tag
        # Type and body tell a frame re-signed after a key rotation from a new one. They are
        # None when a version 1 database did not contain them.
        self.frame_type = frame_type
        self.body = body
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
        self._keys_loaded = None  # the keyring.keys dict that _keys was built from
        self._keys = {}  # device id as UTF-8 bytes -> DeviceKey
        self._keys_refreshed = float("-inf")  # when such a datagram last made the registry be read

    def load(self, counters):
        """Replace the replay state with `counters` ({device_id: (key_id, counter, tag, type, body)})."""
        self.devices = {device_id: DeviceCounter(*state) for device_id, state in counters.items()}

    def take_tallies(self):
        """Return the tallies since the last call and start new ones."""
        tallies = self.tallies
        self.tallies = Counter()
        return tallies

    def receive(self, datagram, source, now=None):
        """Check one datagram (bytes) from `source` ((host, port)) and return a Decision.

        `now` is the receive time on `clock`, for the rate limits and the report's `arrived`. When
        it is None, the clock is read.
        """
        size = len(datagram)
        if size > protocol.MAX_FRAME:
            return self._reject(protocol.REASON_TOO_LONG, source, "%d bytes, maximum %d", size, protocol.MAX_FRAME)

        if now is None:
            now = self.clock()
        if not self.sources.take(source[0], now):
            return self._reject(REASON_RATE_SOURCE, source, "over %.0f frames/s", self.settings.source_rate)

        header = self._read_header(datagram, size)
        if header is None:
            # A board provisioned a moment ago may report before the next registry poll, so
            # read the registry again before rejecting an unknown device.
            if self._refresh_keys(now):
                header = self._read_header(datagram, size)
            if header is None:
                return self._reject_malformed(datagram, source)
        key, frame_type, counter, body_start = header

        signed_size = size - protocol.TAG_SIZE
        signed = datagram[:signed_size]
        tag = datagram[signed_size:]
        if not key.verify(signed, tag):
            return self._reject(REASON_BAD_MAC, source, "device %r counter %d", key.device_id, counter)

        # After the MAC, so that frames forged in a device's name cannot spend its budget.
        if not self.device_buckets.take(key.device_id, now):
            return self._reject(
                REASON_RATE_DEVICE, source, "device %r over %.0f frames/s", key.device_id, self.settings.device_rate
            )

        return self._check_counter(key, frame_type, counter, signed[body_start:], tag, source, now)

    def _read_header(self, datagram, size):
        """Return (DeviceKey, type, counter, body offset) of a well-formed state or heartbeat
        frame from a device with a key, else None.

        Every frame that protocol.decode accepts from such a device passes here, without
        decoding the device id: its bytes are looked up as they are.
        """
        if self.keyring.keys is not self._keys_loaded:
            self._load_keys()
        if size < protocol.MIN_FRAME or datagram[0] != protocol.VERSION:
            return None
        frame_type = datagram[1]
        if frame_type != protocol.FRAME_STATE and frame_type != protocol.FRAME_HEARTBEAT:
            return None
        # At least MIN_FRAME bytes, so a slice cut short by the datagram's end is longer than
        # any device id and matches no key.
        id_end = 3 + datagram[2]
        key = self._keys.get(datagram[3:id_end])
        if key is None:
            return None
        counter, body_len = _COUNTER_AND_BODY_LEN.unpack_from(datagram, id_end)
        body_start = id_end + 6
        if body_start + body_len + protocol.TAG_SIZE != size:
            return None
        return key, frame_type, counter, body_start

    def _refresh_keys(self, now):
        # Return True when the registry changed. At most every KEY_REFRESH_INTERVAL_S, so that
        # a flood of malformed or unknown frames cannot become a flood of registry reads.
        if now - self._keys_refreshed < KEY_REFRESH_INTERVAL_S:
            return False
        self._keys_refreshed = now
        return self.keyring.refresh()

    def _load_keys(self):
        # Keep the DeviceKey of an unchanged key, because building one hashes the key's pads.
        keys = self.keyring.keys
        previous = {key.device_id: key for key in self._keys.values()}
        table = {}
        for device_id, (key, kid) in keys.items():
            device_key = previous.get(device_id)
            if device_key is None or device_key.key_id != kid:
                device_key = DeviceKey(device_id, key, kid)
            table[device_key.raw_id] = device_key
        self._keys = table
        self._keys_loaded = keys

    def _reject_malformed(self, datagram, source):
        # The datagram is not a well-formed frame from a device with a key: decode it again
        # for the exact reason.
        try:
            frame = protocol.decode(datagram)
        except protocol.FrameError as error:
            return self._reject(error.reason, source, "%s", error)
        if frame.type == protocol.FRAME_ACK:
            return self._reject(REASON_UNEXPECTED_TYPE, source, "ack frame from %r", frame.device_id)
        if frame.device_id in self.keyring.revoked:
            return self._reject(REASON_REVOKED_DEVICE, source, "device %r", frame.device_id)
        if frame.device_id not in self.keyring.keys:
            return self._reject(REASON_UNKNOWN_DEVICE, source, "device %r", frame.device_id)
        raise RuntimeError("frame %r #%d decodes but failed the header checks" % (frame.device_id, frame.counter))

    def _check_counter(self, key, frame_type, counter, body, tag, source, now):
        device_id = key.device_id
        state = self.devices.get(device_id)
        if state is not None and state.key_id != key.key_id:
            if counter == state.counter and frame_type == state.frame_type and body == state.body:
                return self._accept_resigned(key, frame_type, counter, body, tag, source, state, now)
            # Frames under the old key can no longer verify, so a new key starts a new counter
            # sequence (a re-flashed node may start again from zero).
            log.info("device %r has a new key: its counter sequence starts again", device_id)
            state = None

        if state is not None:
            last = state.counter
            if counter == last:
                if not protocol.tags_equal(tag, state.tag):
                    return self._reject(REASON_REUSED_COUNTER, source, "device %r counter %d", device_id, counter)
                self.tallies[_RESENT_TALLY[frame_type]] += 1
                if state.pending is not None:
                    return Decision(ACK_LATER, report=state.pending, device_id=device_id, counter=counter, key=key)
                return Decision(ACK_NOW, device_id=device_id, counter=counter, key=key)
            if counter < last:
                return self._reject(
                    REASON_OLD_COUNTER, source, "device %r counter %d, last accepted %d", device_id, counter, last
                )
            if counter - last > self.settings.max_counter_jump:
                return self._reject(
                    REASON_COUNTER_JUMP,
                    source,
                    "device %r counter %d, last accepted %d, maximum step %d",
                    device_id,
                    counter,
                    last,
                    self.settings.max_counter_jump,
                )

        try:
            if frame_type == protocol.FRAME_STATE:
                fields = protocol.parse_state(body)
            else:
                fields = protocol.parse_heartbeat(body)
        except protocol.FrameError as error:
            return self._reject(error.reason, source, "device %r counter %d: %s", device_id, counter, error)

        report = Report(device_id, counter, frame_type, body, fields, time.time(), source, key.key_id, tag, key, now)
        if state is None:
            self.devices[device_id] = DeviceCounter(key.key_id, counter, tag, frame_type, body, report)
        else:
            state.counter = counter
            state.tag = tag
            state.frame_type = frame_type
            state.body = body
            state.pending = report
        self.tallies[_ACCEPTED_TALLY[frame_type]] += 1
        return Decision(ACCEPTED, None, report, device_id, counter, key)

    def _accept_resigned(self, key, frame_type, counter, body, tag, source, state, now):
        # The node re-signs the frames in its outbox after a key rotation, keeping their counters
        # and bodies. The same counter and body as the last frame accepted under the old key is
        # therefore that frame, whose ack was lost: it is acknowledged and the new key takes over
        # the sequence, but the report is not stored again. The report carries only the new key
        # and tag to the store, so the ack still waits for a durable commit.
        log.info("device %r re-signed frame #%d under its new key: acknowledged, not stored again", key.device_id, counter)
        report = Report(
            key.device_id, counter, frame_type, body, None, time.time(), source, key.key_id, tag, key, now, resigned=True
        )
        self.devices[key.device_id] = DeviceCounter(key.key_id, counter, tag, frame_type, body, report)
        self.tallies[_RESIGNED_TALLY[frame_type]] += 1
        return Decision(ACCEPTED, report=report, device_id=key.device_id, counter=counter, key=key)

    def committed(self, reports):
        """Note that `reports` are stored, so a retransmission of one of them is acked at once."""
        devices = self.devices
        for report in reports:
            state = devices.get(report.device_id)
            if state is not None and state.pending is report:
                state.pending = None

    def _reject(self, reason, source, detail, *args):
        self.tallies["rejected_" + reason] += 1
        self.log_limiter.log(
            logging.WARNING, reason, "rejected datagram from %s:%s: %s (" + detail + ")", source[0], source[1], reason, *args
        )
        return Decision(REJECTED, reason=reason)
