"""The state machine of a simulated JCM ID-003 bill acceptor, without any I/O.

`Id003DeviceModel.handle` takes the payload of a host frame and returns the payload of
the reply (or None: the host's ACK gets no answer); `tick` advances timed transitions.
Behaviour follows docs/protocols/id003.md, including the real-device observations in
"VEND VALID and the credit"; where the spec is unknown the choice made here is marked [U]:
- ESCROW → STACK-1/2 → ACK → STACKING → VEND VALID, repeated on every STATUS REQUEST until
  the host ACKs it ("no progress until controller sends ACK") → STACKED → ENABLE/DISABLE;
  the cassette counts the bill at VEND VALID, the point of no return;
- no decision within the escrow time (10 s) or after a HOLD runs out: REJECTING 0x79 and
  the bill goes back (id003.md, "Escrow"); each HOLD restarts the hold time [U];
- setting commands are echoed and taken in INITIALIZE, ENABLE, DISABLE and fault states;
  in power-up states (before RESET) and while a bill moves they get INVALID COMMAND [U];
- RESET and power-up restore the defaults: inhibited (a real unit takes no bill until the
  host enables it), every denomination allowed by the mask, polled mode; the OPTIONAL
  FUNCTION bits are kept (non-volatile) [U];
- in interrupt mode (COMMUNICATION MODE 0x01) the unit sends ENQ (a frame with CMD 0x05,
  as lamassu parses it [S]) whenever it has something the host has not read yet (its
  reported status differs from the last STATUS REQUEST reply), and again every
  `enq_repeat_s` while the host does not ask; the host answers with STATUS REQUEST
  (id003.md, "Polled and interrupt mode");
- power-up with a bill in the stacker: after RESET and initialization the bill is
  reported VEND VALID again if power recovery (OPTIONAL FUNCTION 0x02) is on (CIM-ARM
  [S/U]) — even one the host had already acknowledged (the worst case); otherwise it
  is stacked silently. A bill in the acceptor is returned by the RESET [U];
- a VEND VALID still unacknowledged at RESET is reported again after initialization [U];
- a repeated STACK/RETURN for a bill already stacking/returning is ACKed again (the host
  retransmits when our ACK was lost) [U]; unknown commands get INVALID COMMAND (0x4B);
- a second bill inserted while one is in the path puts the unit in PAUSE (0x47);
- physical faults (jam, stacker full/open, failure) survive RESET; pause and cheated do not.
The cassette counter is the ground truth of what was physically stacked. Every event line
is emitted after the state change it reports, so a hook on it (`Id003Simulator.when`) sees
the new state: `when("stacking 500", "power_cycle")` cuts the power with the bill in the
stacker.
"""

from __future__ import annotations

import collections
import enum
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from drivers.id003.currency import (
    CURRENCY_COUNTRY,
    CurrencyRecord,
    decode_inhibit_mask,
    encode_currency_table,
    encode_inhibit_mask,
)
from drivers.id003.protocol import (
    COMMUNICATION_MODE_INTERRUPT,
    COMMUNICATION_MODE_POLLED,
    INHIBIT_ON,
    OPERATION_COMMANDS,
    SETTING_COMMANDS,
    SETTING_REQUESTS,
    Command,
    OptionalFunction,
    ReplyCode,
)
from drivers.id003.states import (
    DENOMINATION_CODES,
    POWER_UP_STATES,
    RejectReason,
    Status,
    describe,
    reject_reason_text,
)

DEFAULT_CURRENCY = "RUB"
DEFAULT_BILLS: tuple[tuple[int, int], ...] = (
    (0x61, 10),
    (0x62, 50),
    (0x63, 100),
    (0x64, 500),
    (0x65, 1000),
    (0x66, 5000),
    (0x67, 200),
    (0x68, 2000),
)
"""(escrow code, roubles). Not in order of value on purpose (this simulator's choice [U]),
so hosts cannot assume code n = n-th denomination."""
DEFAULT_VERSION = "U(RUS)-SS ID003-05V210-10 12MAR19 5A3C"
"""In the format Aristocrat Monaco quotes ("i(USA)100-SS ID003-05V280-42 01AUG17 964D")."""
DEFAULT_BOOT_VERSION = "B05 "

SETTING_LENGTHS: dict[int, int] = {
    Command.ENABLE_DISABLE: 2,
    Command.SECURITY: 2,
    Command.COMMUNICATION_MODE: 1,
    Command.INHIBIT: 1,
    Command.DIRECTION: 1,
    Command.OPTIONAL_FUNCTION: 2,
    Command.BARCODE_FUNCTION: 2,
    Command.BARCODE_INHIBIT: 1,
}
_REQUEST_OFFSET = Command.ENABLE_DISABLE - Command.REQUEST_ENABLE_DISABLE  # 0x80 → 0xC0

PHYSICAL_FAULTS = frozenset(
    {Status.STACKER_FULL, Status.STACKER_OPEN, Status.JAM_IN_ACCEPTOR, Status.JAM_IN_STACKER,
     Status.FAILURE}
)
BILL_PATH_STATES = frozenset(
    {Status.ACCEPTING, Status.ESCROW, Status.HOLDING, Status.STACKING, Status.VEND_VALID,
     Status.STACKED, Status.RETURNING, Status.REJECTING}
)
_PAST_NO_RETURN = frozenset({Status.VEND_VALID, Status.STACKED})
_BUSY_UNIT_S = 0.1


def default_records(currency: str = DEFAULT_CURRENCY) -> list[CurrencyRecord]:
    country = CURRENCY_COUNTRY[currency]
    return [CurrencyRecord.for_value(code, value, country) for code, value in DEFAULT_BILLS]


def _default_settings() -> dict[int, bytes]:
    return {
        Command.ENABLE_DISABLE: encode_inhibit_mask(DENOMINATION_CODES),  # all enabled
        Command.SECURITY: bytes(2),
        Command.COMMUNICATION_MODE: bytes((COMMUNICATION_MODE_POLLED,)),
        Command.INHIBIT: bytes((INHIBIT_ON,)),  # a real unit waits for the host's enable
        Command.DIRECTION: bytes(1),
        Command.BARCODE_FUNCTION: bytes(2),
        Command.BARCODE_INHIBIT: bytes(1),
    }


@dataclass(frozen=True)
class SimTiming:
    """How long the simulated unit spends in each timed state (seconds)."""

    init_s: float = 0.2
    accept_s: float = 0.1
    stack_s: float = 0.1
    stacked_s: float = 0.05
    return_s: float = 0.1
    reject_s: float = 0.2
    escrow_timeout_s: float = 10.0  # REJECTING 0x79 when the host is silent ~10 s
    hold_s: float = 10.0  # [U] each HOLD restarts it
    enq_repeat_s: float = 0.2  # [U] ENQ again while the host has not asked (interrupt mode)


class PowerCycle(enum.Enum):
    """Where a bill sits when power comes back."""

    AUTO = "auto"  # derived from the bill path at the moment of the cycle
    NONE = "none"
    ACCEPTOR = "acceptor"
    STACKER = "stacker"

    @classmethod
    def parse(cls, text: str) -> PowerCycle:
        """Also "validator" (the CCNET simulator's word), so scripts run on both."""
        return cls.ACCEPTOR if text == "validator" else cls(text)


@dataclass
class Counters:
    stacked: int = 0
    stacked_value: int = 0  # in whole currency units of the table
    stacked_by_code: collections.Counter[int] = field(default_factory=collections.Counter)
    returned: int = 0
    rejected: int = 0
    polls: int = 0
    host_acks: int = 0
    resets: int = 0
    invalid: int = 0
    comm_errors: int = 0
    enqs: int = 0  # ENQ frames sent (interrupt mode)


class Id003DeviceModel:
    def __init__(
        self,
        records: Sequence[CurrencyRecord] | None = None,
        *,
        version: str = DEFAULT_VERSION,
        boot_version: str = DEFAULT_BOOT_VERSION,
        timing: SimTiming | None = None,
        power_recovery_supported: bool = True,
        vend_valid_data: bool = False,
        emit: Callable[[str], None] = lambda line: None,
        enq: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.records = {r.escrow_code: r for r in (records if records is not None else
                                                     default_records())}
        self.version = version
        self.boot_version = boot_version
        self.timing = timing or SimTiming()
        self.power_recovery_supported = power_recovery_supported
        self.vend_valid_data = vend_valid_data  # [U] some firmware adds the escrow code
        self.counters = Counters()
        self._emit = emit
        self._enq = enq  # puts an ENQ frame on the line (the simulator's)
        self._clock = clock
        self._host_read: tuple[int, bytes] | None = None  # the last STATUS reply sent
        self._enq_at: float | None = None  # when ENQ was last sent for unread news

        self.base = Status.POWER_UP
        self.reject_code: int | None = None
        self.bill: int | None = None  # escrow code in the path (until it settles)
        self.settings = _default_settings()
        self.options = 0  # OPTIONAL FUNCTION, first byte; non-volatile [U]
        self.fault: tuple[Status, bytes] | None = None
        self._busy_until: float | None = None
        self._vend_sent = False  # the last STATUS reply carried VEND VALID
        self._ignore_acks = 0
        self._recover: int | None = None  # escrow code of a bill in the stacker at power-up
        self._recover_counted = False
        self._recover_always = False  # an unacknowledged VEND VALID met a RESET
        self._deadline: float | None = None
        self._last_command: int | None = None

    # -- settings as the host sees them --------------------------------------------------

    @property
    def inhibited(self) -> bool:
        return self.settings[Command.INHIBIT][0] == INHIBIT_ON

    @property
    def denominations_inhibited(self) -> frozenset[int]:
        return decode_inhibit_mask(self.settings[Command.ENABLE_DISABLE])

    @property
    def enabled(self) -> frozenset[int]:
        """Escrow codes the settings let in (empty when inhibited): what the unit takes
        while it reports ENABLE. After power-up or RESET that is every code [U]."""
        if self.inhibited:
            return frozenset()
        return frozenset(self.records) - self.denominations_inhibited

    @property
    def power_recovery(self) -> bool:
        return bool(self.options & OptionalFunction.POWER_RECOVERY) and (
            self.power_recovery_supported
        )

    @property
    def interrupt_mode(self) -> bool:
        return self.settings[Command.COMMUNICATION_MODE][0] == COMMUNICATION_MODE_INTERRUPT

    @property
    def vend_valid_pending(self) -> bool:
        return self.base == Status.VEND_VALID

    # -- host side -----------------------------------------------------------------------

    def handle(self, payload: bytes) -> bytes | None:
        """Reply payload for one CRC-valid host frame (None: no reply is sent)."""
        self._advance(self._clock())  # no ENQ in the middle of an exchange
        cmd, data = payload[0], bytes(payload[1:])
        if cmd == Command.ACK:
            self._on_host_ack()
            return None
        self._vend_sent = False  # any other frame: our VEND VALID was not acknowledged
        if cmd == Command.STATUS_REQUEST:
            return self._status()
        if cmd in OPERATION_COMMANDS:
            handlers: dict[int, Callable[[int], bytes]] = {
                Command.RESET: self._reset,
                Command.STACK_1: self._stack,
                Command.STACK_2: self._stack,
                Command.RETURN: self._return,
                Command.HOLD: self._hold,
                Command.WAIT: lambda _c: bytes((ReplyCode.ACK,)),  # [U] a no-op here
            }
            return handlers[cmd](cmd) if not data else self._invalid(cmd)
        if cmd in SETTING_COMMANDS:
            return self._setting(cmd, data)
        if cmd in SETTING_REQUESTS:
            return self._request_setting(cmd)
        if cmd == Command.VERSION_REQUEST:
            return bytes((cmd,)) + self.version.encode("ascii")
        if cmd == Command.BOOT_VERSION_REQUEST:
            return bytes((cmd,)) + self.boot_version.encode("ascii")
        if cmd == Command.CURRENCY_ASSIGN_REQUEST:
            return bytes((cmd,)) + encode_currency_table(list(self.records.values()))
        return self._invalid(cmd)

    def reported(self) -> tuple[int, bytes]:
        """(status, data) a STATUS REQUEST would return now."""
        if self._busy_until is not None:
            return Status.INITIALIZE, b""
        if self.fault is not None:
            return self.fault
        if self.base == Status.VEND_VALID:
            data = bytes((self.bill,)) if self.vend_valid_data and self.bill else b""
            return self.base, data
        if self.base == Status.ESCROW and self.bill is not None:
            return self.base, bytes((self.bill,))
        if self.base == Status.REJECTING:
            return self.base, bytes((self.reject_code or RejectReason.DISCRIMINATION,))
        return self.base, b""

    def _status(self) -> bytes:
        self.counters.polls += 1
        code, data = self.reported()
        self._vend_sent = code == Status.VEND_VALID
        self._host_read, self._enq_at = (code, data), None
        return bytes((code,)) + data

    def _maybe_enq(self, now: float) -> None:
        """Interrupt mode: tell the host there is news it has not read (id003.md)."""
        if not self.interrupt_mode or self.reported() == self._host_read:
            return
        if self._enq_at is not None and now - self._enq_at < self.timing.enq_repeat_s:
            return
        if self._enq_at is None:
            code, data = self.reported()
            self._emit(f"ENQ (interrupt mode): {describe(code, data)}")
        self._enq_at = now
        self.counters.enqs += 1
        self._enq()

    def _on_host_ack(self) -> None:
        self.counters.host_acks += 1
        if not self._vend_sent or self.base != Status.VEND_VALID:
            return
        self._vend_sent = False
        if self._ignore_acks:
            self._ignore_acks -= 1
            self._emit("ack ignored (repeat_vend_valid): vend valid will be reported again")
            return
        self._enter(Status.STACKED, self.timing.stacked_s)
        self._emit(f"host acked 0x15 vend valid {self._fmt(self.bill)}")

    def _reset(self, _cmd: int) -> bytes:
        self.counters.resets += 1
        self._emit("reset")
        if self.fault is not None and self.fault[0] not in PHYSICAL_FAULTS:
            self.fault = None
        self._busy_until = None
        if self.base == Status.POWER_UP_BILL_IN_STACKER:
            pass  # _recover is already set
        elif self.base in (Status.STACKING, *_PAST_NO_RETURN) and self.bill is not None:
            self._recover = self.bill  # too far to return
            self._recover_counted = self.base in _PAST_NO_RETURN
            self._recover_always = self.base == Status.VEND_VALID
        elif self.bill is not None:
            self._bill_gone(f"returned {self._fmt(self.bill)} (reset)")
        self.bill = None
        self.settings = _default_settings()
        self._enter(Status.INITIALIZE, self.timing.init_s)
        return bytes((ReplyCode.ACK,))

    def _stack(self, cmd: int) -> bytes:
        if self.fault is None and self.base in (Status.ESCROW, Status.HOLDING):
            self._last_command = cmd
            self._enter(Status.STACKING, self.timing.stack_s)
            self._emit(f"stacking {self._fmt(self.bill)} (STACK-{cmd - Command.RESET})")
            return bytes((ReplyCode.ACK,))
        if self.base == Status.STACKING and self._last_command in (Command.STACK_1,
                                                                   Command.STACK_2):
            return bytes((ReplyCode.ACK,))
        return self._invalid(cmd)

    def _return(self, cmd: int) -> bytes:
        if self.fault is None and self.base in (Status.ESCROW, Status.HOLDING):
            self._last_command = cmd
            self._enter(Status.RETURNING, self.timing.return_s)
            self._emit(f"returning {self._fmt(self.bill)}")
            return bytes((ReplyCode.ACK,))
        if self.base == Status.RETURNING and self._last_command == Command.RETURN:
            return bytes((ReplyCode.ACK,))
        return self._invalid(cmd)

    def _hold(self, cmd: int) -> bytes:
        if self.fault is None and self.base in (Status.ESCROW, Status.HOLDING):
            first = self.base == Status.ESCROW
            self._enter(Status.HOLDING, self.timing.hold_s)
            if first:
                self._emit(f"holding {self._fmt(self.bill)}")
            return bytes((ReplyCode.ACK,))
        return self._invalid(cmd)

    def _setting(self, cmd: int, data: bytes) -> bytes:
        if (
            self.base in BILL_PATH_STATES
            or self.base in POWER_UP_STATES
            or len(data) != SETTING_LENGTHS[cmd]
        ):
            return self._invalid(cmd)
        if cmd == Command.OPTIONAL_FUNCTION:
            self.options = data[0]
            self._emit(f"optional functions 0x{data[0]:02X}"
                       + (" (power recovery)" if self.power_recovery else ""))
        else:
            before = self.enabled
            self.settings[cmd] = data
            if self.base in (Status.ENABLE, Status.DISABLE):
                self._settle()
            if cmd in (Command.ENABLE_DISABLE, Command.INHIBIT) and self.enabled != before:
                listed = ",".join(f"0x{c:02X}" for c in sorted(self.enabled))
                self._emit(f"enabled codes {listed}" if self.enabled else "inhibited")
        return bytes((cmd,)) + data

    def _request_setting(self, cmd: int) -> bytes:
        setting = cmd + _REQUEST_OFFSET
        if setting == Command.OPTIONAL_FUNCTION:
            return bytes((cmd, self.options, 0))
        return bytes((cmd,)) + self.settings.get(setting, b"")

    def _invalid(self, cmd: int) -> bytes:
        self.counters.invalid += 1
        code, data = self.reported()
        self._emit(f"invalid command 0x{cmd:02X} in state {describe(code, data)}")
        return bytes((ReplyCode.INVALID_COMMAND,))

    # -- time ----------------------------------------------------------------------------

    def tick(self) -> None:
        now = self._clock()
        self._advance(now)
        self._maybe_enq(now)

    def _advance(self, now: float) -> None:
        if self._busy_until is not None and now >= self._busy_until:
            self._busy_until = None
            self._emit("busy over")
        if (self.fault is not None or self._busy_until is not None or self._deadline is None
                or now < self._deadline):
            return  # a fault freezes the bill path until it is cleared
        self._deadline = None
        base = self.base
        if base == Status.INITIALIZE:
            self._initialized()
        elif base == Status.ACCEPTING:
            self._accepted()
        elif base in (Status.ESCROW, Status.HOLDING):
            bill = self.bill
            self.counters.returned += 1
            self.bill = None
            self.reject_code = RejectReason.INHIBIT
            self._enter(Status.REJECTING, self.timing.reject_s)
            self._emit(f"escrow timeout: returning {self._fmt(bill)} (rejecting 0x79)")
        elif base == Status.STACKING:
            self._vend_valid(self.bill)
        elif base == Status.STACKED:
            self.bill = None
            self._settle()
        elif base == Status.RETURNING:
            self._bill_gone(f"returned {self._fmt(self.bill)}")
            self.counters.returned += 1
            self._settle()
        elif base == Status.REJECTING:
            self._settle()

    def _initialized(self) -> None:
        self._settle()
        self._emit("initialized")
        if self._recover is None:
            return
        bill, counted, always = self._recover, self._recover_counted, self._recover_always
        self._recover, self._recover_counted, self._recover_always = None, False, False
        if self.power_recovery or always:
            self._vend_valid(bill, counted=counted, note=" (power recovery)")
        else:
            if not counted:
                self._count(bill)
            self._emit(f"stacked {self._fmt(bill)} silently (power recovery off), "
                       f"cassette {self.counters.stacked} bills")

    def _accepted(self) -> None:
        bill = self.bill
        if self.reject_code is not None or bill is None:
            code = self.reject_code if self.reject_code is not None else (
                RejectReason.DISCRIMINATION)
            self._reject(code)
        elif bill in self.denominations_inhibited:
            self._reject(RejectReason.INHIBIT)
        else:
            self._enter(Status.ESCROW, self.timing.escrow_timeout_s)
            self._emit(f"escrow {self._fmt(bill)}")

    def _reject(self, code: int) -> None:
        self.reject_code = code
        self.counters.rejected += 1
        self.bill = None
        self._enter(Status.REJECTING, self.timing.reject_s)
        self._emit(f"rejected 0x{code:02X} {reject_reason_text(code)}")

    def _vend_valid(self, bill: int | None, counted: bool = False, note: str = "") -> None:
        if bill is None:
            self._settle()
            return
        if not counted:
            self._count(bill)
        self.bill = bill
        self.base = Status.VEND_VALID  # until the host ACKs it
        self._deadline = None
        self._emit(
            f"vend valid {self._fmt(bill)}{note} (cassette {self.counters.stacked} bills, "
            f"{self.counters.stacked_value} {self._currency()})"
        )

    def _count(self, bill: int) -> None:
        self.counters.stacked += 1
        self.counters.stacked_value += self._value(bill)
        self.counters.stacked_by_code[bill] += 1

    def _settle(self) -> None:
        self._deadline = None
        self.reject_code = None
        self.base = Status.DISABLE if self.inhibited else Status.ENABLE

    def _enter(self, state: Status, duration_s: float) -> None:
        self.base = state
        self._deadline = self._clock() + duration_s

    def _bill_gone(self, line: str) -> None:
        self._emit(line)
        self.bill = None

    # -- the customer and the technician (fault injection) -------------------------------

    def _taking_bills(self) -> bool:
        return (self.base == Status.ENABLE and self.fault is None
                and self._busy_until is None)

    def insert(self, value: int) -> str:
        code = next((c for c in self.records if self._value(c) == value), None)
        self.tick()
        if self.base in BILL_PATH_STATES and self.fault is None:
            self.fault = (Status.PAUSE, b"")
            self._emit(f"pause: {value} inserted while a bill is in the path")
            return "pause"
        if not self._taking_bills():
            status, data = self.reported()
            return f"refused: unit not taking bills ({describe(status, data)})"
        self.reject_code = None if code is not None else RejectReason.DISCRIMINATION
        self.bill = code
        self._enter(Status.ACCEPTING, self.timing.accept_s)
        self._emit(f"accepting {value} {self._currency()}")
        return "ok"

    def reject(self, code: int) -> str:
        self.tick()
        if not self._taking_bills():
            return "refused: unit not idling"
        self.reject_code = code
        self.bill = None
        self._enter(Status.ACCEPTING, self.timing.accept_s)
        self._emit("accepting a bill that will be rejected")
        return "ok"

    def set_fault(self, state: Status, data: bytes = b"") -> str:
        self.fault = (state, data)
        self._emit(f"fault {describe(state, data)}")
        return "ok"

    def cassette_in(self) -> str:
        if self.fault is None or self.fault[0] != Status.STACKER_OPEN:
            return "cassette is in"
        return self.clear()

    def clear(self) -> str:
        self.fault = None
        self._busy_until = None
        if self.base not in _PAST_NO_RETURN and self.base in BILL_PATH_STATES:
            if self.bill is not None:
                self._bill_gone(f"bill {self._fmt(self.bill)} removed from the path by hand")
            self._settle()
        self._emit("cleared")
        return "ok"

    def busy(self, units: int) -> str:
        """[U] ID-003 has no Busy status: the unit re-initializes for units × 100 ms
        (reported INITIALIZE), keeping its settings."""
        self._busy_until = self._clock() + units * _BUSY_UNIT_S
        self._emit(f"busy {units} x 100 ms (initializing)")
        return "ok"

    def repeat_vend_valid(self, times: int = 1) -> str:
        self._ignore_acks += times
        return "ok"

    def power_cycle(self, where: PowerCycle = PowerCycle.AUTO) -> str:
        self.tick()
        bill, base = self.bill, self.base
        if where is PowerCycle.AUTO:
            if bill is None:
                where = PowerCycle.NONE
            elif base in (Status.STACKING, *_PAST_NO_RETURN):
                where = PowerCycle.STACKER
            else:
                where = PowerCycle.ACCEPTOR
        if where is not PowerCycle.NONE and bill is None:
            bill = next(iter(sorted(self.records)), None)  # a bill the customer pushed in
        counted = base in _PAST_NO_RETURN and self.bill is not None
        if base == Status.VEND_VALID:
            self._emit(f"pending vend valid lost in power cycle: {self._fmt(bill)}")
        self._vend_sent = False
        self._busy_until = None
        if self.fault is not None and self.fault[0] not in PHYSICAL_FAULTS:
            self.fault = None
        self.settings = _default_settings()
        self._deadline = None
        self._recover, self._recover_counted, self._recover_always = None, False, False
        self.bill = None
        if where is PowerCycle.STACKER:
            self.base = Status.POWER_UP_BILL_IN_STACKER
            self._recover, self._recover_counted = bill, counted
        elif where is PowerCycle.ACCEPTOR:
            self.base = Status.POWER_UP_BILL_IN_ACCEPTOR
            self.bill = bill
        else:
            self.base = Status.POWER_UP
        self._emit(f"power up ({describe(self.base)})")
        return "ok"

    # -- reporting -----------------------------------------------------------------------

    def status_line(self) -> str:
        code, data = self.reported()
        c = self.counters
        by_code = " ".join(f"{self._value(k)}x{n}" for k, n in sorted(c.stacked_by_code.items()))
        enabled = ",".join(f"0x{e:02X}" for e in sorted(self.enabled))
        return (
            f"state {describe(code, data)}; enabled [{enabled}]; "
            f"cassette {c.stacked} bills {c.stacked_value} {self._currency()} [{by_code}]; "
            f"returned {c.returned} rejected {c.rejected} polls {c.polls} "
            f"acks {c.host_acks} resets {c.resets} invalid {c.invalid} "
            f"comm errors {c.comm_errors}"
        )

    def value_of(self, code: int) -> int:
        return self._value(code)

    def _value(self, code: int) -> int:
        r = self.records.get(code)
        return r.value if r is not None else 0

    def _currency(self) -> str:
        first = next(iter(self.records.values()), None)
        return (first.currency() or f"#{first.country}") if first else "?"

    def _fmt(self, code: int | None) -> str:
        if code is None:
            return "unknown bill"
        return f"{self._value(code)} {self._currency()}"
