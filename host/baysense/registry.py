"""The host's device registry: identities and keys of provisioned boards (SQLite).

The file contains secrets, so it is created with mode 0600 and opened only while neither the
group nor others can read it. The gateway reads device keys from it.
"""

import contextlib
import logging
import os
import sqlite3
import stat
import time
import urllib.parse
from pathlib import Path

from .errors import ConfigError

log = logging.getLogger(__name__)

ENV_REGISTRY = "BAYSENSE_REGISTRY"
REGISTRY_HINT = (
    "pass the registry that `baysense provision` created (--registry, $BAYSENSE_REGISTRY or"
    " ~/.local/share/baysense/registry.db), not the gateway's report database (gateway --db)"
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    key BLOB NOT NULL,
    key_version INTEGER NOT NULL DEFAULT 1,
    bay TEXT,
    board TEXT,
    gateway TEXT,
    revoked INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS fleet_progress (
    manifest TEXT NOT NULL,
    bay TEXT NOT NULL,
    step TEXT NOT NULL,
    result TEXT NOT NULL,
    detail TEXT,
    updated REAL NOT NULL,
    PRIMARY KEY (manifest, bay, step)
);
"""


def default_path():
    configured = os.environ.get(ENV_REGISTRY)
    if configured:
        return Path(configured)
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "baysense" / "registry.db"


def check_folder(path):
    """Raise ConfigError when `path` lies in a missing folder that the user named.

    Only the default folder is created on first use. A folder named by an option or by
    $BAYSENSE_REGISTRY is more likely a typo, and keys written there would never reach the
    gateway, which reads the registry the user meant.
    """
    path = Path(path)
    if path.parent.is_dir() or (path == default_path() and not os.environ.get(ENV_REGISTRY)):
        return
    raise ConfigError(
        "registry folder %s not found (registry %s)" % (path.parent, path),
        "check the path: pass the registry that `baysense provision` writes, with --registry or $%s" % ENV_REGISTRY,
    )


def _check_private(path):
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            "registry %s is readable by group or others (mode %o)" % (path, mode),
            "the device registry contains device keys: run `chmod 600 %s`" % path,
        )


def _check_is_registry(path):
    """Raise ConfigError when an existing file is not a SQLite database or is another database.

    Checked before the mode, so that the chmod hint is never given for the gateway's report
    database, and before the schema is added to someone else's tables. A read-only connection
    changes nothing in the file.
    """
    if path.stat().st_size == 0:
        return
    try:
        with contextlib.closing(sqlite3.connect("file:%s?mode=ro" % urllib.parse.quote(str(path)), uri=True)) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.OperationalError as error:
        # Leave the verdict to the read-write open below, which raises its own error.
        log.debug("inspecting %s read-only failed: %s", path, error)
        return
    except sqlite3.DatabaseError as error:
        raise ConfigError("registry %s is not a SQLite database (%s)" % (path, error), REGISTRY_HINT) from None
    if tables and "devices" not in tables:
        raise ConfigError(
            "%s is not a device registry: it has the tables %s but no devices table" % (path, ", ".join(sorted(tables))),
            REGISTRY_HINT,
        )


class Registry:
    """Device identities and keys. Use as a context manager or call close()."""

    def __init__(self, path=None):
        self.path = Path(path) if path else default_path()
        check_folder(self.path)
        # A folder made here is private too; an existing one keeps the mode its owner chose.
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.path.exists():
            # Create the file private before SQLite writes anything into it.
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.close(fd)
        _check_is_registry(self.path)
        _check_private(self.path)
        self.db = sqlite3.connect(self.path, timeout=10)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        # WAL and shared-memory files are created with the database's mode by SQLite.

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.db.close()

    def device(self, device_id):
        return self.db.execute("SELECT * FROM devices WHERE device_id = ?", (device_id,)).fetchone()

    def devices(self):
        return self.db.execute("SELECT * FROM devices ORDER BY device_id").fetchall()

    def put_device(self, device_id, key, **fields):
        """Insert a device or replace its key and fields; a new key bumps key_version."""
        now = time.time()
        with self.db:
            existing = self.device(device_id)
            if existing is None:
                self.db.execute(
                    "INSERT INTO devices (device_id, key, bay, board, gateway, created, updated)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (device_id, key, fields.get("bay"), fields.get("board"), fields.get("gateway"), now, now),
                )
                return
            version = existing["key_version"] + (0 if existing["key"] == key else 1)
            self.db.execute(
                "UPDATE devices SET key = ?, key_version = ?, bay = COALESCE(?, bay),"
                " board = COALESCE(?, board), gateway = COALESCE(?, gateway), revoked = 0, updated = ?"
                " WHERE device_id = ?",
                (key, version, fields.get("bay"), fields.get("board"), fields.get("gateway"), now, device_id),
            )

    def restore_device(self, device_id, row):
        """Put back a row that device() returned earlier, key_version included; None deletes the device."""
        with self.db:
            if row is None:
                self.db.execute("DELETE FROM devices WHERE device_id = ?", (device_id,))
                return
            self.db.execute(
                "UPDATE devices SET key = ?, key_version = ?, bay = ?, board = ?, gateway = ?, revoked = ?, updated = ?"
                " WHERE device_id = ?",
                (row["key"], row["key_version"], row["bay"], row["board"], row["gateway"], row["revoked"], time.time(),
                 device_id),
            )

    def revoke(self, device_id):
        with self.db:
            changed = self.db.execute(
                "UPDATE devices SET revoked = 1, updated = ? WHERE device_id = ?", (time.time(), device_id)
            ).rowcount
        if not changed:
            raise ConfigError("device not found in the registry (%s)" % device_id, "check the id with `baysense status`")

    def keys(self):
        """Return {device_id: key} for every device that is not revoked."""
        rows = self.db.execute("SELECT device_id, key FROM devices WHERE revoked = 0")
        return {row["device_id"]: bytes(row["key"]) for row in rows}
