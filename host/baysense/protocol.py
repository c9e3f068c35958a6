"""The wire protocol, loaded from the firmware's own file so both sides run the same code."""

import importlib.util

from .paths import FIRMWARE_DIR

_spec = importlib.util.spec_from_file_location("baysense._firmware_protocol", FIRMWARE_DIR / "protocol.py")
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)

globals().update({name: value for name, value in vars(_module).items() if not name.startswith("__")})
