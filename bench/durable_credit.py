"""Figure 1, durable credit: stacked-bill commits per second through the real Ledger.

The driver may ACK a stacked bill only after `Ledger.record_stacked` has committed it
(M2), so this rate bounds how fast money can be credited. The escrow decision before it
(`record_escrow`) waits for a customer anyway, so it is timed apart and not counted in the
credit figure; the full per-bill cost (escrow + stacked) is reported too.

The limit is the disk itself: append a small record + fsync, measured in the same folder
in the same run, interleaved with the ledger in chunks of 25 so that disk noise
(bursty on shared or virtual disks) hits both alike. A bare
SQLite WAL synchronous=FULL one-row commit shows what the storage engine alone reaches.
"""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from bench.common import (
    BenchError,
    BenchResult,
    Context,
    Figure,
    fmt_ms,
    fmt_pct,
    fmt_rate,
    median,
    percentile,
    scratch_dir,
    verdict,
)
from kiosk.catalog import DEMO_CATALOG
from kiosk.ledger import Ledger

KEY = "durable_credit"
TITLE = "Durable credit (stacked bill committed through the Ledger)"
TARGET_RATIO = 0.70  # ≥ 70% of the raw write+fsync rate of the same disk
BILLS_PER_SESSION = 5  # a session is finished (untimed) after this many bills
BILLS = ((10_000, 2), (50_000, 4), (100_000, 5), (500_000, 7))  # (minor units, bill type)
CHUNK = 25  # ops of one kind before switching to the next
RECORD = b"stacked bill 0000000000 amount 0000100000 RUB event bench:00000000:000000\n"


def _raw_fsync(folder: Path, n: int) -> list[float]:
    """Append a small record and fsync it, n times: what one durable write costs here."""
    fd = os.open(folder / "raw-fsync.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    times = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            os.write(fd, RECORD)
            os.fsync(fd)
            times.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
    return times


def _open_raw_sqlite(folder: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(folder / "raw.sqlite", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    return conn


def _raw_sqlite(conn: sqlite3.Connection, n: int) -> list[float]:
    """One-row INSERT per transaction, as the ledger begins them (BEGIN IMMEDIATE)."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (v) VALUES (?)", (RECORD.decode(),))
        conn.execute("COMMIT")
        times.append(time.perf_counter() - t0)
    return times


class _LedgerDriver:
    """Feeds bills to the Ledger the way the engine does: escrow, then stacked."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.provider = DEMO_CATALOG.providers[0]
        self.run = uuid.uuid4().hex[:8]
        self.seq = 0
        self.session_id = ledger.open_session(self.provider.id, "9161234567", "RUB")
        self.in_session = 0

    def round(self, n: int) -> tuple[list[float], list[float], float]:
        """(stacked wall times, escrow wall times, stacked thread-CPU seconds)."""
        stacked, escrow, cpu = [], [], 0.0
        ledger = self.ledger
        for _ in range(n):
            amount, bill_type = BILLS[self.seq % len(BILLS)]
            self.seq += 1
            t0 = time.perf_counter()
            escrow_id = ledger.record_escrow(self.session_id, amount, "RUB", bill_type)
            t1 = time.perf_counter()
            c0 = time.thread_time()
            outcome = ledger.record_stacked(
                f"bench:{self.run}:{self.seq}", amount, "RUB", bill_type, False, escrow_id
            )
            c1 = time.thread_time()
            t2 = time.perf_counter()
            if outcome.kind != "credited":
                raise BenchError(f"record_stacked gave {outcome.kind!r}, expected 'credited'")
            escrow.append(t1 - t0)
            stacked.append(t2 - t1)
            cpu += c1 - c0
            self.in_session += 1
            if self.in_session == BILLS_PER_SESSION:  # customer presses Pay: untimed
                ledger.finish_session(self.session_id, self.provider.commission)
                self.session_id = ledger.open_session(self.provider.id, "9161234567", "RUB")
                self.in_session = 0
        return stacked, escrow, cpu


def _wal_growth(wal: Path, write: Callable[[], object], n: int = 41,
                prepare: Callable[[], object] = lambda: None) -> int:
    """Median bytes one commit appends to a WAL file (a checkpoint that rewinds the WAL
    now and then gives a negative delta; the median ignores it). The fsync of a commit
    has to carry these bytes, against the raw figure's one small record."""
    deltas = []
    for _ in range(n):
        prepare()
        before = wal.stat().st_size
        write()
        deltas.append(wal.stat().st_size - before)
    return sorted(deltas)[n // 2]


def _wal_bytes_per_commit(ctx: Context) -> tuple[int, int]:
    """(record_stacked, bare 1-row commit) WAL bytes, each on a fresh file: a used WAL is
    rewritten from its start after a checkpoint, so only a fresh one grows by each frame."""
    with scratch_dir(ctx, "wal") as folder:
        ledger = Ledger(folder / "ledger.sqlite", "T0001")
        ledger.open()
        raw_db = _open_raw_sqlite(folder)
        try:
            driver = _LedgerDriver(ledger)
            amount, bill_type = BILLS[0]
            escrow_ids: list[int] = []
            stacked = _wal_growth(
                folder / "ledger.sqlite-wal",
                lambda: ledger.record_stacked(f"bench:wal:{len(escrow_ids)}", amount, "RUB",
                                              bill_type, False, escrow_ids[-1]),
                prepare=lambda: escrow_ids.append(
                    ledger.record_escrow(driver.session_id, amount, "RUB", bill_type)),
            )
            _raw_sqlite(raw_db, 1)  # the first commit also writes the table's creation
            bare = _wal_growth(folder / "raw.sqlite-wal", lambda: _raw_sqlite(raw_db, 1))
        finally:
            raw_db.close()
            ledger.close()
    return stacked, bare


def run(ctx: Context) -> BenchResult:
    rounds, per_round = (2, 200) if ctx.quick else (5, 1000)
    result = BenchResult(KEY, TITLE, params=f"{rounds} rounds × {per_round} ops of each kind, "
                         f"interleaved in chunks of {CHUNK}")
    with scratch_dir(ctx, "credit") as folder:
        ledger = Ledger(folder / "ledger.sqlite", "T0001")
        ledger.open()
        raw_db = _open_raw_sqlite(folder)
        try:
            driver = _LedgerDriver(ledger)
            # warm-up: first-touch costs (page allocation, statement caches) out of the way
            _raw_fsync(folder, 20)
            _raw_sqlite(raw_db, 20)
            driver.round(20)
            fsync_t: list[float] = []
            sqlite_t: list[float] = []
            stacked_t: list[float] = []
            escrow_t: list[float] = []
            cpu_total = 0.0
            round_ratios = []
            for _ in range(rounds):
                f, st = [], []
                for _ in range(per_round // CHUNK):  # fine interleaving: disk noise is bursty
                    f += _raw_fsync(folder, CHUNK)
                    sqlite_t += _raw_sqlite(raw_db, CHUNK)
                    stacked, escrow, cpu = driver.round(CHUNK)
                    st += stacked
                    escrow_t += escrow
                    cpu_total += cpu
                fsync_t += f
                stacked_t += st
                round_ratios.append(sum(f) / sum(st))
        finally:
            raw_db.close()
            ledger.close()

    ledger_wal, bare_wal = _wal_bytes_per_commit(ctx)
    fsync_rate = len(fsync_t) / sum(fsync_t)
    sqlite_rate = len(sqlite_t) / sum(sqlite_t)
    credit_rate = len(stacked_t) / sum(stacked_t)
    bill_rate = len(stacked_t) / (sum(stacked_t) + sum(escrow_t))
    ratio = credit_rate / fsync_rate
    result.figures += [
        Figure(
            "credit: record_stacked commits",
            fmt_rate(credit_rate),
            f"raw write+fsync {fmt_rate(fsync_rate)}",
            fmt_pct(ratio),
            f"≥ {fmt_pct(TARGET_RATIO)}",
            verdict(ratio >= TARGET_RATIO),
        ),
        Figure(
            "full bill: record_escrow + record_stacked",
            f"{fmt_rate(bill_rate)} bills",
            f"raw write+fsync {fmt_rate(fsync_rate)}",
            fmt_pct(bill_rate / fsync_rate),
            "none (2 commits a bill)",
            verdict(None),
        ),
        Figure(
            "bare SQLite WAL sync=FULL 1-row commits",
            fmt_rate(sqlite_rate),
            f"raw write+fsync {fmt_rate(fsync_rate)}",
            fmt_pct(sqlite_rate / fsync_rate),
            "reference (~80% expected)",
            verdict(None),
        ),
        Figure(
            "record_stacked latency p50 / p99",
            f"{fmt_ms(percentile(stacked_t, 50))} / {fmt_ms(percentile(stacked_t, 99))}",
            f"write+fsync {fmt_ms(percentile(fsync_t, 50))} / {fmt_ms(percentile(fsync_t, 99))}",
            "",
            "none (the ACK waits this long)",
            verdict(None),
        ),
    ]
    cpu_per_commit = cpu_total / len(stacked_t)
    result.details += [
        f"record_stacked: {len(stacked_t)} commits, mean {fmt_ms(sum(stacked_t) / len(stacked_t))}"
        f" wall, of which {fmt_ms(cpu_per_commit)} CPU in the calling thread "
        f"({fmt_pct(cpu_per_commit * len(stacked_t) / sum(stacked_t))} of the wall time): "
        "the rest is waiting for the disk; "
        f"CPU alone caps it at about {fmt_rate(1 / cpu_per_commit)} on this machine.",
        f"record_escrow: mean {fmt_ms(sum(escrow_t) / len(escrow_t))} "
        f"(customer-paced, not in the credit figure).",
        f"bytes one commit appends to the WAL (median): record_stacked "
        f"{ledger_wal:,} B, bare 1-row commit {bare_wal:,} B, raw record {len(RECORD)} B: "
        "each fsync carries these, so a commit that touches more pages (the bill, its "
        "indexes, the escrow, the cassette count) costs more disk time than the raw append.",
        "per-round ratio credit/fsync: "
        + ", ".join(fmt_pct(r) for r in round_ratios)
        + f" (median {fmt_pct(median(round_ratios))}).",
        "Ledger file, fsync file and bare SQLite file share one fresh folder on the repo's "
        "filesystem; each session takes 5 bills and is then finished (untimed).",
    ]
    return result
