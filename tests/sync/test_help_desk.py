"""Self-service over a real mosquitto (docs/self-service.md): the desk pushes articles in
its signed config, the terminal serves them and a misspelled search finds them; help
counters and a call-back request reach the desk's database with the help code; the desk
sees the customer's screen behind the code (health), read-only and masked."""

from __future__ import annotations

import html
import json

from kiosk.help_center import default_help_center
from kiosk.help_events import record_help_event
from sync import cli
from sync.help_desk import help_metrics, help_view
from tests.sync.conftest import make_desk, wait_for
from tests.sync.terminal import MTS_ACCOUNT, live_terminal, mqtt_config, terminal_public_key
from ui.help_search import index, search


def test_articles_pushed_found_counted_and_the_operator_sees_the_screen(
        broker, desk_key, tmp_path, capsys):
    tid = "THELP1"
    term = live_terminal(tmp_path / "t", tid, mqtt_config(broker.port, desk_key))
    db = tmp_path / "desk.sqlite"
    desk = make_desk(broker, desk_key, {tid: terminal_public_key(term.config)}, db,
                     client_id="desk-help").start()
    try:
        wait_for(lambda: desk.states.get(tid, {}).get("state") == "online", 10, "online")
        center = default_help_center().to_dict()
        center["articles"].append({
            "id": "cashback", "category": "paying",
            "title": {"ru": "Кэшбэк за оплату", "en": "Cashback for paying"},
            "body": {"ru": "Кэшбэк начисляется оператором связи.",
                     "en": "Cashback is paid by the provider."}})
        desk.publish_config(tid, {"version": 1, "terminal_id": "*", "issued_ms": 0,
                                  "help_center": center})
        wait_for(lambda: term.engine.help_center.article("cashback") is not None, 10,
                 "articles applied")
        served = term.engine.help_center.to_dict()
        assert search(index(served["articles"]), "кешбек")[:1] == ["cashback"]  # ё/э typo

        # a customer on the account screen opens help, reads, and asks for a call-back
        e = term.engine
        e.intent("select_provider", {"provider_id": "mts"})
        e.intent("set_account", {"account": MTS_ACCOUNT})
        record_help_event(e, "help_opened", {"via": "menu"})
        record_help_event(e, "help_article_viewed", {"article_id": "cashback"})
        record_help_event(e, "help_search_empty", {})
        out = record_help_event(e, "help_callback_requested", {"phone": "9161112233"})
        code = out["help_code"]
        assert code.startswith(f"{tid}-")

        def at_desk() -> list:
            return [ev for ev in desk.store.events(tid) if ev["kind"].startswith("help_")]

        wait_for(lambda: len(at_desk()) == 4, 10, "help events at the desk")
        cb = next(ev for ev in at_desk() if ev["kind"] == "help_callback_requested")
        assert cb["data"]["help_code"] == code and cb["data"]["phone"] == "9161112233"
        assert cb["data"]["context"]["provider_id"] == "mts"
        assert cb["data"]["context"]["account_masked"].endswith(MTS_ACCOUNT[-4:])
        assert MTS_ACCOUNT not in json.dumps(cb["data"])  # never the whole account
        metrics = help_metrics(desk.store.events(tid))
        assert metrics["help_sessions"] == 1 and metrics["callback_requests"] == 1
        assert metrics["deflection"] == 0.0 and metrics["searches_without_result"] == 1
        assert metrics["article_views"] == {"cashback": 1}

        # the operator's view behind the code: from the terminal's health
        wait_for(lambda: help_view(desk.health.get(tid), code) is not None, 10, "help view")
        view = help_view(desk.health[tid], code)
        assert view is not None
        assert view["screen"] == "account" and view["provider_id"] == "mts"
        assert view["account_masked"] == "••••••" + MTS_ACCOUNT[-4:]
        assert help_view(desk.health[tid], f"{tid}-0000" if not code.endswith("0000")
                         else f"{tid}-1111") is None  # another code shows nothing
        wait_for(lambda: help_view(next((t["health"] for t in desk.store.terminals()
                                         if t["terminal_id"] == tid), None), code) is not None,
                 10, "help view stored")
        assert cli.desk_main(["--db", str(db), "help", code]) == 0
        printed = capsys.readouterr().out
        assert f"help code {code}" in printed and "screen:    account" in printed
        assert MTS_ACCOUNT not in printed
        assert cli.desk_main(["--db", str(db), "help-stats", "--terminal", tid]) == 0
        assert json.loads(capsys.readouterr().out)["callback_requests"] == 1

        # the session ends: the code and the view go
        e.intent("cancel", {})
        assert e.help_code is None
        wait_for(lambda: (desk.health.get(tid) or {}).get("help") is None, 10, "view gone")
    finally:
        desk.stop()
        term.stop()


def test_the_desk_page_shows_the_screen_behind_a_help_code(tmp_path, broker, desk_key):
    from tests.desk.web import Client, page_with_terminal

    page = page_with_terminal(tmp_path, tmp_path / "desk.sqlite", broker, desk_key)
    try:
        e = page.term.engine
        e.intent("select_provider", {"provider_id": "mts"})
        e.intent("set_account", {"account": MTS_ACCOUNT})
        code = record_help_event(e, "help_opened", {"via": "proactive"})["help_code"]
        tid = code.rsplit("-", 1)[0]
        c = Client(page.web.port)
        c.login("op1")

        def shown() -> bool:
            text = html.unescape(c.get(f"/help?code={code}")[1])
            return "help code" in text and '"help_sessions": 1' in text

        wait_for(shown, 10, "the help view on the page")
        status, text = c.get(f"/help?code={code}")
        text = html.unescape(text)
        assert status == 200 and "screen:    account" in text and MTS_ACCOUNT not in text
        assert MTS_ACCOUNT[-4:] in text and '"help_sessions": 1' in text
        status, text = c.get(f"/help?code={tid}-XXXX")
        assert status == 404 and 'id="help-none"' in text
    finally:
        page.stop()
