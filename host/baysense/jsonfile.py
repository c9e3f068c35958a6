"""Read a JSON file in any encoding the JSON standard allows.

Editors and shells do not all write UTF-8 without a byte order mark: Notepad can add a UTF-8
BOM, and PowerShell's `>` writes UTF-16. `json.loads` detects UTF-8, UTF-16 and UTF-32 from
the first bytes of `bytes` input (with or without a BOM), so the file is read as bytes.
"""

import json
from pathlib import Path

from .errors import ConfigError


def load(path, description):
    """Return the parsed content of the JSON file at `path`; `description` names it in errors."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ConfigError("cannot read %s %s: %s" % (description, path, error.strerror), "check the path") from None

    try:
        return json.loads(data)
    except UnicodeDecodeError as error:
        raise ConfigError(
            "%s %s is not UTF-8 or UTF-16 text (byte 0x%02x at offset %d)" % (description, path, data[error.start], error.start),
            "save it as UTF-8",
        ) from None
    except json.JSONDecodeError as error:
        raise ConfigError("%s: invalid JSON at line %d: %s" % (path, error.lineno, error.msg), "fix the file") from None
