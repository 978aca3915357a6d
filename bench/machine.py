"""Describe the machine a run measured: figures mean nothing without it."""

from __future__ import annotations

import datetime as dt
import os
import platform
import sqlite3
import subprocess
import time
from pathlib import Path

import sqlalchemy

from bench.common import REPO


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_total_gib() -> str:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return "unknown"


def _mount_of(path: Path) -> tuple[str, str, str]:
    """(mount point, filesystem type, source device) of the mount holding `path`."""
    target = str(path.resolve())
    best = ("", "unknown", "unknown")
    for line in _read("/proc/self/mountinfo").splitlines():
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or len(rfields) < 2:
            continue
        mnt = fields[4].replace("\\040", " ")
        inside = target == mnt or target.startswith(mnt.rstrip("/") + "/")
        if inside and len(mnt) >= len(best[0]):
            best = (mnt, rfields[0], rfields[1])
    return best


def _disk_kind(source: str) -> str:
    name = Path(source).name
    if not name or not Path(f"/sys/class/block/{name}").exists():
        return ""
    block = Path(f"/sys/class/block/{name}")
    parent = block.resolve().parent.name if (block / "partition").exists() else name
    rotational = _read(f"/sys/block/{parent}/queue/rotational").strip()
    model = _read(f"/sys/block/{parent}/device/model").strip()
    kind = {"0": "kernel: non-rotational", "1": "kernel: rotational"}.get(rotational, "")
    return ", ".join(x for x in (model, kind) if x)


def _os_name() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return platform.system()


def _git() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
            text=True, timeout=10, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head} (with uncommitted changes)" if dirty else head


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs from /proc/stat."""
    fields = [int(x) for x in _read("/proc/stat").splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def other_work(seconds: float = 1.0) -> float:
    """Share of all CPUs busy while we sit still: other work skews every figure."""
    try:
        b0, t0 = _cpu_ticks()
        time.sleep(seconds)
        b1, t1 = _cpu_ticks()
    except (ValueError, IndexError):
        return float("nan")
    return (b1 - b0) / max(1, t1 - t0)


def describe(scratch: Path, busy: float) -> list[tuple[str, str]]:
    mnt, fstype, source = _mount_of(scratch)
    disk = _disk_kind(source)
    return [
        ("date", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("cores", f"{os.cpu_count()} × {_cpu_model()}"),
        ("RAM", _mem_total_gib()),
        ("disk / filesystem", f"{source} ({disk or 'unknown kind'}), {fstype} on {mnt}"
                              f" — scratch files in {scratch}"),
        ("OS / kernel", f"{_os_name()}, Linux {platform.release()}"),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("SQLite", f"{sqlite3.sqlite_version} (SQLAlchemy {sqlalchemy.__version__})"),
        ("commit", _git()),
        ("CPU busy with other work", f"{busy * 100:.0f}% of all cores, sampled for 1 s before "
                                     f"the run (load average {os.getloadavg()[0]:.1f})"),
    ]


def one_line(desc: list[tuple[str, str]]) -> str:
    d = dict(desc)
    cores = d["cores"].split(" × ")[0]
    fs = d["disk / filesystem"].split(" — ")[0]
    busy = d["CPU busy with other work"].split()[0]
    return (f"{d['date']}: {cores} cores, {d['RAM']} RAM, {fs}, "
            f"Python {d['Python'].split()[-1]}, SQLite {d['SQLite'].split()[0]}, "
            f"{busy} CPU busy with other work at start")
