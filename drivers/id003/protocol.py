"""JCM ID-003 protocol constants: frame layout and command codes (docs/protocols/
id003.md).

Every number on the wire lives here or in `states`; other modules use the names.
ID-003 has no peripheral address and no NAK: a frame is `SYNC | LNG | CMD | DATA | CRC`,
the same layout in both directions, and a host that gets no valid reply simply asks again.
"""

from __future__ import annotations

import enum

SYNC = 0xFC
"""First byte of every frame, host and device alike."""

HEADER_LEN = 2  # SYNC, LNG
CRC_LEN = 2
MIN_FRAME_LEN = HEADER_LEN + 1 + CRC_LEN  # LNG is 5 when there is no data
MAX_FRAME_LEN = 0xFF  # LNG is one byte
MAX_DATA_LEN = MAX_FRAME_LEN - MIN_FRAME_LEN

DENOMINATION_MASK_LEN = 2
"""ENABLE/DISABLE (0xC0) data: bit = 1 inhibits; only the first byte is used (py-id003) [S]."""
CURRENCY_RECORD_LEN = 4
"""CURRENCY ASSIGN reply: escrow code, country number, base, exponent per denomination."""
OPTIONAL_FUNCTION_LEN = 2  # py-id003 sends two bytes [S]


class Command(enum.IntEnum):
    """Host → acceptor command codes (CMD byte of a host frame)."""

    STATUS_REQUEST = 0x11
    RESET = 0x40
    STACK_1 = 0x41
    STACK_2 = 0x42
    RETURN = 0x43
    HOLD = 0x44
    WAIT = 0x45
    ACK = 0x50
    ENABLE_DISABLE = 0xC0  # "ENABLE/DISABLE denominations", 2 bytes, bit = 1 inhibits
    SECURITY = 0xC1
    COMMUNICATION_MODE = 0xC2
    INHIBIT = 0xC3  # 1 byte: 0x01 inhibit, 0x00 accept
    DIRECTION = 0xC4
    OPTIONAL_FUNCTION = 0xC5
    BARCODE_FUNCTION = 0xC6
    BARCODE_INHIBIT = 0xC7
    REQUEST_ENABLE_DISABLE = 0x80
    REQUEST_SECURITY = 0x81
    REQUEST_COMMUNICATION_MODE = 0x82
    REQUEST_INHIBIT = 0x83
    REQUEST_DIRECTION = 0x84
    REQUEST_OPTIONAL_FUNCTION = 0x85
    REQUEST_BARCODE_FUNCTION = 0x86
    REQUEST_BARCODE_INHIBIT = 0x87
    VERSION_REQUEST = 0x88
    BOOT_VERSION_REQUEST = 0x89
    CURRENCY_ASSIGN_REQUEST = 0x8A


class ReplyCode(enum.IntEnum):
    """Acceptor → host codes that are link answers, not acceptor states."""

    ACK = 0x50  # answer to an operation command
    COMMUNICATION_ERROR = 0x4A  # the acceptor received a frame it could not read
    INVALID_COMMAND = 0x4B  # the command is unknown or not allowed in this state
    ENQ = 0x05  # interrupt mode only, framed (lamassu parses it as a frame's CMD) [S]


OPERATION_COMMANDS = frozenset(
    {Command.RESET, Command.STACK_1, Command.STACK_2, Command.RETURN, Command.HOLD,
     Command.WAIT}
)
"""Answered with ACK 0x50 (id003.md, "Commands")."""
SETTING_COMMANDS = frozenset(
    {Command.ENABLE_DISABLE, Command.SECURITY, Command.COMMUNICATION_MODE, Command.INHIBIT,
     Command.DIRECTION, Command.OPTIONAL_FUNCTION, Command.BARCODE_FUNCTION,
     Command.BARCODE_INHIBIT}
)
"""Answered by echoing the command and its data (id003.md, "Commands")."""
SETTING_REQUESTS = frozenset(c for c in Command if 0x80 <= c <= 0x87)
""""Request setting" commands: answered with the command code and the current setting."""
STACK_COMMANDS = {1: Command.STACK_1, 2: Command.STACK_2}


class OptionalFunction(enum.IntFlag):
    """Bits of the first OPTIONAL FUNCTION byte (py-id003) [S]."""

    POWER_RECOVERY = 0x02
    AUTO_RETRY = 0x04
    BARCODE_24_CHAR = 0x08
    NEAR_FULL = 0x20
    ENTRANCE_EVENT = 0x40
    ENCRYPTION = 0x80


COMMUNICATION_MODE_POLLED = 0x00  # Aristocrat Monaco Id003Protocol: 0 = polled [S]
COMMUNICATION_MODE_INTERRUPT = 0x01  # the unit sends ENQ when it has news [S]
INHIBIT_ON = 0x01
INHIBIT_OFF = 0x00
