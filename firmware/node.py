# The node's main loop: sense, decide, store, send, and keep the watchdog fed.
#
# One loop, no threads: each pass takes a sample when one is due, and services the uplink
# (read acknowledgements, resend the outbox head when its retry is due, send a heartbeat).
# Every state change goes to the outbox on flash before it is sent and leaves it only when
# the gateway acknowledges it, so changes reach the gateway in order, once, through outages
# and reboots. docs/node.md describes the outbox, the counter and the timings.

import gc
import time
from time import ticks_add, ticks_diff, ticks_ms

import board
import config
import protocol
from counter import Counter
from detector import PHASE_CALIBRATING, Detector
from link import WIFI_RETRY_MAX_MS, WIFI_RETRY_MIN_MS, Uplink, with_jitter
from outbox import CAPACITY as OUTBOX_CAPACITY
from outbox import Outbox

VERSION = "0.2.0"

# Resend back-off for the outbox head, in ms: doubled after each unanswered send up to the
# maximum. Each delay gets up to a quarter of random jitter, so that a site's nodes coming back
# from one outage do not resend in lockstep. The back-off starts again from the minimum when an
# ack arrives and when the Wi-Fi link comes back.
RETRY_MIN_MS = 250
RETRY_MAX_MS = 30000
HEARTBEAT_S = 60
# The main loop must feed the watchdog within this long (ms). A sample takes at most a few
# hundred ms and nothing in the loop blocks on the network, so 30 s is only ever missed by a
# hung loop.
WATCHDOG_MS = 30000
LOOP_SLEEP_MS = 5  # idle time per pass, so the loop does not spin the CPU
# The outbox keeps its frames in RAM as well as on flash. 256 state frames of about 100 bytes
# each take about a quarter of the 110 KB heap MicroPython has on an ESP32 (an estimate).
MAX_OUTBOX = 256

# First delay before another heartbeat when the last one was not acknowledged, in ms; it
# doubles up to the heartbeat period.
HEARTBEAT_RETRY_MIN_MS = 2000

# Optional keys of config.json's "timing" object, with their defaults. Tests and simulations
# scale them down; a deployed node keeps the defaults.
TIMING_DEFAULTS = {
    "retry_min_ms": RETRY_MIN_MS,
    "retry_max_ms": RETRY_MAX_MS,
    "wifi_retry_min_ms": WIFI_RETRY_MIN_MS,
    "wifi_retry_max_ms": WIFI_RETRY_MAX_MS,
    "watchdog_ms": WATCHDOG_MS,
    "heartbeat_ms": HEARTBEAT_S * 1000,
}

# Heartbeat fault flags, a bit each.
FAULT_FLAG_SENSOR = 0x01  # the detector reports a sensor fault
FAULT_FLAG_OUTBOX_DROPPED = 0x02  # the outbox was full and dropped frames since boot
FAULT_FLAG_LINK_ERRORS = 0x04  # socket errors since the previous heartbeat
FAULT_FLAG_OUTBOX_DAMAGED = 0x08  # damaged or cut-off outbox records were dropped at boot
FAULT_FLAG_COUNTER_RECOVERED = 0x10  # the counter file was unreadable at boot


def _log(*parts):
    print("[%d]" % ticks_ms(), *parts)


def timing(settings):
    """Return the node's timings: TIMING_DEFAULTS overridden by config.json's "timing"."""
    values = dict(TIMING_DEFAULTS)
    # Top-level heartbeat_s (written by `baysense provision`) and watchdog_ms count unless
    # "timing" sets the same value.
    if "heartbeat_s" in settings:
        values["heartbeat_ms"] = int(settings["heartbeat_s"]) * 1000
    if "watchdog_ms" in settings:
        values["watchdog_ms"] = int(settings["watchdog_ms"])
    given = settings.get("timing") or {}
    for name in given:
        if name not in values:
            _log("node: ignoring unknown timing setting", name)
            continue
        values[name] = int(given[name])
    return values


def outbox_capacity(settings):
    """Return config.json's "outbox_capacity", or the default, kept within 1 to MAX_OUTBOX."""
    capacity = int(settings.get("outbox_capacity", OUTBOX_CAPACITY))
    if not 1 <= capacity <= MAX_OUTBOX:
        _log("node: outbox_capacity", capacity, "is outside 1 to", MAX_OUTBOX, "so", OUTBOX_CAPACITY, "is used")
        return OUTBOX_CAPACITY
    return capacity


def settle_ms(detector):
    """Return how long after boot the detector's state means something (ms).

    The longest of its decision delays and its fault delay: by then a car present at boot is
    decided, and a sensor broken at boot is reported as a fault instead of "vacant".
    """
    # The delays live on the detector or on its decision object, depending on the kind.
    delays = [0]
    for owner in (detector, getattr(detector, "decision", None)):
        for name in ("on_delay_ms", "off_delay_ms", "exit_min_ms", "fault_after_ms"):
            delays.append(getattr(owner, name, 0))
    return max(delays)


def resign(outbox, key, device_id):
    """Re-sign outbox frames whose tag does not verify under `key`; return how many changed.

    After a key rotation the outbox still contains frames signed with the old key, which the
    gateway no longer accepts. Each keeps its type, counter and body and gets a new tag.
    Frames of another device id (the board was given a new identity) are dropped: the new
    identity's gateway record does not own their history, and so are frames that no longer
    decode.
    """
    frames = []
    changed = 0
    for frame in outbox.frames:
        try:
            parsed = protocol.decode(frame)
        except ValueError as error:
            # Whole on flash (its CRC matched) but not a frame this firmware can send, such as
            # one from a firmware with another protocol version.
            _log("outbox: dropped a frame this firmware cannot send:", error)
            changed += 1
            continue
        if parsed.device_id != device_id:
            _log("outbox: dropped frame", parsed.counter, "of former device id", parsed.device_id)
            changed += 1
            continue
        if parsed.verify(key):
            frames.append(frame)
            continue
        frames.append(protocol.encode(key, parsed.type, device_id, parsed.counter, parsed.body))
        changed += 1
    if changed:
        outbox.replace(frames)
    return changed


class Node:
    def __init__(self, settings):
        self.device_id = settings["device_id"]
        self._key = settings["key"]
        self.timing = timing(settings)
        board_def = settings["board"]
        sensor_settings = board_def["sensor"]
        detector_settings = dict(board_def["detector"])
        detector_settings["kind"] = sensor_settings["kind"]

        # The watchdog first, so that a fault while loading the state below (a damaged file,
        # a full filesystem) ends in a reset instead of an idle REPL.
        self._watchdog = board.watchdog(self.timing["watchdog_ms"])

        # Flash state next: the outbox gives the counter the values already used.
        self.outbox = Outbox(capacity=outbox_capacity(settings))
        resigned = resign(self.outbox, self._key, self.device_id)
        if resigned:
            _log("outbox: re-signed or dropped", resigned, "frame(s) for the current key and id")
        self.counter = Counter(floor=self.outbox.last_counter() + 1)

        self.sensor = board.make_sensor(sensor_settings)
        self.detector = Detector(detector_settings)
        self.uplink = Uplink(
            self.device_id,
            self._key,
            settings["gateway"],
            settings.get("wifi", {}),
            self.timing["wifi_retry_min_ms"],
            self.timing["wifi_retry_max_ms"],
        )
        self._sample_ms = sensor_settings.get("sample_period_ms", 250)
        self._heartbeat_ms = self.timing["heartbeat_ms"]
        self._retry_min_ms = self.timing["retry_min_ms"]
        self._retry_max_ms = self.timing["retry_max_ms"]
        self._reset_cause = board.reset_cause()
        # Uptime is counted in whole seconds: ticks_ms() wraps after 2**30 ms (12.4 days) on
        # the ESP32, and a millisecond count above 2**30 would be a heap-allocated integer.
        self.uptime_s = 0
        self._second_mark = ticks_ms()

        now = ticks_ms()
        self._next_sample = now
        # The detector starts out "vacant" without having seen anything, and reports only
        # changes. So once it has had time to decide, its state is reported even when it did
        # not change: a car that left during a power cut would otherwise stay "occupied" at
        # the gateway.
        self._boot_report_at = ticks_add(now, settle_ms(self.detector) + self._sample_ms)
        self._boot_report_due = True
        self._next_heartbeat = now
        self._heartbeat_counter = -1  # counter of the heartbeat awaiting its ack, or -1
        self._heartbeat_sent = now
        self._heartbeat_retry_ms = HEARTBEAT_RETRY_MIN_MS
        self._retry_ms = self._retry_min_ms
        self._next_send = now
        self._link_errors_reported = 0
        self.sent = 0  # outbox frames sent, retransmissions included
        self.acked = 0

    # -- sensing

    def sample(self, now):
        sensor = self.sensor
        fault = sensor.sample()  # allocation-free: the reading is left in sensor.value
        if fault:
            changed = self.detector.fault(fault, now)
        else:
            changed = self.detector.update(sensor.value, now)
        if changed:
            self._report_state(now)
        elif self._boot_report_due and ticks_diff(now, self._boot_report_at) >= 0:
            if self.detector.phase != PHASE_CALIBRATING:
                _log("bay: first decision since boot")
                self._report_state(now)

    def _report_state(self, now):
        self._boot_report_due = False
        detector = self.detector
        uptime_ms = self.uptime_s * 1000 + ticks_diff(now, self._second_mark)
        body = protocol.state_body(detector.state, detector.reason, uptime_ms, detector.value)
        counter = self.counter.next()
        frame = protocol.encode(self._key, protocol.FRAME_STATE, self.device_id, counter, body)
        self.outbox.append(frame)
        _log("bay:", protocol.STATE_NAMES[detector.state], "reason", detector.reason, "value", detector.value, "counter", counter)
        # A new head goes out at once; a new frame behind an unanswered head waits its turn.
        if len(self.outbox) == 1:
            self._retry_ms = self._retry_min_ms
            self._next_send = now

    # -- the uplink

    def service_link(self, now):
        was_up = self.uplink.connected
        if not self.uplink.up():
            return
        if not was_up:
            # The link is back: whatever was backed off during the outage goes out now.
            self._retry_ms = self._retry_min_ms
            self._next_send = now

        acked = self.uplink.receive_ack()
        while acked >= 0:
            if acked == self._heartbeat_counter:
                # Acknowledged: back to the full period, counted from when it was sent.
                self._heartbeat_counter = -1
                self._heartbeat_retry_ms = HEARTBEAT_RETRY_MIN_MS
                self._next_heartbeat = ticks_add(self._heartbeat_sent, self._heartbeat_ms)
            elif self.outbox.ack(acked):
                self.acked += 1
                self._retry_ms = self._retry_min_ms
                self._next_send = now
            acked = self.uplink.receive_ack()

        frame = self.outbox.head()
        if frame is not None:
            if ticks_diff(now, self._next_send) >= 0:
                if self.uplink.send(frame):
                    self.sent += 1
                self._next_send = ticks_add(now, with_jitter(self._retry_ms))
                self._retry_ms = min(self._retry_ms * 2, self._retry_max_ms)
            return

        # Heartbeats go only while the outbox is empty: frames must reach the gateway in
        # counter order, and a heartbeat's counter is taken when it is sent. A lost heartbeat
        # is not resent, because the next one carries newer health. Until one is
        # acknowledged the next follows after a back-off instead of the full period, so a
        # gateway that missed one (restarting, or not yet aware of a new key) hears from the
        # node within seconds.
        if ticks_diff(now, self._next_heartbeat) >= 0:
            frame = self._heartbeat()
            self._heartbeat_counter = self.counter.value - 1
            self._heartbeat_sent = now
            self._next_heartbeat = ticks_add(now, min(self._heartbeat_retry_ms, self._heartbeat_ms))
            self._heartbeat_retry_ms = min(self._heartbeat_retry_ms * 2, self._heartbeat_ms)
            self.uplink.send(frame)

    def fault_flags(self):
        flags = 0
        if self.detector.state == protocol.STATE_FAULT:
            flags |= FAULT_FLAG_SENSOR
        if self.outbox.dropped:
            flags |= FAULT_FLAG_OUTBOX_DROPPED
        link_errors = self.uplink.send_errors + self.uplink.receive_errors
        if link_errors != self._link_errors_reported:
            flags |= FAULT_FLAG_LINK_ERRORS
        if self.outbox.damaged:
            flags |= FAULT_FLAG_OUTBOX_DAMAGED
        if self.counter.recovered:
            flags |= FAULT_FLAG_COUNTER_RECOVERED
        return flags

    def _heartbeat(self):
        flags = self.fault_flags()
        self._link_errors_reported = self.uplink.send_errors + self.uplink.receive_errors
        # Collect first, so free_heap is what the firmware can still allocate, not what
        # garbage happens to be waiting.
        gc.collect()
        body = protocol.heartbeat_body(
            self.uptime_s,
            self._reset_cause,
            gc.mem_free(),
            self.uplink.rssi(),
            len(self.outbox),
            flags,
            VERSION,
        )
        return protocol.encode(self._key, protocol.FRAME_HEARTBEAT, self.device_id, self.counter.next(), body)

    # -- the loop

    def step(self):
        """Run one pass of the main loop."""
        now = ticks_ms()
        while ticks_diff(now, self._second_mark) >= 1000:
            self._second_mark = ticks_add(self._second_mark, 1000)
            self.uptime_s += 1
        if ticks_diff(now, self._next_sample) >= 0:
            self._next_sample = ticks_add(self._next_sample, self._sample_ms)
            if ticks_diff(now, self._next_sample) > 0:
                self._next_sample = ticks_add(now, self._sample_ms)  # fell behind: skip
            self.sample(now)
        self.service_link(now)
        self._watchdog.feed()

    def run(self):
        _log(
            "node",
            self.device_id,
            "firmware",
            VERSION,
            "reset cause",
            self._reset_cause,
            "outbox",
            len(self.outbox),
            "counter",
            self.counter.value,
        )
        while True:
            self.step()
            time.sleep_ms(LOOP_SLEEP_MS)


def main():
    try:
        settings = config.load()
    except config.ConfigError as error:
        # Stay in the REPL so the board can be provisioned.
        print("node:", error)
        return
    Node(settings).run()
