"""Proactive help over a customer screen: the relevant article, the support phone with
the help code, and a call-back request typed on the on-screen keypad.

It is only a picture over the screen: the core keeps taking and crediting bills whatever
is shown (the acceptor is the core's, not the UI's), the core's "continue?" prompt is
drawn above it, and while cash is inside the overlay itself shows the amount inserted,
live from every snapshot, so help never hides the customer's money. docs/self-service.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kivy.uix.floatlayout import FloatLayout
from kivy.uix.scrollview import ScrollView

from ui import (
    help_strings,  # noqa: F401  (registers the help texts)
    theme,
)
from ui.i18n import money, pick
from ui.theme import mm
from ui.widgets import Backdrop, Btn, Keypad, Panel, Text, fixed, hbox, shown, spacer, vbox

if TYPE_CHECKING:
    from ui.controller import Controller

PHONE_DIGITS = 10


class HelpOverlay(FloatLayout):
    def __init__(self, ctl: Controller) -> None:
        super().__init__(pos_hint={"x": 0, "y": 0})
        self.ctl = ctl
        self.mode = "offer"  # offer | callback | sent | failed
        self.trigger = ""
        self.article_id: str | None = None
        self.code = ""
        self.digits = ""
        self.sent_to = ""
        self.add_widget(Backdrop(pos_hint={"x": 0, "y": 0}))
        self.box = Panel(orientation="vertical", bg=theme.BG, line=theme.FIELD_LINE,
                         radius_mm=4, padding=mm(6), spacing=mm(3),
                         pos_hint={"x": 0.03, "y": 0.03}, size_hint=(0.94, 0.94))
        self.add_widget(self.box)
        self.title = fixed(Text(ident="overlay.title", font_mm=theme.F_TITLE, bold=True),
                           h_mm=13)
        self.inserted = fixed(Text(ident="overlay.inserted", font_mm=theme.F_LARGE,
                                   bold=True, color=theme.GOOD_INK), h_mm=11)
        self.body = Text(ident="overlay.body", flow=True, font_mm=theme.F_BODY, halign="left")
        self.scroll = ScrollView(do_scroll_x=False, bar_width=mm(4))
        self.scroll.add_widget(self.body)
        self.call = fixed(Text(ident="overlay.call", font_mm=theme.F_LARGE, bold=True,
                               color=theme.PRIMARY), h_mm=14)
        self.callback = fixed(Btn(ident="overlay.callback", style="primary",
                                  action=self._to_callback), w_mm=100, h_mm=theme.BUTTON_H)
        self.close = fixed(Btn(ident="overlay.close", style="secondary",
                               action=self._close), w_mm=70, h_mm=theme.BUTTON_H)
        self.offer_row = hbox(self.callback, spacer(), self.close, size_hint_y=None,
                              height=mm(theme.BUTTON_H))
        # -- the call-back request -----------------------------------------------------
        self.prompt = fixed(Text(ident="overlay.phone_prompt", font_mm=theme.F_BODY), h_mm=9)
        self.phone = Text(ident="overlay.phone", font_mm=theme.F_TITLE, bold=True)
        field = Panel(bg=theme.FIELD_BG, line=theme.FIELD_LINE, radius_mm=2,
                      size_hint=(None, None), size=(mm(100), mm(15)))
        field.add_widget(self.phone)
        self.keypad = Keypad(self._key, ident="overlay.key", key_w=28, key_h=20)
        self.send = fixed(Btn(ident="overlay.send", style="good", action=self._send),
                          w_mm=80, h_mm=theme.BUTTON_H)
        self.cancel = fixed(Btn(ident="overlay.cancel", style="secondary",
                                action=self._cancel), w_mm=80, h_mm=theme.BUTTON_H)
        self.callback_view = hbox(
            vbox(self.prompt, field, spacer(), self.send, self.cancel, spacing_mm=3,
                 size_hint_x=None, width=mm(100)),
            spacer(), self.keypad, spacing_mm=6)

    # -- the controller's side ---------------------------------------------------------
    def offer(self, trigger: str, article_id: str | None) -> None:
        self.trigger, self.article_id, self.mode, self.digits = trigger, article_id, "offer", ""
        self.ctl.request("help_open", self._got_code)
        self.update()

    def _got_code(self, result: Any, error: Any) -> None:
        if error is None and isinstance(result, dict):
            self.code = str(result.get("help_code") or "")
            self.update()

    # -- actions -----------------------------------------------------------------------
    def _to_callback(self) -> None:
        self.mode, self.digits = "callback", ""
        self.update()

    def _cancel(self) -> None:
        self.mode = "offer"
        self.update()

    def _close(self) -> None:
        self.ctl.close_help_overlay()

    def _key(self, key: str) -> None:
        if key == "clear":
            self.digits = ""
        elif key == "back":
            self.digits = self.digits[:-1]
        elif len(self.digits) < PHONE_DIGITS:
            self.digits += key
        self.update()

    def _send(self) -> None:
        if len(self.digits) != PHONE_DIGITS:
            return
        self.sent_to = self.digits

        def done(result: Any, error: Any) -> None:
            if error is None and isinstance(result, dict):
                self.code = str(result.get("help_code") or self.code)
            self.mode = "failed" if error is not None else "sent"
            self.update()

        self.ctl.help_event("help_callback_requested", done, phone=self.digits,
                            trigger=self.trigger or None)

    # -- drawing -----------------------------------------------------------------------
    def update(self) -> None:
        ctl, t = self.ctl, self.ctl.t
        session = ctl.session or {}
        inserted = int(session.get("inserted_minor") or 0)
        currency = str((session.get("provider") or {}).get("currency") or "RUB")
        self.inserted.text = (t("overlay_inserted", amount=money(inserted, currency, ctl.lang))
                              if inserted > 0 else "")
        code = self.code or "…"
        self.box.clear_widgets()
        self.box.add_widget(self.title)
        self.box.add_widget(self.inserted)  # always in the box: the money stays in sight
        if self.mode == "callback":
            self.title.text = t("overlay_callback")
            self.prompt.text = t("overlay_phone_prompt")
            self.phone.text = self.digits or "—"
            self.send.text, self.cancel.text = t("overlay_send"), t("overlay_cancel")
            self.send.disabled = len(self.digits) != PHONE_DIGITS
            self.box.add_widget(self.callback_view)
            return
        self.title.text = t("overlay_title")
        article = next((a for a in (getattr(ctl, "help_center", None) or {}).get("articles", [])
                        if a.get("id") == self.article_id), None)
        if self.mode in ("sent", "failed"):
            key = "overlay_sent" if self.mode == "sent" else "overlay_failed"
            self.body.text = t(key, phone=self.sent_to if self.mode == "sent" else ctl.phone,
                               code=code)
        else:
            self.body.text = (pick(article.get("title"), ctl.lang) + "\n\n"
                              + pick(article.get("body"), ctl.lang)) if article else ""
        self.body.text_size = (self.box.width - mm(16), None)
        self.call.text = t("overlay_call", phone=ctl.phone, code=code)
        self.callback.text, self.close.text = t("overlay_callback"), t("overlay_close")
        shown(self.callback, self.mode == "offer")
        self.box.add_widget(self.scroll)
        self.box.add_widget(self.call)
        self.box.add_widget(self.offer_row)
