# Baysense wire protocol: one file for both sides.
#
# The node firmware imports this module on MicroPython and the gateway imports the same file on
# CPython, so it uses only what both have: struct, hashlib.sha256 and bytes operations. Where the
# `hmac` module exists (CPython), HMAC and tag comparison use its C code instead, which gives the
# same tags (tests check both paths) and lets the gateway verify thousands of frames a second.
# docs/protocol.md specifies every frame field by field.
#
# Every frame is
#   version u8 | type u8 | id_len u8 | device_id (id_len bytes, UTF-8) | counter u32 |
#   body_len u16 | body (body_len bytes) | tag (32 bytes)
# in network byte order (big-endian). The tag is HMAC-SHA256 under the device's 32-byte key over
# every byte before it.

import struct
import hashlib

try:
    # CPython's C implementation, so the gateway verifies fast; the node computes HMAC below.
    # A port with a partial `hmac`, such as micropython-lib's, falls back to the code below too.
    import hmac as _hmac

    _hmac.digest
    _hmac.compare_digest
except (ImportError, AttributeError):  # the MicroPython ports have no hmac module
    _hmac = None

try:
    from micropython import const
except ImportError:  # CPython

    def const(value):
        return value


VERSION = const(1)

FRAME_STATE = const(1)
FRAME_HEARTBEAT = const(2)
FRAME_ACK = const(3)

STATE_VACANT = const(0)
STATE_OCCUPIED = const(1)
STATE_FAULT = const(2)
STATE_NAMES = ("vacant", "occupied", "fault")

ACK_STORED = const(0)  # stored now, or already stored (a retransmission)

KEY_SIZE = const(32)
TAG_SIZE = const(32)
MAX_DEVICE_ID = const(32)
MAX_BODY = const(128)
HEADER_FIXED = const(9)  # version, type, id_len, counter, body_len
MIN_FRAME = const(HEADER_FIXED + 1 + TAG_SIZE)
MAX_FRAME = const(HEADER_FIXED + MAX_DEVICE_ID + MAX_BODY + TAG_SIZE)

# State body: state u8 | reason u8 | detected_ms u32 (node uptime when the change was decided) |
# value i32 (the filtered reading behind the decision, in the sensor's unit).
_STATE_BODY = "!BBIi"
STATE_BODY_SIZE = const(10)

# Heartbeat body: uptime_s u32 | reset_cause u8 | free_heap u32 | rssi_dbm i8 |
# outbox_depth u16 | fault_flags u16 | fw_len u8 | firmware version (fw_len bytes, UTF-8).
_HEARTBEAT_FIXED = "!IBIbHHB"
HEARTBEAT_FIXED_SIZE = const(15)

# Ack body: status u8.
_ACK_BODY = "!B"


# FrameError reasons, stable names that the gateway counts rejections under.
REASON_TOO_SHORT = "too_short"
REASON_TOO_LONG = "too_long"
REASON_BAD_LENGTH = "bad_length"  # a length field disagrees with the datagram's size
REASON_BAD_VERSION = "bad_version"
REASON_BAD_TYPE = "bad_type"
REASON_BAD_TEXT = "bad_text"  # text that is not valid UTF-8
REASON_BAD_BODY = "bad_body"  # a body whose fields are out of range for its frame type


class FrameError(ValueError):
    """A datagram that is not a valid frame; the message names the field, `reason` the check."""

    def __init__(self, message, reason=REASON_BAD_BODY):
        super().__init__(message)
        self.reason = reason


def _hmac_sha256(key, message):
    # HMAC (RFC 2104) over hashlib.sha256, because MicroPython has no hmac module.
    if len(key) != KEY_SIZE:
        raise ValueError("key must be %d bytes, got %d" % (KEY_SIZE, len(key)))
    if _hmac is not None:
        return _hmac.digest(key, message, "sha256")
    inner_pad = bytearray(64)
    outer_pad = bytearray(64)
    for i in range(KEY_SIZE):
        inner_pad[i] = key[i] ^ 0x36
        outer_pad[i] = key[i] ^ 0x5C
    for i in range(KEY_SIZE, 64):
        inner_pad[i] = 0x36
        outer_pad[i] = 0x5C
    inner = hashlib.sha256(inner_pad)
    inner.update(message)
    outer = hashlib.sha256(outer_pad)
    outer.update(inner.digest())
    return outer.digest()


def tags_equal(a, b):
    """Compare two tags over their full length in time that does not depend on their content.

    A tag of any length other than TAG_SIZE, the empty tag included, never matches.
    """
    if len(a) != TAG_SIZE or len(b) != TAG_SIZE:
        return False
    if _hmac is not None:
        return _hmac.compare_digest(a, b)
    difference = 0
    for i in range(TAG_SIZE):
        difference |= a[i] ^ b[i]
    return difference == 0


def encode(key, frame_type, device_id, counter, body):
    """Build one authenticated frame; device_id is str, body is bytes."""
    ident = device_id.encode()
    if not 0 < len(ident) <= MAX_DEVICE_ID:
        raise ValueError("device id must be 1 to %d bytes: %r" % (MAX_DEVICE_ID, device_id))
    if len(body) > MAX_BODY:
        raise ValueError("body must be at most %d bytes, got %d" % (MAX_BODY, len(body)))
    if not 0 <= counter <= 0xFFFFFFFF:
        raise ValueError("counter must fit in 32 bits: %d" % counter)
    head = struct.pack("!BBB", VERSION, frame_type, len(ident)) + ident
    signed = head + struct.pack("!IH", counter, len(body)) + body
    return signed + _hmac_sha256(key, signed)


class Frame:
    """A parsed frame. verify() must succeed before any field is trusted."""

    def __init__(self, frame_type, device_id, counter, body, signed, tag):
        self.type = frame_type
        self.device_id = device_id
        self.counter = counter
        self.body = body
        self._signed = signed
        self.tag = tag

    def verify(self, key):
        """Return True when the tag is the HMAC of the frame under `key` (32 bytes)."""
        return tags_equal(_hmac_sha256(key, self._signed), self.tag)


def decode(datagram):
    """Parse a frame's fields without trusting them; raise FrameError on a malformed one."""
    size = len(datagram)
    if size < MIN_FRAME:
        raise FrameError("frame too short: %d bytes, minimum %d" % (size, MIN_FRAME), REASON_TOO_SHORT)
    if size > MAX_FRAME:
        raise FrameError("frame too long: %d bytes, maximum %d" % (size, MAX_FRAME), REASON_TOO_LONG)
    version, frame_type, id_len = struct.unpack_from("!BBB", datagram, 0)
    if version != VERSION:
        raise FrameError(
            "unknown protocol version %d (this side speaks %d)" % (version, VERSION), REASON_BAD_VERSION
        )
    if frame_type not in (FRAME_STATE, FRAME_HEARTBEAT, FRAME_ACK):
        raise FrameError("unknown frame type %d" % frame_type, REASON_BAD_TYPE)
    if not 0 < id_len <= MAX_DEVICE_ID:
        raise FrameError(
            "device id length %d out of range 1..%d" % (id_len, MAX_DEVICE_ID), REASON_BAD_LENGTH
        )
    offset = 3 + id_len
    if offset + 6 + TAG_SIZE > size:
        raise FrameError("device id length %d runs past the frame" % id_len, REASON_BAD_LENGTH)
    try:
        device_id = bytes(datagram[3:offset]).decode()
    except UnicodeError:
        raise FrameError("device id is not valid UTF-8", REASON_BAD_TEXT)
    counter, body_len = struct.unpack_from("!IH", datagram, offset)
    offset += 6
    if offset + body_len + TAG_SIZE != size:
        raise FrameError(
            "body length field %d does not match the frame (%d bytes of body and tag follow)"
            % (body_len, size - offset),
            REASON_BAD_LENGTH,
        )
    body = bytes(datagram[offset : offset + body_len])
    signed = bytes(datagram[: offset + body_len])
    tag = bytes(datagram[offset + body_len :])
    return Frame(frame_type, device_id, counter, body, signed, tag)


def state_body(state, reason, detected_ms, value):
    return struct.pack(_STATE_BODY, state, reason, detected_ms & 0xFFFFFFFF, value)


def parse_state(body):
    """Return (state, reason, detected_ms, value)."""
    if len(body) != STATE_BODY_SIZE:
        raise FrameError("state body must be %d bytes, got %d" % (STATE_BODY_SIZE, len(body)), REASON_BAD_LENGTH)
    state, reason, detected_ms, value = struct.unpack(_STATE_BODY, body)
    if state > STATE_FAULT:
        raise FrameError("unknown state %d" % state)
    return state, reason, detected_ms, value


MAX_FIRMWARE_VERSION = const(32)  # bytes of UTF-8 carried in a heartbeat


def _cut_utf8(text, limit):
    # Cut to `limit` bytes without splitting a character, so the gateway can decode the rest.
    data = text.encode()[:limit]
    while data:
        try:
            data.decode()
            return data
        except UnicodeError:
            data = data[:-1]
    return data


def heartbeat_body(uptime_s, reset_cause, free_heap, rssi_dbm, outbox_depth, fault_flags, version):
    fw = _cut_utf8(version, MAX_FIRMWARE_VERSION)
    fixed = struct.pack(
        _HEARTBEAT_FIXED,
        uptime_s & 0xFFFFFFFF,
        reset_cause,
        free_heap,
        max(-128, min(127, rssi_dbm)),
        min(outbox_depth, 0xFFFF),
        fault_flags,
        len(fw),
    )
    return fixed + fw


def parse_heartbeat(body):
    """Return a dict of the heartbeat's health fields."""
    if len(body) < HEARTBEAT_FIXED_SIZE:
        raise FrameError("heartbeat body too short: %d bytes" % len(body), REASON_BAD_LENGTH)
    fields = struct.unpack_from(_HEARTBEAT_FIXED, body, 0)
    fw_len = fields[6]
    if fw_len > MAX_FIRMWARE_VERSION or HEARTBEAT_FIXED_SIZE + fw_len != len(body):
        raise FrameError("heartbeat firmware version length %d does not match the body" % fw_len, REASON_BAD_LENGTH)
    try:
        version = body[HEARTBEAT_FIXED_SIZE:].decode()
    except UnicodeError:
        raise FrameError("heartbeat firmware version is not valid UTF-8", REASON_BAD_TEXT)
    return {
        "uptime_s": fields[0],
        "reset_cause": fields[1],
        "free_heap": fields[2],
        "rssi_dbm": fields[3],
        "outbox_depth": fields[4],
        "fault_flags": fields[5],
        "firmware": version,
    }


def ack_body(status):
    return struct.pack(_ACK_BODY, status)


def parse_ack(body):
    if len(body) != 1:
        raise FrameError("ack body must be 1 byte, got %d" % len(body), REASON_BAD_LENGTH)
    return body[0]
