"""Find and load the detector's modules of a firmware folder.

The node's firmware is a flat folder of modules that import each other by bare name
(`from filters import Spread`). Loaded into this process, such names would collide with host
modules of the same name in `sys.modules`, and two firmware folders loaded one after the other
(`baysense replay --firmware DIR` compares a trial copy with the project's) would share the
first one's modules. So each load executes the folder's modules in a namespace of its own: a
bare import of a firmware module name resolves to that folder's file, and nothing is added to
`sys.modules` or `sys.path`.
"""

import ast
import builtins
import importlib.util
from pathlib import Path

from ..errors import ConfigError
from ..paths import FIRMWARE_DIR

ENTRY_MODULE = "detector"


def firmware_module_names(firmware_dir):
    """Return the module names a firmware folder defines: its top-level .py files."""
    return {path.stem for path in Path(firmware_dir).glob("*.py")}


def detector_modules(firmware_dir=FIRMWARE_DIR):
    """Return the names of detector.py and the folder's modules it imports, directly or not.

    Imports inside functions count too, because the Detector imports its kind's decision when
    it is built. Raise ConfigError on a source that does not parse, and when one of these
    imports names a module of the project's firmware/ that the folder lacks.
    """
    firmware_dir = Path(firmware_dir)
    names = firmware_module_names(firmware_dir) | firmware_module_names(FIRMWARE_DIR)
    found = []
    waiting = [ENTRY_MODULE]
    while waiting:
        name = waiting.pop()
        if name in found:
            continue
        path = firmware_dir / (name + ".py")
        if not path.is_file():
            raise _missing_module(name, firmware_dir)
        found.append(name)
        waiting.extend(imported for imported in _imported_names(path) if imported in names)
    return sorted(found)


def _imported_names(path):
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError as error:
        raise _syntax_error(error) from None
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _missing_module(name, firmware_dir):
    return ConfigError(
        "%s.py not found in %s" % (name, firmware_dir), "copy every module of firmware/ that detector.py imports into that folder"
    )


def _syntax_error(error):
    return ConfigError("invalid Python in %s, line %s: %s" % (error.filename, error.lineno, error.msg), "fix the detector source")


def load_firmware_detector(firmware_dir=FIRMWARE_DIR):
    """Load detector.py of `firmware_dir`, and the modules it imports from there; return it.

    Each call loads the folder afresh, so two calls never share module state. A name that is
    a module of the project's firmware/ must come from `firmware_dir` too: a trial copy that
    lacks one raises ConfigError, rather than running the project's module or a host module
    of that name.
    """
    return FirmwareLoader(firmware_dir).load(ENTRY_MODULE)


class FirmwareLoader:
    """One firmware folder's modules, loaded in a namespace of their own."""

    def __init__(self, firmware_dir):
        self.firmware_dir = Path(firmware_dir)
        self._names = firmware_module_names(self.firmware_dir) | firmware_module_names(FIRMWARE_DIR)
        self._modules = {}
        # The modules' own builtins, whose __import__ is the one below. exec() takes
        # __builtins__ from a module's globals, so code that firmware modules run (at
        # import time or later, as the Detector's import of its decision) imports through it.
        self._builtins = dict(vars(builtins), __import__=self._import)

    def load(self, name):
        """Return the folder's module `name`, executing it on its first request."""
        if name in self._modules:
            return self._modules[name]

        path = self.firmware_dir / (name + ".py")
        if not path.is_file():
            raise _missing_module(name, self.firmware_dir)
        # A name of its own per folder, so tracebacks show which copy ran.
        spec = importlib.util.spec_from_file_location("baysense_firmware.%s" % name, path)
        module = importlib.util.module_from_spec(spec)
        module.__builtins__ = self._builtins

        # Registered before it runs, as the import system does, so two modules that import
        # each other get the partly executed module instead of recursing.
        self._modules[name] = module
        try:
            spec.loader.exec_module(module)
        except SyntaxError as error:
            del self._modules[name]
            raise _syntax_error(error) from None
        except BaseException:
            del self._modules[name]
            raise
        return module

    def _import(self, name, module_globals=None, module_locals=None, fromlist=(), level=0):
        if level == 0 and name in self._names:
            return self.load(name)
        return builtins.__import__(name, module_globals, module_locals, fromlist, level)
