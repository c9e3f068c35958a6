"""A simulated node in Python: sends frames over UDP and resends each until its ack arrives.

It speaks the protocol module like the firmware does, for tests, the bench and the demo.
"""

import os
import socket
import time

from .. import protocol
from ..registry import Registry

# Seconds between resends while no ack arrives.
RESEND_INTERVAL_S = 0.2


class AckTimeout(Exception):
    """No valid ack arrived for a frame within the time allowed."""


class SimNode:
    """One simulated device with its own UDP socket and a counter that only increases."""

    def __init__(self, device_id, key, gateway, counter=0, bind=("127.0.0.1", 0)):
        self.device_id = device_id
        self.key = key
        self.gateway = gateway
        self.counter = counter
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(bind)
        self.acked = []  # counters acknowledged by the gateway, in order
        self.sends = 0  # datagrams sent, resends included

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def state_frame(self, state, value=0, reason=0, detected_ms=0):
        """Build the next state frame (spends a counter value)."""
        self.counter += 1
        body = protocol.state_body(state, reason, detected_ms, value)
        return self.counter, protocol.encode(self.key, protocol.FRAME_STATE, self.device_id, self.counter, body)

    def heartbeat_frame(self, uptime_s=60, reset_cause=1, free_heap=50000, rssi_dbm=-60, outbox_depth=0, fault_flags=0, version="0.1.0"):
        """Build the next heartbeat frame (spends a counter value)."""
        self.counter += 1
        body = protocol.heartbeat_body(uptime_s, reset_cause, free_heap, rssi_dbm, outbox_depth, fault_flags, version)
        return self.counter, protocol.encode(self.key, protocol.FRAME_HEARTBEAT, self.device_id, self.counter, body)

    def send(self, frame):
        self.sock.sendto(frame, self.gateway)
        self.sends += 1

    def wait_ack(self, counter, timeout):
        """Return True when a valid ack for `counter` arrives within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.sock.settimeout(remaining)
            try:
                datagram = self.sock.recv(protocol.MAX_FRAME + 1)
            except socket.timeout:
                return False
            if self.is_ack(datagram, counter):
                self.acked.append(counter)
                return True

    def is_ack(self, datagram, counter):
        try:
            frame = protocol.decode(datagram)
        except protocol.FrameError:
            return False
        return (
            frame.type == protocol.FRAME_ACK
            and frame.device_id == self.device_id
            and frame.counter == counter
            and frame.verify(self.key)
            and protocol.parse_ack(frame.body) == protocol.ACK_STORED
        )

    def deliver(self, counter, frame, timeout=5.0, resend_s=RESEND_INTERVAL_S):
        """Send `frame` and resend it until acked; raise AckTimeout after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.send(frame)
            if self.wait_ack(counter, min(resend_s, max(0.0, deadline - time.monotonic()))):
                return
        raise AckTimeout("no ack from %s for %s #%d within %.1f s" % (self.gateway, self.device_id, counter, timeout))

    def report_state(self, state, value=0, timeout=5.0):
        counter, frame = self.state_frame(state, value)
        self.deliver(counter, frame, timeout)
        return counter

    def report_heartbeat(self, timeout=5.0, **health):
        counter, frame = self.heartbeat_frame(**health)
        self.deliver(counter, frame, timeout)
        return counter


def provision(registry_path, device_ids):
    """Put devices with fresh random keys into a registry; return {device_id: key}."""

    keys = {}
    with Registry(registry_path) as registry:
        for device_id in device_ids:
            keys[device_id] = os.urandom(protocol.KEY_SIZE)
            registry.put_device(device_id, keys[device_id])
    return keys
