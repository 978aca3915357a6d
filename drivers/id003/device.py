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
from collections.abc import Iterable
from pathlib import Path

from drivers.acceptor import AcceptorStatus, Bill, EscrowDecision, StackedBill, StackOrigin
from drivers.acceptor_base import (
    READ_TIMEOUT_S,
    UNIDENTIFIED,
    AcceptorRunner,
    Escrow,
    Phase,
    PortOpener,
    ProtocolTraits,
    default_opener,
)
from drivers.acceptor_profiles import check_acceptor_profile
from drivers.clock import SYSTEM_CLOCK, Clock
from drivers.framelog import FrameLog
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
    settings (9600 8E1), [timing] and [id003]. With `auto_profiles`, `profile` is only the
    starting point: after VERSION REQUEST the first of them whose patterns match the
    version string takes over (its timing and settings; the line settings that already
    work are kept).

    Raw frames go to `frame_log` (caller-owned) or to a log the driver opens at
    `frame_log_path` and closes on stop.

    `known_bills` / `bill_table_cache` name the denominations before the unit has answered
    CURRENCY ASSIGN (the cache is rewritten whenever the unit's table is read);
    `stack_marker` is the file that names the bill STACK was last sent for (see
    `marker`). Both matter only after a crash or a power cut with a bill in the stacker.
    `currency` (ISO 4217), if given, restricts `enable` to that currency.

    It is the shared runner with the ID-003 adapter composed in; it adds nothing else.
    """

    def __init__(
        self,
        port: str,
        profile: Profile,
        *,
        frame_log: FrameLog | None = None,
        frame_log_path: Path | None = None,
        timing: Id003Timing | None = None,
        auto_profiles: Iterable[Profile] = (),
        known_bills: Iterable[Bill] = (),
        bill_table_cache: Path | None = None,
        stack_marker: Path | None = None,
        currency: str | None = None,
        opener: PortOpener = default_opener,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        check_id003_profile(profile)
        timing = timing or Id003Timing.from_profile(profile)
        settings = Id003Settings.from_profile(profile)
        # every candidate is validated now: a bad profile is a start-up error, not a surprise
        auto = [(p, _candidate_timing(p)) for p in auto_profiles]
        super().__init__(
            port,
            profile,
            timing,
            traits=TRAITS,
            adapter=lambda line: Id003Protocol(line, settings, stack_marker),
            auto=auto,
            frame_log=frame_log,
            frame_log_path=frame_log_path,
            known_bills=known_bills,
            bill_table_cache=bill_table_cache,
            currency=currency,
            opener=opener,
            clock=clock,
        )


class Id003Protocol:
    """ID-003's state machine as the runner's `ProtocolAdapter`: it keeps the protocol's
    own state (settings, version, applied mask, the bill being stacked, the power-up
    being resolved, the VEND VALID event) and reaches the runner only through its
    adapter section."""

    def __init__(self, line: AcceptorRunner[Id003Link, Id003Timing], settings: Id003Settings,
                 stack_marker: Path | None) -> None:
        self._line = line
        self._settings = settings
        self._version: VersionReply | None = None
        self._configured = False  # settings taken since the last RESET
        self._configure_tried_in: int | None = None  # state of the last refused attempt
        self._applied_codes: frozenset[int] | None = None  # codes the unit's mask enables
        self._stacking: Bill | None = None  # STACK sent, outcome not known yet
        self._powerup: Status | None = None  # 0x41/0x42 seen, not resolved yet
        self._powerup_bill: Bill | None = None
        self._marker = StackMarker(stack_marker)
        self._edge = VendEdge(line.run_id)
        self._unnamed_countries: list[int] = []  # JCM country numbers this driver cannot name
        self._stack_sent = False  # STACK sent this run, its outcome not yet settled
        self._recovery_pending = False  # 0x42 seen: its bill is not credited yet
        self._table_retry_key: str | None = None  # the code CURRENCY ASSIGN was retried for

    # -- the port and the link -----------------------------------------------------------

    def new_link(self, port: SerialPort) -> Id003Link:
        return Id003Link(port, self._line.timing.link, self._line.frame_log, self._line.clock)

    def leave_disabled(self, link: Id003Link) -> None:
        link.request(Command.INHIBIT, bytes((INHIBIT_ON,)))  # M4

    # -- RESET, settings and identification ----------------------------------------------

    def reset_unit(self) -> None:
        """RESET; the settings follow while the unit initializes (py-id003, Aristocrat),
        then it settles, is identified and stays inhibited."""
        reply = self._line.request(Command.RESET)
        if not isinstance(reply, AckReply):
            log.warning("RESET answered with %r", reply)
        self._configured = False
        self._configure_tried_in = None
        self._applied_codes = None

    def initializing(self, code: int | None) -> None:
        if code == Status.INITIALIZE or code in SETTLED_STATES:
            self._configure()

    def init_poll_delay(self, reply: StatusReply | None) -> float:
        return self._line.timing.reset_poll_s

    def initialized(self) -> None:
        self._configure()  # a unit that settled before we saw INITIALIZE, or a fault state

    def _configure(self) -> None:
        """Settings for a freshly reset unit: every denomination inhibited, polled mode,
        power recovery as the profile says, INHIBIT on (M4). Once per RESET; a unit that
        refuses is asked again only in another state."""
        if self._configured or self._configure_tried_in == self._line.state_code:
            return
        self._configure_tried_in = self._line.state_code
        options = OptionalFunction.POWER_RECOVERY if self._settings.power_recovery else 0
        steps = (
            (Command.ENABLE_DISABLE, encode_inhibit_mask(())),
            (Command.COMMUNICATION_MODE, bytes((COMMUNICATION_MODE_POLLED,))),
            (Command.OPTIONAL_FUNCTION, bytes((int(options), 0))),
            (Command.INHIBIT, bytes((INHIBIT_ON,))),
        )
        taken = True
        for command, data in steps:
            reply = self._line.request(command, data=data)
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
        return self._line.state_code is not None

    def identify(self) -> None:
        reply = self._line.request(Command.VERSION_REQUEST, self._line.timing.link.ident_timeout_s)
        if isinstance(reply, VersionReply):
            self._on_version(reply)
        else:
            log.warning("VERSION REQUEST answered with %r", reply)

    def _on_version(self, version: VersionReply) -> None:
        if self._version is not None and self._version.text != version.text:
            log.warning("ID-003 unit replaced or reflashed: %r, was %r", version.text,
                        self._version.text)
        self._version = version
        self._line.identified()
        self._line.adopt_profile("version", version.text)
        self.update_info()

    def profile_adopted(self, profile: Profile) -> None:
        settings = Id003Settings.from_profile(profile)  # validated in __init__
        if settings.power_recovery != self._settings.power_recovery:
            self._configured = False  # send OPTIONAL FUNCTION again, with this profile's bit
            self._configure_tried_in = None
        self._settings = settings

    def read_bill_table(self) -> None:
        reply = self._line.request(Command.CURRENCY_ASSIGN_REQUEST,
                                   self._line.timing.link.ident_timeout_s)
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
        self._line.store_bills(bills, "acceptor currency table differs from the known one; "
                                 "using the unit's")

    def unusable_hint(self) -> str:
        return unknown_country_hint(self._unnamed_countries)

    def update_info(self) -> None:
        version = self._version
        self._line.publish_info(
            model=version.model if version else "",
            serial_number="",  # ID-003 has no serial-number request [U]
            firmware=version.firmware if version else "",
        )

    def _model_token(self) -> str:
        model = self._version.model if self._version else ""
        return _KEY_UNSAFE.sub("", model) or UNIDENTIFIED

    # -- line thread: enable mask and inhibit --------------------------------------------

    def _wanted_codes(self) -> frozenset[int]:
        amounts = self._line.wanted_amounts()
        return codes_for(self._line.bills, amounts, self._line.currency)

    def sync_enable(self) -> None:
        """Bring the unit's mask and INHIBIT to what the engine wants (only when settled).

        The mask is changed while the unit idles, without inhibiting first [U: whether a
        unit takes 0xC0 in ENABLE; py-id003 and lamassu send it only while initializing].
        """
        if self._line.state_code not in SETTLED_STATES:
            return
        if not self._configured:
            self._configure()  # the unit was busy with a bill or a fault when it reset
        want = self._wanted_codes()
        enabled = self._line.state_code == Status.ENABLE
        if want and want != self._applied_codes:
            mask = encode_inhibit_mask(want)
            reply = self._line.request(Command.ENABLE_DISABLE, data=mask)
            if not _echoed(reply, Command.ENABLE_DISABLE, mask):
                log.warning("ENABLE/DISABLE %s answered with %r", mask.hex(), reply)
                return
            self._applied_codes = want
        if bool(want) != enabled:
            value = INHIBIT_OFF if want else INHIBIT_ON
            reply = self._line.request(Command.INHIBIT, data=bytes((value,)))
            if not _echoed(reply, Command.INHIBIT, bytes((value,))):
                log.warning("INHIBIT %d answered with %r", value, reply)

    # -- line thread: polling ------------------------------------------------------------

    def poll(self) -> StatusReply | None:
        exchange = self._line.require_link().exchange(Command.STATUS_REQUEST)
        reply = exchange.reply
        if not isinstance(reply, StatusReply):
            log.warning("unexpected STATUS REQUEST reply %r", reply)
            return None
        self._line.note_state(reply.code)
        if reply.code == Status.VEND_VALID:
            if self._on_vend_valid(reply):
                exchange.ack()
        else:
            self._on_state(reply)
        return reply

    def _on_state(self, reply: StatusReply) -> None:
        code, data = reply.code, reply.data
        new_event = self._line.record_state(code, data)
        if not self._line.stuck_reported:
            self._line.set_status(abstract_status(code), describe(code, data))
        escrow = self._line.escrow
        in_path = self._stacking or (escrow.bill if escrow else None)
        if code in POWER_UP_STATES:
            self._note_power_up(Status(code), in_path)
            if self._line.phase is Phase.RUNNING:
                log.warning("ID-003 unit powered up while running (%s); resetting",
                            describe(code))
                self._line.request_reset()
        elif code in (Status.RETURNING, Status.REJECTING) and in_path is not None:
            # A bill we saw in escrow (or sent STACK for) is going back to the customer:
            # our RETURN, the unit's escrow timeout (0x79), or a failed stack.
            if code == Status.REJECTING:
                log.info("bill in escrow rejected: %s", reject_reason_text(reply.first))
            self._bill_returned(in_path)
        elif code == Status.REJECTING and new_event:
            reason = reject_reason_text(reply.first)
            self._line.notify("on_rejected", lambda lst: lst.on_rejected(reason))
        elif code == Status.ESCROW:
            self._line.on_escrow(reply.first)
        elif code == Status.HOLDING:
            self._line.on_holding()
        elif code == Status.PAUSE and self._line.phase is not Phase.INITIALIZING:
            self._line.request_reset()  # RESET resolves the pause deadlock
        elif code == Status.INITIALIZE and self._line.phase is Phase.RUNNING:
            self._applied_codes = None  # re-initializing on its own: settings may be lost
        if code not in (Status.ESCROW, Status.HOLDING):
            self._line.clear_escrow()
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

    def _bill_returned(self, bill: Bill) -> None:
        self._line.clear_escrow()
        if self._stacking is not None:
            self._stacking = None
            self._marker.close()
        self._line.notify("on_returned", lambda lst: lst.on_returned(bill))

    # -- line thread: the point of no return ---------------------------------------------

    def _vend_bill(self, reply: StatusReply, origin: StackOrigin) -> Bill | None:
        """The bill a VEND VALID is for: the unit's escrow code if it sends one [U], else
        after a power-up with a bill in the stacker the bill STACK was outstanding for,
        else the one already reported (a repeat, or the replay of a bill not yet settled),
        else, for the first report of this run, the one on disk (a repeat after a
        restart). None: nobody can name it."""
        code = reply.first
        if code is not None:
            bill = self._line.bills.get(code)
            if bill is None and self._table_retry_key != f"{self._line.run_id}:{code}":
                self._table_retry_key = f"{self._line.run_id}:{code}"  # once per code
                self.read_bill_table()
                bill = self._line.bills.get(code)
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

    def _on_vend_valid(self, reply: StatusReply) -> bool:
        """Offer the credit; True when the reply may be ACKed (the listener committed it)."""
        self._line.record_state(reply.code, reply.data)
        origin = self._vend_origin()
        bill = self._vend_bill(reply, origin)
        if bill is None and origin is not StackOrigin.POWER_UP:
            self._line.set_status(
                AcceptorStatus.FAILURE,
                f"{describe(reply.code, reply.data)} for a bill this driver cannot name; "
                "not acknowledged",
            )
            return False
        if bill is None:
            log.warning("VEND VALID after power up with bill in stacker, no escrow code and "
                        "no STACK outstanding: reporting a bill of unknown value")
        if not self._line.stuck_reported:
            self._line.set_status(AcceptorStatus.ACCEPTING, describe(reply.code, reply.data))
        return self._credit(bill, origin)

    def _credit(self, bill: Bill | None, origin: StackOrigin) -> bool:
        event = self._edge.vend_valid(bill, self._model_token(), origin)
        stacked = StackedBill(event.bill, event.key, event.origin, self._bills_currency())
        if not self._line.offer_credit(stacked):
            return False
        self._stack_sent = False
        self._stacking = None
        self._line.clear_escrow()
        if self._powerup == Status.POWER_UP_BILL_IN_STACKER:
            self._powerup = None  # resolved by the replayed VEND VALID
        self._recovery_pending = False
        self._marker.close()
        return True

    def _bills_currency(self) -> str:
        """The currency of the bills this unit takes ("" if unknown or mixed)."""
        if self._line.currency is not None:
            return self._line.currency
        currencies = {b.currency for b in self._line.bills.values()}
        return currencies.pop() if len(currencies) == 1 else ""

    def _note_power_up(self, code: Status, in_path: Bill | None) -> None:
        if self._powerup != code:
            self._powerup = code
            open_bill = self._marker.open_bill if code == Status.POWER_UP_BILL_IN_STACKER else None
            self._powerup_bill = in_path or open_bill
        if code == Status.POWER_UP_BILL_IN_STACKER:
            self._recovery_pending = True
        self._stacking = None

    def settle_power_up(self) -> None:
        """Resolve a power-up with a bill inside once the unit has settled after RESET."""
        code, bill = self._powerup, self._powerup_bill
        if code is None or self._line.state_code not in SETTLED_STATES:
            return
        if code == Status.POWER_UP_BILL_IN_ACCEPTOR:
            log.info("power up with bill in acceptor: %s returned by the reset [U]", bill)
            if bill is not None:
                self._line.notify("on_returned", lambda lst: lst.on_returned(bill))
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
                if not self._credit(bill, StackOrigin.POWER_UP):
                    return  # the listener failed: try again on the next loop
        self._powerup = None
        self._powerup_bill = None
        self._recovery_pending = False

    # -- line thread: escrow -------------------------------------------------------------

    def warn_unnamed_escrow(self, esc: Escrow) -> None:
        what = ("a barcode ticket" if esc.code == BARCODE_TICKET
                else f"escrow code {esc.code!r}, not in the currency table")
        log.warning("%s in escrow; returning", what)

    def send_decision(self, esc: Escrow, decision: EscrowDecision) -> None:
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
        reply = self._line.request(command)
        if not isinstance(reply, AckReply):
            log.warning("%s (0x%02X) answered with %r", decision.value, command,
                        reply)

    # -- line thread: timers -------------------------------------------------------------

    def next_poll_delay(self) -> float:
        moving = self._line.state_code in IN_BILL_PATH
        return self._line.timing.active_poll_s if moving else self._line.timing.poll_s

    def describe(self, code: int, data: bytes) -> str:
        return describe(code, data)


def check_id003_profile(profile: Profile) -> Profile:
    return check_acceptor_profile(profile, PROTOCOL)


def _candidate_timing(profile: Profile) -> Id003Timing:
    """An auto profile's timing, once its kind, [timing] and [id003] are known to be good."""
    timing = Id003Timing.from_profile(check_id003_profile(profile))
    Id003Settings.from_profile(profile)
    return timing


def _echoed(reply: Reply, command: int, data: bytes) -> bool:
    return isinstance(reply, SettingEcho) and reply.command == command and reply.data == data
