"""The help center's and the help overlay's own words (RU/EN), kept beside them and added
to the UI's one table (ui.i18n.STRINGS) on import, so `ctl.t(key)` works as elsewhere."""

from __future__ import annotations

from ui.i18n import STRINGS

HELP_STRINGS: dict[str, tuple[str, str]] = {
    "help_top": ("Частые вопросы", "Top questions"),
    "help_categories": ("Разделы", "Topics"),
    "help_search": ("Поиск", "Search"),
    "help_search_title": ("Поиск по справке", "Search help"),
    "help_search_hint": ("Опишите вопрос", "Describe your question"),
    "help_search_none": ("Ничего не найдено: позвоните нам", "Nothing found: call us"),
    "help_search_close": ("К разделам", "To the topics"),
    "help_phone_line": ("Телефон поддержки: {phone}", "Support line: {phone}"),
    "help_not_helped": ("Это не помогло", "This did not help"),
    "help_not_helped_done": (
        "Спасибо, мы учтём. Позвоните: {phone}", "Thank you, noted. Call: {phone}"),
    "help_code": ("Код помощи: {code}", "Help code: {code}"),
    # the proactive overlay
    "overlay_title": ("Нужна помощь?", "Need help?"),
    "overlay_call": (
        "Позвоните {phone} и назовите код {code}",
        "Call {phone} and give the code {code}"),
    "overlay_inserted": ("Внесено: {amount} — деньги учтены", "Inserted: {amount} — counted"),
    "overlay_callback": ("Перезвоните мне", "Call me back"),
    "overlay_close": ("Закрыть", "Close"),
    "overlay_phone_prompt": (
        "Ваш номер телефона (10 цифр, с 9)", "Your phone number (10 digits, from 9)"),
    "overlay_send": ("Отправить", "Send"),
    "overlay_cancel": ("Отмена", "Cancel"),
    "overlay_sent": (
        "Заявка принята: оператор перезвонит на {phone}. Код {code}",
        "Request sent: an operator will call {phone}. Code {code}"),
    "overlay_failed": (
        "Заявка не отправлена. Позвоните {phone}, код {code}",
        "Request not sent. Call {phone}, code {code}"),
}
STRINGS.update(HELP_STRINGS)
