"""The printer policy end to end: the real PaymentEngine and a real Ledger, the real
EscposPrinter on a pty, the PrinterSimulator behind it (only the bill acceptor is a
double). Every simulator fault goes through the driver's status decoding into the
engine's `[printer] unavailable_policy`:

- "warn": the confirm screen demands `accept_no_receipt` (IntentError "printer_warning")
  and the acceptor stays disabled until the customer accepts;
- "out_of_service": out of service while the fault lasts (reason "printer", the support
  phone in the customer text), acceptor disabled, back in service after `clear`;
- paper near end: an event, and the terminal keeps working under either policy;
- receipts: the simulator's decoded paper carries the payment id and the support phone;
  a fault in the middle of a receipt leaves the payment in the ledger (money never
  depends on paper).

The engine polls the printer from `tick()` every PRINTER_POLL_S on the idle and
out-of-service screens, on its printer thread; the tests advance the ManualClock past it
and drain that thread.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from drivers.acceptor import EscrowDecision
from drivers.escpos.encoder import paper_document
from drivers.escpos.printer import EscposPrinter
from drivers.layout import render_plain
from drivers.printer import PrinterStatus
from drivers.profiles import Profile
from drivers.sim.printer import Fault, PrinterSimulator, SimConfig
from kiosk.config import Config
from kiosk.engine import PRINTER_POLL_S, IntentError, PaymentEngine
from kiosk.ledger import Ledger
from tests.conftest import ManualClock, config_in
from tests.core.doubles import DoubleAcceptor
from tests.core.harness import MTS_ACCOUNT, ledger_rows

FULL = "custom_vkp80iii"  # Custom full status (DLE EOT 20), waits until printed
REALTIME = "epson_tmt88"  # DLE EOT 1-4 only
PROFILES = [FULL, REALTIME]
WAIT_S = 10.0

# The faults under which nothing can be printed, and what the engine calls them.
CANNOT_PRINT = [
    (Fault.PAPER_OUT, PrinterStatus.PAPER_OUT),
    (Fault.COVER_OPEN, PrinterStatus.COVER_OPEN),
    (Fault.CUTTER_ERROR, PrinterStatus.CUTTER_ERROR),
    (Fault.OFFLINE, PrinterStatus.OFFLINE),
]
FAULT_IDS = [fault.value for fault, _ in CANNOT_PRINT]


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT_S) -> bool:
    """A condition wait on state that has no condition variable of its own."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.002)
    return True


@dataclass
class Rig:
    engine: PaymentEngine
    ledger: Ledger
    acceptor: DoubleAcceptor
    printer: EscposPrinter
    sim: PrinterSimulator
    clock: ManualClock
    config: Config

    @property
    def phone(self) -> str:
        return self.config.terminal.support_phone

    def drain(self) -> None:
        """Wait until every job queued on the engine's printer thread has run."""
        self.engine.printer_worker.drain(WAIT_S)

    def poll(self) -> None:
        """The engine's own idle polling: the clock past PRINTER_POLL_S, a tick, drained."""
        self.clock.advance(PRINTER_POLL_S + 0.1)
        self.engine.tick()
        self.drain()

    def intent(self, name: str, **args: Any) -> Any:
        return self.engine.intent(name, args)

    def snapshot(self) -> dict[str, Any]:
        return self.engine.snapshot()

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.ledger.recent_events() if e["kind"] == kind]

    def to_confirm(self) -> None:
        self.intent("select_provider", provider_id="mts")  # also asks the printer afresh
        self.drain()
        self.intent("submit_account", account=MTS_ACCOUNT)
        assert self.engine.screen.value == "confirm"

    def to_cash(self) -> None:
        self.to_confirm()
        self.intent("confirm_account")
        assert self.engine.screen.value == "cash"

    def pay(self, *rubles: int) -> str:
        self.to_cash()
        for amount in rubles:
            assert self.acceptor.insert(amount) is EscrowDecision.STACK
        self.intent("pay")
        self.drain()
        assert self.engine.last_payment is not None
        return self.engine.last_payment["payment_id"]


@pytest.fixture
def make_rig(tmp_path: Path, printer_profiles: dict[str, Profile]) -> Iterator[Callable[..., Rig]]:
    """make_rig(policy, profile) -> a started engine on a real printer + simulator."""
    made: list[Rig] = []

    def make(policy: str = "warn", profile: str = FULL) -> Rig:
        base = config_in(tmp_path / f"t{len(made)}")
        config = dataclasses.replace(
            base, printer=dataclasses.replace(base.printer, unavailable_policy=policy)
        )
        clock = ManualClock()
        ledger = Ledger(
            config.paths.ledger, config.terminal.id, clock=lambda: clock() + 1.7e9, run_id="run1"
        )
        ledger.open()
        sim = PrinterSimulator(SimConfig.from_profile(printer_profiles[profile])).start()
        printer = EscposPrinter(printer_profiles[profile], sim.path)
        acceptor = DoubleAcceptor()
        engine = PaymentEngine(config, ledger, acceptor, printer, clock=clock)
        rig = Rig(engine, ledger, acceptor, printer, sim, clock, config)
        made.append(rig)
        engine.start()
        rig.drain()
        assert engine.screen.value == "idle"
        assert engine.printer_status is PrinterStatus.OK
        return rig

    yield make
    for rig in made:
        rig.sim.set_slow(0)
        rig.engine.stop()
        rig.sim.stop()
        rig.ledger.close()


# --- policy "warn" ---------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(("fault", "status"), CANNOT_PRINT, ids=FAULT_IDS)
def test_warn_policy_demands_accept_no_receipt_before_cash(make_rig, profile, fault, status):
    rig = make_rig("warn", profile)
    rig.sim.set_fault(fault)
    rig.poll()

    snap = rig.snapshot()
    assert snap["printer"] == {"status": status.value, "can_print": False}
    assert snap["printer_warning"] is True
    assert snap["screen"] == "idle"  # "warn" keeps the terminal in service
    assert snap["out_of_service"] is None
    assert [e["data"] for e in rig.events("printer_unavailable")] == [{"status": status.value}]

    rig.to_confirm()
    with pytest.raises(IntentError) as refused:
        rig.intent("confirm_account")
    assert refused.value.code == "printer_warning"
    # No cash before the customer accepted: still on confirm, the acceptor never enabled,
    # a bill pushed in anyway goes back, no ledger session was opened.
    assert rig.engine.screen.value == "confirm"
    assert rig.acceptor.enabled == frozenset()
    assert "enable" not in rig.acceptor.commands
    assert rig.acceptor.insert(100) is EscrowDecision.RETURN
    assert ledger_rows(rig.ledger, "SELECT count(*) FROM sessions") == [(0,)]

    rig.intent("accept_no_receipt")
    assert rig.snapshot()["printer_warning"] is False
    rig.intent("confirm_account")
    assert rig.engine.screen.value == "cash"
    assert rig.acceptor.enabled  # only now

    # The payment goes through without paper.
    assert rig.acceptor.insert(100) is EscrowDecision.STACK
    rig.intent("pay")
    rig.drain()
    payment_id = rig.engine.last_payment["payment_id"]
    assert rig.snapshot()["last_payment"]["receipt"] == "failed"
    assert rig.ledger.get_payment(payment_id)["inserted_minor"] == 10_000
    assert [e["data"] for e in rig.events("receipt_not_printed")] == [{"payment_id": payment_id}]
    assert rig.sim.receipts == []

    # Fixed: the next idle poll clears the warning.
    rig.intent("done")
    rig.sim.clear()
    rig.poll()
    snap = rig.snapshot()
    assert snap["printer"] == {"status": "ok", "can_print": True}
    assert snap["printer_warning"] is False


# --- policy "out_of_service" -------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(("fault", "status"), CANNOT_PRINT, ids=FAULT_IDS)
def test_out_of_service_policy_while_the_fault_lasts(make_rig, profile, fault, status):
    rig = make_rig("out_of_service", profile)
    rig.sim.set_fault(fault)
    rig.poll()

    for _ in range(2):  # and it stays so on the next polls while the fault lasts
        snap = rig.snapshot()
        assert snap["screen"] == "out_of_service"
        oos = snap["out_of_service"]
        assert oos["reasons"] == ["printer"]
        assert oos["code"] == "oos_printer"
        assert rig.phone in oos["ru"] and rig.phone in oos["en"]
        assert snap["printer"]["status"] == status.value
        assert rig.engine.oos_reasons["printer"] == f"printer: {status.value}"
        assert rig.acceptor.enabled == frozenset()
        with pytest.raises(IntentError) as refused:
            rig.intent("select_provider", provider_id="mts")
        assert refused.value.code == "wrong_screen"
        assert rig.acceptor.insert(100) is EscrowDecision.RETURN
        rig.poll()
    assert len(rig.events("printer_unavailable")) == 1  # one event per change, not per poll

    rig.sim.clear()
    rig.poll()
    snap = rig.snapshot()
    assert snap["screen"] == "idle"
    assert snap["out_of_service"] is None
    assert snap["printer"] == {"status": "ok", "can_print": True}
    rig.to_cash()  # back in service: a customer can pay again
    assert rig.acceptor.enabled


def test_out_of_service_caught_when_a_session_starts(make_rig):
    """A printer that failed since the last idle poll: the poll at select_provider takes
    the terminal out of service before any cash screen."""
    rig = make_rig("out_of_service", FULL)
    rig.sim.set_fault(Fault.COVER_OPEN)
    rig.intent("select_provider", provider_id="mts")
    rig.drain()
    snap = rig.snapshot()
    assert snap["screen"] == "out_of_service"
    assert snap["session"] is None
    assert rig.acceptor.enabled == frozenset()


def test_out_of_service_with_cash_inside_finishes_the_payment(make_rig):
    """A printer failing while a customer has cash in: the cash becomes a payment (never
    dropped), the acceptor is disabled, and the terminal is out of service after it."""
    rig = make_rig("out_of_service", FULL)
    rig.to_cash()
    assert rig.acceptor.insert(500) is EscrowDecision.STACK
    rig.sim.set_fault(Fault.PAPER_OUT)
    rig.engine.check_printer_now()  # on the cash screen the idle poll does not run
    rig.drain()
    assert rig.acceptor.enabled == frozenset()
    assert rig.engine.screen.value == "receipt"
    payment_id = rig.engine.last_payment["payment_id"]
    assert rig.engine.last_payment["receipt"] == "failed"
    assert rig.ledger.get_payment(payment_id)["inserted_minor"] == 50_000
    rig.intent("done")
    assert rig.snapshot()["out_of_service"]["code"] == "oos_printer"


def test_out_of_service_on_an_empty_cash_screen_closes_the_ledger_session(make_rig):
    rig = make_rig("out_of_service", FULL)
    rig.to_cash()
    rig.sim.set_fault(Fault.PAPER_OUT)
    rig.engine.check_printer_now()
    assert rig.engine.screen.value == "out_of_service"
    assert rig.engine.session is None
    assert ledger_rows(rig.ledger, "SELECT state FROM sessions") == [("abandoned",)]


# --- paper near end ------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["warn", "out_of_service"])
def test_paper_near_end_is_an_event_and_the_terminal_keeps_working(make_rig, policy):
    rig = make_rig(policy, FULL)
    rig.sim.set_fault(Fault.PAPER_NEAR_END)
    rig.poll()
    snap = rig.snapshot()
    assert snap["printer"] == {"status": "paper_near_end", "can_print": True}
    assert snap["printer_warning"] is False
    assert snap["screen"] == "idle"
    assert snap["out_of_service"] is None
    assert len(rig.events("printer_paper_near_end")) == 1
    assert rig.events("printer_unavailable") == []

    payment_id = rig.pay(100)  # no accept_no_receipt needed
    assert rig.snapshot()["last_payment"]["receipt"] == "printed"
    assert rig.sim.wait_for_receipts(1, timeout=WAIT_S)
    assert payment_id in rig.sim.receipts[0]
    rig.intent("done")
    rig.poll()
    assert len(rig.events("printer_paper_near_end")) == 1  # once per change


# --- receipts through the real driver ------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_payment_receipt_decoded_by_the_simulator(make_rig, profile):
    rig = make_rig("warn", profile)
    payment_id = rig.pay(100, 500)
    assert rig.snapshot()["last_payment"]["receipt"] == "printed"
    assert rig.sim.wait_for_receipts(1, timeout=WAIT_S)
    paper = rig.sim.receipts[0]
    assert payment_id in paper
    assert rig.phone in paper
    assert "600.00 руб." in paper
    # Exactly what the engine's document says, as this model prints it.
    document = rig.engine.payment_document(payment_id, copy=False)
    expected = render_plain(paper_document(document, rig.printer.settings), rig.printer.columns)
    assert paper == "\n".join(line.rstrip() for line in expected) + "\n"
    assert rig.ledger.get_payment(payment_id)["receipt_printed_ms"] is not None
    assert rig.events("receipt_not_printed") == []


def test_fault_in_the_middle_of_a_receipt_keeps_the_payment(make_rig):
    """Paper runs out while the receipt prints (full-status profile: the driver watches
    until the printer stops): receipt failed, an event, the payment safe in the ledger."""
    rig = make_rig("warn", FULL)
    rig.to_cash()
    assert rig.acceptor.insert(500) is EscrowDecision.STACK
    rig.sim.set_slow(5.0)  # ~1.5 KB: several seconds of printing, the fault lands early
    rig.intent("pay")
    assert wait_until(lambda: rig.sim.printing), "the receipt never reached the printer"
    rig.sim.set_fault(Fault.PAPER_OUT)
    rig.drain()

    assert rig.sim.receipts == []  # the receipt was never finished (no cut)
    payment_id = rig.engine.last_payment["payment_id"]
    snap = rig.snapshot()
    assert snap["last_payment"]["receipt"] == "failed"
    assert snap["notice"]["code"] == "receipt_failed"
    assert payment_id in snap["notice"]["ru"] and rig.phone in snap["notice"]["ru"]
    assert [e["data"] for e in rig.events("receipt_not_printed")] == [{"payment_id": payment_id}]
    payment = rig.ledger.get_payment(payment_id)
    assert payment["inserted_minor"] == 50_000
    assert payment["receipt_printed_ms"] is None
    assert [p["id"] for p in rig.ledger.list_payments()] == [payment_id]
