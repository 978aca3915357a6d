"""The protocol adapters alone: replies in, effects out, no port, no runner, no thread.

`CcnetProtocol` and `Id003Protocol` do no I/O (drivers/acceptor_effects.py): each step
yields effects and receives their results. Here a table of cases feeds each adapter the
unit's replies (and the answers the engine would give), and asserts the events it yields
- the money rules of docs/invariants.md in their smallest form:

- M1: a credit only on the point-of-no-return report (CCNET 0x81, ID-003 VEND VALID),
  never for a bill nobody can name, never twice for one report;
- M2: the report is acknowledged only after the credit was committed; a refused credit
  is not acknowledged and its repeat carries the same event key;
- M3: a bill in escrow is a question (`InEscrow`), answered by the engine; STACK is sent
  only as its decision;
- M4: the enable mask follows what the engine wants, and only in a settled state;
- M6: every credit names its origin (requested, after a power-up, unrequested).
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from drivers import acceptor_effects as fx
from drivers.acceptor import Bill, EscrowDecision, StackOrigin
from drivers.acceptor_effects import Escrow, Phase
from drivers.ccnet.device import CcnetProtocol
from drivers.ccnet.protocol import Command as CcnetCommand
from drivers.ccnet.protocol import Control
from drivers.ccnet.replies import ControlReply, PollReply
from drivers.ccnet.states import PollState
from drivers.ccnet.timing import CcnetTiming
from drivers.clock import ManualClock
from drivers.frame_link import NoReply
from drivers.id003.device import Id003Protocol
from drivers.id003.marker import StackMarker
from drivers.id003.protocol import Command as Id003Command
from drivers.id003.replies import AckReply, StatusReply
from drivers.id003.settings import Id003Settings
from drivers.id003.states import Status
from drivers.id003.timing import Id003Timing
from drivers.profiles import load_profile

PROFILES = Path(__file__).resolve().parents[2] / "firmware_profiles"
CCNET = load_profile(PROFILES / "cashcode_sm.toml")
ID003 = load_profile(PROFILES / "jcm_uba.toml")
RUB100 = Bill(10_000, "RUB", 2)
RUB500 = Bill(50_000, "RUB", 3)
JCM100 = Bill(10_000, "RUB", 0x62)


@dataclass
class View:
    """The runner as an adapter reads it (`AdapterView`), kept up to date by `Unit` the
    way the runner keeps itself: state codes, the last state, escrow."""

    timing: Any
    bills: dict[int, Bill]
    run_id: str = "run1"
    frame_log: Any = None
    clock: ManualClock = field(default_factory=ManualClock)
    currency: str | None = "RUB"
    phase: Phase = Phase.RUNNING
    state_code: int | None = None
    last_state: tuple[int, Any] | None = None
    stuck_reported: bool = False
    escrow: Escrow | None = None
    wanted: frozenset[int] = frozenset()

    def wanted_amounts(self) -> frozenset[int]:
        return self.wanted


class Unit:
    """Drives an adapter's steps: the unit's replies from a queue, the engine's answers
    from the case; every effect is recorded in order."""

    def __init__(self, view: View, ack: object, *, credit_ok: bool = True,
                 table: object = None) -> None:
        self.view = view
        self.ack = ack  # the unit's answer to a command
        self.credit_ok = credit_ok
        self.table = table  # the answer to a bill-table request (None: as `ack`)
        self.polls: list[fx.Polled] = []
        self.effects: list[fx.Effect] = []

    def feed(self, *replies: object, late: Iterable[object] = (),
             error: Exception | None = None) -> None:
        self.polls.append(fx.Polled(replies[0] if replies else None, tuple(late), error))
        for reply in replies[1:]:
            self.polls.append(fx.Polled(reply))

    def run(self, step: fx.Effects[Any]) -> Any:
        result: Any = None
        while True:
            try:
                effect = step.send(result)
            except StopIteration as done:
                return done.value
            self.effects.append(effect)
            result = self.answer(effect)

    def answer(self, effect: fx.Effect) -> Any:
        view = self.view
        match effect:
            case fx.Poll():
                return self.polls.pop(0)
            case fx.Send(command):
                table = command in (CcnetCommand.GET_BILL_TABLE,
                                    Id003Command.CURRENCY_ASSIGN_REQUEST)
                return self.table if table and self.table is not None else self.ack
            case fx.NoteState(code):
                view.state_code = code
            case fx.RecordState(code, data):
                new = view.last_state != (code, data)
                view.last_state = (code, data)
                return new
            case fx.Credit():
                return self.credit_ok
            case fx.ClearEscrow():
                view.escrow = None
            case fx.InEscrow(code):
                view.escrow = Escrow(code, view.bills.get(code) if code is not None else None,
                                     0.0)
        return None

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.effects if isinstance(e, kind)]

    def credits(self) -> list[fx.Credit]:
        return self.of(fx.Credit)

    def acked_after_credit(self) -> bool:
        """An Ack comes after the first Credit (never before it: M2)."""
        kinds = [type(e) for e in self.effects]
        return fx.Ack in kinds[kinds.index(fx.Credit):] if fx.Credit in kinds else False


def ccnet_unit(**kw: Any) -> tuple[CcnetProtocol, Unit]:
    view = View(CcnetTiming.from_profile(CCNET), {2: RUB100, 3: RUB500})
    unit = Unit(view, ControlReply(Control.ACK), **kw)
    return CcnetProtocol(view, 3), unit


def ccnet_poll(adapter: CcnetProtocol, unit: Unit, *replies: PollReply, **kw: Any) -> None:
    unit.feed(*replies, **kw)
    for _ in replies or (None,):
        unit.run(adapter.poll())


def stack(adapter: CcnetProtocol | Id003Protocol, unit: Unit) -> None:
    """The engine decided STACK for the bill in escrow (M3)."""
    esc = unit.view.escrow
    assert esc is not None, "no bill in escrow"
    esc.decision = EscrowDecision.STACK
    unit.run(adapter.send_decision(esc, EscrowDecision.STACK))


P = PollReply
IDLE, STACKING = P(PollState.IDLING), P(PollState.STACKING)


@pytest.mark.parametrize(
    ("story", "replies", "stacked_after", "origins"),
    [
        ("escrow, STACK, 0x81: requested", [P(PollState.ESCROW, 2), STACKING,
                                           P(PollState.STACKED, 2)], True,
         [StackOrigin.REQUESTED]),
        ("0x81 nobody asked for: unrequested", [P(PollState.STACKED, 2)], False,
         [StackOrigin.UNREQUESTED]),
        ("0x12 then 0x81: power-up", [P(PollState.POWER_UP_BILL_IN_STACKER),
                                      P(PollState.STACKED, 3)], False, [StackOrigin.POWER_UP]),
        ("0x81 repeated after its ACK was lost: one report, one key", [
            P(PollState.STACKED, 2), P(PollState.STACKED, 2)], False,
         [StackOrigin.UNREQUESTED, StackOrigin.UNREQUESTED]),
    ],
)
def test_ccnet_credits_name_their_origin_and_are_acked_after_the_credit(
    story: str, replies: list[PollReply], stacked_after: bool, origins: list[StackOrigin]
) -> None:
    adapter, unit = ccnet_unit()
    ccnet_poll(adapter, unit, *replies[:1])
    if stacked_after:
        assert unit.of(fx.InEscrow) == [fx.InEscrow(2)]  # M3: a question, not a decision
        stack(adapter, unit)
        assert fx.Send(CcnetCommand.STACK) in unit.effects
    ccnet_poll(adapter, unit, *replies[1:]) if replies[1:] else None
    credits = unit.credits()
    assert [c.stacked.origin for c in credits] == origins, story
    assert len({c.stacked.event_key for c in credits}) == 1, "one physical bill, one key (M2)"
    assert unit.acked_after_credit()


def test_ccnet_refused_credit_is_not_acked_and_its_repeat_keeps_the_key() -> None:
    adapter, unit = ccnet_unit(credit_ok=False)
    ccnet_poll(adapter, unit, P(PollState.STACKED, 2))
    assert len(unit.credits()) == 1 and fx.Ack() not in unit.effects  # M2
    unit.credit_ok = True
    ccnet_poll(adapter, unit, P(PollState.STACKED, 2))
    first, second = unit.credits()
    assert first.stacked.event_key == second.stacked.event_key
    assert unit.effects[-1] == fx.Ack()  # committed now: acknowledged


def test_ccnet_a_new_bill_after_the_unit_settled_has_a_new_key() -> None:
    adapter, unit = ccnet_unit()
    ccnet_poll(adapter, unit, P(PollState.STACKED, 2), IDLE, P(PollState.STACKED, 2))
    first, second = unit.credits()
    assert first.stacked.event_key != second.stacked.event_key


def test_ccnet_unknown_bill_type_is_never_credited_nor_acked() -> None:
    adapter, unit = ccnet_unit()
    ccnet_poll(adapter, unit, P(PollState.STACKED, 9))
    assert unit.credits() == []  # M1: nothing we cannot name
    assert fx.Ack() not in unit.effects  # the unit repeats it
    assert fx.Send(CcnetCommand.GET_BILL_TABLE,
                   timeout_s=unit.view.timing.link.ident_timeout_s) in unit.effects
    assert unit.of(fx.SetStatus)[-1].detail.startswith("bill stacked with type 9")


def test_ccnet_late_stacked_reply_is_credited_but_only_the_last_reply_is_acked() -> None:
    adapter, unit = ccnet_unit()
    ccnet_poll(adapter, unit, IDLE, late=[P(PollState.STACKED, 2)])
    assert len(unit.credits()) == 1
    kinds = [type(e) for e in unit.effects]
    assert kinds.count(fx.Ack) == 1
    assert kinds.index(fx.Ack) > kinds.index(fx.Credit)
    assert unit.effects[kinds.index(fx.Ack) - 1] == fx.NoteState(PollState.IDLING)


def test_ccnet_poll_failure_is_raised_after_the_late_replies_are_taken_in() -> None:
    adapter, unit = ccnet_unit()
    unit.feed(late=[P(PollState.STACKED, 2)], error=NoReply("silence"))
    with pytest.raises(NoReply):
        unit.run(adapter.poll())
    assert len(unit.credits()) == 1 and fx.Ack() not in unit.effects


@pytest.mark.parametrize(
    ("state", "wanted", "sent"),
    [
        (PollState.ESCROW, {10_000}, None),  # a bill moves: the mask waits
        (PollState.UNIT_DISABLED, {10_000}, bytes([0, 0, 0x04]) * 2),
        (PollState.IDLING, set(), bytes(6)),  # M4: nothing wanted, nothing taken
        (PollState.UNIT_DISABLED, set(), bytes(6)),  # never applied yet: applied now
    ],
)
def test_ccnet_enable_mask_follows_the_engine_only_when_settled(
    state: int, wanted: set[int], sent: bytes | None
) -> None:
    adapter, unit = ccnet_unit()
    unit.view.state_code = state
    unit.view.wanted = frozenset(wanted)
    unit.run(adapter.sync_enable())
    expected = [] if sent is None else [fx.Send(CcnetCommand.ENABLE_BILL_TYPES, sent)]
    assert unit.of(fx.Send) == expected


def test_ccnet_rejection_and_return_are_events_once_per_report() -> None:
    adapter, unit = ccnet_unit()
    ccnet_poll(adapter, unit, P(PollState.REJECTING, 0x60), P(PollState.REJECTING, 0x60),
               P(PollState.RETURNED, 3), P(PollState.RETURNED, 3))
    assert len(unit.of(fx.Rejected)) == 1
    assert unit.of(fx.Returned) == [fx.Returned(RUB500)]


def test_ccnet_power_up_while_running_asks_for_a_reset() -> None:
    adapter, unit = ccnet_unit()
    ccnet_poll(adapter, unit, P(PollState.POWER_UP))
    assert fx.RequestReset() in unit.effects


# -- ID-003 ----------------------------------------------------------------------------------

S = StatusReply
ENABLE = S(Status.ENABLE)


def id003_unit(**kw: Any) -> tuple[Id003Protocol, Unit]:
    view = View(Id003Timing.from_profile(ID003), {0x62: JCM100})
    unit = Unit(view, AckReply(), **kw)
    return Id003Protocol(view, Id003Settings.from_profile(ID003), StackMarker(None)), unit


def id003_poll(adapter: Id003Protocol, unit: Unit, *replies: StatusReply) -> None:
    unit.feed(*replies)
    for _ in replies:
        unit.run(adapter.poll())


def test_id003_escrow_stack_vend_valid_credits_once_and_acks_after() -> None:
    adapter, unit = id003_unit()
    id003_poll(adapter, unit, S(Status.ESCROW, b"\x62"))
    assert unit.of(fx.InEscrow) == [fx.InEscrow(0x62)]
    stack(adapter, unit)
    assert fx.Send(Id003Settings.from_profile(ID003).stack_command) in unit.effects
    id003_poll(adapter, unit, S(Status.STACKING), S(Status.VEND_VALID, b"\x62"),
               S(Status.STACKED), ENABLE)
    (credit,) = unit.credits()  # STACKED after VEND VALID is the same bill (M1)
    assert credit.stacked.bill == JCM100 and credit.stacked.origin is StackOrigin.REQUESTED
    assert unit.acked_after_credit()


def test_id003_refused_credit_is_not_acked_and_its_repeat_keeps_the_key() -> None:
    adapter, unit = id003_unit(credit_ok=False)
    id003_poll(adapter, unit, S(Status.VEND_VALID, b"\x62"))
    assert fx.Ack() not in unit.effects
    unit.credit_ok = True
    id003_poll(adapter, unit, S(Status.VEND_VALID, b"\x62"))
    first, second = unit.credits()
    assert first.stacked.event_key == second.stacked.event_key  # M2
    assert unit.effects[-1] == fx.Ack()  # committed now: acknowledged


@pytest.mark.parametrize(
    ("before", "origin"),
    [
        ([], StackOrigin.UNREQUESTED),
        ([S(Status.POWER_UP_BILL_IN_STACKER)], StackOrigin.POWER_UP),
    ],
)
def test_id003_vend_valid_names_its_origin(before: list[StatusReply], origin: StackOrigin
                                           ) -> None:
    adapter, unit = id003_unit()
    unit.view.phase = Phase.INITIALIZING  # a power-up seen while starting: no RESET asked
    id003_poll(adapter, unit, *before, S(Status.VEND_VALID, b"\x62"))
    assert [c.stacked.origin for c in unit.credits()] == [origin]


def test_id003_vend_valid_nobody_can_name_is_not_credited() -> None:
    adapter, unit = id003_unit()
    id003_poll(adapter, unit, S(Status.VEND_VALID))  # no escrow code, no STACK, no power-up
    assert unit.credits() == [] and fx.Ack() not in unit.effects  # M1
    assert "cannot name" in unit.of(fx.SetStatus)[-1].detail


def test_id003_returning_bill_in_escrow_is_reported_returned() -> None:
    adapter, unit = id003_unit()
    id003_poll(adapter, unit, S(Status.ESCROW, b"\x62"))
    unit.view.escrow = Escrow(0x62, JCM100, 0.0, EscrowDecision.RETURN)
    id003_poll(adapter, unit, S(Status.RETURNING))
    assert unit.of(fx.Returned) == [fx.Returned(JCM100)]
    assert unit.credits() == []


def drive_only(step: fx.Effects[Any], answer: Callable[[fx.Effect], Any]) -> list[fx.Effect]:
    """The effects of one step, answered by `answer` (for steps with no poll)."""
    out: list[fx.Effect] = []
    result: Any = None
    while True:
        try:
            effect = step.send(result)
        except StopIteration:
            return out
        out.append(effect)
        result = answer(effect)


def test_both_adapters_leave_the_unit_disabled_on_the_way_out() -> None:
    ccnet, _ = ccnet_unit()
    id003, _ = id003_unit()
    assert drive_only(ccnet.leave_disabled(), lambda e: None) == [
        fx.Send(CcnetCommand.ENABLE_BILL_TYPES, bytes(6))]
    assert drive_only(id003.leave_disabled(), lambda e: None) == [
        fx.Send(Id003Command.INHIBIT, b"\x01")]


@pytest.mark.parametrize("adapter", [CcnetProtocol, Id003Protocol])
def test_adapters_do_no_line_io_and_change_no_runner_state(adapter: type) -> None:
    """The adapter classes reach neither a link nor the runner's mutators: everything
    they do to the outside world goes through effects (a guard against a shortcut)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(adapter)))
    called = {node.func.attr for node in ast.walk(tree)
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)}
    forbidden = {"request", "exchange", "ack", "take_late", "require_link", "send_ack",
                 "write", "read", "on_stacked", "on_escrow", "on_returned", "on_rejected"}
    assert called & forbidden == set()
    attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert "_line" not in attributes
