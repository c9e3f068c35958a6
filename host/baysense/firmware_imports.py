"""The modules of a node firmware folder and the imports between them.

The node's firmware is a flat folder of modules that import each other by bare name
(`from filters import Spread`). A copy of that folder, passed to `deploy --firmware-dir`,
`fleet provision --firmware-dir` or `replay --firmware`, must contain every module that one
of its modules imports. A node stops at start with ImportError otherwise, and the replay
engines would disagree about the copy. So every command checks a folder here, before it
writes to a board or runs a trace.

Imports inside functions count too: the Detector imports its kind's decision module when it
is built, and a folder is deployed whole, whatever kind of sensor the board has.
"""

import ast
from pathlib import Path

from .errors import ConfigError
from .paths import FIRMWARE_DIR

# The modules a board runs by name after a reset: every other module is imported from them.
NODE_ENTRY_MODULES = ("boot", "main")


class MissingModuleError(ConfigError):
    """A firmware folder lacks a module that one of its modules imports."""


def module_names(firmware_dir):
    """Return the module names a firmware folder defines: its top-level .py files."""
    return {path.stem for path in Path(firmware_dir).glob("*.py")}


def import_closure(firmware_dir, entries):
    """Return the sorted names of the `entries` modules and every folder module they import.

    An imported name counts when it is a module of `firmware_dir` or of the project's
    firmware/, so `import machine` is left to the board. Raise MissingModuleError when the
    folder lacks one of these modules, and ConfigError on a source that does not parse.
    """
    firmware_dir = Path(firmware_dir)
    names = module_names(firmware_dir) | module_names(FIRMWARE_DIR)
    found = set()
    # (module, the module that imports it, or None for an entry)
    waiting = [(entry, None) for entry in reversed(entries)]
    while waiting:
        name, importer = waiting.pop()
        if name in found:
            continue
        path = firmware_dir / (name + ".py")
        if not path.is_file():
            raise missing_module_error(name, firmware_dir, importer)
        found.add(name)
        waiting.extend((imported, name) for imported in sorted(imported_names(path) & names))
    return sorted(found)


def check_node_folder(firmware_dir=FIRMWARE_DIR):
    """Raise ConfigError unless `firmware_dir` contains every module a node imports from it."""
    return import_closure(firmware_dir, NODE_ENTRY_MODULES)


def imported_names(path):
    """Return the top-level names of every absolute import in one source file."""
    try:
        tree = ast.parse(Path(path).read_bytes(), filename=str(path))
    except SyntaxError as error:
        raise syntax_error(error) from None
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def missing_module_error(name, firmware_dir, importer=None):
    """Return the error for a module `name` that `firmware_dir` lacks."""
    if importer is None:
        return MissingModuleError(
            "%s.py not found in %s" % (name, firmware_dir),
            "pass a folder that contains it, such as a whole copy of firmware/",
        )
    return MissingModuleError(
        "%s.py not found in %s (%s.py imports it)" % (name, firmware_dir, importer),
        "copy firmware/%s.py into that folder, or copy the whole firmware/ folder again" % name,
    )


def syntax_error(error):
    """Return the ConfigError for a firmware source that does not parse."""
    return ConfigError(
        "invalid Python in %s, line %s: %s" % (error.filename, error.lineno, error.msg),
        "fix the firmware source",
    )
