"""The plugin's board options: `--board PORT[@DEFINITION]`, `--boards N` and $BAYSENSE_BOARDS.

Boards come from `--board` (repeatable, PORT `virtual` starts a virtual board), else from
$BAYSENSE_BOARDS (the same items, comma-separated), plus `--boards N` virtual boards. This
module imports nothing heavy, because pytest loads the plugin, and so this module, in every run.
"""

import os
import stat
from dataclasses import dataclass

from .. import boards as board_definitions
from ..errors import ConfigError

ENV_BOARDS = "BAYSENSE_BOARDS"
VIRTUAL = "virtual"
PORT_HINT = "plug the board in and pass a device path that `baysense ports` lists, or the `port:` line that `baysense vboard` printed"


@dataclass(frozen=True)
class BoardSpec:
    """One --board item: a port (or "virtual") and an optional board definition name or path."""

    port: str
    definition: str | None = None


def parse_board(text):
    """Split PORT[@DEFINITION]; the suffix counts only when it names a definition.

    An unknown suffix stays part of the port, because a URL may contain "@". A device path
    and `virtual` never do, so after those an unknown suffix raises ConfigError.
    """
    text = text.strip()
    port, separator, name = text.rpartition("@")
    if not separator:
        return BoardSpec(text)
    if name in board_definitions.names() or name.endswith(".json"):
        return BoardSpec(port, name)
    if port == VIRTUAL or port.startswith("/"):
        raise ConfigError(
            "board definition not found (%s) in --board %s" % (name, text),
            "use a .json path or one of: %s" % ", ".join(board_definitions.names()),
        )
    return BoardSpec(text)


def check_port(port, source):
    """Raise ConfigError when `port` is a device path that is no serial port. `source` names the option.

    Only device paths are checked, and none is opened: opening a serial port can reset an
    ESP32, and the server behind a URL may start after pytest does.
    """
    if not port.startswith("/"):
        return
    try:
        mode = os.stat(port).st_mode
    except FileNotFoundError:
        raise ConfigError("port not found (%s) in %s" % (port, source), PORT_HINT) from None
    if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a regular file"
        raise ConfigError("%s in %s is %s, not a serial port" % (port, source, kind), PORT_HINT)


def bench_specs(board_options, virtual_count, environ):
    """Return the BoardSpecs of the options, or of $BAYSENSE_BOARDS when no --board was given."""
    texts = list(board_options)
    if not texts and environ.get(ENV_BOARDS):
        texts = [item for item in environ[ENV_BOARDS].split(",") if item.strip()]
    specs = [parse_board(text) for text in texts]
    if virtual_count:
        if virtual_count < 0:
            raise ConfigError("--boards %d is negative" % virtual_count, "pass the number of virtual boards to start")
        specs += [BoardSpec(VIRTUAL)] * virtual_count
    return specs
