"""firmware/link.py run by the MicroPython unix port, over fake `network` and `socket` modules.

The fakes record what the uplink does: Wi-Fi connect attempts at simulated instants, and the
sockets it opens and closes. link.ticks_ms is replaced by a simulated clock, so the back-off
is checked over minutes of simulated time in a fraction of a second.
"""

import pytest

from node_harness import run_micropython

FAKE_NETWORK = """
STA_IF = 0
clock = [0]
connects = []
link_up = [False]


class WLAN:
    def __init__(self, interface=STA_IF):
        pass

    def active(self, state=None):
        return True

    def isconnected(self):
        return link_up[0]

    def connect(self, ssid, password):
        connects.append(clock[0])

    def status(self, name):
        return -60
"""

FAKE_SOCKET = """
AF_INET = 2
SOCK_DGRAM = 2
EHOSTUNREACH = 113
ECONNREFUSED = 111
EAGAIN = 11
opened = []
send_failures = [0]
receive_errno = [EAGAIN]
incoming = []


def getaddrinfo(host, port):
    return [(AF_INET, SOCK_DGRAM, 0, "", (host, port))]


class socket:
    def __init__(self, family, kind):
        self.closed = False
        self.sent = []
        opened.append(self)

    def setblocking(self, flag):
        pass

    def sendto(self, data, address):
        if send_failures[0]:
            send_failures[0] -= 1
            raise OSError(EHOSTUNREACH)
        self.sent.append(data)

    def recv(self, size):
        if incoming:
            return incoming.pop(0)
        raise OSError(receive_errno[0])

    def close(self):
        self.closed = True
"""

PRELUDE = """
import network
import socket
import link
import protocol
from link import Uplink

link.ticks_ms = lambda: network.clock[0]
KEY = bytes(range(32))
uplink = Uplink("bay-01", KEY, "127.0.0.1:5683", {"ssid": "lot", "password": "pw"}, 1000, 60000)

def advance_to(end, step=10):
    while network.clock[0] < end:
        network.clock[0] += step
        uplink.up()
"""


@pytest.fixture
def fakes(tmp_path):
    folder = tmp_path / "fakes"
    folder.mkdir()
    (folder / "network.py").write_text(FAKE_NETWORK)
    (folder / "socket.py").write_text(FAKE_SOCKET)
    return folder


def run(tmp_path, fakes, body):
    result = run_micropython(PRELUDE + body + "\nprint('PASS')\n", cwd=tmp_path, first_path=fakes)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert output.strip().endswith("PASS"), output


def test_wifi_reconnect_backs_off(tmp_path, fakes):
    run(
        tmp_path,
        fakes,
        """
uplink.up()
advance_to(400000)
times = network.connects
assert times[0] == 0, times
gaps = [times[i + 1] - times[i] for i in range(len(times) - 1)]
expected = 1000
for gap in gaps:
    assert expected <= gap <= expected * 5 // 4 + 10, (gap, expected, gaps)
    expected = min(expected * 2, 60000)
assert max(gaps) >= 60000, gaps
assert uplink.reconnects == len(times)
""",
    )


def test_wifi_backoff_restarts_after_link_up(tmp_path, fakes):
    run(
        tmp_path,
        fakes,
        """
uplink.up()
advance_to(20000)
network.link_up[0] = True
assert uplink.up()
network.connects.clear()
network.link_up[0] = False
start = network.clock[0]
advance_to(start + 5000)
times = network.connects
assert times[0] - start <= 10, "no reconnect right after the link fell: %s" % times
assert 1000 <= times[1] - times[0] <= 1260, times
assert uplink.outages == 1
""",
    )


def test_new_socket_after_send_error(tmp_path, fakes):
    run(
        tmp_path,
        fakes,
        """
network.link_up[0] = True
assert uplink.up()
socket.send_failures[0] = 1
assert not uplink.send(b"frame-1")
assert uplink.send_errors == 1
assert len(socket.opened) == 1
assert socket.opened[0].closed, "the failed socket was not closed"
assert uplink.send(b"frame-1")
assert len(socket.opened) == 2, "no new socket after the error"
assert socket.opened[1].sent == [b"frame-1"]
assert uplink.send(b"frame-2")
assert len(socket.opened) == 2, "a working socket was replaced"
""",
    )


def test_new_socket_after_receive_error(tmp_path, fakes):
    run(
        tmp_path,
        fakes,
        """
network.link_up[0] = True
uplink.up()
assert uplink.send(b"frame")
assert uplink.receive_ack() == -1
assert uplink.receive_errors == 0, "EAGAIN (nothing waiting) is not an error"
assert not socket.opened[0].closed
socket.receive_errno[0] = socket.ECONNREFUSED
assert uplink.receive_ack() == -1
assert uplink.receive_errors == 1
assert socket.opened[0].closed
assert uplink.send(b"frame")
assert len(socket.opened) == 2
""",
    )


def test_socket_closed_when_link_falls(tmp_path, fakes):
    run(
        tmp_path,
        fakes,
        """
network.link_up[0] = True
uplink.up()
assert uplink.send(b"frame")
network.link_up[0] = False
assert not uplink.up()
assert socket.opened[0].closed
""",
    )


def test_receive_ack_checks_device_and_tag(tmp_path, fakes):
    run(
        tmp_path,
        fakes,
        """
network.link_up[0] = True
uplink.up()
assert uplink.send(b"frame")
body = protocol.ack_body(protocol.ACK_STORED)
socket.incoming.append(protocol.encode(KEY, protocol.FRAME_ACK, "bay-01", 41, body))
socket.incoming.append(protocol.encode(bytes(32), protocol.FRAME_ACK, "bay-01", 42, body))
socket.incoming.append(protocol.encode(KEY, protocol.FRAME_ACK, "bay-02", 43, body))
socket.incoming.append(protocol.encode(KEY, protocol.FRAME_STATE, "bay-01", 44, protocol.state_body(1, 0, 0, 0)))
socket.incoming.append(b"\\x01\\x03garbage")
assert uplink.receive_ack() == 41
assert uplink.receive_ack() == -1, "an ack with another key's tag was accepted"
assert uplink.receive_ack() == -1, "an ack for another device was accepted"
assert uplink.receive_ack() == -1, "a frame that is not an ack was accepted"
assert uplink.receive_ack() == -1, "a malformed datagram was accepted"
""",
    )
