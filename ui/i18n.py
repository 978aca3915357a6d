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
    # the offers chosen after the payment (kiosk/offers.py): tap one to say "interested"
    "offers_title": ("Вам может быть интересно — нажмите на предложение",
                     "You may like these: tap an offer you are interested in"),
    "offer_thanks": ("Спасибо за интерес!", "Thank you for your interest!"),
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
    "check_go": ("Проверить", "Check"),
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
    # check my payment with the receipt's check code, and the customer's copy (one block)
    "check_hint_code": (
        "Введите номер платежа и код проверки с чека этого терминала.",
        "Enter the payment number and the check code from a receipt of this terminal.",
    ),
    "check_code_label": ("Код проверки", "Check code"),
    "check_no_match": (
        "Платёж с таким номером и кодом не найден. Проверьте номер и код на чеке "
        "или позвоните: {phone}",
        "No payment with this number and code. Check both on the receipt or call: {phone}",
    ),
    "check_locked": (
        "Слишком много неверных попыток. Проверка приостановлена на несколько минут. "
        "Позвоните: {phone}",
        "Too many wrong attempts. Checking is paused for a few minutes. Call: {phone}",
    ),
    "check_copy": ("Напечатать копию", "Print a copy"),
    "check_copy_printing": ("Печатаем копию чека…", "Printing a copy of the receipt…"),
    "check_copy_printed": (
        "Копия чека напечатана. Заберите её.",
        "A copy of the receipt is printed. Please take it.",
    ),
    "check_copy_failed": (
        "Копию напечатать не удалось. Позвоните: {phone}",
        "The copy could not be printed. Call: {phone}",
    ),
    "check_copy_limit": (
        "Копию этого чека сейчас напечатать нельзя. Попробуйте позже или позвоните: {phone}",
        "A copy of this receipt cannot be printed now. Try later or call: {phone}",
    ),
    "receipt_check_code": (
        "Код проверки: {code} (вместе с номером — для «Проверить платёж»)",
        "Check code: {code} (with the number, for \"Check my payment\")",
    ),
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
    # technician: the core's refusals and states in words (codes and raw details stay
    # visible as secondary text: technicians quote them to support)
    "tech_wrong_pin_left": (
        "Неверный PIN. Осталось попыток: {n}",
        "Wrong PIN. Attempts left: {n}",
    ),
    "tech_locked_until": (
        "Вход заблокирован после неверных PIN. Повторите после {t}",
        "Login locked after wrong PINs. Try again after {t}",
    ),
    "tech_refused": ("Ядро отказало ({code})", "The core refused ({code})"),
    "tech_bad_request": (
        "Ядро не приняло запрос ({code})",
        "The core did not take the request ({code})",
    ),
    "tech_internal": (
        "Внутренняя ошибка ядра: см. журнал",
        "Internal error in the core: see its log",
    ),
    "tech_ledger_down": (
        "Журнал платежей недоступен: см. «Состояние»",
        "The ledger is unavailable: see Status",
    ),
    "raw": ("код: {raw}", "code: {raw}"),
    "scr_idle": ("ожидание клиента", "waiting for a customer"),
    "scr_customer": ("клиент платит ({screen})", "a customer is paying ({screen})"),
    "scr_out_of_service": ("не работает", "out of service"),
    "scr_starting": ("запуск", "starting"),
    "oos_service": ("обслуживание техником", "technician service"),
    "oos_acceptor": ("купюроприёмник", "bill acceptor"),
    "oos_printer": ("принтер", "printer"),
    "oos_ledger": ("журнал платежей", "payment ledger"),
    "oos_disk": ("диск почти заполнен", "disk almost full"),
    "oos_desk": ("отключён сервером", "disabled by the desk"),
    "oos_starting": ("запуск", "starting"),
    "acc_offline": ("нет связи: проверьте кабель и питание", "no answer: check cable and power"),
    "acc_initializing": ("запускается", "starting up"),
    "acc_disabled": (
        "отключён, исправен (включается на время оплаты)",
        "disabled, healthy (enabled while a customer pays)",
    ),
    "acc_idle": ("ждёт купюру", "waiting for a bill"),
    "acc_accepting": ("принимает купюру", "taking a bill"),
    "acc_rejecting": ("возвращает купюру", "returning a bill"),
    "acc_jammed": ("замятие купюры: откройте и извлеките", "bill jammed: open it, remove the bill"),
    "acc_cassette_full": ("кассета заполнена: нужна инкассация", "cassette full: encash"),
    "acc_cassette_out": ("кассета снята или не на месте", "cassette removed or not seated"),
    "acc_cheated": ("попытка обмана: проверьте тракт", "cheat attempt: check the bill path"),
    "acc_paused": ("пауза: две купюры сразу", "paused: two bills at once"),
    "acc_failure": ("неисправность купюроприёмника", "bill acceptor failure"),
    "prn_ok": ("исправен", "working"),
    "prn_paper_near_end": ("бумага заканчивается", "paper running low"),
    "prn_paper_out": ("нет бумаги", "out of paper"),
    "prn_cover_open": ("открыта крышка", "cover open"),
    "prn_cutter_error": ("ошибка отрезчика", "cutter error"),
    "prn_offline": ("нет связи с принтером", "no answer from the printer"),
    "net_off": ("MQTT выключен в настройках", "MQTT is off in the settings"),
    "net_up": ("подключено с {t}", "connected since {t}"),
    "net_down": ("нет связи с {t}", "disconnected since {t}"),
    "net_down_never": ("нет связи с запуска", "disconnected since start"),
    "net_delivery": ("последняя доставка: {t}", "last delivery: {t}"),
    "net_no_delivery": ("доставок пока не было", "nothing delivered yet"),
    "net_desk_heard": ("центр на связи: {t}", "desk heard: {t}"),
    "st_broker": ("Брокер", "Broker"),
    "net_broker": ("{endpoint}, версия протокола {protocol}{problem}",
                   "{endpoint}, MQTT {protocol}{problem}"),
    "st_errors": ("Последние ошибки", "Last errors"),
    "st_err_acceptor": ("Купюроприёмник", "Bill acceptor"),
    "st_err_printer": ("Принтер", "Printer"),
    "st_err_ledger": ("Журнал и диск", "Ledger and disk"),
    "st_err_mqtt": ("Связь (MQTT)", "Network (MQTT)"),
    "st_err_none": ("нет", "none"),
    "err_at": ("{t}: {what}", "{t}: {what}"),
    "err_acceptor_fault": ("неисправность купюроприёмника", "bill acceptor fault"),
    "err_unknown_bill_stacked": (
        "в кассете купюра неизвестного номинала",
        "a bill of unknown value went to the cassette",
    ),
    "err_escrow_outcome_unknown": (
        "судьба купюры неизвестна (сбой питания)",
        "a bill's outcome is unknown (power cut)",
    ),
    "err_duplicate_stacked_ignored": (
        "повтор сообщения о купюре пропущен",
        "a repeated bill report was ignored",
    ),
    "err_unclaimed_credit": ("деньги без платежа (невостребованные)", "unclaimed credit"),
    "err_printer_unavailable": ("принтер недоступен", "printer unavailable"),
    "err_printer_paper_near_end": ("бумага заканчивается", "paper running low"),
    "err_receipt_not_printed": ("чек не напечатан", "receipt not printed"),
    "err_ledger_failed": ("сбой записи журнала платежей", "the ledger could not write"),
    "err_disk_low": ("мало места на диске", "disk space low"),
    "err_disk_critical": ("диск почти заполнен", "disk almost full"),
    "err_session_recovered": (
        "платёж восстановлен после сбоя",
        "a payment recovered after a failure",
    ),
    "err_mqtt_disconnected": ("связь с брокером потеряна", "lost the broker connection"),
    "err_publish_refused": ("брокер отклонил сообщение", "the broker refused a message"),
    "err_desk": ("отклонено сообщение сервера", "a desk message was rejected"),
    "err_other": ("ошибка", "error"),
    "ev_device": ("Устройство: {what}", "Device: {what}"),
    "ev_severity": ("Важность: {what}", "Severity: {what}"),
    "ev_dev_devices": ("все, кроме техника", "all but technician"),
    "ev_dev_acceptor": ("купюроприёмник", "bill acceptor"),
    "ev_dev_printer": ("принтер", "printer"),
    "ev_dev_ledger": ("журнал и диск", "ledger and disk"),
    "ev_dev_mqtt": ("MQTT", "MQTT"),
    "ev_dev_technician": ("действия техника", "technician"),
    "ev_dev_all": ("все", "all"),
    "ev_sev_all": ("все", "all"),
    "ev_sev_warning": ("предупреждения и ошибки", "warnings and errors"),
    "ev_sev_error": ("только ошибки", "errors only"),
    "sev_info": ("инфо", "info"),
    "sev_warning": ("предупр.", "warning"),
    "sev_error": ("ОШИБКА", "ERROR"),
    "restart_confirm": (
        "Перезапустить ядро? Терминал не будет принимать платежи, пока ядро не запустится снова.",
        "Restart the core? The terminal takes no payments until the core is up again.",
    ),
    "restart_yes": ("Да, перезапустить", "Yes, restart"),
    "ev_kind_acceptor_recovered": ("купюроприёмник снова исправен", "bill acceptor recovered"),
    "ev_kind_acceptor_test": ("тест купюроприёмника", "bill acceptor test"),
    "ev_kind_encashment": ("инкассация", "encashment"),
    "ev_kind_technician_login": ("вход техника", "technician login"),
    "ev_kind_technician_login_failed": ("неудачный вход техника", "failed technician login"),
    "ev_kind_technician_action": ("действие техника", "technician action"),
    "ev_kind_receipt_reprinted": ("копия чека", "receipt copy"),
    "ev_kind_restart_requested": ("перезапуск по запросу", "restart requested"),
    "ev_kind_ledger_recovered": ("журнал снова пишется", "ledger writable again"),
    "ev_kind_ledger_initialised": ("начат новый журнал", "new ledger started"),
    "ev_kind_disk_ok": ("места на диске достаточно", "disk space fine"),
    "ev_kind_config_applied": ("настройки сервера применены", "desk settings applied"),
    "ev_kind_desk_command": ("команда сервера", "desk command"),
    "ev_kind_session_reset": (
        "нет подтверждений от сервера: связь с брокером начата заново",
        "no acks from the desk: the broker session was started afresh",
    ),
    "ev_kind_other": ("событие", "event"),
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
