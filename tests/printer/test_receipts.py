"""Receipt content: money formatting, required fields, and layout at every paper width."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import datetime

import pytest

from drivers.layout import render_plain
from drivers.printer import Document, QrCode, Text
from kiosk import receipts

from .conftest import PAYMENT_ID, RECORD_ID, SUPPORT_PHONE

WIDTHS = (32, 42, 48)


@pytest.mark.parametrize(
    ("minor", "currency", "expected"),
    [
        (0, "RUB", "0.00 руб."),
        (5, "RUB", "0.05 руб."),
        (100, "RUB", "1.00 руб."),
        (123450, "RUB", "1 234.50 руб."),
        (100000000, "rub", "1 000 000.00 руб."),
        (-2550, "RUB", "-25.50 руб."),
        (99999, "KZT", "999.99 тг."),
        (1500, "USD", "15.00 USD"),
        (1500, "JPY", "1 500 JPY"),
    ],
)
def test_format_money(minor: int, currency: str, expected: str) -> None:
    assert receipts.format_money(minor, currency) == expected


@pytest.mark.parametrize("bad", [1.5, "100", True])
def test_format_money_refuses_non_integers(bad: object) -> None:
    with pytest.raises(TypeError):
        receipts.format_money(bad, "RUB")  # type: ignore[arg-type]


def test_naive_datetime_is_refused(term, payment) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        receipts.payment_receipt(term, replace(payment, created_at=datetime(2025, 1, 1)))


def test_status_link(term) -> None:
    assert receipts.status_link(term, "X-1") == "https://pay.example.ru/s/X-1"
    assert receipts.status_link(replace(term, status_url=None), "X-1") == "X-1"
    fixed = replace(term, status_url="https://pay.example.ru/check")
    assert receipts.status_link(fixed, "X-1") == "https://pay.example.ru/check"


def _customer_documents(term, payment, unclaimed) -> list[Document]:
    return [
        receipts.payment_receipt(term, payment),
        receipts.payment_receipt(term, payment, copy=True),
        receipts.payment_receipt(term, replace(payment, status_note="Повтор / Reprint")),
        receipts.payment_receipt(replace(term, status_url=None), payment),
        receipts.unclaimed_slip(term, unclaimed),
    ]


def _all_documents(term, payment, unclaimed, encashment) -> list[Document]:
    return [
        *_customer_documents(term, payment, unclaimed),
        receipts.encashment_report(term, encashment),
        receipts.test_page(term, "Custom VKP80III"),
    ]


@pytest.mark.parametrize("columns", WIDTHS)
def test_customer_documents_carry_what_support_needs(term, payment, unclaimed, columns) -> None:
    for doc in _customer_documents(term, payment, unclaimed):
        text = "\n".join(render_plain(doc, columns))
        doc_id = PAYMENT_ID if doc.kind == receipts.KIND_PAYMENT else RECORD_ID
        assert SUPPORT_PHONE in text, doc.kind
        assert "Телефон поддержки / Support:" in text
        assert doc_id in text, doc.kind
        assert term.terminal_id in text
        assert "05.03.2025 14:37:12" in text
        flat = " ".join(text.split())
        assert receipts.KEEP_RECEIPT_RU in flat
        assert receipts.KEEP_RECEIPT_EN in flat


def test_payment_receipt_fields(term, payment) -> None:
    doc = receipts.payment_receipt(term, payment)
    text = "\n".join(render_plain(doc, 48))
    for expected in (
        "Принято / Inserted",
        "1 234.50 руб.",
        "Комиссия / Fee",
        "25.00 руб.",
        "Зачислено / Credited",
        "1 209.50 руб.",
        payment.account,
    ):
        assert expected in text
    qrs = [b for b in doc.blocks if isinstance(b, QrCode)]
    # The link is printed as text below the QR, so no text fallback prints it twice.
    assert qrs == [QrCode(f"https://pay.example.ru/s/{PAYMENT_ID}", text_fallback=False)]
    bare = receipts.payment_receipt(replace(term, status_url=None), payment)
    assert [b for b in bare.blocks if isinstance(b, QrCode)] == [QrCode(PAYMENT_ID)]


def test_copy_and_note_are_marked(term, payment) -> None:
    assert "КОПИЯ" not in "\n".join(render_plain(receipts.payment_receipt(term, payment), 42))
    copy = "\n".join(render_plain(receipts.payment_receipt(term, payment, copy=True), 42))
    assert "КОПИЯ / COPY" in copy
    noted = receipts.payment_receipt(term, replace(payment, status_note="Без проверки бумаги"))
    assert "Без проверки бумаги" in "\n".join(render_plain(noted, 42))


def test_unclaimed_slip_explains(term, unclaimed) -> None:
    text = " ".join(render_plain(receipts.unclaimed_slip(term, unclaimed), 42))
    flat = " ".join(text.split())
    assert "YOUR MONEY IS SAFE" in flat
    assert "500.00 руб." in flat
    assert f"quote record {RECORD_ID}" in flat
    assert f"назовите номер записи {RECORD_ID}" in flat


def test_encashment_report(term, encashment) -> None:
    text = "\n".join(render_plain(receipts.encashment_report(term, encashment), 42))
    assert "50.00 x 7" in text and "350.00 руб." in text
    assert "5 000.00 x 3" in text and "15 000.00 руб." in text
    assert "Купюр / Notes" in text and "22" in text
    assert "16 550.00 руб." in text
    assert "WARNING" not in text
    assert "01.03.2025 09:00:00" in text


def test_encashment_mismatch_is_printed(term, encashment) -> None:
    doc = receipts.encashment_report(term, replace(encashment, total_minor=1))
    assert "WARNING" in "\n".join(render_plain(doc, 42))


def test_encashment_without_period(term, encashment) -> None:
    doc = receipts.encashment_report(term, replace(encashment, period_start=None, counts=()))
    assert "0.00 руб." in "\n".join(render_plain(doc, 32))


def _is_qr_placeholder(line: str) -> bool:
    return line.strip().startswith("[QR: ")


@pytest.mark.parametrize("columns", WIDTHS)
def test_every_line_fits(term, payment, unclaimed, encashment, columns) -> None:
    for doc in _all_documents(term, payment, unclaimed, encashment):
        for line in render_plain(doc, columns):
            if _is_qr_placeholder(line):
                continue  # see test_qr_placeholder_fits: a drivers/layout.py matter
            assert len(line) <= columns, (doc.kind, line)


@pytest.mark.parametrize("columns", [32, 42, 48])
def test_qr_placeholder_fits(term, payment, columns) -> None:
    for line in render_plain(receipts.payment_receipt(term, payment), columns):
        assert len(line) <= columns, line


def test_test_page_is_not_collected_as_a_test() -> None:
    assert receipts.test_page.__test__ is False  # type: ignore[attr-defined]


@pytest.mark.parametrize("columns", [10, 16, 20, 32, 42, 48])
@pytest.mark.parametrize(
    "url",
    [
        "https://pay.example.ru/s/{payment_id}",
        "https://pay.example.ru/status?terminal=10023456&payment={payment_id}&lang=ru",
        "https://averyveryveryveryverylonghostname.example.ru/p{payment_id}",
    ],
)
def test_status_link_is_broken_only_at_safe_points(term, columns, url) -> None:
    """The link is printed once, in lines that put together give it back, each break
    after a / ? & = # or at an edge of the id, never inside the payment id."""
    link = url.replace("{payment_id}", PAYMENT_ID)
    lines = receipts.link_lines(link, columns, PAYMENT_ID)
    assert "".join(lines) == link
    assert any(PAYMENT_ID in line for line in lines)
    for before, after in itertools.pairwise(lines):
        assert before[-1] in receipts.LINK_BREAK_AFTER or before.endswith(PAYMENT_ID) or (
            after.startswith(PAYMENT_ID)
        ), (before, after)
    if len(link) <= columns:
        assert lines == [link]
    doc = receipts.payment_receipt(replace(term, status_url=url, columns=columns), PAYMENT)
    texts = [b.text for b in doc.blocks if isinstance(b, Text)]
    assert texts[-len(lines):] == lines


PAYMENT = receipts.PaymentReceiptData(
    payment_id=PAYMENT_ID,
    created_at=datetime.fromisoformat("2025-03-05T14:37:12+03:00"),
    provider_name="МТС",
    account="+7 916 ***-**-67",
    inserted_minor=10000,
    commission_minor=0,
    credited_minor=10000,
    currency="RUB",
    check_code="000001",
)


def test_check_code_is_printed_and_a_copy_of_a_slip_is_marked(term, payment, unclaimed) -> None:
    receipt = "\n".join(render_plain(receipts.payment_receipt(term, payment), 42))
    line = next(w for w in receipt.splitlines() if "Check code" in w)
    assert line.split() == f"Код проверки / Check code {payment.check_code}".split()
    before = receipts.payment_receipt(term, replace(payment, check_code=None))
    old = "\n".join(render_plain(before, 42))
    assert "Check code" not in old  # a payment from before check codes: no empty line
    slip = "\n".join(render_plain(receipts.unclaimed_slip(term, unclaimed), 42))
    assert "КОПИЯ" not in slip and unclaimed.check_code in slip
    copy = "\n".join(render_plain(receipts.unclaimed_slip(term, unclaimed, copy=True), 42))
    assert "КОПИЯ / COPY" in copy
