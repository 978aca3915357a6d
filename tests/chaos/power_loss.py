"""The power-loss model, automated: only what was fsynced survives a cut.

A SIGKILL (tests/chaos/chaos.py) keeps everything the process wrote: the kernel still
holds it. A power cut keeps only what reached the disk. Here the real core daemon runs
with an LD_PRELOAD shim (tests/chaos/powercut.c, compiled by the run with the machine's
gcc) that copies each ledger file to its "durable image" at every successful fsync /
fdatasync of that file, and at no other moment. Cutting the power is: SIGKILL the core,
then replace the live ledger files (ledger.sqlite, -wal, -journal) by their images; a
file never synced disappears. Half the cuts use a looser model, as a real disk may keep
part of what was written since the last sync: the shim also logs every write and
truncation of a ledger file since that file's last sync, and the cut lays a random
subset of them over the image, each whole or torn into some of its 512-byte sectors.
The -shm is never synced by SQLite (it is the WAL index, rebuilt by the first connection
after a crash), so at each cut it is either deleted or left stale as it was at the kill,
at random. Then the core starts again on that ledger.

Cuts land where they matter: the instant the stacked report is on the line (before the
commit), 1-18 ms after it (committed, not ACKed), when stacking starts, at random, and
inside a write: some restarts arm the shim to SIGKILL the core right after its N-th
ledger write, before that write's sync (in a transaction, a checkpoint, the start-up).

The bill validator is the CCNET simulator on a pty in this process (it outlives the core
like a real unit); its list of stacked notes and whether it holds an unacknowledged
stacked report (0x81) are the ground truth. At every cut, before the restart, a copy of
the durable image is opened and checked:
- every note the unit stacked AND got an ACK for is in it, in order (M2: the ACK goes
  out only after the commit's fsync); it may also hold the one stacked but unacknowledged
  note (committed, ACK not sent), never more;
- every payment a customer was told about (its id came back through the local API, so
  its receipt may be printed) is in it with the same amount (M5, M8).
At the end: device ↔ ledger bill by bill, cassette counters, every bill in exactly one
payment or unclaimed record, payment numbers without gaps (rig.reconcile), and no payment
id was ever given to two customers.
"""

from __future__ import annotations

import random
import shutil
import signal
import sqlite3
import struct
import subprocess
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from drivers.ccnet.states import PollState
from kiosk.api_client import ApiRequestError
from tests.chaos.rig import (
    BILLS,
    BillRefused,
    NoPayment,
    Reconciliation,
    RigError,
    RigThread,
    Station,
    StationOptions,
    reconcile,
    wait_idle,
)

SHIM_SOURCE = Path(__file__).with_name("powercut.c")
PREFIX_ENV = "KIOSK_POWERCUT_PREFIX"
IMAGES_ENV = "KIOSK_POWERCUT_IMAGES"
KILL_ENV = "KIOSK_POWERCUT_KILL_AFTER_WRITES"
LEDGER_SUFFIXES = ("", "-wal", "-journal")  # files SQLite syncs; the -shm is handled apart
SHM_SUFFIX = "-shm"
SYNC_LOG = "syncs.log"
PENDING = ".pending"  # the shim's log of writes since a file's last sync
RECORD_HEAD = struct.Struct("<cqq")  # kind b"W"/b"T", offset, length (then the bytes)
SECTOR = 512
LOOSE_SHARE = 0.5  # cuts that keep a random part of the unsynced writes
KEEP_P = 0.5  # each unsynced write or truncation survives with this probability ...
TORN_P = 0.3  # ... and a surviving write is torn (some sectors only) with this one
SETTLE_S = 0.05  # the simulator reads its line every 5 ms: an ACK in flight lands by then
AIM_WINDOW_S = (0.001, 0.018)  # after the stacked report: the commit, before the ACK's gap
PAYMENT_TIMEOUT_S = 10.0

# Where a cut is aimed; each one is then classified by what the image and the unit hold.
AIM_REPORT = "report"  # from the simulator's thread, the instant 0x81 is on the line
AIM_WINDOW = "window"  # 1-18 ms after 0x81 went out: commit done or under way, no ACK yet
AIM_STACKING = "stacking"  # the escrow was decided and STACK sent (escrow marker synced)
AIM_RANDOM = "random"  # anywhere
AIM_IN_WRITE = "in-write"  # the core killed itself after its N-th ledger write, before the sync


def build_shim(folder: Path) -> Path:
    """Compile the shim into `folder` with the machine's gcc; RigError if that fails."""
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "powercut.so"
    cmd = ["gcc", "-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o", str(out),
           str(SHIM_SOURCE), "-ldl"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RigError(f"cannot run gcc for the power-cut shim: {exc}") from exc
    if done.returncode != 0:
        raise RigError(f"gcc failed on {SHIM_SOURCE.name}:\n{done.stderr}")
    return out


@dataclass
class PowerParams:
    payments: int = 60
    min_cuts: int = 14
    min_per_kind: dict[str, int] = field(default_factory=lambda: {
        "committed_unacked": 3, "uncommitted": 2})
    cut_every_s: tuple[float, float] = (0.3, 2.0)  # pause before the next cut is aimed
    aims: tuple[tuple[str, float], ...] = (
        (AIM_REPORT, 0.25), (AIM_WINDOW, 0.35), (AIM_STACKING, 0.15), (AIM_RANDOM, 0.25))
    self_cut_share: float = 0.4  # (re)starts whose core cuts itself inside a write
    self_cut_writes: tuple[int, int] = (1, 300)  # ... after this many ledger writes
    min_self_cuts: int = 3
    seed: int = 20261203
    budget_s: float = 240.0  # a guard against a hung run, not a speed requirement


@dataclass
class CutRecord:
    aim: str
    kind: str  # committed_unacked / uncommitted / idle-or-moving (no report pending)
    device_bills: int
    image_bills: int
    shm: str  # "deleted" or "stale"
    had_wal: bool
    model: str = "strict"  # or "loose": part of the unsynced writes kept
    kept: int = 0  # unsynced writes laid over the image (loose)
    torn: int = 0  # of which torn
    dropped: int = 0  # unsynced writes lost (loose)


@dataclass
class PowerReport:
    attempted: int = 0
    completed: int = 0
    interrupted: int = 0
    interrupted_alive: int = 0
    interruptions: Counter[str] = field(default_factory=Counter)
    cuts: list[CutRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    told: list[tuple[str, int]] = field(default_factory=list)  # (payment id, amount) shown
    syncs: Counter[str] = field(default_factory=Counter)
    restart_s: list[float] = field(default_factory=list)
    core_exit: int | None = None
    unacked_at_end: bool = False
    took_s: float = 0.0
    recon: Reconciliation | None = None

    def kinds(self) -> Counter[str]:
        return Counter(c.kind for c in self.cuts)

    def summary(self) -> str:
        r = self.recon
        kinds = self.kinds()
        restart = sorted(self.restart_s) or [0.0]
        lines = [
            f"power-loss model: {self.took_s:.0f} s",
            f"  payments attempted {self.attempted}: completed {self.completed}, interrupted "
            f"{self.interrupted} (with the core alive {self.interrupted_alive}) "
            f"{dict(self.interruptions)}",
            f"  cuts {len(self.cuts)}: {kinds['committed_unacked']} with a stacked bill "
            f"committed and not ACKed, {kinds['uncommitted']} with a stacked report not yet "
            f"durable, {kinds['other']} elsewhere; aimed "
            f"{dict(Counter(c.aim for c in self.cuts))}; -shm deleted "
            f"{sum(c.shm == 'deleted' for c in self.cuts)}, left stale "
            f"{sum(c.shm == 'stale' for c in self.cuts)}",
            f"  loose cuts {sum(c.model == 'loose' for c in self.cuts)}: unsynced writes "
            f"kept {sum(c.kept for c in self.cuts)} (torn {sum(c.torn for c in self.cuts)}), "
            f"lost {sum(c.dropped for c in self.cuts)}",
            f"  syncs seen by the shim {dict(self.syncs)}",
            f"  restart after a cut -> idle: median {restart[len(restart) // 2]:.2f} s, "
            f"max {restart[-1]:.2f} s",
        ]
        if r is not None:
            lines.append(
                f"  ledger: {r.payments} payments + {r.unclaimed} unclaimed; bills device "
                f"{r.device_bills} / ledger {r.ledger_bills}; LOST {r.lost}, DUPLICATED "
                f"{r.duplicated}; customers told {len(self.told)} payment ids")
        problems = self.problems + (r.problems if r else [])
        if problems:
            lines.append(f"  PROBLEMS: {problems}")
        return "\n".join(lines)


class PowerCutter(RigThread):
    """Cuts the power at chosen instants: kill, check the durable image, restore it."""

    def __init__(self, run: PowerRun, rng: random.Random) -> None:
        super().__init__("power-cutter")
        self.run_, self.rng = run, rng
        self.stop = threading.Event()
        self.armed = threading.Event()

    def _pick_aim(self) -> str:
        x, acc = self.rng.random(), 0.0
        for aim, share in self.run_.params.aims:
            acc += share
            if x < acc:
                return aim
        return AIM_RANDOM

    def _run(self) -> None:
        sim = self.run_.station.sim
        while not self.stop.is_set():
            if not self.armed.wait(0.05):
                continue
            if self.stop.wait(self.rng.uniform(*self.run_.params.cut_every_s)):
                return
            aim = self._pick_aim()
            if aim in (AIM_REPORT, AIM_STACKING):
                fired = threading.Event()

                def hook(_line: str = "", f: threading.Event = fired) -> None:
                    self._kill_in_sim(f)

                if aim == AIM_REPORT:
                    sim.on_report = hook
                else:
                    sim.on("stacking", hook)
                fired.wait(3.0)
                with sim._lock:  # disarm, then look again: it may have fired meanwhile
                    sim.on_report = None
                    sim._hooks[:] = [h for h in sim._hooks if h[1] is not hook]
                if not fired.is_set():
                    aim = AIM_RANDOM  # no bill came: cut wherever the core is
                    if not self._kill():
                        continue
            else:
                if aim == AIM_WINDOW:
                    sim.reported.clear()
                    if sim.reported.wait(3.0):
                        time.sleep(self.rng.uniform(*AIM_WINDOW_S))
                    else:
                        aim = AIM_RANDOM
                if not self._kill():
                    continue
            self.run_.after_kill(aim, self.rng)

    def _kill(self) -> bool:
        core = self.run_.station.core
        with core.lock:
            if not (self.armed.is_set() and core.alive()):
                return False
            self.run_.cut_pending.set()  # no restart before the image is in place
            core.kill()
            self.armed.clear()
            return True

    def _kill_in_sim(self, fired: threading.Event) -> None:
        """In the simulator's thread (its lock held): the host has not read the reply."""
        core = self.run_.station.core
        if not core.lock.acquire(blocking=False):  # a restart is going on: not now
            return
        try:
            if self.armed.is_set() and core.alive():
                self.run_.cut_pending.set()
                core.kill()
                self.armed.clear()
                fired.set()
        finally:
            core.lock.release()


class PowerRun:
    def __init__(self, workdir: Path, params: PowerParams) -> None:
        self.params = params
        self.workdir = workdir
        self.images = workdir / "durable"
        self.images.mkdir(parents=True, exist_ok=True)
        shim = build_shim(workdir / "shim")
        ledger = workdir / "data" / "ledger.sqlite"
        env = {"LD_PRELOAD": str(shim), PREFIX_ENV: str(ledger), IMAGES_ENV: str(self.images)}
        self.station = Station(workdir, StationOptions(mqtt=False, launcher_env=env,
                                                       seed=params.seed))
        self.ledger = ledger
        self.report = PowerReport()
        self._told_lock = threading.Lock()
        self.cut_pending = threading.Event()  # killed, the image not yet in place
        self.handled_pid: int | None = None  # the last core whose death was a handled cut
        self.rng = random.Random(params.seed)

    # -- the cut -----------------------------------------------------------------------
    def after_kill(self, aim: str, rng: random.Random) -> None:
        """The core is dead: read the unit's facts, check the image, put it in place.
        Holds the core's lock so the main loop cannot restart the core meanwhile."""
        st = self.station
        with st.core.lock:
            if st.core.proc is not None:
                self.handled_pid = st.core.proc.pid
            time.sleep(SETTLE_S)  # an ACK the host wrote before it died reaches the unit
            with st.sim._lock:
                device = list(st.sim.stacked)
                ev = st.sim.model.event
                unacked = ev is not None and ev[0] == PollState.STACKED
            acked = device[: len(device) - 1] if unacked else device
            with self._told_lock:
                told = list(self.report.told)
            cut = CutRecord(aim, "", 0, 0, "", False)
            if aim == AIM_IN_WRITE:  # unsynced writes for sure: loose and strict in turn
                loose = sum(c.aim == AIM_IN_WRITE for c in self.report.cuts) % 2 == 0
            else:
                loose = rng.random() < LOOSE_SHARE
            if loose:
                self._loosen(rng, cut)
            image_bills, image_payments, had_wal = self._read_image()
            problems = self.report.problems
            n = len(self.report.cuts) + 1
            if image_bills[: len(acked)] != acked:
                problems.append(
                    f"cut {n} ({aim}): a note the unit got an ACK for is not in the durable "
                    f"ledger: unit ACKed {len(acked)} notes, image holds {len(image_bills)}")
            if image_bills != device[: len(image_bills)]:
                problems.append(f"cut {n} ({aim}): the durable ledger's notes are not what "
                                f"the unit stacked: {len(image_bills)} vs {len(device)}")
            for pid, amount in told:
                if image_payments.get(pid) != amount:
                    problems.append(f"cut {n} ({aim}): payment {pid} ({amount}) shown to a "
                                    f"customer is {image_payments.get(pid)} in the image")
            if unacked and len(image_bills) == len(device):
                kind = "committed_unacked"
            elif unacked and len(image_bills) == len(device) - 1:
                kind = "uncommitted"
            else:
                kind = "other"
            cut.kind, cut.device_bills, cut.image_bills = kind, len(device), len(image_bills)
            cut.shm, cut.had_wal = self._restore(rng), had_wal
            self.report.cuts.append(cut)
            self.cut_pending.clear()

    def _loosen(self, rng: random.Random, cut: CutRecord) -> None:
        """Lay a random part of each file's unsynced writes over its image, in order."""
        cut.model = "loose"
        for suffix in LEDGER_SUFFIXES:
            image = self.images / f"{self.ledger.name}{suffix}"
            log = Path(f"{image}{PENDING}")
            if not log.exists() or log.stat().st_size == 0:
                continue
            data = bytearray(image.read_bytes()) if image.exists() else bytearray()
            raw, pos = log.read_bytes(), 0
            while pos + RECORD_HEAD.size <= len(raw):
                kind, offset, length = RECORD_HEAD.unpack_from(raw, pos)
                pos += RECORD_HEAD.size
                body = raw[pos:pos + length] if kind == b"W" else b""
                pos += len(body)
                if rng.random() >= KEEP_P:
                    cut.dropped += 1
                    continue
                cut.kept += 1
                if kind == b"T":
                    del data[offset:]
                    data.extend(bytes(max(0, offset - len(data))))
                    continue
                torn = rng.random() < TORN_P
                cut.torn += torn
                first = offset - offset % SECTOR
                for start in range(first, offset + length, SECTOR):
                    if torn and rng.random() < 0.5:
                        continue  # this sector never reached the platter
                    lo, hi = max(start, offset), min(start + SECTOR, offset + length)
                    if len(data) < hi:
                        data.extend(bytes(hi - len(data)))
                    data[lo:hi] = body[lo - offset:hi - offset]
            image.write_bytes(bytes(data))
            log.write_bytes(b"")  # laid down: the disk holds exactly this now

    def _image_files(self) -> dict[str, Path]:
        name = self.ledger.name
        return {s: self.images / f"{name}{s}" for s in LEDGER_SUFFIXES
                if (self.images / f"{name}{s}").exists()}

    def _read_image(self) -> tuple[list[int], dict[str, int], bool]:
        """Open a copy of the durable image (SQLite recovers its WAL there, not here)."""
        files = self._image_files()
        if "" not in files:
            return [], {}, "-wal" in files
        with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
            copy = Path(tmp) / self.ledger.name
            for suffix, path in files.items():
                shutil.copyfile(path, f"{copy}{suffix}")
            db = sqlite3.connect(copy)
            try:
                bills = [a for (a,) in db.execute(
                    "SELECT amount_minor FROM stacked_bills ORDER BY id")]
                payments = dict(db.execute("SELECT id, inserted_minor FROM payments"))
                check = db.execute("PRAGMA integrity_check").fetchone()[0]
            except sqlite3.Error as exc:
                self.report.problems.append(f"the durable image does not open: {exc}")
                return [], {}, "-wal" in files
            finally:
                db.close()
        if check != "ok":
            self.report.problems.append(f"the durable image is corrupt: {check}")
        return bills, payments, "-wal" in files

    def _restore(self, rng: random.Random) -> str:
        """Put the durable image in place of the live files; returns what the -shm became."""
        files = self._image_files()
        for suffix in LEDGER_SUFFIXES:
            live = Path(f"{self.ledger}{suffix}")
            if suffix in files:
                shutil.copyfile(files[suffix], live)
            else:
                live.unlink(missing_ok=True)
        shm = Path(f"{self.ledger}{SHM_SUFFIX}")
        if shm.exists() and rng.random() < 0.5:
            return "stale"
        shm.unlink(missing_ok=True)
        return "deleted"

    # -- the run -----------------------------------------------------------------------
    def run(self) -> PowerReport:
        params, st, report = self.params, self.station, self.report
        t0 = time.monotonic()
        cutter = PowerCutter(self, random.Random(params.seed + 1))
        try:
            st.start()
            cutter.start()
            while (time.monotonic() - t0 < params.budget_s and not self._enough(report)
                   and not report.problems):  # the first finding ends the run
                if cutter.error is not None:
                    raise cutter.error
                while self.cut_pending.is_set() and cutter.error is None:
                    time.sleep(0.01)  # the cutter is putting the durable image in place
                with st.core.lock:
                    if not st.core.alive() and not self.cut_pending.is_set():
                        self._cut_if_self_killed()
                        # never in the first start: a ledger not created yet holds no money
                        armed = (st.core.starts > 0
                                 and self.rng.random() < params.self_cut_share)
                        st.core.env[KILL_ENV] = (
                            str(self.rng.randint(*params.self_cut_writes)) if armed else "")
                        started = time.monotonic()
                        try:
                            st.core.start()
                            wait_idle(st)
                        except (RigError, OSError, TimeoutError, ApiRequestError):
                            self._let_die()
                            if self._self_killed():
                                continue  # cut inside a write during start-up: next round
                            raise
                        report.restart_s.append(time.monotonic() - started)
                        cutter.armed.set()
                bills = [self.rng.choice(BILLS) for _ in range(self.rng.randint(1, 3))]
                report.attempted += 1
                cuts_before = len(report.cuts)
                try:
                    result = st.pay(bills, timeout=PAYMENT_TIMEOUT_S)
                    report.completed += 1
                    with self._told_lock:
                        report.told.append((str(result["payment_id"]),
                                            int(result["inserted_minor"])))
                except (ConnectionError, TimeoutError, OSError, ApiRequestError, BillRefused,
                        NoPayment) as exc:
                    report.interrupted += 1
                    report.interruptions[type(exc).__name__] += 1
                    self._let_die()
                    with st.core.lock:
                        if len(report.cuts) == cuts_before and st.core.alive():
                            report.interrupted_alive += 1
            cutter.stop.set()
            cutter.join(10)
            if cutter.error is not None:
                raise cutter.error
            with st.core.lock:
                if st.core.alive():  # it may be armed to cut itself: a last cut, by hand
                    self.cut_pending.set()
                    st.core.kill()
                    self.after_kill(AIM_RANDOM, self.rng)
                self._cut_if_self_killed()
                st.core.env[KILL_ENV] = ""
                st.core.start()  # one clean start reconciles what the last cut left
            wait_idle(st)
            report.core_exit = st.core.stop()
            report.unacked_at_end = st.sim.unacked_stacked()
            report.recon = reconcile(st, None)
            self._final_checks()
        finally:
            cutter.stop.set()
            cutter.join(10)
            report.syncs = self._syncs()
            report.took_s = time.monotonic() - t0
            st.close()
        return report

    def _let_die(self, timeout_s: float = 2.0) -> None:
        """A closed socket can come before the dying core is reaped: give it a moment."""
        proc = self.station.core.proc
        if proc is not None:
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                pass  # alive: the interruption had another cause

    def _self_killed(self) -> bool:
        """The core died of SIGKILL and no cut handled it: the shim cut inside a write."""
        proc = self.station.core.proc
        return (proc is not None and proc.poll() == -signal.SIGKILL
                and proc.pid != self.handled_pid)

    def _cut_if_self_killed(self) -> None:
        if self._self_killed():
            self.after_kill(AIM_IN_WRITE, self.rng)

    def _enough(self, r: PowerReport) -> bool:
        kinds = r.kinds()
        self_cuts = sum(c.aim == AIM_IN_WRITE for c in r.cuts)
        return (r.attempted >= self.params.payments and len(r.cuts) >= self.params.min_cuts
                and self_cuts >= self.params.min_self_cuts
                and all(kinds[k] >= n for k, n in self.params.min_per_kind.items()))

    def _final_checks(self) -> None:
        r = self.report
        ids = Counter(pid for pid, _ in r.told)
        twice = [pid for pid, n in ids.items() if n > 1]
        if twice:
            r.problems.append(f"payment ids given to two customers: {twice[:5]}")
        final = dict(self.station.rows("SELECT id, inserted_minor FROM payments"))
        for pid, amount in r.told:
            if final.get(pid) != amount:
                r.problems.append(f"payment {pid} ({amount}) shown to a customer is "
                                  f"{final.get(pid)} in the final ledger")

    def _syncs(self) -> Counter[str]:
        out: Counter[str] = Counter()
        try:
            for line in (self.images / SYNC_LOG).read_text().splitlines():
                name = line.split(" ", 1)[0]
                out[name.removeprefix(self.ledger.name) or "db"] += 1
        except OSError:
            pass
        return out


def run_power_loss(workdir: Path, params: PowerParams | None = None) -> PowerReport:
    return PowerRun(workdir, params or PowerParams()).run()
