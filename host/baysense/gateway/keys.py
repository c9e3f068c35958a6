"""Device keys from the registry, reloaded when the registry changes."""

import hashlib
import logging
import sqlite3

from .. import protocol
from ..registry import Registry

log = logging.getLogger(__name__)


def key_id(key):
    """Return a short fingerprint that tells two keys apart without revealing either."""
    return hashlib.sha256(b"baysense key id\x00" + key).hexdigest()[:16]


class KeyRing:
    """The keys of provisioned devices and the ids of revoked ones, read from a registry.

    refresh() is cheap when nothing changed: SQLite's data_version pragma changes only when
    another connection commits to the registry.
    """

    def __init__(self, registry_path):
        self.registry = Registry(registry_path)
        self.keys = {}  # device_id -> (key, key_id)
        self.revoked = frozenset()
        self._data_version = None
        self.refresh()

    def close(self):
        self.registry.close()

    def refresh(self):
        """Reload keys if the registry changed; return True when it did."""
        try:
            version = self.registry.db.execute("PRAGMA data_version").fetchone()[0]
            if version == self._data_version:
                return False
            rows = self.registry.devices()
        except sqlite3.Error as error:
            # Keep serving with the keys already loaded; the next poll tries again.
            log.error("reading the registry %s failed: %s", self.registry.path, error)
            return False

        keys = {}
        revoked = set()
        for row in rows:
            device_id = row["device_id"]
            if row["revoked"]:
                revoked.add(device_id)
                continue
            key = bytes(row["key"])
            if len(key) != protocol.KEY_SIZE:
                log.error(
                    "device %r has a %d-byte key in the registry, expected %d: its frames are rejected"
                    " until it is provisioned again",
                    device_id,
                    len(key),
                    protocol.KEY_SIZE,
                )
                continue
            keys[device_id] = (key, key_id(key))

        if self._data_version is not None:
            log.info(
                "registry changed: %d devices with keys, %d revoked (was %d, %d)",
                len(keys),
                len(revoked),
                len(self.keys),
                len(self.revoked),
            )
        self.keys = keys
        self.revoked = frozenset(revoked)
        self._data_version = version
        return True


class FixedKeyRing:
    """The KeyRing interface over keys given in code, for benchmarks and tests: it never reloads."""

    def __init__(self, keys, revoked=()):
        # `keys` maps device ids to keys, as a dict or as (device_id, key) pairs.
        self.keys = {device_id: (key, key_id(key)) for device_id, key in dict(keys).items()}
        self.revoked = frozenset(revoked)

    def refresh(self):
        return False  # the keys never change
