"""After the payment: its number (what the call centre asks for) and the receipt's fate.

`last_payment.receipt` is `printing`, `printed` or `failed`; on failure the core's notice
tells the customer to write the number down and whom to call, and the number stays big.

Below it, when the desk's rules chose any (after the payment was committed), up to three
offers (`last_payment.offers`): a tap on one tells the core "interested" (intent
`offer_interested`), once per offer. With no offers the strip takes no room at all.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from kivy.utils import escape_markup

from ui import theme
from ui.i18n import money
from ui.screens.base import BaseScreen
from ui.theme import mm
from ui.widgets import Btn, Panel, Text, fixed, hbox, spacer, vbox

OFFER_SLOTS = 3  # the core never sends more (kiosk.offers.MAX_OFFERS_SHOWN)
OFFERS_H = 36.0  # the strip: its title line and a row of offer cards (mm)
OFFER_CARD_H = 26.0
STATE_H, STATE_H_WITH_OFFERS = 40.0, 32.0


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
                               height=mm(STATE_H))
        self.state_box.add_widget(self.state)
        self.done = self.button("receipt.done", lambda: self.ctl.intent("done"), "primary",
                                w_mm=80)
        bottom = hbox(spacer(), self.done, size_hint_y=None, height=mm(theme.BUTTON_H))
        self.offers_title = fixed(Text(ident="receipt.offers_title", font_mm=theme.F_SMALL,
                                       color=theme.INK_SOFT), h_mm=OFFERS_H - OFFER_CARD_H - 3)
        self.offer_cards = [
            Btn(ident=f"receipt.offer{i}", style="secondary", font_mm=theme.F_SMALL,
                bold=False, action=partial(self._interested, i))
            for i in range(OFFER_SLOTS)
        ]
        self.offer_row = hbox(*self.offer_cards, size_hint_y=None, height=mm(OFFER_CARD_H))
        self.offers = vbox(self.offers_title, self.offer_row, spacing_mm=3,
                           size_hint_y=None, height=mm(OFFERS_H))
        self.column = vbox(self.head, self.id_label, card, self.check_code, self.amounts,
                           self.state_box,
                           spacer(), bottom, pad_mm=6, spacing_mm=4)
        self.add_widget(self.column)
        self._offer_ids: list[str] = []

    def _interested(self, slot: int) -> None:
        if slot < len(self._offer_ids):
            self.ctl.intent("offer_interested", offer_id=self._offer_ids[slot])

    def _show_offers(self, lp: dict[str, Any]) -> None:
        """The strip is in the column only while there are offers to show."""
        offers = list(lp.get("offers") or [])[:OFFER_SLOTS]
        tapped = set(lp.get("offers_interested") or [])
        self._offer_ids = [str(o.get("id")) for o in offers]
        present = self.offers.parent is not None
        if offers and not present:
            self.column.add_widget(self.offers, index=2)  # above the spacer and Done
        elif not offers and present:
            self.column.remove_widget(self.offers)
        self.state_box.height = mm(STATE_H_WITH_OFFERS if offers else STATE_H)
        if not offers:
            return
        lang = self.ctl.lang
        self.offers_title.text = self.ctl.t("offers_title")
        for i, card in enumerate(self.offer_cards):
            if i >= len(offers):
                card.opacity, card.disabled, card.text = 0, True, ""
                continue
            o = offers[i]
            title = escape_markup(str(o.get(f"title_{lang}", "")))
            text = escape_markup(str(o.get(f"text_{lang}", "")))
            if o.get("id") in tapped:
                text, card.style = self.ctl.t("offer_thanks"), "good"
            else:
                card.style = "secondary"
            card.opacity, card.disabled = 1, False
            card.text = f"[b]{title}[/b]\n{text}" if text else f"[b]{title}[/b]"
            card.markup = True

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
        self._show_offers(lp)
