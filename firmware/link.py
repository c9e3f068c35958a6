# The node's uplink: the Wi-Fi station and the UDP socket to the gateway.
#
# Failures never raise out of here: the main loop keeps sensing while the link is down, and
# the outbox keeps every change until the link is back.

import random
import socket
from time import ticks_add, ticks_diff, ticks_ms

import network
import protocol

# Wi-Fi reconnect back-off, in ms: doubled after each failed attempt up to the maximum, plus up
# to a quarter of random jitter, so a site's nodes do not all retry an access point together.
WIFI_RETRY_MIN_MS = 1000
WIFI_RETRY_MAX_MS = 60000
ACK_BUFFER = 128  # bytes; an ack frame is at most 9 + 32 + 1 + 32 = 74
_EAGAIN = 11  # errno of a non-blocking recv with nothing waiting (EWOULDBLOCK is the same)


def with_jitter(delay_ms):
    """Return delay_ms plus a random 0 to 25 %."""
    return delay_ms + (random.getrandbits(16) * (delay_ms // 4) >> 16)


class Uplink:
    def __init__(self, device_id, key, gateway, wifi, retry_min_ms=WIFI_RETRY_MIN_MS, retry_max_ms=WIFI_RETRY_MAX_MS):
        self._device_id = device_id
        self._key = key
        host, port = gateway.rsplit(":", 1)
        self._gateway_host = host
        self._gateway_port = int(port)
        self._address = None
        self._socket = None
        self._wifi = wifi
        self._retry_min_ms = retry_min_ms
        self._retry_max_ms = retry_max_ms
        self._wlan = network.WLAN(network.STA_IF)
        self._wlan.active(True)
        self._wifi_retry_ms = retry_min_ms
        self._wifi_next = ticks_ms()
        self.connected = False
        self.send_errors = 0  # since boot
        self.receive_errors = 0  # since boot, EAGAIN not counted
        self.reconnects = 0  # Wi-Fi connect attempts since boot
        self.outages = 0  # times the link went down since boot

    def set_key(self, key):
        self._key = key

    def up(self):
        """Return True when the Wi-Fi link is up; start a backed-off reconnect when it is not."""
        if self._wlan.isconnected():
            if not self.connected:
                self.connected = True
                # The next outage starts with an immediate attempt and the shortest back-off,
                # not with what is left of this one's schedule.
                self._wifi_retry_ms = self._retry_min_ms
                self._wifi_next = ticks_ms()
                print("link: Wi-Fi up")
            return True

        if self.connected:
            self.connected = False
            self.outages += 1
            # The old socket may be bound to an interface address that is gone.
            self._close()
            print("link: Wi-Fi down")

        now = ticks_ms()
        if ticks_diff(now, self._wifi_next) >= 0:
            self.reconnects += 1
            try:
                self._wlan.connect(self._wifi.get("ssid", ""), self._wifi.get("password", ""))
            except OSError as error:
                print("link: Wi-Fi connect failed:", error)
            self._wifi_next = ticks_add(now, with_jitter(self._wifi_retry_ms))
            self._wifi_retry_ms = min(self._wifi_retry_ms * 2, self._retry_max_ms)
        return False

    def rssi(self):
        try:
            return self._wlan.status("rssi")
        except (OSError, ValueError):
            return -127

    def _open(self):
        if self._address is None:
            self._address = socket.getaddrinfo(self._gateway_host, self._gateway_port)[0][-1]
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        self._socket = sock

    def _close(self):
        if self._socket is not None:
            try:
                self._socket.close()
            except OSError:
                pass
        self._socket = None

    def send(self, frame):
        """Send one datagram; return True if it left the node."""
        try:
            if self._socket is None:
                self._open()
            self._socket.sendto(frame, self._address)
            return True
        except OSError as error:
            # A new socket next time: after some errors (a lost route, a reset interface) an
            # ESP32 socket stays unusable.
            self.send_errors += 1
            print("link: send failed:", error)
            self._close()
            return False

    def receive_ack(self):
        """Return the counter of an authentic acknowledgement waiting on the socket, else -1."""
        if self._socket is None:
            return -1
        try:
            datagram = self._socket.recv(ACK_BUFFER)
        except OSError as error:
            if error.args and error.args[0] != _EAGAIN:
                self.receive_errors += 1
                print("link: receive failed:", error)
                self._close()
            return -1
        try:
            frame = protocol.decode(datagram)
        except ValueError:
            return -1
        if frame.type != protocol.FRAME_ACK or frame.device_id != self._device_id:
            return -1
        if not frame.verify(self._key):
            print("link: ignored an acknowledgement with a bad tag")
            return -1
        return frame.counter
