"""Checks that need a real board: what its flash contains, read through its bootloader."""

import pytest
from esptool.cmds import detect_chip

from baysense.images import parse_image

# Bytes read from the image offset: the second-stage bootloader there is about 25 KB.
READ_BYTES = 64 * 1024


@pytest.mark.hardware
@pytest.mark.board_state("bootloader")
def test_flash_holds_an_image_for_the_chip(board):
    # A virtual board runs MicroPython without a flash image, so this needs a real one.
    with detect_chip(board.target.port, connect_mode="no-reset") as loader:
        stub = loader.run_stub()
        data = stub.read_flash(board.definition["image_offset"], READ_BYTES)

    image = parse_image(data, "flash of %s at %#x" % (board.name, board.definition["image_offset"]))
    assert image.chip == board.definition["chip"]
