"""The gateway's SQLite store: accepted reports, bay states, latest health and tallies.

Every report is committed (WAL, synchronous=FULL) before the gateway acknowledges it, so an
acknowledged report survives a crash or power loss. A report is stored and applied only if its
counter is above the device's stored last counter under the same key (a new key starts a new
sequence), so a report already stored is never applied twice. The last accepted frame's type
and body are kept beside its counter, so that the gateway can still tell a frame re-signed after
a key rotation from a new one when it restarts.

A device's row in device_counters also contains its bay state, so that a state report costs one
statement there (an UPDATE, or an upsert for a device's first row) and one append to the reports
log. With the bay in a table of its own, the three
row writes took 4.7 us of CPU a state report against 3.7 us (SQLite 3.40 on one AMD EPYC core,
1,000 devices, executemany over batches of 512, synchronous=OFF to leave the fsync out).

The reports table is an append-only log in arrival order, with no index on (device, counter):
the guard on device_counters does the deduplication. Appending writes far fewer pages per commit
than inserting into such an index, which raised the bench's ingest rate from about 12,000 to
20,000 reports/s with 1,000 devices.

NOTE: nothing prunes the reports log yet; it grows by about 90 bytes a state report (measured
with 8-character device ids).
"""

import itertools
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from .. import protocol
from ..errors import ConfigError

log = logging.getLogger(__name__)

# Version 2 added device_counters.last_type and last_body. Version 3 moved the bays table's
# columns into device_counters.
SCHEMA_VERSION = 3

# Seconds SQLite waits for a lock held by another connection, such as `baysense status` reading.
BUSY_TIMEOUT_S = 10

SCHEMA = """
CREATE TABLE IF NOT EXISTS device_counters (
    device_id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    last_counter INTEGER NOT NULL,
    last_tag BLOB NOT NULL,
    updated REAL NOT NULL,
    last_type INTEGER,
    last_body BLOB,
    state TEXT,
    since REAL,
    state_counter INTEGER,
    reason INTEGER,
    detected_ms INTEGER,
    value INTEGER,
    changes INTEGER,
    state_updated REAL
);
CREATE TABLE IF NOT EXISTS reports (
    id INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    counter INTEGER NOT NULL,
    frame_type INTEGER NOT NULL,
    body BLOB NOT NULL,
    received REAL NOT NULL,
    source TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS health (
    device_id TEXT PRIMARY KEY,
    counter INTEGER NOT NULL,
    received REAL NOT NULL,
    uptime_s INTEGER NOT NULL,
    reset_cause INTEGER NOT NULL,
    free_heap INTEGER NOT NULL,
    rssi_dbm INTEGER NOT NULL,
    outbox_depth INTEGER NOT NULL,
    fault_flags INTEGER NOT NULL,
    firmware TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS stats (
    name TEXT PRIMARY KEY,
    count INTEGER NOT NULL
);
"""

# Version 1 databases lack the last frame's type and body. They are copied from the reports log,
# where it contains the last accepted frame, once, when the gateway opens the file.
MIGRATE_TO_2 = """
ALTER TABLE device_counters ADD COLUMN last_type INTEGER;
ALTER TABLE device_counters ADD COLUMN last_body BLOB;
UPDATE device_counters SET
    last_type = (SELECT r.frame_type FROM reports r WHERE r.device_id = device_counters.device_id
                 AND r.key_id = device_counters.key_id AND r.counter = device_counters.last_counter
                 ORDER BY r.id DESC LIMIT 1),
    last_body = (SELECT r.body FROM reports r WHERE r.device_id = device_counters.device_id
                 AND r.key_id = device_counters.key_id AND r.counter = device_counters.last_counter
                 ORDER BY r.id DESC LIMIT 1);
"""

# Version 2 databases keep bay states in a table of their own. Its rows move into device_counters.
MIGRATE_TO_3 = """
ALTER TABLE device_counters ADD COLUMN state TEXT;
ALTER TABLE device_counters ADD COLUMN since REAL;
ALTER TABLE device_counters ADD COLUMN state_counter INTEGER;
ALTER TABLE device_counters ADD COLUMN reason INTEGER;
ALTER TABLE device_counters ADD COLUMN detected_ms INTEGER;
ALTER TABLE device_counters ADD COLUMN value INTEGER;
ALTER TABLE device_counters ADD COLUMN changes INTEGER;
ALTER TABLE device_counters ADD COLUMN state_updated REAL;
UPDATE device_counters SET (state, since, state_counter, reason, detected_ms, value, changes, state_updated) =
    (SELECT b.state, b.since, b.counter, b.reason, b.detected_ms, b.value, b.changes, b.updated
     FROM bays b WHERE b.device_id = device_counters.device_id);
DROP TABLE bays;
"""


# Every statement that advances a counter takes the numbered parameters that _counter_row builds:
# ?1 device id, ?2 key id, ?3 counter, ?4 tag, ?5 receive time, ?6 frame type, ?7 body. The state
# statements also take the four that _state_row adds: ?8 state name, ?9 reason, ?10 detected_ms
# and ?11 value.
#
# The guard makes a statement change nothing for a counter at or below the stored one under the
# same key, so a duplicate is detected in the transaction that would store it. The UPDATEs are
# the batch's first try. They skip the upsert's attempt to insert, and took 1.8 against 2.3 us a
# state report (1,000 devices, batches of 64, synchronous=OFF). But they change nothing for a
# device without a row, so such a batch is run again through the upserts.
GUARD = "(key_id != ?2 OR last_counter < ?3)"

# The columns that a counter row's UPDATE and its upsert both set, written once so they agree.
SET_COUNTER = "key_id = ?2, last_counter = ?3, last_tag = ?4, updated = ?5, last_type = ?6, last_body = ?7"

UPDATE_COUNTER = "UPDATE device_counters SET " + SET_COUNTER + " WHERE device_id = ?1 AND " + GUARD

ADVANCE_COUNTER = (
    "INSERT INTO device_counters (device_id, key_id, last_counter, last_tag, updated, last_type, last_body)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (device_id) DO UPDATE SET " + SET_COUNTER + " WHERE " + GUARD
)

# A state report advances the counter and sets the bay state in one statement, under the same
# guard. `since` moves only when the state changes, so a repeated report keeps the time the bay
# entered its state. SQLite evaluates every SET expression on the row as it was before the
# UPDATE, so `state` there is the stored state. A device seen only in heartbeats until now has a
# NULL state.
SET_STATE = (
    SET_COUNTER + ","
    " since = CASE WHEN state IS ?8 THEN since ELSE ?5 END,"
    " changes = coalesce(changes, 0) + (state IS NOT ?8),"
    " state = ?8, state_counter = ?3, reason = ?9, detected_ms = ?10, value = ?11, state_updated = ?5"
)

UPDATE_STATE = "UPDATE device_counters SET " + SET_STATE + " WHERE device_id = ?1 AND " + GUARD

ADVANCE_STATE = (
    "INSERT INTO device_counters (device_id, key_id, last_counter, last_tag, updated, last_type, last_body,"
    " state, since, state_counter, reason, detected_ms, value, changes, state_updated)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?5, ?3, ?9, ?10, ?11, 1, ?5)"
    " ON CONFLICT (device_id) DO UPDATE SET " + SET_STATE + " WHERE " + GUARD
)

INSERT_REPORT = (
    "INSERT INTO reports (device_id, key_id, counter, frame_type, body, received, source)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)

REPLACE_HEALTH = (
    "INSERT OR REPLACE INTO health (device_id, counter, received, uptime_s, reset_cause, free_heap,"
    " rssi_dbm, outbox_depth, fault_flags, firmware) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

ADD_STAT = "INSERT INTO stats (name, count) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET count = count + excluded.count"


@dataclass(slots=True)
class Report:
    """An authenticated frame that passed every check and waits to be stored."""

    device_id: str
    counter: int
    frame_type: int
    body: bytes
    fields: object  # parse_state's tuple or parse_heartbeat's dict
    received: float  # wall-clock time (time.time()) at the gateway
    source: tuple  # (host, port) the frame came from
    key_id: str
    tag: bytes
    ack_key: object = None  # the DeviceKey that signs the acks
    arrived: float = 0.0  # receive time on the ingest's clock, for the receive-to-ack latency
    # (address, receive time) of each retransmission that arrived before the commit, each owed
    # an ack too. It is None until the first one, which saves a list for almost every report.
    resent_to: list = None
    # A frame accepted before under the device's old key and re-signed by the node after a key
    # rotation: only the new key and tag are stored.
    resigned: bool = False


class Store:
    """The gateway database. The gateway writes through one Store; readers open their own."""

    def __init__(self, path, create=True):
        self.path = Path(path)
        if not create and not self.path.exists():
            raise ConfigError(
                "gateway database not found (%s)" % self.path,
                "pass the --db that `baysense gateway` writes, or start the gateway first",
            )
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        if create:
            # WAL mode is stored in the file, so readers (create=False) need not set it.
            self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise ConfigError(
                "gateway database %s has schema version %d, newer than this gateway's %d"
                % (self.path, version, SCHEMA_VERSION),
                "upgrade baysense or use another --db",
            )
        if create:
            self._create_or_migrate(version)

    def _create_or_migrate(self, version):
        # An empty file has version 0. CREATE TABLE IF NOT EXISTS leaves an older file's tables
        # alone, so the migrations add their new columns.
        self.db.executescript(SCHEMA)
        if 0 < version < SCHEMA_VERSION:
            log.info("upgrading gateway database %s from schema version %d to %d", self.path, version, SCHEMA_VERSION)
        if version == 1:
            self.db.executescript(MIGRATE_TO_2)
        if version in (1, 2):
            self.db.executescript(MIGRATE_TO_3)
        self.db.execute("PRAGMA user_version = %d" % SCHEMA_VERSION)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.db.close()

    def counters(self):
        """Return {device_id: (key_id, last_counter, last_tag, last_type, last_body)} of every device seen.

        The type and body are None where a version 1 database did not contain them.
        """
        rows = self.db.execute(
            "SELECT device_id, key_id, last_counter, last_tag, last_type, last_body FROM device_counters"
        )
        return {
            row[0]: (row[1], row[2], bytes(row[3]), row[4], None if row[5] is None else bytes(row[5])) for row in rows
        }

    def commit(self, reports, stats):
        """Store reports and add `stats` ({name: count}) in one transaction; return write()'s count."""
        try:
            new = self.write(reports, stats)
            self.finish()
        except BaseException:
            self.rollback()
            raise
        return new

    def write(self, reports, stats):
        """Begin a transaction, store reports in it and add `stats` ({name: count}).

        finish() commits the transaction and rollback() drops it. Returns how many reports
        advanced their device's counter. A report whose counter is not above the device's stored
        one under the same key changes nothing. A re-signed report (Report.resigned) only moves
        its device's counter row to the new key.
        """
        self.db.execute("BEGIN")
        new = self._advance_counters(reports)
        stored = [report for report in new if not report.resigned]
        # executemany keeps the per-row work in SQLite's C code.
        self.db.executemany(INSERT_REPORT, [_report_row(report) for report in stored])
        beats = [_health_row(report) for report in stored if report.frame_type == protocol.FRAME_HEARTBEAT]
        self.db.executemany(REPLACE_HEALTH, beats)
        self.db.executemany(ADD_STAT, list(stats.items()))
        return len(new)

    def finish(self):
        """Commit the transaction that write() began; it is durable when this returns.

        It may run in another thread than write(), but not while the connection is used
        elsewhere.
        """
        self.db.commit()

    def rollback(self):
        """Drop the transaction that write() began, if it is still open."""
        self.db.rollback()

    def _advance_counters(self, reports):
        # Normally every report advances its counter in the UPDATEs, and the changes that
        # executemany counts equal the rows. Otherwise the rows are undone and run one by one
        # through the upserts, which insert a device's first row and find the reports that are
        # already stored. The rows run in arrival order, one executemany for each run of reports
        # that take the same statement, because the guard compares each report with the row
        # that the report before it left.
        if not reports:
            return []
        self.db.execute("SAVEPOINT advance")
        advanced = 0
        for carries_state, run in itertools.groupby(reports, key=_carries_state):
            if carries_state:
                advanced += self.db.executemany(UPDATE_STATE, [_state_row(report) for report in run]).rowcount
            else:
                advanced += self.db.executemany(UPDATE_COUNTER, [_counter_row(report) for report in run]).rowcount
        if advanced == len(reports):
            new = reports
        else:
            self.db.execute("ROLLBACK TO advance")
            new = [report for report in reports if self._advance_counter(report)]
        self.db.execute("RELEASE advance")
        return new

    def _advance_counter(self, report):
        if _carries_state(report):
            advanced = self.db.execute(ADVANCE_STATE, _state_row(report)).rowcount
        else:
            advanced = self.db.execute(ADVANCE_COUNTER, _counter_row(report)).rowcount
        if not advanced:
            log.info("report %r #%d is already stored, so it is not applied again", report.device_id, report.counter)
        return advanced

    def bays(self):
        """Return one dict per device seen: bay state, last counter and latest health."""
        rows = self.db.execute(
            "SELECT c.device_id, c.state, c.since, c.last_counter AS counter, c.state_counter,"
            " c.reason, c.value, c.changes, h.received AS last_heartbeat, h.uptime_s, h.reset_cause,"
            " h.free_heap, h.rssi_dbm, h.outbox_depth, h.fault_flags, h.firmware"
            " FROM device_counters c LEFT JOIN health h USING (device_id)"
            " ORDER BY c.device_id"
        )
        return [dict(row) for row in rows]

    def reports(self, device_id=None):
        """Return stored reports as dicts, oldest first."""
        query = "SELECT device_id, key_id, counter, frame_type, body, received, source FROM reports"
        if device_id is None:
            rows = self.db.execute(query + " ORDER BY id")
        else:
            rows = self.db.execute(query + " WHERE device_id = ? ORDER BY id", (device_id,))
        return [dict(row) for row in rows]

    def stats(self):
        """Return {name: count} of accepted, acknowledged and rejected frames."""
        return {row[0]: row[1] for row in self.db.execute("SELECT name, count FROM stats ORDER BY name")}


# Blobs are bound as bytearray. CPython's sqlite3 module (3.11) binds a bytearray directly, but
# for a bytes value it first looks for an adapter, which raises and clears an AttributeError
# (seen under callgrind). A 7-column INSERT took 1.19 us a row with one bytes value and 0.77 us
# with a bytearray (executemany into an in-memory database, the copy included).


def _carries_state(report):
    # A re-signed report stores nothing but its new key, so it leaves the bay state alone.
    return report.frame_type == protocol.FRAME_STATE and not report.resigned


def _counter_row(report):
    return (
        report.device_id,
        report.key_id,
        report.counter,
        bytearray(report.tag),
        report.received,
        report.frame_type,
        bytearray(report.body),
    )


def _state_row(report):
    state, reason, detected_ms, value = report.fields
    return (
        report.device_id,
        report.key_id,
        report.counter,
        bytearray(report.tag),
        report.received,
        report.frame_type,
        bytearray(report.body),
        protocol.STATE_NAMES[state],
        reason,
        detected_ms,
        value,
    )


def _report_row(report):
    host, port = report.source[:2]
    return (
        report.device_id,
        report.key_id,
        report.counter,
        report.frame_type,
        bytearray(report.body),
        report.received,
        "%s:%d" % (host, port),
    )


def _health_row(report):
    health = report.fields
    return (
        report.device_id,
        report.counter,
        report.received,
        health["uptime_s"],
        health["reset_cause"],
        health["free_heap"],
        health["rssi_dbm"],
        health["outbox_depth"],
        health["fault_flags"],
        health["firmware"],
    )
