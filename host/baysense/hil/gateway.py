"""The session's gateway: the real UDP gateway on a background thread, and queries on its store."""

import logging
from dataclasses import dataclass

from .. import protocol
from ..gateway.server import GatewayThread
from ..gateway.store import Store
from .wait import wait_until

log = logging.getLogger(__name__)

# How long (seconds) a test waits for a report that should arrive now: a node resends an
# unacknowledged frame within a second or two after its link returns.
REPORT_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class StoredReport:
    """One report the gateway stored, decoded."""

    device_id: str
    key_id: str
    counter: int
    kind: str  # "state" or "heartbeat"
    state: str | None  # for state reports: "vacant", "occupied" or "fault"
    reason: int | None
    fields: object  # parse_state's tuple or parse_heartbeat's dict


class HilGateway:
    """A gateway listening on `host` (loopback unless a real bench needs its LAN address)."""

    def __init__(self, folder, host="127.0.0.1"):
        self.folder = folder
        self.host = host
        self.db_path = folder / "gateway.db"
        self.registry_path = folder / "registry.db"
        self.port = 0
        self._thread = None

    @property
    def address(self):
        """HOST:PORT, as a node's config names its gateway."""
        return "%s:%d" % (self.host, self.port)

    def start(self):
        self._thread = GatewayThread(self.db_path, self.registry_path, host=self.host, port=self.port)
        self.port = self._thread.start()[1]
        return self

    def stop(self):
        if self._thread is not None:
            self._thread.stop()
            self._thread = None

    def pause(self):
        """Stop receiving (the port closes, nothing is acknowledged) until resume()."""
        log.info("gateway on %s paused", self.address)
        self.stop()

    def resume(self):
        """Listen again on the same port, with the same store and registry."""
        self.start()
        log.info("gateway on %s resumed", self.address)

    @property
    def running(self):
        return self._thread is not None

    # -- the store

    def reports(self, device_id, after=0):
        """Return the device's stored reports with a counter above `after`, in counter order."""
        if not self.db_path.exists():
            return []
        with Store(self.db_path, create=False) as store:
            rows = store.reports(device_id)
        reports = [_decode(row) for row in rows if row["counter"] > after]
        return sorted(reports, key=lambda report: report.counter)

    def state_reports(self, device_id, after=0):
        return [report for report in self.reports(device_id, after) if report.kind == "state"]

    def last_counter(self, device_id):
        """Return the highest counter stored for the device, or 0."""
        reports = self.reports(device_id)
        return reports[-1].counter if reports else 0

    def bay(self, device_id):
        """Return the device's row of the store's lot view (state, counter, health), or None."""
        if not self.db_path.exists():
            return None
        with Store(self.db_path, create=False) as store:
            for row in store.bays():
                if row["device_id"] == device_id:
                    return row
        return None

    def stats(self):
        """Return {name: count} of accepted, acknowledged and rejected frames."""
        if not self.db_path.exists():
            return {}
        with Store(self.db_path, create=False) as store:
            return store.stats()

    # -- waits

    def wait_for_state(self, board, state, after=0, timeout_s=REPORT_TIMEOUT_S):
        """Wait until the gateway stored a `state` report from `board` above counter `after`; return it."""

        def probe():
            for report in self.state_reports(board.device_id, after):
                if report.state == state:
                    return report
            return None

        return wait_until(probe, timeout_s, "a %r report from %s in the gateway store" % (state, board.device_id), [board])

    def wait_for_heartbeat(self, board, after=0, where=None, timeout_s=REPORT_TIMEOUT_S):
        """Wait until the gateway stored a heartbeat from `board` above counter `after`; return it.

        `where(fields)` narrows the search to heartbeats whose parsed fields it accepts.
        """

        def probe():
            for report in self.reports(board.device_id, after):
                if report.kind == "heartbeat" and (where is None or where(report.fields)):
                    return report
            return None

        what = "a heartbeat from %s%s in the gateway store" % (board.device_id, " matching the test's condition" if where else "")
        return wait_until(probe, timeout_s, what, [board])


def _decode(row):
    body = bytes(row["body"])
    if row["frame_type"] == protocol.FRAME_STATE:
        fields = protocol.parse_state(body)
        state, reason = protocol.STATE_NAMES[fields[0]], fields[1]
        kind = "state"
    else:
        fields = protocol.parse_heartbeat(body)
        state, reason = None, None
        kind = "heartbeat"
    return StoredReport(row["device_id"], row["key_id"], row["counter"], kind, state, reason, fields)
