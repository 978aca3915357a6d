"""VirtualPrinter: a ReceiptPrinter with no hardware, for the demo and tests without ptys.

Each document becomes a numbered text file (drivers.layout.render_plain), so a demo run
leaves the same receipts a customer would have received; the status is whatever the test
or demo sets, so every printer failure path can be exercised in-process.
"""

from __future__ import annotations

import threading
from pathlib import Path

from drivers.escpos.encoder import printable_block
from drivers.layout import render_plain
from drivers.printer import Document, PrinterError, PrinterStatus

DEFAULT_COLUMNS = 42
FILE_PATTERN = "receipt_{number:04d}_{kind}.txt"


class VirtualPrinter:
    def __init__(
        self,
        folder: Path,
        columns: int = DEFAULT_COLUMNS,
        *,
        status: PrinterStatus = PrinterStatus.OK,
        cp866_preview: bool = False,
    ) -> None:
        """`cp866_preview` applies the same typography replacements as a real CP866
        printer (₽ -> руб., « -> "), so the file shows what paper would."""
        self.folder = folder
        self._columns = columns
        self._status = status
        self._cp866 = cp866_preview
        self._lock = threading.Lock()
        self._started = False
        self._number = 0
        self.printed: list[Path] = []

    @property
    def columns(self) -> int:
        return self._columns

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._started = True
            self._number = len(list(self.folder.glob("receipt_*.txt")))

    def stop(self) -> None:
        with self._lock:
            self._started = False

    def set_status(self, status: PrinterStatus) -> None:
        with self._lock:
            self._status = status

    def status(self) -> PrinterStatus:
        with self._lock:
            return self._status if self._started else PrinterStatus.OFFLINE

    def print_document(self, document: Document) -> None:
        status = self.status()
        if not status.can_print:
            raise PrinterError(f"virtual printer cannot print: {status.value.replace('_', ' ')}")
        if self._cp866:  # replace before layout: "руб." is wider than "₽"
            blocks = tuple(printable_block(b, native_qr=True) for b in document.blocks)
            document = Document(document.kind, blocks)
        lines = render_plain(document, self._columns)
        with self._lock:
            self._number += 1
            path = self.folder / FILE_PATTERN.format(number=self._number, kind=document.kind)
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
            self.printed.append(path)
