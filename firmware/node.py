# The node's main loop: sense, decide, store, send, and keep the watchdog fed.
#
# One loop, no threads: each pass takes a sample when one is due, and services the uplink
# (resend the outbox head when its retry is due, read acknowledgements, send a heartbeat).
# Every state change goes to the outbox on flash before it is sent and leaves it only when
# the gateway acknowledges it, so changes reach the gateway in order, once, through outages
# and reboots.

import gc
import random
import time
from time import ticks_add, ticks_diff, ticks_ms

import board
import config
import protocol
from counter import Counter
from detector import Detector
from link import Uplink
from outbox import Outbox

VERSION = "0.1.0"

# Resend back-off for the outbox head, in ms: doubled after each unanswered send up to the
# maximum, each delay with up to a quarter of random jitter so that a site's nodes coming back
# from one outage do not resend in lockstep.
RETRY_MIN_MS = 250
RETRY_MAX_MS = 30000
HEARTBEAT_S = 60
WATCHDOG_MS = 30000
LOOP_SLEEP_MS = 5

# Heartbeat fault flags.
FAULT_FLAG_SENSOR = 0x01
FAULT_FLAG_OUTBOX_DROPPED = 0x02
FAULT_FLAG_LINK_ERRORS = 0x04


def _log(*parts):
    print("[%d]" % ticks_ms(), *parts)


class Node:
    def __init__(self, settings):
        self.device_id = settings["device_id"]
        self._key = settings["key"]
        board_def = settings["board"]
        sensor_settings = board_def["sensor"]
        detector_settings = dict(board_def["detector"])
        detector_settings["kind"] = sensor_settings["kind"]

        self.sensor = board.make_sensor(sensor_settings)
        self.detector = Detector(detector_settings)
        self.counter = Counter()
        self.outbox = Outbox()
        self.uplink = Uplink(self.device_id, self._key, settings["gateway"], settings.get("wifi", {}))
        self._sample_ms = sensor_settings.get("sample_period_ms", 250)
        self._heartbeat_ms = settings.get("heartbeat_s", HEARTBEAT_S) * 1000
        self._watchdog = board.watchdog(settings.get("watchdog_ms", WATCHDOG_MS))
        self._reset_cause = board.reset_cause()
        self._started = ticks_ms()

        now = ticks_ms()
        self._next_sample = now
        self._next_heartbeat = now
        self._retry_ms = RETRY_MIN_MS
        self._next_send = now
        self._in_flight = -1
        self.sent = 0
        self.acked = 0

    # -- sensing

    def sample(self, now):
        value, fault = self.sensor.read()
        if fault:
            changed = self.detector.fault(fault, now)
        else:
            changed = self.detector.update(value, now)
        if changed:
            self._report_state(now)

    def _report_state(self, now):
        detector = self.detector
        body = protocol.state_body(detector.state, detector.reason, now, detector.value)
        frame = protocol.encode(self._key, protocol.FRAME_STATE, self.device_id, self.counter.next(), body)
        self.outbox.append(frame)
        _log("bay:", protocol.STATE_NAMES[detector.state], "reason", detector.reason, "value", detector.value)
        self._next_send = now

    # -- the uplink

    def service_link(self, now):
        if not self.uplink.up():
            return

        acked = self.uplink.receive_ack()
        while acked >= 0:
            if self.outbox.ack(acked):
                self.acked += 1
                self._retry_ms = RETRY_MIN_MS
                self._in_flight = -1
                self._next_send = now
            acked = self.uplink.receive_ack()

        frame = self.outbox.head()
        if frame is not None:
            if ticks_diff(now, self._next_send) >= 0:
                if self.uplink.send(frame):
                    self.sent += 1
                jitter = random.getrandbits(16) * (self._retry_ms // 4) >> 16
                self._next_send = ticks_add(now, self._retry_ms + jitter)
                self._retry_ms = min(self._retry_ms * 2, RETRY_MAX_MS)
            return

        # Heartbeats go only while the outbox is empty: frames must reach the gateway in
        # counter order, and a heartbeat's counter is taken when it is sent.
        if ticks_diff(now, self._next_heartbeat) >= 0:
            self._next_heartbeat = ticks_add(now, self._heartbeat_ms)
            self.uplink.send(self._heartbeat())

    def _heartbeat(self):
        flags = 0
        if self.detector.state == protocol.STATE_FAULT:
            flags |= FAULT_FLAG_SENSOR
        if self.outbox.dropped:
            flags |= FAULT_FLAG_OUTBOX_DROPPED
        if self.uplink.send_errors:
            flags |= FAULT_FLAG_LINK_ERRORS
        body = protocol.heartbeat_body(
            ticks_diff(ticks_ms(), self._started) // 1000,
            self._reset_cause,
            gc.mem_free(),
            self.uplink.rssi(),
            len(self.outbox),
            flags,
            VERSION,
        )
        return protocol.encode(self._key, protocol.FRAME_HEARTBEAT, self.device_id, self.counter.next(), body)

    # -- the loop

    def run(self):
        _log("node", self.device_id, "firmware", VERSION, "reset cause", self._reset_cause, "outbox", len(self.outbox))
        while True:
            now = ticks_ms()
            if ticks_diff(now, self._next_sample) >= 0:
                self._next_sample = ticks_add(self._next_sample, self._sample_ms)
                if ticks_diff(now, self._next_sample) > 0:
                    self._next_sample = ticks_add(now, self._sample_ms)  # fell behind: skip
                self.sample(now)
            self.service_link(now)
            self._watchdog.feed()
            time.sleep_ms(LOOP_SLEEP_MS)


def main():
    try:
        settings = config.load()
    except config.ConfigError as error:
        # Stay in the REPL so the board can be provisioned.
        print("node:", error)
        return
    Node(settings).run()
