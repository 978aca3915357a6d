"""Figure 4, bill insert → host ACK of the stacked report (0x81), with persist-before-ACK.

What a customer waits for between pushing a bill in and the terminal having it for good:
the clock starts when the note goes into the slot (the simulator takes `insert`, at a
random phase of the driver's poll cycle) and stops when the host's ACK of the 0x81 reply
has arrived at the unit - the simulator notes the instant it reads those bytes. M2 puts
the ledger commit (fsync) before that ACK; the run checks it for every bill.

The real CcnetAcceptor with the cashcode_sm firmware profile talks CCNET to the
CcnetSimulator over a pseudo-terminal; the real PaymentEngine decides escrow and credits
through the real Ledger (SQLite WAL, synchronous=FULL). A pty has no baud rate, so the
driver's port is wrapped to play the 9600-baud line (`_LinePort`): a host frame reaches
the unit only after its line time, a reply byte becomes readable one byte time after the
later of its arrival and the byte before.

The unit's mechanics are set here, not taken from the simulator's defaults, so the figure
does not move when those change. Two units alternate bill by bill in one run:
- REFERENCE_UNIT: 100 ms to scan, 100 ms to stack - the emulator's mechanics the
  targets were set against (median ≤ 450 ms, p99 ≤ 600 ms; a well-known open-source
  driver about 930 ms there with 200 ms polls). The targets are judged on this unit.
- REALISTIC_UNIT: 500 ms to scan (a CashCode pulls a note in and validates it in roughly
  0.3-1 s), 100 ms to stack. Its own mechanics already exceed the 450 ms target, so its
  figure is shown with its floor and the host's share above it, not judged.
Beside each figure, from the same run: the floor (the unit's mechanics plus the line time
of the frames no driver can avoid: POLL + Escrow reply, ACK, STACK + device ACK, POLL +
Stacked reply, ACK), the host's share (figure minus floor), the fsync time of the disk
and the ledger commit that the ACK waits for.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import (
    BenchError,
    BenchResult,
    Context,
    Figure,
    fmt_ms,
    fmt_pct,
    median,
    percentile,
    scratch_dir,
    verdict,
)
from drivers.acceptor import AcceptorStatus, StackedBill
from drivers.ccnet.device import READ_TIMEOUT_S, CcnetAcceptor, default_opener
from drivers.ccnet.factory import BILL_TABLE_CACHE_NAME, FRAME_LOG_NAME, acceptor_profile
from drivers.ccnet.frame import build_frame
from drivers.ccnet.link import SerialPort
from drivers.ccnet.protocol import Command, Control
from drivers.ccnet.states import PollState
from drivers.ccnet.timing import CcnetTiming
from drivers.profiles import SerialSettings
from drivers.sim.ccnet import CcnetSimulator
from drivers.sim.ccnet_model import SimTiming
from drivers.virtual_printer import VirtualPrinter
from kiosk.config import PathsConfig, load_config
from kiosk.engine import PaymentEngine
from kiosk.ledger import Ledger
from kiosk.screens import Screen

KEY = "ccnet_latency"
TITLE = "Bill insert → host ACK of the stacked report (CCNET, 9600 baud line)"
PROFILE = "cashcode_sm"
MEDIAN_TARGET_S = 0.450  # docs/performance-targets.md
P99_TARGET_S = 0.600  # docs/performance-targets.md
REFERENCE_S = 0.930  # a well-known open-source driver, same emulator kind
OUTSIDE_MEDIAN_S, OUTSIDE_P99_S = 0.516, 0.624  # an independent emulator, before this change
BITS_PER_BYTE = 10  # 8N1: start bit, 8 data bits, stop bit


@dataclasses.dataclass(frozen=True)
class Unit:
    name: str
    timing: SimTiming  # nominal: each bill's scan and stack are drawn around it (JITTER)
    judged: bool
    why: str

    def draw(self, rng: random.Random) -> SimTiming:
        """One note's mechanics: real notes differ, and a fixed time could line up with
        the poll period by chance and flatter (or wrong) the driver."""
        t = self.timing
        return dataclasses.replace(
            t, accept_s=t.accept_s * rng.uniform(1 - JITTER, 1 + JITTER),
            stack_s=t.stack_s * rng.uniform(1 - JITTER, 1 + JITTER))


REFERENCE_UNIT = Unit(
    "reference emulator unit", SimTiming(accept_s=0.100, stack_s=0.100), True,
    "scan 100 ms, stack 100 ms: the emulator the targets (docs/performance-targets.md) were set on")
REALISTIC_UNIT = Unit(
    "realistic unit", SimTiming(accept_s=0.500, stack_s=0.100), False,
    "scan 500 ms (a CashCode takes roughly 0.3-1 s to pull a note in and validate it), "
    "stack 100 ms")
UNITS = (REFERENCE_UNIT, REALISTIC_UNIT)
BILLS = (100, 500, 50, 1000, 10)  # one session: 1 660 RUB, far below every maximum
PROVIDER, ACCOUNT = "mts", "9161234567"
WARMUP_BILLS = 2
TICK_S = 0.1  # the daemon's engine tick
START_TIMEOUT_S = 60.0  # the profile waits 3 s after RESET; initialization may take longer
STEP_TIMEOUT_S = 10.0
SEED = 20261124
FSYNC_SAMPLES = 50
FSYNC_BYTES = 4096
JITTER = 0.2  # each note's scan and stack times: nominal ±20 %, uniform
ACK_EVENT = f"host acked 0x{PollState.STACKED:02x}"


class _LinePort:
    """The driver's pyserial port, playing the serial line a pty lacks.

    As on a real port, a write returns at once (the bytes go to the UART's buffer) and
    the line sends them one after another: a frame reaches the unit when its last byte
    is through, `_Wire` delivers it then. A received byte becomes readable one byte time
    after the later of its arrival and the byte before it.
    """

    def __init__(self, port: SerialPort, baudrate: int) -> None:
        self._port = port
        self._byte_s = line_time_s(1, baudrate)
        self._held = bytearray()
        self._release: list[float] = []  # when each held byte becomes readable
        self._tx_end = 0.0
        self._wire = _Wire(port)

    @property
    def in_waiting(self) -> int:
        self._pull()
        return self._ready(time.perf_counter())

    def read(self, size: int = 1) -> bytes:
        deadline = time.perf_counter() + READ_TIMEOUT_S
        while True:
            self._pull()
            now = time.perf_counter()
            ready = self._ready(now)
            if ready:
                count = min(size, ready)
                data = bytes(self._held[:count])
                del self._held[:count], self._release[:count]
                return data
            if now >= deadline:
                return b""
            if self._release:  # held bytes not due yet
                time.sleep(max(min(self._release[0], deadline) - now, 0.0))
            else:
                self._pull(block=True)

    def write(self, data: bytes, /) -> int | None:
        start = max(time.perf_counter(), self._tx_end)
        self._tx_end = start + len(data) * self._byte_s
        self._wire.send(self._tx_end, bytes(data))
        return len(data)

    def reset_input_buffer(self) -> None:
        self._held.clear()
        self._release.clear()
        self._port.reset_input_buffer()

    def close(self) -> None:
        self._wire.close()
        self._port.close()

    def _pull(self, block: bool = False) -> None:
        """Move what the pty has into the held buffer, stamping each byte's release."""
        waiting = self._port.in_waiting
        if not waiting and not block:
            return
        data = self._port.read(waiting or 1)  # block: the port's own read timeout
        now = time.perf_counter()
        for byte in data:
            last = self._release[-1] if self._release else 0.0
            self._release.append(max(now, last) + self._byte_s)
            self._held.append(byte)

    def _ready(self, now: float) -> int:
        count = 0
        for at in self._release:
            if at > now:
                break
            count += 1
        return count


class _Wire(threading.Thread):
    """Hands each host frame to the pty at the instant its last bit is on the line."""

    def __init__(self, port: SerialPort) -> None:
        super().__init__(name="bench-wire", daemon=True)
        self._port = port
        self._queue: queue.SimpleQueue[tuple[float, bytes] | None] = queue.SimpleQueue()
        self.start()

    def send(self, at: float, data: bytes) -> None:
        self._queue.put((at, data))

    def close(self) -> None:
        self._queue.put(None)
        self.join(1.0)

    def run(self) -> None:
        while (item := self._queue.get()) is not None:
            at, data = item
            while (left := at - time.perf_counter()) > 0:
                time.sleep(left)
            try:
                self._port.write(data)
            except OSError:
                return  # the port closed under us: the run is over


@dataclasses.dataclass
class _Commit:
    entered: float
    returned: float
    unacked: bool  # the unit still held its stacked report when the commit returned


class _TimedEngine(PaymentEngine):
    """The real engine; notes when each on_stacked (the ledger commit) entered and returned,
    and checks that the unit had not been acknowledged yet at that moment (M2); notes how
    long each escrow decision (its marker commit) took."""

    def __init__(self, *args: Any, sim: CcnetSimulator, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sim = sim
        self.commits: list[_Commit] = []
        self.decisions: list[float] = []

    def on_escrow(self, bill: Any) -> Any:
        entered = time.perf_counter()
        decision = super().on_escrow(bill)
        self.decisions.append(time.perf_counter() - entered)
        return decision

    def on_stacked(self, stacked: StackedBill) -> None:
        entered = time.perf_counter()
        super().on_stacked(stacked)
        returned = time.perf_counter()
        unacked = self.sim.with_model(
            lambda m: m.event is not None and m.event[0] == PollState.STACKED)
        self.commits.append(_Commit(entered, returned, bool(unacked)))


def _wait(condition: Callable[[], object], what: str, timeout_s: float = STEP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.002)


def _ticker(engine: PaymentEngine, halt: threading.Event) -> None:
    while not halt.wait(TICK_S):
        engine.tick()


def line_time_s(n_bytes: int, baudrate: int) -> float:
    return n_bytes * BITS_PER_BYTE / baudrate


def bill_frames() -> list[tuple[str, int]]:
    """The frames no driver can avoid for one bill once the unit holds it in escrow."""
    return [
        ("POLL", len(build_frame(Command.POLL))),
        ("reply Escrow 0x80", len(build_frame(PollState.ESCROW, bytes((5,))))),
        ("ACK", len(build_frame(Command.ACK))),
        ("STACK", len(build_frame(Command.STACK))),
        ("device ACK", len(build_frame(Control.ACK))),
        ("POLL", len(build_frame(Command.POLL))),
        ("reply Stacked 0x81", len(build_frame(PollState.STACKED, bytes((5,))))),
        ("ACK", len(build_frame(Command.ACK))),
    ]


def fsync_times(folder: Path, n: int) -> list[float]:
    """write + fsync of a small block on the ledger's disk, n times: the floor of a commit."""
    path = folder / "fsync.probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    out = []
    try:
        block = b"\0" * FSYNC_BYTES
        for i in range(n):
            t0 = time.perf_counter()
            os.pwrite(fd, block, (i % 8) * FSYNC_BYTES)
            os.fsync(fd)
            out.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return out


@dataclasses.dataclass
class _BillTimes:
    """Instants of one bill, all on the simulator's side of the line but `committed`."""

    inserted: float
    mechanics: float  # this note's scan + stack
    escrow: float = 0.0  # the unit holds the note in escrow (scan done)
    stack_cmd: float = 0.0  # STACK arrived
    stacked: float = 0.0  # the note is in the cassette, 0x81 pending
    acked: float = 0.0  # the host's ACK of 0x81 arrived
    committed: float = 0.0  # on_stacked returned in the host


class _Rig:
    def __init__(self, folder: Path) -> None:
        self.profile = acceptor_profile(PROFILE)
        self.timing = CcnetTiming.from_profile(self.profile)
        self.baudrate = self.profile.serial.baudrate
        self.current: _BillTimes | None = None
        self.sim = CcnetSimulator(link=folder / "ttyCCNET", timing=REFERENCE_UNIT.timing,
                                  echo=self._event)
        base = load_config(None)
        self.config = dataclasses.replace(
            base, paths=PathsConfig(folder / "data", folder / "run", folder / "log"))
        paths = self.config.paths
        self.ledger = Ledger(paths.ledger, self.config.terminal.id)
        self.acceptor = CcnetAcceptor(
            self.sim.path,
            self.profile,
            frame_log_path=paths.log_dir / FRAME_LOG_NAME,  # every frame logged, as in service
            bill_table_cache=paths.data_dir / BILL_TABLE_CACHE_NAME,
            opener=self._open,
        )
        self.engine = _TimedEngine(self.config, self.ledger, self.acceptor,
                                   VirtualPrinter(folder / "receipts"), sim=self.sim)
        self.halt = threading.Event()
        self.ticker = threading.Thread(target=_ticker, args=(self.engine, self.halt),
                                       name="bench-tick", daemon=True)

    def _open(self, url: str, settings: SerialSettings) -> SerialPort:
        return _LinePort(default_opener(url, settings), self.baudrate)

    def _event(self, line: str) -> None:
        """The simulator's events, in its own thread, the instant they happen."""
        now = time.perf_counter()
        b = self.current
        if b is None:
            return
        if line.startswith("escrow "):
            b.escrow = now
        elif line.startswith("stacking ") and not b.stack_cmd:
            b.stack_cmd = now
        elif line.startswith("stacked "):
            b.stacked = now
        elif line.startswith(ACK_EVENT) and not b.acked:
            b.acked = now

    def start(self) -> None:
        self.sim.start()
        self.ledger.open()
        self.engine.start()
        self.ticker.start()
        _wait(lambda: self.engine.reconciled and self.engine.screen is Screen.IDLE,
              "the terminal to start (the profile waits 3 s after RESET)", START_TIMEOUT_S)

    def stop(self) -> None:
        self.halt.set()
        self.ticker.join(5)
        engine_log = logging.getLogger("kiosk.engine")
        level = engine_log.level
        engine_log.setLevel(logging.ERROR)  # "out of service: acceptor offline": we stop it
        try:
            self.engine.stop()
        finally:
            engine_log.setLevel(level)
            self.ledger.close()
            self.sim.stop()

    def intent(self, name: str, **args: Any) -> None:
        self.engine.intent(name, args)

    def unit_ready(self) -> bool:
        """Idling with bills enabled, nothing pending, and the driver has seen it so."""
        return self.acceptor.status is AcceptorStatus.IDLE and bool(self.sim.with_model(
            lambda m: m.base == PollState.IDLING and m.event is None and m.fault is None
            and bool(m.enabled)))

    def polls(self) -> int:
        return int(self.sim.with_model(lambda m: m.counters.polls))

    def insert(self, mech: SimTiming, rubles: int, phase_s: float) -> _BillTimes:
        """One bill `phase_s` after a POLL reached the unit; its instants."""
        _wait(self.unit_ready, "the unit to take a bill")
        self.sim.with_model(lambda m: setattr(m, "timing", mech))
        polls = self.polls()
        _wait(lambda: self.polls() > polls, "a POLL")  # the cycle's phase starts here
        time.sleep(phase_s)
        before = len(self.engine.commits)
        bill = _BillTimes(time.perf_counter(), mech.accept_s + mech.stack_s)
        self.current = bill
        answer = self.sim.command(f"insert {rubles}")
        if answer != "ok":
            raise BenchError(f"simulator refused the bill: {answer}")
        _wait(lambda: len(self.engine.commits) > before and bill.acked,
              f"the credit of {rubles} and its ACK")
        self.current = None
        commit = self.engine.commits[before]
        bill.committed = commit.returned
        if not (bill.escrow and bill.stack_cmd and bill.stacked):
            raise BenchError(f"a {rubles} bill went through without escrow/stack events")
        return bill


@dataclasses.dataclass
class _Samples:
    latency: list[float] = dataclasses.field(default_factory=list)
    share: list[float] = dataclasses.field(default_factory=list)  # latency − this bill's floor
    to_escrow_seen: list[float] = dataclasses.field(default_factory=list)  # escrow → STACK in
    after_stacked: list[float] = dataclasses.field(default_factory=list)  # stacked → ACK in
    ack_after_commit: int = 0

    def add(self, b: _BillTimes, line_s: float) -> None:
        self.latency.append(b.acked - b.inserted)
        self.share.append(b.acked - b.inserted - b.mechanics - line_s)
        self.to_escrow_seen.append(b.stack_cmd - b.escrow)
        self.after_stacked.append(b.acked - b.stacked)
        self.ack_after_commit += b.acked >= b.committed


def _p50_p99(xs: list[float]) -> str:
    return f"{fmt_ms(median(xs))} / {fmt_ms(percentile(xs, 99))}"


def run(ctx: Context) -> BenchResult:
    n_bills = 12 if ctx.quick else 40  # per unit model
    rng = random.Random(SEED)
    samples = {u.name: _Samples() for u in UNITS}
    with scratch_dir(ctx, "ccnet") as folder:
        rig = _Rig(folder)
        poll_s = rig.timing.poll_s
        min_line = line_time_s(sum(n for _, n in bill_frames()), rig.baudrate)
        try:
            rig.start()
            fsyncs = fsync_times(rig.config.paths.data_dir, FSYNC_SAMPLES)
            i = -WARMUP_BILLS
            while min(len(x.latency) for x in samples.values()) < n_bills:
                rig.intent("select_provider", provider_id=PROVIDER)
                rig.intent("submit_account", account=ACCOUNT)
                rig.intent("confirm_account")
                for rubles in BILLS:
                    unit = UNITS[max(i, 0) % len(UNITS)]
                    # a customer comes at any moment of the poll cycle, not just after a poll
                    mech = unit.draw(rng)
                    bill = rig.insert(mech, rubles, rng.uniform(0.0, poll_s))
                    if i >= 0:
                        samples[unit.name].add(bill, min_line)
                    i += 1
                rig.intent("pay")
                _wait(lambda: rig.engine.screen is Screen.RECEIPT, "the receipt screen")
                rig.intent("done")
                _wait(lambda: rig.engine.screen is Screen.IDLE, "the idle screen")
            counters = rig.sim.counters
            stacked_in_ledger = sum(c["count"] for c in rig.ledger.cassette_counts())
        finally:
            rig.stop()
    if stacked_in_ledger != counters.stacked:
        raise BenchError(f"ledger cassette {stacked_in_ledger} != unit {counters.stacked}")
    commits = rig.engine.commits
    unacked = sum(c.unacked for c in commits)
    commit_s = [c.returned - c.entered for c in commits]
    decisions = rig.engine.decisions
    acked_after = sum(x.ack_after_commit for x in samples.values())
    n_all = sum(len(x.latency) for x in samples.values())

    baud = rig.baudrate
    frames = bill_frames()
    min_bytes = sum(n for _, n in frames)
    timing = rig.timing
    poll_text = (f"poll {fmt_ms(timing.poll_s)} idle / {fmt_ms(timing.active_poll_s)} while a "
                 f"bill moves, {fmt_ms(timing.link.command_gap_s)} between host frames")

    result = BenchResult(
        KEY, TITLE,
        params=f"{n_bills} bills per unit model, the two models alternating bill by bill, "
               f"after {WARMUP_BILLS} warm-up; profile {PROFILE} ({poll_text}); sessions of "
               f"{len(BILLS)} bills; every byte over a played {baud}-baud line",
    )
    for unit in UNITS:
        x = samples[unit.name]
        t = unit.timing
        floor = t.accept_s + t.stack_s + min_line  # nominal; each bill's share uses its own
        med, p99 = median(x.latency), percentile(x.latency, 99)
        share = x.share
        if unit.judged:
            result.figures += [
                Figure(f"insert → ACK of 0x81, median ({unit.name})", fmt_ms(med),
                       f"floor {fmt_ms(floor)}; host share {fmt_ms(median(share))}",
                       fmt_pct(med / MEDIAN_TARGET_S), f"≤ {fmt_ms(MEDIAN_TARGET_S)}",
                       verdict(med <= MEDIAN_TARGET_S)),
                Figure(f"insert → ACK of 0x81, p99 ({unit.name})", fmt_ms(p99),
                       f"floor {fmt_ms(floor)}; host share p99 {fmt_ms(percentile(share, 99))}",
                       fmt_pct(p99 / P99_TARGET_S), f"≤ {fmt_ms(P99_TARGET_S)}",
                       verdict(p99 <= P99_TARGET_S)),
            ]
        else:
            result.figures.append(
                Figure(f"insert → ACK of 0x81, p50 / p99 ({unit.name})", _p50_p99(x.latency),
                       f"floor {fmt_ms(floor)}; host share p50 / p99 {_p50_p99(share)}", "",
                       "none (the unit's own mechanics exceed the target)", verdict(None)))
        result.figures += [
            Figure(f"escrow ready → STACK at the unit, p50 / p99 ({unit.name})",
                   _p50_p99(x.to_escrow_seen),
                   f"POLL + reply + ACK + STACK {fmt_ms(line_time_s(25, baud))} on the line",
                   "", "none (part of the figure)", verdict(None)),
            Figure(f"stacked → ACK at the unit, p50 / p99 ({unit.name})",
                   _p50_p99(x.after_stacked),
                   f"POLL + reply + ACK {fmt_ms(line_time_s(19, baud))} + the commit", "",
                   "none (part of the figure)", verdict(None)),
        ]
    result.figures += [
        Figure("ledger commit in on_stacked p50 / p99", _p50_p99(commit_s),
               f"disk write+fsync {_p50_p99(fsyncs)}", "", "none (the ACK waits for it)",
               verdict(None)),
        Figure("escrow decision (marker commit) p50 / p99", _p50_p99(decisions),
               f"disk write+fsync {_p50_p99(fsyncs)}", "", "none (STACK waits for it)",
               verdict(None)),
        Figure("persist before ACK (M2)", f"{unacked}/{len(commits)} commits unacked; "
               f"{acked_after}/{n_all} ACKs after the commit", "every one", "", "all",
               verdict(unacked == len(commits) and acked_after == n_all)),
    ]
    frame_text = ", ".join(f"{name} {n} B" for name, n in frames)
    result.details += [
        "Clock: from the simulator taking `insert` (the note in the slot) to the simulator "
        "reading the host's ACK of the 0x81 reply, both in the simulator's thread. Each "
        f"insert comes a random 0–{fmt_ms(poll_s)} after a POLL reached the unit, so it "
        "lands anywhere in the idle poll cycle.",
        "The line: the driver's port plays 9600 baud 8N1 (10 bits a byte, "
        f"{fmt_ms(line_time_s(1, baud))} a byte). A write returns at once, as on a real "
        "port, and the frame reaches the unit when its last byte is through; each reply "
        "byte is readable one byte time after it arrived. The simulated unit answers at "
        "once (a real one may take up to about 10 ms [U]).",
        f"Floor = the unit's scan + stack + the frames no driver avoids once the note is in "
        f"escrow: {frame_text} = {min_bytes} B, {fmt_ms(min_line)}. Host share = figure − "
        "floor: waiting for polls, the gaps between host frames, the commits, the "
        "scheduler.",
        *[f"Unit model {u.name}: {u.why}." for u in UNITS],
        f"For scale: before this change an independent emulator measured "
        f"{fmt_ms(OUTSIDE_MEDIAN_S)} median / {fmt_ms(OUTSIDE_P99_S)} p99 on the same "
        f"clock; docs/performance-targets.md cites about {fmt_ms(REFERENCE_S)} for a "
        "well-known open-source "
        "driver with 200 ms polls.",
        f"fsync: {FSYNC_SAMPLES} write+fsync of {FSYNC_BYTES} B in the ledger's folder, "
        "right after start-up.",
        f"Cassette: ledger {stacked_in_ledger} bills = unit {counters.stacked}; every frame "
        "goes to the frame log as in service; the simulator runs in the same process.",
    ]
    return result
