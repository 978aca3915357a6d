"""Edge detection for Bill Stacked (0x81): one event key per physical stacking (M2).

The device repeats 0x81 until the host ACKs it, and an ACK can be lost, so the same bill
may be reported on several consecutive polls. Repeats with no other state in between
are the same event and keep the same key; any other state ends the event (TerminalClient:
"previous status set had no Stacked"). Timeouts and reconnects are not states, so a
repeat seen after a lost link is still the same event. With escrow always on, a second
real bill cannot reach 0x81 without an escrow (0x80) in between, so this never merges two
bills.

Key format: ccnet:{serial}:{run_id}:{seq}; run_id is random per driver start, so keys
never collide across restarts.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.acceptor import StackOrigin
from drivers.ccnet.states import PollState


@dataclass(frozen=True)
class StackedEvent:
    key: str
    bill_type: int | None
    origin: StackOrigin


class StackedEdge:
    def __init__(self, run_id: str) -> None:
        self._run_id = run_id
        self._seq = 0
        self._current: StackedEvent | None = None

    @property
    def current(self) -> StackedEvent | None:
        return self._current

    def observe(self, z1: int) -> None:
        """Any state other than Bill Stacked ends the current event."""
        if z1 != PollState.STACKED:
            self._current = None

    def stacked(self, bill_type: int | None, serial: str, origin: StackOrigin) -> StackedEvent:
        """The event for a 0x81 reply: the current one if this is a repeat, else a new one.

        `origin` is fixed when the event starts, so every repeat carries the same value.
        """
        current = self._current
        if current is not None and current.bill_type == bill_type:
            return current
        self._seq += 1
        self._current = StackedEvent(
            f"ccnet:{serial}:{self._run_id}:{self._seq}", bill_type, origin
        )
        return self._current
