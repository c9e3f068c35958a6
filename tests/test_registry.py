"""The device registry: private file modes, keys, versions and revocation."""

import contextlib
import os
import sqlite3
import stat

import pytest

from baysense.errors import ConfigError
from baysense.gateway.store import Store
from baysense.registry import Registry


def mode_of(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_new_registry_is_private_under_open_umask(tmp_path, monkeypatch):
    # Only the default registry's folder is created, so the test moves the default here.
    monkeypatch.delenv("BAYSENSE_REGISTRY", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    previous = os.umask(0)
    try:
        registry = Registry()
        registry.close()
    finally:
        os.umask(previous)
    assert registry.path == tmp_path / "baysense" / "registry.db"
    assert mode_of(registry.path) == 0o600
    assert mode_of(registry.path.parent) == 0o700


def test_named_registry_folder_must_exist(tmp_path):
    path = tmp_path / "nosuch" / "registry.db"
    with pytest.raises(ConfigError) as raised:
        Registry(path)
    assert str(raised.value).startswith("registry folder %s not found (registry %s)" % (path.parent, path))
    assert not path.parent.exists()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o610])
def test_readable_registry_is_rejected(tmp_path, mode):
    path = tmp_path / "registry.db"
    Registry(path).close()
    path.chmod(mode)
    with pytest.raises(ConfigError) as raised:
        Registry(path)
    message = str(raised.value)
    assert "readable by group or others (mode %o)" % mode in message
    assert "chmod 600 %s" % path in message


def test_private_registry_opens_again(tmp_path):
    path = tmp_path / "registry.db"
    with Registry(path) as registry:
        registry.put_device("bay-1", b"k" * 32, board="virtual", gateway="127.0.0.1:5683")
    with Registry(path) as registry:
        row = registry.device("bay-1")
    assert bytes(row["key"]) == b"k" * 32
    assert row["board"] == "virtual"
    assert row["gateway"] == "127.0.0.1:5683"


def test_new_key_bumps_version_same_key_does_not(tmp_path):
    with Registry(tmp_path / "registry.db") as registry:
        registry.put_device("bay-1", b"a" * 32, board="virtual")
        registry.put_device("bay-1", b"a" * 32, gateway="10.0.0.2:5683")
        assert registry.device("bay-1")["key_version"] == 1
        assert registry.device("bay-1")["board"] == "virtual"
        registry.put_device("bay-1", b"b" * 32)
        row = registry.device("bay-1")
    assert row["key_version"] == 2
    assert bytes(row["key"]) == b"b" * 32
    assert row["gateway"] == "10.0.0.2:5683"


def test_revoke_hides_key_until_reprovisioned(tmp_path):
    with Registry(tmp_path / "registry.db") as registry:
        registry.put_device("bay-1", b"a" * 32)
        registry.put_device("bay-2", b"c" * 32)
        registry.revoke("bay-1")
        assert registry.keys() == {"bay-2": b"c" * 32}
        assert registry.device("bay-1")["revoked"] == 1
        registry.put_device("bay-1", b"d" * 32)
        assert registry.keys() == {"bay-1": b"d" * 32, "bay-2": b"c" * 32}


def test_revoke_unknown_device(tmp_path):
    with Registry(tmp_path / "registry.db") as registry:
        with pytest.raises(ConfigError, match="device not found in the registry \\(ghost\\)"):
            registry.revoke("ghost")


def test_devices_sorted(tmp_path):
    with Registry(tmp_path / "registry.db") as registry:
        for device_id in ("b", "a", "c"):
            registry.put_device(device_id, device_id.encode() * 32)
        assert [row["device_id"] for row in registry.devices()] == ["a", "b", "c"]


def test_default_path_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("BAYSENSE_REGISTRY", str(tmp_path / "env.db"))
    with Registry() as registry:
        assert registry.path == tmp_path / "env.db"
    assert mode_of(tmp_path / "env.db") == 0o600


def test_restore_device_puts_row_back(tmp_path):
    with Registry(tmp_path / "registry.db") as registry:
        registry.put_device("bay-1", b"a" * 32, bay="A-01", board="virtual", gateway="10.0.0.2:5683")
        registry.revoke("bay-1")
        before = registry.device("bay-1")
        registry.put_device("bay-1", b"b" * 32, gateway="10.0.0.3:5683")
        registry.restore_device("bay-1", before)
        row = registry.device("bay-1")
    assert bytes(row["key"]) == b"a" * 32
    assert row["key_version"] == 1
    assert row["revoked"] == 1
    assert row["bay"] == "A-01"
    assert row["gateway"] == "10.0.0.2:5683"


def test_restore_device_none_deletes(tmp_path):
    with Registry(tmp_path / "registry.db") as registry:
        registry.put_device("bay-1", b"a" * 32)
        registry.put_device("bay-2", b"c" * 32)
        registry.restore_device("bay-1", None)
        assert registry.keys() == {"bay-2": b"c" * 32}


@pytest.mark.parametrize("mode", [0o644, 0o600])
def test_gateway_database_is_not_a_registry(tmp_path, mode):
    # The chmod hint must not make the report database readable as the registry.
    path = tmp_path / "lot.db"
    Store(path).close()
    path.chmod(mode)
    tables_before = tables_of(path)
    with pytest.raises(ConfigError) as raised:
        Registry(path)
    message = str(raised.value)
    assert "%s is not a device registry: it has the tables" % path in message
    assert "but no devices table" in message
    assert "not the gateway's report database (gateway --db)" in message
    assert "chmod" not in message
    assert tables_of(path) == tables_before
    assert mode_of(path) == mode


def test_non_database_file_is_rejected(tmp_path):
    path = tmp_path / "notadb.json"
    path.write_text('{"devices": []}\n' * 100)
    path.chmod(0o600)
    with pytest.raises(ConfigError) as raised:
        Registry(path)
    message = str(raised.value)
    assert "registry %s is not a SQLite database (file is not a database)" % path in message
    assert "pass the registry that `baysense provision` created" in message
    assert path.read_text() == '{"devices": []}\n' * 100


def test_readable_registry_hint_names_registry(tmp_path):
    path = tmp_path / "registry.db"
    Registry(path).close()
    path.chmod(0o644)
    with pytest.raises(ConfigError) as raised:
        Registry(path)
    assert "the device registry contains device keys: run `chmod 600 %s`" % path in str(raised.value)


def tables_of(path):
    with contextlib.closing(sqlite3.connect(path)) as db:
        return sorted(row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
