# The node's uplink: Wi-Fi station and the UDP socket to the gateway.
#
# Failures never raise out of here: the main loop keeps sensing while the link is down, and
# the outbox keeps every change until the link is back.

import socket
from time import ticks_add, ticks_diff, ticks_ms

import network
import protocol

# Wi-Fi reconnect back-off, in ms: doubled after each failed attempt up to the maximum.
WIFI_RETRY_MIN_MS = 1000
WIFI_RETRY_MAX_MS = 60000
ACK_BUFFER = 128


class Uplink:
    def __init__(self, device_id, key, gateway, wifi):
        self._device_id = device_id
        self._key = key
        host, port = gateway.rsplit(":", 1)
        self._gateway_host = host
        self._gateway_port = int(port)
        self._address = None
        self._socket = None
        self._wifi = wifi
        self._wlan = network.WLAN(network.STA_IF)
        self._wlan.active(True)
        self._wifi_retry_ms = WIFI_RETRY_MIN_MS
        self._wifi_next = ticks_ms()
        self.send_errors = 0
        self.reconnects = 0

    def up(self):
        """Return True when the Wi-Fi link is up; start a (backed-off) reconnect when it is not."""
        if self._wlan.isconnected():
            self._wifi_retry_ms = WIFI_RETRY_MIN_MS
            return True
        now = ticks_ms()
        if ticks_diff(now, self._wifi_next) >= 0:
            self.reconnects += 1
            try:
                self._wlan.connect(self._wifi.get("ssid", ""), self._wifi.get("password", ""))
            except OSError as error:
                print("link: Wi-Fi connect failed:", error)
            self._wifi_next = ticks_add(now, self._wifi_retry_ms)
            self._wifi_retry_ms = min(self._wifi_retry_ms * 2, WIFI_RETRY_MAX_MS)
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
        except OSError:
            # A new socket next time: after some errors (a lost route, a reset interface) an
            # ESP32 socket stays unusable.
            self.send_errors += 1
            self._close()
            return False

    def receive_ack(self):
        """Return the counter of an authentic acknowledgement waiting on the socket, else -1."""
        if self._socket is None:
            return -1
        try:
            datagram = self._socket.recv(ACK_BUFFER)
        except OSError:
            return -1  # EAGAIN: nothing waiting
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
