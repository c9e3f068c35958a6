"""`fleet provision` as a plain function: one worker thread per port, progress in the registry.

A board's work is almost all waiting on its serial port, so threads overlap it well. Each
worker owns its port and its own registry connection, and catches its own failures, so one
failing board never stops the others. Ctrl-C is a KeyboardInterrupt in the main thread or one
raised from a worker's before_step hook. It lets every worker finish the step it is in and
record the next one as not done, so the next run resumes there.

Bays with `port = "auto"` take the ESP32 boards found on USB in port order, then each newly
plugged one in the order it appears. A board that already carries the device id of one of
those bays (an earlier, interrupted run) gets that bay back.
"""

import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import ports
from ..device import Device
from ..errors import BaysenseError
from ..registry import Registry
from ..registry import default_path as default_registry_path
from .progress import FAILED, INTERRUPTED, OK, PENDING, SKIPPED, Progress
from .steps import BayWorker, Builds, Outcome, planned_steps, read_device_id, step_fingerprints, steps_to_do

log = logging.getLogger(__name__)

# How often (s) the auto dispatcher looks for newly plugged boards: quick enough to feel
# immediate when a board is plugged in, rare enough to cost nothing.
AUTO_POLL_S = 0.5
# How long (s) `auto` waits for the next board after the last one was taken, by default.
DEFAULT_AUTO_WAIT_S = 120.0
# How long (s) the main thread sleeps between checks of its workers; the live table redraws
# on its own clock.
JOIN_POLL_S = 0.05
# Log files hold the boards' output and error details: private to this user.
LOG_FILE_MODE = 0o600
LOG_DIR_MODE = 0o700


def esp32_ports():
    """Return the ports of the ESP32 USB bridges plugged in now, sorted by device path."""
    return [port["device"] for port in ports.list_ports() if port["bridge"]]


@dataclass
class Row:
    """One line of the live table."""

    bay: str
    port: object
    step: str
    result: str
    detail: str = ""
    updated: float = field(default_factory=time.monotonic)


@dataclass
class Options:
    flash: bool = False
    force: bool = False
    log_dir: object = None  # Path; default: <manifest folder>/<manifest stem>-logs
    wifi: object = None  # {"ssid", "password"}, or None to keep each board's Wi-Fi settings
    auto_wait_s: float = DEFAULT_AUTO_WAIT_S
    port_source: object = esp32_ports  # returns the candidate ports for `auto`
    firmware_dir: object = None  # Path of the node firmware to deploy; default: the checkout's firmware/
    before_step: object = None  # before_step(bay_id, step), for tests and integrations
    on_event: object = None  # on_event(Row) from any thread, after each step's start and end


class Run:
    """One `fleet provision` run over a validated manifest."""

    def __init__(self, manifest, registry_path, options=None):
        self.manifest = manifest
        self.registry_path = Path(registry_path) if registry_path else default_registry_path()
        self.options = options or Options()
        self.force = self.options.force
        self.wifi = self.options.wifi
        self.steps = planned_steps(manifest, self.options.flash)
        self.stopping = threading.Event()
        self.rows = {}
        self.outcomes = []
        self.site_outcome = None
        self._lock = threading.Lock()
        self._loggers = []
        self._auto_threads = ()  # workers the auto dispatcher started, for _wait()
        self.explicit_ports = set()  # ports of the bays that name theirs, which `auto` leaves alone
        self.log_dir = Path(self.options.log_dir or manifest.path.with_name(manifest.path.stem + "-logs"))
        self.builds = None
        self.image_digest = None

    # -- called by workers

    def event(self, bay_id, port, step, result, detail):
        row = Row(bay_id, port, step, result, detail)
        with self._lock:
            self.rows[bay_id] = row
        if self.options.on_event is not None:
            self.options.on_event(row)
        log.debug("bay %s on %s: %s %s %s", bay_id, port, step, result, detail)

    def before_step(self, bay_id, step):
        if self.options.before_step is not None:
            self.options.before_step(bay_id, step)

    def board_log(self, bay_id):
        """Return the logger whose records go to this bay's own log file."""
        logger = logging.getLogger("baysense.fleet.board.%s" % bay_id)
        path = self.log_dir / ("%s.log" % bay_id)
        handler = logging.FileHandler(path, encoding="utf-8")
        os.chmod(path, LOG_FILE_MODE)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.handlers = [handler]
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        with self._lock:
            self._loggers.append(logger)
        return logger

    def snapshot(self):
        """Return the live table's rows in manifest order."""
        with self._lock:
            return [self.rows[bay.id] for bay in self.manifest.bays if bay.id in self.rows]

    # -- the run

    def execute(self):
        """Provision every bay; return the list of Outcomes (the site's first when it has one)."""
        # Builds checks the firmware folder first, so an incomplete one fails before any step.
        self.builds = Builds(Path(self.options.firmware_dir)) if self.options.firmware_dir else Builds()
        self.log_dir.mkdir(mode=LOG_DIR_MODE, parents=True, exist_ok=True)
        if "flash" in self.steps:
            self.image_digest = hashlib.sha256(self.manifest.image.read_bytes()).hexdigest()[:16]
        for bay in self.manifest.bays:
            self.event(bay.id, bay.board_spec, "-", PENDING, "")

        try:
            with Registry(self.registry_path) as registry:
                progress = Progress(registry, self.manifest.community)
                if self.manifest.zerotier is not None:
                    from .site import authorize_gateway

                    self.site_outcome = authorize_gateway(self.manifest, progress, self.force)
                explicit, auto = self._sort_bays(progress)

            threads = [self._start(bay, port) for bay, port in explicit]
            if auto:
                threads.append(self._thread(self._dispatch_auto, auto, name="fleet-auto"))
            self._wait(threads)
        finally:
            self._close_logs()
        return self.all_outcomes()

    def all_outcomes(self):
        with self._lock:
            done = {outcome.bay: outcome for outcome in self.outcomes}
            rows = dict(self.rows)
        outcomes = [self.site_outcome] if self.site_outcome is not None else []
        for bay in self.manifest.bays:
            if bay.id in done:
                outcomes.append(done[bay.id])
                continue
            # Never reached a worker: the run was interrupted before this bay started.
            row = rows.get(bay.id)
            outcomes.append(Outcome(bay.id, row.port if row else bay.board_spec, INTERRUPTED, row.step if row else "-",
                                    "not started: run again to finish"))
        return outcomes

    def _sort_bays(self, progress):
        """Split bays into [(bay, port)] with a known port and the `auto` bays still to do.

        Bays already done and verified are finished here, without touching their boards.
        """
        explicit = []
        auto = []
        owners = {}  # resolved port -> the bay that has it
        for bay in self.manifest.bays:
            fingerprints = step_fingerprints(self.manifest, bay, self.builds, self.image_digest)
            if not steps_to_do(progress, bay.id, self.steps, fingerprints, self.force):
                self._finish(Outcome(bay.id, bay.board_spec, SKIPPED, self.steps[-1], "done and verified earlier"))
                continue
            if bay.is_auto:
                auto.append(bay)
                continue
            try:
                port = ports.resolve_port(bay.board_spec)
            except BaysenseError as error:
                self._finish(Outcome(bay.id, bay.board_spec, FAILED, "-", str(error)))
                continue
            if port in owners:
                # A serial number that resolves to another bay's port: one board cannot be both.
                self._finish(Outcome(bay.id, port, FAILED, "-", "port %s is also bay %s's board: give each bay its own board"
                                     % (port, owners[port])))
                continue
            owners[port] = bay.id
            explicit.append((bay, port))
        self.explicit_ports = set(owners)
        return explicit, auto

    def _finish(self, outcome):
        with self._lock:
            self.outcomes.append(outcome)
        if outcome.result != OK:
            # A bay that ended well already showed its last step's event.
            self.event(outcome.bay, outcome.port, outcome.step or "-", outcome.result, outcome.detail)

    def _start(self, bay, port):
        return self._thread(self._work, bay, port, name="fleet-%s" % bay.id)

    def _thread(self, target, *args, name):
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        return thread

    def _work(self, bay, port):
        self._finish(BayWorker(self, bay, port).work())

    def _wait(self, threads):
        interrupts = 0
        while True:
            alive = [thread for thread in threads if thread.is_alive()]
            if not alive:
                return
            try:
                alive[0].join(JOIN_POLL_S)
                # The auto dispatcher may have started workers meanwhile.
                with self._lock:
                    threads = threads + [thread for thread in self._auto_threads if thread not in threads]
            except KeyboardInterrupt:
                interrupts += 1
                self.stopping.set()
                if interrupts > 1:
                    # A second Ctrl-C: stop waiting. A step cut off here stays "running" in the
                    # registry, which the next run treats as not done.
                    log.warning("stopped without waiting for %d worker(s)", len(alive))
                    return
                log.warning("interrupted: finishing the steps in progress (Ctrl-C again to stop now)")

    def _dispatch_auto(self, bays):
        """Give each `auto` bay the next ESP32 board found, until all have one or none comes."""
        waiting = list(bays)
        by_device_id = {bay.device_id: bay for bay in bays}
        other_ports = self.explicit_ports | {bay.port for bay in self.manifest.bays if bay.port and not bay.is_auto}
        seen = set()
        started = []
        deadline = time.monotonic() + self.options.auto_wait_s
        for bay in waiting:
            self.event(bay.id, "auto", "-", PENDING, "waiting for a board")
        while waiting and not self.stopping.is_set() and time.monotonic() < deadline:
            for port in self.options.port_source():
                if port in seen or port in other_ports or not waiting:
                    continue
                seen.add(port)
                bay = self._claim(port, waiting, by_device_id)
                if bay is None:
                    continue
                waiting.remove(bay)
                thread = self._start(bay, port)
                started.append(thread)
                with self._lock:
                    self._auto_threads = tuple(started)
                deadline = time.monotonic() + self.options.auto_wait_s
            if waiting:
                self.stopping.wait(AUTO_POLL_S)
        for bay in waiting:
            if self.stopping.is_set():
                self._finish(Outcome(bay.id, "auto", INTERRUPTED, "-", "no board taken yet: run again to finish"))
            else:
                self._finish(Outcome(bay.id, "auto", FAILED, "-", "no ESP32 board was plugged in within %.0f s" % self.options.auto_wait_s))

    def _claim(self, port, waiting, by_device_id):
        """Return the bay the board on `port` gets, or None when it belongs to no waiting bay."""
        try:
            with Device(port) as device:
                device_id = read_device_id(device)
        except BaysenseError as error:
            log.warning("skipping the board on %s: %s", port, error)
            return None
        if device_id in by_device_id and by_device_id[device_id] in waiting:
            return by_device_id[device_id]
        if device_id is not None and any(bay.device_id == device_id for bay in self.manifest.bays):
            log.warning("the board on %s is already %s, which is not waiting for a board: left alone", port, device_id)
            return None
        # A new board, or one provisioned for another site, takes the first waiting bay.
        # NOTE: a fresh board plugged in before the board of an interrupted bay takes that bay,
        # and the interrupted board is then left alone as a duplicate. Plug resumed boards first.
        return waiting[0]

    def _close_logs(self):
        with self._lock:
            loggers, self._loggers = self._loggers, []
        for logger in loggers:
            for handler in logger.handlers:
                handler.close()
            logger.handlers = []


def exit_status(outcomes):
    """Return 130 when the run was interrupted, 1 when a board or the site failed, else 0."""
    results = {outcome.result for outcome in outcomes}
    if INTERRUPTED in results:
        return 130
    if FAILED in results:
        return 1
    return 0


def summary_counts(outcomes):
    counts = {}
    for outcome in outcomes:
        counts[outcome.result] = counts.get(outcome.result, 0) + 1
    return counts

