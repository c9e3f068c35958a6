"""The protocol module on the MicroPython unix port gives the same bytes and verdicts as CPython.

One check script runs under both interpreters; MicroPython computes HMAC with its own code
over hashlib.sha256, CPython with the hmac module, so equal output proves the two agree.
"""

import subprocess
import sys

import pytest

from baysense.paths import FIRMWARE_DIR, micropython_command

# Seconds for one interpreter run of the check script.
RUN_TIMEOUT_S = 60

CHECKS = r"""
import sys
sys.path.insert(0, FIRMWARE)
import binascii
import protocol

KEY = bytes(range(32))


def show(name, value):
    print(name, value)


def hexed(data):
    return binascii.hexlify(data).decode()


def reason(datagram):
    try:
        protocol.decode(datagram)
    except protocol.FrameError as error:
        return error.reason
    return "decoded"


for device_id, counter, size in (("b", 0, 0), ("bay-0001", 1, 10), ("x" * 32, 0xFFFFFFFF, 128)):
    body = bytes([i & 0xFF for i in range(size)])
    show("frame", hexed(protocol.encode(KEY, protocol.FRAME_STATE, device_id, counter, body)))

state = protocol.encode(KEY, protocol.FRAME_STATE, "bay-1", 7, protocol.state_body(1, 2, 3000, -1800))
frame = protocol.decode(state)
show("state", protocol.parse_state(frame.body))
show("verify", frame.verify(KEY))
show("verify_other", frame.verify(bytes(32)))

beat = protocol.heartbeat_body(90000, 4, 71000, -300, 70000, 3, "v" + "\u00e9" * 40)
show("heartbeat", hexed(beat))
health = protocol.parse_heartbeat(beat)
# repr() of non-ASCII text differs between the two interpreters, so the version goes as hex.
show("firmware", hexed(health.pop("firmware").encode()))
show("health", sorted(health.items()))

ack = protocol.decode(protocol.encode(KEY, protocol.FRAME_ACK, "bay-1", 7, protocol.ack_body(protocol.ACK_STORED)))
show("ack", (ack.type, ack.counter, protocol.parse_ack(ack.body), ack.verify(KEY)))

long_frame = protocol.encode(KEY, protocol.FRAME_STATE, "y" * 32, 1, protocol.state_body(0, 0, 0, 0))
bad_utf8 = bytes([1, 1, 2]) + b"\xff\xfe" + state[8:]
show("too_short", reason(state[:20]))
show("truncated", reason(state[:-5]))
show("empty_tag", reason(long_frame[:-32]))
show("oversized", reason(state + bytes(200)))
show("body_len", reason(state[:12] + b"\xff\xff" + state[14:]))
show("version", reason(bytes([2]) + state[1:]))
show("type", reason(state[:1] + bytes([9]) + state[2:]))
show("id_len", reason(state[:2] + bytes([0]) + state[3:]))
show("utf8", reason(bad_utf8))

tag = frame.tag
changed = bytearray(tag)
changed[31] ^= 1
show("tags", (protocol.tags_equal(tag, tag), protocol.tags_equal(tag, bytes(changed)), protocol.tags_equal(b"", b""), protocol.tags_equal(tag[:16], tag[:16])))

for body in (b"", bytes([3]) + bytes(9)):
    try:
        protocol.parse_state(body)
        show("parse_state", "parsed")
    except protocol.FrameError as error:
        show("parse_state", error.reason)
try:
    protocol.parse_heartbeat(beat[:-1])
except protocol.FrameError as error:
    show("parse_heartbeat", error.reason)
show("done", 1)
"""


def run_checks(command):
    script = "FIRMWARE = %r\n" % str(FIRMWARE_DIR) + CHECKS
    result = subprocess.run(command + ["-c", script], capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


@pytest.fixture(scope="module")
def micropython_lines():
    return run_checks(micropython_command())


@pytest.fixture(scope="module")
def cpython_lines():
    return run_checks([sys.executable])


def test_micropython_matches_cpython(micropython_lines, cpython_lines):
    assert micropython_lines[-1] == "done 1"
    assert len(micropython_lines) == len(cpython_lines)
    for micro, reference in zip(micropython_lines, cpython_lines):
        assert micro == reference


def test_micropython_verdicts(micropython_lines):
    results = dict(line.split(" ", 1) for line in micropython_lines if not line.startswith(("frame ", "parse_state ")))
    assert results["verify"] == "True"
    assert results["verify_other"] == "False"
    assert results["too_short"] == "too_short"
    assert results["truncated"] == "bad_length"
    assert results["empty_tag"] == "bad_length"
    assert results["oversized"] == "too_long"
    assert results["body_len"] == "bad_length"
    assert results["version"] == "bad_version"
    assert results["type"] == "bad_type"
    assert results["id_len"] == "bad_length"
    assert results["utf8"] == "bad_text"
    assert results["tags"] == "(True, False, False, False)"
    assert results["parse_heartbeat"] == "bad_length"


def test_micropython_state_body(micropython_lines):
    assert "state (1, 2, 3000, -1800)" in micropython_lines
    assert "parse_state bad_length" in micropython_lines
    assert "parse_state bad_body" in micropython_lines
