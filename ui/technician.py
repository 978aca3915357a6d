"""Technician mode: a hidden gesture, a PIN, then status, cassette, events and actions.

Everything a technician does goes through the core's `tech.*` ops with the token from
`tech.login`; the core checks the PIN, locks after five wrong ones and records every
login, failure and action as an event for the desk. The UI only keeps the token and
closes the mode (and logs out) when nobody touched the screen for `tech_idle_s`, or when
the core says the session expired.

The acceptor test reads bills and gives every one back (the core never credits them);
restart asks the core to stop cleanly so that systemd starts it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

from kivy.uix.anchorlayout import AnchorLayout
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.scrollview import ScrollView
from kivy.uix.widget import Widget

from ui import theme
from ui.i18n import STRINGS, money
from ui.link import LinkError
from ui.screens.base import BaseScreen
from ui.tech_session import Words, refusal
from ui.theme import mm
from ui.widgets import Btn, Keypad, Panel, Text, fixed, hbox, spacer, vbox

PIN_MAX = 12
EVENTS_SHOWN = 25
EVENT_DATA_CHARS = 120  # an event's data on its line; the list scrolls, lines wrap
CUSTOMER_SCREENS = ("provider", "account", "confirm", "cash", "receipt")
DEVICES = ("acceptor", "printer", "ledger", "mqtt")
EVENT_DEVICES = ("devices", "acceptor", "printer", "ledger", "mqtt", "technician", "all")
EVENT_SEVERITIES = ("all", "warning", "error")
DESK_REJECTIONS = ("desk_message_rejected", "config_rejected", "command_rejected",
                   "payment_status_rejected")
ROW_MM = 11  # a status line's height when it holds one line
class TechPinScreen(BaseScreen):
    NAME = "tech_pin"

    def build(self) -> None:
        self.pin = ""
        self.waiting = False
        self.head = self.title("tech.title", h_mm=15)
        self.prompt = fixed(Text(ident="tech.prompt", font_mm=theme.F_LARGE), h_mm=12)
        self.dots = Text(ident="tech.dots", font_mm=theme.F_BIG, bold=True)
        field = Panel(bg=theme.FIELD_BG, line=theme.FIELD_LINE, radius_mm=2,
                      size_hint=(None, None), size=(mm(120), mm(22)))
        field.add_widget(self.dots)
        frow = AnchorLayout(size_hint_y=None, height=mm(22))
        frow.add_widget(field)
        self.message = fixed(Text(ident="tech.message", font_mm=theme.F_BODY,
                                  color=theme.BAD_INK), h_mm=14)
        self.keypad = Keypad(self._key, ident="tech.key")
        pad = AnchorLayout(size_hint_y=None, height=self.keypad.height)
        pad.add_widget(self.keypad)
        self.exit = self.button("tech.exit", self.ctl.tech.leave, "secondary", w_mm=55)
        self.go = self.button("tech.login", self._login, "primary", w_mm=70)
        bottom = hbox(self.exit, spacer(), self.go, size_hint_y=None,
                      height=mm(theme.BUTTON_H))
        self.add_widget(vbox(self.head, self.prompt, frow, self.message, pad, spacer(),
                             bottom, pad_mm=6, spacing_mm=3))

    def entered(self) -> None:
        self.pin = ""
        self.waiting = False

    def _key(self, key: str) -> None:
        if key == "back":
            self.pin = self.pin[:-1]
        elif key == "clear":
            self.pin = ""
        elif len(self.pin) < PIN_MAX:
            self.pin += key
        self.update()

    def _login(self) -> None:
        if not self.pin or self.waiting:
            return
        self.waiting = True

        def done(_ok: bool) -> None:
            self.waiting = False
            self.pin = ""
            self.update()

        self.ctl.tech.login(self.pin, done)

    def update(self) -> None:
        t = self.ctl.t
        self.head.text = t("tech_title")
        self.prompt.text = t("tech_pin")
        self.dots.text = "•" * len(self.pin)
        self.message.text = self.ctl.tech.message
        self.exit.text, self.go.text = t("tech_exit"), t("tech_login")
        self.go.disabled = not self.pin or self.waiting


def _row(label: str, value: str, ident: str, detail: str = "") -> BoxLayout:
    """A status line: the label, the value in words, and under it (smaller, softer) the
    raw device code or reason the technician quotes to support."""
    head = Text(text=label, font_mm=theme.F_BODY, halign="left", bold=True, flow=True)
    name = fixed(vbox(head, spacer(), spacing_mm=0), w_mm=62)  # top-aligned
    col = BoxLayout(orientation="vertical", size_hint_y=None, pos_hint={"top": 1})
    col.add_widget(Text(text=value, ident=ident, font_mm=theme.F_BODY, halign="left",
                        flow=True))
    if detail:
        col.add_widget(Text(text=detail, ident=f"{ident}.raw", font_mm=theme.F_SMALL,
                            halign="left", flow=True, color=theme.INK_SOFT))
    col.bind(minimum_height=col.setter("height"))
    box = hbox(name, col, size_hint_y=None, height=mm(ROW_MM))

    def follow(*_: Any) -> None:
        box.height = max(mm(ROW_MM), col.height, head.height)

    col.bind(height=follow)
    head.bind(height=follow)
    follow()
    return box



def _signature(w: Widget) -> tuple[Any, ...]:
    """What a page shows and does, to tell whether a new build differs from the one on
    screen: each widget's kind, name, text, state and style, and its children's."""
    return (type(w).__name__, getattr(w, "ident", ""), getattr(w, "text", None), w.disabled,
            getattr(w, "style", None), getattr(w, "font_name", None),
            tuple(_signature(c) for c in w.children))


def _stamp(ms: int | None) -> str:
    return "" if not ms else time.strftime("%d.%m %H:%M:%S", time.localtime(ms / 1000))


def _screen_words(t: Callable[..., str], screen: str) -> str:
    if screen in CUSTOMER_SCREENS:
        return t("scr_customer", screen=screen)
    key = f"scr_{screen}"
    return t(key) if key in STRINGS else screen


def _known(t: Callable[..., str], key: str, fallback: str) -> str:
    return t(key) if key in STRINGS else fallback


def _error_words(t: Callable[..., str], code: str, detail: str) -> str:
    """A device's last error in words: the status word when the detail starts with one."""
    first = detail.split(" ", 1)[0] if detail else ""
    if code == "acceptor_fault" and f"acc_{first}" in STRINGS:
        return t(f"acc_{first}")
    if code == "printer_unavailable" and f"prn_{first}" in STRINGS:
        return t(f"prn_{first}")
    if code in DESK_REJECTIONS:
        return t("err_desk")
    return _known(t, f"err_{code}", t("err_other"))


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _event_words(t: Callable[..., str], kind: str, data: str) -> str:
    """An event kind in words (the kind itself stays beside them, for support)."""
    if f"ev_kind_{kind}" in STRINGS:
        return t(f"ev_kind_{kind}")
    if kind == "acceptor_fault" or kind == "printer_unavailable":
        status = data.partition("status=")[2].split(",", 1)[0]
        return _error_words(t, kind, status)
    if f"err_{kind}" in STRINGS or kind in DESK_REJECTIONS:
        return _error_words(t, kind, "")
    return t("ev_kind_other")


class TechScreen(BaseScreen):
    """The technician's menu: tabs on the left, one page on the right."""

    NAME = "tech"
    TABS = ("status", "counters", "events", "actions")

    def build(self) -> None:
        self.tab = "status"
        self.status: dict[str, Any] | None = None
        self.counters: dict[str, Any] | None = None
        self.events: list[dict[str, Any]] = []
        self.event_device = EVENT_DEVICES[0]
        self.event_severity = EVENT_SEVERITIES[0]
        self.encash_asked = False
        self.restart_asked = False
        self.result: Words | None = None  # the last action's outcome, on its page
        self._page_signature: tuple[Any, ...] | None = None  # what the page shows now
        self.tab_buttons: dict[str, Btn] = {}
        nav = BoxLayout(orientation="vertical", spacing=mm(theme.GAP), size_hint_x=None,
                        width=mm(62))
        for tab in self.TABS:
            b = fixed(Btn(ident=f"tech.tab.{tab}", style="tab",
                          action=partial(self.show_tab, tab)), h_mm=theme.BUTTON_H)
            self.tab_buttons[tab] = b
            nav.add_widget(b)
        nav.add_widget(spacer())
        self.exit = fixed(Btn(ident="tech.exit", style="danger", action=self.ctl.tech.leave),
                          h_mm=theme.BUTTON_H)
        nav.add_widget(self.exit)
        self.page = BoxLayout(orientation="vertical", spacing=mm(2))
        self.head = self.title("tech.page_title", h_mm=13, font_mm=theme.F_LARGE,
                               halign="left")
        self.add_widget(hbox(nav, vbox(self.head, self.page, spacing_mm=3),
                             pad_mm=5, spacing_mm=6))

    def entered(self) -> None:
        self.status = self.counters = None
        self.events = []
        self.event_device = EVENT_DEVICES[0]
        self.event_severity = EVENT_SEVERITIES[0]
        self.show_tab("status")

    # -- tabs --------------------------------------------------------------------------
    def show_tab(self, tab: str) -> None:
        self.tab = tab
        self.encash_asked = False
        self.restart_asked = False
        self.result = None
        self.refresh()
        self.update()

    def refresh(self) -> None:
        tech = self.ctl.tech
        if self.tab == "status" or self.tab == "actions":
            tech.call("status", self._got("status"))
        elif self.tab == "counters":
            tech.call("tech.counters", self._got("counters"))
        elif self.tab == "events":
            tech.call("tech.events", self._got("events"), limit=EVENTS_SHOWN,
                      device=self.event_device, severity=self.event_severity)

    def _got(self, what: str) -> Callable[[Any, LinkError | None], None]:
        def done(result: Any, error: LinkError | None) -> None:
            if error is None:
                setattr(self, what, result)
            else:
                self.result = refusal(self.ctl.t, error)
            self.update()

        return done

    def _failed(self, error: LinkError) -> None:
        self.result = refusal(self.ctl.t, error)

    # -- actions -----------------------------------------------------------------------
    def _encash_ask(self) -> None:
        self.encash_asked = True
        self.result = None
        self.update()

    def _encash(self) -> None:
        self.encash_asked = False

        def done(result: Any, error: LinkError | None) -> None:
            if error is not None:
                self._failed(error)
            else:
                def words() -> str:
                    t = self.ctl.t
                    return t("encash_done", id=result["id"], count=result["bill_count"],
                             total=money(result["total_minor"], result["currency"],
                                         self.ctl.lang),
                             printed=t("printed_yes" if result.get("printed") else "printed_no"))

                self.result = words
            self.ctl.tech.call("tech.counters", self._got("counters"))
            self.update()

        self.ctl.tech.call("tech.encash", done)
        self.update()

    def _test_print(self) -> None:
        def done(result: Any, error: LinkError | None) -> None:
            t = self.ctl.t
            if error is not None:
                self._failed(error)
            else:
                key = "test_print_yes" if result.get("printed") else "test_print_no"
                self.result = lambda: t(key)
            self.update()

        self.ctl.tech.call("tech.test_print", done)

    def _service(self, on: bool) -> None:
        def done(_result: Any, error: LinkError | None) -> None:
            if error is not None:
                self._failed(error)
            self.ctl.tech.call("status", self._got("status"))

        self.ctl.tech.call("tech.service", done, on=on)

    def _acceptor_test(self, on: bool) -> None:
        def done(_result: Any, error: LinkError | None) -> None:
            if error is not None:
                self._failed(error)
            self.ctl.tech.call("status", self._got("status"))

        self.ctl.tech.call("tech.acceptor_test", done, on=on)

    def _restart_ask(self, ask: bool) -> None:
        self.restart_asked = ask
        self.result = None
        self.update()

    def _restart(self) -> None:
        self.restart_asked = False

        def done(_result: Any, error: LinkError | None) -> None:
            t = self.ctl.t
            if error is not None:
                self._failed(error)
            else:
                self.result = lambda: t("restarting")
            self.update()

        self.ctl.tech.call("tech.restart", done)
        self.update()

    def _cycle_events(self, what: str) -> None:
        if what == "device":
            i = EVENT_DEVICES.index(self.event_device)
            self.event_device = EVENT_DEVICES[(i + 1) % len(EVENT_DEVICES)]
        else:
            i = EVENT_SEVERITIES.index(self.event_severity)
            self.event_severity = EVENT_SEVERITIES[(i + 1) % len(EVENT_SEVERITIES)]
        self.refresh()
        self.update()

    # -- view --------------------------------------------------------------------------
    def update(self) -> None:
        t = self.ctl.t
        for tab, btn in self.tab_buttons.items():
            btn.text = t(f"tab_{tab}")
            btn.style = "tab_on" if tab == self.tab else "tab"
        self.exit.text = t("tech_exit")
        self.head.text = f"{t('tech_title')} · {self.ctl.terminal_id} · {t(f'tab_{self.tab}')}"
        # The page is built aside and put in only if it shows something else: every
        # status reply and snapshot comes here, and a page replaced under a finger loses
        # the tap (its new buttons are not laid out yet when the touch arrives).
        shown_page, self.page = self.page, BoxLayout(orientation="vertical", spacing=mm(2))
        try:
            getattr(self, f"_page_{self.tab}")()
        finally:
            fresh, self.page = self.page, shown_page
        signature = tuple(_signature(w) for w in fresh.children)
        if signature == self._page_signature:
            return
        self._page_signature = signature
        self.page.clear_widgets()
        for w in reversed(fresh.children):  # children are kept last-added first
            fresh.remove_widget(w)
            self.page.add_widget(w)

    def _result_line(self) -> Text:
        return Text(ident="tech.result", text=self.result() if self.result else "",
                    font_mm=theme.F_BODY, flow=True, halign="left", bold=True,
                    color=theme.PRIMARY)

    def _refresh_button(self) -> BoxLayout:
        b = fixed(Btn(ident="tech.refresh", text=self.ctl.t("refresh"), style="secondary",
                      action=self.refresh), w_mm=55, h_mm=theme.BUTTON_H)
        return hbox(spacer(), b, size_hint_y=None, height=mm(theme.BUTTON_H))

    def _status_rows(self, s: dict[str, Any]) -> list[BoxLayout]:
        t, lang = self.ctl.t, self.ctl.lang
        oos: dict[str, str] = s.get("out_of_service") or {}
        acc = s.get("acceptor") or {}
        info = acc.get("info") or {}
        queue = s.get("queue") or {}
        oldest = queue.get("oldest_unsent_ms")
        acc_status = str(acc.get("status", ""))
        acc_raw = " · ".join(x for x in (
            f"{acc_status} {acc.get('detail', '')}".strip(),
            f"{info.get('protocol', '')} {info.get('model', '')}".strip()) if x)
        printer = str((s.get("printer") or {}).get("status", ""))
        service = (t("st_yes") if not oos else t("st_no") + ": " + "; ".join(
            _known(t, f"oos_{code}", code) for code in sorted(oos)))
        rows = [
            _row(t("st_screen"), _screen_words(t, str(s.get("screen", ""))), "tech.st.screen"),
            _row(t("st_service"), service, "tech.st.service",
                 "; ".join(oos[c] for c in sorted(oos))),
            _row(t("st_acceptor"), _known(t, f"acc_{acc_status}", acc_status),
                 "tech.st.acceptor", t("raw", raw=acc_raw) if acc_raw else ""),
            _row(t("st_printer"), _known(t, f"prn_{printer}", printer), "tech.st.printer",
                 t("raw", raw=printer) if printer else ""),
            _row(t("st_cassette"), t("st_bills", count=s.get("bill_count", 0),
                                     total=money(int(s.get("total_minor") or 0), "RUB", lang)),
                 "tech.st.cassette"),
            _row(t("st_queue"), t("st_queue_val", n=queue.get("payments_unsent", 0),
                                  oldest=t("st_oldest", t=_stamp(oldest)) if oldest else ""),
                 "tech.st.queue"),
            self._network_row(s.get("sync") or {}),
            *_broker_row(t, lang, (s.get("sync") or {}).get("link")),
            _row(t("st_link"), t("st_link_ok") if self.ctl.connected else t("st_no"),
                 "tech.st.link"),
            _row(t("st_phone"), str(s.get("support_phone", "")), "tech.st.phone"),
            fixed(Text(text=t("st_errors"), font_mm=theme.F_BODY, bold=True, halign="left",
                       ident="tech.st.errors"), h_mm=ROW_MM),
        ]
        errors = s.get("last_errors") or {}
        for device in DEVICES:
            err = errors.get(device)
            if not err:
                rows.append(_row(t(f"st_err_{device}"), t("st_err_none"),
                                 f"tech.st.err.{device}"))
                continue
            code, detail = str(err.get("code", "")), str(err.get("detail", ""))
            rows.append(_row(
                t(f"st_err_{device}"),
                t("err_at", t=_stamp(err.get("at_ms")), what=_error_words(t, code, detail)),
                f"tech.st.err.{device}", t("raw", raw=f"{code} {detail}".strip())))
        return rows

    def _network_row(self, sync: dict[str, Any]) -> BoxLayout:
        t = self.ctl.t
        if not sync.get("enabled"):
            return _row(t("st_network"), t("net_off"), "tech.st.network")
        since = _stamp(sync.get("since_ms"))
        if sync.get("connected"):
            state = t("net_up", t=since)
        else:
            state = t("net_down", t=since) if since else t("net_down_never")
        delivered = sync.get("last_delivery_ms")
        value = state + "; " + (t("net_delivery", t=_stamp(delivered)) if delivered
                                else t("net_no_delivery"))
        heard = sync.get("desk_heard_ms")  # the desk's beat: its workers are up
        if heard:
            value += "; " + t("net_desk_heard", t=_stamp(heard))
        raw = "" if sync.get("connected") else str(sync.get("last_error") or "")
        return _row(t("st_network"), value, "tech.st.network", t("raw", raw=raw) if raw else "")

    def _page_status(self) -> None:
        t = self.ctl.t
        s = self.status
        if s is None:
            self.page.add_widget(Text(text=t("loading"), font_mm=theme.F_BODY))
            return
        body = BoxLayout(orientation="vertical", size_hint_y=None, spacing=mm(1))
        body.bind(minimum_height=body.setter("height"))
        for row in self._status_rows(s):
            body.add_widget(row)
        scroll = ScrollView(do_scroll_x=False, bar_width=mm(4), scroll_type=["bars", "content"])
        scroll.add_widget(body)
        self.page.add_widget(scroll)
        self.page.add_widget(self._result_line())
        self.page.add_widget(self._refresh_button())
    def _page_counters(self) -> None:
        t, lang = self.ctl.t, self.ctl.lang
        c = self.counters
        self.page.add_widget(fixed(Text(text=t("cnt_title"), font_mm=theme.F_BODY, bold=True,
                                        halign="left"), h_mm=10))
        if c is None:
            self.page.add_widget(Text(text=t("loading"), font_mm=theme.F_BODY))
            return
        cassette = c.get("cassette") or []
        lines = [t("cnt_row", amount=money(r["amount_minor"], r["currency"], lang),
                   count=r["count"], sum=money(r["amount_minor"] * r["count"], r["currency"],
                                               lang))
                 for r in cassette] or [t("cnt_empty")]
        self.page.add_widget(Text(ident="tech.cnt.rows", text="\n".join(lines),
                                  font_mm=theme.F_BODY, flow=True, halign="left"))
        total = money(int(c.get("total_minor", 0)), "RUB", lang)
        self.page.add_widget(Text(ident="tech.cnt.total", font_mm=theme.F_LARGE, bold=True,
                                  flow=True, halign="left",
                                  text=t("cnt_total", count=c.get("bill_count", 0),
                                         total=total)))
        if self.encash_asked:
            box = Panel(orientation="vertical", bg=theme.WARN_BG, radius_mm=3, padding=mm(3),
                        spacing=mm(3), size_hint_y=None, height=mm(50))
            box.add_widget(Text(ident="tech.encash_confirm", font_mm=theme.F_BODY, flow=True,
                                text=t("encash_confirm", count=c.get("bill_count", 0),
                                       total=total)))
            no = fixed(Btn(ident="tech.encash_no", text=t("cancel"), style="secondary",
                           action=lambda: self.show_tab("counters")), w_mm=50)
            yes = fixed(Btn(ident="tech.encash_yes", text=t("encash_yes"), style="danger",
                            action=self._encash), w_mm=85)
            box.add_widget(hbox(no, spacer(), yes, size_hint_y=None,
                                height=mm(theme.BUTTON_H)))
            self.page.add_widget(box)
        self.page.add_widget(self._result_line())
        self.page.add_widget(spacer())
        enc = fixed(Btn(ident="tech.encash", text=t("encash"), style="primary",
                        action=self._encash_ask), w_mm=70, h_mm=theme.BUTTON_H)
        enc.disabled = self.encash_asked
        ref = fixed(Btn(ident="tech.refresh", text=t("refresh"), style="secondary",
                        action=self.refresh), w_mm=55, h_mm=theme.BUTTON_H)
        self.page.add_widget(hbox(enc, spacer(), ref, size_hint_y=None,
                                  height=mm(theme.BUTTON_H)))

    def _page_events(self) -> None:
        t = self.ctl.t
        lines = []
        for e in self.events:
            data = ", ".join(f"{k}={v}" for k, v in (e.get("data") or {}).items())
            severity, kind = str(e.get("severity", "")), str(e.get("kind", ""))
            words = _event_words(t, kind, data)
            lines.append(f"{_stamp(e.get('at_ms'))}  {_known(t, f'sev_{severity}', severity):8} "
                         f"{words} · {kind}  {_clip(data, EVENT_DATA_CHARS)}")
        body = Text(ident="tech.events", text="\n".join(lines) or "—", font_mm=theme.F_SMALL,
                    flow=True, halign="left", font_name="RobotoMono-Regular")
        scroll = ScrollView(do_scroll_x=False, bar_width=mm(4), scroll_type=["bars", "content"])
        scroll.add_widget(body)
        self.page.add_widget(fixed(Text(text=t("events_title"), font_mm=theme.F_BODY,
                                        bold=True, halign="left"), h_mm=10))
        device = fixed(Btn(ident="tech.ev.device", style="secondary", font_mm=theme.F_BODY,
                           text=t("ev_device", what=t(f"ev_dev_{self.event_device}")),
                           action=lambda: self._cycle_events("device")), h_mm=theme.BUTTON_H)
        severity = fixed(Btn(ident="tech.ev.severity", style="secondary", font_mm=theme.F_BODY,
                             text=t("ev_severity", what=t(f"ev_sev_{self.event_severity}")),
                             action=lambda: self._cycle_events("severity")),
                         h_mm=theme.BUTTON_H)
        self.page.add_widget(hbox(device, severity, size_hint_y=None,
                                  height=mm(theme.BUTTON_H)))
        self.page.add_widget(scroll)
        self.page.add_widget(self._result_line())
        self.page.add_widget(self._refresh_button())

    def _page_actions(self) -> None:
        t = self.ctl.t
        oos = (self.status or {}).get("out_of_service") or {}
        in_service_mode = "service" in oos
        test = fixed(Btn(ident="tech.test_print", text=t("test_print"), style="primary",
                         action=self._test_print), w_mm=95, h_mm=theme.BUTTON_H)
        state = Text(ident="tech.service_state", font_mm=theme.F_BODY, halign="left",
                     text=t("service_state_on" if in_service_mode else "service_state_off"))
        toggle = fixed(Btn(ident="tech.service", style="danger" if not in_service_mode
                           else "good",
                           text=t("service_off" if in_service_mode else "service_on"),
                           action=lambda: self._service(not in_service_mode)),
                       w_mm=95, h_mm=theme.BUTTON_H)
        toggle.disabled = self.status is None
        testing = ((self.status or {}).get("acceptor_test") or {}).get("on", False)
        seen = ((self.status or {}).get("acceptor_test") or {}).get("bills_seen") or []
        acc_test = fixed(Btn(ident="tech.acceptor_test", style="danger" if testing else "secondary",
                             text=t("acceptor_test_off" if testing else "acceptor_test"),
                             action=lambda: self._acceptor_test(not testing)),
                         w_mm=95, h_mm=theme.BUTTON_H)
        restart = fixed(Btn(ident="tech.restart", text=t("restart"), style="secondary",
                            action=lambda: self._restart_ask(True)),
                        w_mm=95, h_mm=theme.BUTTON_H)
        acc_test.disabled = restart.disabled = self.status is None or self.restart_asked
        last = seen[-1] if seen else None
        note = Text(ident="tech.acceptor_test_state", font_mm=theme.F_SMALL, halign="left",
                    color=theme.INK_SOFT,
                    text=(t("acceptor_test_seen", n=len(seen),
                            last=money(last["amount_minor"], last["currency"], self.ctl.lang)
                            if last else "—")
                          if testing else ""))
        for row in (hbox(test, spacer()), hbox(toggle, state), hbox(acc_test, note),
                    hbox(restart, spacer())):
            row.size_hint_y = None
            row.height = mm(theme.BUTTON_H)
            self.page.add_widget(row)
        if self.restart_asked:  # a restart drops the terminal for a while: ask first
            box = Panel(orientation="vertical", bg=theme.WARN_BG, radius_mm=3, padding=mm(3),
                        spacing=mm(3), size_hint_y=None, height=mm(50))
            box.add_widget(Text(ident="tech.restart_confirm", font_mm=theme.F_BODY, flow=True,
                                text=t("restart_confirm")))
            no = fixed(Btn(ident="tech.restart_no", text=t("cancel"), style="secondary",
                           action=lambda: self._restart_ask(False)), w_mm=50)
            yes = fixed(Btn(ident="tech.restart_yes", text=t("restart_yes"), style="danger",
                            action=self._restart), w_mm=85)
            box.add_widget(hbox(no, spacer(), yes, size_hint_y=None,
                                height=mm(theme.BUTTON_H)))
            self.page.add_widget(box)
        self.page.add_widget(self._result_line())
        self.page.add_widget(spacer())
        self.page.add_widget(self._refresh_button())  # e.g. bills read by the acceptor test


def _broker_row(t: Any, lang: str, link: dict[str, Any] | None) -> list[BoxLayout]:
    """Which broker node, which MQTT level, and why the link is down (the agent's words
    in the screen's language); none before the agent has reported."""
    if not link:
        return []
    problem = str(link.get("text_ru" if lang == "ru" else "text_en") or "")
    value = t("net_broker", endpoint=link.get("endpoint", ""), protocol=link.get("protocol", ""),
              problem=f"; {problem}" if problem else "")
    return [_row(t("st_broker"), value, "tech.st.broker",
                 t("raw", raw=str(link.get("detail") or "")) if link.get("detail") else "")]
