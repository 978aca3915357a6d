"""Disk full and read-only ledger during a session (M10), end to end.

The real core daemon runs with the disk fault hook (tests/chaos/faultcore.py: SQLite's own
limits on the ledger's own connection), the real CCNET and ESC/POS drivers on the
simulators, MQTT to a real mosquitto and a desk consumer; the customer screen is the real
UI process (`python -m ui --report` on Xvfb) when `with_ui`. Three scenarios in one run:

1. `full`: the disk fills up while a customer is inserting bills. The first bill the ledger
   cannot record is returned (or, if only its stacked report could not be written, kept
   unacknowledged by the unit); the terminal goes out of service and disables the unit;
   the disk comes back; the engine's probe (every 10 s) finds the ledger writable and the
   session's cash becomes a payment.
2. `stack`: the file system turns read-only between the escrow decision and the stacked
   bill's commit (the unit is stacking). The bill is not committed, so it is not ACKed:
   the unit repeats its report; when the disk is back the first repeat commits (the
   first successful write ends the outage at once) and the bill is in the payment once.
3. `idle`: read-only while nobody pays; the next customer is refused before any cash and
   sees the out-of-service screen; the probe brings the terminal back.

In each: the local API snapshot (what the UI renders) and the UI itself show the
out-of-service screen with the support phone, the desk's monitoring (`health`) sees the
reason, nothing is lost (device ↔ ledger ↔ desk), and the recovery time is measured
from the moment the disk is back.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiosk.api_client import ApiClient, ApiRequestError
from tests.chaos.faultcore import ENV
from tests.chaos.rig import (
    ACCOUNT,
    PROVIDER,
    RUB,
    SUPPORT_PHONE,
    TERMINAL,
    Reconciliation,
    Snap,
    Station,
    StationOptions,
    Watcher,
    drain_to_desk,
    reconcile,
    wait_idle,
    wait_until,
)
from tests.chaos.screen import UiProcess, plain, xvfb
from tests.xvfb import Xvfb

SHOW_TIMEOUT_S = 10.0
RECOVERY_TIMEOUT_S = 30.0  # the probe runs every 10 s (engine.LEDGER_PROBE_S)


@dataclass
class Scenario:
    name: str
    fault: str
    outcome: str = ""  # what the unit did with the bill that met the fault
    bills_before: int = 0  # bills credited before the fault hit
    shown: Snap | None = None  # the out-of-service snapshot the UI got
    ui_phone: str | None = None  # what the UI process displayed as the phone
    ui_text: str | None = None
    desk_saw: bool = False  # the desk's health said out of service, reason "ledger"
    unit_closed: str = ""  # "disabled", or "holding its stacked report" (takes no bill)
    flaps: int = 0  # snapshots out of out-of-service while the disk was still bad
    refused_while_out: bool = False
    recovered_s: float | None = None
    payment_id: str | None = None
    payment_bills: list[int] = field(default_factory=list)
    unit_bills: list[int] = field(default_factory=list)


@dataclass
class DiskReport:
    scenarios: list[Scenario] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    recon: Reconciliation | None = None
    took_s: float = 0.0

    def summary(self) -> str:
        lines = [f"disk faults (M10): {self.took_s:.0f} s"]
        for s in self.scenarios:
            rec = f"{s.recovered_s:.2f} s" if s.recovered_s is not None else "NOT RECOVERED"
            lines.append(
                f"  {s.name:<6} ({s.fault}): bill at the fault {s.outcome or '-'}; out of "
                f"service shown {'yes' if s.shown else 'NO'} "
                f"(phone on the UI: {s.ui_phone!r}); desk health saw it "
                f"{'yes' if s.desk_saw else 'NO'}; unit {s.unit_closed or 'STILL TAKING BILLS'}; "
                f"left out of service {s.flaps} times while the disk was bad; "
                f"back in service {rec} after the disk; "
                f"payment {s.payment_id or '-'} bills {[b // RUB for b in s.payment_bills]} "
                f"= unit {[b // RUB for b in s.unit_bills]}"
            )
        r = self.recon
        if r is not None:
            lines.append(f"  reconciliation: bills device {r.device_bills} / ledger "
                         f"{r.ledger_bills}; desk {r.desk_payments} records; LOST {r.lost}, "
                         f"DUPLICATED {r.duplicated}")
        if self.problems or (r and r.problems):
            lines.append(f"  PROBLEMS: {self.problems + (r.problems if r else [])}")
        return "\n".join(lines)


class DiskRun:
    def __init__(self, workdir: Path, with_ui: bool = True, seed: int = 1) -> None:
        self.control = workdir / "disk-state"
        self.station = Station(workdir, StationOptions(
            mqtt=True, launcher="tests.chaos.faultcore",
            launcher_env={ENV: str(self.control)}, seed=seed))
        self.with_ui = with_ui
        self.xvfb: Xvfb | None = None
        self.ui: UiProcess | None = None
        self.watcher = Watcher(self.station)
        self.report = DiskReport()

    # -- plumbing ----------------------------------------------------------------------
    def set_disk(self, word: str) -> None:
        """Set the disk state and wait until the daemon applied it."""
        core = self.station.core
        mark = core.log_size()
        self.control.write_text(word, encoding="utf-8")
        wait_until(lambda: f"FAULT disk={word}" in core.log_since(mark), 15.0,
                   f"the daemon to apply disk={word}")

    def problem(self, text: str) -> None:
        self.report.problems.append(text)

    def customer_to_cash(self, client: ApiClient) -> None:
        client.wait_for(lambda s: s["screen"] == "idle", 20)
        client.intent("select_provider", provider_id=PROVIDER)
        client.intent("submit_account", account=ACCOUNT)
        if (client.snapshot or {}).get("printer_warning"):
            client.intent("accept_no_receipt")
        client.intent("confirm_account")
        client.wait_for(lambda s: s["screen"] == "cash" and s["acceptor"]["status"] == "idle",
                        10)
        # The snapshot's "idle" can still be the unit's last report from before the previous
        # session disabled it (the disabled state shows a poll later): the slot is open once
        # the unit itself is enabled and stays so across two more polls, by which time any
        # command the host sent before them (the old session's disable) has landed.
        model = self.station.sim.model
        deadline = time.monotonic() + 10
        while True:
            wait_until(lambda: bool(model.enabled), 10, "the unit to take the enable command")
            polls = model.counters.polls
            wait_until(lambda p=polls: model.counters.polls >= p + 2, 10, "two polls")
            if model.enabled:
                return
            if time.monotonic() > deadline:
                raise TimeoutError("the unit did not stay enabled for the customer")

    def insert(self, client: ApiClient, rubles: int) -> str:
        """One bill; 'credited', 'returned' (given back), 'held' (stacked, report not
        acknowledged: the ledger could not commit it) or 'refused' (slot closed)."""
        sim = self.station.sim
        before = ((client.snapshot or {}).get("session") or {}).get("inserted_minor", 0)
        stacked_before = len(sim.stacked)
        mark = sim.mark()
        if sim.command(f"insert {rubles}") != "ok":
            return "refused"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            snap = client.snapshot or {}
            inserted = (snap.get("session") or {}).get("inserted_minor", 0)
            if inserted >= before + rubles * RUB and not sim.unacked_stacked():
                return "credited"
            if _since(sim, mark, "returned "):
                return "returned"
            if (snap.get("screen") == "out_of_service" and sim.unacked_stacked()
                    and len(sim.stacked) > stacked_before):
                return "held"
            seq = snap.get("seq")
            try:
                client.wait_for(lambda s, q=seq: s["seq"] != q, timeout=0.05)
            except TimeoutError:
                pass
        raise TimeoutError(f"no outcome for a {rubles} bill: {sim.events[-6:]}")

    def expect_out_of_service(self, sc: Scenario, since: float) -> None:
        """The snapshot (UI's input), the UI itself and the desk all show it."""
        def oos(s: Snap) -> bool:
            return (s.screen == "out_of_service" and "ledger" in s.oos
                    and SUPPORT_PHONE in s.text)
        try:
            wait_until(lambda: self.watcher.first_after(since, oos) is not None,
                       SHOW_TIMEOUT_S, "the out-of-service snapshot")
            sc.shown = self.watcher.first_after(since, oos)
        except TimeoutError:
            self.problem(f"{sc.name}: no out-of-service snapshot with the phone; last "
                         f"{self.watcher.timeline[-1:]}")
        if self.ui is not None:
            try:
                shown = self.ui.wait_for(lambda s: s["screen"] == "out_of_service"
                                         and "oos.phone" in s["labels"], SHOW_TIMEOUT_S)
                sc.ui_phone = plain(shown["labels"].get("oos.phone", ""))
                sc.ui_text = plain(shown["labels"].get("oos.text", ""))
                if sc.ui_phone != SUPPORT_PHONE or SUPPORT_PHONE not in sc.ui_text:
                    self.problem(f"{sc.name}: the UI shows phone {sc.ui_phone!r} / text "
                                 f"{sc.ui_text!r}")
            except TimeoutError as exc:
                self.problem(f"{sc.name}: the UI never showed out of service: {exc}")
        desk = self.station.desk

        since_ms = int((time.time() - (time.monotonic() - since)) * 1000)

        def desk_sees() -> bool:  # a health snapshot taken after the fault
            h = desk.health.get(TERMINAL) or {}
            return (h.get("at_ms", 0) >= since_ms and h.get("in_service") is False
                    and "ledger" in (h.get("out_of_service") or {}))
        sc.desk_saw = desk.wait(desk_sees, SHOW_TIMEOUT_S)
        if not sc.desk_saw:
            self.problem(f"{sc.name}: the desk's health never said out of service (ledger)")
        sim = self.station.sim

        def closed() -> str:
            if sim.with_model(lambda m: not m.enabled):
                return "disabled"
            # A unit holding an unacknowledged stacked report takes no bill; the driver
            # sends its (empty) enable mask once the report is settled
            # (docs/protocols/ccnet.md, "Start-up").
            return "holding its stacked report" if sim.unacked_stacked() else ""
        try:
            wait_until(closed, 5.0, "the unit closed")
            sc.unit_closed = closed()
        except TimeoutError:
            self.problem(f"{sc.name}: the unit still takes bills while the ledger cannot write")

    def recover(self, sc: Scenario, client: ApiClient) -> None:
        """Disk back: time until the terminal serves again; finish the customer's receipt."""
        shown_at = sc.shown.t if sc.shown is not None else time.monotonic()
        sc.flaps = sum(1 for s in self.watcher.timeline
                       if s.t > shown_at and s.screen != "out_of_service")
        t_ok = time.monotonic()
        self.set_disk("ok")

        def serving(s: Snap) -> bool:
            return s.screen in ("idle", "receipt", "cash") and "ledger" not in s.oos
        try:
            wait_until(lambda: self.watcher.first_after(t_ok, serving) is not None,
                       RECOVERY_TIMEOUT_S, "the terminal back in service")
            back = self.watcher.first_after(t_ok, serving)
            assert back is not None
            sc.recovered_s = back.t - t_ok
        except TimeoutError:
            self.problem(f"{sc.name}: not back in service {RECOVERY_TIMEOUT_S:.0f} s after the "
                         f"disk came back")
            return
        snap = client.wait_for(lambda s: s["screen"] == "idle" or (
            s["screen"] == "receipt" and (s["last_payment"] or {}).get("receipt")
            not in (None, "printing")), 20)
        if snap["screen"] == "receipt":
            sc.payment_id = snap["last_payment"]["payment_id"]
            client.intent("done")
        wait_idle(self.station, 20)

    def payment_facts(self, sc: Scenario, unit_from: int) -> None:
        sc.unit_bills = list(self.station.sim.stacked[unit_from:])
        if sc.payment_id:
            sc.payment_bills = [a for (a,) in self.station.rows(
                "SELECT amount_minor FROM stacked_bills WHERE payment_id = ? ORDER BY id",
                sc.payment_id)]
        if sc.payment_bills != sc.unit_bills:
            self.problem(f"{sc.name}: payment {sc.payment_id} holds {sc.payment_bills}, the "
                         f"unit stacked {sc.unit_bills}")

    # -- scenarios ---------------------------------------------------------------------
    def disk_full(self, client: ApiClient) -> Scenario:
        sc = Scenario("full", "max_page_count")
        unit_from = len(self.station.sim.stacked)
        self.customer_to_cash(client)
        if self.insert(client, 100) != "credited":
            self.problem("full: the first bill was not credited with a healthy disk")
        sc.bills_before = 1
        t_fault = time.monotonic()
        self.set_disk("full")
        for _ in range(60):  # the pages' free room runs out after a few rows
            outcome = self.insert(client, 10)
            if outcome != "credited":
                sc.outcome = outcome
                break
            sc.bills_before += 1
        else:
            self.problem("full: 60 bills recorded on a full disk")
        self.expect_out_of_service(sc, t_fault)
        sc.refused_while_out = self.station.sim.command("insert 50") != "ok"
        if not sc.refused_while_out:
            self.problem("full: the unit took a bill while out of service")
        self.recover(sc, client)
        self.payment_facts(sc, unit_from)
        return sc

    def stack_readonly(self, client: ApiClient) -> Scenario:
        sc = Scenario("stack", "query_only between escrow and stacked")
        sim = self.station.sim
        unit_from = len(sim.stacked)
        self.customer_to_cash(client)
        slow = dataclasses.replace(sim.model.timing, stack_s=0.4)
        fast = sim.model.timing
        sim.with_model(lambda m: setattr(m, "timing", slow))
        try:
            t_fault = time.monotonic()
            mark = self.station.core.log_size()
            sim.on("stacking", lambda _line: self.control.write_text("readonly"))
            sc.outcome = self.insert(client, 1000)
            try:
                wait_until(lambda: "FAULT disk=readonly" in self.station.core.log_since(mark),
                           5, "the read-only disk applied")
            except TimeoutError as exc:
                raise TimeoutError(
                    f"{exc}; the bill was {sc.outcome}; simulator: {sim.events[-8:]}; "
                    f"core log: {self.station.core.log_since(mark)[-3000:]}") from exc
        finally:
            sim.with_model(lambda m: setattr(m, "timing", fast))
        if sc.outcome != "held":
            self.problem(f"stack: the bill stacked on a read-only disk was {sc.outcome}, "
                         f"expected held unacknowledged")
        committed = self.station.rows("SELECT count(*) FROM stacked_bills")[0][0]
        self.expect_out_of_service(sc, t_fault)
        sc.refused_while_out = sim.command("insert 50") != "ok"
        time.sleep(1.0)  # repeats keep failing meanwhile: nothing half-written, no ACK
        if self.station.rows("SELECT count(*) FROM stacked_bills")[0][0] != committed:
            self.problem("stack: a bill was recorded while the ledger was read-only")
        if not sim.unacked_stacked():
            self.problem("stack: the unit got an ACK for a bill the ledger did not record")
        self.recover(sc, client)
        if sim.unacked_stacked():
            self.problem("stack: the held bill was never acknowledged after recovery")
        self.payment_facts(sc, unit_from)
        return sc

    def idle_readonly(self, client: ApiClient) -> Scenario:
        sc = Scenario("idle", "query_only at idle")
        client.wait_for(lambda s: s["screen"] == "idle", 20)
        t_fault = time.monotonic()
        self.set_disk("readonly")
        client.intent("select_provider", provider_id=PROVIDER)
        client.intent("submit_account", account=ACCOUNT)
        if (client.snapshot or {}).get("printer_warning"):
            client.intent("accept_no_receipt")
        try:
            client.intent("confirm_account")
            self.problem("idle: a cash session opened on a read-only ledger")
            sc.outcome = "opened"
        except ApiRequestError as exc:
            sc.outcome = f"refused ({exc.code})"
        self.expect_out_of_service(sc, t_fault)
        sc.refused_while_out = self.station.sim.command("insert 50") != "ok"
        self.recover(sc, client)
        return sc

    # -- the run -----------------------------------------------------------------------
    def run(self) -> DiskReport:
        t0 = time.monotonic()
        st = self.station
        try:
            st.start()
            st.core.start()
            wait_idle(st)
            self.watcher.start()
            if self.with_ui:
                self.xvfb = xvfb(st.workdir / "xvfb.log").start()
                self.ui = UiProcess(["-m", "ui", "--socket", str(st.core.socket), "--phone",
                                     "8 800 000-00-00"], self.xvfb.display, st.workdir / "kivy")
                self.ui.wait_for(lambda s: s["screen"] == "idle", 30)
            with st.client(timeout=10) as client:
                self.report.scenarios.append(self.disk_full(client))
                self.report.scenarios.append(self.stack_readonly(client))
                self.report.scenarios.append(self.idle_readonly(client))
            drain_to_desk(st, 60)
            if st.core.stop() != 0:
                self.problem("the core did not stop cleanly")
            self.report.recon = reconcile(st, st.desk.store.payments(TERMINAL))
        finally:
            self.watcher.stop()
            if self.ui is not None:
                self.ui.stop()
            if self.xvfb is not None:
                self.xvfb.stop()
            self.report.took_s = time.monotonic() - t0
            st.close()
        return self.report


def _since(sim: Any, mark: int, text: str) -> bool:
    try:
        sim.wait_for(text, timeout_s=0.0, since=mark)
        return True
    except TimeoutError:
        return False


def run_disk(workdir: Path, with_ui: bool = True) -> DiskReport:
    return DiskRun(workdir, with_ui=with_ui).run()
