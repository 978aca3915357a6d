"""Meaning of a device reply, decided by the request that produced it (ccnet.md).

The first payload byte of a reply is data, not a command: 0x00 in a 6-byte frame is ACK
to a RESET but would be a bill-table mantissa in a 125-byte frame. lamassu misparsed a
bill table as a status for exactly this reason (PR #496), so nothing here guesses from
the bytes alone. Parsing never raises: a reply of the wrong shape becomes `Malformed`.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.ccnet.billtable import BillRecord, decode_bill_table, decode_mask
from drivers.ccnet.protocol import (
    ASSET_NUMBER_LEN,
    BILL_TABLE_LEN,
    IDENT_LEN,
    MASK_LEN,
    PART_NUMBER_LEN,
    SERIAL_NUMBER_LEN,
    STATUS_LEN,
    Command,
    Control,
)

_POLL_MAX_LEN = 2  # Z1 and an optional Z2; longer replies exist only on B2B units
_CONTROL_CODES = frozenset(c.value for c in Control)


@dataclass(frozen=True)
class ControlReply:
    """ACK, NAK or ILLEGAL COMMAND: a 6-byte frame whose single payload byte is a code."""

    code: Control


@dataclass(frozen=True)
class PollReply:
    z1: int
    z2: int | None = None


@dataclass(frozen=True)
class Identification:
    part_number: str
    serial_number: str
    asset_number: bytes

    @property
    def firmware(self) -> str:
        """Build digits after the last dash, as TerminalClient reads them ("SM-RU1353" → "1353")."""
        tail = self.part_number.rsplit("-", 1)[-1]
        digits = "".join(ch for ch in tail if ch.isdigit())
        return digits


@dataclass(frozen=True)
class BillTable:
    records: tuple[BillRecord, ...]


@dataclass(frozen=True)
class StatusReply:
    enabled: frozenset[int]
    security: frozenset[int]


@dataclass(frozen=True)
class Malformed:
    """A CRC-valid reply whose shape does not fit the request (protocol anomaly)."""

    reason: str
    payload: bytes


Reply = ControlReply | PollReply | Identification | BillTable | StatusReply | Malformed
DataReply = PollReply | Identification | BillTable | StatusReply


def is_data(reply: Reply) -> bool:
    """Data replies are ACKed by the host; control replies and anomalies are not."""
    return isinstance(reply, PollReply | Identification | BillTable | StatusReply)


def _text(raw: bytes) -> str:
    return raw.decode("ascii", "replace").replace("\x00", " ").strip()


def parse_reply(request: int, payload: bytes) -> Reply:
    """Interpret `payload` (CMD+DATA of a CRC-valid reply) as the answer to `request`."""
    if len(payload) == 1 and payload[0] in _CONTROL_CODES:
        code = Control(payload[0])
        # ILLEGAL COMMAND (0x30) and ACK/NAK never appear as POLL states, so a one-byte
        # control code means the same thing whatever was asked.
        return ControlReply(code)
    if not payload:
        return Malformed("empty reply", payload)
    if request == Command.POLL:
        if len(payload) > _POLL_MAX_LEN:
            return Malformed(f"POLL reply of {len(payload)} bytes", payload)
        return PollReply(payload[0], payload[1] if len(payload) > 1 else None)
    if request == Command.IDENTIFICATION:
        if len(payload) < IDENT_LEN:
            return Malformed(f"IDENTIFICATION reply of {len(payload)} bytes", payload)
        serial_end = PART_NUMBER_LEN + SERIAL_NUMBER_LEN
        return Identification(
            part_number=_text(payload[:PART_NUMBER_LEN]),
            serial_number=_text(payload[PART_NUMBER_LEN:serial_end]),
            asset_number=bytes(payload[serial_end : serial_end + ASSET_NUMBER_LEN]),
        )
    if request == Command.GET_BILL_TABLE:
        if len(payload) != BILL_TABLE_LEN:
            return Malformed(f"GET BILL TABLE reply of {len(payload)} bytes", payload)
        return BillTable(decode_bill_table(payload))
    if request == Command.GET_STATUS:
        if len(payload) < STATUS_LEN:
            return Malformed(f"GET STATUS reply of {len(payload)} bytes", payload)
        return StatusReply(decode_mask(payload[:MASK_LEN]), decode_mask(payload[MASK_LEN:]))
    return Malformed(f"data reply to command 0x{request:02X}, which expects ACK", payload)
