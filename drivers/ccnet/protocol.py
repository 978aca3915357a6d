"""CCNET protocol constants: frame layout, peripheral addresses and command codes
(docs/protocols/ccnet.md, "Frame layout", "Commands").

Every number on the wire lives here or in `states`; other modules use the names.
"""

from __future__ import annotations

import enum

SYNC = 0x02
"""First byte of every frame, host and device alike."""

HEADER_LEN = 3  # SYNC, ADR, LNG
CRC_LEN = 2
MIN_FRAME_LEN = HEADER_LEN + 1 + CRC_LEN  # a frame always carries CMD (or the first data byte)
MAX_FRAME_LEN = 0xFF  # LNG is one byte; LNG = 0 marks an extended frame we do not speak
MAX_PAYLOAD_LEN = MAX_FRAME_LEN - HEADER_LEN - CRC_LEN

BILL_TYPE_COUNT = 24
"""Bill types 0..23: the 3-byte masks and the 24-record bill table."""
MASK_LEN = 3
BILL_RECORD_LEN = 5
BILL_TABLE_LEN = BILL_TYPE_COUNT * BILL_RECORD_LEN

IDENT_LEN = 34
PART_NUMBER_LEN = 15
SERIAL_NUMBER_LEN = 12
ASSET_NUMBER_LEN = 7

STATUS_LEN = 6  # enabled mask + security mask; Bill-to-Bill units add 3 routing bytes
BUSY_UNIT_S = 0.1  # Z2 of Device Busy counts 100 ms units


class Address(enum.IntEnum):
    """Peripheral address byte (ADR)."""

    BILL_TO_BILL = 0x01
    COIN_CHANGER = 0x02
    BILL_VALIDATOR = 0x03
    CARD_READER = 0x04


class Command(enum.IntEnum):
    """Controller commands (CMD byte of a host frame)."""

    ACK = 0x00
    RESET = 0x30
    GET_STATUS = 0x31
    SET_SECURITY = 0x32
    POLL = 0x33
    ENABLE_BILL_TYPES = 0x34
    STACK = 0x35
    RETURN = 0x36
    IDENTIFICATION = 0x37
    HOLD = 0x38
    GET_BILL_TABLE = 0x41
    NAK = 0xFF


class Control(enum.IntEnum):
    """One-byte device replies that are link control rather than data (a 6-byte frame)."""

    ACK = 0x00
    ILLEGAL_COMMAND = 0x30
    NAK = 0xFF


DATA_COMMANDS = frozenset(
    {Command.POLL, Command.GET_STATUS, Command.IDENTIFICATION, Command.GET_BILL_TABLE}
)
"""Commands answered with data; the host must ACK those replies (ccnet.md, "Link rules")."""
