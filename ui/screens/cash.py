"""Cash insertion: what went in, the commission, what will be credited — live.

Every amount is the core's (snapshot `session`): the UI adds nothing up itself, so what
the customer sees is what the ledger holds. "Cancel" exists only while no money is inside
(`can_cancel`); "Pay" only once the minimum is reached and the fee leaves something to
credit (`can_pay`). A bill being checked shows at once with its value (`escrow`); when the
fee would take everything inserted the screen says so and that more cash may go in.
"""

from __future__ import annotations

from typing import Any

from kivy.uix.gridlayout import GridLayout

from ui import theme
from ui.i18n import money, provider_name
from ui.link import LinkError
from ui.screens.base import BaseScreen
from ui.theme import mm
from ui.widgets import Panel, Text, fixed, hbox, shown, spacer, vbox


class CashScreen(BaseScreen):
    NAME = "cash"

    def build(self) -> None:
        self.error = ""
        self.head = self.title("cash.title", h_mm=16, font_mm=theme.F_BIG)
        self.to = fixed(Text(ident="cash.to", font_mm=theme.F_LARGE), h_mm=12)
        rows = GridLayout(cols=2, spacing=(mm(4), mm(1)), size_hint_y=None)
        self.labels: dict[str, Text] = {}
        self.values: dict[str, Text] = {}
        for key, size, h in (("inserted", theme.F_BIG, 20), ("commission", theme.F_LARGE, 13),
                             ("credited", theme.F_LARGE, 13)):
            lab = fixed(Text(ident=f"cash.{key}_label", font_mm=theme.F_LARGE, halign="right"),
                        h_mm=h)
            val = fixed(Text(ident=f"cash.{key}", font_mm=size, bold=True, halign="left"),
                        h_mm=h)
            self.labels[key], self.values[key] = lab, val
            rows.add_widget(lab)
            rows.add_widget(val)
        rows.height = mm(20 + 13 + 13 + 2)
        card = Panel(bg=theme.INFO_BG, radius_mm=3, padding=mm(3), size_hint_y=None,
                     height=rows.height + mm(6))
        card.add_widget(rows)
        self.status = fixed(Text(ident="cash.status", font_mm=theme.F_LARGE, bold=True,
                                 color=theme.PRIMARY), h_mm=12)
        self.notice = Text(ident="cash.notice", font_mm=theme.F_BODY, flow=True)
        self.notice_box = Panel(bg=theme.WARN_BG, radius_mm=2, padding=mm(2),
                                size_hint_y=None, height=mm(24))
        self.notice_box.add_widget(self.notice)
        self.info = fixed(Text(ident="cash.info", font_mm=theme.F_BODY, color=theme.INK_SOFT),
                          h_mm=9)
        self.limits = fixed(Text(ident="cash.limits", font_mm=theme.F_BODY,
                                 color=theme.INK_SOFT), h_mm=9)
        self.cancel = self.button("cash.cancel", lambda: self.ctl.intent("cancel"), "danger",
                                  w_mm=60)
        self.pay = self.button("cash.pay", self._pay, "good", w_mm=95)
        bottom = hbox(self.cancel, spacer(), self.pay, size_hint_y=None,
                      height=mm(theme.BUTTON_H))
        self.add_widget(vbox(self.head, self.to, card, self.status, self.notice_box,
                             self.info, self.limits, spacer(), bottom,
                             pad_mm=6, spacing_mm=3))

    def entered(self) -> None:
        self.error = ""

    def _pay(self) -> None:
        def done(_result: Any, error: LinkError | None) -> None:
            self.error = error.code if error is not None else ""
            self.update()

        self.ctl.intent("pay", done)

    def update(self) -> None:
        ctl = self.ctl
        lang = ctl.lang
        s: dict[str, Any] = ctl.session or {}
        provider = s.get("provider") or {}
        cur = provider.get("currency", "RUB")
        inserted = int(s.get("inserted_minor", 0))
        self.head.text = ctl.t("cash_title")
        self.to.text = ctl.t("cash_to", provider=provider_name(provider, lang),
                             account=s.get("account_display", ""))
        for key in ("inserted", "commission", "credited"):
            self.labels[key].text = ctl.t(key)
            self.values[key].text = money(int(s.get(f"{key}_minor", 0)), cur, lang)
        min_minor = int(provider.get("min_minor", 0))
        if s.get("finishing"):
            status = ctl.t("cash_finishing")
        elif s.get("bill_in_escrow"):
            escrow = s.get("escrow") or {}
            status = ctl.t("cash_escrow")
            if escrow.get("amount_minor"):
                status += " " + money(int(escrow["amount_minor"]),
                                      str(escrow.get("currency", cur)), lang)
        elif inserted < min_minor:
            status = ctl.t("cash_min_left", amount=money(min_minor - inserted, cur, lang))
        else:
            status = ""
        self.status.text = status
        notice = ctl.core_text((ctl.snap or {}).get("notice"))
        if not notice and self.error == "below_minimum":
            notice = ctl.t("below_minimum", amount=money(min_minor, cur, lang))
        if s.get("fee_takes_all") or s.get("pay_blocked") == "no_credit":
            takes_all = ctl.t("fee_takes_all",
                              fee=money(int(s.get("commission_minor", 0)), cur, lang))
            notice = f"{notice}\n{takes_all}" if notice else takes_all
        self.notice.text = notice
        shown(self.notice_box, bool(notice))
        self.info.text = ctl.t("cash_no_change")
        self.limits.text = ctl.t("limits", min=money(min_minor, cur, lang),
                                 max=money(int(provider.get("max_minor", 0)), cur, lang))
        self.cancel.text, self.pay.text = ctl.t("cancel"), ctl.t("pay")
        shown(self.cancel, bool(s.get("can_cancel")))
        shown(self.pay, not s.get("finishing"))
        self.pay.disabled = not s.get("can_pay")
