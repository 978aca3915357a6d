"""VirtualPrinter: plain-text receipts in a folder, settable status."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.layout import render_plain
from drivers.printer import Document, PrinterError, PrinterStatus, ReceiptPrinter, Text
from drivers.virtual_printer import VirtualPrinter
from kiosk import receipts


def test_writes_numbered_plain_text(tmp_path: Path, term, payment) -> None:
    printer: ReceiptPrinter = VirtualPrinter(tmp_path / "out", columns=32)
    printer.start()
    doc = receipts.payment_receipt(term, payment)
    printer.print_document(doc)
    printer.print_document(Document("test", (Text("two"),)))
    first = tmp_path / "out" / "receipt_0001_payment.txt"
    assert first.read_text(encoding="utf-8") == "\n".join(render_plain(doc, 32)) + "\n"
    assert (tmp_path / "out" / "receipt_0002_test.txt").read_text(encoding="utf-8") == "two\n"


def test_numbering_continues_after_restart(tmp_path: Path) -> None:
    for _ in range(2):
        printer = VirtualPrinter(tmp_path)
        printer.start()
        printer.print_document(Document("test", (Text("x"),)))
        printer.stop()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "receipt_0001_test.txt",
        "receipt_0002_test.txt",
    ]


@pytest.mark.parametrize(
    "status",
    [
        PrinterStatus.PAPER_OUT,
        PrinterStatus.COVER_OPEN,
        PrinterStatus.CUTTER_ERROR,
        PrinterStatus.OFFLINE,
    ],
)
def test_status_is_settable_and_blocks_printing(tmp_path: Path, status) -> None:
    printer = VirtualPrinter(tmp_path)
    printer.start()
    printer.set_status(status)
    assert printer.status() is status
    with pytest.raises(PrinterError, match=status.value.replace("_", " ")):
        printer.print_document(Document("test", (Text("x"),)))
    assert list(tmp_path.iterdir()) == []
    printer.set_status(PrinterStatus.PAPER_NEAR_END)
    printer.print_document(Document("test", (Text("x"),)))
    assert len(printer.printed) == 1


def test_offline_until_started(tmp_path: Path) -> None:
    printer = VirtualPrinter(tmp_path)
    assert printer.status() is PrinterStatus.OFFLINE
    printer.start()
    assert printer.status() is PrinterStatus.OK
    printer.stop()
    assert printer.status() is PrinterStatus.OFFLINE


def test_cp866_preview_matches_paper(tmp_path: Path) -> None:
    printer = VirtualPrinter(tmp_path, columns=16, cp866_preview=True)
    printer.start()
    printer.print_document(Document("test", (Text("«Итого» 10 ₽"),)))
    assert printer.printed[0].read_text(encoding="utf-8") == '"Итого" 10 руб.\n'
