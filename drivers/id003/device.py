"""`Id003Acceptor`: a JCM ID-003 bill acceptor as a `drivers.acceptor.BillAcceptor`.

The line thread, the engine's request queue, reconnects, status reporting and escrow
questions are `drivers.acceptor_base.AcceptorRunner`; this module is ID-003's state
machine it drives (`Id003Protocol`, its protocol adapter): the start-up sequence (RESET,
settings while the unit initializes, VERSION and CURRENCY ASSIGN), STATUS REQUEST polls
turned into listener calls, the denomination mask and INHIBIT, the credit and the
power-up recovery.

Money rules (docs/invariants.md M1-M4, M6; docs/protocols/id003.md):
- credit only on VEND VALID (0x15), ACKed only after `on_stacked` returned; if it raises,
  no ACK, and the repeat is offered again with the same event key (`eventkeys`). The
  STACKED (0x16) that follows is the same bill and credits nothing;
- escrow is a question to the engine; an unknown bill, a barcode ticket, a listener error
  or a hold that never ends returns the bill;
- the unit is inhibited after start-up and whenever the engine wants no bills; the
  denomination mask and INHIBIT are re-applied after any reset, re-initialization or
  reconnect;
- power-up with a bill in the acceptor (0x41): RESET gives it back, reported as returned
  [U]; with a bill in the stacker (0x42): credited once, origin POWER_UP — by the VEND
  VALID that power recovery replays (OPTIONAL FUNCTION 0x02), or, when none comes, by the
  driver for the bill it sent STACK for (`marker`) [U]. That VEND VALID is a new stacking
  with a new key, named by its escrow code, else by the bill STACK was outstanding for,
  else reported unnamed (the ledger keeps it as an unclaimed credit of unknown value):
  never the last credited bill. The one exception is the replay of a bill credited just
  before the power went and never seen settled (`eventkeys`): the same event, the same
  key. A VEND VALID this run never asked for and no 0x42 explains is UNREQUESTED, so the
  ledger may recognise an earlier run's un-acknowledged report (M6);
- a currency table without a single note of the terminal's currency (`currency`; an
  unknown JCM country number with no `[id003] currency` in the profile) makes the unit
  unusable: FAILURE with the reason, so the terminal goes out of service.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
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
from drivers.id003.currency import (
    bills_of,
    codes_for,
    encode_inhibit_mask,
    unknown_country_hint,
)
from drivers.id003.eventkeys import VendEdge
from drivers.id003.link import Id003Link, SerialPort
from drivers.id003.marker import StackMarker
from drivers.id003.protocol import (
    COMMUNICATION_MODE_POLLED,
    INHIBIT_OFF,
    INHIBIT_ON,
    Command,
    OptionalFunction,
)
from drivers.id003.replies import (
    AckReply,
    CurrencyTable,
    InvalidCommand,
    Reply,
    SettingEcho,
    StatusReply,
    VersionReply,
)
from drivers.id003.settings import Id003Settings
from drivers.id003.states import (
    BARCODE_TICKET,
    BILL_DONE_STATES,
    DENOMINATION_CODES,
    IN_BILL_PATH,
    INITIALIZING_STATES,
    POWER_UP_STATES,
    SETTLED_STATES,
    TRANSIENT_STATES,
    Status,
    abstract_status,
    describe,
    reject_reason_text,
)
from drivers.id003.timing import Id003Timing
from drivers.profiles import Profile

__all__ = ["LABEL", "PROTOCOL", "READ_TIMEOUT_S", "Id003Acceptor", "PortOpener",
           "check_id003_profile", "default_opener"]

log = logging.getLogger(__name__)

PROTOCOL = "id003"
LABEL = "ID-003"

_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9()_.-]")
_OPTIONAL_FUNCTIONS = (Command.COMMUNICATION_MODE, Command.OPTIONAL_FUNCTION)
"""Settings an older firmware may not know (INVALID COMMAND is then logged, not fatal)."""


TRAITS = ProtocolTraits(
    protocol=PROTOCOL,
    label=LABEL,
    unit="unit",
    power_up_states=POWER_UP_STATES,
    initializing_states=INITIALIZING_STATES,
    credit_state=Status.VEND_VALID,
    in_bill_path=IN_BILL_PATH,
    transient_states=TRANSIENT_STATES,
    log=log,
)

class Id003Acceptor(AcceptorRunner[Id003Link, Id003Timing]):
    """JCM ID-003 bill acceptor (UBA, iVIZION, ...) on one serial port.

    `port` is a device path, a pty path or a pyserial URL; `profile` supplies serial
    settings (9600 8E1), [timing] (`timing` overrides it) and [id003]; the auto profiles
    are matched against the VERSION REQUEST string (an adopted one brings its timing and
    settings); the other options (`drivers.acceptor_base.AcceptorOptions`) are every
    protocol's.

    `known_bills` / `bill_table_cache` name the denominations before the unit has answered
    CURRENCY ASSIGN; `stack_marker` is the file that names the bill STACK was last sent
    for (see `marker`). Both matter only after a crash or a power cut with a bill in the
    stacker.

    It is the shared runner with the ID-003 adapter composed in; it adds nothing else.
    """

    def __init__(self, port: str, profile: Profile, *, timing: Id003Timing | None = None,
                 stack_marker: Path | None = None, **options: Unpack[AcceptorOptions]) -> None:
        settings = Id003Settings.from_profile(check_id003_profile(profile))
        super().__init__(
            port,
            profile,
            traits=TRAITS,
            check=_check_candidate,
            timing_of=Id003Timing.from_profile,
            adapter=lambda view: Id003Protocol(view, settings, StackMarker(stack_marker)),
            timing=timing,
            **options,
        )


class Id003Protocol:
    """ID-003's state machine as the runner's `ProtocolAdapter`: it keeps the protocol's
    own state (settings, version, applied mask, the bill being stacked, the power-up
    being resolved, the VEND VALID event), reads the runner through `AdapterView` and
    does no line I/O: every step yields its requests and events
    (`drivers.acceptor_effects`) for the runner to perform. The one thing it writes is
    the stack marker (`marker`, a small file the runner does not know about)."""

    def __init__(self, view: AdapterView[Id003Timing], settings: Id003Settings,
                 marker: StackMarker) -> None:
        self._view = view
        self._settings = settings
        self._version: VersionReply | None = None
        self._configured = False  # settings taken since the last RESET
        self._configure_tried_in: int | None = None  # state of the last refused attempt
        self._applied_codes: frozenset[int] | None = None  # codes the unit's mask enables
        self._stacking: Bill | None = None  # STACK sent, outcome not known yet
        self._powerup: Status | None = None  # 0x41/0x42 seen, not resolved yet
        self._powerup_bill: Bill | None = None
        self._marker = marker
        self._edge = VendEdge(view.run_id)
        self._unnamed_countries: list[int] = []  # JCM country numbers this driver cannot name
        self._stack_sent = False  # STACK sent this run, its outcome not yet settled
        self._recovery_pending = False  # 0x42 seen: its bill is not credited yet
        self._table_retry_key: str | None = None  # the code CURRENCY ASSIGN was retried for

    # -- the port and the link -----------------------------------------------------------

    def new_link(self, port: SerialPort) -> Id003Link:
        return Id003Link(port, self._view.timing.link, self._view.frame_log, self._view.clock)

    def leave_disabled(self) -> Effects[None]:
        yield fx.Send(Command.INHIBIT, bytes((INHIBIT_ON,)))  # M4

    # -- RESET, settings and identification ----------------------------------------------

    def reset_unit(self) -> Effects[None]:
        """RESET; the settings follow while the unit initializes (py-id003, Aristocrat),
        then it settles, is identified and stays inhibited."""
        reply = yield fx.Send(Command.RESET)
        if not isinstance(reply, AckReply):
            log.warning("RESET answered with %r", reply)
        self._configured = False
        self._configure_tried_in = None
        self._applied_codes = None

    def initializing(self, code: int | None) -> Effects[None]:
        if code == Status.INITIALIZE or code in SETTLED_STATES:
            yield from self._configure()

    def init_poll_delay(self, reply: StatusReply | None) -> float:
        return self._view.timing.reset_poll_s

    def initialized(self) -> Effects[None]:
        # a unit that settled before we saw INITIALIZE, or a fault state
        yield from self._configure()

    def _configure(self) -> Effects[None]:
        """Settings for a freshly reset unit: every denomination inhibited, polled mode,
        power recovery as the profile says, INHIBIT on (M4). Once per RESET; a unit that
        refuses is asked again only in another state."""
        if self._configured or self._configure_tried_in == self._view.state_code:
            return
        self._configure_tried_in = self._view.state_code
        options = OptionalFunction.POWER_RECOVERY if self._settings.power_recovery else 0
        steps = (
            (Command.ENABLE_DISABLE, encode_inhibit_mask(())),
            (Command.COMMUNICATION_MODE, bytes((COMMUNICATION_MODE_POLLED,))),
            (Command.OPTIONAL_FUNCTION, bytes((int(options), 0))),
            (Command.INHIBIT, bytes((INHIBIT_ON,))),
        )
        taken = True
        for command, data in steps:
            reply = yield fx.Send(command, data)
            if _echoed(reply, command, data):
                if command == Command.ENABLE_DISABLE:
                    self._applied_codes = frozenset()
                continue
            if command in _OPTIONAL_FUNCTIONS and isinstance(reply, InvalidCommand):
                log.warning("acceptor refuses setting 0x%02X (%s): not supported, ignored",
                            command, data.hex())
                continue
            log.warning("setting 0x%02X %s answered with %r", command, data.hex(), reply)
            taken = False
        self._configured = taken

    def may_identify(self) -> bool:
        """VERSION and CURRENCY ASSIGN are asked in any state the unit has reported."""
        return self._view.state_code is not None

    def identify(self) -> Effects[None]:
        reply = yield fx.Send(Command.VERSION_REQUEST,
                              timeout_s=self._view.timing.link.ident_timeout_s)
        if not isinstance(reply, VersionReply):
            log.warning("VERSION REQUEST answered with %r", reply)
            return
        if self._version is not None and self._version.text != reply.text:
            log.warning("ID-003 unit replaced or reflashed: %r, was %r", reply.text,
                        self._version.text)
        self._version = reply
        yield fx.Identified("version", reply.text)

    def profile_adopted(self, profile: Profile) -> None:
        settings = Id003Settings.from_profile(profile)  # validated in __init__
        if settings.power_recovery != self._settings.power_recovery:
            self._configured = False  # send OPTIONAL FUNCTION again, with this profile's bit
            self._configure_tried_in = None
        self._settings = settings

    def read_bill_table(self) -> Effects[None]:
        reply = yield fx.Send(Command.CURRENCY_ASSIGN_REQUEST,
                              timeout_s=self._view.timing.link.ident_timeout_s)
        if not isinstance(reply, CurrencyTable):
            log.warning("CURRENCY ASSIGN REQUEST answered with %r", reply)
            return
        fallback = self._settings.currency
        bills = {b.bill_type: b for b in bills_of(reply.records, fallback)}
        unnamed = [r for r in reply.records if r.base and r.to_bill(fallback) is None]
        self._unnamed_countries = sorted({r.country for r in unnamed
                                          if r.escrow_code in DENOMINATION_CODES})
        if unnamed:
            log.warning("denominations with unknown country numbers are never enabled: %s "
                        "(set [id003] currency in the profile)", unnamed)
        yield fx.StoreBills(bills, "acceptor currency table differs from the known one; "
                                   "using the unit's")

    def unusable_hint(self) -> str:
        return unknown_country_hint(self._unnamed_countries)

    def identity(self) -> tuple[str, str, str]:
        version = self._version
        if version is None:
            return "", "", ""
        return version.model, "", version.firmware  # ID-003 has no serial-number request [U]

    def _model_token(self) -> str:
        model = self._version.model if self._version else ""
        return _KEY_UNSAFE.sub("", model) or UNIDENTIFIED

    # -- line thread: enable mask and inhibit --------------------------------------------

    def _wanted_codes(self) -> frozenset[int]:
        amounts = self._view.wanted_amounts()
        return codes_for(self._view.bills, amounts, self._view.currency)

    def sync_enable(self) -> Effects[None]:
        """Bring the unit's mask and INHIBIT to what the engine wants (only when settled).

        The mask is changed while the unit idles, without inhibiting first [U: whether a
        unit takes 0xC0 in ENABLE; py-id003 and lamassu send it only while initializing].
        """
        if self._view.state_code not in SETTLED_STATES:
            return
        if not self._configured:
            yield from self._configure()  # the unit was busy with a bill or a fault when it reset
        want = self._wanted_codes()
        enabled = self._view.state_code == Status.ENABLE
        if want and want != self._applied_codes:
            mask = encode_inhibit_mask(want)
            reply = yield fx.Send(Command.ENABLE_DISABLE, mask)
            if not _echoed(reply, Command.ENABLE_DISABLE, mask):
                log.warning("ENABLE/DISABLE %s answered with %r", mask.hex(), reply)
                return
            self._applied_codes = want
        if bool(want) != enabled:
            value = INHIBIT_OFF if want else INHIBIT_ON
            reply = yield fx.Send(Command.INHIBIT, bytes((value,)))
            if not _echoed(reply, Command.INHIBIT, bytes((value,))):
                log.warning("INHIBIT %d answered with %r", value, reply)

    # -- line thread: polling ------------------------------------------------------------

    def poll(self) -> Effects[StatusReply | None]:
        polled: fx.Polled = yield fx.Poll(Command.STATUS_REQUEST)
        if polled.error is not None:
            raise polled.error  # an ID-003 link keeps no late replies
        reply = polled.reply
        if not isinstance(reply, StatusReply):
            log.warning("unexpected STATUS REQUEST reply %r", reply)
            return None
        yield fx.NoteState(reply.code)
        if reply.code == Status.VEND_VALID:
            if (yield from self._on_vend_valid(reply)):
                yield fx.Ack()
        else:
            yield from self._on_state(reply)
        return reply

    def _on_state(self, reply: StatusReply) -> Effects[None]:
        code, data = reply.code, reply.data
        new_event = yield fx.RecordState(code, data)
        if not self._view.stuck_reported:
            yield fx.SetStatus(abstract_status(code), describe(code, data))
        escrow = self._view.escrow
        in_path = self._stacking or (escrow.bill if escrow else None)
        if code in POWER_UP_STATES:
            self._note_power_up(Status(code), in_path)
            if self._view.phase is Phase.RUNNING:
                log.warning("ID-003 unit powered up while running (%s); resetting",
                            describe(code))
                yield fx.RequestReset()
        elif code in (Status.RETURNING, Status.REJECTING) and in_path is not None:
            # A bill we saw in escrow (or sent STACK for) is going back to the customer:
            # our RETURN, the unit's escrow timeout (0x79), or a failed stack.
            if code == Status.REJECTING:
                log.info("bill in escrow rejected: %s", reject_reason_text(reply.first))
            yield from self._bill_returned(in_path)
        elif code == Status.REJECTING and new_event:
            yield fx.Rejected(reject_reason_text(reply.first))
        elif code == Status.ESCROW:
            yield fx.InEscrow(reply.first)
        elif code == Status.HOLDING:
            yield fx.Held()
        elif code == Status.PAUSE and self._view.phase is not Phase.INITIALIZING:
            yield fx.RequestReset()  # RESET resolves the pause deadlock
        elif code == Status.INITIALIZE and self._view.phase is Phase.RUNNING:
            self._applied_codes = None  # re-initializing on its own: settings may be lost
        if code not in (Status.ESCROW, Status.HOLDING):
            yield fx.ClearEscrow()
        if code in BILL_DONE_STATES and self._powerup is None:
            self._edge.settled()  # a VEND VALID from now on is another physical bill
        if code in SETTLED_STATES:
            self._stack_sent = False
            if self._stacking is not None and self._powerup is None:
                # Nothing in the path and no VEND VALID for it: it never reached the point
                # of no return (a jam cleared by hand, a failed stack).
                log.warning("%s: STACK was sent, the unit settled without VEND VALID",
                            self._stacking)
                self._stacking = None
                self._marker.close()

    def _bill_returned(self, bill: Bill) -> Effects[None]:
        yield fx.ClearEscrow()
        if self._stacking is not None:
            self._stacking = None
            self._marker.close()
        yield fx.Returned(bill)

    # -- line thread: the point of no return ---------------------------------------------

    def _vend_bill(self, reply: StatusReply, origin: StackOrigin) -> Effects[Bill | None]:
        """The bill a VEND VALID is for: the unit's escrow code if it sends one [U], else
        after a power-up with a bill in the stacker the bill STACK was outstanding for,
        else the one already reported (a repeat, or the replay of a bill not yet settled),
        else, for the first report of this run, the one on disk (a repeat after a
        restart). None: nobody can name it."""
        code = reply.first
        if code is not None:
            bill = self._view.bills.get(code)
            if bill is None and self._table_retry_key != f"{self._view.run_id}:{code}":
                self._table_retry_key = f"{self._view.run_id}:{code}"  # once per code
                yield from self.read_bill_table()
                bill = self._view.bills.get(code)
            expected = self._stacking
            if bill is not None and expected is not None and expected != bill:
                log.warning("VEND VALID names %s, STACK was sent for %s; trusting the unit",
                            bill, expected)
            return bill
        current = self._edge.current
        if origin is StackOrigin.POWER_UP:
            return self._powerup_bill or (current.bill if current is not None else None)
        return (
            self._stacking
            or (current.bill if current is not None else None)
            or (self._marker.last_bill if self._edge.fresh else None)
        )

    def _vend_origin(self) -> StackOrigin:
        if self._powerup == Status.POWER_UP_BILL_IN_STACKER and self._recovery_pending:
            return StackOrigin.POWER_UP
        return StackOrigin.REQUESTED if self._stack_sent else StackOrigin.UNREQUESTED

    def _on_vend_valid(self, reply: StatusReply) -> Effects[bool]:
        """Offer the credit; True when the reply may be ACKed (the listener committed it)."""
        yield fx.RecordState(reply.code, reply.data)
        origin = self._vend_origin()
        bill = yield from self._vend_bill(reply, origin)
        if bill is None and origin is not StackOrigin.POWER_UP:
            yield fx.SetStatus(
                AcceptorStatus.FAILURE,
                f"{describe(reply.code, reply.data)} for a bill this driver cannot name; "
                "not acknowledged",
            )
            return False
        if bill is None:
            log.warning("VEND VALID after power up with bill in stacker, no escrow code and "
                        "no STACK outstanding: reporting a bill of unknown value")
        if not self._view.stuck_reported:
            yield fx.SetStatus(AcceptorStatus.ACCEPTING, describe(reply.code, reply.data))
        return (yield from self._credit(bill, origin))

    def _credit(self, bill: Bill | None, origin: StackOrigin) -> Effects[bool]:
        event = self._edge.vend_valid(bill, self._model_token(), origin)
        stacked = StackedBill(event.bill, event.key, event.origin, self._bills_currency())
        if not (yield fx.Credit(stacked)):
            return False
        self._stack_sent = False
        self._stacking = None
        yield fx.ClearEscrow()
        if self._powerup == Status.POWER_UP_BILL_IN_STACKER:
            self._powerup = None  # resolved by the replayed VEND VALID
        self._recovery_pending = False
        self._marker.close()
        return True

    def _bills_currency(self) -> str:
        """The currency of the bills this unit takes ("" if unknown or mixed)."""
        if self._view.currency is not None:
            return self._view.currency
        currencies = {b.currency for b in self._view.bills.values()}
        return currencies.pop() if len(currencies) == 1 else ""

    def _note_power_up(self, code: Status, in_path: Bill | None) -> None:
        if self._powerup != code:
            self._powerup = code
            open_bill = self._marker.open_bill if code == Status.POWER_UP_BILL_IN_STACKER else None
            self._powerup_bill = in_path or open_bill
        if code == Status.POWER_UP_BILL_IN_STACKER:
            self._recovery_pending = True
        self._stacking = None

    def settle_power_up(self) -> Effects[None]:
        """Resolve a power-up with a bill inside once the unit has settled after RESET."""
        code, bill = self._powerup, self._powerup_bill
        if code is None or self._view.state_code not in SETTLED_STATES:
            return
        if code == Status.POWER_UP_BILL_IN_ACCEPTOR:
            log.info("power up with bill in acceptor: %s returned by the reset [U]", bill)
            if bill is not None:
                yield fx.Returned(bill)
            self._marker.close()
        elif code == Status.POWER_UP_BILL_IN_STACKER and self._recovery_pending:
            if bill is None and self._edge.current is not None:
                log.warning("power up with bill in stacker: the bill credited just before "
                            "(%s) was still going in; nothing more to credit",
                            self._edge.current.key)
            else:
                if bill is None:
                    log.warning("power up with bill in stacker, no VEND VALID after it and "
                                "no STACK outstanding: reporting a bill of unknown value")
                else:
                    log.warning("power up with bill in stacker and no VEND VALID after it "
                                "(power recovery off or unsupported): crediting %s", bill)
                if not (yield from self._credit(bill, StackOrigin.POWER_UP)):
                    return  # the listener failed: try again on the next loop
        self._powerup = None
        self._powerup_bill = None
        self._recovery_pending = False

    # -- line thread: escrow -------------------------------------------------------------

    def warn_unnamed_escrow(self, esc: Escrow) -> None:
        what = ("a barcode ticket" if esc.code == BARCODE_TICKET
                else f"escrow code {esc.code!r}, not in the currency table")
        log.warning("%s in escrow; returning", what)

    def send_decision(self, esc: Escrow, decision: EscrowDecision) -> Effects[None]:
        if decision is EscrowDecision.STACK and esc.bill is not None:
            # Before sending: the reply may be lost after the unit took it (M6).
            if self._stacking != esc.bill or not self._stack_sent:
                self._marker.sent(esc.bill)
            self._stacking = esc.bill
            self._stack_sent = True
            self._edge.stack_sent()
            command = self._settings.stack_command
        elif decision is EscrowDecision.HOLD:
            command = Command.HOLD
        else:
            command = Command.RETURN
        reply = yield fx.Send(command)
        if not isinstance(reply, AckReply):
            log.warning("%s (0x%02X) answered with %r", decision.value, command,
                        reply)

    # -- line thread: timers -------------------------------------------------------------

    def next_poll_delay(self) -> float:
        moving = self._view.state_code in IN_BILL_PATH
        return self._view.timing.active_poll_s if moving else self._view.timing.poll_s

    def describe(self, code: int, data: bytes) -> str:
        return describe(code, data)


def check_id003_profile(profile: Profile) -> Profile:
    return check_acceptor_profile(profile, PROTOCOL)


def _check_candidate(profile: Profile) -> Profile:
    """An ID-003 acceptor profile whose [id003] settings are good too."""
    Id003Settings.from_profile(check_id003_profile(profile))
    return profile


def _echoed(reply: Reply, command: int, data: bytes) -> bool:
    return isinstance(reply, SettingEcho) and reply.command == command and reply.data == data
