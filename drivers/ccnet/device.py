"""`CcnetAcceptor`: the CCNET bill validator as a `drivers.acceptor.BillAcceptor`.

The line thread, the engine's request queue, reconnects, status reporting and escrow
questions are `drivers.acceptor_base.AcceptorRunner`; this module is CCNET's state
machine it drives (`CcnetProtocol`, its protocol adapter): the start-up sequence
(docs/protocols/ccnet.md, "Start-up"), POLL states turned into listener calls, the
enable mask, and the credit.

Money rules (docs/invariants.md M1-M4; docs/protocols/ccnet.md):
- credit only on 0x81, ACKed only after `on_stacked` returned; if it raises, no ACK, and
  the repeat is offered again with the same event key (`eventkeys`);
- escrow is a question to the engine; an unknown bill, a listener error or a hold that
  never ends returns the bill;
- the unit is left disabled after start-up and whenever the engine wants no bills; the
  enable mask is re-applied after any reset or reconnect;
- every credit carries its `StackOrigin`: power-up with a bill in the stacker (0x12) →
  the 0x81 that follows is POWER_UP (always a new stacking: the ledger never takes it for
  a repeat); a 0x81 this run sent no STACK for and no 0x12 explains (seen right after a
  driver restart) is UNREQUESTED, the only kind the ledger may recognise as the
  un-acknowledged repeat of an earlier run's bill; the outcome of our STACK is REQUESTED.
- a bill table without a single note of the terminal's currency (`currency`) makes the
  unit unusable: FAILURE with the reason, so the terminal goes out of service.
"""

from __future__ import annotations

import logging
from typing import Unpack

from drivers import acceptor_effects as fx
from drivers.acceptor import AcceptorStatus, Bill, EscrowDecision, StackedBill, StackOrigin
from drivers.acceptor_base import (
    READ_TIMEOUT_S,
    UNIDENTIFIED,
    AcceptorOptions,
    AcceptorRunner,
    PortOpener,
    ProtocolTraits,
    default_opener,
)
from drivers.acceptor_effects import AdapterView, Effects, Escrow, Phase
from drivers.acceptor_profiles import check_acceptor_profile
from drivers.ccnet.billtable import bills_of, encode_mask
from drivers.ccnet.eventkeys import StackedEdge
from drivers.ccnet.link import CcnetLink, SerialPort
from drivers.ccnet.protocol import BUSY_UNIT_S, MASK_LEN, Address, Command, Control
from drivers.ccnet.replies import BillTable, ControlReply, Identification, PollReply, Reply
from drivers.ccnet.states import (
    IDENT_STATES,
    INITIALIZING_STATES,
    POWER_UP_STATES,
    SETTLED_STATES,
    TRANSIENT_STATES,
    PollState,
    abstract_status,
    describe,
    reject_reason_text,
)
from drivers.ccnet.timing import CcnetTiming
from drivers.profiles import Profile, ProfileError

__all__ = ["LABEL", "PROTOCOL", "READ_TIMEOUT_S", "CcnetAcceptor", "PortOpener",
           "check_ccnet_profile", "default_opener", "profile_address"]

log = logging.getLogger(__name__)

PROTOCOL = "ccnet"
LABEL = "CCNET"

_DECISION_COMMANDS = {
    EscrowDecision.STACK: Command.STACK,
    EscrowDecision.RETURN: Command.RETURN,
    EscrowDecision.HOLD: Command.HOLD,
}
_IN_BILL_PATH = TRANSIENT_STATES | {PollState.ESCROW, PollState.HOLDING}
_AFTER_BILL_PATH = frozenset({PollState.STACKED, PollState.RETURNED})

TRAITS = ProtocolTraits(
    protocol=PROTOCOL,
    label=LABEL,
    unit="device",
    power_up_states=POWER_UP_STATES,
    initializing_states=INITIALIZING_STATES,
    credit_state=PollState.STACKED,
    in_bill_path=_IN_BILL_PATH,
    transient_states=TRANSIENT_STATES,
    log=log,
)


class CcnetAcceptor(AcceptorRunner[CcnetLink, CcnetTiming]):
    """CashCode CCNET bill validator on one serial port.

    `port` is a device path, a pty path or a pyserial URL; `profile` supplies serial
    settings and [timing] (`timing` overrides the latter); the auto profiles are matched
    against the part number from IDENTIFICATION; the other options
    (`drivers.acceptor_base.AcceptorOptions`) are every protocol's.

    `known_bills` / `bill_table_cache` matter only after a crash between a credit and its
    ACK: the unit then reports the stacked bill first and refuses GET BILL TABLE until it
    is ACKed.

    It is the shared runner with the CCNET adapter composed in; it adds nothing else.
    """

    def __init__(self, port: str, profile: Profile, *, timing: CcnetTiming | None = None,
                 **options: Unpack[AcceptorOptions]) -> None:
        super().__init__(
            port,
            profile,
            traits=TRAITS,
            check=check_ccnet_profile,
            timing_of=CcnetTiming.from_profile,
            adapter=lambda view: CcnetProtocol(view, profile_address(profile)),
            timing=timing,
            **options,
        )


class CcnetProtocol:
    """CCNET's state machine as the runner's `ProtocolAdapter`: it keeps the protocol's
    own state (identification, applied mask, the stacked event and its origin), reads the
    runner through `AdapterView` and does no I/O: every step yields its requests and
    events (`drivers.acceptor_effects`) for the runner to perform."""

    def __init__(self, view: AdapterView[CcnetTiming], address: int) -> None:
        self._view = view
        self._address = address
        self._ident: Identification | None = None
        self._applied_mask: int | None = None
        self._edge = StackedEdge(view.run_id)
        self._stack_sent = False  # STACK sent this run, its outcome not yet settled
        self._recovery_pending = False  # 0x12 seen: the next 0x81 is a power-up bill
        self._table_retry_key: str | None = None  # the stacked event GET BILL TABLE was retried for

    # -- the port and the link -----------------------------------------------------------

    def new_link(self, port: SerialPort) -> CcnetLink:
        view = self._view
        return CcnetLink(port, view.timing.link, view.frame_log, self._address, view.clock)

    def leave_disabled(self) -> Effects[None]:
        yield fx.Send(Command.ENABLE_BILL_TYPES, bytes(2 * MASK_LEN))  # M4: leave it disabled

    # -- RESET and identification --------------------------------------------------------

    def initializing(self, code: int | None) -> Effects[None]:
        """Nothing to send while a CCNET unit initializes."""
        yield from ()

    def settle_power_up(self) -> Effects[None]:
        """A CCNET power-up with a bill in the stacker settles by its own 0x81."""
        yield from ()

    def profile_adopted(self, profile: Profile) -> None:
        """A CCNET profile says nothing besides timing."""

    def unusable_hint(self) -> str:
        return ""

    def reset_unit(self) -> Effects[None]:
        """RESET; then wait through power-up/initialize/busy, identify, disable."""
        reply = yield fx.Send(Command.RESET)
        if not _is_ack(reply):
            log.warning("RESET answered with %r", reply)
        self._applied_mask = None

    def init_poll_delay(self, reply: PollReply | None) -> float:
        if reply is not None and reply.z1 == PollState.BUSY and reply.z2:
            return reply.z2 * BUSY_UNIT_S  # YH × 100 ms before the next poll
        return self._view.timing.reset_poll_s

    def initialized(self) -> Effects[None]:
        yield from self._send_enable(0)  # M4: disabled until the engine asks (sync_enable)

    def may_identify(self) -> bool:
        """IDENTIFICATION and GET BILL TABLE are legal only in some states (ccnet.md)."""
        return self._view.state_code in IDENT_STATES

    def identify(self) -> Effects[None]:
        reply = yield fx.Send(Command.IDENTIFICATION,
                              timeout_s=self._view.timing.link.ident_timeout_s)
        if not isinstance(reply, Identification):
            log.warning("IDENTIFICATION answered with %r", reply)
            return
        if self._ident is not None and self._ident.serial_number != reply.serial_number:
            log.warning("CCNET unit replaced: serial %s, was %s", reply.serial_number,
                        self._ident.serial_number)
        self._ident = reply
        yield fx.Identified("part number", reply.part_number)

    def read_bill_table(self) -> Effects[None]:
        reply = yield fx.Send(Command.GET_BILL_TABLE,
                              timeout_s=self._view.timing.link.ident_timeout_s)
        if isinstance(reply, BillTable):
            yield fx.StoreBills({b.bill_type: b for b in bills_of(reply.records)},
                                "device bill table differs from the known one; using the device's")
        else:
            log.warning("GET BILL TABLE answered with %r", reply)

    def identity(self) -> tuple[str, str, str]:
        ident = self._ident
        if ident is None:
            return "", "", ""
        return ident.part_number, ident.serial_number, ident.firmware

    # -- enable mask ---------------------------------------------------------------------

    def _wanted_mask(self) -> int:
        amounts = self._view.wanted_amounts()
        currency = self._view.currency
        types = [
            t
            for t, bill in self._view.bills.items()
            if bill.amount_minor in amounts and (currency is None or bill.currency == currency)
        ]
        return int.from_bytes(encode_mask(types), "big")

    def sync_enable(self) -> Effects[None]:
        """Bring the unit's enable mask to what the engine wants (only when no bill moves)."""
        if self._view.state_code not in SETTLED_STATES:
            return
        want = self._wanted_mask()
        device_enabled = self._view.state_code == PollState.IDLING
        if want == self._applied_mask and bool(want) == device_enabled:
            return
        yield from self._send_enable(want)

    def _send_enable(self, mask: int) -> Effects[None]:
        raw = mask.to_bytes(MASK_LEN, "big")
        reply = yield fx.Send(Command.ENABLE_BILL_TYPES, raw + raw)  # escrow = enable
        if _is_ack(reply):
            self._applied_mask = mask
        else:
            log.warning("ENABLE BILL TYPES %s answered with %r", raw.hex(), reply)

    # -- polling -------------------------------------------------------------------------

    def poll(self) -> Effects[PollReply | None]:
        polled: fx.Polled = yield fx.Poll(Command.POLL)
        for late in polled.late:  # they arrived before this answer (or failure)
            yield from self._on_late_poll(late)
        if polled.error is not None:
            raise polled.error
        reply = polled.reply
        if not isinstance(reply, PollReply):
            yield fx.Ack()
            log.warning("unexpected POLL reply %r", reply)
            return None
        yield fx.NoteState(reply.z1)
        if reply.z1 == PollState.STACKED:
            if (yield from self._on_stacked(reply.z2)):
                yield fx.Ack()
        else:
            yield fx.Ack()  # nothing in this reply needs the ledger first
            self._edge.observe(reply.z1)
            yield from self._on_state(reply)
        return reply

    def _on_late_poll(self, reply: PollReply) -> Effects[None]:
        """A POLL reply that answered an earlier POLL (a late or retransmitted reply).

        It is not the unit's last word, so it is never ACKed and starts no escrow
        decision; but a Bill Stacked in it may be the only report of that bill (the unit
        may have taken an ACK as meant for it), so it is credited like any 0x81 - a
        repeat with no other state in between keeps its event key (M2). Other states only
        end a stacked event, in the order the unit sent them; a late power-up with a bill
        in the stacker (0x12) still names the origin of the 0x81 that follows it.
        """
        log.info("late POLL reply: %s", describe(reply.z1, reply.z2))
        yield fx.NoteState(reply.z1)
        if reply.z1 == PollState.STACKED:
            yield from self._on_stacked(reply.z2)
            return
        self._edge.observe(reply.z1)
        if reply.z1 == PollState.POWER_UP_BILL_IN_STACKER:
            self._recovery_pending = True

    def _on_state(self, reply: PollReply) -> Effects[None]:
        z1, z2 = reply.z1, reply.z2
        new_event = yield fx.RecordState(z1, z2)
        if not self._view.stuck_reported:
            yield fx.SetStatus(abstract_status(z1), describe(z1, z2))
        if z1 not in (PollState.ESCROW, PollState.HOLDING):
            yield fx.ClearEscrow()
        if z1 in POWER_UP_STATES:
            if z1 == PollState.POWER_UP_BILL_IN_STACKER:
                self._recovery_pending = True
            if self._view.phase is Phase.RUNNING:
                log.warning("CCNET unit powered up while running (%s); resetting", describe(z1))
                yield fx.RequestReset()
        elif z1 == PollState.ESCROW:
            yield fx.InEscrow(z2)
        elif z1 == PollState.HOLDING:
            yield fx.Held()
        elif z1 == PollState.RETURNED and new_event:
            bill = self._bill(z2)
            if bill is not None:
                yield fx.Returned(bill)
        elif z1 == PollState.REJECTING and new_event:
            yield fx.Rejected(reject_reason_text(z2))
        elif z1 == PollState.PAUSE and self._view.phase is not Phase.INITIALIZING:
            yield fx.RequestReset()  # spec: RESET resolves the Pause deadlock
        if z1 in SETTLED_STATES:
            if self._recovery_pending and new_event:
                # Kept until a credit or our next STACK: a unit that settles before it
                # reports the bill in its stacker still reports a new stacking (issue 12).
                log.warning("power-up with bill in stacker, no stacked report yet (%s)",
                            describe(z1, z2))
            self._stack_sent = False

    def _bill(self, bill_type: int | None) -> Bill | None:
        return self._view.bills.get(bill_type) if bill_type is not None else None

    def _on_stacked(self, bill_type: int | None) -> Effects[bool]:
        """Offer the credit; True when the reply may be ACKed (the listener committed it)."""
        yield fx.RecordState(PollState.STACKED, bill_type)
        serial = self._ident.serial_number if self._ident else UNIDENTIFIED
        event = self._edge.stacked(bill_type, serial, self._stack_origin())
        bill = self._bill(bill_type)
        if bill is None and self._table_retry_key != event.key:
            self._table_retry_key = event.key  # the unit may refuse; try once per event
            yield from self.read_bill_table()
            bill = self._bill(bill_type)
        if bill is None:
            yield fx.SetStatus(
                AcceptorStatus.FAILURE,
                f"bill stacked with type {bill_type} not in the bill table; not acknowledged",
            )
            return False
        if not self._view.stuck_reported:
            yield fx.SetStatus(AcceptorStatus.ACCEPTING, describe(PollState.STACKED, bill_type))
        if not (yield fx.Credit(StackedBill(bill, event.key, event.origin))):
            return False
        self._stack_sent = False
        self._recovery_pending = False
        yield fx.ClearEscrow()
        return True

    def _stack_origin(self) -> StackOrigin:
        """Why the unit reports 0x81 now (fixed for the event by `StackedEdge`)."""
        if self._recovery_pending:
            return StackOrigin.POWER_UP  # 0x12 came first: a bill that was in the stacker
        return StackOrigin.REQUESTED if self._stack_sent else StackOrigin.UNREQUESTED

    # -- escrow --------------------------------------------------------------------------

    def warn_unnamed_escrow(self, esc: Escrow) -> None:
        log.warning("bill type %s in escrow is not in the bill table; returning", esc.code)

    def send_decision(self, esc: Escrow, decision: EscrowDecision) -> Effects[None]:
        if decision is EscrowDecision.STACK:
            self._stack_sent = True  # before sending: the ACK may be lost after it stacked
            self._recovery_pending = False  # the next 0x81 is this bill's
        reply = yield fx.Send(_DECISION_COMMANDS[decision])
        if not _is_ack(reply):
            log.warning("%s answered with %r", decision.value, reply)

    # -- timers --------------------------------------------------------------------------

    def next_poll_delay(self) -> float:
        last, code = self._view.last_state, self._view.state_code
        if code == PollState.BUSY and last and last[1]:
            return last[1] * BUSY_UNIT_S
        moving = code in _IN_BILL_PATH or code in _AFTER_BILL_PATH
        return self._view.timing.active_poll_s if moving else self._view.timing.poll_s

    def describe(self, code: int, data: int | None) -> str:
        return describe(code, data)


def check_ccnet_profile(profile: Profile) -> Profile:
    return check_acceptor_profile(profile, PROTOCOL)


def profile_address(profile: Profile) -> int:
    """[ccnet] address (default 0x03, bill validator), validated against the known ones."""
    address = profile.get("ccnet.address", int, int(Address.BILL_VALIDATOR))
    if address not in {a.value for a in Address}:
        raise ProfileError(f"{profile.path}: key 'ccnet.address' must be one of "
                           f"{sorted(a.value for a in Address)}, got {address}")
    return address


def _is_ack(reply: Reply) -> bool:
    return isinstance(reply, ControlReply) and reply.code == Control.ACK
