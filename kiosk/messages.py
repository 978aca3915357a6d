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
