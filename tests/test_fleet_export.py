"""`baysense fleet export`: CSV without keys, with formula cells neutralised."""

import base64
import csv
import io
import secrets

import pytest

from baysense.cli import main
from baysense.fleet.export import export_rows, neutralise, to_csv
from baysense.fleet.progress import FAILED, OK, Progress
from baysense.registry import Registry

MANIFEST = """community = "lot-7"
gateway = "127.0.0.1:5683"
board = "virtual"

[[bays]]
id = "b1"
port = "/dev/pts/90"

[[bays]]
id = "b2"
port = "auto"

[[bays]]
id = "b3"
port = "/dev/pts/92"
"""


@pytest.mark.parametrize(
    "cell, expected",
    [
        ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
        ("+1+1", "'+1+1"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        ("b1", "b1"),
        ("a=b", "a=b"),
        ("", ""),
        (None, ""),
        (3, "3"),
    ],
)
def test_neutralise_cells(cell, expected):
    assert neutralise(cell) == expected


@pytest.fixture
def registry_with_fleet(tmp_path):
    path = tmp_path / "registry.db"
    keys = {}
    with Registry(path) as registry:
        for device_id in ("b1", "b3"):
            keys[device_id] = secrets.token_bytes(32)
            registry.put_device(device_id, keys[device_id], board="virtual", gateway="127.0.0.1:5683", bay=device_id)
        progress = Progress(registry, "lot-7")
        progress.record("b1", "restart", OK, "restarted; the node runs", port="/dev/pts/90")
        progress.record("b3", "selftest", FAILED, "=cmd|' /C calc'!A0", port="/dev/pts/92")
    return path, keys


def test_export_carries_no_keys(tmp_path, registry_with_fleet, capsys):
    registry_path, keys = registry_with_fleet
    manifest_path = tmp_path / "site.toml"
    manifest_path.write_text(MANIFEST)

    status = main(["fleet", "export", str(manifest_path), "--registry", str(registry_path)])

    text = capsys.readouterr().out
    assert status == 0
    for key in keys.values():
        assert key.hex() not in text
        assert base64.b64encode(key).decode() not in text
    assert "key," not in text.splitlines()[0] + ","
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [row["bay"] for row in rows] == ["b1", "b2", "b3"]
    assert rows[0]["result"] == OK
    assert rows[0]["key_version"] == "1"
    assert rows[1]["result"] == "not started"
    assert rows[2]["detail"] == "'=cmd|' /C calc'!A0"


def test_export_to_file(tmp_path, registry_with_fleet):
    registry_path, _ = registry_with_fleet
    manifest_path = tmp_path / "site.toml"
    manifest_path.write_text(MANIFEST)
    output = tmp_path / "fleet.csv"

    status = main(["fleet", "export", str(manifest_path), "--registry", str(registry_path), "-o", str(output)])

    assert status == 0
    assert output.read_text().startswith("bay,device_id,board,gateway,key_version")


def test_export_rows_without_manifest(registry_with_fleet):
    registry_path, _ = registry_with_fleet
    with Registry(registry_path) as registry:
        rows = export_rows(registry, "lot-7")

    assert [row["bay"] for row in rows] == ["b1", "b3"]
    assert to_csv(rows).count("\r\n") == 3
