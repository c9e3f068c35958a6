# The board's `os` on the virtual board: MicroPython's own, confined to the board's folder.
#
# Paths on the board are absolute from the board's root ("/main.py"); they are mapped into
# BAYSENSE_VBOARD_FS so that nothing a tool sends to the board reaches the host's own files.
# ilistdir gives the 4-tuple (name, type, inode, size) that an ESP32 gives; the unix port
# leaves the size out.

import sys

_saved_path = sys.path
sys.path = []
try:
    import os as _os
    from os import *  # noqa: F401,F403
finally:
    sys.path = _saved_path

from _sim import FS_ROOT

_ROOT = FS_ROOT.rstrip("/")

# Sizes reported by statvfs, as on a 4 MB ESP32 with the default 2 MB littlefs partition.
_BLOCK_SIZE = 4096
_FS_BLOCKS = 512


def board_path(path):
    """Map a path on the board to the real path inside the board's folder."""
    if not isinstance(path, str):
        raise TypeError("path must be str")
    if not path.startswith("/"):
        path = getcwd() + "/" + path
    parts = []
    for part in path.split("/"):
        if part == "" or part == ".":
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    if not parts:
        return _ROOT
    return _ROOT + "/" + "/".join(parts)


def getcwd():
    real = _os.getcwd()
    if real.startswith(_ROOT):
        return real[len(_ROOT):] or "/"
    return "/"


def chdir(path):
    _os.chdir(board_path(path))


def listdir(path=""):
    return _os.listdir(board_path(path))


def ilistdir(path=""):
    real = board_path(path)
    for entry in _os.ilistdir(real):
        name = entry[0]
        kind = entry[1]
        size = 0
        if kind == 0x8000:
            try:
                size = _os.stat(real + "/" + name)[6]
            except OSError:
                pass
        yield (name, kind, 0, size)


def stat(path):
    return _os.stat(board_path(path))


def remove(path):
    _os.remove(board_path(path))


unlink = remove


def rename(old, new):
    _os.rename(board_path(old), board_path(new))


def mkdir(path):
    _os.mkdir(board_path(path))


def rmdir(path):
    _os.rmdir(board_path(path))


def _used_blocks(real):
    used = 0
    for entry in _os.ilistdir(real):
        child = real + "/" + entry[0]
        if entry[1] == 0x4000:
            used += 1 + _used_blocks(child)
        else:
            used += (_os.stat(child)[6] + _BLOCK_SIZE - 1) // _BLOCK_SIZE
    return used


def statvfs(path):
    board_path(path)
    free = max(0, _FS_BLOCKS - 2 - _used_blocks(_ROOT))
    return (_BLOCK_SIZE, _BLOCK_SIZE, _FS_BLOCKS, free, free, 0, 0, 0, 0, 255)


def sync():
    pass


def dupterm(stream=None, index=0):
    return None


def mount(*args, **kwargs):
    raise OSError(1)  # EPERM: the virtual board's one filesystem is fixed


def umount(*args):
    raise OSError(1)


class _UName:
    sysname = "esp32"
    nodename = "esp32"
    release = "1.29.0-preview"
    version = "v1.29.0-preview on 2026-07-05"
    machine = "Generic ESP32 module with ESP32"

    def __getitem__(self, index):
        return (self.sysname, self.nodename, self.release, self.version, self.machine)[index]

    def __repr__(self):
        return "(sysname=%r, nodename=%r, release=%r, version=%r, machine=%r)" % tuple(self[i] for i in range(5))


def uname():
    return _UName()
