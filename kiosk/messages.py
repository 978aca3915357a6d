"""Customer-facing texts the core puts into snapshots, in Russian and English.

Codes are stable (the UI may have its own wording); every text that asks the customer to
act ends with what to do, and every failure tells them who to call.
"""

from __future__ import annotations

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
    "receipt_failed": (
        "Чек не напечатан. Запишите номер платежа {payment_id}. Телефон: {phone}",
        "The receipt could not be printed. Write down payment number {payment_id}. Call: {phone}",
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
}


def money_text(minor: int, currency: str = "RUB") -> str:
    whole, frac = divmod(abs(minor), 100)
    sign = "-" if minor < 0 else ""
    unit = "руб." if currency == "RUB" else currency
    return f"{sign}{whole:,}.{frac:02d} {unit}".replace(",", " ")


def message(code: str, **values: Any) -> dict[str, str]:
    ru, en = TEXTS[code]
    return {"code": code, "ru": ru.format(**values), "en": en.format(**values)}


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
