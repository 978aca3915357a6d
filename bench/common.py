"""What every benchmark shares: the figure record, scratch folders, statistics.

A figure never stands alone: it carries the limit it is compared with (measured in the
same run) and the target from docs/performance-targets.md, so the printout and
docs/benchmarks.md can say PASS or FAIL without anyone looking numbers up.
"""

from __future__ import annotations

import math
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
PYTHON = sys.executable  # `make bench` runs .venv/bin/python: the daemon runs under it too

PASS, FAIL, INFO = "PASS", "FAIL", "INFO"


class BenchError(RuntimeError):
    """A benchmark could not run (the daemon did not start, a socket never answered)."""


@dataclass(frozen=True)
class Figure:
    """One measured figure beside its limit.

    `limit` is what the figure is compared with, measured in the same run (or the absolute
    target when the design sets one); `ratio` is value/limit when the comparison is one.
    """

    name: str
    value: str
    limit: str
    ratio: str
    target: str
    verdict: str


@dataclass
class BenchResult:
    key: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    details: list[str] = field(default_factory=list)  # extra lines for the report
    params: str = ""  # sample sizes, so a reader knows how much to trust the figure


@dataclass(frozen=True)
class Context:
    quick: bool
    scratch_base: Path


def verdict(ok: bool | None) -> str:
    if ok is None:
        return INFO
    return PASS if ok else FAIL


def pick_scratch_base() -> Path:
    """The system temp dir if it is on the repo's filesystem, else bench/ itself.

    Disk figures must come from the disk the terminal's data lives on, not from tmpfs.
    """
    tmp = Path(tempfile.gettempdir())
    try:
        if os.stat(tmp).st_dev == os.stat(REPO).st_dev:
            return tmp
    except OSError:
        pass
    return BENCH_DIR


@contextmanager
def scratch_dir(ctx: Context, prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f".bench-{prefix}-", dir=ctx.scratch_base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def percentile(samples: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: p99 of 2000 samples is the 1980th smallest, not a blend."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), math.ceil(pct * len(ordered) / 100)))
    return ordered[rank - 1]


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def fmt_rate(per_s: float) -> str:
    return f"{per_s:,.0f}/s".replace(",", " ")


def fmt_us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} µs".replace(",", " ")


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f} ms" if seconds >= 0.1 else f"{seconds * 1e3:.1f} ms"


def fmt_mb(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def fmt_pct(ratio: float) -> str:
    return f"{ratio * 100:.0f}%"
