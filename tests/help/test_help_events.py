"""Help events in the core (kiosk/help_events.py) with a real engine and ledger, the
operator's view behind a help code, and the desk's metrics (sync/help_desk.py)."""

from __future__ import annotations

import pytest

from kiosk.help_events import HelpEventError, mask_account, record_help_event, session_context
from sync.help_desk import describe_help, help_metrics, help_view, terminal_of
from tests.sync.terminal import MTS_ACCOUNT, live_terminal, mqtt_config


@pytest.fixture
def term(tmp_path, desk_key):  # type: ignore[no-untyped-def]
    t = live_terminal(tmp_path / "t", "T0009", mqtt_config(1, desk_key), agent=False)
    yield t
    t.stop()


@pytest.fixture(scope="module")
def desk_key():  # type: ignore[no-untyped-def]
    from tests.sync.conftest import DeskKey

    return DeskKey()


def _help(term) -> list:  # type: ignore[no-untyped-def]
    return [e for e in term.ledger.recent_events(50) if e["kind"].startswith("help_")]


@pytest.mark.parametrize(("kind", "args", "message"), [
    ("help_party", {}, "unknown help event"),
    ("help_article_viewed", {}, "'args.article_id' is required"),
    ("help_article_viewed", {"article_id": "ghost"}, "args.article_id"),
    ("help_opened", {"via": "menu", "x": 1}, "'args.x' is not a known setting"),
    ("help_callback_requested", {"phone": "12345"}, "args.phone"),
    ("help_callback_requested", {"phone": "9161112233", "trigger": "bored"}, "args.trigger"),
    ("help_proactive_shown", {"trigger": "invalid_account", "article_id": 5}, "article_id"),
])
def test_bad_help_events_are_refused_and_nothing_is_recorded(term, kind, args, message):  # type: ignore[no-untyped-def]
    with pytest.raises(HelpEventError, match=message):
        record_help_event(term.engine, kind, args)
    assert _help(term) == []
    assert term.engine.help_code is None  # a refused event opens no help session


def test_help_code_lives_for_the_session_and_the_view_is_masked(term):  # type: ignore[no-untyped-def]
    e = term.engine
    code = record_help_event(e, "help_opened", {"via": "menu"})["help_code"]
    assert code.startswith("T0009-") and len(code) == len("T0009-") + 4
    assert e.close_help() is None and e.help_code is None  # closed on idle: visit over
    e.intent("select_provider", {"provider_id": "mts"})
    e.intent("set_account", {"account": MTS_ACCOUNT})
    code = e.open_help()
    assert e.open_help() == code  # one code per session
    e.close_help()
    assert e.help_code == code  # a customer session keeps it for the operator
    ctx = session_context(e.snapshot())
    assert ctx["account_masked"] == "••••••" + MTS_ACCOUNT[-4:]
    assert ctx["provider_id"] == "mts" and ctx["screen"] == "account"
    assert MTS_ACCOUNT not in str(ctx)
    e.intent("back", {})
    e.intent("back", {})
    assert e.help_code is None  # the session ended: the next customer gets another


@pytest.mark.parametrize(("account", "masked"), [
    ("", ""), ("123", "•••"), ("1234", "••••"), ("9161234567", "••••••4567")])
def test_mask_account(account: str, masked: str) -> None:
    assert mask_account(account) == masked


def test_help_view_and_description() -> None:
    view = {"code": "T0001-0042", "screen": "cash", "provider": {"ru": "МТС", "en": "MTS"},
            "account_masked": "••••••4567", "inserted_minor": 10000, "commission_minor": 300,
            "credited_minor": 9700, "currency": "RUB", "rejected_bills": 2,
            "notice": "bill_returned", "recent_notices": ["bill_returned"], "prompt": False}
    health = {"at_ms": 5, "help": view}
    assert terminal_of("T0001-0042") == "T0001"
    assert help_view(health, "t0001-0042 ") == {**view, "at_ms": 5}
    assert help_view(health, "T0001-0043") is None
    assert help_view({"help": None}, "T0001-0042") is None and help_view(None, "X-1") is None
    text = describe_help(view)
    assert "100.00 RUB" in text and "97.00 RUB" in text and "••••••4567" in text


def test_metrics_deflection() -> None:
    def ev(kind: str, code: str, **data: object) -> dict:
        return {"kind": kind, "data": {"help_code": code, **data}}

    events = [
        ev("help_opened", "A", via="menu"), ev("help_article_viewed", "A", article_id="x"),
        ev("help_opened", "B", via="proactive"),
        ev("help_proactive_shown", "B", trigger="invalid_account"),
        ev("help_callback_requested", "B", phone="9160000000"),
        ev("help_opened", "C", via="menu"), ev("help_search_empty", "C"),
        ev("help_not_helped", "C", article_id="x"),
        {"kind": "acceptor_fault", "data": {}},
    ]
    m = help_metrics(events)
    assert (m["help_sessions"], m["callback_requests"], m["deflected_sessions"]) == (3, 1, 2)
    assert m["deflection"] == round(2 / 3, 3)
    assert m["searches_without_result"] == 1 and m["not_helped"] == {"x": 1}
    assert m["proactive_by_trigger"] == {"invalid_account": 1}
    assert help_metrics([])["deflection"] is None


def test_the_core_counts_returned_and_refused_bills_and_keeps_the_last_notices(term):  # type: ignore[no-untyped-def]
    """What the detector and the operator's view read (snapshot session fields); the
    money is untouched: a returned bill credits nothing, a stacked one is credited."""
    e, acc = term.engine, term.acceptor
    e.intent("select_provider", {"provider_id": "mts"})
    e.intent("submit_account", {"account": MTS_ACCOUNT})
    e.intent("confirm_account", {})
    assert acc.insert(5000).value == "stack"
    assert acc.insert(5000).value == "stack"
    assert acc.insert(2000).value == "stack"
    assert acc.insert(2000).value == "stack"  # 14 000 ₽: 1 000 ₽ left under the maximum
    for _ in range(4):
        assert acc.insert(5000).value == "return"
    acc.listener.on_rejected("soiled")
    s = e.snapshot()["session"]
    assert s["rejected_bills"] == 5 and s["inserted_minor"] == 1_400_000
    assert s["recent_notices"] == ["bill_over_max", "bill_over_max", "bill_rejected"]
    assert session_context(e.snapshot())["recent_notices"] == s["recent_notices"]
