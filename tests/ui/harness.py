"""Driving the real UI in this process: a real window on Xvfb, real touch events.

`Driver` pumps Kivy's event loop by hand (EventLoop.idle(), as App.run() would) while the
UI's link thread talks to a real core daemon. A tap is a touch posted through the event
loop at the widget's centre in window coordinates, so it reaches the widget only if the
widget is visible, enabled and on top — as a finger would.
"""

from __future__ import annotations

import itertools
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kivy.base import EventLoop
from kivy.core.window import Window
from kivy.input.motionevent import MotionEvent
from kivy.uix.widget import Widget

from ui import inspect, theme
from ui.app import KioskUi

REPO = Path(__file__).resolve().parents[2]
GALLERY = REPO / "build" / "ui-screenshots"  # git-ignored (build/); a folder per WxH
_ids = itertools.count(1000)


class Finger(MotionEvent):
    """One touch at window coordinates (x, y), as a touchscreen driver would post it."""

    def __init__(self, x: float, y: float) -> None:
        win = EventLoop.window
        super().__init__("finger", next(_ids),
                         {"x": x / (win.width - 1.0), "y": y / (win.height - 1.0)},
                         is_touch=True, type_id="touch")
        self.profile = ["pos"]

    def depack(self, args: dict[str, float]) -> None:
        self.sx, self.sy = args["x"], args["y"]
        super().depack(args)


class Driver:
    def __init__(self, ui: KioskUi, shots: Path, on_pump: Callable[[], None] | None = None,
                 gallery_prefix: str = "") -> None:
        self.ui = ui
        self.shots = shots
        self.on_pump = on_pump
        self.prefix = gallery_prefix
        self.saved: list[Path] = []

    # -- time ------------------------------------------------------------------------
    def pump(self, seconds: float = 0.05) -> None:
        end = time.monotonic() + seconds
        last_drain = 0.0
        while True:
            EventLoop.idle()
            now = time.monotonic()
            if self.on_pump is not None and now - last_drain > 0.5:
                self.on_pump()
                last_drain = now
            if now >= end:
                return

    def until(self, pred: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            value = pred()
            if value:
                return value
            self.pump(0.02)
        value = pred()
        if value:
            return value
        raise AssertionError(f"timed out waiting for {what or pred}: screen "
                             f"{self.ui.sm.current!r}, texts {self.texts()}")

    def on(self, screen: str, timeout: float = 10.0) -> None:
        self.until(lambda: self.ui.sm.current == screen and self.settled(), timeout,
                   f"screen {screen}")
        self.pump(0.05)

    def settled(self) -> bool:
        """No screen transition running: exactly one screen in the tree."""
        return len(self.ui.sm.children) == 1

    # -- looking -----------------------------------------------------------------------
    def texts(self) -> dict[str, str]:
        return inspect.texts(self.ui.root)

    def find(self, ident: str) -> Widget:
        w = inspect.find(self.ui.root, ident)
        assert w is not None, f"no visible widget {ident!r} on {self.ui.sm.current!r}"
        return w

    def visible(self, ident: str) -> bool:
        return inspect.find(self.ui.root, ident) is not None

    def text(self, ident: str) -> str:
        """The text as a person reads it (no-break spaces read as spaces)."""
        return str(self.find(ident).text).replace("\u00a0", " ")

    def wait_text(self, ident: str, pred: Callable[[str], bool], timeout: float = 10.0) -> str:
        return self.until(
            lambda: self.visible(ident) and pred(self.text(ident)) and self.text(ident),
            timeout, f"text of {ident}")

    # -- touching ----------------------------------------------------------------------
    def tap(self, ident: str) -> None:
        w = self.find(ident)
        assert not w.disabled, f"{ident!r} is disabled"
        self.tap_at(*w.to_window(*w.center))

    def type_check_pair(self, number: str, code: str) -> None:
        """Check my payment: the payment number, then the receipt's check code, each
        typed into its own field on the one keypad."""
        for field, digits in (("check.number", number), ("check.code", code)):
            self.tap(field)
            self.tap("check.key.clear")
            self.type_keys("check.key", digits)

    def tap_at(self, x: float, y: float) -> None:
        f = Finger(x, y)
        EventLoop.post_dispatch_input("begin", f)
        self.pump(0.02)
        EventLoop.post_dispatch_input("end", f)
        self.pump(0.03)

    def type_keys(self, prefix: str, keys: str) -> None:
        for k in keys:
            self.tap(f"{prefix}.{k}")

    # -- checking and pictures ---------------------------------------------------------
    def layout_problems(self) -> list[str]:
        bounds = (0.0, 0.0, float(Window.width), float(Window.height))
        return (inspect.clipped(self.ui.root, bounds, (self.ui.content, self.ui.header))
                + inspect.outside(self.ui.root, bounds)
                + inspect.overlaps(self.ui.root)
                + inspect.overflows(self.ui.root)
                + inspect.small_targets(self.ui.root, self.min_target_px()))

    @staticmethod
    def min_target_px() -> float:
        """The design's 20 mm at this window's zoom, and never under the rule's 15 real mm
        on the panel."""
        return max(theme.mm(theme.TOUCH_MIN), theme.real_mm(theme.TOUCH_FLOOR))

    def shot(self, name: str) -> Path:
        self.ui.root.canvas.ask_update()
        self.pump(0.1)
        self.shots.mkdir(parents=True, exist_ok=True)
        raw = Window.screenshot(name=str(self.shots / f"{name}.png"))
        path = self.shots / f"{name}.png"
        Path(raw).replace(path)
        gallery = GALLERY / f"{Window.width}x{Window.height}"  # one folder per panel size
        gallery.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, gallery / f"{self.prefix}{name}.png")
        self.saved.append(path)
        return path

    def both_languages(self, name: str) -> None:
        """Check and photograph the current screen in Russian and in English, via the
        header's language button (so the switch is proven on this screen too)."""
        start = self.ui.lang
        for _ in range(2):
            self.pump(0.1)
            problems = self.layout_problems()
            assert not problems, f"{name} ({self.ui.lang}): " + "; ".join(problems)
            self.shot(f"{name}-{self.ui.lang}")
            self.tap("lang")
        assert self.ui.lang == start
        self.pump(0.05)
