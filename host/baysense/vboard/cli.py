"""`baysense vboard`: run a virtual board until interrupted."""

import signal
import sys
import tempfile
import threading
from pathlib import Path

import click

from .. import boards
from .board import VirtualBoard


@click.command("vboard")
@click.option(
    "--dir",
    "state_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of the board's state: fs/ is its filesystem, sim/ its simulated world. "
    "Default: a new temporary folder. Reuse a folder to keep the board's files across runs.",
)
@click.option("--board", "board_name", default="virtual", show_default=True, help="Board definition (boards/NAME.json).")
@click.option("--baud", type=click.IntRange(300, 4000000), help="Pace the port to this many bits per second, as a USB-serial bridge does.")
def vboard(state_dir, board_name, baud):
    """Run a virtual board: the MicroPython unix port behind a pseudo-terminal.

    The first line of output is `port: <device path>`; mpremote, ampy and `baysense` commands
    use that path as a USB board's port. SIGUSR1 cuts the board's power (it reboots);
    SIGTERM or Ctrl-C stops it.
    """
    board = boards.load(board_name)
    if state_dir is None:
        state_dir = Path(tempfile.mkdtemp(prefix="baysense-vboard-"))
    virtual = VirtualBoard(state_dir, board, baud=baud).start()
    click.echo("port: %s" % virtual.port)
    click.echo("dir: %s" % virtual.state_dir)
    click.echo("stimulus: %s" % virtual.stimulus.path)
    sys.stdout.flush()

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGUSR1, lambda *_: virtual.power_cycle())
    try:
        while not done.wait(0.5):
            pass
    finally:
        virtual.stop()
