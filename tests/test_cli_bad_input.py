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


@pytest.fixture(autouse=True)
def gateway_never_runs(monkeypatch):
    # Every case here must fail before the gateway starts. Without this, a check that lets a
    # bad file through would start a gateway that serves until it is stopped, and hang the test.
    async def fail_if_started(*arguments):
        raise AssertionError("the gateway started with %s" % (arguments,))

    monkeypatch.setattr("baysense.gateway.cli.run_gateway", fail_if_started)


def run_failing(capsys, arguments):
    assert main(arguments) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
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
    assert "pass another, new file to --db" in error
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


# ---- flash on a port without a bootloader ----------------------------------------------------


def esp32_image(path):
    from esptool.bin_image import ELFSection, ESP32FirmwareImage

    image = ESP32FirmwareImage()
    image.segments = [ELFSection(b".dram0.data", 0x3FFB0000, bytes(4096), 0)]
    image.entrypoint = 0x40080000
    path.write_bytes(image.save(None))
    return path


def test_flash_on_vboard_repl_port(tmp_path, capsys, make_vboard):
    # A running virtual board's REPL port is a pseudo-terminal with no ROM bootloader behind it,
    # so BOOT and EN are the wrong advice there.
    board = make_vboard()
    image = esp32_image(tmp_path / "firmware.bin")
    status = main(["flash", "--port", board.port, "--connect-attempts", "1", str(image)])
    error = capsys.readouterr().err
    assert status == 1
    assert "no response from the bootloader on %s" % board.port in error
    assert "%s is a pseudo-terminal, such as a virtual board's REPL port, which has no bootloader" % board.port in error
    assert "start the board with `baysense vboard --bootloader` (or `baysense rom`)" in error
    assert "hold BOOT" not in error


def test_flash_hint_by_port_kind():
    from baysense.flash import translate_error

    silent = RuntimeError("Failed to connect to ESP32: No serial data received.")
    usb = str(translate_error(silent, "/dev/ttyUSB0"))
    assert usb == "no response from the bootloader on /dev/ttyUSB0: hold BOOT while pressing EN to enter download mode, then retry"
    remote = str(translate_error(silent, "socket://127.0.0.1:4000"))
    assert "hold BOOT while pressing EN" in remote
    assert "for a virtual board, start it with `baysense vboard --bootloader`" in remote
