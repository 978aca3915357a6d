"""Meaning of an ID-003 reply, decided by the request that produced it (id003.md).

The same first byte means different things in different contexts: 0x11 is ENABLE as a
status but STATUS REQUEST as a command, 0x50 is ACK only after an operation command, and a
setting command is answered by its own echo. So nothing here guesses from the bytes
alone (lamassu PR #496 is the CCNET lesson). Parsing never raises: a reply of the wrong
shape becomes `Malformed`.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.id003.currency import CurrencyRecord, decode_currency_table
from drivers.id003.protocol import (
    CURRENCY_RECORD_LEN,
    OPERATION_COMMANDS,
    SETTING_COMMANDS,
    SETTING_REQUESTS,
    Command,
    ReplyCode,
)
from drivers.id003.states import DATA_REQUIRED, HAS_DATA


@dataclass(frozen=True)
class AckReply:
    """ACK 0x50: the acceptor took an operation command (RESET, STACK, RETURN, HOLD)."""


@dataclass(frozen=True)
class InvalidCommand:
    """0x4B: unknown command, or not allowed in the current state."""


@dataclass(frozen=True)
class CommunicationError:
    """0x4A: the acceptor could not read our frame; the link asks again."""


@dataclass(frozen=True)
class StatusReply:
    code: int
    data: bytes = b""

    @property
    def first(self) -> int | None:
        return self.data[0] if self.data else None


@dataclass(frozen=True)
class SettingEcho:
    """A setting command's echo (or a request-setting answer): command code and data."""

    command: int
    data: bytes


@dataclass(frozen=True)
class VersionReply:
    text: str

    @property
    def model(self) -> str:
        """First word, e.g. "i(USA)100-SS" (Aristocrat's format "m(mmm)-mm-mm ID003-..." [S])."""
        return self.text.split(" ", 1)[0] if self.text else ""

    @property
    def firmware(self) -> str:
        """The protocol/version word, e.g. "ID003-05V280-42"; "" if absent."""
        words = self.text.split()
        return next((w for w in words if w.upper().startswith("ID003")), "")


@dataclass(frozen=True)
class BootVersionReply:
    text: str


@dataclass(frozen=True)
class CurrencyTable:
    records: tuple[CurrencyRecord, ...]


@dataclass(frozen=True)
class Malformed:
    """A CRC-valid reply whose shape does not fit the request (protocol anomaly)."""

    reason: str
    payload: bytes


Reply = (
    AckReply | InvalidCommand | CommunicationError | StatusReply | SettingEcho | VersionReply
    | BootVersionReply | CurrencyTable | Malformed
)


def _text(raw: bytes) -> str:
    return raw.decode("ascii", "replace").replace("\x00", " ").strip()


def parse_reply(request: int, payload: bytes) -> Reply:
    """Interpret `payload` (CMD+DATA of a CRC-valid reply) as the answer to `request`."""
    if not payload:
        return Malformed("empty reply", payload)
    code, data = payload[0], bytes(payload[1:])
    # 0x4A / 0x4B answer any request alike; neither ever carries data.
    if code == ReplyCode.INVALID_COMMAND and not data:
        return InvalidCommand()
    if code == ReplyCode.COMMUNICATION_ERROR and not data:
        return CommunicationError()
    if request == Command.STATUS_REQUEST:
        if code == ReplyCode.ENQ:
            return Malformed("ENQ in polled mode", payload)
        if data and code not in HAS_DATA:
            return Malformed(f"status 0x{code:02X} with {len(data)} data bytes", payload)
        if code in DATA_REQUIRED and not data:
            return Malformed(f"status 0x{code:02X} without its data byte", payload)
        return StatusReply(code, data)
    if request in OPERATION_COMMANDS:
        if code == ReplyCode.ACK and not data:
            return AckReply()
        return Malformed(f"reply 0x{code:02X} to operation 0x{request:02X}", payload)
    if request in SETTING_COMMANDS or request in SETTING_REQUESTS:
        if code != request:
            return Malformed(f"reply 0x{code:02X} to setting 0x{request:02X}", payload)
        return SettingEcho(code, data)
    if request in (Command.VERSION_REQUEST, Command.BOOT_VERSION_REQUEST):
        if code != request:
            return Malformed(f"reply 0x{code:02X} to 0x{request:02X}", payload)
        text = _text(data)
        return VersionReply(text) if request == Command.VERSION_REQUEST else BootVersionReply(text)
    if request == Command.CURRENCY_ASSIGN_REQUEST:
        if code != request or not data or len(data) % CURRENCY_RECORD_LEN:
            return Malformed(f"CURRENCY ASSIGN reply of {len(data)} data bytes", payload)
        return CurrencyTable(decode_currency_table(data))
    return Malformed(f"reply to command 0x{request:02X}, which expects none", payload)
