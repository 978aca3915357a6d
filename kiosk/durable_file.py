"""Small files that must survive a power cut: written, fsynced, and their folder fsynced.

A file's data reaches the disk with fsync(file), but its name lives in the folder: without
fsync(folder) a power cut right after the write can leave no file at all (a new key the
terminal would then make again, unknown to the desk; a ledger identity marker that forgets
the payment numbers already issued, M5). Used by the ledger's identity marker
(kiosk/ledger/identity.py) and by the sync layer's key files (sync/keys.py).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

TEMP_SUFFIX = ".tmp"


def fsync_dir(directory: Path) -> None:
    """Make the folder's entries (a new, renamed or removed file) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(directory: Path) -> None:
    """mkdir -p, with every new folder's entry fsynced in its parent."""
    missing = []
    d = directory
    while not d.exists():
        missing.append(d)
        d = d.parent
    for folder in reversed(missing):
        folder.mkdir(exist_ok=True)
        fsync_dir(folder.parent)


def _write_synced(path: Path, data: bytes, flags: int, mode: int) -> None:
    """Open with `flags`, write all of `data` (os.write may write less), fsync, close."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | flags, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new(path: Path, data: bytes, mode: int) -> None:
    """Create `path` (FileExistsError if it exists: never overwrite), durably."""
    _write_synced(path, data, os.O_EXCL, mode)
    fsync_dir(path.parent)


def write_file(path: Path, data: bytes, mode: int) -> None:
    """Create or overwrite `path` in place, durably (not atomic: for files that can be
    made again, such as a public key or a CSR)."""
    _write_synced(path, data, os.O_TRUNC, mode)
    fsync_dir(path.parent)


def replace_file(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` atomically and durably: temp file, fsync, rename, fsync folder.
    A reader sees the old content or the new, never a mix; a failure removes the temp
    file and leaves the old content in place."""
    tmp = path.with_name(path.name + TEMP_SUFFIX)
    try:
        _write_synced(tmp, data, os.O_TRUNC, mode)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
