"""Golden receipts: Document -> EscposPrinter -> pty -> simulator -> text file, compared
with the checked-in expectation in tests/printer/golden/.

Regenerate after an intended change with `UPDATE_GOLDEN=1 pytest tests/printer` and review
the diff like code: these files are what customers read.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from drivers.escpos.encoder import paper_document
from drivers.layout import render_plain
from kiosk import receipts

from .conftest import CHECK_CODE, PAYMENT_ID, RECORD_ID, SUPPORT_PHONE

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
PROFILE_BY_WIDTH = {32: "generic_58mm", 42: "custom_vkp80iii", 48: "citizen_ppu700"}
KINDS = ("payment", "payment_copy", "unclaimed", "unclaimed_copy", "encashment", "test")


def _document(kind: str, term, payment, unclaimed, encashment):
    if kind == "payment":
        return receipts.payment_receipt(term, payment)
    if kind == "payment_copy":
        note = replace(payment, status_note="Повторная печать / Reprint")
        return receipts.payment_receipt(term, note, copy=True)
    if kind == "unclaimed":
        return receipts.unclaimed_slip(term, unclaimed)
    if kind == "unclaimed_copy":
        return receipts.unclaimed_slip(term, unclaimed, copy=True)
    if kind == "encashment":
        return receipts.encashment_report(term, encashment)
    return receipts.test_page(term, "Golden test printer")


@pytest.mark.parametrize("columns", sorted(PROFILE_BY_WIDTH))
@pytest.mark.parametrize("kind", KINDS)
def test_golden_receipt(rig, kind, columns, term, payment, unclaimed, encashment) -> None:
    sim, printer = rig(PROFILE_BY_WIDTH[columns])
    assert printer.columns == columns
    # The engine lays a document out for its printer's width (TerminalInfo.columns).
    doc = _document(kind, replace(term, columns=columns), payment, unclaimed, encashment)
    printer.print_document(doc)
    assert sim.wait_for_receipts(1, timeout=10)
    assert sim.receipts_dir is not None
    printed = (sim.receipts_dir / "receipt_0001.txt").read_text(encoding="utf-8")

    # Paper reads exactly like the plain layout of what was printable.
    expected_lines = [
        line.rstrip() for line in render_plain(paper_document(doc, printer.settings), columns)
    ]
    while expected_lines and not expected_lines[-1]:
        expected_lines.pop()
    assert printed == "\n".join(expected_lines) + "\n"
    assert "?" not in printed
    assert all(
        len(line) <= columns
        for line in printed.splitlines()
        if not line.strip().startswith("[QR: ")
    )

    if kind in ("payment", "payment_copy", "unclaimed", "unclaimed_copy"):
        flat = " ".join(printed.split())
        assert SUPPORT_PHONE in printed
        assert (PAYMENT_ID if kind.startswith("payment") else RECORD_ID) in printed
        assert CHECK_CODE in printed
        assert ("КОПИЯ / COPY" in printed) == kind.endswith("_copy")
    if kind.startswith("payment"):
        # The status link is printed once, after its label, broken only at a safe point:
        # the payment id is whole on one line, and the lines put together are the link.
        link = receipts.status_link(term, PAYMENT_ID)
        after = printed.split("Статус платежа / Payment status:\n", 1)[1].splitlines()
        assert "".join(line.strip() for line in after) == link
        assert any(PAYMENT_ID in line for line in after)
        assert printed.count("https://") == (2 if printer.settings.qr else 1)  # + the QR
        assert term.terminal_id in printed
        assert "Сохраняйте чек до зачисления средств" in flat

    golden = GOLDEN / f"{kind}_{columns}.txt"
    if UPDATE:
        golden.write_text(printed, encoding="utf-8")
    assert golden.exists(), f"missing {golden}; run with UPDATE_GOLDEN=1 and review it"
    assert printed == golden.read_text(encoding="utf-8")
