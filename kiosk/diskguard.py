"""Disk guard: warn the desk while there is still room, stop taking money before there
is none (M10 before the ledger has to fail). Checked from the engine's tick."""

from __future__ import annotations

import enum
import shutil
from pathlib import Path

WARN_FREE_BYTES = 200 * 1024 * 1024  # the desk hears about it: logs, receipts, WAL growth
STOP_FREE_BYTES = 20 * 1024 * 1024  # below this no new session starts (M10)


class DiskLevel(enum.Enum):
    OK = "ok"
    LOW = "low"
    CRITICAL = "critical"


def disk_level(
    path: Path, warn: int = WARN_FREE_BYTES, stop: int = STOP_FREE_BYTES
) -> tuple[DiskLevel, int]:
    """(level, free bytes) of the filesystem holding `path` (its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < stop:
        return DiskLevel.CRITICAL, free
    if free < warn:
        return DiskLevel.LOW, free
    return DiskLevel.OK, free
