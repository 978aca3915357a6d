"""The technician's status page in words, by touch, against a real core that talks MQTT to
a real mosquitto and the minimal desk: device states in Russian with the raw code as a
secondary line, the MQTT link (connected since, last delivery, lost since), each device's
last error, the events list filtered and free of page views, restart asked first."""

from __future__ import annotations

import re

import pytest

from kiosk.api_client import ApiClient
from kiosk.config import load_config
from kiosk.scripted import inbox_feeder, run_payment
from tests.sync.broker import Broker
from tests.sync.conftest import DeskKey, make_desk
from tests.sync.terminal import terminal_public_key
from tests.ui.test_technician import PIN, _gesture, _login

STAMP = r"\d\d\.\d\d \d\d:\d\d:\d\d"


def _refreshed(d, ident: str, pred) -> str:  # type: ignore[no-untyped-def]
    """Tap Refresh until the line says what is expected (the core answers each tap)."""

    def seen() -> bool:
        d.tap("tech.refresh")
        d.pump(0.3)
        return bool(pred(d.text(ident)))

    d.until(seen, 30, f"{ident} as expected")  # the core polls an idle printer every 10 s
    return str(d.text(ident))


def _main_lines(d) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {k: v for k, v in d.texts().items()
            if k.startswith("tech.st.") and not k.endswith(".raw")}


@pytest.mark.slow  # a core, a broker, a desk and the UI: not in make test-fast
def test_status_in_words_with_mqtt_and_last_errors(terminal_factory, make_ui, tmp_path):
    from drivers.sim.printer import Fault

    broker = Broker(tmp_path / "mosquitto").start()
    desk_key = DeskKey()
    desk = None
    try:
        term = terminal_factory(extra=f"""
[mqtt]
enabled = true
host = "127.0.0.1"
port = {broker.port}
reconnect_min_s = 0.2
reconnect_max_s = 1.0
{desk_key.toml()}""")
        config = load_config(term.core.config)
        desk = make_desk(broker, desk_key, {config.terminal.id: terminal_public_key(config)},
                         tmp_path / "desk.sqlite", client_id="desk-ui", beat_s=1.0).start()
        with ApiClient(term.core.socket) as c:
            c.connect()
            run_payment(c, "mts", "9161234567", [100], inbox_feeder(term.core.inbox))
        d = make_ui(term)
        d.on("idle", timeout=20)
        _gesture(d)
        d.on("tech_pin")
        _login(d)
        d.on("tech")

        # the desk acknowledged the payment: connected, with a last delivery; its beat heard
        net = _refreshed(d, "tech.st.network", lambda t: "центр на связи: " in t)
        assert re.fullmatch(f"подключено с {STAMP}; последняя доставка: {STAMP}; "
                            f"центр на связи: {STAMP}", net), net
        assert d.text("tech.st.screen") == "ожидание клиента"
        assert d.text("tech.st.acceptor") == "отключён, исправен (включается на время оплаты)"
        assert d.text("tech.st.acceptor.raw").startswith("код: disabled")  # for support
        assert d.text("tech.st.printer") == "исправен"
        for device in ("acceptor", "printer", "ledger", "mqtt"):
            assert d.text(f"tech.st.err.{device}") == "нет"
        d.both_languages("10-status-connected")

        # a printer fault: the state in words, the raw code below, the last error kept
        term.printer.set_fault(Fault("paper_out"))
        _refreshed(d, "tech.st.printer", lambda t: t == "нет бумаги")
        assert d.text("tech.st.printer.raw") == "код: paper_out"
        err = _refreshed(d, "tech.st.err.printer", lambda t: t != "нет")
        assert re.fullmatch(f"{STAMP}: нет бумаги", err), err
        assert d.text("tech.st.err.printer.raw") == "код: printer_unavailable paper_out"
        term.printer.clear()
        _refreshed(d, "tech.st.printer", lambda t: t == "исправен")
        assert d.text("tech.st.err.printer") == err, "the last error stays for the technician"

        # the broker goes away: disconnected since when, why, and the last delivery kept
        broker.stop()
        net = _refreshed(d, "tech.st.network", lambda t: t.startswith("нет связи с "))
        assert re.fullmatch(f"нет связи с {STAMP}; последняя доставка: {STAMP}; "
                            f"центр на связи: {STAMP}", net), net
        assert d.text("tech.st.network.raw").startswith("код: ")
        assert re.fullmatch(f"{STAMP}: связь с брокером потеряна", d.text("tech.st.err.mqtt"))
        latin = {k: v for k, v in _main_lines(d).items() if re.search("[A-Za-z]{3,}", v)}
        assert not latin, f"English or raw codes as the main text: {latin}"
        d.both_languages("11-status-disconnected")
        d.tap("lang")
        d.until(lambda: d.text("tech.st.network").startswith("disconnected since "))
        assert d.text("tech.st.printer") == "working"
        d.tap("lang")
    finally:
        if desk is not None:
            desk.stop()
        broker.stop()


@pytest.mark.slow  # 9-20 s on a loaded 2-core machine: not in make test-fast
def test_events_filter_page_views_and_restart_confirmation(terminal_factory, make_ui):
    term = terminal_factory()
    d = make_ui(term)
    d.on("idle", timeout=20)
    _gesture(d)
    d.on("tech_pin")
    _login(d, PIN)
    d.on("tech")
    for _ in range(3):  # a technician looking around
        for tab in ("counters", "events", "actions", "status"):
            d.tap(f"tech.tab.{tab}")
            d.pump(0.2)
    d.tap("tech.tab.events")
    d.until(lambda: d.text("tech.ev.device") == "Устройство: все, кроме техника")
    d.pump(0.5)
    assert "technician_" not in d.text("tech.events"), "own logins and actions are hidden"
    actions = term.rows("SELECT count(*) FROM events WHERE kind = 'technician_action'")
    assert actions == [(0,)], "looking at pages is not an event"
    for _ in range(5):  # acceptor, printer, ledger, MQTT, technician
        d.tap("tech.ev.device")
        d.pump(0.1)
    assert d.text("tech.ev.device") == "Устройство: действия техника"
    d.wait_text("tech.events", lambda t: "вход техника · technician_login" in t)  # words, code
    assert all("technician_" in line for line in d.text("tech.events").splitlines())
    d.tap("tech.ev.severity")  # warnings and errors: the one login was info
    assert d.text("tech.ev.severity") == "Важность: предупреждения и ошибки"
    d.wait_text("tech.events", lambda t: t == "—")
    d.both_languages("12-events-filtered")

    d.tap("tech.tab.actions")
    d.until(lambda: not d.find("tech.restart").disabled)
    d.tap("tech.restart")  # asks first
    d.wait_text("tech.restart_confirm", lambda t: t.startswith("Перезапустить ядро?"))
    d.both_languages("13-restart-confirm")
    d.tap("tech.restart_no")
    d.until(lambda: not d.visible("tech.restart_confirm") and not d.find("tech.restart").disabled)
    d.pump(0.5)
    assert term.core.proc.poll() is None, "no restart without the answer"
    d.tap("tech.restart")
    d.wait_text("tech.restart_confirm", lambda t: t.startswith("Перезапустить ядро?"))
    d.tap("tech.restart_yes")
    d.wait_text("tech.result", lambda t: t == "Ядро перезапускается")
    assert term.core.proc.wait(timeout=20) == 0
