"""`baysense deploy`: copy the firmware to a board, sending only what changed.

The board's files are compared with the local build by SHA-256 (computed on the board in one
exec), changed files are written atomically (temporary name, then rename), and files an
earlier deploy wrote that the build no longer has are removed. The list of deployed files is
kept on the board in MANIFEST, so files the user put there (config.json among them) are
never touched.
"""

import json
import logging
import re
import subprocess
import tempfile
from pathlib import Path

import click

from .device import Device, local_sha256
from .errors import ConfigError, DeviceError
from .paths import FIRMWARE_DIR, MPY_CROSS
from .ports import port_option, resolve_port

log = logging.getLogger(__name__)

MANIFEST = "/.baysense-deployed.json"


# boot.py and main.py stay source: the board runs them by those names.
SOURCE_ONLY = {"boot.py", "main.py"}


def compiler_mpy_version():
    """Return (version, sub-version) of the .mpy files mpy-cross emits."""
    output = subprocess.run([MPY_CROSS, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"mpy v(\d+)\.(\d+)", output)
    if not match:
        raise DeviceError("cannot read the .mpy version of mpy-cross", "its --version printed %r" % output.strip())
    return int(match.group(1)), int(match.group(2))


def board_mpy_version(device):
    """Return the board's (version, sub-version) of .mpy, or None when it cannot load .mpy."""
    value = device.eval("getattr(__import__('sys').implementation, '_mpy', None)")
    if value is None:
        return None
    return value & 0xFF, (value >> 8) & 3


def build(firmware_dir=FIRMWARE_DIR, compile_mpy=True):
    """Return {path on the board: bytes} of the firmware build.

    With compile_mpy, modules are compiled with mpy-cross: a board compiling sources itself
    needs more heap than an ESP32 has free for the larger modules.
    """
    files = {}
    with tempfile.TemporaryDirectory(prefix="baysense-build-") as scratch:
        for source in sorted(firmware_dir.rglob("*.py")):
            relative = source.relative_to(firmware_dir).as_posix()
            if "__pycache__" in relative:
                continue
            if not compile_mpy or relative in SOURCE_ONLY:
                files["/" + relative] = source.read_bytes()
                continue
            target = Path(scratch) / (relative[:-3] + ".mpy")
            target.parent.mkdir(parents=True, exist_ok=True)
            result = subprocess.run(
                [MPY_CROSS, "-o", str(target), "-s", relative, str(source)], capture_output=True, text=True
            )
            if result.returncode != 0:
                raise ConfigError("mpy-cross failed on %s" % relative, result.stderr.strip() or result.stdout.strip())
            files["/" + relative[:-3] + ".mpy"] = target.read_bytes()
    return files


def build_for(device, echo=None):
    """Build for this board: .mpy when its bytecode version matches mpy-cross, else sources."""
    board_version = board_mpy_version(device)
    compiler_version = compiler_mpy_version()
    if board_version == compiler_version:
        return build()
    log.warning(
        "the board loads .mpy version %s but mpy-cross emits %s.%s: deploying .py sources instead",
        "none" if board_version is None else "%d.%d" % board_version,
        *compiler_version,
    )
    if echo:
        echo("warning: the board's .mpy version does not match mpy-cross; deploying .py sources (slower imports, more heap)")
    return build(compile_mpy=False)


def board_hashes(device, paths):
    """Return {path: hex SHA-256 or None} for files on the board, in one exec."""
    code = (
        "import hashlib, binascii\n"
        "def _h(p):\n"
        " try:\n"
        "  f = open(p, 'rb')\n"
        " except OSError:\n"
        "  return None\n"
        " h = hashlib.sha256()\n"
        " while True:\n"
        "  c = f.read(1024)\n"
        "  if not c:\n"
        "   break\n"
        "  h.update(c)\n"
        " f.close()\n"
        " return binascii.hexlify(h.digest()).decode()\n"
        "print(repr({p: _h(p) for p in %r}))\n"
        "del _h\n"
    ) % (list(paths),)
    import ast

    return ast.literal_eval(device.exec(code, timeout=30).decode().strip())


def plan(device, files):
    """Return [(action, path)] with action in "add", "update", "remove", "keep"."""
    try:
        previous = json.loads(device.read_file(MANIFEST))
    except Exception:  # noqa: BLE001 - no manifest or an unreadable one: nothing to remove
        previous = []
    hashes = board_hashes(device, list(files) + [p for p in previous if p not in files])
    actions = []
    for path, data in files.items():
        remote = hashes.get(path)
        if remote is None:
            actions.append(("add", path))
        elif remote != local_sha256(data):
            actions.append(("update", path))
        else:
            actions.append(("keep", path))
    for path in previous:
        if path not in files and hashes.get(path) is not None:
            actions.append(("remove", path))
    return actions


def deploy(device, files=None, dry_run=False, echo=None):
    """Bring the board's firmware in line with the build; return the actions taken."""
    files = build_for(device, echo) if files is None else files
    actions = plan(device, files)
    changed = [(action, path) for action, path in actions if action != "keep"]
    if dry_run:
        return changed
    for action, path in changed:
        if echo:
            echo("%-6s %s" % (action, path))
        if action == "remove":
            device.remove(path)
            continue
        parent = path.rsplit("/", 1)[0]
        if parent:
            device.makedirs(parent)
        device.write_file(path, files[path])
    if changed:
        device.write_file(MANIFEST, json.dumps(sorted(files)).encode())
    return changed


@click.command("deploy")
@port_option
@click.option("--dry-run", is_flag=True, help="Print what would change; write nothing.")
@click.option("--reset/--no-reset", default=True, show_default=True, help="Soft-reset the board afterwards so main.py runs the new firmware.")
def deploy_command(port, dry_run, reset):
    """Copy the firmware to a board, sending only the files that changed."""
    with Device(resolve_port(port)) as device:
        changed = deploy(device, dry_run=dry_run, echo=click.echo)
        if dry_run:
            for action, path in changed:
                click.echo("%-6s %s (dry run)" % (action, path))
        if not changed:
            click.echo("firmware up to date")
        elif not dry_run:
            click.echo("deployed: %d file(s) changed" % len(changed))
        if reset and changed and not dry_run:
            device.soft_reset(run_main=True)
