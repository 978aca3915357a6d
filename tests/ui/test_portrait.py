"""The same UI on a portrait panel (1080×1920 at 102 DPI, a 21.5" kiosk): every screen
still fits, no text clips, no target under 20 mm — sizes are physical, layouts adapt."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture
def portrait(window) -> Iterator[None]:
    from kivy.base import EventLoop
    from kivy.metrics import Metrics

    from tests.ui.conftest import DPI, HEIGHT, WIDTH

    window.size = (1080, 1920)
    Metrics.dpi = 102
    for _ in range(5):
        EventLoop.idle()
    assert tuple(window.size) == (1080, 1920)
    yield
    window.size = (WIDTH, HEIGHT)
    Metrics.dpi = DPI
    for _ in range(5):
        EventLoop.idle()


@pytest.mark.slow  # 9-20 s on a loaded 2-core machine: not in make test-fast
def test_portrait_screens(portrait, terminal_factory, make_ui):
    term = terminal_factory()
    d = make_ui(term, dpi=102, width=1080, height=1920)
    d.on("idle", timeout=20)
    d.both_languages("01-idle")
    d.tap("idle.start")
    d.on("provider")
    d.both_languages("02-provider")
    d.tap("provider.search")
    d.type_keys("kb", "МЕГ")
    d.both_languages("03-search")
    d.tap("provider.hit0")
    d.on("account")
    d.type_keys("account.key", "9161234567")
    d.both_languages("04-account")
    d.tap("account.next")
    d.on("confirm")
    d.both_languages("05-confirm")
    d.tap("confirm.yes")
    d.on("cash")
    term.insert(1000)
    d.wait_text("cash.inserted", lambda t: t.startswith("1 000,00"))
    d.both_languages("06-cash")
    d.tap("cash.pay")
    d.on("receipt")
    d.wait_text("receipt.state", lambda t: t.startswith("Заберите чек"), timeout=20)
    d.both_languages("07-receipt")
    d.tap("receipt.done")
    d.on("idle")
    for _ in range(5):
        d.tap("tech.corner")
    d.on("tech_pin")
    d.both_languages("08-tech-pin")
    d.type_keys("tech.key", "1234")
    d.tap("tech.login")
    d.on("tech")
    d.wait_text("tech.st.cassette", lambda t: "купюр: 1" in t)
    d.both_languages("09-tech-status")
    d.tap("tech.tab.counters")
    d.wait_text("tech.cnt.total", lambda t: "купюр: 1" in t)
    d.tap("tech.encash")
    d.both_languages("10-tech-encash")
    d.tap("tech.exit")
    d.on("idle")
    assert term.rows("SELECT inserted_minor FROM payments") == [(100000,)]
