"""Lookups in an acceptor protocol's code tables, shared by CCNET and ID-003.

Each protocol's `states` module keeps its own tables (the numbers and words differ); what
is done with them is the same: a code the table lacks stays visible as hex in the
detail, and a state this driver does not understand is a FAILURE, so that a unit saying
something new never keeps taking money.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from drivers.acceptor import AcceptorStatus


class HasStatus(Protocol):
    @property
    def status(self) -> AcceptorStatus: ...


def code_text(table: Mapping[int, str], code: int | None, missing: str,
              unknown: str | None = None) -> str:
    """`table[code]`; `missing` when there is no code; "<unknown> 0xNN" for a code the
    table does not know (`unknown` defaults to `missing`)."""
    if code is None:
        return missing
    # IntEnum keys hash and compare like their int values, so a raw byte looks them up.
    return table.get(code, f"{unknown or missing} 0x{code:02X}")


def status_or_failure(info: HasStatus | None) -> AcceptorStatus:
    """The abstract status of a known state; FAILURE for a code this driver does not know."""
    return info.status if info is not None else AcceptorStatus.FAILURE
