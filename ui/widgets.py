"""The few widgets every screen is made of: text that fits, big buttons, keypads.

- `Text` never clips silently: it wraps to its width and, when a translation is longer
  than the box, steps its font down (to `min_scale` of the design size at most). If it
  still does not fit, the UI tests see texture_size > size and fail.
- `Btn` is a flat, high-contrast button whose colour changes the moment it is touched
  (immediate feedback); its size comes from the layout and the tests hold it to ≥ 20 mm.
- `Keypad` and `LetterKeyboard` are built from `Btn`s: Kivy's VKeyboard has no
  numeric layout and a VKeyboard cannot be sized in millimetres.
- `CornerZone` is the hidden technician gesture.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar

from kivy.clock import Clock
from kivy.graphics import Color, Line, Rectangle, RoundedRectangle
from kivy.properties import (
    BooleanProperty,
    ListProperty,
    NumericProperty,
    OptionProperty,
    StringProperty,
)
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.gridlayout import GridLayout
from kivy.uix.label import Label
from kivy.uix.widget import Widget

from ui import theme
from ui.config import Gesture
from ui.text_render import LeanLabel, LeanMarkupLabel
from ui.theme import mm

W = TypeVar("W", bound=Widget)

SYMBOL_FONT = "DejaVuSans"  # bundled with Kivy; has ⌫ which Roboto lacks
FONT_STEP = 0.9  # a text too long for its box is tried again at this fraction of its size


def whole_px(size: float) -> float:
    """A font size in whole pixels, as SDL_ttf draws it (it truncates to an int). Kivy
    opens one font face per distinct size *value* and keeps up to 64: 22.68 and 22.9
    would be two faces of the same 22 px font, each a few hundred KiB, opened again and
    again as the cache turns over (docs/ui.md, "Memory")."""
    return float(max(1, math.floor(size)))


class Text(Label):
    """A label that wraps to its width and shrinks its font rather than overflow.

    `flow=True`: the height follows the text (for use in vertical boxes).
    """

    ident = StringProperty("")
    font_mm = NumericProperty(theme.F_BODY)
    flow = BooleanProperty(False)
    hpad_mm = NumericProperty(1.5)
    min_scale = NumericProperty(0.62)

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("color", theme.INK)
        kwargs.setdefault("halign", "center")
        if kwargs.get("flow"):
            kwargs.setdefault("size_hint_y", None)
        super().__init__(**kwargs)
        self.font_size = whole_px(mm(self.font_mm))
        self.bind(width=self._on_box, hpad_mm=self._on_box, font_mm=self._reset,
                  text=self._reset, texture_size=self._fit)
        if not self.flow:  # a flowing label's height follows its text: no feedback loop
            self.bind(height=self._reset)
        self._on_box()

    def _create_label(self) -> None:
        """Kivy's label, but one that keeps no second copy of its pixels
        (ui/text_render.py)."""
        cls = LeanMarkupLabel if self.markup else LeanLabel
        if type(getattr(self, "_label", None)) is cls:
            return
        options = {name: getattr(self, name) for name in self._font_properties}
        options["usersize"] = self.text_size
        if self.disabled:
            options["color"] = self.disabled_color
            options["outline_color"] = self.disabled_outline_color
        self._label = cls(**options)

    def _avail(self) -> float:
        return max(1.0, self.width - 2 * mm(self.hpad_mm))

    def _on_box(self, *_: Any) -> None:
        self._reset()

    def _reset(self, *_: Any) -> None:
        """Start again from the design size (the box or the text changed).

        A centred text is first drawn at its own width (text_size None): its texture is
        as wide as the words, not as the box, which is most of the UI's memory on a
        software-GL panel (docs/ui.md, "Benchmark"). Only a text that does not fit on one
        line is drawn at the box's width, to wrap."""
        # the text's own width when centred; left/right alignment needs the box's width
        width: float | None = None if self.halign == "center" else self._avail()
        self.text_size = (width, None)
        target = whole_px(mm(self.font_mm))
        if abs(self.font_size - target) > 0.01:
            self.font_size = target  # a new texture follows, then _fit
        else:
            self._fit()  # same texture, new box: check it again

    def fits(self) -> bool:
        tw, th = self.texture_size
        return tw <= self.width + 0.5 and (self.flow or th <= self.height + 0.5)

    def _fit(self, *_: Any) -> None:
        avail = self._avail()
        if self.text_size[0] is None and self.texture_size[0] > avail + 0.5:
            wrap: float | None = avail  # one line is too long: wrap it in the box
            self.text_size = (wrap, None)
            return  # the wrapped texture comes back here
        if self.flow:
            self.height = self.texture_size[1] + mm(1)
        if self.fits() and self.texture_size[0] <= avail + 0.5:
            return
        smallest = whole_px(mm(self.font_mm) * self.min_scale)
        if self.font_size > smallest + 0.5:
            self.font_size = max(smallest, whole_px(self.font_size * FONT_STEP))


class Panel(BoxLayout):
    """A box with a background (and optionally a frame): cards, warnings, the header."""

    bg = ListProperty([0, 0, 0, 0])
    line = ListProperty([0, 0, 0, 0])
    radius_mm = NumericProperty(0)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        with self.canvas.before:
            self._bg_color = Color(rgba=self.bg)
            self._bg = RoundedRectangle(pos=self.pos, size=self.size, radius=[0])
            self._line_color = Color(rgba=self.line)
            self._line = Line(rounded_rectangle=(0, 0, 1, 1, 1), width=1.5)
        self.bind(pos=self._redraw, size=self._redraw, bg=self._redraw, line=self._redraw)
        self._redraw()

    def _redraw(self, *_: Any) -> None:
        """Only what shows is drawn: most panels have no frame and some no background,
        and an invisible rounded outline still costs software GL its triangles in every
        tile it crosses (about 3 MiB at the peak of a frame, docs/ui.md "Memory")."""
        r = mm(self.radius_mm)
        self._bg_color.rgba = self.bg
        self._bg.pos, self._bg.radius = self.pos, [r]
        self._bg.size = self.size if self.bg[3] > 0 else (0, 0)
        self._line_color.rgba = self.line
        if self.line[3] > 0:
            x, y = self.pos
            w, h = self.size
            self._line.rounded_rectangle = (x, y, max(w, 1), max(h, 1), max(r, 1))
        else:
            self._line.points = []


STYLES: dict[str, tuple[tuple, tuple, tuple]] = {
    # style: (background, background while pressed, text)
    "primary": (theme.PRIMARY, theme.PRIMARY_DOWN, theme.WHITE),
    "secondary": (theme.SECONDARY, theme.SECONDARY_DOWN, theme.INK),
    "danger": (theme.DANGER, theme.DANGER_DOWN, theme.WHITE),
    "good": (theme.GOOD, theme.GOOD_DOWN, theme.WHITE),
    "key": (theme.SECONDARY, theme.KEY_DOWN, theme.INK),
    "tab": (theme.SECONDARY, theme.SECONDARY_DOWN, theme.INK),
    "tab_on": (theme.PRIMARY, theme.PRIMARY_DOWN, theme.WHITE),
    "header": ((0.25, 0.28, 0.36, 1), (0.40, 0.44, 0.52, 1), theme.WHITE),
}


class Btn(ButtonBehavior, Text):
    """A flat button; `action()` runs on release inside it, like a finger lifted."""

    style = OptionProperty("primary", options=list(STYLES))

    def __init__(self, action: Callable[[], Any] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("font_mm", theme.F_BUTTON)
        kwargs.setdefault("bold", True)
        super().__init__(**kwargs)
        self.action = action
        with self.canvas.before:
            self._c = Color(rgba=(0, 0, 0, 0))
            self._r = RoundedRectangle(pos=self.pos, size=self.size, radius=[mm(2)])
        self.bind(pos=self._redraw, size=self._redraw, state=self._redraw,
                  disabled=self._redraw, style=self._redraw)
        self._redraw()

    def _redraw(self, *_: Any) -> None:
        normal, down, ink = STYLES[self.style]
        if self.disabled:
            self._c.rgba = theme.DISABLED
            self.color = theme.DISABLED_INK
            self.disabled_color = theme.DISABLED_INK
        else:
            self._c.rgba = down if self.state == "down" else normal
            self.color = ink
        self._r.pos, self._r.size = self.pos, self.size

    def on_release(self) -> None:
        if self.action is not None:
            self.action()


def shown(widget: Widget, visible: bool) -> None:
    """Hide a widget in place (the layout keeps its room, touches pass it by)."""
    widget.opacity = 1 if visible else 0
    widget.disabled = not visible


def fixed(widget: W, w_mm: float | None = None, h_mm: float | None = None) -> W:
    """Give a widget a physical size in one or both directions (the same widget back)."""
    if w_mm is not None:
        widget.size_hint_x = None
        widget.width = mm(w_mm)
    if h_mm is not None:
        widget.size_hint_y = None
        widget.height = mm(h_mm)
    return widget


def vbox(*children: Widget, spacing_mm: float = theme.GAP, pad_mm: float = 0,
         **kwargs: Any) -> BoxLayout:
    box = BoxLayout(orientation="vertical", spacing=mm(spacing_mm), padding=mm(pad_mm),
                    **kwargs)
    for c in children:
        box.add_widget(c)
    return box


def hbox(*children: Widget, spacing_mm: float = theme.GAP, pad_mm: float = 0,
         **kwargs: Any) -> BoxLayout:
    box = BoxLayout(orientation="horizontal", spacing=mm(spacing_mm), padding=mm(pad_mm),
                    **kwargs)
    for c in children:
        box.add_widget(c)
    return box


def spacer(**kwargs: Any) -> Widget:
    return Widget(**kwargs)


class Keypad(GridLayout):
    """Digits 1–9, 0, clear and backspace; each key at least KEY_W × KEY_H mm."""

    def __init__(self, on_key: Callable[[str], None], ident: str = "key",
                 key_w: float = theme.KEY_W, key_h: float = theme.KEY_H, **kwargs: Any) -> None:
        super().__init__(cols=3, spacing=mm(theme.GAP), size_hint=(None, None), **kwargs)
        self.width = 3 * mm(key_w) + 2 * mm(theme.GAP)
        self.height = 4 * mm(key_h) + 3 * mm(theme.GAP)
        self.keys: dict[str, Btn] = {}
        for key in ("1", "2", "3", "4", "5", "6", "7", "8", "9", "clear", "0", "back"):
            text = {"clear": "C", "back": "⌫"}.get(key, key)
            btn = Btn(text=text, style="key", font_mm=theme.F_KEY, ident=f"{ident}.{key}",
                      action=partial(on_key, key), size_hint=(None, None),
                      size=(mm(key_w), mm(key_h)))
            if key == "back":
                btn.font_name = SYMBOL_FONT
            self.keys[key] = btn
            self.add_widget(btn)


LAYOUTS: dict[str, tuple[str, ...]] = {
    "ru": ("ЙЦУКЕНГШЩЗХ", "ФЫВАПРОЛДЖЭ", "ЯЧСМИТЬБЮЁЪ"),
    "en": ("QWERTYUIOP", "ASDFGHJKL", "ZXCVBNM"),
}


class LetterKeyboard(BoxLayout):
    """An on-screen keyboard for provider search: Cyrillic or Latin, switchable."""

    layout = StringProperty("ru")  # the letters: Cyrillic or Latin
    caption_lang = StringProperty("ru")  # the language of the word keys

    def __init__(self, on_key: Callable[[str], None], key_w_mm: float, key_h_mm: float,
                 labels: Callable[[str], str], **kwargs: Any) -> None:
        self.on_key = on_key
        self.keys: dict[str, Btn] = {}
        self.key_w, self.key_h = key_w_mm, key_h_mm
        self.labels = labels
        super().__init__(orientation="vertical", spacing=mm(2), size_hint_y=None, **kwargs)
        self.height = 4 * mm(key_h_mm) + 3 * mm(2)
        self.bind(layout=lambda *_: self.rebuild(), caption_lang=lambda *_: self.rebuild())
        self.rebuild()

    def rebuild(self) -> None:
        self.clear_widgets()
        self.keys = {}
        for row in LAYOUTS[self.layout]:
            self.add_widget(self._row([(ch, ch, self.key_w) for ch in row]))
        other = "en" if self.layout == "ru" else "ru"
        self.add_widget(self._row([
            ("layout", self.labels(f"key_layout_{other}"), self.key_w * 1.6),
            ("space", self.labels("key_space"), self.key_w * 4),
            ("back", "⌫", self.key_w * 1.3),
            ("clear", self.labels("key_clear"), self.key_w * 1.9),
        ]))

    def _row(self, keys: Sequence[tuple[str, str, float]]) -> BoxLayout:
        row = BoxLayout(orientation="horizontal", spacing=mm(2), size_hint=(None, None),
                        height=mm(self.key_h))
        for key, text, w in keys:
            btn = Btn(text=text, style="key", font_mm=theme.F_BUTTON, ident=f"kb.{key}",
                      action=partial(self.on_key, key), size_hint=(None, None),
                      size=(mm(w), mm(self.key_h)))
            if key == "back":
                btn.font_name = SYMBOL_FONT
            self.keys[key] = btn
            row.add_widget(btn)
        row.width = sum(mm(w) for _, _, w in keys) + mm(2) * (len(keys) - 1)
        wrap = BoxLayout(size_hint_y=None, height=mm(self.key_h))
        wrap.add_widget(Widget())
        wrap.add_widget(row)
        wrap.add_widget(Widget())
        return wrap


class CornerZone(Widget):
    """The hidden technician gesture over a header corner: N quick taps, or a long hold.

    It draws nothing and takes every touch that lands on it, so the corner does nothing
    else a customer could notice.
    """

    ident = StringProperty("tech.corner")

    def __init__(self, gesture: Gesture, on_gesture: Callable[[], None],
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gesture = gesture
        self.on_gesture = on_gesture
        self._taps: list[float] = []
        self._hold: Any = None
        self.enabled = True

    def on_touch_down(self, touch: Any) -> bool:
        if not self.collide_point(*touch.pos):
            return False
        if not self.enabled:
            return True
        g = self.gesture
        if g.kind == "hold":
            touch.grab(self)
            self._hold = Clock.schedule_once(lambda _dt: self._fire(), g.count)
            return True
        now = time.monotonic()
        self._taps = [t for t in self._taps if now - t <= g.window_s] + [now]
        if len(self._taps) >= int(g.count):
            self._fire()
        return True

    def on_touch_up(self, touch: Any) -> bool:
        if touch.grab_current is self:
            touch.ungrab(self)
            if self._hold is not None:
                self._hold.cancel()
                self._hold = None
            return True
        return False

    def _fire(self) -> None:
        self._taps = []
        self._hold = None
        self.on_gesture()


class Backdrop(Widget):
    """Dims what lies under a prompt and takes the touches meant for it."""

    covers_below = True  # ui.inspect: what lies under it is out of play

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        with self.canvas:
            Color(rgba=theme.BACKDROP)
            self._r = Rectangle(pos=self.pos, size=self.size)
        self.bind(pos=self._redraw, size=self._redraw)

    def _redraw(self, *_: Any) -> None:
        self._r.pos, self._r.size = self.pos, self.size

    def on_touch_down(self, touch: Any) -> bool:
        return self.collide_point(*touch.pos)
