"""Figure 3, start to READY and resident memory of the core daemon.

After a power cut the terminal must be back in service fast, and it runs on small boxes:
docs/performance-targets.md asks READY ≤ 1 s and resident memory ≤ 60 MB with 100,000
payments on file.
The real daemon is spawned (`python -m kiosk run --config FILE`, virtual devices) and timed
from just before the spawn to its `READY socket=…` line, with an empty ledger and with a
ledger of 100,000 payments (bench/ledger_fill.py). Its VmRSS / VmHWM are read from
/proc/PID/status at READY and again once it shows the idle screen (start-up
reconciliation done), the peak being the figure judged.

Beside them, measured the same way in the same run: a bare interpreter and an interpreter
that only imports the daemon's modules — the floor no start-up work can go below.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench.common import (
    PYTHON,
    BenchError,
    BenchResult,
    Context,
    Figure,
    fmt_mb,
    fmt_ms,
    fmt_pct,
    median,
    scratch_dir,
    verdict,
)
from bench.daemon import (
    kiosk_argv,
    memory_kib,
    socket_of,
    spawn_until_ready,
    stop,
    write_config,
)
from bench.ledger_fill import TERMINAL_ID, build
from kiosk.api_client import ApiClient
from kiosk.ledger import Ledger

KEY = "startup"
TITLE = "Core start to READY, and resident memory"
READY_TARGET_S = 1.0
RSS_TARGET_KIB = 60 * 1024  # 60 MB, read as MiB like top and ps
PAYMENTS = 100_000
IDLE_TIMEOUT_S = 30.0
HOLD = "import time; print('READY', flush=True); time.sleep(600)"
IMPORTS = ("import agent.cli, agent.daemon, drivers.virtual_acceptor, "
           "drivers.virtual_printer; " + HOLD)


@dataclass
class Samples:
    ready_s: list[float] = field(default_factory=list)
    idle_s: list[float] = field(default_factory=list)
    rss_ready: list[int] = field(default_factory=list)
    rss_idle: list[int] = field(default_factory=list)
    peak: list[int] = field(default_factory=list)


def _floor(argv: list[str], folder: Path, into: Samples) -> None:
    spawned = spawn_until_ready(argv, folder / "floor.stderr")
    try:
        mem = memory_kib(spawned.pid)
    finally:
        stop(spawned.proc)
    into.ready_s.append(spawned.ready_s)
    into.rss_ready.append(mem["VmRSS"])
    into.peak.append(mem["VmHWM"])


def _daemon(folder: Path, into: Samples) -> None:
    spawned = spawn_until_ready(kiosk_argv(folder / "kiosk.toml"), folder / "daemon.stderr")
    try:
        at_ready = memory_kib(spawned.pid)
        with ApiClient(socket_of(spawned)) as client:
            client.connect(subscribe=False)
            deadline = time.monotonic() + IDLE_TIMEOUT_S
            while (screen := client.request("snapshot")["screen"]) != "idle":
                if time.monotonic() > deadline:
                    raise BenchError(f"the core never reached the idle screen: {screen}")
                time.sleep(0.002)
            idle_s = time.perf_counter() - spawned.spawned_at
        at_idle = memory_kib(spawned.pid)
    finally:
        code = stop(spawned.proc)
    if code != 0:
        raise BenchError(f"the daemon exited with {code} on SIGTERM")
    into.ready_s.append(spawned.ready_s)
    into.idle_s.append(idle_s)
    into.rss_ready.append(at_ready["VmRSS"])
    into.rss_idle.append(at_idle["VmRSS"])
    into.peak.append(at_idle["VmHWM"])


def _prepare(root: Path, name: str, payments: int | None) -> Path:
    """A terminal folder with its config; payments=None leaves no ledger file at all."""
    folder = root / name
    folder.mkdir()
    write_config(folder)
    if payments == 0:
        ledger = Ledger(folder / "data" / "ledger.sqlite", TERMINAL_ID)
        ledger.open()
        ledger.close()
    elif payments:
        (folder / "data").mkdir()
        info = build(folder / "data" / "ledger.sqlite", payments)
        (folder / "fill.txt").write_text(
            f"{info['payments']:,} payments, {info['stacked_bills']:,} stacked bills, "
            f"{info['history']:,} history rows, {info['outbox']:,} outbox messages, "
            f"{info['encashments']:,} encashments; {info['bytes'] / 2**20:.0f} MiB file, "
            f"built in {info['seconds']:.1f} s"
        )
    return folder


def _ready_row(name: str, s: Samples, floor: Samples) -> Figure:
    med = median(s.ready_s)
    return Figure(
        f"start → READY, {name}",
        f"{fmt_ms(med)} (max {fmt_ms(max(s.ready_s))})",
        f"target {fmt_ms(READY_TARGET_S)}; import floor {fmt_ms(median(floor.ready_s))}",
        fmt_pct(med / READY_TARGET_S),
        f"≤ {READY_TARGET_S:g} s (median)",
        verdict(med <= READY_TARGET_S),
    )


def _rss_row(name: str, s: Samples, floor: Samples) -> Figure:
    peak = max(s.peak)
    return Figure(
        f"resident memory, {name}",
        f"{fmt_mb(int(median(s.rss_idle)))} at idle (peak {fmt_mb(peak)})",
        f"target {fmt_mb(RSS_TARGET_KIB)}; import floor {fmt_mb(int(median(floor.rss_ready)))}",
        fmt_pct(peak / RSS_TARGET_KIB),
        "≤ 60 MB (peak)",
        verdict(peak <= RSS_TARGET_KIB),
    )


def run(ctx: Context) -> BenchResult:
    runs = 3 if ctx.quick else 7
    result = BenchResult(KEY, TITLE, params=f"{runs} starts per case, cases interleaved, "
                                            "after one uncounted warm-up start")
    bare, imports, first, empty, full = Samples(), Samples(), Samples(), Samples(), Samples()
    with scratch_dir(ctx, "startup") as root:
        empty_dir = _prepare(root, "empty", 0)
        full_dir = _prepare(root, "full", PAYMENTS)
        _daemon(empty_dir, Samples())  # warm-up: byte-code caches, page cache
        for i in range(runs):
            _floor([PYTHON, "-c", HOLD], root, bare)
            _floor([PYTHON, "-c", IMPORTS], root, imports)
            _daemon(_prepare(root, f"first-{i}", None), first)
            _daemon(empty_dir, empty)
            _daemon(full_dir, full)
        fill = (full_dir / "fill.txt").read_text()
    result.figures += [
        _ready_row("empty ledger", empty, imports),
        _ready_row(f"{PAYMENTS:,} payments", full, imports),
        replace(_ready_row("first start (no ledger file)", first, imports),
                target="none (once per install)", verdict=verdict(None)),
        Figure(
            f"start → idle screen, {PAYMENTS:,} payments",
            f"{fmt_ms(median(full.idle_s))} (max {fmt_ms(max(full.idle_s))})",
            f"empty ledger {fmt_ms(median(empty.idle_s))}",
            "",
            "none (reconciliation done)",
            verdict(None),
        ),
        _rss_row("empty ledger", empty, imports),
        _rss_row(f"{PAYMENTS:,} payments", full, imports),
    ]
    result.details += [
        f"floors, same run: bare interpreter to READY {fmt_ms(median(bare.ready_s))}, "
        f"{fmt_mb(int(median(bare.rss_ready)))}; interpreter importing the daemon's modules "
        f"{fmt_ms(median(imports.ready_s))}, {fmt_mb(int(median(imports.rss_ready)))}.",
        f"RSS at READY (before reconciliation): empty {fmt_mb(int(median(empty.rss_ready)))}, "
        f"{PAYMENTS:,} payments {fmt_mb(int(median(full.rss_ready)))}.",
        f"ledger with payments: {fill} (bench/ledger_fill.py).",
        "Times are from just before the spawn to the READY line read by the benchmark; every "
        "start here meets a warm page cache, a cold boot of a real terminal will be slower.",
    ]
    return result
