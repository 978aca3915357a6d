"""Account entry: the provider's mask filled digit by digit on a big numeric keypad.

The digits typed are kept here for an instant echo and sent to the core with every key
(`set_account`), which also keeps the session's timer alive; `submit_account` lets the
core judge the number. On a restart the digits come back from the snapshot.
"""

from __future__ import annotations

from typing import Any

from kivy.uix.anchorlayout import AnchorLayout

from ui import theme
from ui.i18n import format_account, money, provider_name
from ui.link import LinkError
from ui.screens.base import BaseScreen
from ui.theme import mm
from ui.widgets import Keypad, Panel, Text, fixed, hbox, shown, spacer, vbox


class AccountScreen(BaseScreen):
    NAME = "account"

    def build(self) -> None:
        self.digits = ""
        self.invalid = False
        self.head = self.title("account.title", h_mm=15)
        self.number = Text(ident="account.number", font_mm=theme.F_BIG, bold=True)
        field = Panel(bg=theme.FIELD_BG, line=theme.FIELD_LINE, radius_mm=2,
                      size_hint_y=None, height=mm(24))
        field.add_widget(self.number)
        self.hint = fixed(Text(ident="account.hint", font_mm=theme.F_BODY,
                               color=theme.INK_SOFT), h_mm=10)
        self.keypad = Keypad(self._key, ident="account.key")
        pad = AnchorLayout(size_hint_y=None, height=self.keypad.height)
        pad.add_widget(self.keypad)
        self.back = self.button("account.back", lambda: self.ctl.intent("back"), "secondary",
                                w_mm=55)
        self.next = self.button("account.next", self._submit, "good", w_mm=75)
        self.limits = Text(ident="account.limits", font_mm=theme.F_BODY, color=theme.INK_SOFT)
        bottom = hbox(self.back, self.limits, self.next, size_hint_y=None,
                      height=mm(theme.BUTTON_H))
        self.add_widget(vbox(self.head, field, self.hint, spacer(size_hint_y=0.2), pad,
                             spacer(size_hint_y=0.2), bottom, pad_mm=6, spacing_mm=3))

    def _session(self) -> dict[str, Any]:
        return self.ctl.session or {}

    def _mask(self) -> str:
        return str((self._session().get("provider") or {}).get("account_mask", ""))

    def entered(self) -> None:
        self.digits = str(self._session().get("account", ""))
        self.invalid = False

    def _key(self, key: str) -> None:
        slots = self._mask().count("*")
        if key == "back":
            self.digits = self.digits[:-1]
        elif key == "clear":
            self.digits = ""
        elif len(self.digits) < slots:
            self.digits += key
        self.invalid = False
        self.ctl.intent("set_account", account=self.digits)
        self.update()

    def _submit(self) -> None:
        def done(_result: Any, error: LinkError | None) -> None:
            if error is not None and error.code in ("invalid_account", "bad_account"):
                self.invalid = True
                self.update()

        self.ctl.intent("submit_account", done, account=self.digits)

    def update(self) -> None:
        ctl = self.ctl
        session = self._session()
        provider = session.get("provider") or {}
        name = provider_name(provider, ctl.lang)
        mask = self._mask()
        self.head.text = ctl.t("account_title", provider=name)
        self.number.text = format_account(mask, self.digits) if mask else self.digits
        if self.invalid:
            self.hint.text = ctl.t("account_invalid", provider=name)
            self.hint.color = theme.BAD_INK
        else:
            self.hint.text = ctl.t("account_hint")
            self.hint.color = theme.INK_SOFT
        cur = provider.get("currency", "RUB")
        self.limits.text = ctl.t("limits", min=money(provider.get("min_minor", 0), cur, ctl.lang),
                                 max=money(provider.get("max_minor", 0), cur, ctl.lang))
        self.back.text, self.next.text = ctl.t("back"), ctl.t("next")
        self.keypad.keys["clear"].text = "C"
        complete = bool(mask) and len(self.digits) == mask.count("*")
        self.next.disabled = not complete
        shown(self.limits, bool(provider))
