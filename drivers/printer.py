"""The receipt-printer interface and the device-neutral document model.

kiosk/receipts builds `Document`s (what to print); a printer driver turns them into its
own bytes (ESC/POS for real printers, plain text for the virtual one). Keeping the model
here lets drivers/ stay free of kiosk/ imports (docs/architecture.md,
"Layers and imports").
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol


class PrinterStatus(enum.Enum):
    OK = "ok"
    PAPER_NEAR_END = "paper_near_end"
    PAPER_OUT = "paper_out"
    COVER_OPEN = "cover_open"
    CUTTER_ERROR = "cutter_error"
    OFFLINE = "offline"

    @property
    def can_print(self) -> bool:
        return self in (PrinterStatus.OK, PrinterStatus.PAPER_NEAR_END)


class Align(enum.Enum):
    LEFT = "left"
    CENTER = "center"
    RIGHT = "right"


@dataclass(frozen=True)
class Text:
    """One logical line. Drivers wrap it to the paper width; `double` is double width+height."""

    text: str
    align: Align = Align.LEFT
    bold: bool = False
    double: bool = False


@dataclass(frozen=True)
class Pair:
    """A label on the left, a value on the right, padded to the full width."""

    label: str
    value: str
    bold: bool = False


@dataclass(frozen=True)
class Rule:
    char: str = "-"


@dataclass(frozen=True)
class QrCode:
    data: str
    # On a printer without native QR the data is printed as text instead, so the customer
    # still gets it; False when the document prints the same text itself (no duplicate).
    text_fallback: bool = True


@dataclass(frozen=True)
class Feed:
    lines: int = 1


Block = Text | Pair | Rule | QrCode | Feed


@dataclass(frozen=True)
class Document:
    """A receipt or report: blocks from top to bottom; the driver cuts after the last one."""

    kind: str  # "payment", "unclaimed", "encashment", "test"
    blocks: tuple[Block, ...] = field(default_factory=tuple)


class PrinterError(Exception):
    """Printing failed; the message says why in words a technician understands."""


class ReceiptPrinter(Protocol):
    @property
    def columns(self) -> int: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def status(self) -> PrinterStatus:
        """Current status; queries the device (bounded by the profile's timeout)."""

    def print_document(self, document: Document) -> None:
        """Print and cut. Raises PrinterError if the printer cannot print it."""
