"""Idle / attract: one big way in, and "check my payment" for people holding a receipt.

A notice from the core shows here too: money recorded outside a payment (an unclaimed
credit after a fault) is announced with its record number and whom to call.
"""

from __future__ import annotations

from kivy.uix.anchorlayout import AnchorLayout

from ui import theme
from ui.screens.base import BaseScreen
from ui.theme import mm
from ui.widgets import Panel, Text, fixed, hbox, shown, spacer, vbox


class IdleScreen(BaseScreen):
    NAME = "idle"

    def build(self) -> None:
        self.head = fixed(Text(ident="idle.title", font_mm=theme.F_BIG, bold=True), h_mm=28)
        self.sub = Text(ident="idle.sub", font_mm=theme.F_LARGE, flow=True,
                        color=theme.INK_SOFT)
        self.start = self.button("idle.start", lambda: self.ctl.intent("start"),
                                 w_mm=140, h_mm=40, font_mm=theme.F_TITLE)
        self.check = self.button("idle.check", self.ctl.open_check, style="secondary",
                                 w_mm=100, h_mm=theme.BUTTON_H)
        start_row = AnchorLayout(size_hint_y=None, height=self.start.height)
        start_row.add_widget(self.start)
        self.help = self.button("idle.help", lambda: self.ctl.show_local("help"),
                                style="secondary", w_mm=70, h_mm=theme.BUTTON_H)
        check_row = AnchorLayout(size_hint_y=None, height=self.check.height)
        check_row.add_widget(hbox(self.check, self.help, size_hint=(None, None),
                                  height=self.check.height))
        check_row.children[0].bind(minimum_width=check_row.children[0].setter("width"))
        self.notice = Text(ident="idle.notice", font_mm=theme.F_LARGE, bold=True, flow=True)
        self.notice_box = Panel(bg=theme.WARN_BG, radius_mm=3, padding=mm(3),
                                size_hint_y=None, height=mm(26))
        self.notice_box.add_widget(self.notice)
        self.add_widget(vbox(self.notice_box, spacer(), self.head, self.sub,
                             spacer(size_hint_y=0.5), start_row, spacer(size_hint_y=0.3),
                             check_row, spacer(), pad_mm=8, spacing_mm=5))

    def update(self) -> None:
        t = self.ctl.t
        self.head.text = t("idle_title")
        self.sub.text = t("idle_sub")
        self.start.text = t("idle_start")
        self.check.text = t("idle_check")
        self.help.text = t("idle_help")
        # help only when the desk sent texts; the empty button does not keep its place
        has_help = bool((self.ctl.snap or {}).get("help_texts")) or bool(
            getattr(self.ctl, "help_center", None))
        if has_help != (self.help.parent is not None):
            row = self.check.parent
            if has_help:
                row.add_widget(self.help)
            else:
                row.remove_widget(self.help)
        notice = self.ctl.core_text((self.ctl.snap or {}).get("notice"))
        self.notice.text = notice
        shown(self.notice_box, bool(notice))
