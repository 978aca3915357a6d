"""Id003Acceptor against the simulator over a real pty: money flows and every fault.

No mocks: the driver and the simulated acceptor exchange real ID-003 bytes. The listener
is a small recording stand-in for the engine that "commits" credits into a dict keyed by
event key, as the ledger does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from drivers.acceptor import (
    AcceptorError,
    AcceptorStatus,
    Bill,
    EscrowDecision,
    StackedBill,
    StackOrigin,
)
from drivers.framelog import FrameLog
from drivers.id003.currency import CurrencyRecord
from drivers.id003.device import Id003Acceptor
from drivers.id003.states import Status
from drivers.profiles import Profile, ProfileError, load_profile
from drivers.sim.id003 import Id003Simulator
from drivers.sim.id003_model import DEFAULT_BILLS, SimTiming, default_records
from tests.acceptor_fixtures import insert_and_wait_credit, wait_polls
from tests.id003.conftest import SIM_TIMING, write_profile

pytestmark = pytest.mark.timeout(30)

RUB_500 = Bill(50000, "RUB", 0x64)
KEY = re.compile(r"^id003:U\(RUS\)-SS:[0-9a-f]{8}:\d+$")
ACKED = "host acked 0x15"


def hold_in_escrow(sim: Id003Simulator, listener, wait_until, rubles: int = 500) -> None:
    listener.decision = EscrowDecision.HOLD
    assert sim.command(f"insert {rubles}") == "ok"
    wait_until(lambda: listener.escrows, what="escrow")


def profile_variant(tmp_path: Path, name: str, **replace: str) -> Profile:
    return load_profile(write_profile(tmp_path, name, **replace))


# -- start-up ------------------------------------------------------------------------------


def test_startup_reaches_disabled_with_version_and_currency_table(
    sim, listener, make_acceptor
) -> None:
    acceptor = make_acceptor(sim, listener)
    assert acceptor.status is AcceptorStatus.DISABLED
    info = acceptor.info
    assert (info.protocol, info.model, info.firmware, info.profile) == (
        "id003", "U(RUS)-SS", "ID003-05V210-10", "test_fast_id003")
    assert [b.amount_minor // 100 for b in info.bill_table] == [
        10, 50, 100, 500, 1000, 5000, 200, 2000]
    assert RUB_500 in info.bill_table
    assert sim.counters.resets == 1
    assert sim.model.inhibited and sim.model.enabled == frozenset()  # M4
    assert sim.model.power_recovery  # OPTIONAL FUNCTION 0x02 set while initializing
    assert listener.saw_status(AcceptorStatus.INITIALIZING)
    assert listener.statuses[-1][0] is AcceptorStatus.DISABLED
    events = sim.events
    settings = events.index("optional functions 0x02 (power recovery)")
    assert events.index("reset") < settings < events.index("initialized")  # while initializing


def test_enable_sets_mask_and_inhibit_for_chosen_amounts(
    sim, listener, make_acceptor, wait_until
) -> None:
    acceptor = make_acceptor(sim, listener)
    acceptor.enable([10000, 50000, 123])  # 100 and 500 RUB; 1.23 RUB is not a bill
    wait_until(lambda: acceptor.status is AcceptorStatus.IDLE)
    assert sim.model.enabled == frozenset({0x63, 0x64})
    assert sim.model.denominations_inhibited == frozenset(range(0x61, 0x69)) - {0x63, 0x64}
    acceptor.disable()
    wait_until(lambda: acceptor.status is AcceptorStatus.DISABLED)
    assert sim.model.inhibited and sim.model.enabled == frozenset()


def test_stop_leaves_unit_inhibited(sim, listener, running) -> None:
    assert sim.model.enabled
    running.stop()
    assert sim.model.inhibited
    assert running.status is AcceptorStatus.OFFLINE


# -- money ---------------------------------------------------------------------------------


def test_insert_escrow_stack_vend_valid_credited_exactly_once(
    sim, listener, running, wait_until
) -> None:
    mark = sim.mark()
    insert_and_wait_credit(sim, listener, wait_until)
    sim.wait_for(ACKED, since=mark)
    wait_until(lambda: running.status is AcceptorStatus.IDLE)  # through STACKED (0x16)
    assert listener.escrows == [RUB_500]
    assert len(listener.stacked_calls) == 1  # STACKED after VEND VALID is the same bill
    (stacked,) = listener.ledger.values()
    assert stacked.bill == RUB_500 and not stacked.recovered
    assert KEY.match(stacked.event_key)
    assert sim.counters.stacked == 1 and sim.counters.stacked_value == 500
    assert "stacking 500 RUB (STACK-1)" in sim.events
    assert sim.counters.host_acks == 1


def test_stack_2_profile_sends_stack_2(sim, listener, make_acceptor, tmp_path, wait_until
                                       ) -> None:
    acceptor = make_acceptor(sim, listener,
                             profile=profile_variant(tmp_path, "s2", **{"stack = 1": "stack = 2"}))
    acceptor.enable([RUB_500.amount_minor])
    wait_until(lambda: acceptor.status is AcceptorStatus.IDLE)
    insert_and_wait_credit(sim, listener, wait_until)
    assert "stacking 500 RUB (STACK-2)" in sim.events


def test_lost_ack_repeated_vend_valid_same_key_one_credit(
    sim, listener, running, wait_until
) -> None:
    assert sim.command("repeat_vend_valid 2") == "ok"
    mark = sim.mark()
    insert_and_wait_credit(sim, listener, wait_until)
    sim.wait_for(ACKED, since=mark)
    wait_until(lambda: running.status is AcceptorStatus.IDLE)
    assert sum("ack ignored" in e for e in sim.events) == 2
    assert len(listener.stacked_calls) == 3  # offered again on every repeat...
    assert len({s.event_key for s in listener.stacked_calls}) == 1  # ...with the same key
    assert len(listener.ledger) == 1 and listener.credited_minor == RUB_500.amount_minor
    assert sim.counters.stacked == 1 and sim.counters.host_acks == 3


def test_listener_failure_in_on_stacked_means_no_ack_and_same_key_again(
    sim, listener, running, wait_until
) -> None:
    listener.fail_stacked = 3  # ledger down for three attempts
    assert sim.command("insert 500") == "ok"
    wait_until(lambda: len(listener.stacked_calls) >= 2, what="second offer")
    assert sim.model.vend_valid_pending  # not acknowledged while the listener fails
    assert not any(ACKED in e for e in sim.events)
    wait_until(lambda: len(listener.ledger) == 1, what="credit after recovery")
    sim.wait_for(ACKED)
    assert len(listener.stacked_calls) == 4
    assert len({s.event_key for s in listener.stacked_calls}) == 1
    assert sum(ACKED in e for e in sim.events) == 1
    assert listener.credited_minor == RUB_500.amount_minor


def test_vend_valid_carrying_the_escrow_code(listener, make_sim, make_acceptor, wait_until
                                             ) -> None:
    unit = make_sim(vend_valid_data=True)
    acceptor = make_acceptor(unit, listener)
    acceptor.enable([10000])
    wait_until(lambda: acceptor.status is AcceptorStatus.IDLE)
    insert_and_wait_credit(unit, listener, wait_until, 100)
    (stacked,) = listener.ledger.values()
    assert stacked.bill == Bill(10000, "RUB", 0x63)


def test_return_decision_returns_bill(sim, listener, running, wait_until) -> None:
    listener.decision = EscrowDecision.RETURN
    assert sim.command("insert 500") == "ok"
    sim.wait_for("returned 500 RUB")
    wait_until(lambda: listener.returned, what="on_returned")
    assert listener.returned == [RUB_500]
    assert listener.ledger == {} and sim.counters.stacked == 0 and sim.counters.returned == 1


def test_hold_then_engine_stacks(sim, listener, running, wait_until) -> None:
    hold_in_escrow(sim, listener, wait_until)
    sim.wait_for("holding 500 RUB")
    running.stack()
    wait_until(lambda: listener.ledger, what="credit after stack()")
    assert listener.credited_minor == RUB_500.amount_minor
    assert len(listener.escrows) >= 1


def test_hold_then_engine_returns(sim, listener, running, wait_until) -> None:
    hold_in_escrow(sim, listener, wait_until)
    running.return_bill()
    sim.wait_for("returned 500 RUB")
    wait_until(lambda: listener.returned == [RUB_500], what="on_returned")
    assert listener.ledger == {}


def test_hold_longer_than_the_limit_returns(sim, listener, running, wait_until) -> None:
    hold_in_escrow(sim, listener, wait_until)
    sim.wait_for("returned 500 RUB", timeout_s=5)  # escrow_hold_max_s = 1.5 in the profile
    assert listener.ledger == {} and sim.counters.stacked == 0


def test_reject_reason_reported(sim, listener, running, wait_until) -> None:
    sim.command("reject magnetic")
    wait_until(lambda: listener.rejected, what="on_rejected")
    assert listener.rejected == ["magnetic"]
    assert listener.saw_status(AcceptorStatus.REJECTING, "magnetic")
    wait_until(lambda: running.status is AcceptorStatus.IDLE)
    assert listener.ledger == {} and listener.returned == []


def test_disabled_denomination_is_rejected_inhibit(
    sim, listener, make_acceptor, wait_until
) -> None:
    acceptor = make_acceptor(sim, listener)
    acceptor.enable([10000])
    wait_until(lambda: acceptor.status is AcceptorStatus.IDLE)
    sim.command("insert 500")
    wait_until(lambda: listener.rejected, what="inhibit reject")
    assert listener.rejected == ["inhibit, or no answer to escrow"]
    assert listener.escrows == [] and listener.ledger == {}


def test_currency_filter_enables_only_that_currency(
    sim, listener, make_acceptor, wait_until
) -> None:
    acceptor = make_acceptor(sim, listener, currency="USD")
    acceptor.enable([RUB_500.amount_minor])  # 500.00 in minor units, but the table is RUB
    wait_polls(sim)
    assert sim.model.enabled == frozenset()
    # a unit that can take no note of the terminal's currency is unusable (issue 12)
    assert acceptor.status is AcceptorStatus.FAILURE
    assert "can take no USD note: none in its bill table (it has only RUB notes)" in (
        acceptor.status_detail)


def test_unknown_country_number_makes_the_unit_unusable_unless_the_profile_names_it(
    listener, make_sim, make_acceptor, tmp_path, wait_until
) -> None:
    """Issue 12, defect 4: a JCM country number this driver does not know used to drop
    every denomination with one log line, the status staying DISABLED: in service, taking
    nothing. Now: FAILURE with the fix in the detail; `[id003] currency` names the notes."""
    records = [CurrencyRecord.for_value(c, v, 153) for c, v in DEFAULT_BILLS]
    unit = make_sim(records=records)
    acceptor = make_acceptor(unit, listener, currency="RUB")
    wait_until(lambda: acceptor.status is AcceptorStatus.FAILURE, what="FAILURE")
    assert acceptor.info.bill_table == ()
    assert "JCM country number 153, unknown to this driver: set [id003] currency" in (
        acceptor.status_detail)
    acceptor.enable([RUB_500.amount_minor])
    wait_until(lambda: unit.counters.polls > 5, what="a few polls")
    assert acceptor.status is AcceptorStatus.FAILURE and unit.model.inhibited  # M4
    # the unit is reflashed for a known country: after its next RESET the table is read
    # again, and the unit is usable (and enabled, as asked) without a restart
    unit.with_model(lambda m: setattr(m, "records", {r.escrow_code: r for r in
                                                     default_records("RUB")}))
    assert unit.command("power_cycle none") == "ok"
    wait_until(lambda: acceptor.status is AcceptorStatus.IDLE, what="usable again")
    assert RUB_500 in acceptor.info.bill_table and unit.model.enabled == {RUB_500.bill_type}
    acceptor.stop()

    named = profile_variant(tmp_path, "named", **{"power_recovery = true":
                                                  'power_recovery = true\ncurrency = "RUB"'})
    second = make_acceptor(unit, listener, profile=named, currency="RUB",
                           bill_table_cache=tmp_path / "cache2.json")
    assert RUB_500 in second.info.bill_table
    assert second.status is AcceptorStatus.DISABLED


# -- faults --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "status", "detail", "cure"),
    [
        ("jam", AcceptorStatus.JAMMED, "jam in acceptor", "clear"),
        ("jam stacker", AcceptorStatus.JAMMED, "jam in stacker", "clear"),
        ("cassette_full", AcceptorStatus.CASSETTE_FULL, "stacker full", "clear"),
        ("cassette_out", AcceptorStatus.CASSETTE_OUT, "stacker open", "cassette_in"),
        ("cheated", AcceptorStatus.CHEATED, "cheated", "clear"),
        ("failure 0xA2", AcceptorStatus.FAILURE, "stack motor failure", "clear"),
        ("failure head_removed", AcceptorStatus.FAILURE, "head removed", "clear"),
        ("failure 0xB2", AcceptorStatus.FAILURE, "ROM / RAM failure (ROM)", "clear"),
    ],
)
def test_fault_reported_nothing_credited_and_recovers(
    sim, listener, running, wait_until, command: str, status: AcceptorStatus, detail: str,
    cure: str,
) -> None:
    assert sim.command(command) == "ok"
    wait_until(lambda: running.status is status, what=str(status))
    # the driver's own status is set just before its listener is told, on the line thread
    wait_until(lambda: listener.saw_status(status, detail), what=f"{status} told")
    assert status.is_fault
    assert sim.command("insert 500").startswith("refused")
    wait_polls(sim)
    assert listener.ledger == {} and sim.counters.stacked == 0
    assert sim.command(cure) == "ok"
    wait_until(lambda: running.status is AcceptorStatus.IDLE, what="IDLE after clear")
    insert_and_wait_credit(sim, listener, wait_until)


def test_jam_with_bill_in_escrow_credits_nothing(sim, listener, running, wait_until) -> None:
    hold_in_escrow(sim, listener, wait_until)
    sim.command("jam")
    wait_until(lambda: running.status is AcceptorStatus.JAMMED)
    sim.command("clear")  # the technician pulls the bill out
    wait_until(lambda: running.status is AcceptorStatus.IDLE)
    assert listener.ledger == {} and sim.counters.stacked == 0


def test_jam_in_stacker_before_vend_valid_credits_nothing(
    sim, listener, running, wait_until
) -> None:
    sim.when("stacking 500", "jam stacker")
    sim.command("insert 500")
    wait_until(lambda: running.status is AcceptorStatus.JAMMED)
    assert sim.command("clear") == "ok"
    assert "bill 500 RUB removed from the path by hand" in sim.events
    wait_until(lambda: running.status is AcceptorStatus.IDLE)
    assert listener.ledger == {} and sim.counters.stacked == 0
    sim.command("reject insertion")  # the next bill is not mistaken for the one pulled out
    wait_until(lambda: listener.rejected, what="on_rejected")
    assert listener.rejected == ["insertion"] and listener.returned == []
    wait_until(lambda: sim.model.base == Status.ENABLE, what="idle after the reject")
    insert_and_wait_credit(sim, listener, wait_until)
    assert [s.bill for s in listener.ledger.values()] == [RUB_500]


def test_pause_is_unlocked_by_reset(sim, listener, running, wait_until) -> None:
    resets = sim.counters.resets
    sim.command("pause")
    wait_until(lambda: listener.saw_status(AcceptorStatus.PAUSED), what="PAUSED")
    wait_until(lambda: sim.counters.resets == resets + 1, what="RESET after pause")
    wait_until(lambda: running.status is AcceptorStatus.IDLE, what="re-enabled after reset")
    assert sim.model.enabled  # mask and INHIBIT restored after the reset
    insert_and_wait_credit(sim, listener, wait_until)


def test_second_bill_in_path_pauses_and_first_is_returned(
    sim, listener, running, wait_until
) -> None:
    hold_in_escrow(sim, listener, wait_until)
    assert sim.command("insert 100") == "pause"
    wait_until(lambda: listener.saw_status(AcceptorStatus.PAUSED), what="PAUSED")
    sim.wait_for("returned 500 RUB (reset)")
    wait_until(lambda: running.status is AcceptorStatus.IDLE)
    assert listener.ledger == {} and sim.counters.stacked == 0


def test_busy_reinitializing_is_waited_for_not_a_fault(sim, listener, running, wait_until
                                                        ) -> None:
    sim.command("busy 5")
    wait_until(lambda: running.status is AcceptorStatus.INITIALIZING, what="initializing")
    assert not any(s.is_fault for s, _ in listener.statuses)
    wait_until(lambda: running.status is AcceptorStatus.IDLE, what="IDLE after busy")
    assert sim.counters.resets == 1  # waited for, not reset
    insert_and_wait_credit(sim, listener, wait_until)


def test_stuck_accepting_becomes_jammed(listener, make_sim, make_acceptor, wait_until) -> None:
    slow = make_sim(timing=SimTiming(init_s=0.05, accept_s=3.0))
    acceptor = make_acceptor(slow, listener)
    acceptor.enable([RUB_500.amount_minor])
    wait_until(lambda: acceptor.status is AcceptorStatus.IDLE)
    slow.command("insert 500")
    # Wait on the listener: the status attribute changes before the listener hears of it.
    wait_until(lambda: listener.saw_status(AcceptorStatus.JAMMED, "stuck in 0x12 accepting"),
               what="stuck timer")
    assert listener.ledger == {}


# -- power loss ----------------------------------------------------------------------------


def test_power_cycle_with_bill_in_acceptor_no_credit_bill_returned(
    sim, listener, running, wait_until
) -> None:
    hold_in_escrow(sim, listener, wait_until)
    sim.command("power_cycle acceptor")
    sim.wait_for("returned 500 RUB (reset)")
    wait_until(lambda: running.status is AcceptorStatus.IDLE, what="IDLE after power cycle")
    assert listener.saw_status(AcceptorStatus.INITIALIZING, "bill in acceptor")
    assert listener.ledger == {} and listener.stacked_calls == []
    wait_until(lambda: listener.returned == [RUB_500], what="reported returned")
    assert sim.counters.stacked == 0


def test_power_cycle_while_stacking_is_credited_once_by_power_recovery(
    sim, listener, running, wait_until
) -> None:
    sim.when("stacking 500", "power_cycle")  # the bill is in the stacker when power goes
    mark = sim.mark()
    sim.command("insert 500")
    sim.wait_for("power up (0x42", since=mark)
    wait_until(lambda: listener.ledger, what="recovered credit")
    sim.wait_for("vend valid 500 RUB (power recovery)", since=mark)
    sim.wait_for(ACKED, since=mark)
    wait_until(lambda: running.status is AcceptorStatus.IDLE, what="IDLE after recovery")
    (stacked,) = listener.ledger.values()
    assert stacked.recovered and stacked.bill == RUB_500
    assert len(listener.stacked_calls) == 1 and sim.counters.stacked == 1


@pytest.mark.parametrize("why", ["profile", "firmware"])
def test_power_cycle_in_stacker_without_power_recovery_is_credited_by_the_driver(
    listener, make_sim, make_acceptor, tmp_path, wait_until, why: str
) -> None:
    if why == "profile":  # the host does not ask for power recovery
        unit = make_sim()
        profile = profile_variant(tmp_path, "norec",
                                  **{"power_recovery = true": "power_recovery = false"})
    else:  # the host asks, the firmware ignores it
        unit = make_sim(power_recovery_supported=False)
        profile = None
    acceptor = make_acceptor(unit, listener, profile=profile)
    acceptor.enable([RUB_500.amount_minor])
    wait_until(lambda: acceptor.status is AcceptorStatus.IDLE)
    assert not unit.model.power_recovery
    unit.when("stacking 500", "power_cycle")
    mark = unit.mark()
    unit.command("insert 500")
    unit.wait_for("stacked 500 RUB silently", since=mark)
    wait_until(lambda: listener.ledger, what="credit for the bill in the stacker")
    wait_until(lambda: acceptor.status is AcceptorStatus.IDLE)
    (stacked,) = listener.ledger.values()
    assert stacked.recovered and stacked.bill == RUB_500
    assert len(listener.stacked_calls) == 1 and unit.counters.stacked == 1


def test_power_cycle_after_ack_replayed_vend_valid_credits_nothing_more(
    sim, listener, running, wait_until
) -> None:
    """Power lost right after the host ACKed VEND VALID (bill still going in): the unit
    replays VEND VALID after power-up; it must not become a second credit."""
    sim.when(ACKED, "power_cycle")
    mark = sim.mark()
    insert_and_wait_credit(sim, listener, wait_until)
    sim.wait_for("vend valid 500 RUB (power recovery)", since=mark)
    wait_until(lambda: sum(ACKED in e for e in sim.events) == 2, what="replay acknowledged")
    wait_until(lambda: running.status is AcceptorStatus.IDLE)
    assert len(listener.stacked_calls) == 2
    assert len({s.event_key for s in listener.stacked_calls}) == 1  # the same bill
    assert len(listener.ledger) == 1 and sim.counters.stacked == 1


def test_power_cycle_while_vend_valid_unacknowledged_credits_once(
    sim, listener, running, wait_until
) -> None:
    """The commit happened, the ACK was lost, then power went: one credit."""
    sim.command("repeat_vend_valid")
    sim.when("ack ignored", "power_cycle")
    mark = sim.mark()
    insert_and_wait_credit(sim, listener, wait_until)
    sim.wait_for("vend valid 500 RUB (power recovery)", since=mark)
    sim.wait_for(ACKED, since=mark)
    wait_until(lambda: running.status is AcceptorStatus.IDLE)
    assert len({s.event_key for s in listener.stacked_calls}) == 1
    assert len(listener.ledger) == 1 and sim.counters.stacked == 1


def power_up_with_a_note_in_the_stacker_after_a_settled_credit(sim, listener, running,
                                                              wait_until) -> StackedBill:
    """A 500 is credited and the unit idles again; then power goes with another note (the
    simulator's 10 RUB) in the stacker, no STACK outstanding. Returns that note's credit."""
    insert_and_wait_credit(sim, listener, wait_until)
    wait_until(lambda: running.status is AcceptorStatus.IDLE, what="idle after the 500")
    polls = sim.counters.polls
    wait_until(lambda: sim.counters.polls > polls + 2, what="the driver saw the unit idle")
    mark = sim.mark()
    assert sim.command("power_cycle stacker") == "ok"
    sim.wait_for("vend valid 10 RUB (power recovery)", since=mark)
    sim.wait_for(ACKED, since=mark)
    wait_until(lambda: len(listener.ledger) == 2, what="the second note recorded")
    wait_until(lambda: running.status is AcceptorStatus.IDLE, what="idle after the power-up")
    first, second = listener.ledger.values()
    assert first.bill == RUB_500 and first.origin is StackOrigin.REQUESTED
    assert second.event_key != first.event_key  # a new physical stacking, a new key
    assert second.origin is StackOrigin.POWER_UP and second.recovered
    assert sim.counters.stacked == 2
    return second


def test_power_up_in_stacker_with_no_stack_outstanding_is_a_new_unnamed_credit(
    sim, listener, running, wait_until
) -> None:
    """Issue 12, defect 3: the VEND VALID that follows carries no escrow code and nobody
    sent STACK for it. Before the fix the driver named it after the last credited bill and
    reused that bill's event key: ACKed, recorded nowhere. Now it is reported unnamed
    (the ledger keeps it as an unclaimed credit of unknown value), under a new key."""
    second = power_up_with_a_note_in_the_stacker_after_a_settled_credit(
        sim, listener, running, wait_until)
    assert second.bill is None and second.currency == "RUB"


def test_power_up_in_stacker_names_the_note_by_the_units_escrow_code(
    listener, make_sim, make_acceptor, wait_until
) -> None:
    unit = make_sim(vend_valid_data=True)  # this firmware puts the escrow code in VEND VALID
    acceptor = make_acceptor(unit, listener)
    acceptor.enable(b.amount_minor for b in acceptor.info.bill_table)
    wait_until(lambda: acceptor.status is AcceptorStatus.IDLE, what="IDLE after enable")
    second = power_up_with_a_note_in_the_stacker_after_a_settled_credit(
        unit, listener, acceptor, wait_until)
    assert second.bill == Bill(1000, "RUB", 0x61)


def test_power_up_in_stacker_without_power_recovery_reports_the_unnamed_note(
    listener, make_sim, make_acceptor, wait_until
) -> None:
    """The same power-up on firmware without power recovery: no VEND VALID comes, the unit
    stacks the note silently. Nobody sent STACK for it: the driver reports it unnamed when
    the unit settles (before the fix it logged a warning and reported nothing)."""
    unit = make_sim(power_recovery_supported=False)
    acceptor = make_acceptor(unit, listener)
    acceptor.enable(b.amount_minor for b in acceptor.info.bill_table)
    wait_until(lambda: acceptor.status is AcceptorStatus.IDLE, what="IDLE after enable")
    insert_and_wait_credit(unit, listener, wait_until)
    wait_until(lambda: acceptor.status is AcceptorStatus.IDLE, what="idle after the 500")
    polls = unit.counters.polls
    wait_until(lambda: unit.counters.polls > polls + 2, what="the driver saw the unit idle")
    mark = unit.mark()
    assert unit.command("power_cycle stacker") == "ok"
    unit.wait_for("stacked 10 RUB silently", since=mark)
    wait_until(lambda: len(listener.ledger) == 2, what="the unnamed note reported")
    first, second = listener.ledger.values()
    assert first.bill == RUB_500
    assert second.bill is None and second.origin is StackOrigin.POWER_UP
    assert second.event_key != first.event_key and unit.counters.stacked == 2


def test_restart_between_credit_and_ack_is_flagged_recovered(
    sim, listener, make_acceptor, wait_until
) -> None:
    """The process dies after VEND VALID was reported, before the ACK (M2/M6 window); the
    new run names the bill from the stack marker (VEND VALID carries no code here)."""
    first = make_acceptor(sim, listener)
    first.enable([RUB_500.amount_minor])
    wait_until(lambda: first.status is AcceptorStatus.IDLE)
    listener.fail_stacked = 10**6  # the commit never completes before the "crash"
    sim.command("insert 500")
    wait_until(lambda: listener.stacked_calls, what="vend valid offered")
    first.stop()
    assert sim.model.vend_valid_pending  # never acknowledged

    listener.fail_stacked = 0
    second = make_acceptor(sim, listener)  # same stack-marker file
    wait_until(lambda: listener.ledger, what="credit in the new run")
    (stacked,) = listener.ledger.values()
    assert stacked.recovered and stacked.bill == RUB_500
    assert stacked.event_key != listener.stacked_calls[0].event_key  # new run id
    assert second.status is AcceptorStatus.DISABLED
    assert sim.counters.stacked == 1


def test_restart_without_marker_holds_the_event(
    sim, listener, make_acceptor, tmp_path, wait_until
) -> None:
    first = make_acceptor(sim, listener, stack_marker=None)
    first.enable([RUB_500.amount_minor])
    wait_until(lambda: first.status is AcceptorStatus.IDLE)
    listener.fail_stacked = 10**6
    sim.command("insert 500")
    wait_until(lambda: listener.stacked_calls, what="vend valid offered")
    first.stop()
    listener.fail_stacked = 0
    second = make_acceptor(sim, listener, ready=False, stack_marker=None)
    wait_until(lambda: second.status is AcceptorStatus.FAILURE, what="FAILURE")
    assert "cannot name" in second.status_detail
    assert sim.model.vend_valid_pending  # still unacknowledged: not lost, not guessed
    assert listener.ledger == {}


def test_power_cut_while_the_driver_was_down_is_named_by_the_marker(
    sim, listener, make_acceptor, tmp_path, wait_until
) -> None:
    """STACK was sent, then the line and the driver went away and the unit lost power with
    the bill in its stacker. The next run learns of it from 0x42 and names it from the
    stack marker (this unit does not replay VEND VALID)."""
    first = make_acceptor(sim, listener)
    first.enable([RUB_500.amount_minor])
    wait_until(lambda: first.status is AcceptorStatus.IDLE)
    sim.when("stacking 500", "unplug")
    sim.command("insert 500")
    wait_until(lambda: first.status is AcceptorStatus.OFFLINE, what="offline")
    first.stop()
    assert sim.command("power_cycle stacker") == "ok"
    assert sim.command("replug") == "ok"
    norec = profile_variant(tmp_path, "norec", **{"power_recovery = true":
                                                  "power_recovery = false"})
    make_acceptor(sim, listener, ready=False, profile=norec)
    wait_until(lambda: listener.ledger, what="credit named by the marker")
    (stacked,) = listener.ledger.values()
    assert stacked.recovered and stacked.bill == RUB_500
    assert sim.counters.stacked == 1


# -- the line ------------------------------------------------------------------------------


@pytest.mark.parametrize(("fault", "seen"), [("corrupt_crc", "reply CRC corrupted"),
                                             ("drop_reply", "reply dropped")])
def test_damaged_vend_valid_reply_asked_again_one_credit(
    sim, listener, running, wait_until, fault: str, seen: str
) -> None:
    sim.when("vend valid 500 RUB", fault)  # exactly the reply that carries VEND VALID
    mark = sim.mark()
    insert_and_wait_credit(sim, listener, wait_until)
    sim.wait_for(seen, since=mark)
    sim.wait_for(ACKED, since=mark)
    assert len(listener.stacked_calls) == 1 and len(listener.ledger) == 1
    assert sim.counters.host_acks == 1
    assert not listener.saw_status(AcceptorStatus.OFFLINE)


def test_unit_replaced_while_offline_is_reset_and_reenabled(
    tmp_path, listener, fast_profile: Profile, wait_until
) -> None:
    link = tmp_path / "ttySWAP"
    first = Id003Simulator(link=link, timing=SIM_TIMING).start()
    acceptor = Id003Acceptor(str(link), fast_profile)
    acceptor.start(listener)
    try:
        acceptor.enable([RUB_500.amount_minor])
        wait_until(lambda: acceptor.status is AcceptorStatus.IDLE)
        first.stop()
        wait_until(lambda: acceptor.status is AcceptorStatus.OFFLINE)
        second = Id003Simulator(link=link, version="U(RUS)-SS ID003-05V300-01 01JAN25 0000",
                                timing=SIM_TIMING).start()
        try:
            wait_until(lambda: acceptor.status is AcceptorStatus.IDLE, what="re-enabled")
            assert second.counters.resets == 1 and second.model.enabled == {0x64}
            assert acceptor.info.firmware == "ID003-05V300-01"  # re-identified
            insert_and_wait_credit(second, listener, wait_until)
        finally:
            second.stop()
    finally:
        acceptor.stop()


def test_no_unit_at_start_is_offline_then_connects(
    tmp_path, listener, fast_profile: Profile, wait_until
) -> None:
    link = tmp_path / "ttyLATE"
    acceptor = Id003Acceptor(str(link), fast_profile)
    acceptor.start(listener)
    try:
        wait_until(lambda: listener.saw_status(AcceptorStatus.OFFLINE, "cannot open"))
        with Id003Simulator(link=link, timing=SIM_TIMING):
            assert acceptor.wait_ready(5)
            assert acceptor.status is AcceptorStatus.DISABLED
    finally:
        acceptor.stop()


def test_listener_errors_do_not_kill_the_line_thread(
    sim, listener, make_acceptor, wait_until
) -> None:
    def broken(*_args: object) -> None:
        raise RuntimeError("engine bug")

    listener.on_status = broken  # type: ignore[method-assign]
    listener.on_rejected = broken  # type: ignore[method-assign]
    acceptor = make_acceptor(sim, listener)
    acceptor.enable([RUB_500.amount_minor])
    wait_until(lambda: sim.model.base == Status.ENABLE)
    sim.command("reject photo_level")
    sim.wait_for("rejected 0x78")
    wait_until(lambda: sim.model.base == Status.ENABLE)
    insert_and_wait_credit(sim, listener, wait_until)


def test_frame_log_records_traffic(sim, listener, make_acceptor, tmp_path, wait_until) -> None:
    frame_log = FrameLog("test-driver", tmp_path / "id003-frames.log")
    acceptor = make_acceptor(sim, listener, frame_log=frame_log)
    acceptor.enable([RUB_500.amount_minor])
    wait_until(lambda: acceptor.status is AcceptorStatus.IDLE)
    insert_and_wait_credit(sim, listener, wait_until)
    acceptor.stop()
    frame_log.close()
    text = (tmp_path / "id003-frames.log").read_text()
    assert "TX fc 05 40 2b 15" in text  # RESET
    assert "TX fc 06 c3 01 8d c7" in text  # INHIBIT on
    assert "TX fc 05 50 aa 05" in text  # ACK of VEND VALID
    assert "RX fc 05 1a" in text  # DISABLE


# -- construction --------------------------------------------------------------------------


def test_wrong_profile_kind_is_refused(tmp_path, fast_profile: Profile) -> None:
    text = fast_profile.path.read_text().replace('protocol = "id003"', 'protocol = "ccnet"')
    path = tmp_path / "ccnet.toml"
    path.write_text(text)
    with pytest.raises(ProfileError, match="not acceptor/id003"):
        Id003Acceptor("/dev/null", load_profile(path))


def test_start_twice_is_an_error(sim, listener, make_acceptor: Callable) -> None:
    acceptor = make_acceptor(sim, listener)
    with pytest.raises(AcceptorError):
        acceptor.start(listener)
