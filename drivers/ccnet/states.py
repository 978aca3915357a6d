"""POLL states (Z1), reject reasons and failure codes, and how they map to `AcceptorStatus`.

Descriptions follow docs/protocols/ccnet.md, "POLL states". The engine only sees the
abstract status plus a readable detail; the raw code stays in the detail and the frame log.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from drivers.acceptor import AcceptorStatus
from drivers.ccnet.protocol import BUSY_UNIT_S
from drivers.codes import code_text, status_or_failure

_MS_PER_S = 1000


class PollState(enum.IntEnum):
    POWER_UP = 0x10
    POWER_UP_BILL_IN_VALIDATOR = 0x11
    POWER_UP_BILL_IN_STACKER = 0x12
    INITIALIZE = 0x13
    IDLING = 0x14
    ACCEPTING = 0x15
    STACKING = 0x17
    RETURNING = 0x18
    UNIT_DISABLED = 0x19
    HOLDING = 0x1A
    BUSY = 0x1B
    REJECTING = 0x1C
    CASSETTE_FULL = 0x41
    CASSETTE_OUT = 0x42
    VALIDATOR_JAMMED = 0x43
    CASSETTE_JAMMED = 0x44
    CHEATED = 0x45
    PAUSE = 0x46
    FAILURE = 0x47
    ESCROW = 0x80
    STACKED = 0x81
    RETURNED = 0x82


@dataclass(frozen=True)
class StateInfo:
    status: AcceptorStatus
    description: str
    has_z2: bool = False


_S = AcceptorStatus
STATE_TABLE: dict[int, StateInfo] = {  # keyed by PollState (an IntEnum: hashes as its int)
    PollState.POWER_UP: StateInfo(_S.INITIALIZING, "power up"),
    PollState.POWER_UP_BILL_IN_VALIDATOR: StateInfo(
        _S.INITIALIZING, "power up with bill in validator (returned after reset, no credit)"
    ),
    PollState.POWER_UP_BILL_IN_STACKER: StateInfo(
        _S.INITIALIZING, "power up with bill in stacker (credited when stacked is reported)"
    ),
    PollState.INITIALIZE: StateInfo(_S.INITIALIZING, "initializing"),
    PollState.IDLING: StateInfo(_S.IDLE, "idling"),
    PollState.ACCEPTING: StateInfo(_S.ACCEPTING, "accepting"),
    PollState.STACKING: StateInfo(_S.ACCEPTING, "stacking"),
    PollState.RETURNING: StateInfo(_S.ACCEPTING, "returning"),
    PollState.UNIT_DISABLED: StateInfo(_S.DISABLED, "unit disabled"),
    PollState.HOLDING: StateInfo(_S.ACCEPTING, "holding"),
    PollState.BUSY: StateInfo(_S.INITIALIZING, "device busy", has_z2=True),
    PollState.REJECTING: StateInfo(_S.REJECTING, "rejecting", has_z2=True),
    PollState.CASSETTE_FULL: StateInfo(_S.CASSETTE_FULL, "drop cassette full"),
    PollState.CASSETTE_OUT: StateInfo(_S.CASSETTE_OUT, "drop cassette out of position"),
    PollState.VALIDATOR_JAMMED: StateInfo(_S.JAMMED, "validator jammed"),
    PollState.CASSETTE_JAMMED: StateInfo(_S.JAMMED, "drop cassette jammed"),
    PollState.CHEATED: StateInfo(_S.CHEATED, "cheated"),
    PollState.PAUSE: StateInfo(_S.PAUSED, "pause (second bill inserted)"),
    PollState.FAILURE: StateInfo(_S.FAILURE, "generic failure", has_z2=True),
    PollState.ESCROW: StateInfo(_S.ACCEPTING, "escrow", has_z2=True),
    PollState.STACKED: StateInfo(_S.ACCEPTING, "bill stacked", has_z2=True),
    PollState.RETURNED: StateInfo(_S.ACCEPTING, "bill returned", has_z2=True),
}

POWER_UP_STATES = frozenset(
    {
        PollState.POWER_UP,
        PollState.POWER_UP_BILL_IN_VALIDATOR,
        PollState.POWER_UP_BILL_IN_STACKER,
    }
)
INITIALIZING_STATES = POWER_UP_STATES | {PollState.INITIALIZE, PollState.BUSY}
TRANSIENT_STATES = frozenset(
    {PollState.ACCEPTING, PollState.STACKING, PollState.RETURNING, PollState.REJECTING}
)
"""States a bill passes through; staying in one too long is a jam (TerminalClient's
JammedViaRejecting, the lamassu stuck timer that never fired)."""
SETTLED_STATES = frozenset({PollState.IDLING, PollState.UNIT_DISABLED})
"""States where the unit accepts ENABLE BILL TYPES and nothing is in the bill path."""
IDENT_STATES = POWER_UP_STATES | {
    PollState.INITIALIZE,
    PollState.UNIT_DISABLED,
    PollState.CASSETTE_FULL,
    PollState.CASSETTE_OUT,
    PollState.VALIDATOR_JAMMED,
    PollState.CASSETTE_JAMMED,
    PollState.CHEATED,
    PollState.PAUSE,
    PollState.FAILURE,
}
"""States in which IDENTIFICATION / GET BILL TABLE are legal (ccnet.md, "Commands")."""


class RejectReason(enum.IntEnum):
    INSERTION = 0x60
    MAGNETIC = 0x61
    REMAINED_IN_HEAD = 0x62
    MULTIPLYING = 0x63
    CONVEYING = 0x64
    IDENTIFICATION = 0x65
    VERIFICATION = 0x66
    OPTIC = 0x67
    INHIBIT = 0x68
    CAPACITANCE = 0x69
    OPERATION = 0x6A
    LENGTH = 0x6C
    UV = 0x6D
    BARCODE_UNRECOGNISED = 0x92
    BARCODE_WRONG_LENGTH = 0x93
    BARCODE_BAD_START = 0x94
    BARCODE_BAD_STOP = 0x95


REJECT_REASONS: dict[int, str] = {
    RejectReason.INSERTION: "insertion",
    RejectReason.MAGNETIC: "magnetic / dielectric",
    RejectReason.REMAINED_IN_HEAD: "previous bill remained in head",
    RejectReason.MULTIPLYING: "multiplying / compensation",
    RejectReason.CONVEYING: "conveying",
    RejectReason.IDENTIFICATION: "identification",
    RejectReason.VERIFICATION: "verification",
    RejectReason.OPTIC: "optic",
    RejectReason.INHIBIT: "inhibit (denomination disabled)",
    RejectReason.CAPACITANCE: "capacitance",
    RejectReason.OPERATION: "operation",
    RejectReason.LENGTH: "length",
    RejectReason.UV: "UV",
    RejectReason.BARCODE_UNRECOGNISED: "barcode not recognised",
    RejectReason.BARCODE_WRONG_LENGTH: "barcode wrong length",
    RejectReason.BARCODE_BAD_START: "barcode bad start sequence",
    RejectReason.BARCODE_BAD_STOP: "barcode bad stop sequence",
}


class FailureCode(enum.IntEnum):
    STACK_MOTOR = 0x50
    TRANSPORT_MOTOR_SPEED = 0x51
    TRANSPORT_MOTOR = 0x52
    ALIGNING_MOTOR = 0x53
    INITIAL_CASSETTE_STATUS = 0x54
    OPTIC_CANAL = 0x55  # the C# SDK port says 0x65; four other sources say 0x55 [U]
    MAGNETIC_CANAL = 0x56  # SDK: 0x66 [U]
    CAPACITANCE_CANAL = 0x5F  # SDK: 0x67 [U]


FAILURE_CODES: dict[int, str] = {
    FailureCode.STACK_MOTOR: "stack motor failure",
    FailureCode.TRANSPORT_MOTOR_SPEED: "transport motor speed failure",
    FailureCode.TRANSPORT_MOTOR: "transport motor failure",
    FailureCode.ALIGNING_MOTOR: "aligning motor failure",
    FailureCode.INITIAL_CASSETTE_STATUS: "initial cassette status failure",
    FailureCode.OPTIC_CANAL: "optic canal failure",
    FailureCode.MAGNETIC_CANAL: "magnetic canal failure",
    FailureCode.CAPACITANCE_CANAL: "capacitance canal failure",
}


def reject_reason_text(code: int | None) -> str:
    return code_text(REJECT_REASONS, code, "unknown reject reason")


def failure_text(code: int | None) -> str:
    return code_text(FAILURE_CODES, code, "unknown failure", "unknown failure code")


def state_info(z1: int) -> StateInfo | None:
    return STATE_TABLE.get(z1)  # IntEnum keys hash like their ints


def abstract_status(z1: int) -> AcceptorStatus:
    """Abstract status for a Z1; an unknown code is a failure (the device says something
    this driver does not understand, so it must not keep taking money)."""
    return status_or_failure(state_info(z1))


def describe(z1: int, z2: int | None = None) -> str:
    """Readable detail with the raw code, e.g. "0x1C rejecting: inhibit (denomination ...)"."""
    info = state_info(z1)
    if info is None:
        return f"0x{z1:02X} unknown state" + (f" (Z2 0x{z2:02X})" if z2 is not None else "")
    text = f"0x{z1:02X} {info.description}"
    if z1 == PollState.REJECTING:
        return f"{text}: {reject_reason_text(z2)}"
    if z1 == PollState.FAILURE:
        return f"{text}: {failure_text(z2)}"
    if z1 == PollState.BUSY and z2 is not None:
        return f"{text} for {round(z2 * BUSY_UNIT_S * _MS_PER_S)} ms"
    if info.has_z2 and z2 is not None:
        return f"{text} (bill type {z2})"
    return text
