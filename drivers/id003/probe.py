"""Ask whatever sits on a port whether it speaks ID-003, without changing its state.

Only VERSION REQUEST (0x88) and CURRENCY ASSIGN REQUEST (0x8A) are sent: no STATUS
REQUEST is needed, no RESET, no setting, and nothing that needs an ACK. A unit that
refuses them (INVALID COMMAND) still proves it speaks ID-003.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from drivers.acceptor import Bill
from drivers.framelog import FrameLog
from drivers.id003.currency import bills_of, unknown_country_hint
from drivers.id003.link import Id003Link, NoReply, SerialPort
from drivers.id003.protocol import Command
from drivers.id003.replies import CurrencyTable, InvalidCommand, VersionReply
from drivers.id003.settings import Id003Settings
from drivers.id003.timing import Id003Timing

PROBE_ATTEMPTS = 2
"""Fewer than in service: a silent port costs attempts × ident timeout per setting."""


@dataclass(frozen=True)
class Id003Probe:
    version: VersionReply | None
    bills: tuple[Bill, ...]
    note: str = ""


def probe_id003(
    port: SerialPort, timing: Id003Timing, frame_log: FrameLog,
    settings: Id003Settings | None = None,
) -> Id003Probe | None:
    """None when nothing answered with a CRC-valid ID-003 frame."""
    link_timing = replace(timing.link, attempts=min(timing.link.attempts, PROBE_ATTEMPTS))
    link = Id003Link(port, link_timing, frame_log)
    timeout = link_timing.ident_timeout_s
    try:
        reply = link.request(Command.VERSION_REQUEST, timeout_s=timeout)
    except NoReply:
        return None
    notes = []
    version = reply if isinstance(reply, VersionReply) else None
    if version is None:
        notes.append(f"version refused ({_describe(reply)})")
    bills: tuple[Bill, ...] = ()
    try:
        table = link.request(Command.CURRENCY_ASSIGN_REQUEST, timeout_s=timeout)
    except NoReply:
        table = None
        notes.append("no answer to CURRENCY ASSIGN")
    if isinstance(table, CurrencyTable):
        fallback = settings.currency if settings else None
        bills = bills_of(table.records, fallback)
        unknown = sorted({r.country for r in table.records
                          if r.base and r.to_bill(fallback) is None})
        hint = unknown_country_hint(unknown)
        if hint:
            notes.append(hint.removeprefix("; "))
    elif table is not None:
        notes.append(f"currency assignment refused ({_describe(table)})")
    return Id003Probe(version, bills, "; ".join(notes))


def _describe(reply: object) -> str:
    if isinstance(reply, InvalidCommand):
        return "invalid command"
    return type(reply).__name__
