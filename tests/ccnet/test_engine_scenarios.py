"""Issue 3 acceptance: money stories with the real engine, ledger and CCNET driver.

Every test drives a whole terminal (tests/ccnet/terminal.py): the real PaymentEngine and
Ledger (a SQLite file), the real CcnetAcceptor talking real CCNET bytes over a
pseudo-terminal to the CcnetSimulator, and a DoublePrinter. A customer walks through
the intents (provider, account, confirm → cash screen, unit enabled) and inserts bills
through the simulator. Each story checks three things: what the ledger holds (credited
once / returned / unclaimed record, cassette = the unit's own counter), which events the
ledger recorded, and what the screen shows.

The engine defects these scenarios found (stale escrow after a 0x11 reset, the
over-maximum notice, start-up settling, a clean stop reported as a fault) are fixed and
covered here.
"""

from __future__ import annotations

import threading

import pytest

from drivers.acceptor import AcceptorStatus
from drivers.ccnet.states import PollState
from drivers.sim.ccnet_model import PowerCycle
from kiosk.engine import IntentError
from tests.acceptor_terminal import started_rigs
from tests.ccnet.terminal import (
    SLOW_STACK,
    WAIT_S,
    Core,
    Rig,
    WideMaskAcceptor,
    wait_until,
)

pytestmark = pytest.mark.timeout(30)

RESTART_NOTE = "finished after a terminal restart"


@pytest.fixture
def make_rig(tmp_path, fast_profile):
    yield from started_rigs(lambda **kwargs: Rig(tmp_path, fast_profile, **kwargs))


@pytest.fixture
def rig(make_rig) -> Rig:
    return make_rig()


def sim_events_since(rig: Rig, mark: int) -> list[str]:
    """The simulator's event lines after `mark` (read in one go under its lock)."""
    count, events = rig.model(lambda _m: (rig.sim.mark(), rig.sim.events))
    return events[max(0, mark - (count - len(events))):]


def wait_polls(rig: Rig, count: int = 5) -> None:
    """Let the driver poll `count` more times (a condition, not a sleep)."""
    start = rig.sim.counters.polls
    wait_until(lambda: rig.sim.counters.polls >= start + count, what=f"{count} more polls")


def power_cut_while_stacking(rig: Rig, rubles: int) -> list[str]:
    """Arrange a power cut while the bill is in the stacker (past the point of no return,
    CCNET 0x12 at power-up). Needs a stacker slow enough to act in (SLOW_STACK)."""
    outcome: list[str] = []

    def cut() -> None:
        outcome.append(rig.sim.with_model(
            lambda m: m.power_cycle(PowerCycle.STACKER)
            if m.base == PollState.STACKING else f"missed: unit in {m.base!r}"))

    # The hook runs inside the STACK command, before the unit enters Stacking: a thread
    # that waits for the simulator's lock acts right after it has.
    rig.hooks.on(f"stacking {rubles}", lambda _line: threading.Thread(target=cut).start())
    return outcome


# -- the normal payment ------------------------------------------------------------------


def test_several_bills_make_one_payment_and_the_cassette_matches(rig):
    assert rig.model(lambda m: m.enabled) == frozenset()  # M4: idle, unit disabled
    rig.to_cash()
    assert rig.model(lambda m: {m.value_of(t) for t in m.enabled}) == {
        10, 50, 100, 200, 500, 1000, 2000, 5000}
    for rubles in (500, 100, 50, 10):
        rig.insert_credited(rubles)
    assert rig.inserted() == 66_000
    pid = rig.pay()
    rig.wait_disabled()  # M4: no session collects any more

    assert rig.payments() == [(pid, "payment", 66_000, "queued", None)]
    bills = rig.stacked_bills()
    assert sorted(b[0] for b in bills) == [1_000, 5_000, 10_000, 50_000]
    assert {b[2] for b in bills} == {pid}
    assert not any(b[3] for b in bills)  # nothing "recovered"
    assert rig.rows("SELECT state, count(*) FROM escrows GROUP BY state") == [("stacked", 4)]
    assert rig.cassette() == rig.sim_cassette() == {
        1_000: 1, 5_000: 1, 10_000: 1, 50_000: 1}
    rig.assert_money_consistent()
    assert rig.event_kinds() == []  # nothing to tell the desk but the payment itself
    rig.drain_printer()
    assert pid in rig.core.printer.texts()[-1]
    rig.intent("done")
    assert rig.screen() == "idle"


# -- escrow decisions (M3) ---------------------------------------------------------------


def fill_to_12_000(rig: Rig) -> None:
    rig.to_cash()  # MTS: maximum 15 000
    for rubles in (5000, 5000, 2000):
        rig.insert_credited(rubles)
    assert rig.inserted() == 1_200_000


def test_bill_over_the_maximum_is_not_enabled_and_is_rejected(rig):
    fill_to_12_000(rig)
    # 3 000 of room: the engine narrows the unit's mask, 5 000 is no longer enabled
    wait_until(lambda: rig.model(lambda m: m.base == PollState.IDLING and {
        m.value_of(t) for t in m.enabled} == {10, 50, 100, 200, 500, 1000, 2000}),
        what="the mask without 5 000")
    mark = rig.insert(5000)
    rig.sim.wait_for("rejected 0x68 inhibit", since=mark)
    wait_until(lambda: rig.notice() == "bill_rejected", what="rejected notice")
    wait_polls(rig)
    assert rig.inserted() == 1_200_000
    assert rig.rows("SELECT count(*) FROM escrows") == [(3,)]  # never in escrow
    assert rig.sim.counters.stacked == 3 and rig.sim.counters.rejected == 1
    assert rig.screen() == "cash"
    pid = rig.pay()
    assert rig.payments() == [(pid, "payment", 1_200_000, "queued", None)]
    rig.assert_money_consistent()


def insert_5000_over_the_maximum(rig: Rig) -> int:
    fill_to_12_000(rig)
    rig.wait_taking_bills(5000)  # this unit still takes 5 000 bills
    mark = rig.insert(5000)
    rig.sim.wait_for("returned 5000 RUB", since=mark)
    rig.sim.wait_for("host acked 0x82", since=mark)
    return mark


def test_bill_over_the_maximum_in_escrow_is_returned(make_rig):
    rig = make_rig(acceptor_cls=WideMaskAcceptor)
    mark = insert_5000_over_the_maximum(rig)
    assert "returning 5000 RUB" in sim_events_since(rig, mark)
    wait_until(lambda: rig.notice() is not None, what="a notice for the customer")
    assert rig.inserted() == 1_200_000
    # decided before anything was written: no escrow marker for the returned bill
    assert rig.rows("SELECT amount_minor, state FROM escrows ORDER BY id") == [
        (500_000, "stacked"), (500_000, "stacked"), (200_000, "stacked")]
    assert rig.sim.counters.returned == 1 and rig.sim.counters.stacked == 3
    assert rig.screen() == "cash"
    pid = rig.pay()
    assert rig.payments() == [(pid, "payment", 1_200_000, "queued", None)]
    assert rig.event_kinds() == []
    rig.assert_money_consistent()


def test_customer_is_told_the_returned_bill_was_over_the_maximum(make_rig):
    rig = make_rig(acceptor_cls=WideMaskAcceptor)
    seen = len(rig.core.snapshots)
    insert_5000_over_the_maximum(rig)
    wait_until(lambda: rig.notice() is not None, what="a notice for the customer")
    published = [s["notice"]["code"] for s in rig.core.snapshots[seen:] if s["notice"]]
    assert "bill_over_max" in published
    assert rig.notice() == "bill_over_max"


def test_rejected_bill_credits_nothing(rig):
    rig.to_cash()
    mark = rig.sim.mark()
    assert rig.sim.command("reject magnetic") == "ok"
    rig.sim.wait_for("rejected 0x61", since=mark)
    wait_until(lambda: rig.notice() == "bill_rejected", what="rejected notice")
    assert rig.inserted() == 0
    assert rig.rows("SELECT count(*) FROM escrows") == [(0,)]
    assert rig.stacked_bills() == []
    assert rig.sim.counters.rejected == 1
    assert rig.screen() == "cash"
    rig.insert_credited(100)  # the next bill is taken as usual
    assert rig.event_kinds() == []


# -- device faults -----------------------------------------------------------------------

FAULTS = [
    ("jam", AcceptorStatus.JAMMED, "validator jammed", "clear"),
    ("cassette_full", AcceptorStatus.CASSETTE_FULL, "drop cassette full", "clear"),
    ("cassette_out", AcceptorStatus.CASSETTE_OUT, "drop cassette out", "cassette_in"),
    ("cheated", AcceptorStatus.CHEATED, "cheated", "clear"),
    ("failure stack_motor", AcceptorStatus.FAILURE, "stack motor failure", "clear"),
]


@pytest.mark.parametrize(("fault", "status", "detail", "cure"), FAULTS,
                         ids=[f[0].split()[0] for f in FAULTS])
def test_fault_finishes_the_cash_inside_and_stops_service_until_cleared(
    rig, fault, status, detail, cure
):
    rig.to_cash()
    rig.insert_credited(100)
    assert rig.sim.command(fault) == "ok"
    rig.wait_status(status)
    # the cash already inside becomes a payment at once
    wait_until(lambda: rig.screen() == "receipt", what="receipt screen")
    rig.drain_printer()
    pid = rig.engine.snapshot()["last_payment"]["payment_id"]
    ((payment_id, kind, amount, state, note),) = rig.payments()
    assert (payment_id, kind, amount, state) == (pid, "payment", 10_000, "queued")
    assert note.startswith(f"out of service: bill acceptor: {status.value}") and detail in note
    (event,) = rig.events("acceptor_fault")
    assert event["data"]["status"] == status.value and detail in event["data"]["detail"]
    assert rig.engine.oos_reasons.keys() == {"acceptor"}
    assert rig.sim.command("insert 500").startswith("refused")  # the unit takes nothing
    rig.intent("done")
    snap = rig.engine.snapshot()
    assert snap["screen"] == "out_of_service"
    assert snap["out_of_service"]["reasons"] == ["acceptor"]
    assert rig.config.terminal.support_phone in snap["out_of_service"]["en"]
    with pytest.raises(IntentError, match="not possible"):
        rig.intent("select_provider", provider_id="mts")

    # the technician fixes it: back in service, the unit left disabled (M4)
    assert rig.sim.command(cure) == "ok"
    wait_until(lambda: rig.screen() == "idle", what="back in service")
    rig.wait_disabled()
    assert rig.event_kinds() == ["acceptor_fault", "acceptor_recovered"]
    rig.to_cash()
    rig.insert_credited(50)
    second = rig.pay()
    assert [p[:3] for p in rig.payments()] == [
        (pid, "payment", 10_000), (second, "payment", 5_000)]
    rig.assert_money_consistent()
    assert rig.sim.counters.stacked == 2


def test_second_bill_in_the_path_pauses_the_unit_and_reset_returns_it(rig):
    rig.to_cash()
    rig.insert_credited(100)
    rig.wait_taking_bills(500)
    mark = rig.insert(500)
    assert rig.sim.command("insert 100") == "pause"  # pushed in while the 500 is scanned
    rig.wait_status(AcceptorStatus.PAUSED)
    wait_until(lambda: rig.screen() == "receipt", what="receipt screen")
    # the driver RESETs the deadlocked unit; the 500 still in the head comes back
    rig.sim.wait_for("returned 500 RUB (reset)", since=mark)
    wait_until(lambda: rig.events("acceptor_recovered"), what="recovered event")
    (fault,) = rig.events("acceptor_fault")
    assert fault["data"]["status"] == "paused"
    assert [p[1:3] for p in rig.payments()] == [("payment", 10_000)]
    rig.intent("done")
    wait_until(lambda: rig.screen() == "idle", what="back in service")
    rig.wait_disabled()
    assert rig.sim.counters.stacked == 1 and rig.sim.counters.resets == 2
    rig.assert_money_consistent()


def test_jam_in_the_stacker_credits_nothing_uncertain(rig):
    rig.to_cash()
    rig.insert_credited(100)
    rig.sim.when("stacking 500", "jam")  # STACK accepted, then the bill jams
    mark = rig.insert(500)
    rig.wait_status(AcceptorStatus.JAMMED)
    # STACK was decided and recorded, its outcome is unknown: the engine waits
    # escrow_settle (1 s here) for it, then closes the payment with what is certain
    assert rig.rows("SELECT amount_minor, state FROM escrows ORDER BY id DESC LIMIT 1") == [
        (50_000, "pending")]
    wait_until(lambda: rig.screen() == "receipt", timeout_s=4, what="receipt screen")
    assert [p[1:3] for p in rig.payments()] == [("payment", 10_000)]
    assert [e["data"]["status"] for e in rig.events("acceptor_fault")] == ["jammed"]
    assert rig.sim.command("clear") == "ok"  # the technician pulls the bill out
    assert "bill 500 RUB removed from the path by hand" in sim_events_since(rig, mark)
    wait_until(lambda: rig.events("acceptor_recovered"), what="recovered event")
    rig.intent("done")
    wait_until(lambda: rig.screen() == "idle", what="back in service")
    assert [b[0] for b in rig.stacked_bills()] == [10_000]
    assert rig.sim.counters.stacked == 1
    rig.assert_money_consistent()


def test_busy_unit_is_waited_for_not_a_fault(rig):
    """Busy (0x1B) is a timed wait the unit asks for (YH × 100 ms), not a fault: the driver
    reports it as initializing and polls again after that time; the session goes on."""
    rig.to_cash()
    rig.insert_credited(100)
    mark = rig.sim.mark()
    assert rig.sim.command("busy 5") == "ok"
    rig.wait_status(AcceptorStatus.INITIALIZING)
    assert rig.screen() == "cash" and not rig.engine.oos_reasons
    rig.wait_status(AcceptorStatus.IDLE, "the unit idle again after busy")
    assert "busy 5 x 100 ms" in sim_events_since(rig, mark)
    rig.insert_credited(500)
    pid = rig.pay()
    assert rig.payments() == [(pid, "payment", 60_000, "queued", None)]
    assert rig.event_kinds() == []
    rig.assert_money_consistent()


# -- the line: damaged and repeated reports (M2) -------------------------------------------


@pytest.mark.parametrize(("fault", "seen"), [
    ("corrupt_crc", "reply CRC corrupted"),
    ("drop_reply", "reply dropped"),
])
def test_damaged_reply_carrying_stacked_credits_exactly_once(rig, fault, seen):
    rig.to_cash()
    naks = rig.sim.counters.host_naks
    rig.sim.when("stacked 500", fault)  # the very reply that carries 0x81 500
    mark = rig.sim.mark()
    rig.insert_credited(500)
    events = sim_events_since(rig, mark)
    stacked = next(i for i, e in enumerate(events) if e.startswith("stacked 500"))
    damaged = events.index(seen)
    acked = next(i for i, e in enumerate(events) if e.startswith("host acked 0x81"))
    assert stacked < damaged < acked
    wait_polls(rig)  # a few more polls: nothing more may be credited
    assert rig.inserted() == 50_000
    assert [(b[0], b[3]) for b in rig.stacked_bills()] == [(50_000, 0)]
    if fault == "corrupt_crc":
        assert rig.sim.counters.host_naks == naks + 1  # the host NAKed the bad frame
    pid = rig.pay()
    assert [p[:3] for p in rig.payments()] == [(pid, "payment", 50_000)]
    rig.assert_money_consistent()


def test_lost_ack_repeated_stacked_credits_once(rig):
    rig.to_cash()
    assert rig.sim.command("repeat_stacked 2") == "ok"  # the unit misses two ACKs
    mark = rig.sim.mark()
    rig.insert_credited(500)
    events = sim_events_since(rig, mark)
    assert sum("ack ignored" in e for e in events) == 2
    wait_polls(rig)
    assert rig.inserted() == 50_000
    assert [b[0] for b in rig.stacked_bills()] == [50_000]
    pid = rig.pay()
    assert [p[:3] for p in rig.payments()] == [(pid, "payment", 50_000)]
    assert rig.event_kinds() == []  # same event key: a silent duplicate, no incident
    rig.assert_money_consistent()


# -- the ledger cannot write (M2, M10) -------------------------------------------------------


def test_ledger_failure_at_stacked_means_no_ack_then_one_credit(rig):
    rig.to_cash()
    rig.insert_credited(100)
    # the disk turns read-only after the escrow marker is written, while the bill stacks
    rig.hooks.on("stacking 500", lambda _line: rig.set_query_only(True))
    mark = rig.insert(500)
    wait_until(lambda: "ledger" in rig.engine.oos_reasons, what="ledger out of service")
    assert rig.screen() == "out_of_service"
    assert "readonly" in rig.engine.oos_reasons["ledger"]
    wait_polls(rig)
    # M2: not acknowledged, so the unit keeps the report; nothing on disk for it
    assert not any(e.startswith("host acked 0x81") for e in sim_events_since(rig, mark))
    assert rig.model(lambda m: m.event) == (PollState.STACKED, 5)
    assert [b[0] for b in rig.stacked_bills()] == [10_000]
    assert rig.sim.counters.stacked == 2  # physically it is in the cassette
    assert rig.inserted() == 10_000

    rig.set_query_only(False)  # the disk is back: the next repeat is committed, then ACKed
    rig.sim.wait_for("host acked 0x81", since=mark)
    wait_polls(rig)
    bills = rig.stacked_bills()
    assert [(b[0], b[1]) for b in bills] == [(10_000, bills[0][1]), (50_000, bills[0][1])]
    assert rig.inserted() == 60_000
    rig.assert_money_consistent()
    # The write that worked proves the disk is back (M10 lifted): the interrupted session,
    # whose cash is all on disk, becomes a payment with its receipt, without a restart.
    wait_until(lambda: rig.screen() == "receipt", what="payment finished after recovery")
    ((pid, kind, amount, state, note),) = rig.payments()
    assert (kind, amount, state) == ("payment", 60_000, "queued")
    assert note == "finished after a ledger failure"
    assert {b[2] for b in rig.stacked_bills()} == {pid}
    assert "ledger_recovered" in rig.event_kinds()
    rig.assert_money_consistent()


# -- power loss with a bill inside (M6; CCNET 0x11 / 0x12) ---------------------------------


def power_cut_after_the_stack_decision(rig: Rig) -> None:
    """Power is lost right after the engine decided STACK and recorded its escrow marker,
    before STACK reaches the unit: the bill is still in the validator (0x11)."""
    decide = rig.engine.on_escrow

    def decide_then_power_cut(bill):
        decision = decide(bill)
        del rig.engine.on_escrow  # once
        rig.sim.command("power_cycle validator")
        return decision

    rig.engine.on_escrow = decide_then_power_cut


def test_power_loss_with_bill_in_validator_credits_nothing(rig):
    rig.to_cash()
    rig.insert_credited(100)
    power_cut_after_the_stack_decision(rig)
    mark = rig.insert(500)
    # 0x11 → the driver RESETs → the unit gives the bill back: no credit
    rig.sim.wait_for("returned 500 RUB (reset)", since=mark)
    rig.wait_status(AcceptorStatus.IDLE, "the unit enabled again")
    wait_polls(rig)
    assert rig.inserted() == 10_000
    assert [b[0] for b in rig.stacked_bills()] == [10_000]
    assert rig.sim.counters.stacked == 1
    assert rig.screen() == "cash" and not rig.engine.oos_reasons
    assert rig.event_kinds() == []  # a power-up is not a fault
    pid = rig.pay()
    assert [p[:3] for p in rig.payments()] == [(pid, "payment", 10_000)]
    rig.assert_money_consistent()


def test_after_power_loss_with_bill_in_validator_the_next_bill_is_taken(rig):
    rig.to_cash()
    rig.insert_credited(100)
    power_cut_after_the_stack_decision(rig)
    mark = rig.insert(500)
    rig.sim.wait_for("returned 500 RUB (reset)", since=mark)
    rig.wait_taking_bills(500)
    mark = rig.insert(500)
    wait_until(lambda: any(e.startswith(("returned 500", "host acked 0x81"))
                           for e in sim_events_since(rig, mark)), what="the bill's fate")
    assert rig.inserted() == 60_000


def test_power_loss_with_bill_in_stacker_is_credited_to_its_session(make_rig):
    """0x12 then, after RESET and initialization, 0x81 (credit recovery). The session still
    collects and the engine still holds the escrow it sent STACK for, so the bill is
    credited to that session, flagged `recovered` for audit."""
    rig = make_rig(sim_timing=SLOW_STACK)
    rig.to_cash()
    rig.insert_credited(100)
    outcome = power_cut_while_stacking(rig, 500)
    mark = rig.insert(500)
    rig.sim.wait_for("credit recovery after power-up", since=mark)
    assert outcome == ["ok"]
    wait_until(lambda: rig.inserted() == 60_000, what="the recovered credit")
    rig.sim.wait_for("host acked 0x81", since=mark)
    bills = rig.stacked_bills()
    assert [(b[0], b[3]) for b in bills] == [(10_000, 0), (50_000, 1)]
    assert bills[0][1] == bills[1][1]  # the same session
    assert rig.rows("SELECT state FROM escrows ORDER BY id") == [("stacked",), ("stacked",)]
    assert rig.sim.counters.resets == 2
    assert rig.event_kinds() == []
    pid = rig.pay()
    assert [p[:3] for p in rig.payments()] == [(pid, "payment", 60_000)]
    rig.assert_money_consistent()


def test_power_loss_with_bill_in_stacker_after_its_session_closed_is_unclaimed(make_rig):
    """The same power cut, but the unit takes 2 s more to come back (Busy after
    initializing) and the customer presses Pay meanwhile. The engine waits escrow_settle
    (1 s) for the bill whose STACK it sent, then closes the payment with what is certain.
    The late 0x81 matches the still pending escrow marker of a session that has ended:
    an unclaimed-credit record with a slip and the support phone, never dropped (M6)."""
    rig = make_rig(sim_timing=SLOW_STACK)
    rig.to_cash()
    rig.insert_credited(100)
    rig.sim.when("initialized", "busy 20")
    outcome = power_cut_while_stacking(rig, 500)
    mark = rig.insert(500)
    rig.sim.wait_for("power up (0x12", since=mark)
    assert outcome == ["ok"]
    rig.intent("pay")
    wait_until(lambda: rig.screen() == "receipt", what="payment closed without the 500")
    assert [p[1:3] for p in rig.payments()] == [("payment", 10_000)]
    assert [b[0] for b in rig.stacked_bills()] == [10_000]  # the 500 not reported yet
    rig.sim.wait_for("host acked 0x81", since=mark, timeout_s=WAIT_S)
    rig.drain_printer()
    (payment, unclaimed) = rig.payments()
    assert unclaimed[1:] == (
        "unclaimed", 50_000, "unclaimed", "stacked after its session had ended")
    (event,) = rig.events("unclaimed_credit")
    assert event["data"]["record_id"] == unclaimed[0]
    assert rig.notice() == "unclaimed_credit"
    slip = rig.core.printer.texts()[-1]
    assert unclaimed[0] in slip and rig.config.terminal.support_phone in slip
    assert [(b[0], b[2], b[3]) for b in rig.stacked_bills()] == [
        (10_000, payment[0], 0), (50_000, unclaimed[0], 1)]
    rig.assert_money_consistent()


# -- the core restarts with a stacked bill not acknowledged (M2, M6) -------------------------


def kill_at_stacked(core: Core, commit_first: bool) -> threading.Event:
    """The core 'dies' at the stacked report: after committing it or before. Either way
    the driver sees an exception and does not ACK; the report stays in the unit."""
    real = core.engine.on_stacked
    killed = threading.Event()

    def dying(stacked):
        if not killed.is_set():
            if commit_first:
                real(stacked)
            killed.set()
        raise RuntimeError("core killed before the ACK")

    core.engine.on_stacked = dying
    return killed


@pytest.mark.parametrize("commit_first", [True, False],
                         ids=["committed-not-acked", "killed-before-commit"])
def test_core_restart_with_an_unacknowledged_stacked_bill(rig, commit_first):
    rig.to_cash()
    rig.insert_credited(100)
    killed = kill_at_stacked(rig.core, commit_first)
    mark = rig.insert(500)
    assert killed.wait(WAIT_S)
    assert [b[0] for b in rig.stacked_bills()] == ([10_000, 50_000] if commit_first
                                                   else [10_000])
    rig.restart("core2")  # new Ledger object, new driver run, new engine; same file and unit
    rig.wait_in_service()
    rig.sim.wait_for("host acked 0x81", since=mark)
    assert sum(e.startswith("host acked 0x81") for e in sim_events_since(rig, mark)) == 1

    # exactly one payment holds both bills: the session was still open on disk
    ((pid, kind, amount, state, note),) = rig.payments()
    assert (kind, amount, state, note) == ("payment", 60_000, "queued", RESTART_NOTE)
    bills = rig.rows("SELECT amount_minor, payment_id, recovered, run_id FROM stacked_bills "
                     "ORDER BY id")
    if commit_first:
        # the repeat comes under core2's event key: recognised as core1's bill, not counted
        assert bills == [(10_000, pid, 0, "core1"), (50_000, pid, 0, "core1")]
        assert rig.event_kinds() == ["duplicate_stacked_ignored", "session_recovered"]
    else:
        # matched to the pending escrow marker of the still-open session, before reconcile
        assert bills == [(10_000, pid, 0, "core1"), (50_000, pid, 1, "core2")]
        assert rig.event_kinds() == ["session_recovered"]
    assert rig.sim.counters.stacked == len(bills) == 2
    rig.assert_money_consistent()


def test_restart_recovered_bill_joins_its_session_whenever_the_tick_comes(rig):
    rig.to_cash()
    rig.insert_credited(100)
    killed = kill_at_stacked(rig.core, commit_first=False)
    mark = rig.insert(500)
    assert killed.wait(WAIT_S)

    def tick_on_accepting(core: Core) -> None:
        """The daemon's tick lands between the status report and the stacked report."""
        engine = core.engine
        real = engine.on_status

        def on_status(status, detail):
            real(status, detail)
            if status is AcceptorStatus.ACCEPTING:
                engine.tick()

        engine.on_status = on_status

    rig.restart("core2", prepare=tick_on_accepting)
    rig.wait_in_service()
    rig.sim.wait_for("host acked 0x81", since=mark)
    rig.assert_money_consistent()  # M6 holds either way: never dropped, never twice
    assert [p[1:3] for p in rig.payments()] == [("payment", 60_000)]


def test_clean_shutdown_is_not_reported_as_an_acceptor_fault(rig):
    rig.core.stop()
    assert rig.rows("SELECT kind FROM events") == []


def test_power_up_with_a_note_in_the_stacker_as_the_core_dies_is_a_new_credit(rig):
    """Issue 12, defect 2. The core commits a 10 and dies before its ACK; at that moment
    the unit loses power (its unacknowledged 0x81 is gone) with another 10 in the stacker.
    The next core sees 0x12, RESETs, and gets 0x81 for the second note under its own key.
    That 0x81 is a new stacking: before the fix the ledger took it for the dead core's
    un-acknowledged repeat (`duplicate_stacked_ignored`) and the note was lost."""
    rig.to_cash()
    rig.insert_credited(100)
    killed = kill_at_stacked(rig.core, commit_first=True)
    mark = rig.insert(10)
    assert killed.wait(WAIT_S)
    rig.core.kill()
    assert rig.sim.with_model(lambda m: m.power_cycle(PowerCycle.STACKER)) == "ok"
    assert "pending event lost in power cycle: 0x81 bill stacked (bill type 2)" in (
        sim_events_since(rig, mark))
    rig.restart("core2")
    rig.wait_in_service()
    rig.sim.wait_for("credit recovery after power-up", since=mark)
    rig.sim.wait_for("host acked 0x81", since=mark)
    assert rig.sim.counters.stacked == 3  # the 100, the 10 credited by core1, this 10
    bills = rig.rows("SELECT amount_minor, recovered, run_id FROM stacked_bills ORDER BY id")
    assert bills == [(10_000, 0, "core1"), (1_000, 0, "core1"), (1_000, 1, "core2")]
    kinds = rig.event_kinds()
    assert "duplicate_stacked_ignored" not in kinds
    # (the 0x81 comes during start-up: its record is numbered before the recovered session)
    assert sorted(p[1:] for p in rig.payments()) == [
        ("payment", 11_000, "queued", RESTART_NOTE),
        ("unclaimed", 1_000, "unclaimed", "stacked with no escrow decision on record")]
    (event,) = rig.events("unclaimed_credit")
    assert event["data"]["origin"] == "power_up"
    rig.assert_money_consistent()
