# The board's `socket` on the virtual board: MicroPython's own, except that while the simulated
# Wi-Fi link is down (stimulus "link": false) datagrams are lost both ways, as over a dead
# radio link: sends fail with EHOSTUNREACH and receives see nothing.

import sys

_saved_path = sys.path
sys.path = []
try:
    import socket as _socket
    from socket import *  # noqa: F401,F403
finally:
    sys.path = _saved_path

import network

_EHOSTUNREACH = 113
_EAGAIN = 11
_ETIMEDOUT = 110


class socket:
    def __init__(self, af=_socket.AF_INET, kind=_socket.SOCK_STREAM, proto=0):
        self._socket = _socket.socket(af, kind, proto)
        self._timeout = None

    def settimeout(self, seconds):
        self._timeout = seconds
        self._socket.settimeout(seconds)

    def setblocking(self, flag):
        self._timeout = None if flag else 0
        self._socket.setblocking(flag)

    def _check_link(self):
        if not network.link_up():
            raise OSError(_EHOSTUNREACH)

    def sendto(self, data, address):
        self._check_link()
        return self._socket.sendto(data, address)

    def send(self, data):
        self._check_link()
        return self._socket.send(data)

    def _drain_while_down(self):
        # Drop whatever arrived over the dead link, then behave like a socket with nothing to read.
        self._socket.setblocking(False)
        try:
            while True:
                self._socket.recv(2048)
        except OSError:
            pass
        self._socket.settimeout(self._timeout)
        raise OSError(_EAGAIN if self._timeout == 0 else _ETIMEDOUT)

    def recvfrom(self, size):
        if not network.link_up():
            self._drain_while_down()
        return self._socket.recvfrom(size)

    def recv(self, size):
        if not network.link_up():
            self._drain_while_down()
        return self._socket.recv(size)

    def __getattr__(self, name):
        return getattr(self._socket, name)

    def close(self):
        self._socket.close()
