"""The state machine of a simulated CashCode bill validator, without any I/O.

`CcnetDeviceModel.handle` takes the payload of a host frame and returns the payload of
the reply (or None: the host's ACK/NAK get no answer); `tick` advances timed transitions.
Behaviour follows docs/protocols/ccnet.md ("Commands", "POLL states"); where the spec is
unknown the choice made here is marked [U]:
- an event (0x81 stacked, 0x82 returned) is repeated on every POLL until the host ACKs
  the reply that carried it [U: believed, not documented;
  ccnet.md, "Link rules"];
- a pending stacked event survives a RESET and is reported after initialization [U];
- ENABLE during power-up/initialize, and IDENTIFICATION / GET BILL TABLE outside the
  states the spec lists (power up, initialize, failures, disabled) get ILLEGAL COMMAND;
- a repeated STACK/RETURN for a bill already stacking/returning is ACKed again (the host
  retransmits when our ACK was lost) [U];
- a second bill inserted while one is in the path puts the unit in Pause (spec text);
- physical faults (jam, cassette, failure) survive RESET; pause and cheated do not.
The cassette counter is the ground truth of what was physically stacked.
"""

from __future__ import annotations

import collections
import enum
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from drivers.ccnet.billtable import BillRecord, decode_mask, encode_bill_table, encode_mask
from drivers.ccnet.protocol import (
    ASSET_NUMBER_LEN,
    BUSY_UNIT_S,
    MASK_LEN,
    PART_NUMBER_LEN,
    SERIAL_NUMBER_LEN,
    Command,
    Control,
)
from drivers.ccnet.states import (
    IDENT_STATES,
    PollState,
    RejectReason,
    describe,
    reject_reason_text,
)

DEFAULT_COUNTRY = "RUS"
DEFAULT_BILLS: tuple[tuple[int, int], ...] = (
    (2, 10),
    (3, 50),
    (4, 100),
    (5, 500),
    (6, 1000),
    (7, 5000),
    (12, 200),
    (13, 2000),
)
"""(bill type, roubles). A plausible RU layout with gaps (types 2-7 as commonly reported
for RU firmware [U]; where 200 and 2000 sit on real units is not known, 12/13 here is
this simulator's choice), so hosts cannot assume type n = n-th denomination."""
DEFAULT_PART = "SM-RU1353"
DEFAULT_SERIAL = "41A123456789"

PHYSICAL_FAULTS = frozenset(
    {
        PollState.CASSETTE_FULL,
        PollState.CASSETTE_OUT,
        PollState.VALIDATOR_JAMMED,
        PollState.CASSETTE_JAMMED,
        PollState.FAILURE,
    }
)
BILL_PATH_STATES = frozenset(
    {
        PollState.ACCEPTING,
        PollState.ESCROW,
        PollState.HOLDING,
        PollState.STACKING,
        PollState.RETURNING,
        PollState.REJECTING,
    }
)


def default_records(country: str = DEFAULT_COUNTRY) -> list[BillRecord]:
    return [BillRecord.for_value(t, v, country) for t, v in DEFAULT_BILLS]


DEFAULT_ACCEPT_S = 0.5
"""Insert to escrow report: a real CashCode pulls the note in and validates it in roughly
0.3-1 s; half a second is in that range. Tests that need speed set a shorter one."""


@dataclass(frozen=True)
class SimTiming:
    """How long the simulated unit spends in each timed state (seconds)."""

    init_s: float = 0.2
    accept_s: float = DEFAULT_ACCEPT_S
    stack_s: float = 0.1
    return_s: float = 0.1
    reject_s: float = 0.2
    escrow_timeout_s: float = 10.0  # spec: bill returned if no command within 10 s
    hold_s: float = 10.0  # [U] each HOLD restarts the escrow timeout


class PowerCycle(enum.Enum):
    """Where a bill sits when power comes back."""

    AUTO = "auto"  # derived from the bill path at the moment of the cycle
    NONE = "none"
    VALIDATOR = "validator"
    STACKER = "stacker"


@dataclass
class Counters:
    stacked: int = 0
    stacked_value: int = 0  # in whole currency units of the table
    stacked_by_type: collections.Counter[int] = field(default_factory=collections.Counter)
    returned: int = 0
    rejected: int = 0
    polls: int = 0
    host_acks: int = 0
    host_naks: int = 0
    resets: int = 0
    illegal: int = 0


class CcnetDeviceModel:
    def __init__(
        self,
        records: Sequence[BillRecord] | None = None,
        *,
        part_number: str = DEFAULT_PART,
        serial_number: str = DEFAULT_SERIAL,
        asset_number: bytes = bytes(ASSET_NUMBER_LEN),
        timing: SimTiming | None = None,
        emit: Callable[[str], None] = lambda line: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.records = {r.bill_type: r for r in (records if records is not None else
                                                   default_records())}
        self.part_number = part_number
        self.serial_number = serial_number
        self.asset_number = asset_number[:ASSET_NUMBER_LEN].ljust(ASSET_NUMBER_LEN, b"\0")
        self.timing = timing or SimTiming()
        self.counters = Counters()
        self._emit = emit
        self._clock = clock

        self.base = PollState.POWER_UP
        self.reject_code: int | None = None
        self.bill: int | None = None  # bill type in the path
        self.enabled: frozenset[int] = frozenset()
        self.escrow: frozenset[int] = frozenset()
        self.fault: tuple[PollState, int | None] | None = None
        self.busy_units = 0
        self._busy_until: float | None = None
        self.event: tuple[PollState, int] | None = None  # reported until the host ACKs
        self._event_sent = False
        self._ignore_acks = 0
        self._recover: int | None = None  # bill type that reached the stacker before power loss
        self._deadline: float | None = None
        self._last_command: Command | None = None

    # -- host side -----------------------------------------------------------------------

    def handle(self, payload: bytes) -> bytes | None:
        """Reply payload for one CRC-valid host frame (None: no reply is sent)."""
        self.tick()
        cmd, data = payload[0], payload[1:]
        if cmd == Command.ACK:
            self._on_host_ack()
            return None
        if cmd == Command.NAK:
            self.counters.host_naks += 1
            return None
        # Any other frame means our last reply was either ACKed or lost.
        self._event_sent = False
        handlers: dict[int, Callable[[bytes], bytes]] = {
            Command.POLL: self._poll,
            Command.RESET: self._reset,
            Command.GET_STATUS: self._get_status,
            Command.ENABLE_BILL_TYPES: self._enable,
            Command.STACK: self._stack,
            Command.RETURN: self._return,
            Command.HOLD: self._hold,
            Command.IDENTIFICATION: self._identification,
            Command.GET_BILL_TABLE: self._bill_table,
        }
        handler = handlers.get(cmd)
        return handler(data) if handler else self._illegal(cmd)

    def reported(self) -> tuple[int, int | None]:
        """(Z1, Z2) a POLL would return now."""
        if self._busy_until is not None:
            return PollState.BUSY, self.busy_units
        if self.fault is not None:
            return self.fault
        if self.event is not None:
            return self.event
        if self.base == PollState.ESCROW:
            return self.base, self.bill
        if self.base == PollState.REJECTING:
            return self.base, self.reject_code
        return self.base, None

    def _poll(self, _data: bytes) -> bytes:
        self.counters.polls += 1
        z1, z2 = self.reported()
        if self.event is not None and (z1, z2) == self.event:
            self._event_sent = True
        return bytes((z1,)) if z2 is None else bytes((z1, z2))

    def _on_host_ack(self) -> None:
        self.counters.host_acks += 1
        if self.event is None or not self._event_sent:
            return
        self._event_sent = False
        if self._ignore_acks and self.event[0] == PollState.STACKED:
            self._ignore_acks -= 1
            self._emit("ack ignored (repeat_stacked): stacked will be reported again")
            return
        z1, bill_type = self.event
        self._emit(f"host acked {describe(z1, bill_type)}")
        self.event = None

    def _reset(self, _data: bytes) -> bytes:
        self.counters.resets += 1
        self._emit("reset")
        if self.fault is not None and self.fault[0] not in PHYSICAL_FAULTS:
            self.fault = None
        self._busy_until = None
        if self.base == PollState.POWER_UP_BILL_IN_STACKER:
            pass  # _recover is already set: credit recovery after initialization
        elif self.base == PollState.STACKING and self.bill is not None:
            self._recover = self.bill  # too far to return
        elif self.bill is not None:
            self._bill_gone(f"returned {self._fmt(self.bill)} (reset)")
        self.bill = None
        self.enabled = self.escrow = frozenset()
        self._enter(PollState.INITIALIZE, self.timing.init_s)
        return bytes((Control.ACK,))

    def _get_status(self, _data: bytes) -> bytes:
        return encode_mask(self.enabled) + bytes(MASK_LEN)

    def _enable(self, data: bytes) -> bytes:
        if len(data) != 2 * MASK_LEN or self.base in (
            PollState.POWER_UP,
            PollState.POWER_UP_BILL_IN_VALIDATOR,
            PollState.POWER_UP_BILL_IN_STACKER,
            PollState.INITIALIZE,
        ):
            return self._illegal(Command.ENABLE_BILL_TYPES)
        self.enabled = decode_mask(data[:MASK_LEN])
        self.escrow = decode_mask(data[MASK_LEN:])
        if self.base in (PollState.IDLING, PollState.UNIT_DISABLED):
            self._settle()
        listed = ",".join(str(t) for t in sorted(self.enabled))
        self._emit(f"enabled types {listed}" if self.enabled else "disabled")
        return bytes((Control.ACK,))

    def _stack(self, _data: bytes) -> bytes:
        if self.fault is None and self.base in (PollState.ESCROW, PollState.HOLDING):
            self._last_command = Command.STACK
            self._emit(f"stacking {self._fmt(self.bill)}")
            self._enter(PollState.STACKING, self.timing.stack_s)
            return bytes((Control.ACK,))
        if self.base == PollState.STACKING and self._last_command == Command.STACK:
            return bytes((Control.ACK,))
        return self._illegal(Command.STACK)

    def _return(self, _data: bytes) -> bytes:
        if self.fault is None and self.base in (PollState.ESCROW, PollState.HOLDING):
            self._last_command = Command.RETURN
            self._emit(f"returning {self._fmt(self.bill)}")
            self._enter(PollState.RETURNING, self.timing.return_s)
            return bytes((Control.ACK,))
        if self.base == PollState.RETURNING and self._last_command == Command.RETURN:
            return bytes((Control.ACK,))
        return self._illegal(Command.RETURN)

    def _hold(self, _data: bytes) -> bytes:
        if self.fault is None and self.base in (PollState.ESCROW, PollState.HOLDING):
            if self.base == PollState.ESCROW:
                self._emit(f"holding {self._fmt(self.bill)}")
            self._enter(PollState.HOLDING, self.timing.hold_s)
            return bytes((Control.ACK,))
        return self._illegal(Command.HOLD)

    def _identification(self, _data: bytes) -> bytes:
        if self.reported()[0] not in IDENT_STATES:
            return self._illegal(Command.IDENTIFICATION)
        return (
            self.part_number.encode("ascii")[:PART_NUMBER_LEN].ljust(PART_NUMBER_LEN)
            + self.serial_number.encode("ascii")[:SERIAL_NUMBER_LEN].ljust(SERIAL_NUMBER_LEN)
            + self.asset_number
        )

    def _bill_table(self, _data: bytes) -> bytes:
        if self.reported()[0] not in IDENT_STATES:
            return self._illegal(Command.GET_BILL_TABLE)
        return encode_bill_table(list(self.records.values()))

    def _illegal(self, cmd: int) -> bytes:
        self.counters.illegal += 1
        z1, z2 = self.reported()
        self._emit(f"illegal command 0x{cmd:02X} in state {describe(z1, z2)}")
        return bytes((Control.ILLEGAL_COMMAND,))

    # -- time ----------------------------------------------------------------------------

    def tick(self) -> None:
        now = self._clock()
        if self._busy_until is not None and now >= self._busy_until:
            self._busy_until = None
        if self.fault is not None or self._deadline is None or now < self._deadline:
            return  # a fault freezes the bill path until it is cleared
        self._deadline = None
        base = self.base
        if base == PollState.INITIALIZE:
            self._initialized()
        elif base == PollState.ACCEPTING:
            self._accepted()
        elif base in (PollState.ESCROW, PollState.HOLDING):
            self._emit(f"escrow timeout: returning {self._fmt(self.bill)}")
            self._last_command = None
            self._enter(PollState.RETURNING, self.timing.return_s)
        elif base == PollState.STACKING:
            self._stacked(self.bill)
        elif base == PollState.RETURNING:
            bill = self.bill
            self._bill_gone(f"returned {self._fmt(bill)}")
            self.counters.returned += 1
            if bill is not None:
                self.event = (PollState.RETURNED, bill)
            self._settle()
        elif base == PollState.REJECTING:
            self._settle()

    def _initialized(self) -> None:
        self._emit("initialized")
        self._settle()
        if self._recover is not None:
            bill, self._recover = self._recover, None
            self._stacked(bill, note=" (credit recovery after power-up)")

    def _accepted(self) -> None:
        bill = self.bill
        if self.reject_code is not None or bill is None:
            self._reject(self.reject_code if self.reject_code is not None else RejectReason.OPTIC)
        elif bill not in self.enabled:
            self._reject(RejectReason.INHIBIT)
        elif bill in self.escrow:
            self._emit(f"escrow {self._fmt(bill)}")
            self._enter(PollState.ESCROW, self.timing.escrow_timeout_s)
        else:
            self._last_command = None
            self._emit(f"stacking {self._fmt(bill)} (no escrow)")
            self._enter(PollState.STACKING, self.timing.stack_s)

    def _reject(self, code: int) -> None:
        self.reject_code = code
        self.counters.rejected += 1
        self.bill = None
        self._emit(f"rejected 0x{code:02X} {reject_reason_text(code)}")
        self._enter(PollState.REJECTING, self.timing.reject_s)

    def _stacked(self, bill: int | None, note: str = "") -> None:
        self.bill = None
        self._settle()
        if bill is None:
            return
        value = self._value(bill)
        self.counters.stacked += 1
        self.counters.stacked_value += value
        self.counters.stacked_by_type[bill] += 1
        self.event = (PollState.STACKED, bill)
        self._emit(
            f"stacked {self._fmt(bill)}{note} (cassette {self.counters.stacked} bills, "
            f"{self.counters.stacked_value} {self._currency()})"
        )

    def _settle(self) -> None:
        self._deadline = None
        self.base = PollState.IDLING if self.enabled else PollState.UNIT_DISABLED

    def _enter(self, state: PollState, duration_s: float) -> None:
        self.base = state
        self._deadline = self._clock() + duration_s

    def _bill_gone(self, line: str) -> None:
        self._emit(line)
        self.bill = None

    # -- the customer and the technician (fault injection) -------------------------------

    def _type_of(self, value: int) -> int | None:
        return next((t for t in self.records if self._value(t) == value), None)

    def insert(self, value: int) -> str:
        bill = self._type_of(value)
        self.tick()
        if self.base in BILL_PATH_STATES and self.fault is None:
            self.fault = (PollState.PAUSE, None)
            self._emit(f"pause: {value} inserted while a bill is in the path")
            return "pause"
        if self.base != PollState.IDLING or self.fault or self._busy_until or self.event:
            z1, z2 = self.reported()
            return f"refused: unit not taking bills ({describe(z1, z2)})"
        self.reject_code = None if bill is not None else RejectReason.IDENTIFICATION
        self.bill = bill
        self._emit(f"accepting {value} {self._currency()}")
        self._enter(PollState.ACCEPTING, self.timing.accept_s)
        return "ok"

    def reject(self, code: int) -> str:
        self.tick()
        if self.base != PollState.IDLING or self.fault or self._busy_until or self.event:
            return "refused: unit not idling"
        self.reject_code = code
        self.bill = None
        self._emit("accepting a bill that will be rejected")
        self._enter(PollState.ACCEPTING, self.timing.accept_s)
        return "ok"

    def set_fault(self, state: PollState, z2: int | None = None) -> str:
        self.fault = (state, z2)
        self._emit(f"fault {describe(state, z2)}")
        return "ok"

    def cassette_in(self) -> str:
        if self.fault is None or self.fault[0] != PollState.CASSETTE_OUT:
            return "cassette is in"
        return self.clear()

    def clear(self) -> str:
        self.fault = None
        self._busy_until = None
        if self.bill is not None and self.base in BILL_PATH_STATES:
            self._bill_gone(f"bill {self._fmt(self.bill)} removed from the path by hand")
        if self.base in BILL_PATH_STATES:
            self._settle()
        self._emit("cleared")
        return "ok"

    def busy(self, units: int) -> str:
        self.busy_units = units
        self._busy_until = self._clock() + units * BUSY_UNIT_S
        self._emit(f"busy {units} x 100 ms")
        return "ok"

    def hurry(self) -> str:
        """End the current timed state now (accepting, stacking...): lets a test make the
        unit move at an exact moment, e.g. between a damaged reply and the host's retry."""
        if self._deadline is not None:
            self._deadline = self._clock()
            self.tick()
        return "ok"

    def repeat_stacked(self, times: int = 1) -> str:
        self._ignore_acks += times
        return "ok"

    def power_cycle(self, where: PowerCycle = PowerCycle.AUTO,
                    note_in_stacker: int | None = None) -> str:
        """Power loss and back. `note_in_stacker` (a bill value) puts that note in the
        stacker path at the moment of the loss, whatever the host did (no STACK needed):
        the unit powers up with 0x12 and reports it stacked (0x81) after RESET."""
        self.tick()
        bill = self.bill
        if note_in_stacker is not None:
            bill = self._type_of(note_in_stacker)
            if bill is None:
                return f"refused: no bill of value {note_in_stacker} in the table"
            where = PowerCycle.STACKER
        if where is PowerCycle.AUTO:
            if bill is None:
                where = PowerCycle.NONE
            elif self.base == PollState.STACKING:
                where = PowerCycle.STACKER
            else:
                where = PowerCycle.VALIDATOR
        if where is not PowerCycle.NONE and bill is None:
            bill = next(iter(sorted(self.records)), None)  # a bill the customer pushed in
        if self.event is not None:
            self._emit(f"pending event lost in power cycle: {describe(*self.event)}")
        self.event = None
        self._event_sent = False
        self._busy_until = None
        if self.fault is not None and self.fault[0] not in PHYSICAL_FAULTS:
            self.fault = None
        self.enabled = self.escrow = frozenset()
        self._deadline = None
        self._recover = None
        self.bill = None
        if where is PowerCycle.STACKER:
            self.base = PollState.POWER_UP_BILL_IN_STACKER
            self._recover = bill
        elif where is PowerCycle.VALIDATOR:
            self.base = PollState.POWER_UP_BILL_IN_VALIDATOR
            self.bill = bill
        else:
            self.base = PollState.POWER_UP
        self._emit(f"power up ({describe(self.base)})")
        return "ok"

    # -- reporting -----------------------------------------------------------------------

    def status_line(self) -> str:
        z1, z2 = self.reported()
        c = self.counters
        by_type = " ".join(f"{self._value(t)}x{n}" for t, n in sorted(c.stacked_by_type.items()))
        return (
            f"state {describe(z1, z2)}; enabled {sorted(self.enabled)}; "
            f"cassette {c.stacked} bills {c.stacked_value} {self._currency()} [{by_type}]; "
            f"returned {c.returned} rejected {c.rejected} polls {c.polls} "
            f"acks {c.host_acks} naks {c.host_naks} resets {c.resets} illegal {c.illegal}"
        )

    def value_of(self, bill_type: int) -> int:
        return self._value(bill_type)

    def _value(self, bill_type: int) -> int:
        r = self.records.get(bill_type)
        if r is None:
            return 0
        return r.mantissa * 10**r.exponent if r.exponent >= 0 else 0

    def _currency(self) -> str:
        first = next(iter(self.records.values()), None)
        return first.currency if first else "?"

    def _fmt(self, bill_type: int | None) -> str:
        if bill_type is None:
            return "unknown bill"
        return f"{self._value(bill_type)} {self._currency()}"
