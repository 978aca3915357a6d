""""Check my payment": the number and check code from a receipt in, what the holder of
the receipt may know out, and a copy of the receipt on request.

A UI-local screen over the core's idle screen (the core has no session for it). Payment
numbers are sequential, so the number alone shows nothing: the customer types the digits
after the terminal id ("12" finds T0001-00000012) AND the check code printed on the
receipt (or shown on the receipt screen). The core answers a wrong pair the same way
whether the number exists or not, and pauses checking after a few wrong pairs
(`check_locked`): the limit is the core's, so restarting this screen does not lift it.
After a successful check the customer may print a copy (`customer_reprint`, "КОПИЯ /
COPY"), limited by the core too.
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
from ui.widgets import Btn, Keypad, Panel, Text, fixed, hbox, shown, spacer, vbox

DIGITS = 8  # the number part of a payment id on the receipt (T0001-00000012)
CODE_DIGITS = 6  # the check code on the receipt (kiosk/check_code.py)
GOOD = ("processed", "reprocessed")
BAD = ("failed", "unclaimed")
FIELD_LABEL_W = 45  # mm: "Номер платежа" / "Check code" beside their fields
ERROR_KEYS = {  # the core's refusal -> the customer's words
    "not_found": "check_no_match",
    "check_locked": "check_locked",
    "reprint_limit": "check_copy_limit",
    "busy": "busy_retry",
}


class CheckPaymentScreen(BaseScreen):
    NAME = "check"

    def build(self) -> None:
        self.digits = ""
        self.code = ""
        self.active = "number"  # the field the keypad types into: number | code
        self.result: dict[str, Any] | None = None
        self.error = ""
        self.asked = ""
        self.copy_state = ""  # "", "printing", "printed", "failed" or an error code
        self.head = self.title("check.title", h_mm=15)
        self.hint = Text(ident="check.hint", font_mm=theme.F_BODY, flow=True,
                         color=theme.INK_SOFT)
        self.number_label = fixed(Text(ident="check.number_label", font_mm=theme.F_BODY),
                                  w_mm=FIELD_LABEL_W)
        self.number = Btn(ident="check.number", action=lambda: self._focus("number"),
                          font_mm=theme.F_TITLE, size_hint_y=None, height=mm(22))
        self.code_label = fixed(Text(ident="check.code_label", font_mm=theme.F_BODY),
                                w_mm=FIELD_LABEL_W)
        self.code_field = Btn(ident="check.code", action=lambda: self._focus("code"),
                              font_mm=theme.F_TITLE, size_hint_y=None, height=mm(22))
        number_row = hbox(self.number_label, self.number, size_hint_y=None, height=mm(22),
                          spacing_mm=3)
        code_row = hbox(self.code_label, self.code_field, size_hint_y=None, height=mm(22),
                        spacing_mm=3)
        self.status = Text(ident="check.status", font_mm=theme.F_LARGE, bold=True, flow=True)
        self.details = Text(ident="check.details", font_mm=theme.F_BODY, flow=True)
        self.copy_note = Text(ident="check.copy_note", font_mm=theme.F_BODY, bold=True,
                              flow=True)
        self.card = Panel(orientation="vertical", bg=theme.INFO_BG, radius_mm=3,
                          padding=mm(4), spacing=mm(2), size_hint_y=None)
        self.card.add_widget(self.status)
        self.card.add_widget(self.details)
        self.card.add_widget(self.copy_note)
        self.card.bind(minimum_height=self.card.setter("height"))
        self.keypad = Keypad(self._key, ident="check.key")
        pad = AnchorLayout(size_hint_x=None, width=self.keypad.width)
        pad.add_widget(self.keypad)
        left = vbox(self.hint, number_row, code_row, self.card, spacer(), spacing_mm=4)
        self.back = self.button("check.back", self.ctl.close_local, "secondary", w_mm=55)
        self.reprint = self.button("check.reprint", self._reprint, "secondary", w_mm=80)
        self.go = self.button("check.go", self._check, "good", w_mm=75)
        bottom = hbox(self.back, spacer(), self.reprint, self.go, size_hint_y=None,
                      height=mm(theme.BUTTON_H), spacing_mm=6)
        self.add_widget(vbox(self.head, hbox(left, pad, spacing_mm=8), bottom,
                             pad_mm=6, spacing_mm=4))

    def entered(self) -> None:
        self.digits, self.code, self.active = "", "", "number"
        self.result, self.error, self.asked, self.copy_state = None, "", "", ""

    def _prefix(self) -> str:
        return f"{self.ctl.terminal_id}-"

    def _focus(self, field: str) -> None:
        self.active = field
        self.ctl.activity()
        self.update()

    def _key(self, key: str) -> None:
        value = self.code if self.active == "code" else self.digits
        limit = CODE_DIGITS if self.active == "code" else DIGITS
        if key == "back":
            value = value[:-1]
        elif key == "clear":
            value = ""
        elif len(value) < limit:
            value += key
        if self.active == "code":
            self.code = value
        else:
            self.digits = value
            if len(value) == DIGITS:  # the whole number typed: the code comes next
                self.active = "code"
        self.result, self.error, self.copy_state = None, "", ""
        self.ctl.activity()
        self.update()

    def _payment_id(self) -> str:
        return self._prefix() + self.digits.rjust(DIGITS, "0")

    def _check(self) -> None:
        self.ctl.activity()
        payment_id, code = self._payment_id(), self.code
        self.asked = payment_id
        self.copy_state = ""

        def done(result: Any, error: LinkError | None) -> None:
            if self.asked != payment_id or self.code != code:
                return  # the customer typed on meanwhile
            self.result = result if error is None else None
            self.error = "" if error is None else error.code
            self.update()

        self.ctl.request("payment_status", done, payment_id=payment_id, check_code=code)

    def _reprint(self) -> None:
        """A copy of the checked payment's receipt: the same pair the check accepted."""
        self.ctl.activity()
        if self.result is None:
            return
        payment_id, code = str(self.result.get("payment_id", "")), self.code
        self.copy_state = "printing"

        def done(result: Any, error: LinkError | None) -> None:
            if self.result is None or self.result.get("payment_id") != payment_id:
                return
            if error is not None:
                self.copy_state = error.code
            else:
                self.copy_state = "printed" if result.get("printed") else "failed"
            self.update()

        self.ctl.request("customer_reprint", done, payment_id=payment_id, check_code=code)
        self.update()

    def _field_style(self, field: str) -> str:
        return "tab_on" if self.active == field else "secondary"

    def _copy_text(self) -> str:
        ctl, state = self.ctl, self.copy_state
        if not state:
            return ""
        if state in ("printing", "printed", "failed"):
            return ctl.t(f"check_copy_{state}", phone=ctl.phone)
        return ctl.t(ERROR_KEYS.get(state, "check_failed"), phone=ctl.phone)

    def update(self) -> None:
        ctl = self.ctl
        lang = ctl.lang
        self.head.text = ctl.t("check_title")
        self.hint.text = ctl.t("check_hint_code")
        self.number_label.text = ctl.t("payment_no")
        self.code_label.text = ctl.t("check_code_label")
        self.number.text = self._prefix() + (self.digits or "_" * DIGITS)
        self.code_field.text = self.code or "_" * CODE_DIGITS
        self.number.style = self._field_style("number")
        self.code_field.style = self._field_style("code")
        self.back.text, self.go.text = ctl.t("back"), ctl.t("check_go")
        self.reprint.text = ctl.t("check_copy")
        self.go.disabled = not (self.digits and self.code)
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
            key = ERROR_KEYS.get(self.error, "check_failed")
            self.status.text = ctl.t(key, phone=ctl.phone)
            self.status.color = theme.BAD_INK
            self.details.text = ""
        else:
            self.status.text, self.details.text = "", ""
        self.copy_note.text = self._copy_text()
        printer = (ctl.snap or {}).get("printer") or {}
        can_copy = r is not None and bool(printer.get("can_print", True))
        shown(self.reprint, can_copy and self.copy_state != "printing")
        shown(self.card, bool(self.status.text))
        shown(self.details, bool(self.details.text))
        shown(self.copy_note, bool(self.copy_note.text))
