"""After the payment: its number (what the call centre asks for) and the receipt's fate.

`last_payment.receipt` is `printing`, `printed` or `failed`; on failure the core's notice
tells the customer to write the number down and whom to call, and the number stays big.
"""

from __future__ import annotations

from typing import Any

from ui import theme
from ui.i18n import money
from ui.screens.base import BaseScreen
from ui.theme import mm
from ui.widgets import Panel, Text, fixed, hbox, spacer, vbox


class ReceiptScreen(BaseScreen):
    NAME = "receipt"

    def build(self) -> None:
        self.head = self.title("receipt.title", h_mm=18, font_mm=theme.F_BIG,
                               color=theme.GOOD_INK)
        self.id_label = fixed(Text(ident="receipt.id_label", font_mm=theme.F_BODY), h_mm=9)
        self.payment_id = Text(ident="receipt.payment_id", font_mm=14, bold=True)
        card = Panel(bg=theme.INFO_BG, line=theme.FIELD_LINE, radius_mm=3, size_hint_y=None,
                     height=mm(24))
        card.add_widget(self.payment_id)
        # The check code: with the number it checks the payment here later, receipt or not.
        self.check_code = fixed(Text(ident="receipt.check_code", font_mm=theme.F_BODY,
                                     bold=True), h_mm=9)
        self.amounts = Text(ident="receipt.amounts", font_mm=theme.F_LARGE, flow=True)
        self.state = Text(ident="receipt.state", font_mm=theme.F_LARGE, bold=True, flow=True)
        self.state_box = Panel(bg=theme.BG, radius_mm=3, padding=mm(3), size_hint_y=None,
                               height=mm(40))
        self.state_box.add_widget(self.state)
        self.done = self.button("receipt.done", lambda: self.ctl.intent("done"), "primary",
                                w_mm=80)
        bottom = hbox(spacer(), self.done, size_hint_y=None, height=mm(theme.BUTTON_H))
        self.add_widget(vbox(self.head, self.id_label, card, self.check_code, self.amounts,
                             self.state_box,
                             spacer(), bottom, pad_mm=6, spacing_mm=4))

    def update(self) -> None:
        ctl = self.ctl
        lang = ctl.lang
        lp: dict[str, Any] = (ctl.snap or {}).get("last_payment") or {}
        cur = lp.get("currency", "RUB")
        self.head.text = ctl.t("receipt_title")
        self.id_label.text = ctl.t("payment_no")
        self.payment_id.text = str(lp.get("payment_id", ""))
        code = lp.get("check_code")
        self.check_code.text = ctl.t("receipt_check_code", code=code) if code else ""
        self.amounts.text = "\n".join(
            f"{ctl.t(k)}: {money(int(lp.get(f'{k}_minor', 0)), cur, lang)}"
            for k in ("inserted", "commission", "credited")
        )
        receipt = lp.get("receipt")
        bg: tuple[float, float, float, float]
        if receipt == "printed":
            text, bg = ctl.t("receipt_printed"), theme.INFO_BG
        elif receipt == "failed":
            text = ctl.core_text((ctl.snap or {}).get("notice")) or ctl.t("receipt_none")
            bg = theme.WARN_BG
        else:
            text, bg = ctl.t("receipt_printing"), theme.BG
        notice = ctl.core_text((ctl.snap or {}).get("notice"))
        if notice and notice != text:
            text, bg = f"{text}\n{notice}", theme.WARN_BG
        self.state.text = text
        self.state_box.bg = bg
        self.done.text = ctl.t("done")
