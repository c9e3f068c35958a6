"""Fleet manifests: TOML and CSV read alike, and every invalid value is reported with its line and field."""

import json
import textwrap
from pathlib import Path

import pytest

from baysense.errors import ConfigError
from baysense.fleet import manifest
from baysense.fleet.manifest import ManifestError
from baysense.paths import BOARDS_DIR

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def problems_of(path):
    with pytest.raises(ManifestError) as raised:
        manifest.load(path)
    return {(problem.line, problem.field) for problem in raised.value.problems}, raised.value


VALID_TOML = """
community = "lot-7"
gateway = "127.0.0.1:5683"
board = "virtual"

[[bays]]
id = "b1"
port = "/dev/pts/90"

[[bays]]
id = "b2"
serial = "ABC123"
board = "esp32-devkitc-hcsr04"

[[bays]]
id = "b3"
port = "auto"
"""


def test_toml_valid_manifest(tmp_path):
    loaded = manifest.load(write(tmp_path, "site.toml", VALID_TOML))

    assert loaded.community == "lot-7"
    assert loaded.heartbeat_s == manifest.DEFAULT_HEARTBEAT_S
    assert [bay.id for bay in loaded.bays] == ["b1", "b2", "b3"]
    assert [bay.line for bay in loaded.bays] == [5, 9, 14]
    assert loaded.bays[1].board_spec == "id:ABC123"
    assert loaded.bays[1].board_name == "esp32-devkitc-hcsr04"
    assert loaded.bays[2].is_auto
    assert loaded.zerotier is None


def test_examples_toml_and_csv_agree():
    from_toml = manifest.load(EXAMPLES / "site.toml")
    from_csv = manifest.load(EXAMPLES / "site.csv")

    assert from_toml.bays == from_csv.bays
    assert from_toml.community == from_csv.community
    assert from_toml.gateway == from_csv.gateway
    assert from_toml.wifi_ssid == from_csv.wifi_ssid


def test_toml_errors_name_line_and_field(tmp_path):
    path = write(
        tmp_path,
        "site.toml",
        """
        community = "lot 7"
        gateway = "no-port"
        board = "virtual"
        heartbeat_s = 2
        colour = "red"

        [[bays]]
        id = "b1"
        port = "/dev/pts/90"

        [[bays]]
        id = "b1"
        port = "/dev/pts/90"

        [[bays]]
        id = "b3"

        [[bays]]
        id = "b4"
        port = "/dev/pts/91"
        serial = "X1"

        [[bays]]
        id = "b5"
        port = "/dev/pts/92"
        board = "no-such-board"
        prot = "typo"
        """,
    )
    problems, error = problems_of(path)

    assert (1, "community") in problems
    assert (2, "gateway") in problems
    assert (4, "heartbeat_s") in problems
    assert (5, "colour") in problems
    assert (12, "id") in problems  # the duplicate bay id, on the second bay's line
    assert (12, "device_id") not in problems  # the same duplicate, reported once
    assert (13, "port") in problems  # the duplicate port
    assert (15, "port") in problems  # bay b3 has no port or serial: its table's line
    assert (21, "serial") in problems  # port and serial both given
    assert (26, "board") in problems
    assert (27, "prot") in problems
    assert "%s:line 12, field 'id'" % path in str(error)


def test_toml_syntax_error_has_line(tmp_path):
    path = write(tmp_path, "site.toml", 'community = "a"\ngateway = \n')
    problems, _ = problems_of(path)

    assert problems == {(2, "-")}


def test_toml_site_tables_checked(tmp_path):
    path = write(
        tmp_path,
        "site.toml",
        """
        community = "lot-7"
        gateway = "127.0.0.1:5683"
        board = "virtual"

        [firmware]
        image = "missing.bin"
        flash = "yes"

        [zerotier]
        network = "123"
        member = "abcdef0123"
        api = "cloud"

        [[bays]]
        id = "b1"
        port = "/dev/pts/90"
        """,
    )
    problems, _ = problems_of(path)

    assert (6, "firmware.image") in problems
    assert (7, "firmware.flash") in problems
    assert (10, "zerotier.network") in problems
    assert (12, "zerotier.api") in problems


def test_toml_no_bays(tmp_path):
    path = write(tmp_path, "site.toml", 'community = "a"\ngateway = "h:1"\nboard = "virtual"\n')
    problems, _ = problems_of(path)

    assert problems == {(1, "bays")}


def test_csv_valid_manifest(tmp_path):
    path = write(
        tmp_path,
        "site.csv",
        """
        community,gateway,board,id,port,serial
        lot-7,127.0.0.1:5683,virtual,b1,/dev/pts/90,
        ,,virtual,b2,,ABC123
        lot-7,,virtual,b3,auto,
        """,
    )
    loaded = manifest.load(path)

    assert loaded.community == "lot-7"
    assert loaded.gateway == "127.0.0.1:5683"
    assert [bay.board_spec for bay in loaded.bays] == ["/dev/pts/90", "id:ABC123", "auto"]
    assert [bay.line for bay in loaded.bays] == [2, 3, 4]


def test_csv_errors_name_line_and_field(tmp_path):
    path = write(
        tmp_path,
        "site.csv",
        """
        community,gateway,board,id,port,heartbeat_s
        lot-7,127.0.0.1:5683,virtual,b1,/dev/pts/90,60
        ,,virtual,b 2,/dev/pts/91,
        ,,virtual,b3,,
        ,,nope,b4,/dev/pts/90,
        ,,virtual,b5,/dev/pts/93,abc
        """,
    )
    problems, error = problems_of(path)

    assert (3, "id") in problems
    assert (4, "port") in problems
    assert (5, "board") in problems
    assert (5, "port") in problems  # the same port as b1
    assert (6, "heartbeat_s") in problems
    assert "line 6, field 'heartbeat_s'" in str(error)


def test_csv_site_cell_conflict(tmp_path):
    path = write(
        tmp_path,
        "site.csv",
        """
        community,gateway,board,id,port
        lot-7,127.0.0.1:5683,virtual,b1,/dev/pts/90
        lot-8,,virtual,b2,/dev/pts/91
        """,
    )
    problems, error = problems_of(path)

    assert problems == {(3, "community")}
    assert "set on line 2" in str(error)


def test_csv_quoted_cell_spanning_lines(tmp_path):
    # A quoted cell with a line break: the row's problem is reported at the row's last line.
    path = write(
        tmp_path,
        "site.csv",
        'community,gateway,board,id,port\nlot-7,127.0.0.1:5683,virtual,b1,/dev/pts/90\n,,virtual,"b\n2",/dev/pts/91\n',
    )
    problems, _ = problems_of(path)

    assert problems == {(4, "id")}


def test_csv_header_problems(tmp_path):
    path = write(tmp_path, "site.csv", "community,id,colour\nlot-7,b1,red\n")
    problems, _ = problems_of(path)

    assert problems == {(1, "gateway"), (1, "colour")}


def test_unknown_manifest_type(tmp_path):
    path = write(tmp_path, "site.yaml", "community: a\n")

    with pytest.raises(ConfigError, match="unknown manifest type"):
        manifest.load(path)


def test_board_the_firmware_rejects(tmp_path):
    board = json.loads((BOARDS_DIR / "virtual.json").read_text())
    board["detector"]["activity_samples"] = 1000
    (tmp_path / "bad-detector.json").write_text(json.dumps(board))
    path = write(
        tmp_path,
        "site.toml",
        """
        community = "lot-7"
        gateway = "127.0.0.1:5683"
        board = "virtual"

        [[bays]]
        id = "b1"
        port = "/dev/pts/90"
        board = "%s"
        """ % (tmp_path / "bad-detector.json"),
    )
    problems, error = problems_of(path)

    assert (8, "board") in problems
    assert "detector.activity_samples" in str(error)
    assert "1000 is out of range" in str(error)
    assert "set it to 2..64 in %s" % (tmp_path / "bad-detector.json") in str(error)
