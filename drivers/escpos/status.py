"""Decoding printer status replies into `PrinterStatus` plus words for a technician.

Two flavours (docs/protocols/escpos.md, "Status"):
- DLE EOT n (n = 1..4): one byte each, with fixed bits (b1 = b4 = 1, b0 = b7 = 0) that
  tell a real reply from line noise or XON/XOFF;
- Custom "full status" DLE EOT 20: six bytes `10 0F P U R X`.
Anything that does not look like a reply raises StatusError; callers turn that into
OFFLINE (a status nobody can trust must not let a receipt print).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from drivers.escpos.commands import StatusRequest
from drivers.printer import PrinterStatus

REALTIME_FIXED_MASK = 0x93  # bits 0, 1, 4, 7
REALTIME_FIXED_VALUE = 0x12  # b1 = 1, b4 = 1, b0 = 0, b7 = 0
XON = 0x11
XOFF = 0x13
FULL_STATUS_HEADER = bytes([0x10, 0x0F])
FULL_STATUS_LENGTH = 6


class StatusError(ValueError):
    """A status reply that is not one; the message shows the bytes."""


def _bit(byte: int, mask: int) -> bool:
    """True if any bit of `mask` is set (paper sensors report on two bits at once)."""
    return bool(byte & mask)


def check_realtime_byte(request: StatusRequest, byte: int) -> None:
    if not 0 <= byte <= 0xFF:
        raise StatusError(f"DLE EOT {int(request)}: {byte!r} is not a byte")
    if byte == XOFF:
        raise StatusError(f"DLE EOT {int(request)}: got XOFF (13): printer buffer is full")
    if byte == XON:
        raise StatusError(f"DLE EOT {int(request)}: got XON (11) instead of a status byte")
    if byte & REALTIME_FIXED_MASK != REALTIME_FIXED_VALUE:
        raise StatusError(
            f"DLE EOT {int(request)}: reply {byte:02x} has wrong fixed bits "
            f"(expected xxx1xx10 in binary)"
        )


@dataclass(frozen=True)
class PrinterFlags:
    """DLE EOT 1."""

    drawer_high: bool = False  # 0x04
    offline: bool = False  # 0x08
    waiting_recovery: bool = False  # 0x20
    feed_pressed: bool = False  # 0x40

    @classmethod
    def decode(cls, byte: int) -> PrinterFlags:
        check_realtime_byte(StatusRequest.PRINTER, byte)
        return cls(_bit(byte, 0x04), _bit(byte, 0x08), _bit(byte, 0x20), _bit(byte, 0x40))


@dataclass(frozen=True)
class OfflineCause:
    """DLE EOT 2."""

    cover_open: bool = False  # 0x04
    feeding: bool = False  # 0x08: paper fed by the FEED button
    paper_end_stop: bool = False  # 0x20: printing stopped by paper end
    error: bool = False  # 0x40

    @classmethod
    def decode(cls, byte: int) -> OfflineCause:
        check_realtime_byte(StatusRequest.OFFLINE_CAUSE, byte)
        return cls(_bit(byte, 0x04), _bit(byte, 0x08), _bit(byte, 0x20), _bit(byte, 0x40))


@dataclass(frozen=True)
class ErrorCause:
    """DLE EOT 3."""

    mechanical: bool = False  # 0x04 (Citizen PPU-700: presenter error)
    autocutter: bool = False  # 0x08
    unrecoverable: bool = False  # 0x20
    auto_recoverable: bool = False  # 0x40 (e.g. head temperature)

    @classmethod
    def decode(cls, byte: int) -> ErrorCause:
        check_realtime_byte(StatusRequest.ERROR_CAUSE, byte)
        return cls(_bit(byte, 0x04), _bit(byte, 0x08), _bit(byte, 0x20), _bit(byte, 0x40))


@dataclass(frozen=True)
class PaperSensor:
    """DLE EOT 4 (each condition is reported on two bits)."""

    near_end: bool = False  # 0x0C
    paper_end: bool = False  # 0x60 (Citizen PPU-700 uses 0x20 for end, 0x40 for presenter)

    @classmethod
    def decode(cls, byte: int) -> PaperSensor:
        check_realtime_byte(StatusRequest.PAPER, byte)
        return cls(_bit(byte, 0x0C), _bit(byte, 0x60))


@dataclass(frozen=True)
class StatusReport:
    """A decoded status: the verdict, what a technician should read, and the raw bytes."""

    status: PrinterStatus
    details: tuple[str, ...] = ()
    raw: bytes = b""
    ticket_in_presenter: bool = False
    printing: bool = False

    @property
    def can_print(self) -> bool:
        return self.status.can_print

    def describe(self) -> str:
        text = self.status.value.replace("_", " ")
        return f"{text} ({', '.join(self.details)})" if self.details else text


def _verdict(
    *, cover: bool, paper_out: bool, cutter: bool, blocked: bool, near_end: bool
) -> PrinterStatus:
    """The one status a kiosk acts on, most urgent first."""
    if cover:
        return PrinterStatus.COVER_OPEN
    if paper_out:
        return PrinterStatus.PAPER_OUT
    if cutter:
        return PrinterStatus.CUTTER_ERROR
    if blocked:
        return PrinterStatus.OFFLINE
    if near_end:
        return PrinterStatus.PAPER_NEAR_END
    return PrinterStatus.OK


def _names(obj: object, labels: dict[str, str]) -> list[str]:
    return [labels[f.name] for f in fields(obj) if getattr(obj, f.name)]  # type: ignore[arg-type]


REALTIME_LABELS: dict[str, str] = {
    "drawer_high": "drawer pin high",
    "offline": "offline",
    "waiting_recovery": "waiting for online recovery",
    "feed_pressed": "FEED button pressed",
    "cover_open": "cover open",
    "feeding": "paper fed by FEED button",
    "paper_end_stop": "printing stopped by paper end",
    "error": "error occurred",
    "mechanical": "mechanical error",
    "autocutter": "autocutter error",
    "unrecoverable": "unrecoverable error",
    "auto_recoverable": "auto-recoverable error (e.g. head temperature)",
    "near_end": "paper near end",
    "paper_end": "paper end",
}


def classify_realtime(
    printer: PrinterFlags,
    offline: OfflineCause,
    error: ErrorCause,
    paper: PaperSensor,
    raw: bytes = b"",
) -> StatusReport:
    """DLE EOT 1..4 together -> one StatusReport."""
    details: list[str] = []
    for part in (printer, offline, error, paper):
        details += [d for d in _names(part, REALTIME_LABELS) if d not in details]
    status = _verdict(
        cover=offline.cover_open,
        paper_out=paper.paper_end or offline.paper_end_stop,
        cutter=error.autocutter,
        blocked=(
            printer.offline
            or printer.waiting_recovery
            or offline.error
            or error.mechanical
            or error.unrecoverable
            or error.auto_recoverable
        ),
        near_end=paper.near_end,
    )
    return StatusReport(status, tuple(details), raw)


REALTIME_ORDER: tuple[StatusRequest, ...] = (
    StatusRequest.PRINTER,
    StatusRequest.OFFLINE_CAUSE,
    StatusRequest.ERROR_CAUSE,
    StatusRequest.PAPER,
)


def decode_realtime(replies: bytes) -> StatusReport:
    """Four reply bytes, to DLE EOT 1, 2, 3 and 4 in that order."""
    if len(replies) != len(REALTIME_ORDER):
        raise StatusError(
            f"expected {len(REALTIME_ORDER)} DLE EOT replies, got {len(replies)}: "
            f"{replies.hex(' ') or '(nothing)'}"
        )
    return classify_realtime(
        PrinterFlags.decode(replies[0]),
        OfflineCause.decode(replies[1]),
        ErrorCause.decode(replies[2]),
        PaperSensor.decode(replies[3]),
        bytes(replies),
    )


@dataclass(frozen=True)
class FullStatus:
    """Custom DLE EOT 20 reply `10 0F P U R X`, bit by bit (escpos.md, "Custom full status")."""

    # P: paper
    paper_absent: bool = False  # 0x01
    near_end: bool = False  # 0x04
    ticket_in_presenter: bool = False  # 0x20
    virtual_paper_end: bool = False  # 0x40 (remaining-length counter reached 0)
    notch: bool = False  # 0x80 (sense differs between manuals)
    # U: user
    head_up: bool = False  # 0x01
    cover_open: bool = False  # 0x02
    spooling: bool = False  # 0x04
    motor_on: bool = False  # 0x08
    lf_key: bool = False  # 0x20
    ff_key: bool = False  # 0x40
    # R: recoverable errors
    head_temperature: bool = False  # 0x01
    com_error: bool = False  # 0x02 (TG2480H: presenter error, per e-kiosk)
    voltage: bool = False  # 0x08
    not_acknowledged: bool = False  # 0x20
    paper_jam: bool = False  # 0x40
    notch_search_error: bool = False  # 0x80
    # X: unrecoverable errors
    cutter_error: bool = False  # 0x01
    cutter_cover_open: bool = False  # 0x02
    ram_error: bool = False  # 0x04
    eeprom_error: bool = False  # 0x08
    presenter_error: bool = False  # 0x80


FULL_STATUS_BITS: tuple[tuple[int, int, str], ...] = (
    # (byte index in the reply, mask, field)
    (2, 0x01, "paper_absent"),
    (2, 0x04, "near_end"),
    (2, 0x20, "ticket_in_presenter"),
    (2, 0x40, "virtual_paper_end"),
    (2, 0x80, "notch"),
    (3, 0x01, "head_up"),
    (3, 0x02, "cover_open"),
    (3, 0x04, "spooling"),
    (3, 0x08, "motor_on"),
    (3, 0x20, "lf_key"),
    (3, 0x40, "ff_key"),
    (4, 0x01, "head_temperature"),
    (4, 0x02, "com_error"),
    (4, 0x08, "voltage"),
    (4, 0x20, "not_acknowledged"),
    (4, 0x40, "paper_jam"),
    (4, 0x80, "notch_search_error"),
    (5, 0x01, "cutter_error"),
    (5, 0x02, "cutter_cover_open"),
    (5, 0x04, "ram_error"),
    (5, 0x08, "eeprom_error"),
    (5, 0x80, "presenter_error"),
)

FULL_LABELS: dict[str, str] = {
    "paper_absent": "paper end",
    "near_end": "paper near end",
    "ticket_in_presenter": "ticket in presenter",
    "virtual_paper_end": "paper length counter at zero",
    "notch": "notch/black mark",
    "head_up": "print head up",
    "cover_open": "cover open",
    "spooling": "spooling",
    "motor_on": "printing",
    "lf_key": "LF key pressed",
    "ff_key": "FF key pressed",
    "head_temperature": "print head temperature",
    "com_error": "serial error (TG2480H: presenter error)",
    "voltage": "power supply voltage",
    "not_acknowledged": "command not acknowledged",
    "paper_jam": "paper jam",
    "notch_search_error": "notch search error",
    "cutter_error": "autocutter error",
    "cutter_cover_open": "cutter cover open",
    "ram_error": "RAM error",
    "eeprom_error": "EEPROM error",
    "presenter_error": "presenter error",
}

# Conditions that stop printing but have no PrinterStatus of their own.
FULL_BLOCKING: tuple[str, ...] = (
    "head_temperature",
    "voltage",
    "paper_jam",
    "notch_search_error",
    "ram_error",
    "eeprom_error",
    "presenter_error",
)


def decode_full_status(reply: bytes) -> FullStatus:
    if len(reply) != FULL_STATUS_LENGTH or reply[:2] != FULL_STATUS_HEADER:
        raise StatusError(
            f"full status: expected 6 bytes starting 10 0f, got {len(reply)}: "
            f"{reply.hex(' ') or '(nothing)'}"
        )
    values = {name: _bit(reply[index], mask) for index, mask, name in FULL_STATUS_BITS}
    return FullStatus(**values)


def classify_full(full: FullStatus, raw: bytes = b"") -> StatusReport:
    status = _verdict(
        cover=full.cover_open or full.head_up or full.cutter_cover_open,
        paper_out=full.paper_absent,
        cutter=full.cutter_error,
        blocked=any(getattr(full, name) for name in FULL_BLOCKING),
        near_end=full.near_end or full.virtual_paper_end,
    )
    return StatusReport(
        status,
        tuple(_names(full, FULL_LABELS)),
        raw,
        ticket_in_presenter=full.ticket_in_presenter,
        printing=full.motor_on or full.spooling,
    )


def decode_full(reply: bytes) -> StatusReport:
    return classify_full(decode_full_status(reply), bytes(reply))
