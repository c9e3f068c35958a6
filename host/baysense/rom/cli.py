"""`baysense rom`: run a virtual chip's serial bootloader for esptool."""

import os

import click

from .. import boards
from .chips import CHIPS
from .server import serve

DEFAULT_FLASH_SIZE = 4 * 1024 * 1024  # the most common ESP32 module flash (WROOM-32, 4 MB)


@click.command("rom")
@click.option("--chip", type=click.Choice(sorted(CHIPS)), help="Chip to emulate (default: the board's, else esp32).")
@click.option("--board", "board_name", help="Board definition: a name in boards/ or a path (sets chip and flash size).")
@click.option("--flash", "flash_path", required=True, type=click.Path(dir_okay=False), help="Flash file (created erased if missing).")
@click.option("--flash-size", type=int, help="Flash size in bytes for a new flash file (default: the board's, else 4194304).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=0, show_default=True, help="TCP port (0: any free port).")
@click.option("--baud", type=int, help="Pace the link to this UART rate in bit/s (default: no pacing).")
@click.option("--rfc2217", is_flag=True, help="Serve RFC 2217 with DTR/RTS auto-reset instead of a raw socket.")
def rom_command(chip, board_name, flash_path, flash_size, host, port, baud, rfc2217):
    """Serve the ESP serial bootloader of a virtual chip; the first line printed is its port URL."""
    board = boards.load(board_name) if board_name else {}
    chip = chip or board.get("chip", "esp32")
    if flash_size is None and not os.path.exists(flash_path):
        flash_size = board.get("flash_size_bytes", DEFAULT_FLASH_SIZE)

    def announce(url):
        click.echo("port: %s" % url)
        click.get_text_stream("stdout").flush()

    serve(flash_path, chip, host=host, port=port, baud=baud, on_ready=announce, flash_size=flash_size, rfc2217=rfc2217)
