"""Line-fault soak: payments while the serial lines misbehave.

The core daemon (real CCNET and ESC/POS drivers) serves a scripted customer while a fault
thread, at random instants, puts on the lines what real cables and devices do:

| fault | where | what |
|---|---|---|
| `garbage` | acceptor → host | noise bytes with stray SYNCs before the next reply (simulator) |
| `spray` | acceptor → host | noise between frames, at any instant (TapSim) |
| `drop` | acceptor → host | the next 1-3 replies are never sent (simulator) |
| `bytes` | acceptor → host | 1-3 random bytes of the next reply are lost (TapSim) |
| `crc` | acceptor → host | the CRC of the next 1-2 replies is corrupted (simulator) |
| `stacked_drop`, `stacked_crc` | acceptor → host | the reply with a stacked report (0x81) is |
| | | dropped / corrupted (M2 under line faults) |
| | | after each corruption the unit, once NAKed, retransmits in the gap, retransmits |
| | | late or stays silent, at random (`NAK_BEHAVIOURS`) |
| `unplug` | acceptor | the pty closes (the port vanishes) for 0.3-2 s, then a new one appears |
| `printer_offline` | printer | the printer answers nothing for 0.5-2 s |
| `printer_replug` | printer | the printer's pty closes and a new one appears |

Figures: how long the driver takes to get a clean reply again after a fault hit the line
(`resync`), how long the terminal was out of service after an unplug, and how long after
a printer outage the next receipt came out of the printer (`recovery`) - all measured,
never assumed. After the last fault, two closing customers must be served in full. Checks: the core
never dies, every bill the unit stacked is credited exactly once (device ↔ ledger, bill
by bill) and every completed payment holds exactly the bills stacked while it collected.
"""

from __future__ import annotations

import bisect
import random
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from drivers.sim.printer import Fault
from kiosk.api_client import ApiRequestError
from tests.chaos.chaos import NAK_BEHAVIOURS
from tests.chaos.rig import (
    BILLS,
    BillRefused,
    NoPayment,
    Reconciliation,
    RigThread,
    Snap,
    Station,
    StationOptions,
    Watcher,
    reconcile,
    wait_idle,
    wait_until,
)

FAULT_ACCEPTOR = frozenset(
    {"offline", "jammed", "cassette_full", "cassette_out", "cheated", "paused", "failure"}
)
SETTLED_ACCEPTOR = frozenset({"idle", "disabled"})
RECOVERY_WAIT_S = 15.0  # the engine polls an idle printer every 10 s (PRINTER_POLL_S)
CLOSING_CUSTOMERS = 2
FAULTS = {  # weight
    "garbage": 3,
    "spray": 3,
    "drop": 3,
    "bytes": 3,
    "crc": 3,
    "stacked_drop": 2,
    "stacked_crc": 2,
    "unplug": 1,
    "printer_offline": 1,
    "printer_replug": 1,
}


@dataclass
class SoakParams:
    duration_s: float = 600.0
    fault_every_s: tuple[float, float] = (0.5, 2.5)
    seed: int = 20261125
    min_faults: int = 0
    faults: dict[str, int] = field(default_factory=lambda: dict(FAULTS))  # kind -> weight


@dataclass
class Episode:
    kind: str
    t: float  # the fault's end: injection for one-shot faults, replug / clear otherwise
    recovered_s: float | None = None


@dataclass
class SoakReport:
    took_s: float = 0.0
    attempted: int = 0
    completed: int = 0
    interrupted: int = 0
    interruptions: Counter[str] = field(default_factory=Counter)
    injected: Counter[str] = field(default_factory=Counter)
    nak_behaviours: Counter[str] = field(default_factory=Counter)
    hits: Counter[str] = field(default_factory=Counter)
    resync_s: dict[str, list[float]] = field(default_factory=dict)
    excursions: int = 0  # one-shot faults after which the acceptor left its normal states
    episodes: list[Episode] = field(default_factory=list)
    wrong_credit: list[str] = field(default_factory=list)
    core_alive: bool = False
    core_exit: int | None = None
    closing_receipts: int = 0  # receipts of the customers served after the last fault
    recon: Reconciliation | None = None

    def recovery(self, kind: str) -> list[float]:
        return sorted(e.recovered_s for e in self.episodes
                      if e.kind == kind and e.recovered_s is not None)

    def unrecovered(self) -> list[Episode]:
        return [e for e in self.episodes if e.recovered_s is None]

    def summary(self) -> str:
        r = self.recon
        assert r is not None
        lines = [
            f"line-fault soak: {self.took_s:.0f} s",
            f"  payments attempted {self.attempted}: completed {self.completed}, "
            f"interrupted {self.interrupted} {dict(self.interruptions)}",
            f"  faults injected {sum(self.injected.values())} {dict(sorted(self.injected.items()))}"
            f"; hits on the line {dict(sorted(self.hits.items()))}",
            f"  after the host's NAK of a corrupted reply, the unit: "
            f"{dict(sorted(self.nak_behaviours.items()))}",
        ]
        for kind, values in sorted(self.resync_s.items()):
            lines.append(f"  resync after {kind:<8} n={len(values):<4} " + fmt_dist(values))
        lines.append(f"  one-shot faults that made the acceptor leave its normal states: "
                     f"{self.excursions}")
        for kind, what in (("unplug", "acceptor replug -> back in service"),
                           ("printer_offline", "printer back -> next receipt out"),
                           ("printer_replug", "printer replug -> next receipt out")):
            values = self.recovery(kind)
            lines.append(f"  {what:<36} n={len(values):<3} " + fmt_dist(values))
        lines += [
            f"  core alive throughout: {self.core_alive}; exit code on stop {self.core_exit}; "
            f"closing customers' receipts {self.closing_receipts}/{CLOSING_CUSTOMERS}",
            f"  bills stacked device {r.device_bills} / ledger {r.ledger_bills}; payments "
            f"{r.payments} + unclaimed {r.unclaimed}",
            f"  LOST {r.lost}, DUPLICATED {r.duplicated}, WRONG CREDITS {len(self.wrong_credit)}"
            + (f"; PROBLEMS {r.problems} {self.wrong_credit[:3]}"
               if r.problems or self.wrong_credit else "")
            + (f"; NOT RECOVERED {len(self.unrecovered())} episodes: "
               f"{dict(Counter(e.kind for e in self.unrecovered()))}"
               if self.unrecovered() else ""),
        ]
        return "\n".join(lines)


def fmt_dist(values: list[float]) -> str:
    if not values:
        return "-"
    v = sorted(values)
    p95 = v[min(len(v) - 1, round(0.95 * (len(v) - 1)))]
    return (f"median {statistics.median(v) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
            f"max {v[-1] * 1000:.0f} ms")


class FaultThread(RigThread):
    def __init__(self, station: Station, rng: random.Random, params: SoakParams) -> None:
        super().__init__("soak-faults")
        self.station, self.rng, self.params = station, rng, params
        self.stop = threading.Event()
        self.injected: Counter[str] = Counter()
        self.episodes: list[Episode] = []
        self.nak_behaviours: Counter[str] = Counter()  # after-NAK behaviour per corruption

    def _run(self) -> None:
        kinds = [k for k, w in self.params.faults.items() if w > 0]
        weights = [self.params.faults[k] for k in kinds]
        first = list(kinds)  # every kind once, in a random order, then at random
        self.rng.shuffle(first)
        sim = self.station.sim
        while not self.stop.wait(self.rng.uniform(*self.params.fault_every_s)):
            kind = first.pop() if first else self.rng.choices(kinds, weights)[0]
            self.injected[kind] += 1
            if kind == "garbage":
                sim.command(f"garbage {self.rng.randint(3, 40)}")
            elif kind == "spray":
                sim.spray(self.rng.randint(1, 24))
            elif kind == "drop":
                sim.command(f"drop_reply {self.rng.randint(1, 3)}")
            elif kind == "bytes":
                sim.drop_bytes(1)
            elif kind == "crc":
                self._after_nak()
                sim.command(f"corrupt_crc {self.rng.randint(1, 2)}")
            elif kind == "stacked_drop":
                sim.when("stacked", "drop_reply")
            elif kind == "stacked_crc":
                self._after_nak()
                sim.when("stacked", "corrupt_crc")
            elif kind == "unplug":
                sim.command("unplug")
                self.stop.wait(self.rng.uniform(0.3, 2.0))
                sim.command("replug")
                self.episodes.append(Episode(kind, time.monotonic()))
            elif kind == "printer_offline":
                self.station.printer.set_fault(Fault.OFFLINE)
                self.stop.wait(self.rng.uniform(0.5, 2.0))
                self.station.printer.clear()
                self.episodes.append(Episode(kind, time.monotonic()))
            elif kind == "printer_replug":
                self.station.replug_printer()
                self.episodes.append(Episode(kind, time.monotonic()))
        sim.command("replug")  # leave the devices plugged in and well
        self.station.printer.clear()

    def _after_nak(self) -> None:
        """What the unit does when the host NAKs the damaged reply (unsettled:
        docs/protocols/ccnet.md, "Link rules")."""
        name = self.rng.choice(list(NAK_BEHAVIOURS))
        mode, (low, high) = NAK_BEHAVIOURS[name]
        self.station.sim.set_nak_mode(mode, self.rng.uniform(low, high))
        self.nak_behaviours[name] += 1


def run_soak(workdir: Path, params: SoakParams, log: bool = True) -> SoakReport:
    rng = random.Random(params.seed)
    station = Station(workdir, StationOptions(mqtt=False, seed=params.seed))
    report = SoakReport()
    faults = FaultThread(station, random.Random(params.seed + 1), params)
    watcher = Watcher(station)
    t0 = time.monotonic()
    try:
        station.start()
        station.core.start()
        wait_idle(station)
        watcher.start()
        faults.start()
        next_note = t0 + 30
        while time.monotonic() - t0 < params.duration_s or (
            sum(faults.injected.values()) < params.min_faults
        ):
            if faults.error is not None:
                raise faults.error
            if not station.core.alive():
                break  # a crash: reported, and the run ends
            bills = [rng.choice(BILLS) for _ in range(rng.randint(1, 3))]
            report.attempted += 1
            before = len(station.sim.stacked)
            try:
                result = station.pay(bills, timeout=15.0)
                report.completed += 1
                _check_credit(station, result, before, report)
            except (ConnectionError, TimeoutError, OSError, ApiRequestError, BillRefused,
                    NoPayment) as exc:
                report.interrupted += 1
                report.interruptions[type(exc).__name__] += 1
                _wait_customer_ready(station)
            if log and time.monotonic() >= next_note:
                next_note = time.monotonic() + 30
                print(f"  [{time.monotonic() - t0:4.0f} s] {report.attempted} payments, "
                      f"{sum(faults.injected.values())} faults", flush=True)
        faults.stop.set()
        faults.join(10)
        if faults.error is not None:
            raise faults.error
        report.core_alive = station.core.alive()
        if report.core_alive:
            # Idle, the terminal looks at its printer every 10 s: give the last fault
            # time to clear, as it would between customers; then the closing customers
            # must be served in full, receipt included.
            wait_idle(station, 30)
            try:
                wait_until(lambda: bool(watcher.timeline) and watcher.timeline[-1].printer
                           == "ok" and watcher.timeline[-1].acceptor in SETTLED_ACCEPTOR,
                           RECOVERY_WAIT_S, "the devices to be back after the last fault")
            except TimeoutError:
                pass  # reported: the episode has no recovery time
            for _ in range(CLOSING_CUSTOMERS):
                before = len(station.sim.stacked)
                try:
                    result = station.pay([100], timeout=15.0)
                    report.closing_receipts += result.get("receipt") == "printed"
                    _check_credit(station, result, before, report)
                except (ConnectionError, TimeoutError, OSError, ApiRequestError,
                        BillRefused, NoPayment):
                    pass
        report.core_exit = station.core.stop()
        watcher.stop()
        report.injected = faults.injected
        report.nak_behaviours = faults.nak_behaviours
        report.episodes = faults.episodes
        _measure(station, watcher, report)
        report.recon = reconcile(station, None)
    finally:
        faults.stop.set()
        faults.join(10)
        watcher.stop()
        report.took_s = time.monotonic() - t0
        station.close()
    return report


def _check_credit(station: Station, result: dict, before: int, report: SoakReport) -> None:
    """A completed payment holds exactly the bills the unit stacked while it collected."""
    pid = result.get("payment_id")
    stacked_now = station.sim.stacked[before:]
    if not pid:
        report.wrong_credit.append(f"completed payment without an id: {result}")
        return
    bills = [a for (a,) in station.rows(
        "SELECT amount_minor FROM stacked_bills WHERE payment_id = ? ORDER BY id", pid)]
    inserted = station.rows("SELECT inserted_minor FROM payments WHERE id = ?", pid)[0][0]
    if bills != stacked_now or inserted != sum(stacked_now):
        report.wrong_credit.append(
            f"{pid}: credited {inserted} for bills {bills}, the unit stacked {stacked_now}")


def _wait_customer_ready(station: Station) -> None:
    """After an interrupted payment: the terminal back at idle (it may be out of service
    for a while: a fault the drivers are recovering from)."""
    try:
        wait_idle(station, 30)
    except (TimeoutError, OSError, ConnectionError):
        pass


def _measure(station: Station, watcher: Watcher, report: SoakReport) -> None:
    sim = station.sim
    clean = sim.clean
    timeline = watcher.timeline
    for t_hit, kind in sim.hits:
        report.hits[kind] += 1
        i = bisect.bisect_right(clean, t_hit)
        if i < len(clean):
            report.resync_s.setdefault(kind, []).append(clean[i] - t_hit)
        if kind in ("drop", "crc", "garbage", "bytes", "spray") and any(
            t_hit <= s.t < t_hit + 1.0 and s.acceptor in FAULT_ACCEPTOR for s in timeline
        ):
            report.excursions += 1

    def in_service(s: Snap) -> bool:
        return (s.acceptor in SETTLED_ACCEPTOR and "acceptor" not in s.oos
                and s.screen != "out_of_service")

    receipts = station.receipt_times
    for ep in report.episodes:
        if ep.kind != "unplug":
            # the printer is back when a receipt comes out of it again
            i = bisect.bisect_right(receipts, ep.t)
            if i < len(receipts):
                ep.recovered_s = receipts[i] - ep.t
            continue
        before = [s for s in timeline if s.t < ep.t]
        if before and in_service(before[-1]) and not any(
            s.t < ep.t + 0.5 and not in_service(s) for s in timeline if s.t >= ep.t
        ):
            ep.recovered_s = 0.0  # the fault never showed (no poll while unplugged)
            continue
        back = watcher.first_after(ep.t, in_service)
        if back is not None:
            ep.recovered_s = back.t - ep.t
