"""What a protocol adapter asks of `AcceptorRunner`: the effects of its state machine.

An adapter (`drivers.ccnet.device.CcnetProtocol`, `drivers.id003.device.Id003Protocol`)
does no I/O and changes nothing outside itself. Each of its steps is a generator: it
yields effects and receives their results - a request's parsed reply, whether the engine
committed a credit, whether a state is a new event - and the runner performs them (the
link, the listener, its own status and escrow). So the runner does every exchange on the
line, every wait and every retry, and a test drives an adapter with replies and the
answers it chooses, without a port (tests/acceptors/test_adapters.py).

An adapter reads the runner's state only through `AdapterView` (read-only), which a test
replaces with a plain object.

Money (docs/invariants.md): a `Credit` is yielded only at the point of no return (M1);
its result says whether the ledger has it, and only then does the adapter yield `Ack`
(M2). Escrow questions (`InEscrow`, `Held`) are answered by the runner with the engine
(M3), which then asks the adapter to `send_decision`.
"""

from __future__ import annotations

import enum
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, Union

from drivers.acceptor import AcceptorStatus, Bill, EscrowDecision, StackedBill
from drivers.clock import Clock
from drivers.framelog import FrameLog

R = TypeVar("R")
TimingT_co = TypeVar("TimingT_co", covariant=True)


class Phase(enum.Enum):
    STARTING = "starting"
    INITIALIZING = "initializing"
    RUNNING = "running"


@dataclass
class Escrow:
    """The bill currently in escrow and what has been decided about it. `code` is the
    protocol's name for it (CCNET bill type, ID-003 escrow code)."""

    code: int | None
    bill: Bill | None
    since: float
    decision: EscrowDecision | None = None


# -- the line ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    """One request on the line; the result is its parsed reply (acknowledged as the
    protocol's link does for a plain request)."""

    command: int
    data: bytes = b""
    timeout_s: float | None = None


@dataclass(frozen=True)
class Poll:
    """The poll request; the result is `Polled`. The reply is not acknowledged until the
    adapter yields `Ack`."""

    command: int


@dataclass(frozen=True)
class Polled:
    """A poll's outcome: the reply (None when the exchange failed), the late replies the
    link found before it (oldest first; never acknowledged) and the link's failure, which
    the adapter re-raises once it has taken the late replies in."""

    reply: Any
    late: tuple[Any, ...] = ()
    error: Exception | None = None


@dataclass(frozen=True)
class Ack:
    """Acknowledge the last poll's reply (only after its credit was committed: M2)."""


# -- the runner's bookkeeping ---------------------------------------------------------------


@dataclass(frozen=True)
class NoteState:
    """The state of this poll (the runner times it for jam detection)."""

    code: int


@dataclass(frozen=True)
class RecordState:
    """The state just reported, with its data; the result is True when it differs from
    the last one (a new event, not a repeat)."""

    code: int
    data: Any


@dataclass(frozen=True)
class SetStatus:
    status: AcceptorStatus
    detail: str


@dataclass(frozen=True)
class ClearEscrow:
    """The bill in escrow is gone (stacked, returned, or the unit moved on)."""


@dataclass(frozen=True)
class RequestReset:
    """RESET the unit between polls (power-up while running, the pause deadlock)."""


@dataclass(frozen=True)
class Identified:
    """The unit said who it is (`what`: "part number", "version"): not asked again until
    the next RESET; an auto profile matching `ident` may take over; the device info is
    published again."""

    what: str
    ident: str


@dataclass(frozen=True)
class StoreBills:
    """The unit's bill table replaces the known one (`differs` is logged if they differ)."""

    bills: Mapping[int, Bill]
    differs: str


# -- events for the engine -----------------------------------------------------------------


@dataclass(frozen=True)
class InEscrow:
    """A bill waits in escrow under the protocol's `code`: the runner asks the engine (or
    repeats a decision whose command was lost) and calls `send_decision` (M3)."""

    code: int | None


@dataclass(frozen=True)
class Held:
    """The unit holds the bill in escrow (after HOLD): decide again, or keep holding."""


@dataclass(frozen=True)
class Credit:
    """A bill passed the point of no return (M1); the result is True when the engine's
    ledger committed it - only then may the report be acknowledged (M2)."""

    stacked: StackedBill


@dataclass(frozen=True)
class Returned:
    bill: Bill


@dataclass(frozen=True)
class Rejected:
    reason: str


Effect = Union[  # noqa: UP007 - a runtime alias for isinstance-free matching
    Send, Poll, Ack, NoteState, RecordState, SetStatus, ClearEscrow, RequestReset,
    Identified, StoreBills, InEscrow, Held, Credit, Returned, Rejected,
]
Effects = Generator[Effect, Any, R]
"""A step of an adapter: the effects it yields, what it returns at the end."""


class AdapterView(Protocol[TimingT_co]):
    """What an adapter may read of the runner (never change: changes are effects)."""

    @property
    def run_id(self) -> str: ...
    @property
    def timing(self) -> TimingT_co: ...
    @property
    def frame_log(self) -> FrameLog: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def currency(self) -> str | None: ...
    @property
    def bills(self) -> Mapping[int, Bill]: ...
    @property
    def phase(self) -> Phase: ...
    @property
    def state_code(self) -> int | None: ...
    @property
    def last_state(self) -> tuple[int, Any] | None: ...
    @property
    def stuck_reported(self) -> bool: ...
    @property
    def escrow(self) -> Escrow | None: ...
    def wanted_amounts(self) -> frozenset[int]: ...
