"""The UI's own words in Russian and English.

Texts about the customer's money (notices, out-of-service reasons, the "continue?" prompt)
come from the core in both languages inside the snapshot; their amounts come as data and
are formatted here (`core_message`), with the one money formatter (`money`), so every
amount on screen looks the same in each language. This table holds the screen furniture:
titles, buttons, labels. Every text that reports a problem says what to do next and whom
to call.
"""

from __future__ import annotations

from typing import Any

NBSP = "\u00a0"

STRINGS: dict[str, tuple[str, str]] = {
    # chrome
    "lang_switch": ("English", "Русский"),
    "support": ("Телефон поддержки:", "Support line:"),
    "terminal": ("Терминал {id}", "Terminal {id}"),
    # idle
    "idle_title": ("Оплата услуг", "Pay for services"),
    "idle_sub": (
        "Мобильная связь, интернет, ЖКХ. Терминал сдачу не выдаёт.",
        "Mobile, internet, utilities. The terminal gives no change.",
    ),
    "idle_start": ("Начать оплату", "Start a payment"),
    "idle_check": ("Проверить платёж", "Check my payment"),
    "idle_help": ("Помощь", "Help"),
    "help_title": ("Помощь", "Help"),
    "help_call": ("Остались вопросы? Позвоните: {phone}", "Still a question? Call: {phone}"),
    # provider
    "provider_title": ("Выберите услугу", "Choose a provider"),
    "cat_all": ("Все", "All"),
    "search": ("Поиск", "Search"),
    "search_title": ("Поиск по названию", "Search by name"),
    "search_hint": ("Наберите название", "Type the name"),
    "search_none": ("Ничего не найдено", "Nothing found"),
    "search_close": ("К списку", "To the list"),
    "key_space": ("Пробел", "Space"),
    "key_clear": ("Стереть", "Clear"),
    "key_layout_ru": ("АБВ", "АБВ"),
    "key_layout_en": ("ABC", "ABC"),
    "page_prev": ("Предыдущие", "Previous"),
    "page_next": ("Ещё", "More"),
    "page_of": ("{n} из {total}", "{n} of {total}"),
    "loading": ("Загрузка…", "Loading…"),
    # account
    "account_title": ("Введите номер: {provider}", "Enter the number: {provider}"),
    "account_hint": (
        "Проверьте каждую цифру: деньги уйдут на этот номер.",
        "Check every digit: the money goes to this number.",
    ),
    "account_invalid": (
        "Такого номера у {provider} нет. Проверьте номер.",
        "{provider} has no such number. Please check it.",
    ),
    "limits": ("От {min} до {max}", "From {min} to {max}"),
    "back": ("Назад", "Back"),
    "next": ("Далее", "Next"),
    "cancel": ("Отмена", "Cancel"),
    # confirm
    "confirm_title": ("Номер верный?", "Is this number right?"),
    "confirm_yes": ("Да, верно", "Yes, it is right"),
    "confirm_change": ("Исправить", "Change it"),
    "printer_warning": (
        "Принтер не работает: чек не будет напечатан. Номер платежа покажем на экране.",
        "The printer is not working: no receipt will be printed. "
        "We will show the payment number on screen.",
    ),
    "no_receipt_ok": ("Платить без чека", "Pay without a receipt"),
    # cash
    "cash_title": ("Вставьте купюры", "Insert bills"),
    "cash_to": ("{provider}: {account}", "{provider}: {account}"),
    "inserted": ("Внесено", "Inserted"),
    "commission": ("Комиссия", "Commission"),
    "credited": ("К зачислению", "To be credited"),
    "cash_min_left": ("Внесите ещё не меньше {amount}", "Insert at least {amount} more"),
    "cash_no_change": (
        "Сдача не выдаётся: всё, кроме комиссии, будет зачислено.",
        "No change is given: everything except the commission is credited.",
    ),
    "cash_escrow": ("Проверяем купюру…", "Checking the banknote…"),
    "cash_finishing": ("Проводим платёж…", "Completing the payment…"),
    "pay": ("Оплатить", "Pay"),
    "below_minimum": ("Нужно внести не меньше {amount}", "Insert at least {amount}"),
    # receipt
    "receipt_title": ("Платёж принят", "Payment accepted"),
    "payment_no": ("Номер платежа", "Payment number"),
    "receipt_printing": ("Печатаем чек…", "Printing your receipt…"),
    "receipt_printed": (
        "Заберите чек и сохраните его до зачисления денег.",
        "Take your receipt and keep it until the money is credited.",
    ),
    "receipt_none": (
        "Чек не напечатан. Запишите номер платежа.",
        "No receipt was printed. Please write down the payment number.",
    ),
    "done": ("Готово", "Done"),
    # out of service
    "oos_title": ("Терминал не работает", "Out of service"),
    "oos_starting_title": ("Одну минуту", "One moment"),
    "offline_text": (
        "Терминал временно не работает. Ваши деньги в безопасности. Позвоните: {phone}",
        "The terminal is temporarily out of service. Your money is safe. Call: {phone}",
    ),
    "offline_retry": ("Пробуем восстановить связь…", "Trying to reconnect…"),
    # prompt
    "prompt_left": ("Осталось {s} с", "{s} s left"),
    "continue": ("Продолжить", "Continue"),
    # check my payment
    "check_title": ("Проверка платежа", "Check a payment"),
    "check_hint": (
        "Введите номер платежа с чека этого терминала.",
        "Enter the payment number from a receipt of this terminal.",
    ),
    "check_go": ("Проверить", "Check"),
    "check_not_found": (
        "Платёж {id} на этом терминале не найден. Проверьте номер или позвоните: {phone}",
        "Payment {id} is not known at this terminal. Check the number or call: {phone}",
    ),
    "check_failed": (
        "Не удалось проверить. Попробуйте позже или позвоните: {phone}",
        "Could not check now. Try again later or call: {phone}",
    ),
    "check_line_provider": ("Получатель: {name}, счёт …{tail}", "To: {name}, account …{tail}"),
    "check_line_amounts": (
        "Внесено {inserted}, зачислено {credited}",
        "Inserted {inserted}, credited {credited}",
    ),
    "check_line_date": ("Создан {date}", "Created {date}"),
    "status_collecting": ("Оплата ещё идёт", "The payment is still in progress"),
    "status_confirmed": ("Принят терминалом, ждёт отправки", "Accepted here, waiting to be sent"),
    "status_queued": ("Принят терминалом, ждёт отправки", "Accepted here, waiting to be sent"),
    "status_sent": ("Отправлен, ждёт подтверждения", "Sent, waiting for confirmation"),
    "status_accepted": ("Принят платёжной системой", "Accepted by the payment system"),
    "status_processed": ("Зачислен", "Credited"),
    "status_failed": ("Не зачислен. Позвоните: {phone}", "Not credited. Please call: {phone}"),
    "status_reprocessed": (
        "Проведён повторно на исправленный счёт",
        "Re-processed to a corrected account",
    ),
    "status_unclaimed": (
        "Деньги записаны без номера счёта. Позвоните: {phone}",
        "Money recorded without an account. Please call: {phone}",
    ),
    "status_unknown": ("Статус: {status}. Позвоните: {phone}", "Status: {status}. Call: {phone}"),
    # errors anyone may meet
    "busy_retry": ("Не получилось, попробуйте ещё раз", "That did not work, please try again"),
    # technician
    "tech_title": ("Режим техника", "Technician mode"),
    "tech_pin": ("Введите PIN", "Enter the PIN"),
    "tech_login": ("Войти", "Log in"),
    "tech_exit": ("Выйти", "Exit"),
    "tech_wrong_pin": ("Неверный PIN", "Wrong PIN"),
    "tech_locked": ("Вход заблокирован", "Login locked"),
    "tech_no_pin": ("PIN не настроен", "No PIN is configured"),
    "tech_expired": ("Сессия истекла, войдите снова", "Session expired, log in again"),
    "tech_unreachable": ("Ядро не отвечает", "The core does not answer"),
    "tab_status": ("Состояние", "Status"),
    "tab_counters": ("Кассета", "Cassette"),
    "tab_events": ("События", "Events"),
    "tab_actions": ("Действия", "Actions"),
    "refresh": ("Обновить", "Refresh"),
    "st_screen": ("Экран", "Screen"),
    "st_service": ("В работе", "In service"),
    "st_yes": ("да", "yes"),
    "st_no": ("нет", "no"),
    "st_acceptor": ("Купюроприёмник", "Bill acceptor"),
    "st_printer": ("Принтер", "Printer"),
    "st_cassette": ("Кассета", "Cassette"),
    "st_bills": ("купюр: {count}, сумма {total}", "bills: {count}, total {total}"),
    "st_queue": ("Очередь", "Queue"),
    "st_queue_val": (
        "не отправлено платежей: {n}{oldest}",
        "unsent payments: {n}{oldest}",
    ),
    "st_oldest": (", старейший с {t}", ", oldest since {t}"),
    "st_network": ("Сеть (MQTT)", "Network (MQTT)"),
    "st_network_na": ("ядро пока не сообщает", "not reported by the core yet"),
    "st_link": ("Связь UI с ядром", "UI link to the core"),
    "st_link_ok": ("есть", "up"),
    "st_phone": ("Телефон поддержки", "Support phone"),
    "cnt_title": ("Купюры в кассете", "Bills in the cassette"),
    "cnt_row": ("{amount} × {count} = {sum}", "{amount} × {count} = {sum}"),
    "cnt_empty": ("Кассета пуста", "The cassette is empty"),
    "cnt_total": ("Итого купюр: {count}, сумма {total}", "Total bills: {count}, sum {total}"),
    "encash": ("Инкассация", "Encashment"),
    "encash_confirm": (
        "Снять кассету (купюр: {count}, сумма {total})? Напечатается отчёт, счётчики обнулятся.",
        "Take the cassette (bills: {count}, sum {total})? A report prints, the counters reset.",
    ),
    "encash_yes": ("Да, инкассировать", "Yes, encash"),
    "encash_done": (
        "Инкассация №{id}: купюр {count}, сумма {total}. Отчёт {printed}.",
        "Encashment #{id}: {count} bills, sum {total}. Report {printed}.",
    ),
    "printed_yes": ("напечатан", "printed"),
    "printed_no": ("НЕ напечатан", "NOT printed"),
    "busy": ("Идёт оплата клиента: попробуйте позже", "A customer is paying: try again later"),
    "events_title": ("Последние события", "Recent events"),
    "test_print": ("Тестовая печать", "Test print"),
    "test_print_yes": ("Тестовая страница напечатана", "Test page printed"),
    "test_print_no": ("Тестовая страница НЕ напечатана", "Test page NOT printed"),
    "service_on": ("Вывести из работы", "Take out of service"),
    "service_off": ("Вернуть в работу", "Back in service"),
    "service_state_on": ("Терминал выведен из работы", "The terminal is out of service"),
    "service_state_off": ("Терминал в работе", "The terminal is in service"),
    "acceptor_test": ("Тест купюроприёмника", "Bill acceptor test"),
    "restart": ("Перезапуск", "Restart"),
    "acceptor_test_off": ("Завершить тест", "End the test"),
    "acceptor_test_seen": (
        "Прочитано купюр: {n}, последняя {last}; все возвращены",
        "Bills read: {n}, last {last}; all returned",
    ),
    "restarting": ("Ядро перезапускается", "The core is restarting"),
    # -- issue 15: disclosures before cash, the fee taking everything (one block) --
    "fee_terms": ("Комиссия: {terms}", "Fee: {terms}"),
    "fee_none": ("Комиссия: нет", "Fee: none"),
    "fee_at_least": ("не менее {amount}", "at least {amount}"),
    "fee_at_most": ("не более {amount}", "at most {amount}"),
    "fee_range": ("от {low} до {high} — {rule}", "from {low} to {high} — {rule}"),
    "fee_below": ("до {high} — {rule}", "below {high} — {rule}"),
    "fee_from": ("от {low} — {rule}", "from {low} — {rule}"),
    "notes_accepted": ("Принимаются купюры: {notes}", "Banknotes accepted: {notes}"),
    "notes_none": (
        "Купюроприёмник сейчас не принимает купюры. Позвоните: {phone}",
        "The bill acceptor takes no banknotes now. Please call: {phone}",
    ),
    "fee_takes_all": (
        "Комиссия {fee} забрала бы всю внесённую сумму. Добавьте купюры: "
        "внесённые деньги остаются в этом платеже.",
        "The fee of {fee} would take everything inserted. Add more banknotes: "
        "the cash already inserted stays in this payment.",
    ),
}


def tr(key: str, lang: str, **values: Any) -> str:
    ru, en = STRINGS[key]
    text = ru if lang == "ru" else en
    return text.format(**values) if values else text


def pick(texts: dict[str, Any] | None, lang: str) -> str:
    """The core's bilingual text (`{"ru": …, "en": …}`) in the chosen language."""
    if not texts:
        return ""
    return str(texts.get(lang) or texts.get("ru") or "")


def keep_together(text: str, *phrases: str) -> str:
    """No line break inside a phone number: "8 800 555-35-35" must not wrap after "8"."""
    for phrase in phrases:
        if phrase and " " in phrase:
            text = text.replace(phrase, phrase.replace(" ", NBSP))
    return text


def money(minor: int, currency: str, lang: str) -> str:
    """1 000,00 ₽ / 1,000.00 RUB; no break inside an amount."""
    whole, frac = divmod(abs(int(minor)), 100)
    sign = "-" if minor < 0 else ""
    if lang == "ru":
        unit = "₽" if currency == "RUB" else currency
        digits = f"{whole:,}".replace(",", NBSP)
        return f"{sign}{digits},{frac:02d}{NBSP}{unit}"
    return f"{sign}{whole:,}.{frac:02d}{NBSP}{currency}"


def core_message(texts: dict[str, Any] | None, lang: str) -> str:
    """A core message in the chosen language; its amounts (`args` given as
    `{"minor", "currency"}`) formatted here, never the core's plain text."""
    if not texts:
        return ""
    template = (texts.get("template") or {}).get(lang)
    args = texts.get("args")
    if isinstance(template, str) and isinstance(args, dict):
        values = {
            k: money(int(v["minor"]), str(v.get("currency", "RUB")), lang)
            if isinstance(v, dict) and "minor" in v
            else v
            for k, v in args.items()
        }
        try:
            return template.format(**values)
        except (KeyError, IndexError, ValueError):
            pass  # a template this UI cannot fill: the core's plain text below
    return pick(texts, lang)


def percent(basis_points: int, lang: str) -> str:
    """300 → "3 %", 250 → "2,5 %" / "2.5 %"."""
    whole, frac = divmod(basis_points, 100)
    text = f"{whole}" if not frac else f"{whole}.{frac:02d}".rstrip("0")
    return f"{text.replace('.', ',') if lang == 'ru' else text}{NBSP}%"


def fee_terms(bands: list[dict[str, Any]], currency: str, lang: str) -> str:
    """The provider's commission bands in words, e.g. "Комиссия: до 500,00 ₽ — 10,00 ₽;
    от 500,00 ₽ — 3 %, не менее 10,00 ₽, не более 300,00 ₽"."""
    if not bands:
        return tr("fee_none", lang)

    def m(minor: int) -> str:
        return money(minor, currency, lang)

    parts = []
    for b in bands:
        rule = " + ".join(
            [percent(int(b["percent_bp"]), lang)] * bool(b.get("percent_bp"))
            + [m(int(b["fixed_minor"]))] * bool(b.get("fixed_minor"))
        ) or m(0)
        if b.get("min_minor"):
            rule += ", " + tr("fee_at_least", lang, amount=m(int(b["min_minor"])))
        if b.get("max_minor") is not None:
            rule += ", " + tr("fee_at_most", lang, amount=m(int(b["max_minor"])))
        low, high = int(b.get("from_minor") or 0), b.get("to_minor")
        if low and high is not None:
            rule = tr("fee_range", lang, low=m(low), high=m(int(high)), rule=rule)
        elif high is not None:
            rule = tr("fee_below", lang, high=m(int(high)), rule=rule)
        elif low:
            rule = tr("fee_from", lang, low=m(low), rule=rule)
        parts.append(rule)
    return tr("fee_terms", lang, terms="; ".join(parts))


def notes_list(amounts_minor: list[int], currency: str, lang: str) -> str:
    """10, 50, 100 … 5 000 ₽: whole notes, the currency once at the end."""
    unit = "₽" if lang == "ru" and currency == "RUB" else currency
    sep = NBSP if lang == "ru" else ","
    names = [f"{a // 100:,}".replace(",", sep) if a % 100 == 0 else money(a, currency, lang)
             for a in amounts_minor]
    return f"{', '.join(names)}{NBSP}{unit}"


def provider_name(provider: dict[str, Any] | None, lang: str) -> str:
    if not provider:
        return ""
    return str(provider.get(f"name_{lang}") or provider.get("name_ru") or provider.get("id", ""))


def format_account(mask: str, digits: str) -> str:
    """The typed digits laid into the provider's mask; untyped places stay '_'."""
    it = iter(digits)
    return "".join((next(it, "_") if ch == "*" else ch) for ch in mask)
