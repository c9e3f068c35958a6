"""Hypothesis fuzzing of the gateway's datagram handler (ingest checks and the server's dispatch)
and of its fast header checks and HMAC against the protocol module."""

import asyncio
import hmac

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from baysense import protocol
from baysense.gateway.ingest import ACCEPTED, ACK_LATER, ACK_NOW, REJECTED, Ingest
from baysense.gateway.keys import FixedKeyRing, key_id
from baysense.gateway.server import Gateway
from baysense.gateway.settings import Settings
from baysense.gateway.signing import DeviceKey

KEYS = {"bay-1": bytes(range(32)), "bay-2": bytes(range(32, 64))}
SOURCE = ("127.0.0.1", 40000)
UNLIMITED = Settings(device_rate=1e9, device_burst=1e9, source_rate=1e9, source_burst=1e9)


def valid_frames():
    frames = []
    for device_id, key in KEYS.items():
        for counter in (1, 2, 70):
            body = protocol.state_body(counter % 3, 0, counter, -counter)
            frames.append(protocol.encode(key, protocol.FRAME_STATE, device_id, counter, body))
        beat = protocol.heartbeat_body(5, 1, 1000, -40, 0, 0, "1.0")
        frames.append(protocol.encode(key, protocol.FRAME_HEARTBEAT, device_id, 3, beat))
    return frames


VALID = valid_frames()


@st.composite
def datagrams(draw):
    """Random bytes, or a valid frame with bytes changed, cut, or appended."""
    kind = draw(st.sampled_from(["random", "mutated", "cut", "extended", "valid"]))
    if kind == "random":
        return draw(st.binary(max_size=300))
    frame = bytearray(draw(st.sampled_from(VALID)))
    if kind == "mutated":
        for _ in range(draw(st.integers(1, 4))):
            index = draw(st.integers(0, len(frame) - 1))
            frame[index] = draw(st.integers(0, 255))
    elif kind == "cut":
        frame = frame[: draw(st.integers(0, len(frame) - 1))]
    elif kind == "extended":
        frame += draw(st.binary(min_size=1, max_size=100))
    return bytes(frame)


def fresh_ingest():
    return Ingest(FixedKeyRing(KEYS, revoked=["bay-3"]), {}, UNLIMITED)


@settings(max_examples=400, deadline=None)
@given(st.lists(datagrams(), min_size=1, max_size=12))
def test_ingest_fuzz_keeps_invariants(sequence):
    ingest = fresh_ingest()
    last = {}
    kinds = {ACCEPTED: 0, ACK_NOW: 0, ACK_LATER: 0, REJECTED: 0}

    for datagram in sequence:
        decision = ingest.receive(datagram, SOURCE)

        assert decision.kind in kinds
        kinds[decision.kind] += 1
        if decision.kind == REJECTED:
            assert decision.reason
            continue

        # Anything not rejected is an authentic frame from a known device.
        frame = protocol.decode(datagram)
        assert frame.type in (protocol.FRAME_STATE, protocol.FRAME_HEARTBEAT)
        assert frame.verify(KEYS[frame.device_id])
        if decision.kind == ACCEPTED:
            assert frame.counter > last.get(frame.device_id, -1)
            last[frame.device_id] = frame.counter
        else:
            assert frame.counter == last[frame.device_id]

    tallies = ingest.take_tallies()
    assert kinds[ACCEPTED] == sum(count for name, count in tallies.items() if name.startswith("accepted_"))
    assert kinds[REJECTED] == sum(count for name, count in tallies.items() if name.startswith("rejected_"))
    assert kinds[ACK_NOW] + kinds[ACK_LATER] == sum(count for name, count in tallies.items() if name.startswith("resent_"))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(datagrams(), min_size=1, max_size=20))
def test_server_handler_fuzz_never_raises(tmp_path, sequence):
    """Drive Gateway._handle, the socket callback's per-datagram step, without a network."""

    async def run():
        gateway = Gateway(tmp_path / "gateway.db", tmp_path / "registry.db", UNLIMITED)
        gateway.ingest = fresh_ingest()
        for datagram in sequence:
            gateway._handle(datagram, SOURCE, 0.0)
        return gateway

    gateway = asyncio.run(run())

    pending = gateway._pending
    assert len(pending) == len({(report.device_id, report.counter) for report in pending})
    for report in pending:
        assert report.device_id in KEYS
        assert report.source == SOURCE
    # Acks of retransmissions, queued to be sent after the handler.
    for ack, source, _, device_id, counter in gateway._acks:
        frame = protocol.decode(ack)
        assert source == SOURCE
        assert frame.type == protocol.FRAME_ACK
        assert (frame.device_id, frame.counter) == (device_id, counter)
        assert frame.verify(KEYS[device_id])


@settings(max_examples=400, deadline=None)
@given(datagrams())
def test_header_checks_match_decode(datagram):
    """Ingest reads well-formed headers from raw bytes; it must pass exactly what decode passes."""
    ingest = fresh_ingest()
    header = ingest._read_header(datagram, len(datagram))
    try:
        frame = protocol.decode(datagram)
    except protocol.FrameError:
        frame = None
    expected = frame is not None and frame.type != protocol.FRAME_ACK and frame.device_id in KEYS

    assert (header is not None) == expected
    if header is not None:
        key, frame_type, counter, body_start = header
        assert key.device_id == frame.device_id
        assert frame_type == frame.type
        assert counter == frame.counter
        assert datagram[body_start : len(datagram) - protocol.TAG_SIZE] == frame.body


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(KEYS)), st.integers(0, 2**32 - 1), st.binary(max_size=protocol.MAX_BODY))
def test_device_key_matches_protocol(device_id, counter, body):
    key = DeviceKey(device_id, KEYS[device_id], key_id(KEYS[device_id]))
    frame = protocol.encode(KEYS[device_id], protocol.FRAME_STATE, device_id, counter, body)
    signed, tag = frame[: -protocol.TAG_SIZE], frame[-protocol.TAG_SIZE :]

    assert key.tag(signed) == hmac.digest(KEYS[device_id], signed, "sha256")
    assert key.verify(signed, tag)
    assert not key.verify(signed, bytes(protocol.TAG_SIZE))
    assert key.ack(counter) == protocol.encode(
        KEYS[device_id], protocol.FRAME_ACK, device_id, counter, protocol.ack_body(protocol.ACK_STORED)
    )
