"""Each bay's steps as the registry's fleet_progress table keeps them, so a re-run can resume.

A step is written as "running" before it starts and as "ok", "failed" or "interrupted" when it
ends, together with a fingerprint of its inputs (the firmware build, the gateway, the board).
A re-run redoes a step unless it and every step before it are "ok" with the same fingerprint,
so a changed input or a step cut short is never taken for done.

The table's `manifest` column contains the site's community name: moving or renaming the
manifest file keeps its progress.
"""

import hashlib
import json
import logging
import sqlite3
import time

log = logging.getLogger(__name__)

OK = "ok"
FAILED = "failed"
RUNNING = "running"
INTERRUPTED = "interrupted"
SKIPPED = "skipped"
PENDING = "pending"

# Bay key of the site-wide step (the gateway's ZeroTier membership). Device and bay ids start
# with a letter or digit, so it never names a bay.
SITE = "_site"

# Columns this package adds to the registry's fleet_progress table, with their types.
EXTRA_COLUMNS = {"fingerprint": "TEXT", "port": "TEXT", "seconds": "REAL"}


def fingerprint(*parts):
    """Return a short digest of a step's inputs; the inputs never include a key or password."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def add_columns(registry):
    """Add this package's columns to fleet_progress when an older registry lacks them."""
    present = {row[1] for row in registry.db.execute("PRAGMA table_info(fleet_progress)")}
    for name, kind in EXTRA_COLUMNS.items():
        if name in present:
            continue
        try:
            with registry.db:
                registry.db.execute("ALTER TABLE fleet_progress ADD COLUMN %s %s" % (name, kind))
        except sqlite3.OperationalError as error:
            # Another worker added it between the check and the ALTER.
            if "duplicate column" not in str(error):
                raise


class Progress:
    """One site's rows of fleet_progress, through one registry connection (one per thread)."""

    def __init__(self, registry, community):
        self.registry = registry
        self.community = community
        add_columns(registry)

    def record(self, bay, step, result, detail=None, fingerprint=None, port=None, seconds=None):
        with self.registry.db:
            self.registry.db.execute(
                "INSERT INTO fleet_progress (manifest, bay, step, result, detail, updated, fingerprint, port, seconds)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (manifest, bay, step) DO UPDATE SET result = excluded.result,"
                " detail = excluded.detail, updated = excluded.updated,"
                " fingerprint = COALESCE(excluded.fingerprint, fingerprint), port = COALESCE(excluded.port, port),"
                " seconds = excluded.seconds",
                (self.community, bay, step, result, detail, time.time(), fingerprint, port, seconds),
            )

    def steps(self, bay):
        """Return {step: row} of one bay."""
        rows = self.registry.db.execute(
            "SELECT * FROM fleet_progress WHERE manifest = ? AND bay = ?", (self.community, bay)
        ).fetchall()
        return {row["step"]: row for row in rows}

    def rows(self):
        return self.registry.db.execute(
            "SELECT * FROM fleet_progress WHERE manifest = ? ORDER BY bay, updated", (self.community,)
        ).fetchall()

    def is_done(self, bay, step, expected_fingerprint):
        row = self.steps(bay).get(step)
        return row is not None and row["result"] == OK and row["fingerprint"] == expected_fingerprint

    def forget(self, bay):
        """Drop a bay's progress so the next run does every step again."""
        with self.registry.db:
            self.registry.db.execute("DELETE FROM fleet_progress WHERE manifest = ? AND bay = ?", (self.community, bay))
