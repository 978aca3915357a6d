"""Help: the desk's help texts (snapshot `help_texts`, `{topic: {ru, en}}`), and whom to call.

UI-local over the core's idle screen, reachable from the idle screen only when the desk
has sent texts. Long texts scroll here (the one place a customer may scroll): they are
the desk's, and their length is not ours to choose.
"""

from __future__ import annotations

from kivy.uix.scrollview import ScrollView

from ui import theme
from ui.i18n import pick
from ui.screens.base import BaseScreen
from ui.theme import mm
from ui.widgets import Text, hbox, spacer, vbox


class HelpScreen(BaseScreen):
    NAME = "help"

    def build(self) -> None:
        self.head = self.title("help.title", h_mm=15)
        self.body = vbox(spacing_mm=5, size_hint_y=None)
        self.body.bind(minimum_height=self.body.setter("height"))
        self.scroll = ScrollView(do_scroll_x=False, bar_width=mm(4),
                                 scroll_type=["bars", "content"])
        self.scroll.add_widget(self.body)
        self.call = Text(ident="help.call", font_mm=theme.F_LARGE, bold=True, flow=True,
                         color=theme.PRIMARY)
        self.back = self.button("help.back", self.ctl.close_local, "secondary", w_mm=55)
        bottom = hbox(self.back, spacer(), size_hint_y=None, height=mm(theme.BUTTON_H))
        self.add_widget(vbox(self.head, self.scroll, self.call, bottom, pad_mm=6,
                             spacing_mm=4))
        self._shown: tuple = ()

    def update(self) -> None:
        ctl = self.ctl
        texts = (ctl.snap or {}).get("help_texts") or {}
        paragraphs = tuple(ctl.core_text(t) if isinstance(t, dict) else pick(None, ctl.lang)
                           for t in texts.values())
        if paragraphs != self._shown:
            self._shown = paragraphs
            self.body.clear_widgets()
            for i, text in enumerate(paragraphs):
                self.body.add_widget(Text(ident=f"help.text{i}", text=text, flow=True,
                                          font_mm=theme.F_LARGE, halign="left"))
        self.head.text = ctl.t("help_title")
        self.call.text = ctl.t("help_call", phone=ctl.phone)
        self.back.text = ctl.t("back")
