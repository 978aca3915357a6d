"""Offer rules (kiosk/offers.py), the funnel (kiosk/funnel.py), their state
(kiosk/engagement.py) and the engine's use of them: chosen only after the payment is
committed, at most three, the holdout respected, the top offer on the receipt."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiosk.engagement import STATE_FILE, Engagement
from kiosk.funnel import Funnel
from kiosk.ledger import outbox
from kiosk.offers import (
    MAX_OFFERS_SHOWN,
    OfferContext,
    OffersError,
    account_hash,
    choose,
    in_holdout,
    parse_offers,
)
from tests.conftest import ManualClock, config_in
from tests.core.harness import MTS_ACCOUNT, make_terminal

KEY = base64.b64encode(b"network-key-0123456789").decode()
TZ = timezone(timedelta(hours=3))
NOON = datetime(2026, 12, 3, 12, 0, tzinfo=TZ)


def item(oid: str, **kw: Any) -> dict[str, Any]:
    return {"id": oid, "title_ru": f"Предложение {oid}", "title_en": f"Offer {oid}",
            "text_ru": "Подробнее у оператора", "text_en": "Ask the operator", **kw}


def section(*items: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"account_key": KEY, "items": list(items), **kw}


def ctx(provider: str = "mts", category: str = "mobile", amount: int = 50_000,
        account: str = MTS_ACCOUNT, tags: frozenset[str] = frozenset({"mall"})) -> OfferContext:
    rules_key = base64.b64decode(KEY)
    return OfferContext(provider, category, amount, account_hash(rules_key, provider, account),
                        tags)


# -- the parser -------------------------------------------------------------------------
def test_a_full_section_parses_with_its_defaults():
    rules = parse_offers(section(
        item("tv", providers=["mts"], categories=["mobile"], min_minor=10_000,
             max_minor=100_000, from_hhmm="22:00", to_hhmm="06:00", tags=["mall"],
             priority=5, cap_per_day=3),
        item("any"), holdout_percent=12.5, holdout_seed="q4"))
    assert rules.holdout_bp == 1250 and rules.holdout_seed == "q4"
    tv, any_ = rules.items  # best first
    assert (tv.from_minute, tv.to_minute, tv.cap_per_day) == (22 * 60, 6 * 60, 3)
    assert (any_.providers, any_.max_minor, any_.cap_per_day, any_.priority) == (
        frozenset(), None, None, 0)


@pytest.mark.parametrize(("doc", "named"), [
    (section(item("a"), bogus=1), "offers.bogus"),
    ({"items": []}, "offers.account_key"),
    ({"account_key": "c2hvcnQ=", "items": []}, "offers.account_key"),  # 5 bytes
    (section(item("a"), holdout_percent=101), "offers.holdout_percent"),
    (section(item("a"), holdout_percent=True), "offers.holdout_percent"),
    (section(item("a", title_ru="")), "offers.items[0].title_ru"),
    (section(item("a", min_minor=-1)), "offers.items[0].min_minor"),
    (section(item("a", min_minor=500, max_minor=100)), "offers.items[0].max_minor"),
    (section(item("a", from_hhmm="24:00")), "offers.items[0].from_hhmm"),
    (section(item("a", cap_per_day=0)), "offers.items[0].cap_per_day"),
    (section(item("a", providers="mts")), "offers.items[0].providers"),
    (section(item("a"), item("a")), "offers.items[1].id"),
    (section(item("a b")), "offers.items[0].id"),
    (section(item("a", extra="x")), "offers.items[0].extra"),
    (section(), None),  # an empty list is fine: no offers
])
def test_bad_sections_are_refused_with_the_key_named(doc, named):
    if named is None:
        assert parse_offers(doc).items == ()
        return
    with pytest.raises(OffersError) as err:
        parse_offers(doc)
    assert named in str(err.value)


_keys = st.sampled_from(["account_key", "holdout_percent", "holdout_seed", "items", "id",
                         "title_ru", "title_en", "providers", "min_minor", "max_minor",
                         "from_hhmm", "cap_per_day", "priority", "tags", "x"])
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(10**16), 10**16),
                     st.floats(allow_nan=True), st.text(max_size=30), st.just(KEY),
                     st.just("08:00"))
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=6)), max_leaves=25)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_values)
def test_fuzz_any_document_is_parsed_or_refused_clearly(doc):
    try:
        rules = parse_offers(doc)
    except OffersError as exc:
        assert str(exc)  # a clear message, never another exception
        return
    assert 0 <= rules.holdout_bp <= 10_000
    for o in rules.items:
        choose(rules, ctx(), NOON, {})  # whatever parsed can be used
        assert o.max_minor is None or o.max_minor >= o.min_minor


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 300_000),
                          st.integers(0, 1_000_000)), max_size=12),
       st.integers(0, 300_000), st.integers(0, 23))
def test_fuzz_choice_is_capped_ordered_eligible_and_deterministic(specs, amount, hour):
    items = [item(f"o{i}", priority=p, min_minor=lo, max_minor=lo + 100_000)
             for i, (p, lo, _) in enumerate(specs)]
    rules = parse_offers(section(*items))
    now = NOON.replace(hour=hour)
    c = ctx(amount=amount)
    first = choose(rules, c, now, {})
    assert first == choose(rules, c, now, {})
    assert len(first.offers) <= MAX_OFFERS_SHOWN
    assert all(o.min_minor <= amount <= (o.max_minor or 0) for o in first.offers)
    keys = [(-o.priority, o.id) for o in first.offers]
    assert keys == sorted(keys)
    eligible = sum(1 for o in rules.items if o.min_minor <= amount <= (o.max_minor or 0))
    assert len(first.offers) == min(MAX_OFFERS_SHOWN, eligible)


# -- the choice -------------------------------------------------------------------------
def test_offers_chosen_by_rule_and_capped_at_three():
    rules = parse_offers(section(
        item("beeline-only", providers=["beeline"], priority=99),
        item("utilities", categories=["utilities"], priority=98),
        item("big", min_minor=100_000, priority=97),
        item("night", from_hhmm="22:00", to_hhmm="06:00", priority=96),
        item("metro", tags=["metro"], priority=95),
        item("p1", priority=10), item("p2", priority=20), item("p3", priority=30),
        item("p4", priority=5), item("mts", providers=["mts"], priority=15)))
    chosen = choose(rules, ctx(amount=50_000), NOON, {})
    assert not chosen.holdout
    assert [o.id for o in chosen.offers] == ["p3", "p2", "mts"]
    assert chosen.top is not None and chosen.top.id == "p3"
    at_night = choose(rules, ctx(amount=150_000), NOON.replace(hour=23), {})
    assert [o.id for o in at_night.offers] == ["big", "night", "p3"]
    in_metro = choose(rules, ctx(tags=frozenset({"metro"})), NOON, {})
    assert in_metro.offers[0].id == "metro"


def test_frequency_cap_per_day_skips_an_offer_shown_enough():
    rules = parse_offers(section(item("a", priority=2, cap_per_day=2), item("b", priority=1)))
    assert [o.id for o in choose(rules, ctx(), NOON, {"a": 1}).offers] == ["a", "b"]
    assert [o.id for o in choose(rules, ctx(), NOON, {"a": 2}).offers] == ["b"]


def test_holdout_share_is_respected_and_stable_per_customer():
    rules = parse_offers(section(item("a"), holdout_percent=20))
    accounts = [f"916{i:07d}" for i in range(4000)]
    held = [a for a in accounts if choose(rules, ctx(account=a), NOON, {}).holdout]
    assert 0.17 < len(held) / len(accounts) < 0.23
    for a in held[:50]:  # a held-out customer sees nothing, every time
        assert choose(rules, ctx(account=a), NOON, {}).offers == ()
    none = parse_offers(section(item("a"), holdout_percent=0))
    everyone = parse_offers(section(item("a"), holdout_percent=100))
    assert not any(in_holdout(none, ctx(account=a).account_hash) for a in accounts[:200])
    assert all(in_holdout(everyone, ctx(account=a).account_hash) for a in accounts[:200])


def test_the_account_hash_is_keyed_and_never_the_account():
    h = account_hash(b"k" * 16, "mts", MTS_ACCOUNT)
    assert MTS_ACCOUNT not in h and len(h) == 32
    assert h == account_hash(b"k" * 16, "mts", MTS_ACCOUNT)
    assert h != account_hash(b"j" * 16, "mts", MTS_ACCOUNT)
    assert h != account_hash(b"k" * 16, "beeline", MTS_ACCOUNT)


# -- the funnel and the day's state ----------------------------------------------------
def test_funnel_counts_reach_and_where_sessions_leave():
    f = Funnel("2026-12-03")
    for path in (["provider", "account", "confirm", "cash", "receipt", "idle"],
                 ["provider", "account", "provider", "idle"],
                 ["provider", "account", "confirm", "account", "idle"],
                 ["provider", "account", "confirm", "cash", "out_of_service"]):
        for screen in path:
            f.on_screen(screen)
    assert f.report() == {
        "day": "2026-12-03", "sessions": 4, "paid": 1,
        "reached": {"account": 4, "cash": 2, "confirm": 3, "provider": 4, "receipt": 1},
        "left": {"account": 1, "cash": 1, "provider": 1}}


class Wall:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_day_rollover_reports_once_and_state_survives_a_restart(tmp_path: Path):
    wall = Wall(NOON)
    e = Engagement(("mall",), tmp_path, wall)
    e.set_rules(parse_offers(section(item("a", cap_per_day=5))), 3)
    for screen in ("provider", "account", "idle"):
        e.on_screen(screen)
    pick = e.pick("mts", "mobile", MTS_ACCOUNT, 50_000)
    assert pick is not None and e.caps == {"a": 1}
    assert MTS_ACCOUNT not in json.dumps(pick.context)
    assert pick.context["rules_version"] == 3 and pick.context["terminal_tags"] == ["mall"]
    e.save()
    assert json.loads((tmp_path / STATE_FILE).read_text())["caps"] == {"a": 1}

    again = Engagement(("mall",), tmp_path, wall)  # a restart the same day
    assert again.caps == {"a": 1} and again.funnel.sessions == 1
    assert again.due_report() is None
    wall.now = NOON + timedelta(days=1)
    done = again.due_report()
    assert done == {"day": "2026-12-03", "sessions": 1, "paid": 0,
                    "reached": {"account": 1, "provider": 1}, "left": {"account": 1}}
    assert again.due_report() is None and again.caps == {}
    assert again.funnel.day == "2026-12-04"


# -- the engine: after the commit only, the receipt carries the top offer ---------------
def _terminal(tmp_path: Path) -> Any:
    return make_terminal(config_in(tmp_path), ManualClock())


def _events(term: Any, kind: str) -> list[dict[str, Any]]:
    return [e for e in term.ledger.recent_events(200) if e["kind"] == kind]


def test_engine_shows_offers_after_the_commit_and_prints_the_top_one(tmp_path: Path):
    term = _terminal(tmp_path)
    rules = parse_offers(section(item("a", priority=3), item("b", priority=2),
                                 item("c", priority=1), item("d")))
    term.engine.apply_desk_config(version=4, offers=rules)
    seen_at_print: list[Any] = []
    # M5: when the receipt prints, the payment is already in the ledger
    term.printer.on_print = lambda doc: seen_at_print.append(
        term.ledger.get_payment("T0001-00000001"))
    term.to_cash()
    assert all((s.get("last_payment") or {}).get("offers") is None for s in term.snapshots)
    term.acceptor.insert(500)
    term.intent("pay")
    term.drain()
    assert seen_at_print and seen_at_print[0] is not None
    lp = term.engine.last_payment
    assert lp is not None and [o["id"] for o in lp["offers"]] == ["a", "b", "c"]
    text = term.printer.texts()[-1]
    assert "Предложение a" in text and "Offer a" in text and "Offer b" not in text
    shown = _events(term, "offer_impression")
    assert len(shown) == 1 and shown[0]["data"]["offers"] == ["a", "b", "c"]
    assert shown[0]["data"]["holdout"] is False
    assert MTS_ACCOUNT not in json.dumps(shown[0]["data"])

    term.intent("offer_interested", offer_id="b")
    term.intent("offer_interested", offer_id="b")  # one tap per offer counts
    with pytest.raises(Exception, match="no offer"):
        term.intent("offer_interested", offer_id="d")
    taps = _events(term, "offer_interested")
    assert [(t["data"]["offer_id"], t["data"]["rank"]) for t in taps] == [("b", 2)]
    assert term.engine.last_payment["offers_interested"] == ["b"]
    assert MTS_ACCOUNT not in json.dumps(taps[0]["data"])
    term.intent("done")

    # the payment's outbox row comes before every offer event (M8's order untouched)
    rows = outbox.pending(term.ledger)
    payment_rows = [r.id for r in rows if r.kind == "payment"]
    offer_rows = [r.id for r in rows if r.kind == "event"
                  and r.payload.get("kind", "").startswith("offer_")]
    assert len(payment_rows) == 1 and len(offer_rows) == 2
    assert payment_rows[0] < min(offer_rows)
    # a customer's copy never carries the offer: it was for that moment
    copy = term.engine.payment_document("T0001-00000001", copy=True)
    assert "Offer a" not in "\n".join(str(b) for b in copy.blocks)


def test_holdout_customer_sees_no_offer_and_it_is_recorded(tmp_path: Path):
    term = _terminal(tmp_path)
    term.engine.apply_desk_config(version=1, offers=parse_offers(
        section(item("a"), holdout_percent=100)))
    term.pay(500)
    assert term.engine.last_payment is not None
    assert term.engine.last_payment["offers"] == []
    assert "Предложение" not in term.printer.texts()[-1]
    (shown,) = _events(term, "offer_impression")
    assert shown["data"]["holdout"] is True and shown["data"]["offers"] == []


def test_no_rules_no_offers_and_the_receipt_is_as_before(tmp_path: Path):
    term = _terminal(tmp_path)
    term.pay(500)
    assert "offers" not in (term.engine.last_payment or {})
    assert "Предложение" not in term.printer.texts()[-1]
    assert _events(term, "offer_impression") == []


def test_engine_funnel_counts_and_reports_on_demand(tmp_path: Path):
    term = _terminal(tmp_path)
    term.pay(500)
    term.intent("start")
    term.intent("select_provider", provider_id="mts")
    term.intent("cancel")
    report = term.engine.report_funnel()
    assert (report["sessions"], report["paid"]) == (2, 1)
    assert report["left"] == {"account": 1} and report["reached"]["receipt"] == 1
    (event,) = _events(term, "funnel_report")
    assert event["data"]["partial"] is True and event["data"]["sessions"] == 2


def test_engine_reports_the_finished_day_once_at_the_first_tick_of_the_next(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    wall = Wall(NOON)
    monkeypatch.setattr("kiosk.engagement.local_now", wall)  # the wall clock: an edge
    term = _terminal(tmp_path)
    term.pay(500)
    term.intent("select_provider", provider_id="mts")
    term.intent("cancel")
    term.tick(0.1)
    assert _events(term, "funnel_report") == []  # the day is not over
    wall.now = NOON + timedelta(hours=13)  # 01:00 the next day
    term.tick(0.1)
    term.tick(0.1)
    (event,) = _events(term, "funnel_report")
    assert event["data"] == {"day": "2026-12-03", "sessions": 2, "paid": 1,
                             "reached": {"account": 2, "cash": 1, "confirm": 1,
                                         "receipt": 1},
                             "left": {"account": 1}}
    # a restart the same (new) day keeps its counts and does not report the old day again
    again = term.restart()
    again.tick(0.1)
    assert len(_events(again, "funnel_report")) == 1


def test_terminal_tags_come_from_the_toml_and_bad_ones_are_refused(tmp_path: Path):
    from kiosk.config import ConfigError, parse_config

    base = {"technician": {"pin_hash": "scrypt$x"}}
    ok = parse_config({**base, "terminal": {"tags": ["mall", "metro"]}}, "k.toml", tmp_path)
    assert ok.terminal.tags == ("mall", "metro")
    assert parse_config(base, "k.toml", tmp_path).terminal.tags == ()
    with pytest.raises(ConfigError, match=r"terminal\.tags"):
        parse_config({**base, "terminal": {"tags": ["mall", ""]}}, "k.toml", tmp_path)
    with pytest.raises(ConfigError, match=r"terminal\.tags"):
        parse_config({**base, "terminal": {"tags": "mall"}}, "k.toml", tmp_path)
