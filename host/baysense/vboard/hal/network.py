# The board's `network` on the virtual board: a Wi-Fi station whose link follows the
# simulated world (stimulus "link": false takes it down, "rssi" sets the signal in dBm).
# Traffic itself goes over the host's loopback through the real socket module.

import _sim

STA_IF = 0
AP_IF = 1

STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202
STAT_BEACON_TIMEOUT = 200
STAT_ASSOC_FAIL = 203
STAT_HANDSHAKE_TIMEOUT = 204

_stations = {}


def link_up():
    return bool(_sim.stimulus().get("link", True))


class WLAN:
    def __new__(cls, interface=STA_IF):
        # One object per interface, as on the esp32 port.
        existing = _stations.get(interface)
        if existing is None:
            existing = object.__new__(cls)
            existing._interface = interface
            existing._active = False
            existing._ssid = None
            _stations[interface] = existing
        return existing

    def __init__(self, interface=STA_IF):
        pass

    def active(self, state=None):
        if state is None:
            return self._active
        self._active = bool(state)

    def connect(self, ssid=None, key=None, bssid=None):
        if not self._active:
            raise OSError("Wifi Not Started")
        self._ssid = ssid

    def disconnect(self):
        self._ssid = None

    def isconnected(self):
        return self._active and self._ssid is not None and link_up()

    def status(self, param=None):
        if param == "rssi":
            if not self.isconnected():
                raise OSError("Wifi Not Connected")
            return int(_sim.stimulus().get("rssi", -58))
        if param is not None:
            raise ValueError("unknown status param")
        if not self._active or self._ssid is None:
            return STAT_IDLE
        if not link_up():
            return STAT_BEACON_TIMEOUT
        return STAT_GOT_IP

    def ifconfig(self, config=None):
        return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")

    def config(self, name=None, **kwargs):
        if name == "mac":
            import machine

            return machine.unique_id()
        if name == "ssid":
            return self._ssid or ""
        if name is not None:
            raise ValueError("unknown config param")

    def scan(self):
        return []
