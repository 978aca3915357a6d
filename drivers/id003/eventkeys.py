"""One event key per physical bill past the point of no return (VEND VALID, M1/M2).

The acceptor repeats VEND VALID until the host ACKs it and an ACK can be lost, so the same
bill may be reported on several polls. Unlike CCNET's edge (any other state ends the
event), an ID-003 event ends when the driver sends the next STACK or when the unit shows
it is done with the bill (`settled`: idling, inhibited, or a new bill in the path): a bill
can reach VEND VALID only through a STACK, so every VEND VALID seen between two STACKs,
while the bill is still going in, is the same bill. That covers the power-recovery replay
[U]: a unit that loses power right after our ACK, with the bill still going into the
stacker, reports VEND VALID again after the power-up (0x42); that bill was never settled,
its event is still current, so the replay gets the same key and the ledger's unique key
turns it into a no-op. A power-up after the bill had settled finds no current event: the
VEND VALID that follows is a new physical stacking with a new key (issue 12).

Key format: id003:{model}:{run_id}:{seq}; run_id is random per driver start, so keys never
collide across restarts.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.acceptor import Bill, StackOrigin


@dataclass(frozen=True)
class VendEvent:
    key: str
    bill: Bill | None  # None: a stacking the unit did not name (see drivers.acceptor)
    origin: StackOrigin


def _bill_type(bill: Bill | None) -> int | None:
    return bill.bill_type if bill is not None else None


class VendEdge:
    def __init__(self, run_id: str) -> None:
        self._run_id = run_id
        self._seq = 0
        self._current: VendEvent | None = None

    @property
    def current(self) -> VendEvent | None:
        return self._current

    @property
    def fresh(self) -> bool:
        """No VEND VALID yet in this run: one now may be an earlier run's un-ACKed report."""
        return self._seq == 0

    def stack_sent(self) -> None:
        """A STACK goes out: the next VEND VALID is a new bill."""
        self._current = None

    def settled(self) -> None:
        """The unit is done with the last bill: no later report can be its repeat."""
        self._current = None

    def vend_valid(self, bill: Bill | None, model: str, origin: StackOrigin) -> VendEvent:
        """The event for a VEND VALID of `bill`: the current one if this is a repeat.

        `origin` is fixed when the event starts, so every repeat carries the same value.
        A different escrow code without a STACK in between is a different bill (it should
        not happen; counting it is safer than merging it).
        """
        current = self._current
        if current is not None and _bill_type(current.bill) == _bill_type(bill):
            return current
        self._seq += 1
        self._current = VendEvent(f"id003:{model}:{self._run_id}:{self._seq}", bill, origin)
        return self._current
