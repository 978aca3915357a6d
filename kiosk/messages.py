"""Customer-facing texts the core puts into snapshots, in Russian and English.

Codes are stable (the UI may have its own wording); every text that asks the customer to
act ends with what to do, and every failure tells them who to call.

Amounts are data, never formatted text for the screen: a message with values carries its
`template` (RU/EN, with `{name}` places) and its `args`, where an amount is
`{"minor": 50000, "currency": "RUB"}`, so the UI formats money with its own formatter in
the customer's language. `ru`/`en` are the same texts filled in plainly (amounts as
"500.00 RUB") for logs and command-line clients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TEXTS: dict[str, tuple[str, str]] = {
    # out of service: what the customer sees (the technician sees the detail elsewhere)
    "oos_generic": (
        "Терминал временно не работает. Ваши деньги в безопасности. Позвоните: {phone}",
        "The terminal is temporarily out of service. Your money is safe. Call: {phone}",
    ),
    "oos_acceptor": (
        "Купюроприёмник не работает. Оплата временно невозможна. Телефон: {phone}",
        "The bill acceptor is not working. Payments are unavailable. Call: {phone}",
    ),
    "oos_printer": (
        "Принтер чеков не работает. Оплата временно невозможна. Телефон: {phone}",
        "The receipt printer is not working. Payments are unavailable. Call: {phone}",
    ),
    "oos_service": (
        "Идёт обслуживание терминала. Пожалуйста, подождите. Телефон: {phone}",
        "The terminal is being serviced. Please wait. Call: {phone}",
    ),
    "oos_starting": (
        "Терминал запускается. Пожалуйста, подождите.",
        "The terminal is starting. Please wait.",
    ),
    # notices during a session
    "bill_rejected": (
        "Купюра не принята. Попробуйте другую купюру.",
        "The bill was not accepted. Please try another bill.",
    ),
    "bill_over_max": (
        "Купюра возвращена: сумма превысила бы максимум {max}.",
        "Bill returned: the total would exceed the maximum of {max}.",
    ),
    "bill_returned": (
        "Купюра возвращена. Заберите её.",
        "The bill was returned. Please take it.",
    ),
    "printer_warning": (
        "Чек не будет напечатан. Номер платежа будет показан на экране. Продолжить?",
        "No receipt can be printed. The payment number will be shown on screen. Continue?",
    ),
    # both the number and the check code: "check my payment" asks for the pair
    "receipt_failed": (
        "Чек не напечатан. Запишите номер платежа {payment_id} и код проверки "
        "{check_code}. Телефон: {phone}",
        "The receipt could not be printed. Write down payment number {payment_id} and "
        "check code {check_code}. Call: {phone}",
    ),
    "unclaimed_credit": (
        "Внесённые {amount} сохранены под номером {record_id}. Позвоните: {phone}",
        "The {amount} you inserted is recorded as {record_id}. Please call: {phone}",
    ),
    "money_recorded": (
        "Терминал неисправен. Внесённая сумма {amount} записана. Позвоните: {phone}",
        "The terminal has a fault. Your {amount} is recorded. Please call: {phone}",
    ),
    "continue_prompt": (
        "Вы ещё здесь? Нажмите «Продолжить».",
        "Are you still there? Press Continue.",
    ),
    # with cash inside, nobody answering finishes the payment (never dropped): say so
    "continue_prompt_cash": (
        "Вы ещё здесь? Нажмите «Продолжить». Если никто не ответит, платёж будет "
        "проведён автоматически на внесённую сумму.",
        "Are you still there? Press Continue. If nobody answers, the payment will be "
        "completed automatically with the cash inserted.",
    ),
    # too little cash for a payment: nobody answering keeps it as an unclaimed credit
    "continue_prompt_unclaimed": (
        "Вы ещё здесь? Нажмите «Продолжить». Внесённой суммы не хватает для платежа: если "
        "никто не ответит, она будет сохранена под номером, напечатанным на квитке. "
        "Телефон: {phone}",
        "Are you still there? Press Continue. The cash inserted is not enough for a "
        "payment: if nobody answers, it will be kept under the number printed on a slip. "
        "Call: {phone}",
    ),
}

MINOR_PER_MAJOR = 100


@dataclass(frozen=True)
class Money:
    """An amount inside a message: sent as data, formatted by whoever shows it."""

    minor: int
    currency: str

    def as_data(self) -> dict[str, Any]:
        return {"minor": self.minor, "currency": self.currency}


def plain_money(minor: int, currency: str) -> str:
    """'1500.00 RUB': for logs, technical refusals and command-line clients (not screens)."""
    whole, frac = divmod(abs(minor), MINOR_PER_MAJOR)
    sign = "-" if minor < 0 else ""
    return f"{sign}{whole}.{frac:02d} {currency}"


def message(code: str, **values: Any) -> dict[str, Any]:
    """A bilingual message; amounts (`Money`) travel as data in `args` (module docstring)."""
    ru, en = TEXTS[code]
    plain = {
        k: plain_money(v.minor, v.currency) if isinstance(v, Money) else v
        for k, v in values.items()
    }
    out: dict[str, Any] = {"code": code, "ru": ru.format(**plain), "en": en.format(**plain)}
    if values:
        out["template"] = {"ru": ru, "en": en}
        out["args"] = {k: v.as_data() if isinstance(v, Money) else v for k, v in values.items()}
    return out


# Why a payment or unclaimed record exists, as the ledger notes it (English, for the desk)
# → what the customer's paper says. Technician details are never printed.
RECEIPT_NOTES: dict[str, str | None] = {
    "finished after a terminal restart": (
        "Платёж завершён после перезапуска терминала / Completed after a terminal restart"
    ),
    "customer timed out with cash inserted": (
        "Платёж завершён по истечении времени / Completed when the session timed out"
    ),
    "out of service": (
        "Платёж завершён из-за неисправности терминала / "
        "Completed because the terminal went out of service"
    ),
    "maximum amount reached": None,
    "finished after a ledger failure": (
        "Платёж завершён после сбоя записи / Completed after a storage failure"
    ),
    "stacked after its session had ended": (
        "Купюра принята после завершения платежа / The bill was taken after the payment ended"
    ),
    "stacked with no escrow decision on record": (
        "Купюра принята вне платежа / The bill was taken outside a payment"
    ),
    "found unassigned after restart": (
        "Купюра найдена после перезапуска терминала / Found after a terminal restart"
    ),
    "stacked bill of unknown denomination: count the cassette": (
        "Купюра неизвестного номинала, сумму уточнит техник / A bill of unknown value; "
        "a technician will confirm the amount"
    ),
}
UNCLAIMED_FALLBACK = "Платёж не завершён / The payment was not completed"


def receipt_note(note: str | None) -> str | None:
    """The customer-facing line for a ledger note, or None to print nothing."""
    if not note:
        return None
    for prefix, text in RECEIPT_NOTES.items():
        if note.startswith(prefix):
            return text
    return None
