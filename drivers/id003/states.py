"""ID-003 status codes, reject reasons and failure codes, and how they map to
`AcceptorStatus` (docs/protocols/id003.md, "Status codes").

The engine only sees the abstract status plus a readable detail; the raw code stays in
the detail and the frame log.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from drivers.acceptor import AcceptorStatus
from drivers.codes import code_text, status_or_failure


class Status(enum.IntEnum):
    """Acceptor → host status codes (the CMD byte of a reply to STATUS REQUEST)."""

    ENABLE = 0x11  # idling, bills accepted
    ACCEPTING = 0x12
    ESCROW = 0x13  # data: escrow (denomination) code 0x61-0x68, or 0x6F + barcode
    STACKING = 0x14
    VEND_VALID = 0x15  # the point of no return: the host must ACK it (M1, M2)
    STACKED = 0x16
    REJECTING = 0x17  # data: reject reason
    RETURNING = 0x18
    HOLDING = 0x19
    DISABLE = 0x1A  # inhibited
    INITIALIZE = 0x1B
    POWER_UP = 0x40
    POWER_UP_BILL_IN_ACCEPTOR = 0x41
    POWER_UP_BILL_IN_STACKER = 0x42
    STACKER_FULL = 0x43
    STACKER_OPEN = 0x44
    JAM_IN_ACCEPTOR = 0x45
    JAM_IN_STACKER = 0x46
    PAUSE = 0x47
    CHEATED = 0x48
    FAILURE = 0x49  # data: failure code


@dataclass(frozen=True)
class StateInfo:
    status: AcceptorStatus
    description: str


_S = AcceptorStatus
STATE_TABLE: dict[int, StateInfo] = {  # keyed by Status (an IntEnum: hashes as its int)
    Status.ENABLE: StateInfo(_S.IDLE, "enable (idling)"),
    Status.ACCEPTING: StateInfo(_S.ACCEPTING, "accepting"),
    Status.ESCROW: StateInfo(_S.ACCEPTING, "escrow"),
    Status.STACKING: StateInfo(_S.ACCEPTING, "stacking"),
    Status.VEND_VALID: StateInfo(_S.ACCEPTING, "vend valid"),
    Status.STACKED: StateInfo(_S.ACCEPTING, "stacked"),
    Status.REJECTING: StateInfo(_S.REJECTING, "rejecting"),
    Status.RETURNING: StateInfo(_S.ACCEPTING, "returning"),
    Status.HOLDING: StateInfo(_S.ACCEPTING, "holding"),
    Status.DISABLE: StateInfo(_S.DISABLED, "disable (inhibit)"),
    Status.INITIALIZE: StateInfo(_S.INITIALIZING, "initialize"),
    Status.POWER_UP: StateInfo(_S.INITIALIZING, "power up"),
    Status.POWER_UP_BILL_IN_ACCEPTOR: StateInfo(
        _S.INITIALIZING, "power up with bill in acceptor (returned after reset, no credit)"
    ),
    Status.POWER_UP_BILL_IN_STACKER: StateInfo(
        _S.INITIALIZING, "power up with bill in stacker (credited once, origin power-up)"
    ),
    Status.STACKER_FULL: StateInfo(_S.CASSETTE_FULL, "stacker full"),
    Status.STACKER_OPEN: StateInfo(_S.CASSETTE_OUT, "stacker open (cash box removed)"),
    Status.JAM_IN_ACCEPTOR: StateInfo(_S.JAMMED, "jam in acceptor"),
    Status.JAM_IN_STACKER: StateInfo(_S.JAMMED, "jam in stacker"),
    Status.PAUSE: StateInfo(_S.PAUSED, "pause (second bill inserted)"),
    Status.CHEATED: StateInfo(_S.CHEATED, "cheated"),
    Status.FAILURE: StateInfo(_S.FAILURE, "failure"),
}

POWER_UP_STATES = frozenset(
    {Status.POWER_UP, Status.POWER_UP_BILL_IN_ACCEPTOR, Status.POWER_UP_BILL_IN_STACKER}
)
INITIALIZING_STATES = POWER_UP_STATES | {Status.INITIALIZE}
SETTLED_STATES = frozenset({Status.ENABLE, Status.DISABLE})
"""Nothing in the bill path; the acceptor takes setting commands."""
TRANSIENT_STATES = frozenset(
    {Status.ACCEPTING, Status.STACKING, Status.STACKED, Status.RETURNING, Status.REJECTING}
)
"""States a bill passes through; staying in one too long is a jam (TerminalClient's
JammedViaRejecting, the lamassu stuck timer that never fired). VEND VALID is not here: it
waits for our ACK, and a listener that cannot commit is the ledger's problem (M10)."""
IN_BILL_PATH = TRANSIENT_STATES | {Status.ESCROW, Status.HOLDING, Status.VEND_VALID}
BILL_DONE_STATES = SETTLED_STATES | {
    Status.ACCEPTING, Status.ESCROW, Status.HOLDING, Status.RETURNING, Status.REJECTING}
"""States in which the unit is done with the last stacked bill (idle, or another bill in
the path): a VEND VALID after one of them is never a repeat of that bill."""
DATA_REQUIRED = frozenset({Status.ESCROW, Status.REJECTING, Status.FAILURE})
"""States that always carry data (escrow code, reject reason, failure code)."""
HAS_DATA = DATA_REQUIRED | {Status.VEND_VALID}
"""States that may carry data. VEND VALID carries the escrow code on some firmware only
(the escrow-flow note shows it, lamassu/py-id003/TerminalClient do not) [U]: parse by LNG."""

DENOMINATION_CODES = range(0x61, 0x69)
"""Escrow codes of bills (0x61-0x68)."""
BARCODE_TICKET = 0x6F


class RejectReason(enum.IntEnum):
    INSERTION = 0x71
    MAGNETIC = 0x72
    RESIDUAL_AT_HEAD = 0x73
    CALIBRATION = 0x74
    CONVEYING = 0x75
    DISCRIMINATION = 0x76
    PHOTO_PATTERN_1 = 0x77
    PHOTO_LEVEL = 0x78
    INHIBIT = 0x79
    OPERATION = 0x7B
    RESIDUAL_AT_STACKER = 0x7C
    LENGTH = 0x7D
    PHOTO_PATTERN_2 = 0x7E
    TRUE_BILL_FEATURE = 0x7F


REJECT_REASONS: dict[int, str] = {
    RejectReason.INSERTION: "insertion",
    RejectReason.MAGNETIC: "magnetic",
    RejectReason.RESIDUAL_AT_HEAD: "residual bill at head",
    RejectReason.CALIBRATION: "calibration / multiplier",
    RejectReason.CONVEYING: "conveying",
    RejectReason.DISCRIMINATION: "discrimination",
    RejectReason.PHOTO_PATTERN_1: "photo pattern 1",
    RejectReason.PHOTO_LEVEL: "photo level",
    RejectReason.INHIBIT: "inhibit, or no answer to escrow",
    RejectReason.OPERATION: "operation",
    RejectReason.RESIDUAL_AT_STACKER: "residual at stacker",
    RejectReason.LENGTH: "length",
    RejectReason.PHOTO_PATTERN_2: "photo pattern 2",
    RejectReason.TRUE_BILL_FEATURE: "true-bill feature",
}


class FailureCode(enum.IntEnum):
    STACK_MOTOR = 0xA2
    TRANSPORT_MOTOR_SPEED = 0xA5
    TRANSPORT_MOTOR = 0xA6
    SOLENOID = 0xA8
    PCB = 0xA9
    CASH_BOX_NOT_READY = 0xAB
    HEAD_REMOVED = 0xAF
    BOOT_ROM = 0xB0
    EXTERNAL_ROM = 0xB1
    ROM = 0xB2
    EXTERNAL_ROM_WRITE = 0xB3


FAILURE_CODES: dict[int, str] = {
    FailureCode.STACK_MOTOR: "stack motor failure",
    FailureCode.TRANSPORT_MOTOR_SPEED: "transport motor speed failure",
    FailureCode.TRANSPORT_MOTOR: "transport motor failure",
    FailureCode.SOLENOID: "solenoid failure",
    FailureCode.PCB: "PCB failure",
    FailureCode.CASH_BOX_NOT_READY: "cash box not ready",
    FailureCode.HEAD_REMOVED: "head removed",
    FailureCode.BOOT_ROM: "ROM / RAM failure (boot ROM)",
    FailureCode.EXTERNAL_ROM: "ROM / RAM failure (external ROM)",
    FailureCode.ROM: "ROM / RAM failure (ROM)",
    FailureCode.EXTERNAL_ROM_WRITE: "ROM / RAM failure (external ROM write)",
}


def reject_reason_text(code: int | None) -> str:
    return code_text(REJECT_REASONS, code, "unknown reject reason")


def failure_text(code: int | None) -> str:
    return code_text(FAILURE_CODES, code, "unknown failure", "unknown failure code")


def state_info(code: int) -> StateInfo | None:
    return STATE_TABLE.get(code)  # IntEnum keys hash like their ints


def abstract_status(code: int) -> AcceptorStatus:
    """Abstract status for a status code; an unknown code is a failure (the acceptor says something
    this driver does not understand, so it must not keep taking money)."""
    return status_or_failure(state_info(code))


def describe(code: int, data: bytes = b"") -> str:
    """Readable detail with the raw code, e.g. "0x17 rejecting: inhibit, or no answer..."."""
    first = data[0] if data else None
    info = state_info(code)
    if info is None:
        return f"0x{code:02X} unknown status" + (f" (data {data.hex(' ')})" if data else "")
    text = f"0x{code:02X} {info.description}"
    if code == Status.REJECTING:
        return f"{text}: {reject_reason_text(first)}"
    if code == Status.FAILURE:
        return f"{text}: {failure_text(first)}"
    if code in (Status.ESCROW, Status.VEND_VALID) and first is not None:
        return f"{text} (escrow code 0x{first:02X})"
    return text
