"""What a drawn widget keeps: no second copy of a text's pixels, no invisible geometry.

On a software-GL panel every texture and every triangle is ordinary process memory, so
the UI's peak resident size (bench/ui.py, limit ×1.10 of a bare Kivy window) depends on
both. Real widgets in the real window under Xvfb, drawn by Kivy's own event loop.
"""

from __future__ import annotations

from typing import Any

from kivy.base import EventLoop
from kivy.uix.label import Label

from ui import theme
from ui.text_render import SURFACE
from ui.widgets import Panel, Text

FRAMES = 5


def _draw(window: Any, widget: Any) -> None:
    window.add_widget(widget)
    try:
        for _ in range(FRAMES):
            EventLoop.idle()
    finally:
        window.remove_widget(widget)


def _inked(texture: Any) -> int:
    """How many pixels of a text's texture carry ink (alpha > 0)."""
    return sum(1 for a in texture.pixels[3::4] if a)


def test_kivys_own_label_keeps_its_drawn_surface(window: Any) -> None:
    """The cost being removed exists: Kivy's provider keeps the surface under this name.
    If a Kivy upgrade renames it, this fails and ui/text_render.py must follow."""
    plain = Label(text="Оплата услуг", size=(400, 80))
    _draw(window, plain)
    assert plain.texture_size[0] > 1
    assert SURFACE in vars(plain._label)


def test_text_keeps_no_surface_and_still_shows_its_words(window: Any) -> None:
    text = Text(text="Оплата услуг", size=(400, 80), size_hint=(None, None))
    _draw(window, text)
    assert text.texture_size[0] > 1
    assert SURFACE not in vars(text._label)
    assert _inked(text.texture) > 100


def test_markup_text_keeps_no_surface_either(window: Any) -> None:
    card = Text(text="[b]Кэшбэк[/b] 5 %", markup=True, size=(400, 80), size_hint=(None, None))
    _draw(window, card)
    assert SURFACE not in vars(card._label)
    assert _inked(card.texture) > 100


def test_redrawn_text_keeps_no_surface(window: Any) -> None:
    text = Text(text="100,00 ₽", size=(400, 80), size_hint=(None, None))
    _draw(window, text)
    first = _inked(text.texture)
    text.text = "1 100,00 ₽"
    _draw(window, text)
    assert SURFACE not in vars(text._label)
    assert _inked(text.texture) > first


def test_a_panel_draws_only_what_shows(window: Any) -> None:
    bare = Panel(size=(300, 200), size_hint=(None, None))
    _draw(window, bare)
    assert list(bare._line.points) == []
    assert tuple(bare._bg.size) == (0, 0)

    framed = Panel(bg=theme.FIELD_BG, line=theme.FIELD_LINE, radius_mm=2,
                   size=(300, 200), size_hint=(None, None))
    _draw(window, framed)
    assert len(framed._line.points) > 8
    assert tuple(framed._bg.size) == (300, 200)

    framed.line = [0, 0, 0, 0]  # the frame goes: so does its geometry
    framed.bg = [0, 0, 0, 0]
    _draw(window, framed)
    assert list(framed._line.points) == []
    assert tuple(framed._bg.size) == (0, 0)
    framed.line = theme.FIELD_LINE  # and comes back
    framed.bg = theme.WARN_BG
    _draw(window, framed)  # a rounded outline's points are made when it is drawn
    assert len(framed._line.points) > 8
    assert tuple(framed._bg.size) == (300, 200)
