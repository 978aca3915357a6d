"""The touchscreen: one controller (`KioskUi`) that turns the core's snapshots into screens.

The core decides everything (which screen, what amounts, which texts); the UI shows the
newest snapshot and sends intents. Its own state is only what the core does not keep:
the language, the digits being typed, the search text, which catalogue page is open, and
two UI-local screens (check my payment, technician mode) shown over the core's idle or
out-of-service screen.

Threads: `ui.link.CoreLink` reads snapshots on a background thread; they reach the Kivy
main thread through Clock.schedule_once, newest first (a burst of snapshots renders once).

The header on every screen carries the support phone (from the newest snapshot; the last
one seen, or the configured number, while the core is unreachable), the language switch
and the terminal id; the hidden technician corner lies over one of its corner cells.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from kivy.app import App
from kivy.clock import Clock, ClockEvent
from kivy.core.window import Window
from kivy.graphics import Color, Rectangle
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.floatlayout import FloatLayout
from kivy.uix.screenmanager import NoTransition, ScreenManager

from ui import inspect, theme
from ui.config import MM_PER_INCH, UiConfig, panel_dpi
from ui.help_detector import StuckDetector, Thresholds
from ui.help_overlay import HelpOverlay
from ui.i18n import core_message, keep_together, tr
from ui.link import CoreLink, LinkError
from ui.screens.base import BaseScreen
from ui.screens.idle import IdleScreen
from ui.screens.out_of_service import OutOfServiceScreen
from ui.tech_session import TechSession
from ui.theme import mm
from ui.widgets import Backdrop, Btn, CornerZone, Panel, Text, fixed, hbox, spacer, vbox

log = logging.getLogger("kiosk.ui")

GESTURE_SCREENS = ("idle", "out_of_service")
TECH = ("tech_pin", "tech")
CUSTOMER_SCREENS = ("provider", "account", "confirm", "cash")  # where help may pop up
IDLE_LOCAL = ("check", "help")  # UI-local screens over the core's idle screen
PROMPT_H = 150  # mm: the longest prompt (too little cash, the phone) in Russian at 800×600
TRIM_AFTER_S = 0.25  # freed memory goes back to the system this long after a switch
Reply = Callable[[Any, LinkError | None], None]


def _load_libc() -> Any:
    """glibc, for malloc_trim; None elsewhere (then freed memory simply stays reusable)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _load_libc()


def _screen(module: str, cls: str, ctl: KioskUi) -> BaseScreen:
    """A screen built on entry; its module is imported then too (a customer screen's
    module costs start-up time only when somebody reaches it)."""
    made = getattr(importlib.import_module(module), cls)(ctl)
    assert isinstance(made, BaseScreen)
    return made


class Root(FloatLayout):
    """The window's one child; every touch on it counts as activity."""

    def __init__(self, on_touch: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._on_touch = on_touch

    def on_touch_down(self, touch: Any) -> bool:
        self._on_touch()
        return bool(super().on_touch_down(touch))


class Header(Panel):
    def __init__(self, ctl: KioskUi) -> None:
        super().__init__(orientation="horizontal", bg=theme.HEADER_BG, size_hint_y=None,
                         height=mm(theme.HEADER_H), padding=(0, mm(1.5)), spacing=mm(2))
        self.clock = fixed(Text(ident="header.clock", font_mm=theme.F_BODY,
                                color=theme.HEADER_INK), w_mm=theme.CORNER)
        self.support = fixed(Text(ident="header.support", font_mm=theme.F_SMALL,
                                  color=theme.HEADER_INK), h_mm=7)
        self.phone = Text(ident="header.phone", font_mm=theme.F_TITLE, bold=True,
                          color=theme.PHONE_INK)
        self.lang = fixed(Btn(ident="lang", style="header", font_mm=theme.F_BODY,
                              action=ctl.toggle_lang), w_mm=40)
        self.terminal = fixed(Text(ident="header.terminal", font_mm=theme.F_SMALL,
                                   color=theme.HEADER_INK), w_mm=theme.CORNER)
        for w in (self.clock, vbox(self.support, self.phone, spacing_mm=0), self.lang,
                  self.terminal):
            self.add_widget(w)


class PromptOverlay(FloatLayout):
    """The core's "continue?" prompt over the content (the header stays readable)."""

    def __init__(self, ctl: KioskUi) -> None:
        super().__init__(pos_hint={"x": 0, "y": 0})
        self.ctl = ctl
        self.deadline = 0.0
        self.add_widget(Backdrop(pos_hint={"x": 0, "y": 0}))
        self.text = Text(ident="prompt.text", font_mm=theme.F_TITLE, bold=True, flow=True)
        self.left = fixed(Text(ident="prompt.left", font_mm=theme.F_LARGE), h_mm=12)
        self.go = fixed(Btn(ident="prompt.continue", style="good", font_mm=theme.F_TITLE,
                            action=lambda: ctl.intent("continue")), w_mm=110, h_mm=28)
        box = Panel(orientation="vertical", bg=theme.BG, line=theme.FIELD_LINE, radius_mm=4,
                    padding=mm(8), spacing=mm(4), size_hint=(None, None),
                    size=(mm(220), mm(PROMPT_H)), pos_hint={"center_x": 0.5, "center_y": 0.5})
        box.add_widget(self.text)
        box.add_widget(self.left)
        box.add_widget(hbox(spacer(), self.go, spacer(), size_hint_y=None, height=mm(28)))
        self.add_widget(box)
        self._tick: ClockEvent | None = None  # the countdown runs only while shown

    def close(self) -> None:
        """Hidden: the countdown stops (no timer left behind between prompts)."""
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None

    def set_prompt(self, prompt: dict[str, Any]) -> None:
        self.deadline = time.monotonic() + float(prompt.get("remaining_s", 0))
        if self._tick is None:
            self._tick = Clock.schedule_interval(lambda _dt: self.tick(), 0.5)
        self.tick()

    def tick(self) -> None:
        prompt = (self.ctl.snap or {}).get("prompt")
        if not prompt:
            return
        self.text.text = self.ctl.core_text(prompt)
        left = max(0, round(self.deadline - time.monotonic()))
        self.left.text = self.ctl.t("prompt_left", s=left)
        self.go.text = self.ctl.t("continue")


class KioskUi:
    """The controller: snapshots in, screens and intents out."""

    def __init__(self, cfg: UiConfig, out: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg
        self.out = out  # where READY/SHOWN lines go (cfg.report)
        self.lang = cfg.lang
        self.snap: dict[str, Any] | None = None
        self.connected = False
        # False until the first snapshot or the first failed attempt: until then the
        # screen says "Loading…", not "out of service" (the core may be fine).
        self.link_failed = False
        self.catalog: dict[str, Any] | None = None
        self.local: str | None = None  # "check", "help", "tech_pin", "tech" or None
        self._terminal_id = cfg.terminal_id
        self._last_phone: str | None = None
        self._core_screen = ""
        self._last_activity = time.monotonic()
        self._lock = threading.Lock()
        self._pending: dict[str, Any] | None = None
        self._received = 0.0
        self._timing = (0.0, 0.0)  # (link thread got it, main thread applied it)
        self._scheduled = False
        self._closed = False
        self._report_due = False
        self._first_frame = True
        self._trim: Any = None  # the pending malloc_trim after a dropped screen
        self.tech = TechSession(self)
        # proactive help (docs/self-service.md): the articles, the detector, the overlay
        self.help_center: dict[str, Any] | None = None
        self._help_version: Any = ()
        self.detector = StuckDetector()
        self.help_overlay: HelpOverlay | None = None
        self._build()
        self.link = CoreLink(cfg.socket, self._hello_bg, self._snapshot_bg, self._lost_bg,
                             retry_s=cfg.retry_s)
        self._timers = [Clock.schedule_interval(lambda _dt: self._housekeeping(), 1.0)]

    # -- building ----------------------------------------------------------------------
    def _build(self) -> None:
        # The real window (fullscreen: the panel's own resolution) decides the DPI and the
        # zoom, before the first size in millimetres is turned into pixels.
        w, h = Window.size
        dpi = panel_dpi(w, h, self.cfg.dpi, self.cfg.diagonal_in)
        zoom = theme.fit_window(w, h, dpi)
        log.info("window %dx%d at %.1f DPI: %.0f×%.0f mm, layout scale %.2f", w, h, dpi,
                 w * MM_PER_INCH / dpi, h * MM_PER_INCH / dpi, zoom)
        if theme.too_small(w, h, dpi):
            log.warning("window %dx%d at %.1f DPI is smaller than %.0f×%.0f mm: screens will "
                        "not fit with 15 mm touch targets (check --dpi / --diagonal)", w, h,
                        dpi, theme.DESIGN_W * theme.MIN_SCALE, theme.DESIGN_H * theme.MIN_SCALE)
        self.root = Root(self._touched)
        self.header = Header(self)
        # FloatLayout places only children with a pos_hint: pin both to the content area
        self.sm = ScreenManager(transition=NoTransition(), pos_hint={"x": 0, "y": 0})
        self.screens: dict[str, BaseScreen] = {}
        # Only the screens of a terminal at rest are built at start (the first frame is
        # "Loading…" on out_of_service, then idle). Every other screen is built when it is
        # entered and dropped when it is left: each resets its local state on entry anyway
        # (BaseScreen.entered), and a Kivy label renders its texture whether shown or not,
        # so a built screen costs start-up time and memory even while hidden (docs/ui.md,
        # "Memory").
        for screen in (OutOfServiceScreen(self), IdleScreen(self)):
            self.screens[screen.name] = screen
            self.sm.add_widget(screen)
        self.lazy: dict[str, Callable[[], BaseScreen]] = {
            "provider": lambda: _screen("ui.screens.provider", "ProviderScreen", self),
            "account": lambda: _screen("ui.screens.account", "AccountScreen", self),
            "confirm": lambda: _screen("ui.screens.confirm", "ConfirmScreen", self),
            "cash": lambda: _screen("ui.screens.cash", "CashScreen", self),
            "receipt": lambda: _screen("ui.screens.receipt", "ReceiptScreen", self),
            "check": lambda: _screen("ui.screens.check_payment", "CheckPaymentScreen", self),
            "help": lambda: _screen("ui.screens.help", "HelpScreen", self),
            "tech_pin": lambda: _screen("ui.technician", "TechPinScreen", self),
            "tech": lambda: _screen("ui.technician", "TechScreen", self),
        }
        self.content = FloatLayout()
        self.content.add_widget(self.sm)
        self.prompt: PromptOverlay | None = None  # built when the core first asks "continue?"
        self.footer_text = Text(ident="footer", font_mm=theme.F_SMALL, color=theme.INK_SOFT)
        footer = Panel(bg=theme.SECONDARY, size_hint_y=None, height=mm(theme.FOOTER_H))
        footer.add_widget(self.footer_text)
        page = BoxLayout(orientation="vertical")
        page.add_widget(self.header)
        page.add_widget(self.content)
        page.add_widget(footer)
        with page.canvas.before:
            Color(rgba=theme.BG)
            self._bg = Rectangle(pos=page.pos, size=page.size)
        page.bind(size=lambda w, v: setattr(self._bg, "size", v),
                  pos=lambda w, v: setattr(self._bg, "pos", v))
        self.root.add_widget(page)
        g = self.cfg.gesture
        self.corner = CornerZone(g, self.tech.enter, size_hint=(None, None),
                                 size=(mm(theme.CORNER), mm(theme.HEADER_H)),
                                 pos_hint={"top": 1, **({"x": 0} if g.corner == "top-left"
                                                        else {"right": 1})})
        self.root.add_widget(self.corner)

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        if self.out is not None:
            # Report after the buffers are swapped, not before: wrap this window's flip.
            flip = Window.flip

            def flip_and_report() -> None:
                flip()
                self._flipped()

            Window.flip = flip_and_report
        self.render()
        self.link.start()

    def stop(self) -> None:
        self._closed = True
        for ev in self._timers:
            ev.cancel()
        if self._trim is not None:
            self._trim.cancel()
        if self.prompt is not None:
            self.prompt.close()
        self.tech.close()
        self.link.stop()

    # -- what the screens use ----------------------------------------------------------
    @property
    def session(self) -> dict[str, Any] | None:
        return (self.snap or {}).get("session")

    @property
    def phone(self) -> str:
        phone = ((self.snap or {}).get("terminal") or {}).get("support_phone")
        return str(phone or self._last_phone or self.cfg.fallback_phone)

    @property
    def terminal_id(self) -> str:
        tid = ((self.snap or {}).get("terminal") or {}).get("id")
        return str(tid or self._terminal_id or "—")

    def t(self, key: str, **values: Any) -> str:
        return keep_together(tr(key, self.lang, **values), self.phone)

    def core_text(self, texts: dict[str, Any] | None) -> str:
        """The core's bilingual text in the current language (its amounts formatted by the
        UI's money formatter), the phone kept on one line."""
        return keep_together(core_message(texts, self.lang), self.phone)

    def intent(self, name: str, reply: Reply | None = None, **args: Any) -> None:
        def seen(result: Any, error: LinkError | None) -> None:
            if error is not None:  # e.g. an invalid account: a sign of a stuck customer
                self._offer_help(self.detector.observe_refusal(error.code))
            if reply is not None:
                reply(result, error)

        self.request("intent", seen, intent=name, args=args)

    # -- help (docs/self-service.md) ------------------------------------------------------
    def refresh_help_center(self) -> None:
        def got(result: Any, error: LinkError | None) -> None:
            if error is None and isinstance(result, dict):
                self.help_center = result.get("center")
                self.detector.thresholds = Thresholds.from_center(self.help_center)
                self.render()

        self.request("help_center", got)

    def help_event(self, kind: str, reply: Reply | None = None, **args: Any) -> None:
        """One help counter (or a call-back request) for the desk, through the core."""
        self.request("help_event", reply, kind=kind,
                     args={k: v for k, v in args.items() if v is not None})

    def _offer_help(self, trigger: str | None) -> None:
        if trigger is None or self.help_center is None or self.local is not None:
            return
        article = (self.help_center.get("proactive") or {}).get("articles", {}).get(trigger)
        if self.help_overlay is None:
            self.help_overlay = HelpOverlay(self)
        self.help_overlay.offer(trigger, article)
        self.help_event("help_proactive_shown", trigger=trigger, article_id=article)
        self.help_event("help_opened", via="proactive")
        self.render()

    def close_help_overlay(self) -> None:
        if self.help_overlay is not None and self.help_overlay.parent is not None:
            self.content.remove_widget(self.help_overlay)
        self.help_overlay = None
        self.render()

    def request(self, op: str, reply: Reply | None = None, **fields: Any) -> None:
        def back(result: Any, error: LinkError | None) -> None:
            if error is not None:
                log.info("%s %s refused: %s", op, fields.get("intent", ""), error)
            if reply is not None:
                self._main(lambda: reply(result, error))

        self.link.request(op, back, **fields)

    def toggle_lang(self) -> None:
        self.lang = "en" if self.lang == "ru" else "ru"
        self.render()

    def activity(self) -> None:
        self._last_activity = time.monotonic()

    def open_check(self) -> None:
        self.show_local("check")

    def show_local(self, name: str) -> None:
        self.local = name
        self.activity()
        self.render()

    def close_local(self) -> None:
        if self.local == "help":
            self.request("help_close")
        self.local = None
        self.render()

    def refresh_catalog(self) -> None:
        def got(result: Any, error: LinkError | None) -> None:
            if error is None:
                self.catalog = result
                self.render()

        self.request("catalog", got)

    # -- from the link thread ----------------------------------------------------------
    def _main(self, fn: Callable[[], None]) -> None:
        def run(_dt: float) -> None:
            if not self._closed:
                fn()

        Clock.schedule_once(run, 0)

    def _hello_bg(self, hello: dict[str, Any]) -> None:
        self._main(lambda: self._hello(hello))

    def _snapshot_bg(self, snap: dict[str, Any]) -> None:
        received = time.monotonic()
        with self._lock:
            self._pending = snap
            self._received = received
            if self._scheduled:
                return  # the newest one will be taken when the main thread gets to it
            self._scheduled = True
        self._main(self._take_snapshot)

    def _lost_bg(self, reason: str) -> None:
        self._main(self._lost)

    # -- on the main thread ------------------------------------------------------------
    def _hello(self, hello: dict[str, Any]) -> None:
        self._terminal_id = str(hello.get("terminal_id") or self._terminal_id)
        self.refresh_catalog()
        self.refresh_help_center()

    def _take_snapshot(self) -> None:
        with self._lock:
            snap, self._pending = self._pending, None
            self._scheduled = False
            self._timing = (self._received, time.monotonic())
        if snap is None:
            return
        self.connected = True
        self.snap = snap
        phone = (snap.get("terminal") or {}).get("support_phone")
        if phone:
            self._last_phone = str(phone)
        core = str(snap.get("screen", ""))
        if core == "idle" and self._core_screen not in ("idle", "") and self.local not in TECH:
            # back to the start after a session (or a fault that ended one): the next
            # customer meets the default language (a technician at work keeps theirs)
            self.lang = self.cfg.lang
        self._core_screen = core
        if snap.get("config_version") != self._help_version:
            self._help_version = snap.get("config_version")
            self.refresh_help_center()  # the desk may have sent new articles
        self.render()
        self._offer_help(self.detector.observe_snapshot(snap, time.monotonic()))

    def _lost(self) -> None:
        self.connected = False
        self.link_failed = True
        self.render()

    def _touched(self) -> None:
        self.activity()
        self.detector.observe_touch(time.monotonic())
        self.tech.touched()

    def _housekeeping(self) -> None:
        idle_for = time.monotonic() - self._last_activity
        if self.local in IDLE_LOCAL and idle_for > self.cfg.check_idle_s:
            self.close_local()
        if (self.local is None and self._core_screen == "idle" and self.lang != self.cfg.lang
                and idle_for > self.cfg.check_idle_s):
            # someone switched the language and walked away: not for the next stranger
            self.lang = self.cfg.lang
            self.render()
        self.header.clock.text = time.strftime("%H:%M")
        self._offer_help(self.detector.observe_time(time.monotonic()))

    # -- rendering ---------------------------------------------------------------------
    def target(self) -> str:
        """The screen to show: a UI-local one, or the core's."""
        if self.local in TECH:
            return self.local
        if not self.connected or self.snap is None:
            return "out_of_service"
        core = str(self.snap.get("screen", ""))
        if core in ("starting", "out_of_service") or (core not in self.screens
                                                        and core not in self.lazy):
            core = "out_of_service"
        if self.local in IDLE_LOCAL:
            if core == "idle":
                return self.local
            self.local = None  # the core moved on (out of service): follow it
        return core

    def render(self) -> None:
        if self._closed:
            return
        name = self.target()
        previous = self.sm.current
        if previous != name and previous in self.lazy and previous in self.screens:
            # Drop the screen being left before the next one is built, and free it now:
            # one built customer screen at a time is the UI's peak memory. Nothing is
            # drawn in between (this is one call on the main thread).
            self.sm.current = "idle"  # always built: somewhere to stand meanwhile
            self.sm.remove_widget(self.screens.pop(previous))
            gc.collect()
            self._trim_soon()
        if name not in self.screens:
            self.screens[name] = self.lazy[name]()
            self.sm.add_widget(self.screens[name])
        screen = self.screens[name]
        if self.sm.current != name or previous != name:
            self.sm.current = name
            if name == "provider":
                self.refresh_catalog()
            screen.entered()
        screen.update()
        self._render_chrome(name)
        self._report_due = True

    def _trim_soon(self) -> None:
        """Give the freed heap back to the system once the new screen is drawn: glibc
        keeps freed memory for reuse, so the resident size would stay at its peak."""
        if self._trim is None:
            self._trim = Clock.schedule_once(self._trim_now, TRIM_AFTER_S)

    def _trim_now(self, _dt: float) -> None:
        self._trim = None
        if _LIBC is not None:
            _LIBC.malloc_trim(0)

    def _render_chrome(self, name: str) -> None:
        h = self.header
        h.support.text = self.t("support")
        h.phone.text = self.phone
        h.lang.text = self.t("lang_switch")
        h.terminal.text = self.terminal_id
        h.clock.text = time.strftime("%H:%M")
        address = ((self.snap or {}).get("terminal") or {}).get("address", "")
        terminal = self.t("terminal", id=self.terminal_id)
        self.footer_text.text = f"{terminal} · {address}" if address else terminal
        self.corner.enabled = name in GESTURE_SCREENS and self.connected
        self._render_help_overlay(name)
        prompt = (self.snap or {}).get("prompt") if self.connected else None
        showing = self.prompt is not None and self.prompt.parent is not None
        if prompt and name not in TECH:
            if self.prompt is None:
                self.prompt = PromptOverlay(self)
            if not showing:
                self.content.add_widget(self.prompt)
            self.prompt.set_prompt(prompt)
        elif showing and self.prompt is not None:
            self.content.remove_widget(self.prompt)
            self.prompt.close()

    def _render_help_overlay(self, name: str) -> None:
        """Over the customer screens only, under the core's prompt; gone with the session."""
        overlay = self.help_overlay
        if overlay is None:
            return
        if name not in CUSTOMER_SCREENS:
            self.help_overlay = None
            if overlay.parent is not None:
                self.content.remove_widget(overlay)
            return
        if overlay.parent is None:
            prompt_up = self.prompt is not None and self.prompt.parent is not None
            self.content.add_widget(overlay, index=1 if prompt_up else 0)
        overlay.update()

    # -- reporting (tests, bench) ------------------------------------------------------
    def _flipped(self) -> None:
        """A frame is on screen: say so (first frame, and what a changed frame shows)."""
        if self.out is None or self._closed:
            return
        now = time.monotonic()
        if self._first_frame:
            self._first_frame = False
            self.out(f"READY first_frame t={now:.6f} pid={os.getpid()}")
        if self._report_due and self.out is not None:
            self._report_due = False
            labels = inspect.texts(self.root)
            self.out("SHOWN " + json.dumps({
                "t": now, "seq": (self.snap or {}).get("seq"), "screen": self.sm.current,
                "received": self._timing[0], "applied": self._timing[1],
                "connected": self.connected, "labels": labels}, ensure_ascii=False))


class KioskApp(App):
    """The Kivy App wrapper for the real process (tests drive KioskUi directly)."""

    title = "kiosk"

    def __init__(self, cfg: UiConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cfg = cfg
        self.ui: KioskUi | None = None

    def build(self) -> FloatLayout:
        out = None
        if self.cfg.report:
            def out(line: str) -> None:
                try:
                    sys.stdout.write(line + "\n")
                    sys.stdout.flush()
                except OSError:  # nobody reads any more: the screen matters, not the report
                    if self.ui is not None:
                        self.ui.out = None
        self.ui = KioskUi(self.cfg, out)
        return self.ui.root

    def on_start(self) -> None:
        assert self.ui is not None
        # What exists now (Kivy, the fonts, the screens kept for good) lives as long as
        # the process: keep it out of every later collection, so freeing a dropped screen
        # scans only what came after (a few ms, not the whole heap).
        gc.freeze()
        self.ui.start()

    def on_stop(self) -> None:
        if self.ui is not None:
            self.ui.stop()
