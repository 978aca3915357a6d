"""One story, two protocols, one ledger outcome.

Every test tells the same customer story to a whole terminal (tests/acceptors/rig.py: the
real PaymentEngine and Ledger, the real driver built by its production factory, the
protocol's simulator on a real pseudo-terminal) once with a CashCode CCNET unit and once
with a JCM ID-003 unit, and asserts one expected ledger outcome — the same literal for
both: payments (kind, amount, status, note), stacked bills (amount, recovered, payment),
cassette counters and incident events, plus the M2/M6/M7 consistency check against the
unit's own cassette counter.

The protocol words differ (CCNET credits at 0x81 Bill Stacked, ID-003 at 0x15 VEND VALID;
power-up with a bill is 0x11/0x12 vs 0x41/0x42); the money must not.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drivers.acceptor import AcceptorStatus, Bill, EscrowDecision
from tests.acceptor_terminal import started_rigs
from tests.acceptors.rig import KITS, RUB, Rig, wait_until

pytestmark = pytest.mark.timeout(60)

PROTOCOLS = ["ccnet", "id003"]


@pytest.fixture(params=PROTOCOLS)
def make_rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    yield from started_rigs(lambda **kwargs: Rig(tmp_path, KITS[request.param], **kwargs))


@pytest.fixture
def rig(make_rig: Callable[..., Rig]) -> Rig:
    return make_rig()


# -- several bills → one payment with the right sum ----------------------------------------


def test_several_bills_make_one_payment_with_the_right_sum(rig: Rig) -> None:
    assert not rig.model(rig.kit.enabled_values)  # M4: idle, unit disabled
    rig.to_cash()
    assert rig.model(rig.kit.enabled_values) == {10, 50, 100, 200, 500, 1000, 2000, 5000}
    for rubles in (500, 100, 50, 10):
        rig.insert_credited(rubles)
    assert rig.inserted() == 660 * RUB
    pid = rig.pay()
    rig.wait_disabled()  # M4: no session collects any more
    assert rig.outcome() == {
        "payments": [("payment", 66_000, "queued", None)],
        "bills": [(50_000, False, 0), (10_000, False, 0), (5_000, False, 0), (1_000, False, 0)],
        "cassette": {1_000: 1, 5_000: 1, 10_000: 1, 50_000: 1},
        "events": [],
    }
    assert rig.payments()[0][0] == pid
    rig.assert_money_consistent()
    assert pid in rig.printer.texts()[-1]


def test_two_bills_of_the_same_value_are_two_credits(rig: Rig) -> None:
    """Each physical stacking gets its own event key (M2): the second 500 is not taken
    for a repeat of the first."""
    rig.to_cash()
    rig.insert_credited(500)
    rig.insert_credited(500)
    rig.wait_polls()
    rig.pay()
    assert rig.outcome() == {
        "payments": [("payment", 100_000, "queued", None)],
        "bills": [(50_000, False, 0), (50_000, False, 0)],
        "cassette": {50_000: 2},
        "events": [],
    }
    rig.assert_money_consistent()


# -- reject → nothing credited -------------------------------------------------------------


def test_rejected_bill_credits_nothing(rig: Rig) -> None:
    rig.to_cash()
    mark = rig.sim.mark()
    assert rig.sim.command("reject magnetic") == "ok"
    rig.sim.wait_for("rejected 0x", since=mark)
    wait_until(lambda: rig.notice() == "bill_rejected", what="rejected notice")
    rig.wait_polls()
    assert rig.inserted() == 0
    assert rig.rows("SELECT count(*) FROM escrows") == [(0,)]  # never even in escrow
    assert rig.outcome() == {"payments": [], "bills": [], "cassette": {}, "events": []}
    rig.insert_credited(100)  # the next bill is taken as usual
    rig.pay()
    assert rig.outcome() == {
        "payments": [("payment", 10_000, "queued", None)],
        "bills": [(10_000, False, 0)],
        "cassette": {10_000: 1},
        "events": [],
    }
    rig.assert_money_consistent()


# -- jam mid-session → out of service, the cash inside becomes a payment -------------------


def test_jam_mid_session_finishes_the_cash_inside_and_stops_service(rig: Rig) -> None:
    rig.to_cash()
    rig.insert_credited(100)
    rig.insert_credited(50)
    assert rig.sim.command("jam") == "ok"
    rig.wait_status(AcceptorStatus.JAMMED)
    wait_until(lambda: rig.screen() == "receipt", what="receipt screen")
    rig.drain_printer()
    assert rig.sim.command("insert 500").startswith("refused")  # the unit takes nothing
    rig.intent("done")
    snap = rig.engine.snapshot()
    assert snap["screen"] == "out_of_service"
    assert snap["out_of_service"]["reasons"] == ["acceptor"]
    (payment,) = rig.outcome()["payments"]
    kind, amount, status, note = payment
    assert (kind, amount, status) == ("payment", 15_000, "queued")
    assert note.startswith("out of service: bill acceptor: jammed")
    assert rig.outcome()["bills"] == [(10_000, False, 0), (5_000, False, 0)]
    assert rig.outcome()["events"] == ["acceptor_fault"]

    assert rig.sim.command("clear") == "ok"  # the technician fixes it
    wait_until(lambda: rig.screen() == "idle", what="back in service")
    rig.wait_disabled()
    assert rig.event_kinds() == ["acceptor_fault", "acceptor_recovered"]
    assert rig.outcome()["cassette"] == {5_000: 1, 10_000: 1}
    rig.assert_money_consistent()


# -- power cycle with a bill inside --------------------------------------------------------


def test_power_cycle_with_bill_in_acceptor_credits_nothing(rig: Rig) -> None:
    """Power goes right after the engine decided STACK and recorded its escrow marker,
    before STACK reaches the unit: the bill is still in the acceptor head (CCNET 0x11,
    ID-003 0x41); the driver's RESET gives it back."""
    rig.to_cash()
    rig.insert_credited(100)
    decide = rig.engine.on_escrow

    def decide_then_power_cut(bill: Bill) -> EscrowDecision:
        decision = decide(bill)
        del rig.engine.on_escrow  # once
        rig.sim.command("power_cycle validator")  # "validator" = "acceptor" on ID-003
        return decision

    rig.engine.on_escrow = decide_then_power_cut  # type: ignore[method-assign]
    mark = rig.insert(500)
    rig.sim.wait_for("returned 500 RUB (reset)", since=mark)
    rig.wait_status(AcceptorStatus.IDLE, "the unit enabled again")
    rig.wait_polls()
    assert rig.inserted() == 100 * RUB
    assert rig.screen() == "cash" and not rig.engine.oos_reasons
    rig.pay()
    assert rig.outcome() == {
        "payments": [("payment", 10_000, "queued", None)],
        "bills": [(10_000, False, 0)],
        "cassette": {10_000: 1},
        "events": [],  # a power-up is not a fault
    }
    rig.assert_money_consistent()


def test_after_power_cycle_with_bill_in_acceptor_the_next_bill_is_taken(rig: Rig) -> None:
    """The returned bill's escrow must not block the session: the customer tries again."""
    rig.to_cash()
    decide = rig.engine.on_escrow

    def decide_then_power_cut(bill: Bill) -> EscrowDecision:
        decision = decide(bill)
        del rig.engine.on_escrow
        rig.sim.command("power_cycle validator")
        return decision

    rig.engine.on_escrow = decide_then_power_cut  # type: ignore[method-assign]
    mark = rig.insert(500)
    rig.sim.wait_for("returned 500 RUB (reset)", since=mark)
    rig.wait_taking_bills(500)
    mark = rig.insert(500)
    wait_until(lambda: any(e.startswith(("returned 500", rig.kit.acked))
                           for e in rig.events_since(mark)), what="the bill's fate")
    wait_until(lambda: rig.inserted() == 500 * RUB, timeout_s=2, what="the second bill credited")
    rig.pay()
    assert rig.outcome()["payments"] == [("payment", 50_000, "queued", None)]
    assert rig.outcome()["bills"] == [(50_000, False, 0)]
    rig.assert_money_consistent()


def test_power_cycle_with_bill_in_stacker_is_credited_once(make_rig: Callable[..., Rig]) -> None:
    """Power goes while the bill is in the stacker, past the point of no return (CCNET
    0x12 → 0x81 after RESET; ID-003 0x42 → VEND VALID replayed by power recovery). The
    session still collects, so the bill joins it, flagged recovered for audit."""
    rig = make_rig(slow_stack=True)
    rig.to_cash()
    rig.insert_credited(100)
    outcome: list[str] = []

    def cut() -> None:
        outcome.append(rig.model(
            lambda m: rig.kit.power_cut_in_stacker(m) if rig.kit.stacking(m)
            else "missed: not stacking"))

    # The hook runs inside STACK's handling; a thread waiting for the simulator's lock
    # acts right after, with the bill in the stacker.
    rig.hooks.on("stacking 500", lambda _line: threading.Thread(target=cut).start())
    mark = rig.insert(500)
    wait_until(lambda: rig.inserted() == 600 * RUB, what="the recovered credit")
    assert outcome == ["ok"]
    rig.sim.wait_for(rig.kit.acked, since=mark)
    rig.wait_polls()
    assert rig.inserted() == 600 * RUB
    rig.pay()
    assert rig.outcome() == {
        "payments": [("payment", 60_000, "queued", None)],
        "bills": [(10_000, False, 0), (50_000, True, 0)],
        "cassette": {10_000: 1, 50_000: 1},
        "events": [],
    }
    assert rig.rows("SELECT state FROM escrows ORDER BY id") == [("stacked",), ("stacked",)]
    rig.assert_money_consistent()


# -- the line: a damaged or repeated credit report → credited once ------------------------


@pytest.mark.parametrize(("fault", "seen"), [("corrupt_crc", "reply CRC corrupted"),
                                             ("drop_reply", "reply dropped")])
def test_damaged_credit_report_is_credited_once(rig: Rig, fault: str, seen: str) -> None:
    rig.to_cash()
    rig.sim.when(f"{rig.kit.credit_report} 500", fault)  # the very reply carrying the credit
    mark = rig.sim.mark()
    rig.insert_credited(500)
    events = rig.events_since(mark)
    reported = next(i for i, e in enumerate(events) if e.startswith(rig.kit.credit_report))
    acked = next(i for i, e in enumerate(events) if e.startswith(rig.kit.acked))
    assert reported < events.index(seen) < acked
    rig.wait_polls()
    rig.pay()
    assert rig.outcome() == {
        "payments": [("payment", 50_000, "queued", None)],
        "bills": [(50_000, False, 0)],
        "cassette": {50_000: 1},
        "events": [],
    }
    rig.assert_money_consistent()



def test_lost_ack_repeated_report_is_credited_once(rig: Rig) -> None:
    rig.to_cash()
    assert rig.sim.command("repeat_stacked 2") == "ok"  # the unit misses two ACKs
    mark = rig.sim.mark()
    rig.insert_credited(500)
    assert sum("ack ignored" in e for e in rig.events_since(mark)) == 2
    rig.wait_polls()
    assert rig.inserted() == 500 * RUB
    rig.pay()
    assert rig.outcome() == {
        "payments": [("payment", 50_000, "queued", None)],
        "bills": [(50_000, False, 0)],
        "cassette": {50_000: 1},
        "events": [],  # the same event key: a silent duplicate, no incident
    }
    rig.assert_money_consistent()


# -- the line misbehaves and comes back ----------------------------------------------------
# (told once here for both protocols; the driver suites no longer keep a copy each)

ONE_500 = {
    "payments": [("payment", 50_000, "queued", None)],
    "bills": [(50_000, False, 0)],
    "cassette": {50_000: 1},
    "events": [],
}
ONE_500_AFTER_OUTAGE = {**ONE_500, "events": ["acceptor_fault", "acceptor_recovered"]}
"""The outage is on record for the technician (offline, then back)."""


def pay_500(rig: Rig) -> None:
    """The customer pays 500 with one bill; the payment is queued."""
    rig.to_cash()
    rig.insert_credited(500)
    rig.pay()


def test_garbage_around_a_bill_is_survived_and_credited_once(rig: Rig) -> None:
    rig.to_cash()
    rig.sim.when("escrow 500 RUB", "garbage 12")
    rig.sim.when(f"{rig.kit.credit_report} 500 RUB", "garbage 30")  # before the credit
    mark = rig.sim.mark()
    rig.insert_credited(500)
    assert sum("garbage before reply" in e for e in rig.events_since(mark)) == 2
    rig.wait_polls()
    rig.pay()
    assert rig.outcome() == ONE_500
    rig.assert_money_consistent()


def test_stale_stack_and_return_requests_are_ignored(rig: Rig) -> None:
    """STACK or RETURN asked for while no bill is held is dropped, not kept for the next
    bill (M1: the next bill is still the engine's question)."""
    rig.to_cash()
    rig.acceptor.stack()
    rig.acceptor.return_bill()
    rig.insert_credited(500)
    rig.wait_polls()
    rig.pay()
    assert rig.outcome() == ONE_500
    rig.assert_money_consistent()


def test_replies_lost_at_idle_resume_without_reset_and_money_is_taken(rig: Rig) -> None:
    """Every attempt of a poll unanswered: OFFLINE (out of service), then the link comes
    back to the same unit state, which is resumed without a RESET (M4: still disabled)."""
    rig.wait_in_service()
    resets = rig.model(lambda m: m.counters.resets)
    assert rig.sim.command("drop_reply 3") == "ok"
    rig.wait_status(AcceptorStatus.OFFLINE)
    wait_until(lambda: rig.engine.acceptor_status is not AcceptorStatus.OFFLINE
               and rig.screen() == "idle", what="the link back and the terminal in service")
    rig.wait_in_service()
    assert rig.model(lambda m: m.counters.resets) == resets
    pay_500(rig)
    assert rig.outcome() == ONE_500_AFTER_OUTAGE
    rig.assert_money_consistent()


def test_unplugged_at_idle_is_out_of_service_until_plugged_back(rig: Rig) -> None:
    rig.wait_in_service()
    assert rig.sim.command("unplug") == "ok"
    rig.wait_status(AcceptorStatus.OFFLINE)
    wait_until(lambda: rig.screen() == "out_of_service", what="out of service")
    assert rig.sim.command("replug") == "ok"
    rig.wait_in_service()
    pay_500(rig)
    assert rig.outcome() == ONE_500_AFTER_OUTAGE
    rig.assert_money_consistent()
