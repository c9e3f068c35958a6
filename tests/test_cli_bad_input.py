"""Commands given bad files: each fails with one line naming the value and the fix, no traceback."""

import os
import sqlite3

import pytest

from baysense.cli import main
from baysense.gateway.simnode import provision
from baysense.gateway.store import Store

LISTEN = ["--listen", "127.0.0.1:0"]


def sqlite_tables(path):
    connection = sqlite3.connect(path)
    try:
        return {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        connection.close()


@pytest.fixture
def registry(tmp_path):
    path = tmp_path / "registry.db"
    provision(path, ["bay-1"])
    return path


@pytest.fixture
def not_a_database(tmp_path):
    path = tmp_path / "notadb.json"
    path.write_text('{"bays": []}\n')
    path.chmod(0o600)
    return path


def run_failing(capsys, arguments):
    assert main(arguments) == 1
    captured = capsys.readouterr()
    assert captured.out == ""  # the gateway never started listening
    assert "Traceback" not in captured.err
    return captured.err


def test_gateway_db_not_sqlite(capsys, registry, not_a_database):
    error = run_failing(capsys, ["gateway", *LISTEN, "--db", str(not_a_database), "--registry", str(registry)])
    assert "--db %s is not an SQLite database" % not_a_database in error
    assert "pass the gateway's database to --db, or a new path to create one" in error
    assert not_a_database.read_text() == '{"bays": []}\n'


def test_gateway_registry_not_sqlite(tmp_path, capsys, not_a_database):
    error = run_failing(capsys, ["gateway", *LISTEN, "--db", str(tmp_path / "lot.db"), "--registry", str(not_a_database)])
    assert "--registry %s is not an SQLite database" % not_a_database in error
    assert "pass the registry that `baysense provision` writes" in error
    assert not (tmp_path / "lot.db").exists()


def test_gateway_same_file_rejected(capsys, registry):
    before = sqlite_tables(registry)
    error = run_failing(capsys, ["gateway", *LISTEN, "--db", str(registry), "--registry", str(registry)])
    assert "--db and --registry name the same file (%s)" % registry in error
    assert "pass a new file to --db" in error
    assert sqlite_tables(registry) == before  # no gateway table was added to the keys


def test_gateway_same_file_through_link(tmp_path, capsys, registry):
    link = tmp_path / "link.db"
    os.symlink(registry, link)
    error = run_failing(capsys, ["gateway", *LISTEN, "--db", str(link), "--registry", str(registry)])
    assert "--db and --registry name the same file" in error


def test_gateway_db_is_registry_copy(tmp_path, capsys, registry):
    copy = tmp_path / "regcopy.db"
    copy.write_bytes(registry.read_bytes())
    copy.chmod(0o600)
    before = sqlite_tables(copy)
    error = run_failing(capsys, ["gateway", *LISTEN, "--db", str(copy), "--registry", str(registry)])
    assert "--db %s is a device registry (it has a devices table)" % copy in error
    assert sqlite_tables(copy) == before


def test_gateway_registry_is_gateway_db(tmp_path, capsys):
    lot = tmp_path / "lot.db"
    Store(lot).close()
    error = run_failing(capsys, ["gateway", *LISTEN, "--db", str(tmp_path / "other.db"), "--registry", str(lot)])
    assert "--registry %s is a gateway database (it has a reports table), not a device registry" % lot in error
    assert "chmod" not in error
