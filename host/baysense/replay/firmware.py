"""Find and load the detector's modules of a firmware folder.

The node's firmware is a flat folder of modules that import each other by bare name
(`from filters import Spread`). Loaded into this process, such names would collide with host
modules of the same name in `sys.modules`, and two firmware folders loaded one after the other
(`baysense replay --firmware DIR` compares a trial copy with the project's) would share the
first one's modules. So each load executes the folder's modules in a namespace of its own: a
bare import of a firmware module name resolves to that folder's file, and nothing is added to
`sys.modules` or `sys.path`.
"""

import builtins
import importlib.util
from pathlib import Path

from ..firmware_imports import import_closure, missing_module_error, module_names, syntax_error
from ..paths import FIRMWARE_DIR

ENTRY_MODULE = "detector"


def detector_modules(firmware_dir=FIRMWARE_DIR):
    """Return the names of detector.py and the folder's modules it imports, directly or not.

    Both replay engines check a folder with this, so they accept and reject the same copies.
    Raise ConfigError as firmware_imports.import_closure does.
    """
    return import_closure(firmware_dir, [ENTRY_MODULE])


def load_firmware_detector(firmware_dir=FIRMWARE_DIR):
    """Load detector.py of `firmware_dir`, and the modules it imports from there; return it.

    Each call loads the folder afresh, so two calls never share module state. A name that is
    a module of the project's firmware/ must come from `firmware_dir` too: a trial copy that
    lacks one raises ConfigError, rather than running the project's module or a host module
    of that name. The whole import closure is checked first, so a copy that lacks a module
    only one kind's Detector imports is rejected for every kind, as the MicroPython engine
    rejects it.
    """
    detector_modules(firmware_dir)
    return FirmwareLoader(firmware_dir).load(ENTRY_MODULE)


class FirmwareLoader:
    """One firmware folder's modules, loaded in a namespace of their own."""

    def __init__(self, firmware_dir):
        self.firmware_dir = Path(firmware_dir)
        self._names = module_names(self.firmware_dir) | module_names(FIRMWARE_DIR)
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
            raise missing_module_error(name, self.firmware_dir)
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
            raise syntax_error(error) from None
        except BaseException:
            del self._modules[name]
            raise
        return module

    def _import(self, name, module_globals=None, module_locals=None, fromlist=(), level=0):
        if level == 0 and name in self._names:
            return self.load(name)
        return builtins.__import__(name, module_globals, module_locals, fromlist, level)
