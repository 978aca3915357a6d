"""One event key per physical bill past the point of no return (VEND VALID, M1/M2).

The acceptor repeats VEND VALID until the host ACKs it and an ACK can be lost, so the same
bill may be reported on several polls. Unlike CCNET's edge (any other state ends the
event), an ID-003 event ends only when the driver sends the next STACK: a bill can reach
VEND VALID only through a STACK, so every VEND VALID seen between two STACKs is the same
bill. That also covers the power-recovery replay [U]: an acceptor that reports VEND VALID
again after a power-up with a bill in the stacker, for a bill already credited and even
ACKed, gets the same key, and the ledger's unique key turns it into a no-op (in the same
run the ledger has no other way to tell it from a new bill).

Key format: id003:{model}:{run_id}:{seq}; run_id is random per driver start, so keys never
collide across restarts.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.acceptor import Bill


@dataclass(frozen=True)
class VendEvent:
    key: str
    bill: Bill
    recovered: bool


class VendEdge:
    def __init__(self, run_id: str) -> None:
        self._run_id = run_id
        self._seq = 0
        self._current: VendEvent | None = None

    @property
    def current(self) -> VendEvent | None:
        return self._current

    def stack_sent(self) -> None:
        """A STACK goes out: the next VEND VALID is a new bill."""
        self._current = None

    def vend_valid(self, bill: Bill, model: str, recovered: bool) -> VendEvent:
        """The event for a VEND VALID of `bill`: the current one if this is a repeat.

        `recovered` is fixed when the event starts, so every repeat carries the same value.
        A different escrow code without a STACK in between is a different bill (it should
        not happen; counting it is safer than merging it).
        """
        current = self._current
        if current is not None and current.bill.bill_type == bill.bill_type:
            return current
        self._seq += 1
        self._current = VendEvent(f"id003:{model}:{self._run_id}:{self._seq}", bill, recovered)
        return self._current
