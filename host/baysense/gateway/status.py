"""The lot's status as stored by the gateway: bays, heartbeat health and tallies."""

import sqlite3

from ..errors import ConfigError
from .store import Store

# A node without a heartbeat for this long is shown as stale (seconds): three missed heartbeats
# at a one-minute interval.
HEARTBEAT_STALE_S = 180

# Names of the fault reasons a state frame carries, by number (docs/protocol.md). The node's
# firmware/detector.py has the same FAULT_NAMES, and tests/test_gateway.py checks that they agree.
FAULT_NAMES = ("none", "no echo", "out of range", "stuck", "bus error", "no data", "overflow", "edges dropped")

HEALTH_FIELDS = ("uptime_s", "reset_cause", "free_heap", "rssi_dbm", "outbox_depth", "fault_flags", "firmware")


def health_verdict(bay, now):
    """Return "ok", "faults", "stale" or "none" for a bay row from Store.bays()."""
    if bay["last_heartbeat"] is None:
        return "none"
    if now - bay["last_heartbeat"] > HEARTBEAT_STALE_S:
        return "stale"
    if bay["fault_flags"]:
        return "faults"
    return "ok"


def read_status(db_path, now):
    """Return {"bays": [...], "rejected": {reason: count}, "tallies": {name: count}, "generated": now}."""
    try:
        with Store(db_path, create=False) as store:
            bays = store.bays()
            stats = store.stats()
    except sqlite3.Error as error:
        raise ConfigError(
            "cannot read the gateway database %s (%s)" % (db_path, error),
            "pass the --db that `baysense gateway` writes",
        ) from error
    for bay in bays:
        bay["health"] = health_verdict(bay, now)
    rejected = {name[len("rejected_") :]: count for name, count in stats.items() if name.startswith("rejected_")}
    others = {name: count for name, count in stats.items() if not name.startswith("rejected_")}
    return {"bays": bays, "rejected": rejected, "tallies": others, "generated": now}


def _printable(text):
    # The firmware version comes from the node: keep control characters off the terminal.
    return "".join(char if char.isprintable() else "?" for char in text)


def _state(bay):
    # A fault without its reason leaves the reader to guess between a wiring fault and a
    # stuck sensor.
    state = bay["state"] or "-"
    if state != "fault":
        return state
    reason = bay["reason"]
    if reason is not None and 0 < reason < len(FAULT_NAMES):
        return "fault (%s)" % FAULT_NAMES[reason]
    return "fault (reason %s)" % reason


def _age(seconds):
    if seconds is None:
        return "-"
    if seconds < 120:
        return "%.0f s ago" % seconds
    if seconds < 7200:
        return "%.0f min ago" % (seconds / 60)
    return "%.1f h ago" % (seconds / 3600)


def format_status(status):
    """Render the status as a plain-text table."""
    now = status["generated"]
    header = ("device", "state", "since", "counter", "heartbeat", "health", "rssi", "heap", "outbox", "faults", "firmware")
    rows = [header]
    for bay in status["bays"]:
        heartbeat = None if bay["last_heartbeat"] is None else now - bay["last_heartbeat"]
        since = None if bay["since"] is None else now - bay["since"]
        rows.append(
            (
                bay["device_id"],
                _state(bay),
                _age(since),
                str(bay["counter"]),
                _age(heartbeat),
                bay["health"],
                "-" if bay["rssi_dbm"] is None else "%d dBm" % bay["rssi_dbm"],
                "-" if bay["free_heap"] is None else str(bay["free_heap"]),
                "-" if bay["outbox_depth"] is None else str(bay["outbox_depth"]),
                "-" if bay["fault_flags"] is None else "0x%04x" % bay["fault_flags"],
                _printable(bay["firmware"] or "-"),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    if len(rows) == 1:
        lines.append("(no reports yet)")

    lines.append("")
    tallies = status["tallies"]
    lines.append(
        "accepted: %d state, %d heartbeat; acks sent: %d"
        % (tallies.get("accepted_state", 0), tallies.get("accepted_heartbeat", 0), tallies.get("acked", 0))
    )
    if status["rejected"]:
        lines.append("rejected: " + ", ".join("%s %d" % item for item in sorted(status["rejected"].items())))
    else:
        lines.append("rejected: none")
    return "\n".join(lines)
