"""`baysense vboard`: run a virtual board until interrupted."""

import json
import signal
import sys
import tempfile
import threading
from pathlib import Path

import click

from .. import boards
from ..errors import ConfigError
from .board import VirtualBoard
from .stimulus import DEFAULT_WORLD, Stimulus


def _announce(line):
    click.echo(line)
    sys.stdout.flush()


@click.command("vboard")
@click.option(
    "--dir",
    "state_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of the board's state: fs/ is its filesystem, sim/ its simulated world, flash.bin its "
    "flash. Default: a new temporary folder. Reuse a folder to keep the board's files across runs.",
)
@click.option("--board", "board_name", default="virtual", show_default=True, help="Board definition (boards/NAME.json).")
@click.option("--baud", type=click.IntRange(300, 4000000), help="Pace the port to this many bits per second, as a USB-serial bridge does.")
@click.option(
    "--bootloader",
    is_flag=True,
    help="Start held in download mode: the ROM bootloader serves esptool on a socket:// port. After a "
    "reset into a valid image (esptool's hard reset over rfc2217://, or SIGUSR1) the REPL starts and a "
    "`repl: <device path>` line follows.",
)
@click.option("--chip", type=click.Choice(["esp32", "esp32s3", "esp32c3"]), help="Chip the bootloader emulates. Default: the board's.")
@click.option("--rfc2217", is_flag=True, help="With --bootloader: serve rfc2217:// with DTR/RTS auto-reset instead of socket://.")
def vboard(state_dir, board_name, baud, bootloader, chip, rfc2217):
    """Run a virtual board: the MicroPython unix port behind a pseudo-terminal.

    The first line of output is `port: <device path>`; mpremote, ampy and `baysense` commands
    use that path as a USB board's port. `baysense stimulus --dir DIR distance_mm=900` puts a
    car under its ranger. SIGUSR1 cuts the board's power (it reboots); SIGTERM or Ctrl-C stops it.
    """
    board = boards.load(board_name)
    if state_dir is None:
        state_dir = Path(tempfile.mkdtemp(prefix="baysense-vboard-"))
    virtual = VirtualBoard(state_dir, board, baud=baud)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())

    if bootloader:
        _run_with_bootloader(virtual, chip or board["chip"], rfc2217, baud, done)
        return

    virtual.start()
    _announce("port: %s" % virtual.port)
    _announce("dir: %s" % virtual.state_dir)
    _announce("stimulus: %s" % virtual.stimulus.path)
    signal.signal(signal.SIGUSR1, lambda *_: virtual.power_cycle())
    try:
        while not done.wait(0.5):
            pass
    finally:
        virtual.stop()


def _run_with_bootloader(virtual, chip, rfc2217, baud, done):
    """Serve the ROM bootloader; start (or reset) the REPL whenever the chip runs its app."""
    from ..rom.boot import probe_image
    from ..rom.server import serve

    virtual.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    flash_path = virtual.state_dir / "flash.bin"
    lock = threading.Lock()

    def on_app_start(reason):
        # Runs on the bootloader's connection thread: hand the slow part to another thread.
        threading.Thread(target=start_app, args=(reason,), daemon=True).start()

    def start_app(reason):
        with lock:
            if not probe_image(flash_path, chip):
                _announce("boot: no valid image in flash (%s); the chip waits for download" % reason)
                return
            if virtual.port is None:
                virtual.start()
                _announce("repl: %s" % virtual.port)
            else:
                virtual.power_cycle()

    server = threading.Thread(
        target=serve,
        args=(flash_path, chip),
        kwargs=dict(
            baud=baud,
            on_ready=lambda url: _announce("port: %s" % url),
            flash_size=virtual.board["flash_size_bytes"],
            stop_event=done,
            on_app_start=on_app_start,
            rfc2217=rfc2217,
        ),
        daemon=True,
    )
    server.start()
    # SIGUSR1 presses EN with BOOT released: over socket://, which has no reset lines, this is
    # how a script boots the flashed image.
    signal.signal(signal.SIGUSR1, lambda *_: on_app_start("reset"))
    try:
        while not done.wait(0.5):
            pass
    finally:
        server.join(5)
        if virtual.port is not None:
            virtual.stop()


@click.command("stimulus")
@click.option(
    "--dir",
    "state_dir",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The virtual board's folder (the `dir:` line `baysense vboard` prints).",
)
@click.argument("settings", nargs=-1)
def stimulus_command(state_dir, settings):
    """Show or change a virtual board's simulated world.

    SETTINGS are KEY=VALUE pairs with JSON values, for example `distance_mm=900` (a car under
    the ranger), `echo=false` (ranger unplugged), `link=false` (Wi-Fi down),
    `field=[120,-40,300]` or `presence=1`. A value of the wrong type or out of range is
    rejected and nothing is changed. With no SETTINGS it prints the current world.

    The field has noise of field_noise counts (standard deviation, default 2), seeded with
    noise_seed, as a real magnetometer's reading is never still. With `field_noise=0` the
    node reports a stuck-reading fault after the board's stuck_after_ms.
    """
    sim_dir = state_dir / "sim"
    if not sim_dir.is_dir():
        raise ConfigError(
            "%s is not a virtual board's folder (it has no sim/ folder)" % state_dir,
            "pass the folder of the `dir:` line that `baysense vboard` printed",
        )
    stimulus = Stimulus(sim_dir)
    values = {}
    for setting in settings:
        key, separator, text = setting.partition("=")
        if not separator:
            raise ConfigError("invalid setting %r" % setting, "write KEY=VALUE, for example distance_mm=900")
        if key not in DEFAULT_WORLD:
            raise ConfigError("unknown stimulus key %r" % key, "known keys: %s" % ", ".join(sorted(DEFAULT_WORLD)))
        try:
            values[key] = json.loads(text)
        except json.JSONDecodeError:
            raise ConfigError("invalid value for %s: %r" % (key, text), "use JSON: 900, true, false or [1, 2, 3]") from None
    if values:
        stimulus.set(**values)
    click.echo(json.dumps(stimulus.read(), sort_keys=True))
