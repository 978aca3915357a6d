"""CcnetAcceptor against the simulator over a real pty: money flows and faults.

No mocks: the driver and the simulated validator exchange real CCNET bytes. The
listener is a small recording stand-in for the engine that "commits" credits into a
dict keyed by event key, as the ledger does.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from drivers.acceptor import AcceptorStatus, Bill, EscrowDecision, StackOrigin
from drivers.ccnet.device import CcnetAcceptor
from drivers.profiles import Profile, ProfileError, load_profile
from drivers.sim.ccnet import CcnetSimulator
from drivers.sim.ccnet_model import SimTiming
from tests.acceptor_fixtures import (
    RecordingListener,
    insert_and_wait_credit,
    wait_polls,
)

pytestmark = pytest.mark.timeout(30)

RUB_500 = 50000
KEY = re.compile(r"^ccnet:41A123456789:[0-9a-f]{8}:\d+$")


# -- start-up ------------------------------------------------------------------------------


def test_startup_reaches_disabled_with_identification_and_table(
    sim, listener, make_acceptor
) -> None:
    acceptor = make_acceptor(sim, listener)
    assert acceptor.status is AcceptorStatus.DISABLED
    info = acceptor.info
    assert (info.protocol, info.model, info.serial_number, info.firmware, info.profile) == (
        "ccnet", "SM-RU1353", "41A123456789", "1353", "test_fast_ccnet")
    assert [b.amount_minor for b in info.bill_table] == [
        1000, 5000, 10000, 50000, 100000, 500000, 20000, 200000]
    assert Bill(1000, "RUB", 2) in info.bill_table
    assert sim.counters.resets == 1
    assert sim.model.enabled == frozenset()  # M4: disabled until a session
    assert listener.saw_status(AcceptorStatus.INITIALIZING)
    assert listener.statuses[-1][0] is AcceptorStatus.DISABLED
    events = sim.events
    assert events.index("reset") < events.index("initialized") < events.index("disabled")


def test_enable_sets_mask_and_escrow_for_chosen_amounts(
    sim, listener, make_acceptor, wait_until
) -> None:
    acceptor = make_acceptor(sim, listener)
    acceptor.enable([10000, 50000, 123])  # 100 and 500 RUB; 1.23 RUB is not a bill
    wait_until(lambda: acceptor.status is AcceptorStatus.IDLE)
    assert sim.model.enabled == frozenset({4, 5})
    assert sim.model.escrow == frozenset({4, 5})
    acceptor.disable()
    wait_until(lambda: acceptor.status is AcceptorStatus.DISABLED)
    assert sim.model.enabled == frozenset()


def test_stop_leaves_unit_disabled(sim, listener, running, wait_until) -> None:
    assert sim.model.enabled
    running.stop()
    assert sim.model.enabled == frozenset()
    assert running.status is AcceptorStatus.OFFLINE


# -- money ---------------------------------------------------------------------------------


def test_insert_escrow_stack_credited_exactly_once(sim, listener, running, wait_until) -> None:
    insert_and_wait_credit(sim, listener, wait_until)
    sim.wait_for("host acked 0x81")
    wait_polls(sim)  # a few more polls: nothing more may be credited
    assert listener.escrows == [Bill(RUB_500, "RUB", 5)]
    assert len(listener.stacked_calls) == 1
    (stacked,) = listener.ledger.values()
    assert stacked.bill == Bill(RUB_500, "RUB", 5)
    assert not stacked.recovered and stacked.origin is StackOrigin.REQUESTED
    assert KEY.match(stacked.event_key)
    assert sim.counters.stacked == 1 and sim.counters.stacked_value == 500


def test_lost_ack_repeat_stacked_same_key_one_credit(sim, listener, running, wait_until) -> None:
    sim.command("repeat_stacked")
    insert_and_wait_credit(sim, listener, wait_until)
    sim.wait_for("host acked 0x81")
    wait_until(lambda: running.status is AcceptorStatus.IDLE)
    assert len(listener.stacked_calls) >= 2  # the repeat was offered again...
    assert len({s.event_key for s in listener.stacked_calls}) == 1  # ...with the same key
    assert len(listener.ledger) == 1
    assert listener.credited_minor == RUB_500
    assert sim.counters.stacked == 1


def test_listener_failure_in_on_stacked_means_no_ack_and_same_key_again(
    sim, listener, running, wait_until
) -> None:
    listener.fail_stacked = 3  # ledger down for three attempts
    assert sim.command("insert 500") == "ok"
    wait_until(lambda: len(listener.stacked_calls) >= 2, what="second offer")
    # not acknowledged while the listener fails: the device still holds the event
    assert sim.model.event is not None
    assert not any("host acked 0x81" in e for e in sim.events)
    wait_until(lambda: len(listener.ledger) == 1, what="credit after recovery")
    sim.wait_for("host acked 0x81")
    assert len(listener.stacked_calls) == 4
    assert len({s.event_key for s in listener.stacked_calls}) == 1
    assert sum("host acked 0x81" in e for e in sim.events) == 1
    assert listener.credited_minor == RUB_500
    assert running.status in (AcceptorStatus.IDLE, AcceptorStatus.ACCEPTING)


def test_return_decision_returns_bill(sim, listener, running, wait_until) -> None:
    listener.decision = EscrowDecision.RETURN
    sim.command("insert 100")
    wait_until(lambda: listener.returned, what="on_returned")
    sim.wait_for("returned 100 RUB")
    assert listener.returned == [Bill(10000, "RUB", 4)]
    assert listener.ledger == {} and sim.counters.stacked == 0


def test_escrow_listener_exception_returns_bill(sim, listener, running, wait_until) -> None:
    def boom(_bill: Bill) -> EscrowDecision:
        raise RuntimeError("engine bug")

    listener.on_escrow = boom  # type: ignore[method-assign]
    sim.command("insert 100")
    wait_until(lambda: listener.returned, what="on_returned")
    assert listener.ledger == {} and sim.counters.stacked == 0
    insert_ok = running.status  # the line thread survived
    assert insert_ok is not AcceptorStatus.OFFLINE


def test_hold_then_stack(sim, listener, running, wait_until) -> None:
    listener.decision = EscrowDecision.HOLD
    sim.command("insert 1000")
    wait_until(lambda: len(listener.escrows) >= 3, what="re-asked while holding")
    sim.wait_for("holding 1000 RUB")
    assert listener.ledger == {}
    running.stack()
    wait_until(lambda: listener.ledger, what="credit after stack()")
    (stacked,) = listener.ledger.values()
    assert stacked.bill.amount_minor == 100000 and not stacked.recovered
    assert sim.counters.stacked == 1


def test_hold_then_return_bill(sim, listener, running, wait_until) -> None:
    listener.decision = EscrowDecision.HOLD
    sim.command("insert 1000")
    wait_until(lambda: len(listener.escrows) >= 2, what="re-asked while holding")
    running.return_bill()
    wait_until(lambda: listener.returned, what="on_returned")
    assert listener.ledger == {} and sim.counters.stacked == 0


def test_hold_forever_is_returned_by_the_driver(sim, listener, running, wait_until) -> None:
    listener.decision = EscrowDecision.HOLD  # the engine never decides
    sim.command("insert 50")
    wait_until(lambda: listener.returned, timeout_s=5, what="return after hold limit")
    assert listener.ledger == {} and sim.counters.stacked == 0


def test_reject_reason_reported(sim, listener, running, wait_until) -> None:
    sim.command("reject magnetic")
    wait_until(lambda: listener.rejected, what="on_rejected")
    assert listener.rejected == ["magnetic / dielectric"]
    assert listener.saw_status(AcceptorStatus.REJECTING, "magnetic")
    wait_until(lambda: running.status is AcceptorStatus.IDLE)
    assert listener.ledger == {}


def test_disabled_denomination_is_rejected_inhibit(
    sim, listener, make_acceptor, wait_until
) -> None:
    acceptor = make_acceptor(sim, listener)
    acceptor.enable([10000])
    wait_until(lambda: acceptor.status is AcceptorStatus.IDLE)
    sim.command("insert 500")
    wait_until(lambda: listener.rejected, what="inhibit reject")
    assert listener.rejected == ["inhibit (denomination disabled)"]
    assert listener.escrows == [] and listener.ledger == {}


def test_currency_filter_enables_only_that_currency(
    sim, listener, make_acceptor, wait_until
) -> None:
    acceptor = make_acceptor(sim, listener, currency="USD")
    acceptor.enable([RUB_500])  # 500.00 in minor units, but the table is in RUB
    wait_polls(sim)
    assert sim.model.enabled == frozenset()
    # a unit that can take no note of the terminal's currency is unusable (issue 12)
    assert acceptor.status is AcceptorStatus.FAILURE
    assert "can take no USD note: none in its bill table (it has only RUB notes)" in (
        acceptor.status_detail)


# -- faults --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "status", "detail"),
    [
        ("jam", AcceptorStatus.JAMMED, "validator jammed"),
        ("cassette_full", AcceptorStatus.CASSETTE_FULL, "cassette full"),
        ("cassette_out", AcceptorStatus.CASSETTE_OUT, "out of position"),
        ("cheated", AcceptorStatus.CHEATED, "cheated"),
        ("failure 0x50", AcceptorStatus.FAILURE, "stack motor failure"),
        ("failure optic_canal", AcceptorStatus.FAILURE, "optic canal failure"),
    ],
)
def test_fault_reported_nothing_credited_and_recovers(
    sim, listener, running, wait_until, command: str, status: AcceptorStatus, detail: str
) -> None:
    assert sim.command(command) == "ok"
    wait_until(lambda: running.status is status, what=str(status))
    # the driver's own status is set just before its listener is told, on the line thread
    wait_until(lambda: listener.saw_status(status, detail), what=f"{status} told")
    assert status.is_fault
    assert sim.command("insert 500").startswith("refused")
    wait_polls(sim)
    assert listener.ledger == {} and sim.counters.stacked == 0
    sim.command("clear")
    wait_until(lambda: running.status is AcceptorStatus.IDLE, what="IDLE after clear")
    insert_and_wait_credit(sim, listener, wait_until)


def test_jam_with_bill_in_escrow_credits_nothing(sim, listener, running, wait_until) -> None:
    listener.decision = EscrowDecision.HOLD
    sim.command("insert 500")
    wait_until(lambda: listener.escrows, what="escrow")
    sim.command("jam")
    wait_until(lambda: running.status is AcceptorStatus.JAMMED)
    sim.command("clear")  # technician pulls the bill out
    wait_until(lambda: running.status is AcceptorStatus.IDLE)
    assert listener.ledger == {} and sim.counters.stacked == 0


def test_pause_is_unlocked_by_reset(sim, listener, running, wait_until) -> None:
    resets = sim.counters.resets
    sim.command("pause")
    wait_until(lambda: listener.saw_status(AcceptorStatus.PAUSED), what="PAUSED")
    wait_until(lambda: sim.counters.resets == resets + 1, what="RESET after pause")
    wait_until(lambda: running.status is AcceptorStatus.IDLE, what="re-enabled after reset")
    assert sim.model.enabled  # mask restored after the reset
    insert_and_wait_credit(sim, listener, wait_until)


def test_second_bill_in_path_pauses_and_first_is_returned(
    sim, listener, running, wait_until
) -> None:
    listener.decision = EscrowDecision.HOLD
    sim.command("insert 500")
    wait_until(lambda: listener.escrows, what="escrow")
    assert sim.command("insert 100") == "pause"
    wait_until(lambda: listener.saw_status(AcceptorStatus.PAUSED), what="PAUSED")
    sim.wait_for("returned 500 RUB (reset)")
    wait_until(lambda: running.status is AcceptorStatus.IDLE)
    assert listener.ledger == {} and sim.counters.stacked == 0


def test_pause_found_on_reconnect_is_still_reset(sim, listener, running, wait_until) -> None:
    sim.command("unplug")
    wait_until(lambda: running.status is AcceptorStatus.OFFLINE)
    sim.command("pause")
    resets = sim.counters.resets
    sim.command("replug")
    wait_until(lambda: sim.counters.resets == resets + 1, what="RESET for a pause seen on resume")
    wait_until(lambda: running.status is AcceptorStatus.IDLE)


class PollsAtStatus(RecordingListener):
    """Notes the unit's POLL count at every status report (in the line thread, so the
    count is exact whatever the load)."""

    def __init__(self, sim: CcnetSimulator) -> None:
        super().__init__()
        self._sim = sim
        self.polls_at: list[tuple[AcceptorStatus, str, int]] = []

    def on_status(self, status: AcceptorStatus, detail: str) -> None:
        super().on_status(status, detail)
        self.polls_at.append((status, detail, self._sim.counters.polls))


def test_busy_waits_yh_times_100ms(sim, make_acceptor, wait_until) -> None:
    listener = PollsAtStatus(sim)
    running = make_acceptor(sim, listener)
    running.enable([RUB_500])
    wait_until(lambda: running.status is AcceptorStatus.IDLE, what="IDLE after enable")
    sim.command("busy 5")
    wait_until(lambda: listener.saw_status(AcceptorStatus.INITIALIZING, "busy for 500 ms"))
    wait_until(lambda: running.status is AcceptorStatus.IDLE, what="IDLE after busy")
    busy = next(i for i, (_s, d, _p) in enumerate(listener.polls_at) if "busy for 500" in d)
    idle = next(i for i, (s, _d, _p) in enumerate(listener.polls_at)
                if i > busy and s is AcceptorStatus.IDLE)
    # the unit asked for 500 ms of quiet: the next poll finds it idle (20 ms polls: ~25)
    assert listener.polls_at[idle][2] - listener.polls_at[busy][2] <= 2
    assert listener.ledger == {}


def test_stuck_accepting_becomes_jammed(
    listener, make_sim, make_acceptor, wait_until
) -> None:
    slow = make_sim(timing=SimTiming(init_s=0.05, accept_s=3.0))
    acceptor = make_acceptor(slow, listener)
    acceptor.enable([RUB_500])
    wait_until(lambda: acceptor.status is AcceptorStatus.IDLE)
    slow.command("insert 500")
    # Wait on the listener: the status attribute changes before the listener hears of it.
    wait_until(lambda: listener.saw_status(AcceptorStatus.JAMMED, "stuck in 0x15 accepting"),
               what="stuck timer")
    assert listener.ledger == {}


# -- power loss ----------------------------------------------------------------------------


def test_power_cycle_with_bill_in_validator_no_credit(sim, listener, running, wait_until) -> None:
    listener.decision = EscrowDecision.HOLD
    sim.command("insert 500")
    wait_until(lambda: listener.escrows, what="escrow")
    sim.command("power_cycle validator")
    sim.wait_for("returned 500 RUB (reset)")
    wait_until(lambda: running.status is AcceptorStatus.IDLE, what="IDLE after power cycle")
    assert listener.saw_status(AcceptorStatus.INITIALIZING, "bill in validator")
    assert listener.ledger == {} and listener.stacked_calls == []
    assert sim.counters.stacked == 0


def test_power_cycle_with_bill_in_stacker_credited_once_recovered(
    sim, listener, running, wait_until
) -> None:
    listener.decision = EscrowDecision.HOLD
    sim.command("insert 500")
    wait_until(lambda: listener.escrows, what="escrow")
    sim.command("power_cycle stacker")
    wait_until(lambda: listener.ledger, what="recovered credit")
    wait_until(lambda: running.status is AcceptorStatus.IDLE, what="IDLE after recovery")
    (stacked,) = listener.ledger.values()
    assert stacked.recovered and stacked.origin is StackOrigin.POWER_UP
    assert stacked.bill == Bill(RUB_500, "RUB", 5)
    assert len(listener.ledger) == 1 and sim.counters.stacked == 1
    sim.wait_for("host acked 0x81")


def test_restart_between_credit_and_ack_is_flagged_recovered(
    sim, listener, make_acceptor, wait_until
) -> None:
    """Process dies after the stacked report, before the ACK (M2/M6 crash window)."""
    first = make_acceptor(sim, listener)
    first.enable([RUB_500])
    wait_until(lambda: first.status is AcceptorStatus.IDLE)
    listener.fail_stacked = 10**6  # the commit never completes before the "crash"
    sim.command("insert 500")
    wait_until(lambda: listener.stacked_calls, what="stacked offered")
    table = first.info.bill_table
    first.stop()
    assert sim.model.event is not None  # never acknowledged

    listener.fail_stacked = 0
    second = make_acceptor(sim, listener, known_bills=table)
    wait_until(lambda: listener.ledger, what="credit in the new run")
    (stacked,) = listener.ledger.values()
    assert stacked.recovered  # the engine reconciles it against its escrow marker
    assert stacked.origin is StackOrigin.UNREQUESTED  # it may be the dead run's repeat
    assert stacked.event_key != listener.stacked_calls[0].event_key  # new run id
    assert second.status is AcceptorStatus.DISABLED
    assert sim.counters.stacked == 1


def test_restart_without_known_table_holds_the_event(
    sim, listener, make_acceptor, wait_until
) -> None:
    first = make_acceptor(sim, listener)
    first.enable([RUB_500])
    wait_until(lambda: first.status is AcceptorStatus.IDLE)
    listener.fail_stacked = 10**6
    sim.command("insert 500")
    wait_until(lambda: listener.stacked_calls, what="stacked offered")
    first.stop()
    listener.fail_stacked = 0
    second = make_acceptor(sim, listener, ready=False)
    wait_until(lambda: second.status is AcceptorStatus.FAILURE, what="FAILURE")
    assert "not in the bill table" in second.status_detail
    assert sim.model.event is not None  # still unacknowledged: not lost, not guessed
    assert listener.ledger == {}


# -- the line ------------------------------------------------------------------------------


def test_corrupt_crc_on_stacked_reply_nak_retry_one_credit(
    sim, listener, running, wait_until
) -> None:
    sim.when("stacked 500 RUB", "corrupt_crc")  # exactly the reply that carries 0x81
    naks = sim.counters.host_naks
    insert_and_wait_credit(sim, listener, wait_until)
    sim.wait_for("reply CRC corrupted")
    assert sim.counters.host_naks == naks + 1
    assert len(listener.stacked_calls) == 1 and len(listener.ledger) == 1
    assert not listener.saw_status(AcceptorStatus.OFFLINE)


def test_drop_reply_on_stacked_retries(sim, listener, running, wait_until) -> None:
    sim.when("stacked 500 RUB", "drop_reply")
    insert_and_wait_credit(sim, listener, wait_until)
    sim.wait_for("reply dropped")
    assert len(listener.ledger) == 1 and len(listener.stacked_calls) == 1
    assert not listener.saw_status(AcceptorStatus.OFFLINE)


def test_device_replaced_while_offline_is_reset_and_reenabled(
    tmp_path, listener, fast_profile: Profile, wait_until
) -> None:
    link = tmp_path / "ttySWAP"
    first = CcnetSimulator(link=link, timing=SimTiming(init_s=0.05)).start()
    acceptor = CcnetAcceptor(str(link), fast_profile)
    acceptor.start(listener)
    try:
        acceptor.enable([RUB_500])
        wait_until(lambda: acceptor.status is AcceptorStatus.IDLE)
        first.stop()
        wait_until(lambda: acceptor.status is AcceptorStatus.OFFLINE)
        second = CcnetSimulator(link=link, serial_number="41B000000002",
                                timing=SimTiming(init_s=0.05, accept_s=0.03,
                                                 stack_s=0.03)).start()
        try:
            wait_until(lambda: acceptor.status is AcceptorStatus.IDLE, what="re-enabled")
            assert second.counters.resets == 1 and second.model.enabled == {5}
            assert acceptor.info.serial_number == "41B000000002"  # re-identified
            second.command("insert 500")
            wait_until(lambda: listener.ledger, what="credit on new unit")
            (stacked,) = listener.ledger.values()
            assert stacked.event_key.startswith("ccnet:41B000000002:")
        finally:
            second.stop()
    finally:
        acceptor.stop()


def test_no_device_at_start_is_offline_then_connects(
    tmp_path, listener, fast_profile: Profile, wait_until
) -> None:
    link = tmp_path / "ttyLATE"
    acceptor = CcnetAcceptor(str(link), fast_profile)
    acceptor.start(listener)
    try:
        wait_until(lambda: listener.saw_status(AcceptorStatus.OFFLINE, "cannot open"))
        with CcnetSimulator(link=link, timing=SimTiming(init_s=0.05)):
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
    acceptor.enable([RUB_500])
    wait_until(lambda: acceptor.status is AcceptorStatus.IDLE)
    sim.command("reject optic")
    sim.wait_for("rejected 0x67")
    wait_until(lambda: acceptor.status is AcceptorStatus.IDLE)
    insert_and_wait_credit(sim, listener, wait_until)


def test_frame_log_records_traffic(sim, listener, make_acceptor, tmp_path) -> None:
    from drivers.framelog import FrameLog

    frame_log = FrameLog("test-driver", tmp_path / "ccnet-frames.log")
    acceptor = make_acceptor(sim, listener, frame_log=frame_log)
    acceptor.stop()
    frame_log.close()
    text = (tmp_path / "ccnet-frames.log").read_text()
    assert "TX 02 03 06 30 41 b3" in text  # RESET
    assert "TX 02 03 06 00 c2 82" in text  # ACK
    assert "RX 02 03 06 19 82 0f" in text  # Unit Disabled


# -- construction --------------------------------------------------------------------------


def test_wrong_profile_kind_is_refused(tmp_path, fast_profile: Profile) -> None:
    text = fast_profile.path.read_text().replace('protocol = "ccnet"', 'protocol = "id003"')
    path = tmp_path / "id003.toml"
    path.write_text(text)
    with pytest.raises(ProfileError, match="not acceptor/ccnet"):
        CcnetAcceptor("/dev/null", load_profile(path))


def test_start_twice_is_an_error(sim, listener, make_acceptor: Callable) -> None:
    from drivers.acceptor import AcceptorError

    acceptor = make_acceptor(sim, listener)
    with pytest.raises(AcceptorError):
        acceptor.start(listener)
