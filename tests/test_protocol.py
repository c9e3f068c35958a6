"""The wire protocol under CPython: layout, HMAC, tag checks, decoder rejections and fuzzing."""

import hashlib
import hmac
import importlib.util
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baysense import protocol
from baysense.paths import FIRMWARE_DIR

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def load_pure_protocol():
    """Load a private copy of the protocol module that computes HMAC as MicroPython does."""
    spec = importlib.util.spec_from_file_location("protocol_pure_copy", FIRMWARE_DIR / "protocol.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module._hmac = None
    return module


def state_frame(counter=7, device_id="bay-1", key=KEY, state=protocol.STATE_OCCUPIED):
    body = protocol.state_body(state, 0, 1234, 1800)
    return protocol.encode(key, protocol.FRAME_STATE, device_id, counter, body)


def resign(signed, key=KEY):
    return signed + hmac.new(key, signed, hashlib.sha256).digest()


def test_state_frame_layout():
    frame = state_frame(counter=0x01020304)

    assert frame[0] == protocol.VERSION == 1
    assert frame[1] == protocol.FRAME_STATE
    assert frame[2] == 5
    assert frame[3:8] == b"bay-1"
    assert frame[8:12] == b"\x01\x02\x03\x04"
    assert frame[12:14] == b"\x00\x0a"
    assert len(frame) == 9 + 5 + 10 + 32
    assert frame[-32:] == hmac.new(KEY, frame[:-32], hashlib.sha256).digest()


def test_state_round_trip():
    frame = protocol.decode(state_frame(counter=9))

    assert frame.type == protocol.FRAME_STATE
    assert frame.device_id == "bay-1"
    assert frame.counter == 9
    assert frame.verify(KEY)
    assert not frame.verify(OTHER_KEY)
    assert protocol.parse_state(frame.body) == (protocol.STATE_OCCUPIED, 0, 1234, 1800)


def test_heartbeat_round_trip():
    body = protocol.heartbeat_body(86400, 3, 70000, -67, 2, 0x0101, "0.4.1")
    frame = protocol.decode(protocol.encode(KEY, protocol.FRAME_HEARTBEAT, "bay-1", 3, body))

    health = protocol.parse_heartbeat(frame.body)
    assert frame.verify(KEY)
    assert health == {
        "uptime_s": 86400,
        "reset_cause": 3,
        "free_heap": 70000,
        "rssi_dbm": -67,
        "outbox_depth": 2,
        "fault_flags": 0x0101,
        "firmware": "0.4.1",
    }


def test_heartbeat_clamps_fields():
    health = protocol.parse_heartbeat(protocol.heartbeat_body(2**32 + 5, 0, 1, -300, 10**6, 0, ""))
    assert health["uptime_s"] == 5
    assert health["rssi_dbm"] == -128
    assert health["outbox_depth"] == 0xFFFF
    assert health["firmware"] == ""


def test_heartbeat_version_cut_on_character():
    body = protocol.heartbeat_body(1, 0, 1, 0, 0, 0, "v" + "é" * 40)
    firmware = protocol.parse_heartbeat(body)["firmware"]
    assert firmware == "v" + "é" * 15
    assert len(firmware.encode()) == 31


def test_ack_round_trip():
    frame = protocol.decode(protocol.encode(KEY, protocol.FRAME_ACK, "bay-1", 12, protocol.ack_body(protocol.ACK_STORED)))
    assert frame.type == protocol.FRAME_ACK
    assert frame.counter == 12
    assert protocol.parse_ack(frame.body) == protocol.ACK_STORED


@pytest.mark.parametrize("size", [32, 1, 0])
@pytest.mark.parametrize("device_id", ["b", "bay-0001", "x" * 32])
def test_pure_hmac_matches_stdlib(device_id, size):
    pure = load_pure_protocol()
    body = bytes(range(size))
    expected = protocol.encode(KEY, protocol.FRAME_STATE, device_id, 2**32 - 1, body)
    assert pure.encode(KEY, protocol.FRAME_STATE, device_id, 2**32 - 1, body) == expected


def test_pure_tags_equal_matches_stdlib():
    pure = load_pure_protocol()
    tag = hmac.new(KEY, b"x", hashlib.sha256).digest()
    for module in (pure, protocol):
        assert module.tags_equal(tag, bytes(tag))
        for index in range(protocol.TAG_SIZE):
            changed = bytearray(tag)
            changed[index] ^= 0x01
            assert not module.tags_equal(tag, bytes(changed))


@pytest.mark.parametrize("tag", [b"", b"\x00", b"\x00" * 16, b"\x00" * 31, b"\x00" * 33])
def test_tags_equal_rejects_wrong_length(tag):
    assert not protocol.tags_equal(tag, tag)
    assert not protocol.tags_equal(b"\x00" * 32, tag)
    assert not load_pure_protocol().tags_equal(b"\x00" * 32, tag)


def test_wrong_key_size_raises():
    with pytest.raises(ValueError, match="key must be 32 bytes"):
        state_frame(key=b"short")


@pytest.mark.parametrize(
    "device_id, body, counter, message",
    [
        ("", b"", 1, "device id must be"),
        ("x" * 33, b"", 1, "device id must be"),
        ("bay", b"x" * 129, 1, "body must be at most"),
        ("bay", b"", -1, "counter must fit"),
        ("bay", b"", 2**32, "counter must fit"),
    ],
)
def test_encode_rejects_out_of_range(device_id, body, counter, message):
    with pytest.raises(ValueError, match=message):
        protocol.encode(KEY, protocol.FRAME_STATE, device_id, counter, body)


def corrupt(frame, offset, value):
    changed = bytearray(frame)
    changed[offset] = value
    return bytes(changed)


VALID = state_frame()
LONG_ID = state_frame(device_id="bay-" + "9" * 28)

DECODE_CASES = [
    ("empty", b"", protocol.REASON_TOO_SHORT),
    ("truncated to header", VALID[:20], protocol.REASON_TOO_SHORT),
    ("truncated tag", VALID[:-5], protocol.REASON_BAD_LENGTH),
    ("empty tag, short frame", VALID[:-32], protocol.REASON_TOO_SHORT),
    ("empty tag", LONG_ID[:-32], protocol.REASON_BAD_LENGTH),
    ("half tag", LONG_ID[:-16], protocol.REASON_BAD_LENGTH),
    ("extra byte", VALID + b"\x00", protocol.REASON_BAD_LENGTH),
    ("oversized", VALID + b"\x00" * 200, protocol.REASON_TOO_LONG),
    ("version 0", corrupt(VALID, 0, 0), protocol.REASON_BAD_VERSION),
    ("version 2", corrupt(VALID, 0, 2), protocol.REASON_BAD_VERSION),
    ("type 0", corrupt(VALID, 1, 0), protocol.REASON_BAD_TYPE),
    ("type 4", corrupt(VALID, 1, 4), protocol.REASON_BAD_TYPE),
    ("id length 0", corrupt(VALID, 2, 0), protocol.REASON_BAD_LENGTH),
    ("id length 33", corrupt(VALID, 2, 33), protocol.REASON_BAD_LENGTH),
    ("id length past end", corrupt(VALID[:45], 2, 32), protocol.REASON_BAD_LENGTH),
    ("body length 0xffff", VALID[:12] + b"\xff\xff" + VALID[14:], protocol.REASON_BAD_LENGTH),
    ("body length short", VALID[:12] + b"\x00\x09" + VALID[14:], protocol.REASON_BAD_LENGTH),
    ("id not UTF-8", resign(bytes([1, 1, 2]) + b"\xff\xfe" + VALID[8:-32]), protocol.REASON_BAD_TEXT),
]


@pytest.mark.parametrize("name, datagram, reason", DECODE_CASES, ids=[case[0] for case in DECODE_CASES])
def test_decode_rejects(name, datagram, reason):
    with pytest.raises(protocol.FrameError) as raised:
        protocol.decode(datagram)
    assert raised.value.reason == reason


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"", protocol.REASON_BAD_LENGTH),
        (protocol.state_body(1, 0, 0, 0)[:-1], protocol.REASON_BAD_LENGTH),
        (bytes([3]) + bytes(9), protocol.REASON_BAD_BODY),
        (bytes([255]) + bytes(9), protocol.REASON_BAD_BODY),
    ],
)
def test_parse_state_rejects(body, reason):
    with pytest.raises(protocol.FrameError) as raised:
        protocol.parse_state(body)
    assert raised.value.reason == reason


def heartbeat_with(fw_len, firmware):
    return struct.pack("!IBIbHHB", 1, 0, 1, 0, 0, 0, fw_len) + firmware


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"\x00" * 14, protocol.REASON_BAD_LENGTH),
        (heartbeat_with(3, b"ab"), protocol.REASON_BAD_LENGTH),
        (heartbeat_with(1, b"ab"), protocol.REASON_BAD_LENGTH),
        (heartbeat_with(40, b"a" * 40), protocol.REASON_BAD_LENGTH),
        (heartbeat_with(2, b"\xc3\x28"), protocol.REASON_BAD_TEXT),
        (heartbeat_with(1, b"\xff"), protocol.REASON_BAD_TEXT),
    ],
)
def test_parse_heartbeat_rejects(body, reason):
    with pytest.raises(protocol.FrameError) as raised:
        protocol.parse_heartbeat(body)
    assert raised.value.reason == reason


def test_parse_ack_rejects_wrong_size():
    with pytest.raises(protocol.FrameError):
        protocol.parse_ack(b"")
    with pytest.raises(protocol.FrameError):
        protocol.parse_ack(b"\x00\x00")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=260))
def test_decode_fuzz_raises_only_frame_error(datagram):
    try:
        frame = protocol.decode(datagram)
    except protocol.FrameError as error:
        assert error.reason in {
            protocol.REASON_TOO_SHORT,
            protocol.REASON_TOO_LONG,
            protocol.REASON_BAD_LENGTH,
            protocol.REASON_BAD_VERSION,
            protocol.REASON_BAD_TYPE,
            protocol.REASON_BAD_TEXT,
        }
        return
    assert not frame.verify(KEY)


@settings(max_examples=200, deadline=None)
@given(
    frame_type=st.sampled_from([protocol.FRAME_STATE, protocol.FRAME_HEARTBEAT, protocol.FRAME_ACK]),
    device_id=st.text(min_size=1, max_size=8),
    counter=st.integers(0, 2**32 - 1),
    body=st.binary(max_size=protocol.MAX_BODY),
)
def test_encode_decode_fuzz_round_trip(frame_type, device_id, counter, body):
    if not 0 < len(device_id.encode()) <= protocol.MAX_DEVICE_ID:
        return
    frame = protocol.decode(protocol.encode(KEY, frame_type, device_id, counter, body))
    assert frame.type == frame_type
    assert frame.device_id == device_id
    assert frame.counter == counter
    assert frame.body == body
    assert frame.verify(KEY)


@settings(max_examples=300, deadline=None)
@given(offset=st.integers(0, len(VALID) - 1), flip=st.integers(1, 255))
def test_any_changed_byte_fails(offset, flip):
    changed = corrupt(VALID, offset, VALID[offset] ^ flip)
    try:
        frame = protocol.decode(changed)
    except protocol.FrameError:
        return
    assert not frame.verify(KEY)
