"""The on-board self-test: the sensor returns a reading, and the gateway acknowledges a heartbeat.

The test runs as one exec on the board, through the firmware's own modules: the board layer
reads the sensor once, and the uplink sends heartbeats framed by the firmware's protocol
module until the gateway's acknowledgement arrives. An acknowledgement carries an HMAC under
the device's key, so it also proves that the gateway has loaded the key that provision wrote.
Heartbeat counters come from the firmware's Counter, so the node's own frames after the
restart stay above them.
"""

import ast
import logging

from ..device import printed_tail
from ..errors import DeviceError

log = logging.getLogger(__name__)

# How long a sensor just started may report no data before the test judges it (ms). A
# QMC5883L's first sample comes one output period after it is configured, 100 ms at its
# slowest rate of 10 Hz, so this allows ten periods.
FIRST_SAMPLE_TIMEOUT_MS = 1000
# How long the board may take to join Wi-Fi (ms). An ESP32 station usually associates and gets
# an address in 2 to 5 s (an estimate), and a busy access point can take longer.
WIFI_TIMEOUT_MS = 20000
# How long to wait for the acknowledgement (ms): the gateway reads new keys from the registry
# every 0.25 s by default, so the first heartbeat after provisioning may go unanswered.
ACK_TIMEOUT_MS = 5000
# Pause between two heartbeats while no acknowledgement came (ms). Short, so the test ends soon
# after the gateway reads the key. That usually takes under 0.25 s, so two or three heartbeats
# go out, well inside the gateway's default burst of 20 frames per device.
RESEND_MS = 100
# The host's limit for the whole exec (s): the on-board limits plus the imports.
EXEC_TIMEOUT_S = (FIRST_SAMPLE_TIMEOUT_MS + WIFI_TIMEOUT_MS + ACK_TIMEOUT_MS) / 1000 + 10

# Runs on MicroPython. Prints one dict literal as its last line. It makes no watchdog, so the
# node's watchdog is not armed by the test.
BOARD_CODE = """
def _selftest(first_sample_ms, wifi_timeout_ms, ack_timeout_ms, resend_ms):
    import gc
    from time import sleep_ms, ticks_diff, ticks_ms

    import board
    import config
    import node
    import protocol
    from counter import Counter
    from detector import FAULT_NAMES, FAULT_NO_DATA
    from link import Uplink

    settings = config.load()
    result = {"device_id": settings["device_id"]}
    sensor = board.make_sensor(settings["board"]["sensor"])
    started = ticks_ms()
    value, fault = sensor.read()
    while fault == FAULT_NO_DATA and ticks_diff(ticks_ms(), started) < first_sample_ms:
        sleep_ms(10)
        value, fault = sensor.read()
    result["sensor_value"] = value
    result["sensor_fault"] = fault
    result["sensor_fault_name"] = FAULT_NAMES[fault] if 0 <= fault < len(FAULT_NAMES) else "unknown"
    result["sensor_wait_ms"] = ticks_diff(ticks_ms(), started)

    uplink = Uplink(settings["device_id"], settings["key"], settings["gateway"], settings.get("wifi", {}))
    started = ticks_ms()
    while not uplink.up():
        if ticks_diff(ticks_ms(), started) > wifi_timeout_ms:
            result["wifi"] = False
            return result
        sleep_ms(50)
    result["wifi"] = True

    counter = Counter()
    started = ticks_ms()
    result["heartbeats"] = 0
    result["acked"] = False
    while ticks_diff(ticks_ms(), started) < ack_timeout_ms:
        number = counter.next()
        body = protocol.heartbeat_body(0, board.reset_cause(), gc.mem_free(), uplink.rssi(), 0, 0, node.VERSION)
        uplink.send(protocol.encode(settings["key"], protocol.FRAME_HEARTBEAT, settings["device_id"], number, body))
        result["heartbeats"] += 1
        sent = ticks_ms()
        while ticks_diff(ticks_ms(), sent) < resend_ms:
            if uplink.receive_ack() == number:
                result["acked"] = True
                result["ack_ms"] = ticks_diff(ticks_ms(), started)
                return result
            sleep_ms(5)
    return result


print(repr(_selftest(%d, %d, %d, %d)))
del _selftest
""" % (FIRST_SAMPLE_TIMEOUT_MS, WIFI_TIMEOUT_MS, ACK_TIMEOUT_MS, RESEND_MS)


class SelfTestError(DeviceError):
    """The board's sensor or its link to the gateway failed the self-test."""


def run(device, device_id):
    """Run the self-test on a provisioned board; return its result dict or raise SelfTestError."""
    output = device.exec(BOARD_CODE, timeout=EXEC_TIMEOUT_S).decode(errors="replace").strip()
    last = output.splitlines()[-1] if output else ""
    try:
        result = ast.literal_eval(last)
    except (ValueError, SyntaxError):
        raise SelfTestError(
            "the self-test on %s printed no result" % device.port, "%s Deploy again." % printed_tail(output.encode())
        ) from None
    log.debug("self-test on %s: %r", device.port, result)

    if result.get("device_id") != device_id:
        raise SelfTestError(
            "the board on %s is provisioned as %r, not %r" % (device.port, result.get("device_id"), device_id),
            "check which board is on this port, or provision it again",
        )
    if result["sensor_fault"]:
        raise SelfTestError(
            "sensor fault %d (%s) on %s after %d ms (value %r)"
            % (result["sensor_fault"], result["sensor_fault_name"], device.port, result["sensor_wait_ms"], result["sensor_value"]),
            "check the sensor's wiring and the board definition's pins",
        )
    if not result["wifi"]:
        raise SelfTestError(
            "the board on %s did not join Wi-Fi within %d s" % (device.port, WIFI_TIMEOUT_MS // 1000),
            "check the Wi-Fi network and password the board was provisioned with, and the signal at the bay",
        )
    if not result["acked"]:
        raise SelfTestError(
            "the gateway did not acknowledge %d heartbeats from %s within %d s"
            % (result["heartbeats"], device_id, ACK_TIMEOUT_MS // 1000),
            "check that a gateway listens at the address the board was provisioned with, and reads this registry",
        )
    return result
