"""Ask whatever sits on a port whether it speaks CCNET, without changing its state.

Only IDENTIFICATION and GET BILL TABLE are sent (and their replies ACKed, as the link
rules require): no POLL, no RESET, no ENABLE. A unit that is busy with a bill answers
ILLEGAL COMMAND to both, which still proves it is a CCNET device.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from drivers.acceptor import Bill
from drivers.ccnet.billtable import bills_of
from drivers.ccnet.link import CcnetLink, NoReply, SerialPort
from drivers.ccnet.protocol import Command
from drivers.ccnet.replies import BillTable, ControlReply, Identification
from drivers.ccnet.timing import CcnetTiming
from drivers.framelog import FrameLog

PROBE_ATTEMPTS = 2
"""Fewer than in service: a silent port costs attempts × ident timeout per setting."""


@dataclass(frozen=True)
class CcnetProbe:
    identification: Identification | None
    bills: tuple[Bill, ...]
    note: str = ""


def probe_ccnet(
    port: SerialPort, timing: CcnetTiming, frame_log: FrameLog, address: int
) -> CcnetProbe | None:
    """None when nothing answered with a CRC-valid CCNET frame."""
    link_timing = replace(timing.link, attempts=min(timing.link.attempts, PROBE_ATTEMPTS))
    link = CcnetLink(port, link_timing, frame_log, address)
    ident_timeout = link_timing.ident_timeout_s
    try:
        ident = link.request(Command.IDENTIFICATION, timeout_s=ident_timeout)
    except NoReply:
        return None
    notes = []
    identification = ident if isinstance(ident, Identification) else None
    if identification is None:
        notes.append(f"identification refused ({_describe(ident)})")
    bills: tuple[Bill, ...] = ()
    try:
        table = link.request(Command.GET_BILL_TABLE, timeout_s=ident_timeout)
    except NoReply:
        table = None
        notes.append("no answer to GET BILL TABLE")
    if isinstance(table, BillTable):
        bills = bills_of(table.records)
    elif table is not None:
        notes.append(f"bill table refused ({_describe(table)})")
    return CcnetProbe(identification, bills, "; ".join(notes))


def _describe(reply: object) -> str:
    if isinstance(reply, ControlReply):
        return reply.code.name.lower().replace("_", " ")
    return type(reply).__name__
