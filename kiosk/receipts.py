"""Receipt content: pure functions that turn payment facts into printable `Document`s.

Only words and structure live here, never bytes: the same Document goes to a real ESC/POS
printer, the virtual printer and the logs (drivers/printer.py). Every customer document
answers "who do I call and what do I tell them?": the terminal id, the
document id, the date-time and the support phone are always on it. Amounts are integers
in minor units end to end; nothing here touches a float.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from drivers.printer import Align, Block, Document, Pair, QrCode, Rule, Text

# Receipts are read by people, so the date is in the Russian day-first form.
DATE_FORMAT = "%d.%m.%Y %H:%M:%S"

# How many minor units make a major one, per ISO 4217 code (2 unless listed).
MINOR_DIGITS: dict[str, int] = {"JPY": 0, "KRW": 0}
DEFAULT_MINOR_DIGITS = 2

# What is printed after the amount. "₽" is not in CP866, so roubles are spelled out.
CURRENCY_SUFFIX: dict[str, str] = {
    "RUB": "руб.",
    "RUR": "руб.",
    "KZT": "тг.",
    "BYN": "бел. руб.",
    "UZS": "сум",
}

PAYMENT_ID_PLACEHOLDER = "{payment_id}"

KIND_PAYMENT = "payment"
KIND_UNCLAIMED = "unclaimed"
KIND_ENCASHMENT = "encashment"
KIND_TEST = "test"

CHECK_CODE_LABEL = "Код проверки / Check code"
COPY_MARK = "КОПИЯ / COPY"
STATUS_LINK_LABEL = "Статус платежа / Payment status:"

# The narrowest paper a terminal may have (58 mm, 32 columns of the normal font): what a
# document is laid out for when the printer's own width is not known.
NARROWEST_COLUMNS = 32
# Where a link may go on to the next line without a reader taking the break for part of
# it: after these characters (and around the payment id, which is never broken).
LINK_BREAK_AFTER = "/?&=#"

KEEP_RECEIPT_RU = "Сохраняйте чек до зачисления средств"
KEEP_RECEIPT_EN = "Keep this receipt until the payment is credited"
SUPPORT_LABEL = "Телефон поддержки / Support:"

# The test page shows every glyph a receipt may use, plus the typography the encoder
# must replace (so a technician sees the replacements, not question marks).
CYRILLIC_UPPER = "АБВГДЕЁЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯ"
CYRILLIC_LOWER = "абвгдеёжзийклмнопрстуфхцчшщъыьэюя"
ASCII_SAMPLE = "0123456789 ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz"
# No "?" here: tests assert that no "?" reaches the paper (it would mean a lost glyph).
SYMBOL_SAMPLE = "!\"#$%&'()*+,-./:;<=>@[\\]^_{|}~ № ° «» — – ₽ €"


@dataclass(frozen=True)
class TerminalInfo:
    """Who issued the document and whom to call; comes from config (support phone is
    changed fleet-wide by the desk)."""

    terminal_id: str
    address: str
    support_phone: str
    agent_name: str
    status_url: str | None = None  # may contain "{payment_id}"
    columns: int = NARROWEST_COLUMNS  # the printer's paper width, for the status link


OFFER_LABEL = "Предложение для вас / An offer for you"


@dataclass(frozen=True)
class OfferNote:
    """The top offer chosen after the payment was committed (kiosk/offers.py): printed
    below everything the payment itself needs, in Russian and English."""

    title_ru: str
    title_en: str
    text_ru: str = ""
    text_en: str = ""


@dataclass(frozen=True)
class PaymentReceiptData:
    payment_id: str
    created_at: datetime  # aware, in the terminal's local zone (printed as is)
    provider_name: str
    account: str  # as displayed to the customer (already masked)
    inserted_minor: int
    commission_minor: int
    credited_minor: int
    currency: str
    status_note: str | None = None  # e.g. "printed without paper check", "reprint"
    check_code: str | None = None  # kiosk/check_code.py; None for payments made before it
    offer: OfferNote | None = None  # never on a copy: it was for that moment


@dataclass(frozen=True)
class UnclaimedData:
    record_id: str
    created_at: datetime
    amount_minor: int
    currency: str
    reason: str
    check_code: str | None = None


@dataclass(frozen=True)
class EncashmentData:
    encashment_id: int
    created_at: datetime
    period_start: datetime | None
    technician: str
    counts: tuple[tuple[int, int], ...]  # (denomination_minor, count)
    total_minor: int
    currency: str
    # Escrows whose outcome was lost (power cut after STACK): (amount_minor, currency).
    # Each note may or may not be in the cassette: the explained difference (M7).
    unknown_outcomes: tuple[tuple[int, str], ...] = ()


def format_money(minor: int, currency: str) -> str:
    """`123450, "RUB"` -> `"1 234.50 руб."`: integer arithmetic only, thousands by spaces."""
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise TypeError(f"amount must be an int of minor units, got {minor!r}")
    code = currency.upper()
    digits = MINOR_DIGITS.get(code, DEFAULT_MINOR_DIGITS)
    sign = "-" if minor < 0 else ""
    major, fraction = divmod(abs(minor), 10**digits)
    grouped = f"{major:,}".replace(",", " ")
    number = f"{grouped}.{fraction:0{digits}d}" if digits else grouped
    return f"{sign}{number} {CURRENCY_SUFFIX.get(code, code)}"


def format_amount(minor: int, currency: str) -> str:
    """The number alone (no currency word), for compact columns such as denominations."""
    return format_money(minor, currency).rsplit(" ", 1)[0]


def format_datetime(moment: datetime) -> str:
    """Day-first local time; naive datetimes are refused because a legal document must
    not carry a time nobody can place."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"datetime must be timezone-aware, got naive {moment!r}")
    return moment.strftime(DATE_FORMAT)


def status_link(term: TerminalInfo, payment_id: str) -> str:
    """What the receipt's QR code carries: the status URL for this payment, or the bare id."""
    if not term.status_url:
        return payment_id
    if PAYMENT_ID_PLACEHOLDER in term.status_url:
        return term.status_url.replace(PAYMENT_ID_PLACEHOLDER, payment_id)
    return term.status_url


def link_lines(link: str, columns: int, keep_whole: str) -> list[str]:
    """`link` in lines of at most `columns`, broken only after one of LINK_BREAK_AFTER or
    at the edges of `keep_whole` (the payment id), never inside it: a customer copying the
    link from paper must not read a line break as part of it. A piece with no such point
    that is longer than a line is left to the printer's wrapping (a very long host)."""
    if len(link) <= columns:
        return [link]
    inside: set[int] = set()  # break positions strictly inside an occurrence of the id
    edges: set[int] = set()  # just before and just after one
    start = link.find(keep_whole) if keep_whole else -1
    while start >= 0:
        inside.update(range(start + 1, start + len(keep_whole)))
        edges.update((start, start + len(keep_whole)))
        start = link.find(keep_whole, start + 1)
    after_mark = {i for i in range(1, len(link)) if link[i - 1] in LINK_BREAK_AFTER}
    allowed = sorted(i for i in (after_mark | edges) - inside if 0 < i < len(link))
    lines: list[str] = []
    begin = 0
    while len(link) - begin > columns:
        fitting = [i for i in allowed if begin < i <= begin + columns]
        later = [i for i in allowed if i > begin]
        if not fitting and not later:
            break
        cut = fitting[-1] if fitting else later[0]
        lines.append(link[begin:cut])
        begin = cut
    lines.append(link[begin:])
    return lines


def _status_link(term: TerminalInfo, payment_id: str) -> list[Block]:
    """The QR code carries the status link; the link is also printed, once, for readers
    without a camera. With no status URL the QR carries the bare id (printed above)."""
    link = status_link(term, payment_id)
    if link == payment_id:
        return [QrCode(link)]
    return [
        QrCode(link, text_fallback=False),
        Text(STATUS_LINK_LABEL, Align.CENTER),
        *(Text(line, Align.CENTER) for line in link_lines(link, term.columns, payment_id)),
    ]


def _header(term: TerminalInfo) -> list[Block]:
    return [
        Text(term.agent_name, Align.CENTER, bold=True),
        Text(term.address, Align.CENTER),
        Pair("Терминал / Terminal", term.terminal_id),
        Rule(),
    ]


def _support_footer() -> list[Block]:
    return [
        Text(KEEP_RECEIPT_RU, Align.CENTER, bold=True),
        Text(KEEP_RECEIPT_EN, Align.CENTER),
        Rule(),
    ]


def _support_phone(term: TerminalInfo) -> list[Block]:
    return [
        Text(SUPPORT_LABEL, Align.CENTER, bold=True),
        Text(term.support_phone, Align.CENTER, bold=True, double=True),
    ]


def payment_receipt(
    term: TerminalInfo, data: PaymentReceiptData, *, copy: bool = False
) -> Document:
    """The customer's receipt: what was paid to whom, and how to chase it if not credited.
    The check code, with the payment number, lets the holder check the payment at the
    terminal (and support confirm a caller holds the receipt)."""
    blocks: list[Block] = [*_header(term)]
    blocks.append(Text("ЧЕК ОБ ОПЛАТЕ / PAYMENT RECEIPT", Align.CENTER, bold=True))
    if copy:
        blocks.append(Text(COPY_MARK, Align.CENTER, bold=True, double=True))
    if data.status_note:
        blocks.append(Text(data.status_note, Align.CENTER))
    blocks.append(Pair("Платёж № / Payment", data.payment_id, bold=True))
    if data.check_code:
        blocks.append(Pair(CHECK_CODE_LABEL, data.check_code, bold=True))
    blocks += [
        Pair("Дата / Date", format_datetime(data.created_at)),
        Pair("Услуга / Service", data.provider_name),
        Pair("Счёт / Account", data.account, bold=True),
        Rule(),
        Pair("Принято / Inserted", format_money(data.inserted_minor, data.currency)),
        Pair("Комиссия / Fee", format_money(data.commission_minor, data.currency)),
        Pair("Зачислено / Credited", format_money(data.credited_minor, data.currency), bold=True),
        Rule(),
        *_support_footer(),
        *_support_phone(term),
        *_status_link(term, data.payment_id),
        *_offer(data.offer),
    ]
    return Document(KIND_PAYMENT, tuple(blocks))


def _offer(offer: OfferNote | None) -> list[Block]:
    """The offer comes last, after the payment's facts and the support phone."""
    if offer is None:
        return []
    blocks: list[Block] = [Rule(), Text(OFFER_LABEL, Align.CENTER),
                           Text(offer.title_ru, Align.CENTER, bold=True)]
    if offer.text_ru:
        blocks.append(Text(offer.text_ru, Align.CENTER))
    blocks.append(Text(offer.title_en, Align.CENTER, bold=True))
    if offer.text_en:
        blocks.append(Text(offer.text_en, Align.CENTER))
    return blocks


def unclaimed_slip(term: TerminalInfo, data: UnclaimedData, *, copy: bool = False) -> Document:
    """Printed when money went in but no payment was completed (M6): reassure, and give
    the customer exactly what support needs to find the money. A reprint says COPY, like
    a receipt's: two slips for one record must not look like two records."""
    blocks: list[Block] = [
        *_header(term),
        Text("ДЕНЬГИ В СОХРАННОСТИ", Align.CENTER, bold=True),
        Text("YOUR MONEY IS SAFE", Align.CENTER, bold=True),
    ]
    if copy:
        blocks.append(Text(COPY_MARK, Align.CENTER, bold=True, double=True))
    blocks.append(Pair("Запись № / Record", data.record_id, bold=True))
    if data.check_code:
        blocks.append(Pair(CHECK_CODE_LABEL, data.check_code, bold=True))
    blocks += [
        Pair("Дата / Date", format_datetime(data.created_at)),
        Pair("Сумма / Amount", format_money(data.amount_minor, data.currency), bold=True),
        Text(f"Причина / Reason: {data.reason}"),
        Rule(),
        Text(
            "Платёж не завершён, но внесённые деньги учтены терминалом и не потеряны. "
            f"Позвоните в службу поддержки и назовите номер записи {data.record_id}: "
            "деньги зачислят на счёт или вернут."
        ),
        Text(
            "The payment was not completed, but the money you inserted is recorded and "
            f"safe. Call support and quote record {data.record_id}: the money will be "
            "credited or refunded."
        ),
        Rule(),
        *_support_footer(),
        *_support_phone(term),
    ]
    return Document(KIND_UNCLAIMED, tuple(blocks))


def encashment_report(term: TerminalInfo, data: EncashmentData) -> Document:
    """The technician's cash-collection slip: counts per denomination and the total; a
    total that does not match the counts is printed as a warning, never hidden (M7)."""
    since = format_datetime(data.period_start) if data.period_start else "-"
    blocks: list[Block] = [
        *_header(term),
        Text("ИНКАССАЦИЯ / ENCASHMENT", Align.CENTER, bold=True),
        Pair("Инкассация № / No.", str(data.encashment_id), bold=True),
        Pair("Дата / Date", format_datetime(data.created_at)),
        Pair("С / Since", since),
        Pair("Техник / Technician", data.technician),
        Rule(),
    ]
    notes = 0
    counted = 0
    for denomination, count in sorted(data.counts):
        notes += count
        counted += denomination * count
        blocks.append(
            Pair(
                f"{format_amount(denomination, data.currency)} x {count}",
                format_money(denomination * count, data.currency),
            )
        )
    blocks += [
        Rule(),
        Pair("Купюр / Notes", str(notes)),
        Pair("Итого / Total", format_money(data.total_minor, data.currency), bold=True),
    ]
    if counted != data.total_minor:
        blocks.append(
            Text(
                "ВНИМАНИЕ / WARNING: сумма по купюрам / sum of notes "
                f"{format_money(counted, data.currency)}",
                bold=True,
            )
        )
    if data.unknown_outcomes:
        amounts = ", ".join(format_money(a, cur) for a, cur in data.unknown_outcomes)
        blocks += [
            Rule(),
            Text("ИСХОД НЕИЗВЕСТЕН / OUTCOME UNKNOWN", bold=True),
            Text(
                f"{len(data.unknown_outcomes)} купюр(ы) после сбоя питания могли попасть "
                f"или не попасть в кассету / {len(data.unknown_outcomes)} escrow(s) whose "
                "outcome is unknown (power cut): the cassette may differ by"
            ),
            Text(amounts),
        ]
    blocks += [
        Rule(),
        Text("Подпись / Signature:"),
        Text(""),
        Rule("_"),
    ]
    return Document(KIND_ENCASHMENT, tuple(blocks))


def test_page(term: TerminalInfo, printer_name: str) -> Document:
    """A page that shows at a glance whether code page, styles, cut and QR work."""
    blocks: list[Block] = [
        *_header(term),
        Text("ТЕСТ ПРИНТЕРА / PRINTER TEST", Align.CENTER, bold=True),
        Pair("Принтер / Printer", printer_name),
        Rule(),
        Text(CYRILLIC_UPPER),
        Text(CYRILLIC_LOWER),
        Text(ASCII_SAMPLE),
        Text(SYMBOL_SAMPLE),
        Rule(),
        Text("Слева / Left"),
        Text("Центр / Center", Align.CENTER),
        Text("Справа / Right", Align.RIGHT),
        Text("Жирный / Bold", bold=True),
        Text("Крупно / Big", double=True),
        Pair("Сумма / Amount", format_money(123450, "RUB")),
        Rule("="),
        *_support_phone(term),
        QrCode(f"TEST {term.terminal_id}"),
    ]
    return Document(KIND_TEST, tuple(blocks))


# Keep pytest from collecting this function as a test when a test module imports it.
test_page.__test__ = False  # type: ignore[attr-defined]
