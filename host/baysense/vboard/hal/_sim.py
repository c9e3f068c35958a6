# Shared state of the simulated ESP32 HAL on the virtual board (runs on MicroPython).
#
# The virtual board's supervisor starts the interpreter with these environment variables:
#   BAYSENSE_VBOARD_FS     real path of the board's filesystem (what "/" is on the board)
#   BAYSENSE_VBOARD_SIM    real path of the simulation folder (stimulus, wiring, reset markers)
#   BAYSENSE_RESET_CAUSE   machine.reset_cause() value for this boot
# The host writes sim/stimulus.json (the simulated world: distance, field, presence, link) and
# sim/wiring.json (which pins the simulated sensor is wired to, from the board definition).

import sys
import json

_saved_path = sys.path
sys.path = []
try:
    import os as _os
    import time as _time
finally:
    sys.path = _saved_path

# The interpreter's own open(), captured before _boot.py confines open() to the board's
# folder: the simulation's files live outside it.
host_open = open

FS_ROOT = _os.getenv("BAYSENSE_VBOARD_FS") or _os.getcwd()
SIM_DIR = _os.getenv("BAYSENSE_VBOARD_SIM") or (FS_ROOT + "/../sim")
RESET_CAUSE = int(_os.getenv("BAYSENSE_RESET_CAUSE") or "1")

# How often the stimulus file is checked for changes, in milliseconds: often enough for a
# scenario stepped every 100 ms, rare enough to keep the simulation's own cost small.
_STIMULUS_CHECK_MS = 50

_stimulus = {}
_stimulus_text = [None]
_stimulus_checked = [None]


def real_os():
    return _os


def stimulus():
    """Return the current simulated world as a dict, re-read when the host changed it."""
    now = _time.ticks_ms()
    last = _stimulus_checked[0]
    if last is not None and _time.ticks_diff(now, last) < _STIMULUS_CHECK_MS:
        return _stimulus
    _stimulus_checked[0] = now
    # The file is compared by content: the port's stat() gives whole seconds only, too coarse
    # for a scenario that changes the world several times a second.
    try:
        with host_open(SIM_DIR + "/stimulus.json") as f:
            text = f.read()
    except OSError:
        return _stimulus
    if text != _stimulus_text[0]:
        try:
            data = json.loads(text)
        except ValueError:
            return _stimulus
        _stimulus.clear()
        _stimulus.update(data)
        _stimulus_text[0] = text
    return _stimulus


def wiring():
    try:
        with host_open(SIM_DIR + "/wiring.json") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def request_reset(kind):
    """End this interpreter the way a chip reset ends the firmware: at once, no cleanup.

    The supervisor reads the marker to know which reset to report, then restarts the board.
    """
    with host_open(SIM_DIR + "/reset_request", "w") as f:
        f.write(kind)
    # The unix port has no os._exit. Killing our own process (the shell's parent) is the only
    # way to stop without running Python-level cleanup, as a real reset does.
    _os.system("kill -KILL $PPID")
    while True:
        _time.sleep(1)
