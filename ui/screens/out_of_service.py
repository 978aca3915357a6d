"""Out of service: what the customer should know (money safe, whom to call), never why.

Three sources, one screen: the core's own out-of-service text (snapshot `out_of_service`,
already bilingual, carrying the phone), the core's start-up text, or — when the core does
not answer at all — the UI's text with the last phone it saw (or the configured one). The
technician's reason is only in the `status` op, which this screen never asks for.
Before the first snapshot and before any attempt failed it only says "Loading…": a UI
that starts is not a terminal that is broken.
"""

from __future__ import annotations

from ui import theme
from ui.screens.base import BaseScreen
from ui.widgets import Panel, Text, fixed, spacer, vbox


class OutOfServiceScreen(BaseScreen):
    NAME = "out_of_service"

    def build(self) -> None:
        self.head = self.title("oos.title", h_mm=20, font_mm=theme.F_BIG)
        self.text = Text(ident="oos.text", font_mm=theme.F_LARGE, flow=True)
        self.phone = fixed(Text(ident="oos.phone", font_mm=theme.F_BIG, bold=True,
                                color=theme.PRIMARY), h_mm=24)
        self.retry = Text(ident="oos.retry", font_mm=theme.F_BODY, flow=True,
                          color=theme.INK_SOFT)
        self.card = card = Panel(orientation="vertical", bg=theme.WARN_BG, radius_mm=3,
                     padding=theme.mm(8), spacing=theme.mm(5), size_hint_y=None)
        for w in (self.head, self.text, self.phone):
            card.add_widget(w)
        card.bind(minimum_height=card.setter("height"))
        self.notice = Text(ident="oos.notice", font_mm=theme.F_LARGE, bold=True, flow=True)
        self.add_widget(vbox(spacer(), card, self.notice, self.retry, spacer(), pad_mm=14,
                             spacing_mm=6))

    def update(self) -> None:
        ctl = self.ctl
        snap = ctl.snap if ctl.connected else None
        oos = (snap or {}).get("out_of_service")
        loading = ctl.snap is None and not ctl.link_failed
        self.card.bg = theme.INFO_BG if loading else theme.WARN_BG
        if loading:
            self.head.text = ctl.t("loading")
            self.text.text = ""
            self.retry.text = ""
        elif snap is None:
            self.head.text = ctl.t("oos_title")
            self.text.text = ctl.t("offline_text", phone=ctl.phone)
            self.retry.text = ctl.t("offline_retry")
        else:
            starting = snap.get("screen") == "starting"
            self.head.text = ctl.t("oos_starting_title" if starting else "oos_title")
            self.text.text = ctl.core_text(oos) or ctl.t("offline_text", phone=ctl.phone)
            self.retry.text = ""
        self.phone.text = "" if loading else ctl.phone
        # money recorded while the terminal failed: the customer must learn the number
        self.notice.text = ctl.core_text((snap or {}).get("notice"))
