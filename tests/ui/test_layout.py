"""Every screen at every panel size terminals have in the field, in both languages.

One UI per size (the window resized, the DPI from ui/config.py's panel table as a terminal
without configuration would take it), driven through every screen by real touches. On
each screen and language `Driver.both_languages` walks the whole widget tree: no visible
text or touch target overlaps another, nothing leaves the window (texts: nor the content
area), every text fits its box, every touch target is at least 15 mm on that panel; and
it photographs the screen into build/ui-screenshots/WIDTHxHEIGHT/.

The checks walk whatever widgets exist, so a widget added to a screen later is checked
here without being named. `test_layout_check_catches_*` proves the checker itself fails.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from kiosk.api_client import ApiClient
from kiosk.messages import message
from tests.ui.test_states import PHONE, FakeCore
from ui.config import PanelSize, default_panels
from ui.technician import EVENT_DEVICES

PANELS = default_panels()
PIN = "1234"


@pytest.fixture(params=PANELS, ids=[p.name for p in PANELS])
def panel(request: pytest.FixtureRequest, window: Any) -> Iterator[PanelSize]:
    from kivy.base import EventLoop
    from kivy.metrics import Metrics

    from tests.ui.conftest import DPI, HEIGHT, WIDTH

    p: PanelSize = request.param
    window.size = (p.width, p.height)
    for _ in range(5):
        EventLoop.idle()
    assert tuple(window.size) == (p.width, p.height)
    yield p
    window.size = (WIDTH, HEIGHT)
    Metrics.dpi = DPI
    for _ in range(5):
        EventLoop.idle()


def _ui(make_ui: Any, term: Any, p: PanelSize, **kw: Any) -> Any:
    """A UI on this panel; the DPI comes from the table (dpi=None), as in the field."""
    d = make_ui(term, dpi=None, width=p.width, height=p.height, **kw)
    d.prefix = ""  # build/ui-screenshots/WxH/NN-screen-lang.png
    from kivy.metrics import Metrics

    assert abs(Metrics.dpi - p.dpi) < 0.01, (Metrics.dpi, p.dpi)
    return d


@pytest.mark.slow  # about 30-60 s per size on a loaded 2-core machine
def test_every_screen_fits(panel: PanelSize, terminal_factory: Any, make_ui: Any) -> None:
    term = terminal_factory()
    d = _ui(make_ui, term, panel)
    d.on("idle", timeout=20)
    d.both_languages("01-idle")
    # check my payment: typed, then not found
    d.tap("idle.check")
    d.on("check")
    d.type_check_pair("12", "000000")  # a number nobody paid, any code: "not found"
    d.tap("check.go")
    d.wait_text("check.status", lambda t: t != "")
    d.both_languages("02-check-not-found")
    d.tap("check.back")
    d.on("idle")
    # a whole payment
    d.tap("idle.start")
    d.on("provider")
    d.until(lambda: d.visible("provider.slot0"), 10, "the catalogue")
    d.both_languages("03-provider")
    d.tap("provider.search")
    d.type_keys("kb", "МЕГ")
    d.both_languages("04-search")
    d.tap("provider.hit0")
    d.on("account")
    d.type_keys("account.key", "9161234567")
    d.both_languages("05-account")
    d.tap("account.next")
    d.on("confirm")
    d.both_languages("06-confirm")
    d.tap("confirm.yes")
    d.on("cash")
    d.both_languages("07-cash-empty")
    term.insert(1000)
    d.wait_text("cash.inserted", lambda t: t.startswith("1 000,00"))
    d.both_languages("08-cash")
    d.tap("cash.pay")
    d.on("receipt")
    d.wait_text("receipt.state", lambda t: t.startswith("Заберите чек"), timeout=30)
    d.both_languages("09-receipt")
    code = re.search(r"\d{6}", d.text("receipt.check_code"))
    assert code, d.text("receipt.check_code")
    d.tap("receipt.done")
    d.on("idle")
    # check my payment: found
    d.tap("idle.check")
    d.on("check")
    d.type_check_pair("1", code.group())
    d.tap("check.go")
    d.wait_text("check.status", lambda t: "T0001-00000001" in t)
    d.both_languages("10-check-found")
    d.tap("check.back")
    d.on("idle")
    # technician mode: every page
    for _ in range(5):
        d.tap("tech.corner")
    d.on("tech_pin")
    d.type_keys("tech.key", PIN)
    d.both_languages("11-tech-pin")
    d.tap("tech.login")
    d.on("tech")
    d.wait_text("tech.st.cassette", lambda t: "купюр: 1" in t)
    d.both_languages("12-tech-status")
    d.tap("tech.tab.counters")
    d.wait_text("tech.cnt.total", lambda t: "купюр: 1" in t)
    d.tap("tech.encash")
    d.both_languages("13-tech-encash")
    d.tap("tech.tab.events")
    # device events by default; the technician's own (the login) one filter further on,
    # so the list is drawn with lines in it
    d.wait_text("tech.ev.device", lambda t: t != "")
    for _ in range(len(EVENT_DEVICES)):
        if "technician_login" in d.text("tech.events"):
            break
        d.tap("tech.ev.device")
        d.wait_text("tech.events", lambda t: t != "")
    d.wait_text("tech.events", lambda t: "technician_login" in t)
    d.both_languages("14-tech-events")
    d.tap("tech.tab.actions")
    d.until(lambda: d.visible("tech.service") and not d.find("tech.service").disabled)
    d.tap("tech.service")
    d.wait_text("tech.service_state", lambda t: t == "Терминал выведен из работы")
    d.both_languages("15-tech-actions")
    d.tap("tech.exit")
    d.on("out_of_service")
    d.both_languages("16-out-of-service")
    assert term.rows("SELECT inserted_minor FROM payments") == [(100000,)]


@pytest.mark.slow  # about 15-30 s per size
def test_unusual_states_fit(panel: PanelSize, terminal_factory: Any, make_ui: Any,
                            tmp_path: Any) -> None:
    """The screens a stand-in core can show on demand: no core, starting, a notice and
    help texts on idle, help, the continue? prompt over cash with a notice, the printer
    warning — the longest texts the core sends."""
    term = terminal_factory()
    with ApiClient(term.core.socket) as c:
        idle = c.connect(subscribe=False)["snapshot"]
    term.core.stop()
    sock = tmp_path / "fake.sock"
    d = _ui(make_ui, None, panel, socket=sock, fallback_phone=PHONE, terminal_id="T0001")
    d.on("out_of_service")
    d.both_languages("s1-offline")
    starting = {**json.loads(json.dumps(idle)), "screen": "starting",
                "out_of_service": {"reasons": ["starting"], **message("oos_starting")}}
    fake = FakeCore(sock, starting)
    try:
        d.until(lambda: d.ui.connected and d.visible("oos.title"), 10, "the starting screen")
        d.both_languages("s2-starting")
        notice = message("unclaimed_credit", amount="14 500.00 руб.",
                         record_id="T0001-U00000001", phone=PHONE)
        helped = {**json.loads(json.dumps(idle)), "seq": idle["seq"] + 1, "notice": notice,
                  "help_texts": {
                      "how_to_pay": {"ru": "Вставляйте купюры по одной, лицевой стороной "
                                           "вверх. " * 6,
                                     "en": "Insert bills one at a time, face up. " * 6},
                      "no_change": {"ru": "Терминал не выдаёт сдачу: вся сумма без "
                                          "комиссии зачисляется на счёт.",
                                    "en": "The terminal gives no change: the whole amount "
                                          "less the commission is credited."}}}
        fake.push(helped)
        d.until(lambda: d.visible("idle.help") and d.visible("idle.notice"), 5, "help, notice")
        d.both_languages("s3-idle-notice-help")
        d.tap("idle.help")
        d.on("help")
        d.both_languages("s4-help")
        d.tap("help.back")
        d.on("idle")
        provider = {"id": "megafon", "name_ru": "МегаФон", "name_en": "MegaFon",
                    "account_mask": "+7 (***) ***-**-**", "min_minor": 1000,
                    "max_minor": 1500000, "currency": "RUB"}
        session = {"provider": provider, "account": "9161234567",
                   "account_display": "+7 (916) 123-45-67", "inserted_minor": 1450000,
                   "commission_minor": 43500, "credited_minor": 1406500, "can_pay": True,
                   "can_cancel": False, "bill_in_escrow": True}
        cash = {**helped, "seq": idle["seq"] + 2, "screen": "cash", "session": session,
                "notice": message("bill_over_max", max="15 000.00 руб."),
                "prompt": {"kind": "continue", "remaining_s": 25,  # the longest prompt
                           **message("continue_prompt_unclaimed", phone=PHONE)}}
        fake.push(cash)
        d.until(lambda: d.visible("prompt.continue"), 5, "the prompt")
        d.both_languages("s5-prompt-over-cash")
        fake.push({**cash, "seq": idle["seq"] + 3, "prompt": None})
        d.until(lambda: not d.visible("prompt.continue"), 5, "the prompt to go")
        d.both_languages("s6-cash-notice")
        fake.push({**cash, "seq": idle["seq"] + 4, "screen": "confirm", "prompt": None,
                   "notice": None, "printer_warning": message("printer_warning")})
        d.on("confirm")
        d.until(lambda: d.visible("confirm.printer_warning"), 5, "the printer warning")
        d.both_languages("s7-printer-warning")
    finally:
        fake.close()


# -- the checker itself fails on what it must find ------------------------------------------

def test_layout_check_catches_overlap_outside_and_small(make_ui: Any) -> None:
    from ui import theme
    from ui.widgets import Btn, Text

    d = make_ui(None)  # no core: the out-of-service screen
    d.on("out_of_service")
    assert d.layout_problems() == []
    screen = d.ui.screens["out_of_service"]
    phone = d.find("oos.phone")
    # a button dropped over the phone, as a screen edit that forgot the layout would
    intruder = Btn(text="X", ident="intruder", size_hint=(None, None),
                   size=(theme.mm(40), theme.mm(30)), pos=screen.to_widget(*phone.to_window(
                       *phone.pos)))
    screen.add_widget(intruder)
    d.pump(0.1)
    problems = "; ".join(d.layout_problems())
    assert "'intruder'" in problems and "'oos.phone'" in problems and "overlap" in problems
    screen.remove_widget(intruder)
    # a button out of the window and a target under 15 mm on this panel
    far = Btn(text="far", ident="far", size_hint=(None, None), size=(theme.mm(40),
              theme.mm(30)), pos=(d.ui.root.width - theme.mm(10), theme.mm(40)))
    tiny = Btn(text="t", ident="tiny", size_hint=(None, None),
               size=(theme.real_mm(14), theme.real_mm(30)), pos=(theme.mm(5), theme.mm(40)))
    long = Text(text="W" * 80, ident="long", size_hint=(None, None), min_scale=1,
                size=(theme.mm(30), theme.mm(12)), pos=(theme.mm(5), theme.mm(80)))
    for w in (far, tiny, long):
        d.ui.root.add_widget(w)
    d.pump(0.1)
    problems = "; ".join(d.layout_problems())
    assert "'far'" in problems and "leaves the window" in problems
    assert "'tiny'" in problems and "<" in problems
    assert "'long': text" in problems
    for w in (far, tiny, long):
        d.ui.root.remove_widget(w)
    d.pump(0.1)
    assert d.layout_problems() == []


def test_layout_check_ignores_what_a_prompt_covers(make_ui: Any) -> None:
    """Under the continue? prompt's backdrop the screen is out of play, not overlapping."""
    from ui import inspect
    from ui.widgets import Backdrop, Btn

    d = make_ui(None)
    d.on("out_of_service")
    phone = d.find("oos.phone")
    screen = d.ui.screens["out_of_service"]
    over = Btn(text="X", ident="over", size_hint=(None, None), size=phone.size,
               pos=screen.to_widget(*phone.to_window(*phone.pos)))
    screen.add_widget(over)
    d.pump(0.1)
    assert inspect.overlaps(d.ui.root), "the overlap is seen without a backdrop"
    screen.remove_widget(over)
    backdrop = Backdrop(pos_hint={"x": 0, "y": 0})
    d.ui.content.add_widget(backdrop)
    screen.add_widget(over)
    d.pump(0.1)
    assert inspect.overlaps(d.ui.root) == [], "covered by the backdrop: out of play"
    screen.remove_widget(over)
    d.ui.content.remove_widget(backdrop)
