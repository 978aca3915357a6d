"""Confirmation: the number big and plain, "is this right?", before any cash goes in.

If the printer cannot print (snapshot `printer_warning`), the customer is told first and
must agree to pay without a receipt (`accept_no_receipt`) before "yes" is offered at all.

Before any cash goes in the customer also reads the terms: the provider's fee (its bands
in words), the limits, and which banknotes the acceptor takes now (the core's
`accepted_notes_minor`: its live bill table under the escrow rule).
"""

from __future__ import annotations

from typing import Any

from ui import theme
from ui.i18n import fee_terms, money, notes_list, provider_name
from ui.screens.base import BaseScreen
from ui.theme import mm
from ui.widgets import Panel, Text, fixed, hbox, shown, spacer, vbox


class ConfirmScreen(BaseScreen):
    NAME = "confirm"

    def build(self) -> None:
        self.head = self.title("confirm.title", h_mm=16)
        self.provider = fixed(Text(ident="confirm.provider", font_mm=theme.F_LARGE), h_mm=13)
        self.number = Text(ident="confirm.number", font_mm=18, bold=True)
        card = Panel(bg=theme.INFO_BG, line=theme.FIELD_LINE, radius_mm=3, size_hint_y=None,
                     height=mm(32))
        card.add_widget(self.number)
        self.limits = fixed(Text(ident="confirm.limits", font_mm=theme.F_BODY,
                                 color=theme.INK_SOFT), h_mm=10)
        self.fee = fixed(Text(ident="confirm.fee", font_mm=theme.F_BODY, flow=True), h_mm=18)
        self.notes = fixed(Text(ident="confirm.notes", font_mm=theme.F_BODY, flow=True),
                           h_mm=10)
        self.warn_text = Text(ident="confirm.printer_warning", font_mm=theme.F_BODY,
                              flow=True)
        self.no_receipt = self.button("confirm.no_receipt",
                                      lambda: self.ctl.intent("accept_no_receipt"), "primary",
                                      w_mm=95)
        self.warn = Panel(orientation="horizontal", bg=theme.WARN_BG, radius_mm=3,
                          padding=mm(4), spacing=mm(4), size_hint_y=None, height=mm(34))
        self.warn.add_widget(self.warn_text)
        self.warn.add_widget(self.no_receipt)
        self.cancel = self.button("confirm.cancel", lambda: self.ctl.intent("cancel"),
                                  "danger", w_mm=55)
        self.change = self.button("confirm.change", lambda: self.ctl.intent("back"),
                                  "secondary", w_mm=65)
        self.yes = self.button("confirm.yes", lambda: self.ctl.intent("confirm_account"),
                               "good", w_mm=95)
        bottom = hbox(self.cancel, self.change, spacer(), self.yes, size_hint_y=None,
                      height=mm(theme.BUTTON_H))
        self.add_widget(vbox(self.head, self.provider, card, self.fee, self.limits,
                             self.notes, spacer(),
                             self.warn, spacer(size_hint_y=0.3), bottom,
                             pad_mm=6, spacing_mm=4))

    def update(self) -> None:
        ctl = self.ctl
        session: dict[str, Any] = ctl.session or {}
        provider = session.get("provider") or {}
        cur = provider.get("currency", "RUB")
        self.head.text = ctl.t("confirm_title")
        self.provider.text = provider_name(provider, ctl.lang)
        self.number.text = str(session.get("account_display", ""))
        self.limits.text = ctl.t("limits", min=money(provider.get("min_minor", 0), cur, ctl.lang),
                                 max=money(provider.get("max_minor", 0), cur, ctl.lang))
        self.fee.text = fee_terms(list(provider.get("bands") or []), cur, ctl.lang)
        notes = [int(a) for a in session.get("accepted_notes_minor") or []]
        self.notes.text = (ctl.t("notes_accepted", notes=notes_list(notes, cur, ctl.lang))
                           if notes else ctl.t("notes_none", phone=ctl.phone))
        warning = bool((ctl.snap or {}).get("printer_warning"))
        self.warn_text.text = ctl.t("printer_warning")
        self.no_receipt.text = ctl.t("no_receipt_ok")
        shown(self.warn, warning)
        shown(self.yes, not warning)
        self.cancel.text, self.change.text = ctl.t("cancel"), ctl.t("confirm_change")
        self.yes.text = ctl.t("confirm_yes")
