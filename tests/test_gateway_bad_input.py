"""Bad datagrams against a live gateway: each is rejected, counted, and changes nothing stored."""

import hashlib
import hmac
import logging
import socket
import struct
import threading
import time

import pytest

from baysense import protocol
from baysense.gateway.ratelimit import LogLimiter
from baysense.gateway.server import GatewayThread
from baysense.gateway.settings import MAX_COUNTER_JUMP, Settings
from baysense.gateway.simnode import SimNode, provision
from baysense.gateway.store import Store
from baysense.registry import Registry

# Seconds a test waits for a tally to reach the database.
WAIT_S = 10
# Seconds a socket listens for an ack that must not come.
SILENCE_S = 0.1

# Rate limits high enough that the table of cases never meets them.
LENIENT = Settings(stats_flush_s=0.02, registry_poll_s=0.1, device_rate=1000, device_burst=1000, source_rate=1000, source_burst=1000)

LONG_ID = "bay-with-a-long-id-0000000000001"  # 32 bytes, so a frame without its tag is still 51 bytes


def sign(key, signed):
    return signed + hmac.new(key, signed, hashlib.sha256).digest()


def unsigned(frame_type, device_id, counter, body, version=protocol.VERSION):
    ident = device_id if isinstance(device_id, bytes) else device_id.encode()
    return struct.pack("!BBB", version, frame_type, len(ident)) + ident + struct.pack("!IH", counter, len(body)) + body


def state(value=0, state_code=protocol.STATE_OCCUPIED):
    return protocol.state_body(state_code, 0, 1000, value)


class Lot:
    """A gateway with devices in a known state: bay-1 accepted counters 1 to 3."""

    def __init__(self, tmp_path):
        self.registry = tmp_path / "registry.db"
        self.keys = provision(self.registry, ["bay-1", "bay-2", "bay-gone", LONG_ID])
        with Registry(self.registry) as registry:
            registry.revoke("bay-gone")
        self.thread = GatewayThread(tmp_path / "gateway.db", self.registry, settings=LENIENT)
        self.thread.start()
        self.address = self.thread.address
        self.db_path = tmp_path / "gateway.db"
        self.frames = {}
        with SimNode("bay-1", self.keys["bay-1"], self.address) as node:
            for value in (10, 20, 30):
                counter, frame = node.state_frame(protocol.STATE_OCCUPIED, value)
                node.deliver(counter, frame)
                self.frames[counter] = frame
        with SimNode(LONG_ID, self.keys[LONG_ID], self.address) as node:
            node.report_state(protocol.STATE_VACANT)
        self.last = 3

    def close(self):
        self.thread.stop()

    def snapshot(self):
        with Store(self.db_path) as store:
            return store.bays(), store.reports(), store.counters()

    def stats(self):
        with Store(self.db_path) as store:
            return store.stats()


@pytest.fixture(scope="module")
def lot(tmp_path_factory):
    lot = Lot(tmp_path_factory.mktemp("lot"))
    yield lot
    lot.close()


def key(lot, device_id="bay-1"):
    return lot.keys[device_id]


CASES = {
    "truncated datagram": (lambda lot: lot.frames[3][:30], protocol.REASON_TOO_SHORT),
    "truncated tag": (lambda lot: sign(key(lot), unsigned(1, "bay-1", 4, state()))[:-1], protocol.REASON_BAD_LENGTH),
    "oversized datagram": (lambda lot: sign(key(lot), unsigned(1, "bay-1", 4, state())) + bytes(300), protocol.REASON_TOO_LONG),
    "datagram of 60000 bytes": (lambda lot: bytes(60000), protocol.REASON_TOO_LONG),
    "body length past datagram": (
        lambda lot: unsigned(1, "bay-1", 4, state())[:12] + b"\xff\xff" + state() + bytes(32),
        protocol.REASON_BAD_LENGTH,
    ),
    "id length past datagram": (lambda lot: bytes([1, 1, 32]) + b"bay-1" + bytes(40), protocol.REASON_BAD_LENGTH),
    "bad MAC": (lambda lot: unsigned(1, "bay-1", 4, state()) + bytes(32), "bad_mac"),
    "MAC of another device": (lambda lot: sign(key(lot, "bay-2"), unsigned(1, "bay-1", 4, state())), "bad_mac"),
    "flipped MAC bit": (
        lambda lot: (lambda frame: frame[:-1] + bytes([frame[-1] ^ 1]))(sign(key(lot), unsigned(1, "bay-1", 4, state()))),
        "bad_mac",
    ),
    "empty MAC": (lambda lot: unsigned(1, LONG_ID, 2, state()), protocol.REASON_BAD_LENGTH),
    "empty MAC on short frame": (lambda lot: unsigned(1, "bay-1", 4, state()), protocol.REASON_TOO_SHORT),
    "replayed counter": (lambda lot: lot.frames[2], "old_counter"),
    "replayed first frame": (lambda lot: lot.frames[1], "old_counter"),
    "older counter": (lambda lot: sign(key(lot), unsigned(1, "bay-1", 1, state(99))), "old_counter"),
    "zero counter": (lambda lot: sign(key(lot), unsigned(1, "bay-1", 0, state(99))), "old_counter"),
    "last counter, new body": (lambda lot: sign(key(lot), unsigned(1, "bay-1", 3, state(99))), "reused_counter"),
    "counter jump beyond bound": (
        lambda lot: sign(key(lot), unsigned(1, "bay-1", 3 + MAX_COUNTER_JUMP + 1, state())),
        "counter_jump",
    ),
    "counter at 2**32 - 1": (lambda lot: sign(key(lot), unsigned(1, "bay-1", 2**32 - 1, state())), "counter_jump"),
    "unknown device": (lambda lot: sign(bytes(32), unsigned(1, "bay-404", 1, state())), "unknown_device"),
    "revoked device": (lambda lot: sign(key(lot, "bay-gone"), unsigned(1, "bay-gone", 1, state())), "revoked_device"),
    "unknown version": (lambda lot: sign(key(lot), unsigned(1, "bay-1", 4, state(), version=2)), protocol.REASON_BAD_VERSION),
    "version zero": (lambda lot: sign(key(lot), unsigned(1, "bay-1", 4, state(), version=0)), protocol.REASON_BAD_VERSION),
    "unknown frame type": (lambda lot: sign(key(lot), unsigned(9, "bay-1", 4, state())), protocol.REASON_BAD_TYPE),
    "ack sent to gateway": (
        lambda lot: sign(key(lot), unsigned(protocol.FRAME_ACK, "bay-1", 4, protocol.ack_body(0))),
        "unexpected_type",
    ),
    "device id not UTF-8": (lambda lot: sign(key(lot), unsigned(1, b"bay-\xff\xfe", 4, state())), protocol.REASON_BAD_TEXT),
    "firmware version not UTF-8": (
        lambda lot: sign(key(lot), unsigned(2, "bay-1", 4, struct.pack("!IBIbHHB", 1, 0, 1, 0, 0, 0, 2) + b"\xc3\x28")),
        protocol.REASON_BAD_TEXT,
    ),
    "firmware length past body": (
        lambda lot: sign(key(lot), unsigned(2, "bay-1", 4, struct.pack("!IBIbHHB", 1, 0, 1, 0, 0, 0, 9) + b"v1")),
        protocol.REASON_BAD_LENGTH,
    ),
    "unknown state": (lambda lot: sign(key(lot), unsigned(1, "bay-1", 4, bytes([7]) + bytes(9))), protocol.REASON_BAD_BODY),
    "state body too short": (lambda lot: sign(key(lot), unsigned(1, "bay-1", 4, state()[:9])), protocol.REASON_BAD_LENGTH),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_datagram_rejected(lot, case):
    build, reason = CASES[case]
    datagram = build(lot)
    before = lot.snapshot()
    tally = "rejected_" + reason
    count = lot.stats().get(tally, 0)

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.sendto(datagram, lot.address)
        deadline = time.monotonic() + WAIT_S
        while lot.stats().get(tally, 0) == count and time.monotonic() < deadline:
            time.sleep(0.01)
        sock.settimeout(SILENCE_S)
        try:
            answer = sock.recv(4096)
        except socket.timeout:
            answer = None

    assert lot.stats().get(tally, 0) == count + 1
    assert answer is None
    assert lot.snapshot() == before


def test_bad_input_logs_no_key(lot, caplog):
    caplog.set_level(logging.DEBUG)
    datagram = sign(key(lot), unsigned(1, "bay-1", 1, state(5)))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(datagram, lot.address)
        sock.sendto(unsigned(1, "bay-1", 9, state()) + bytes(32), lot.address)
    time.sleep(0.2)

    text = caplog.text
    assert "rejected datagram" in text
    for device_key in lot.keys.values():
        assert device_key.hex() not in text
        assert repr(device_key)[2:-1] not in text


def test_valid_frame_still_accepted_after_cases(lot):
    with SimNode("bay-1", key(lot), lot.address, counter=lot.last) as node:
        counter = node.report_state(protocol.STATE_VACANT, value=1)
    lot.last = counter
    with Store(lot.db_path) as store:
        assert store.bays()[0]["state"] == "vacant"


def test_counter_jump_at_bound_accepted(tmp_path):
    registry = tmp_path / "registry.db"
    keys = provision(registry, ["bay-1"])
    with GatewayThread(tmp_path / "gateway.db", registry, settings=LENIENT) as gateway:
        with SimNode("bay-1", keys["bay-1"], gateway.address, counter=5000) as node:
            first = node.report_state(protocol.STATE_OCCUPIED)
            node.counter = first + MAX_COUNTER_JUMP - 1
            jumped = node.report_state(protocol.STATE_VACANT)

    assert first == 5001
    assert jumped == 5001 + MAX_COUNTER_JUMP
    with Store(tmp_path / "gateway.db") as store:
        assert store.bays()[0]["counter"] == jumped


def flood(address, source, frames, stop):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sent = 0
        while not stop.is_set():
            for frame in frames:
                try:
                    sock.sendto(frame, address)
                except OSError:
                    pass
                sent += 1
    return sent


def test_flood_from_one_source_spares_others(tmp_path):
    registry = tmp_path / "registry.db"
    keys = provision(registry, ["bay-%d" % number for number in range(5)] + ["bay-flood"])
    settings = Settings(stats_flush_s=0.05)
    db_path = tmp_path / "gateway.db"

    with GatewayThread(db_path, registry, settings=settings) as gateway:
        with SimNode("bay-flood", keys["bay-flood"], gateway.address) as node:
            counter, replay = node.state_frame(protocol.STATE_OCCUPIED)
            node.deliver(counter, replay)
        flood_frames = [replay, bytes(50), sign(bytes(32), unsigned(1, "bay-x", 1, state())), replay[:-3]]
        stop = threading.Event()
        flooder = threading.Thread(target=flood, args=(gateway.address, "127.0.0.2", flood_frames, stop))
        flooder.start()
        try:
            time.sleep(0.3)
            started = time.monotonic()
            nodes = [SimNode("bay-%d" % number, keys["bay-%d" % number], gateway.address) for number in range(5)]
            for round_number in range(4):
                for node in nodes:
                    node.report_state(round_number % 2, value=round_number, timeout=WAIT_S)
            elapsed = time.monotonic() - started
        finally:
            stop.set()
            flooder.join()
            for node in nodes:
                node.close()

    with Store(db_path) as store:
        stats = store.stats()
        reports = store.reports()
        bays = {bay["device_id"]: bay for bay in store.bays()}

    assert elapsed < WAIT_S
    assert stats["rejected_rate_source"] > 1000
    assert len([report for report in reports if report["device_id"] != "bay-flood"]) == 20
    assert [report["counter"] for report in reports if report["device_id"] == "bay-flood"] == [1]
    assert bays["bay-flood"]["state"] == "occupied"
    for number in range(5):
        assert bays["bay-%d" % number]["counter"] == 4


def test_device_rate_limit(tmp_path):
    registry = tmp_path / "registry.db"
    keys = provision(registry, ["bay-1"])
    settings = Settings(stats_flush_s=0.05, device_rate=5, device_burst=10)
    db_path = tmp_path / "gateway.db"

    with GatewayThread(db_path, registry, settings=settings) as gateway:
        with SimNode("bay-1", keys["bay-1"], gateway.address) as node:
            frames = [node.state_frame(number % 2)[1] for number in range(40)]
            started = time.monotonic()
            for frame in frames:
                node.send(frame)
            time.sleep(0.3)
            later = node.report_state(protocol.STATE_FAULT, timeout=WAIT_S)
            elapsed = time.monotonic() - started

    with Store(db_path) as store:
        stats = store.stats()
        stored = len(store.reports())
    # The bucket starts full (10) and refills at 5 frames/s while the test runs.
    assert later == 41
    assert stored >= 10
    assert stored <= 10 + 5 * elapsed + 1
    assert stats["rejected_rate_device"] >= 1
    assert stats["rejected_rate_device"] + stored >= 41


class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_log_limiter_suppresses_and_summarizes():
    logger = logging.getLogger("test.limiter")
    handler = ListHandler()
    logger.addHandler(handler)
    logger.propagate = False
    now = [0.0]
    limiter = LogLimiter(logger, burst=3, window_s=10, clock=lambda: now[0])
    try:
        for number in range(10):
            limiter.log(logging.WARNING, "bad_mac", "line %d", number)
        limiter.log(logging.WARNING, "other", "other line")
        now[0] = 11.0
        limiter.log(logging.WARNING, "bad_mac", "after window")
    finally:
        logger.removeHandler(handler)

    assert handler.lines[:3] == ["line 0", "line 1", "line 2"]
    assert handler.lines[3] == "other line"
    assert handler.lines[4] == "suppressed 7 similar lines (bad_mac) in the last 11 s"
    assert handler.lines[5] == "after window"
    assert len(handler.lines) == 6
