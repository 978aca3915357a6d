"""What every screen shares: a reference to the controller and the update contract.

A screen builds its widgets once and, on every snapshot or language change while it is
shown, `update()` sets their texts and states from the controller's view of the core.
Screens never keep a copy of the core's state: what they show is the snapshot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kivy.uix.screenmanager import Screen

from ui import theme
from ui.widgets import Btn, Text, fixed

if TYPE_CHECKING:
    from ui.controller import Controller


class BaseScreen(Screen):
    NAME = ""

    def __init__(self, ctl: Controller, **kwargs: Any) -> None:
        super().__init__(name=self.NAME, **kwargs)
        self.ctl = ctl
        self.build()

    def build(self) -> None:
        raise NotImplementedError

    def entered(self) -> None:
        """The screen just became the one shown (reset what is local to a visit)."""

    def update(self) -> None:
        raise NotImplementedError

    # -- small factories -------------------------------------------------------------
    def title(self, ident: str, h_mm: float = 16, **kw: Any) -> Text:
        kw.setdefault("font_mm", theme.F_TITLE)
        kw.setdefault("bold", True)
        return fixed(Text(ident=ident, **kw), h_mm=h_mm)

    def button(self, ident: str, action: Any, style: str = "primary", w_mm: float = 60,
               h_mm: float = theme.BUTTON_H, **kw: Any) -> Btn:
        return fixed(Btn(ident=ident, action=action, style=style, **kw),
                     w_mm=w_mm, h_mm=h_mm)
