"""The chaos run: payments while the core is SIGKILLed and the broker stops and starts.

A scripted customer pays through the local API (kiosk.scripted.run_payment) with bills
pushed into the CCNET simulator; the core daemon runs the real CCNET and ESC/POS drivers,
the ledger and the MQTT sync agent; a desk consumer commits and acks what arrives.

- `Killer` SIGKILLs the core at random instants. Most kills are aimed: the killer waits
  until the simulator has written a stacked report (0x81) to the line and kills 1-18 ms
  later - after the commit and before the ACK, which waits out the profile's 20 ms gap
  between host frames - or, a quarter of the aimed ones, at once from the simulator's
  own thread, before the host has even read the report (so before the commit). Each kill
  is classified from the facts at that instant (the unit's unacknowledged report, its
  counter, the ledger's committed bills).
- `BrokerChaos` stops mosquitto (SIGKILL or SIGTERM), leaves it down for a while and
  starts it again on the same port.
- `ValidatorFaults`, between payments: a power cycle of the validator with a note in its
  stacker path that this host never sent STACK for (0x12 at power-up, then 0x81 after
  RESET), and a corrupted reply right after STACK with the unit, after the host's NAK,
  retransmitting in the host's gap between frames, retransmitting past its timeout, or
  staying silent (what real units do there is unsettled). The kills go on meanwhile.
At the end the core starts once more (start-up reconciliation), the outbox drains to the
desk, and `rig.reconcile` checks device ↔ ledger ↔ desk bill by bill.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from drivers.ccnet.states import PollState
from kiosk.api_client import ApiRequestError
from tests.chaos.rig import (
    BILLS,
    TERMINAL,
    BillRefused,
    NoPayment,
    Reconciliation,
    RigThread,
    Station,
    StationOptions,
    drain_to_desk,
    ledger_stacked_count,
    reconcile,
    wait_idle,
)

AIM_WINDOW_S = 0.018  # aimed kills land 1..18 ms after a stacked report went out ...
AIM_EARLY_S = 0.001
AIM_EARLY_SHARE = 0.25  # ... or, a quarter of them, at once from the simulator's thread
SETTLE_S = 0.05  # the simulator reads its line every 5 ms
RECOVERY_WAIT_S = 20.0  # a power-cycled unit's note is credited and ACKed within this
KILL_CHECK_S = 0.25  # meanwhile, how often to look whether the core was killed
NAK_BEHAVIOURS: dict[str, tuple[str, tuple[float, float]]] = {
    # what the unit does after the host NAKs the corrupted reply: (nak mode, delay range)
    "retransmit in the gap": ("retransmit", (0.003, 0.015)),  # profile gap: 20 ms
    "retransmit late": ("retransmit", (0.35, 0.5)),  # past the 300 ms response timeout
    "silent": ("silent", (0.0, 0.0)),
}


@dataclass
class ChaosParams:
    payments: int = 1000
    min_kills: int = 40
    min_window_kills: int = 10  # between a stacked bill's commit and its ACK
    min_uncommitted_kills: int = 3  # between the stacked report and its commit
    kill_every_s: tuple[float, float] = (2.0, 8.0)  # pause before the killer aims again
    aimed_share: float = 0.8
    broker_every_s: tuple[float, float] = (20.0, 45.0)
    broker_down_s: tuple[float, float] = (1.0, 5.0)
    max_broker_restarts: int = 1000
    power_cycle_share: float = 0.03  # payments preceded by a validator power cycle
    corrupt_share: float = 0.06  # payments whose first reply after STACK is corrupted
    min_power_cycles: int = 10
    min_corrupted_each: int = 5  # corrupted replies per after-NAK behaviour
    seed: int = 20261124
    budget_s: float = 1800.0
    drain_timeout_s: float = 120.0


@dataclass
class KillRecord:
    at_s: float
    kind: str  # "window" (committed, not ACKed), "uncommitted" (stacked, not committed), "other"
    aimed: bool


class Killer(RigThread):
    def __init__(self, station: Station, rng: random.Random, params: ChaosParams,
                 t0: float) -> None:
        super().__init__("chaos-killer")
        self.station, self.rng, self.params, self.t0 = station, rng, params, t0
        self.kills: list[KillRecord] = []
        self.stop = threading.Event()
        self.armed = threading.Event()

    def count(self, kind: str) -> int:
        return sum(1 for k in self.kills if k.kind == kind)

    def _run(self) -> None:
        sim, core = self.station.sim, self.station.core
        while not self.stop.is_set():
            if not self.armed.wait(0.05):
                continue
            if self.stop.wait(self.rng.uniform(*self.params.kill_every_s)):
                return
            aimed = self.rng.random() < self.params.aimed_share
            if aimed and self.rng.random() < AIM_EARLY_SHARE:
                # Before the commit: the simulator's own thread kills the core the moment
                # the stacked report is on the line (the host has not read it yet).
                fired = threading.Event()
                sim.on_report = lambda f=fired: self._kill_from_sim(f)
                if fired.wait(3.0):
                    continue
                sim.on_report = None
                aimed = False
            elif aimed:
                sim.reported.clear()
                if not sim.reported.wait(3.0):
                    aimed = False  # no bill on its way: kill wherever the core is
                else:
                    time.sleep(self.rng.uniform(AIM_EARLY_S, AIM_WINDOW_S))
            with core.lock:  # never in the middle of a (re)start
                if not (self.armed.is_set() and core.alive()):
                    continue
                with sim._lock:  # the unit's facts at the instant of the kill
                    ev = sim.model.event
                    unacked = ev is not None and ev[0] == PollState.STACKED
                    device = sim.model.counters.stacked
                    core.kill()
                self.armed.clear()
            # An ACK the host wrote just before it died is still in the pty: let the unit
            # read it before deciding whether the kill left the report unacknowledged.
            time.sleep(SETTLE_S)
            self._classify(unacked and sim.unacked_stacked(), device, aimed)

    def _kill_from_sim(self, fired: threading.Event) -> None:
        """Runs in the simulator thread, with the simulator's lock held."""
        core, sim = self.station.core, self.station.sim
        if not core.lock.acquire(blocking=False):  # a (re)start is going on: not now
            return
        try:
            if not (self.armed.is_set() and core.alive()):
                return
            ev = sim.model.event
            unacked = ev is not None and ev[0] == PollState.STACKED
            device = sim.model.counters.stacked
            core.kill()
            self.armed.clear()
        finally:
            core.lock.release()
        self._classify(unacked, device, True)
        fired.set()

    def _classify(self, unacked: bool, device: int, aimed: bool) -> None:
        """From the facts at the instant of the kill and the ledger after it."""
        committed = ledger_stacked_count(self.station.core.ledger)
        if unacked and committed == device:
            kind = "window"
        elif unacked and committed == device - 1:
            kind = "uncommitted"
        else:
            kind = "other"
        self.kills.append(KillRecord(time.monotonic() - self.t0, kind, aimed))


class BrokerChaos(RigThread):
    def __init__(self, station: Station, rng: random.Random, params: ChaosParams) -> None:
        super().__init__("chaos-broker")
        self.station, self.rng, self.params = station, rng, params
        self.stop = threading.Event()
        self.restarts: Counter[str] = Counter()
        self.down_s: list[float] = []

    @property
    def total(self) -> int:
        return sum(self.restarts.values())

    def _run(self) -> None:
        broker = self.station.broker
        assert broker is not None
        while not self.stop.is_set() and self.total < self.params.max_broker_restarts:
            if self.stop.wait(self.rng.uniform(*self.params.broker_every_s)):
                return
            how = self.rng.choice(("SIGKILL", "SIGTERM"))
            t0 = time.monotonic()
            if how == "SIGKILL":
                broker.kill()
            else:
                broker.stop()
            self.stop.wait(self.rng.uniform(*self.params.broker_down_s))
            broker.start()  # also when stopping: the run ends with a broker
            self.down_s.append(time.monotonic() - t0)
            self.restarts[how] += 1


class ValidatorFaults:
    """Validator faults, injected by the run's main loop between payments."""

    def __init__(self, station: Station, rng: random.Random) -> None:
        self.station, self.rng = station, rng
        self.power_cycles = 0
        self.recovery_timeouts = 0  # the note was not ACKed within RECOVERY_WAIT_S
        self.recovery_killed = 0  # the core was killed before it ACKed the note
        self.corrupted: Counter[str] = Counter()  # hit, by after-NAK behaviour
        self._next_behaviour = 0
        self._armed = threading.Event()  # a corruption waits for the next STACK

    def power_cycle(self) -> bool:
        """Power cycle a quiet unit (no bill moving, no report pending) with a note in its
        stacker path; waits until the note's report is ACKed (or a kill intervenes)."""
        sim = self.station.sim
        value = self.rng.choice(BILLS)
        with sim._lock:
            m = sim.model
            quiet = (m.base in (PollState.IDLING, PollState.UNIT_DISABLED) and m.event is None
                     and m.fault is None)
            if not quiet:
                return False
            mark = sim.mark()
            sim.power_cycle(note_in_stacker=value)
        self.power_cycles += 1
        deadline = time.monotonic() + RECOVERY_WAIT_S
        while time.monotonic() < deadline:
            try:
                sim.wait_for("host acked 0x81", timeout_s=KILL_CHECK_S, since=mark)
                return True
            except TimeoutError:
                if not self.station.core.alive():
                    self.recovery_killed += 1  # the main loop restarts it; reconcile judges
                    return True
        self.recovery_timeouts += 1
        return True

    def corrupt_after_stack(self) -> None:
        """Corrupt the first reply after the next STACK's ACK; the behaviours take turns.
        Half the time the bill lands in the cassette the moment the host NAKs (Stacking
        was corrupted, Bill Stacked is what the retry finds: the lost-note defect)."""
        sim = self.station.sim
        if self._armed.is_set():
            return
        self._armed.set()
        names = list(NAK_BEHAVIOURS)
        name = names[self._next_behaviour % len(names)]
        self._next_behaviour += 1
        mode, (low, high) = NAK_BEHAVIOURS[name]
        delay = self.rng.uniform(low, high)
        hurry = self.rng.random() < 0.5

        def armed(_line: str) -> None:  # in the simulator thread, before STACK's ACK
            self._armed.clear()
            sim.set_nak_mode(mode, delay)
            sim.arm("corrupt", 1, after=1)
            sim.on("reply CRC corrupted", lambda _l: self.corrupted.update([name]))
            if hurry:
                sim.on("host NAK", lambda _l: sim.model.hurry())

        sim.on("stacking", armed)

    def summary(self) -> str:
        hit = ", ".join(f"{n} {self.corrupted[n]}" for n in NAK_BEHAVIOURS)
        return (f"  validator: {self.power_cycles} power cycles with a note in the stacker "
                f"path ({self.recovery_killed} with the core killed before the note's ACK, "
                f"{self.recovery_timeouts} not ACKed within {RECOVERY_WAIT_S:.0f} s); "
                f"corrupted replies right after STACK {sum(self.corrupted.values())} "
                f"(after the NAK: {hit})")


@dataclass
class ChaosReport:
    attempted: int = 0
    completed: int = 0
    interrupted: int = 0
    interruptions: Counter[str] = field(default_factory=Counter)
    interrupted_alive: int = 0  # interrupted although the core was not killed
    kills: list[KillRecord] = field(default_factory=list)
    broker_restarts: Counter[str] = field(default_factory=Counter)
    broker_down_s: list[float] = field(default_factory=list)
    restart_to_idle_s: list[float] = field(default_factory=list)
    duplicates_ignored: int = 0
    desk_records: int = 0
    desk_duplicates: int = 0
    desk_acks: int = 0
    desk_rejected: int = 0
    drain_s: float = 0.0
    receipts: int = 0
    unacked_at_end: bool = False
    core_exit: int | None = None
    took_s: float = 0.0
    recon: Reconciliation | None = None
    validator: ValidatorFaults | None = None

    def kills_of(self, kind: str) -> int:
        return sum(1 for k in self.kills if k.kind == kind)

    @property
    def lost(self) -> int:
        return self.recon.lost if self.recon else -1

    @property
    def duplicated(self) -> int:
        return self.recon.duplicated if self.recon else -1

    def summary(self) -> str:
        r = self.recon
        assert r is not None
        restart = sorted(self.restart_to_idle_s) or [0.0]
        lines = [
            f"chaos run: {self.took_s:.0f} s",
            f"  payments attempted {self.attempted}: completed {self.completed}, interrupted "
            f"{self.interrupted} (by a kill {self.interrupted - self.interrupted_alive}, with "
            f"the core alive {self.interrupted_alive}) {dict(self.interruptions)}",
            f"  ledger: {r.payments} payments + {r.unclaimed} unclaimed credits; bills stacked "
            f"device {r.device_bills} / ledger {r.ledger_bills}; receipts printed "
            f"{self.receipts}",
            f"  kills {len(self.kills)} (SIGKILL): {self.kills_of('window')} between a stacked "
            f"bill's commit and its ACK, {self.kills_of('uncommitted')} between stacked and "
            f"commit, {self.kills_of('other')} elsewhere; "
            f"{sum(k.aimed for k in self.kills)} aimed",
            f"  repeated stacked reports ignored after a restart: {self.duplicates_ignored}",
            f"  core restart -> idle screen: median {statistics.median(restart):.2f} s, "
            f"max {restart[-1]:.2f} s",
            *([self.validator.summary()] if self.validator else []),
            f"  broker restarts {sum(self.broker_restarts.values())} "
            f"{dict(self.broker_restarts)}; down for "
            f"{sum(self.broker_down_s):.0f} s in all",
            f"  desk: {r.desk_payments} records held, {self.desk_records} deliveries, "
            f"{self.desk_duplicates} duplicates de-duplicated, {self.desk_acks} acks, "
            f"{self.desk_rejected} rejected; outbox drained {self.drain_s:.1f} s after the run",
            f"  cassette: ledger {fmt_cassette(r.cassette_ledger)} = unit "
            f"{fmt_cassette(r.cassette_device)}",
            f"  LOST {self.lost}, DUPLICATED at the desk after de-dup {self.duplicated}"
            + ("" if not r.problems else f"; PROBLEMS: {r.problems}"),
        ]
        return "\n".join(lines)


def fmt_cassette(c: dict[int, int]) -> str:
    return ", ".join(f"{a // 100}x{n}" for a, n in sorted(c.items())) or "empty"


def run_chaos(workdir: Path, params: ChaosParams, log: bool = True) -> ChaosReport:
    rng = random.Random(params.seed)
    station = Station(workdir, StationOptions(mqtt=True, seed=params.seed))
    report = ChaosReport()
    t0 = time.monotonic()
    killer = Killer(station, random.Random(params.seed + 1), params, t0)
    broker_chaos = BrokerChaos(station, random.Random(params.seed + 2), params)
    faults = report.validator = ValidatorFaults(station, random.Random(params.seed + 3))

    def faults_short() -> bool:
        return faults.power_cycles < params.min_power_cycles or any(
            faults.corrupted[n] < params.min_corrupted_each for n in NAK_BEHAVIOURS)

    try:
        station.start()
        killer.start()
        broker_chaos.start()
        next_note = 0.0
        while time.monotonic() - t0 < params.budget_s and (
            report.attempted < params.payments
            or len(killer.kills) < params.min_kills
            or killer.count("window") < params.min_window_kills
            or killer.count("uncommitted") < params.min_uncommitted_kills
            or faults_short()
        ):
            for thread in (killer, broker_chaos):
                if thread.error is not None:
                    raise thread.error
            with station.core.lock:
                if not station.core.alive():
                    started = time.monotonic()
                    station.core.start()
                    wait_idle(station)
                    report.restart_to_idle_s.append(time.monotonic() - started)
                    killer.armed.set()
            if rng.random() < params.power_cycle_share or (
                    report.attempted >= params.payments
                    and faults.power_cycles < params.min_power_cycles):
                faults.power_cycle()
            if rng.random() < params.corrupt_share or (
                    report.attempted >= params.payments and faults_short()):
                faults.corrupt_after_stack()
            bills = [rng.choice(BILLS) for _ in range(rng.randint(1, 3))]
            report.attempted += 1
            kills_before = len(killer.kills)
            try:
                station.pay(bills)
                report.completed += 1
            except (ConnectionError, TimeoutError, OSError, ApiRequestError, BillRefused,
                    NoPayment) as exc:
                report.interrupted += 1
                report.interruptions[type(exc).__name__] += 1
                with station.core.lock:
                    if len(killer.kills) == kills_before and station.core.alive():
                        report.interrupted_alive += 1
            if log and time.monotonic() >= next_note:
                next_note = time.monotonic() + 30
                print(f"  [{time.monotonic() - t0:4.0f} s] {report.attempted} payments, "
                      f"{len(killer.kills)} kills ({killer.count('window')} in the ACK "
                      f"window), {broker_chaos.total} broker restarts", flush=True)
        killer.stop.set()
        broker_chaos.stop.set()
        killer.join(10)
        broker_chaos.join(30)
        for thread in (killer, broker_chaos):
            if thread.error is not None:
                raise thread.error
        assert station.broker is not None
        if station.broker.proc is None:
            station.broker.start()
        # One clean start lets the core reconcile what the last kill left.
        if not station.core.alive():
            started = time.monotonic()
            station.core.start()
            report.restart_to_idle_s.append(time.monotonic() - started)
        wait_idle(station)
        report.drain_s = drain_to_desk(station, params.drain_timeout_s)
        report.core_exit = station.core.stop()
        report.unacked_at_end = station.sim.unacked_stacked()
        desk = station.desk
        desk_rows = desk.store.payments(TERMINAL)
        report.desk_records = desk.stats.records
        report.desk_duplicates = desk.stats.duplicates
        report.desk_acks = desk.stats.acks_sent
        report.desk_rejected = desk.stats.rejected
        report.duplicates_ignored = len(
            station.rows("SELECT id FROM events WHERE kind = 'duplicate_stacked_ignored'")
        )
        report.receipts = station.receipts
        report.recon = reconcile(station, desk_rows)
    finally:
        killer.stop.set()
        broker_chaos.stop.set()
        killer.join(10)
        broker_chaos.join(30)
        report.kills = list(killer.kills)
        report.broker_restarts = broker_chaos.restarts
        report.broker_down_s = broker_chaos.down_s
        report.took_s = time.monotonic() - t0
        station.close()
    return report
