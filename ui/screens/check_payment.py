""""Check my payment": the number from a receipt in, what the customer may know out.

A UI-local screen over the core's idle screen (the core has no session for it): the
customer types the digits after the terminal id, the UI asks `payment_status` and shows
the status in words, the provider, the last four digits of the account and the amounts.
Numbers are padded to the receipt's width, so "12" finds T0001-00000012.
"""

from __future__ import annotations

import time
from typing import Any

from kivy.uix.anchorlayout import AnchorLayout

from ui import theme
from ui.i18n import STRINGS, money, provider_name
from ui.link import LinkError
from ui.screens.base import BaseScreen
from ui.theme import mm
from ui.widgets import Keypad, Panel, Text, hbox, shown, spacer, vbox

DIGITS = 8  # the number part of a payment id on the receipt (T0001-00000012)
GOOD = ("processed", "reprocessed")
BAD = ("failed", "unclaimed")


class CheckPaymentScreen(BaseScreen):
    NAME = "check"

    def build(self) -> None:
        self.digits = ""
        self.result: dict[str, Any] | None = None
        self.error = ""
        self.asked = ""
        self.head = self.title("check.title", h_mm=15)
        self.hint = Text(ident="check.hint", font_mm=theme.F_BODY, flow=True,
                         color=theme.INK_SOFT)
        self.number = Text(ident="check.number", font_mm=theme.F_TITLE, bold=True)
        field = Panel(bg=theme.FIELD_BG, line=theme.FIELD_LINE, radius_mm=2,
                      size_hint_y=None, height=mm(22))
        field.add_widget(self.number)
        self.status = Text(ident="check.status", font_mm=theme.F_LARGE, bold=True, flow=True)
        self.details = Text(ident="check.details", font_mm=theme.F_BODY, flow=True)
        self.card = Panel(orientation="vertical", bg=theme.INFO_BG, radius_mm=3,
                          padding=mm(4), spacing=mm(2), size_hint_y=None)
        self.card.add_widget(self.status)
        self.card.add_widget(self.details)
        self.card.bind(minimum_height=self.card.setter("height"))
        self.keypad = Keypad(self._key, ident="check.key")
        pad = AnchorLayout(size_hint_x=None, width=self.keypad.width)
        pad.add_widget(self.keypad)
        left = vbox(self.hint, field, self.card, spacer(), spacing_mm=4)
        self.back = self.button("check.back", self.ctl.close_local, "secondary", w_mm=55)
        self.go = self.button("check.go", self._check, "good", w_mm=75)
        bottom = hbox(self.back, spacer(), self.go, size_hint_y=None, height=mm(theme.BUTTON_H))
        self.add_widget(vbox(self.head, hbox(left, pad, spacing_mm=8), bottom,
                             pad_mm=6, spacing_mm=4))

    def entered(self) -> None:
        self.digits, self.result, self.error, self.asked = "", None, "", ""

    def _prefix(self) -> str:
        return f"{self.ctl.terminal_id}-"

    def _key(self, key: str) -> None:
        if key == "back":
            self.digits = self.digits[:-1]
        elif key == "clear":
            self.digits = ""
        elif len(self.digits) < DIGITS:
            self.digits += key
        self.result, self.error = None, ""
        self.ctl.activity()
        self.update()

    def _check(self) -> None:
        self.ctl.activity()
        payment_id = self._prefix() + self.digits.rjust(DIGITS, "0")
        self.asked = payment_id

        def done(result: Any, error: LinkError | None) -> None:
            if self.asked != payment_id:
                return  # the customer typed on meanwhile
            self.result = result if error is None else None
            self.error = "" if error is None else error.code
            self.update()

        self.ctl.request("payment_status", done, payment_id=payment_id)

    def update(self) -> None:
        ctl = self.ctl
        lang = ctl.lang
        self.head.text = ctl.t("check_title")
        self.hint.text = ctl.t("check_hint")
        self.number.text = self._prefix() + (self.digits or "_" * DIGITS)
        self.back.text, self.go.text = ctl.t("back"), ctl.t("check_go")
        self.go.disabled = not self.digits
        r = self.result
        if r is not None:
            status = str(r.get("status", ""))
            key = f"status_{status}"
            text = (ctl.t(key, phone=ctl.phone) if key in STRINGS
                    else ctl.t("status_unknown", status=status, phone=ctl.phone))
            self.status.text = f"{r.get('payment_id', '')}: {text}"
            self.status.color = (theme.GOOD_INK if status in GOOD
                                 else theme.BAD_INK if status in BAD else theme.INK)
            cur = r.get("currency", "RUB")
            lines = []
            if r.get("provider"):
                lines.append(ctl.t("check_line_provider",
                                   name=provider_name(r["provider"], lang),
                                   tail=r.get("account_tail", "")))
            lines.append(ctl.t("check_line_amounts",
                               inserted=money(int(r.get("inserted_minor", 0)), cur, lang),
                               credited=money(int(r.get("credited_minor", 0)), cur, lang)))
            created = r.get("created_ms")
            if created:
                stamp = time.strftime("%d.%m.%Y %H:%M", time.localtime(created / 1000))
                lines.append(ctl.t("check_line_date", date=stamp))
            self.details.text = "\n".join(lines)
        elif self.error:
            key = "check_not_found" if self.error == "not_found" else "check_failed"
            self.status.text = ctl.t(key, id=self.asked, phone=ctl.phone)
            self.status.color = theme.BAD_INK
            self.details.text = ""
        else:
            self.status.text, self.details.text = "", ""
        shown(self.card, bool(self.status.text))
        shown(self.details, bool(self.details.text))
