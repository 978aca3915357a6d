"""The bill-acceptor interface the payment engine talks to.

Every acceptor (CCNET, ID-003, the in-process virtual device) implements `BillAcceptor`
and reports to one `AcceptorListener`. The engine never sees protocol bytes, and drivers
never see the ledger: the two meet only here (drivers/ imports nothing from kiosk/:
docs/architecture.md).

Money rules this contract encodes:
- M1: `on_stacked` is the only credit point. Escrow is a question, not a credit.
- M2: a driver calls `on_stacked` synchronously from its line thread and acknowledges the
  device (ACK) only after it returns. If it raises, the driver must NOT acknowledge; the
  device repeats the event and the driver offers it again with the same `event_key`.
- M3: `on_escrow` returns the decision; `HOLD` means "ask me again" (the driver re-asks via
  `on_escrow` on its next poll while the bill stays in escrow, sending HOLD to keep it).
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Protocol


class AcceptorStatus(enum.Enum):
    """Abstract acceptor states (device codes map onto these, like Cyberplat's status groups)."""

    OFFLINE = "offline"  # no answer on the line
    INITIALIZING = "initializing"  # power-up, reset, initialize, busy
    DISABLED = "disabled"  # healthy, not taking bills
    IDLE = "idle"  # enabled, waiting for a bill
    ACCEPTING = "accepting"  # scanning, escrow, stacking, returning, holding
    REJECTING = "rejecting"
    JAMMED = "jammed"
    CASSETTE_FULL = "cassette_full"
    CASSETTE_OUT = "cassette_out"
    CHEATED = "cheated"
    PAUSED = "paused"
    FAILURE = "failure"

    @property
    def is_fault(self) -> bool:
        return self in _FAULTS


_FAULTS = frozenset(
    {
        AcceptorStatus.OFFLINE,
        AcceptorStatus.JAMMED,
        AcceptorStatus.CASSETTE_FULL,
        AcceptorStatus.CASSETTE_OUT,
        AcceptorStatus.CHEATED,
        AcceptorStatus.PAUSED,
        AcceptorStatus.FAILURE,
    }
)


class EscrowDecision(enum.Enum):
    STACK = "stack"
    RETURN = "return"
    HOLD = "hold"


@dataclass(frozen=True)
class Bill:
    """One denomination as the acceptor knows it: amount in minor units (kopecks)."""

    amount_minor: int
    currency: str
    bill_type: int  # the device's own index (CCNET bill type, ID-003 escrow code)

    def __post_init__(self) -> None:
        if self.amount_minor <= 0:
            raise ValueError(f"bill amount must be positive, got {self.amount_minor}")
        if len(self.currency) != 3:
            raise ValueError(f"currency must be a 3-letter code, got {self.currency!r}")


class StackOrigin(enum.Enum):
    """Why the device reported a stacked bill: what the ledger may conclude from it (M2, M6).

    - REQUESTED: this driver run sent STACK for the bill in escrow; the report is its outcome.
    - POWER_UP: the device powered up with a bill in the stacker (CCNET 0x12, ID-003 0x42)
      and reports it once initialized. Always a new stacking, never the repeat of a bill
      reported before the power went.
    - UNREQUESTED: a credit report this driver run never asked for and no power-up explains,
      e.g. the device repeating a report whose ACK an earlier run (a core that died between
      commit and ACK) never sent. Only this kind may be recognised as such a repeat.
    """

    REQUESTED = "requested"
    POWER_UP = "power_up"
    UNREQUESTED = "unrequested"


@dataclass(frozen=True)
class StackedBill:
    """A bill past the point of no return (M1).

    `event_key` identifies this stacking event for de-duplication (M2): a driver that sees
    the same stacked report again (lost ACK, retransmit) passes the same key. Keys must be
    unique across driver restarts too (include a per-start run id), and new for every
    physical stacking.
    `bill` is None when the device reported a stacking without naming the bill and the
    driver cannot name it either (an ID-003 VEND VALID without an escrow code after a
    power-up with no STACK outstanding): the ledger records it as an unclaimed credit of
    unknown value for a technician to resolve; it is never dropped and never guessed.
    `origin` says why it was reported (`StackOrigin`).
    """

    bill: Bill | None
    event_key: str
    origin: StackOrigin = StackOrigin.REQUESTED
    currency: str = ""
    """The currency of an unnamed bill (`bill` None), if the driver knows it."""

    @property
    def recovered(self) -> bool:
        """Not the outcome of this run's STACK: the engine flags it for audit (M6)."""
        return self.origin is not StackOrigin.REQUESTED


@dataclass(frozen=True)
class DeviceInfo:
    protocol: str  # "ccnet", "id003", "virtual"
    model: str = ""
    serial_number: str = ""
    firmware: str = ""
    profile: str = ""  # firmware profile name that matched
    bill_table: tuple[Bill, ...] = field(default_factory=tuple)


class AcceptorListener(Protocol):
    """Implemented by the engine. Called from the driver's line thread."""

    def on_escrow(self, bill: Bill) -> EscrowDecision: ...

    def on_stacked(self, stacked: StackedBill) -> None:
        """Commit the credit durably; return only when it is on disk (M2)."""

    def on_returned(self, bill: Bill) -> None: ...

    def on_rejected(self, reason: str) -> None: ...

    def on_status(self, status: AcceptorStatus, detail: str) -> None:
        """Every change of abstract status; `detail` is human-readable (device code, reason)."""


class BillAcceptor(Protocol):
    """Commands the engine sends. All are non-blocking requests queued to the line thread."""

    @property
    def status(self) -> AcceptorStatus: ...

    @property
    def info(self) -> DeviceInfo: ...

    def start(self, listener: AcceptorListener) -> None:
        """Open the port, run the start-up sequence and leave the device disabled (M4)."""

    def stop(self) -> None: ...

    def enable(self, amounts_minor: Collection[int]) -> None:
        """Accept only these denominations (minor units), all with escrow on."""

    def disable(self) -> None: ...

    def stack(self) -> None:
        """Stack the bill held in escrow (after a HOLD decision)."""

    def return_bill(self) -> None:
        """Return the bill held in escrow (after a HOLD decision)."""


class AcceptorError(Exception):
    """A driver-level failure the engine should see as a fault (port gone, bad profile)."""
