"""An admin changes the fleet's support phone and pushes help texts from the desk page:
retained, signed config documents that carry forward what the last one held."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sync import topics
from sync.desk import SHARE_GROUP, Desk
from sync.desk_service.actions import next_config
from sync.desk_service.db import DeskDB
from sync.desk_service.operators import Operators
from sync.desk_service.web import DeskWeb
from tests.desk.web import Client, add_operators
from tests.sync.broker import Broker
from tests.sync.conftest import wait_for
from tests.sync.terminal import LiveTerminal, live_terminal, mqtt_config, terminal_public_key

PHONE = "8 800 700-12-34"
HOW_TO_PAY = {"ru": "Выберите оператора, введите номер, вносите купюры.",
              "en": "Choose the provider, type the number, insert the bills."}


def _audit(store: DeskDB, **where: str) -> list[dict[str, Any]]:
    return [r for r in Operators(store.engine).audit_rows()
            if all(r[k] == v for k, v in where.items())]


def test_next_config_carries_the_last_document_forward() -> None:
    last = (4, {"version": 4, "terminal_id": "T1", "issued_ms": 5, "support_phone": "1 2 3",
                "help_texts": {"a": {"ru": "а", "en": "a"}}})
    doc = next_config(last, "T1", {"help_texts": {"b": {"ru": "б", "en": "b"}}})
    assert doc == {"version": 5, "terminal_id": "T1", "support_phone": "1 2 3",
                   "help_texts": {"a": {"ru": "а", "en": "a"}, "b": {"ru": "б", "en": "b"}}}
    assert next_config(None, "T2", {"support_phone": PHONE}) == {
        "version": 1, "terminal_id": "T2", "support_phone": PHONE}


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    """A mosquitto of this test's own: "the whole fleet" is every terminal the desk has
    heard of, and the session's broker retains the states of other tests' terminals."""
    b = Broker(tmp_path / "mosquitto").start()
    yield b
    b.stop()


def test_an_admin_sets_the_fleet_phone_and_pushes_a_help_text_that_a_late_terminal_loads(
        tmp_path: Path, own_broker: Broker, desk_key: Any) -> None:
    broker = own_broker
    mqtt = mqtt_config(broker.port, desk_key)
    tag = uuid.uuid4().hex[:6].upper()
    terms: list[LiveTerminal] = [live_terminal(tmp_path / f"t{i}", f"F{tag}{i}", mqtt)
                                 for i in (1, 2)]
    ids = [t.config.terminal.id for t in terms]
    store = DeskDB(tmp_path / "desk.sqlite")
    add_operators(store)
    desk = Desk("127.0.0.1", broker.port, desk_key.key, desk_key.kid,
                {t.config.terminal.id: terminal_public_key(t.config) for t in terms}, store,
                client_id=f"desk-{tag}", persistent=False,
                share_group=f"{SHARE_GROUP}-{tag}").start()
    web = DeskWeb(store, desk).start("127.0.0.1", 0)
    late: LiveTerminal | None = None
    try:
        wait_for(lambda: sorted(r["terminal_id"] for r in store.terminals()) == ids, 20,
                 "both terminals known to the desk")
        admin = Client(web.port)
        admin.login("adm1")
        _, text = admin.get("/terminals")
        assert 'id="fleet-phone-form"' in text and 'id="help-form"' in text

        # a bad phone: refused, nothing published, audited
        status, text = admin.post("/action/fleet_phone", {"csrf": admin.csrf(),
                                                          "phone": "позвоните нам"})
        assert status == 400 and "Неверный ввод" in text
        assert store.last_config(topics.topic(ids[0], topics.CONFIG)) is None
        assert [r["outcome"] for r in _audit(store, login="adm1", action="set_fleet_phone")
                ] == ["refused"]

        # (a) the fleet's phone: both terminals
        status, text = admin.post("/action/fleet_phone", {"csrf": admin.csrf(),
                                                          "phone": PHONE})
        assert status == 200 and 'id="fleet-result"' in text, text
        assert all(t in text for t in ids) and text.count("Отправлено") >= 2
        for t in terms:
            wait_for(lambda t=t: t.engine.support_phone == PHONE, 20, "the fleet phone")

        # (b) a help text to the fleet: both have it, and still the phone
        status, text = admin.post("/action/help_text", {
            "csrf": admin.csrf(), "t": "*", "key": "how_to_pay", **HOW_TO_PAY})
        assert status == 200 and 'id="fleet-result"' in text, text
        for t in terms:
            wait_for(lambda t=t: t.engine.help_texts.get("how_to_pay") == HOW_TO_PAY, 20,
                     "the help text")
            assert t.engine.support_phone == PHONE
        assert store.last_config(topics.topic(ids[0], topics.CONFIG))[0] == 2  # type: ignore[index]

        # one terminal's own phone (a command), then a help text to it alone: the
        # document keeps that phone, and the other terminal keeps what it had
        own = "8 495 111-22-33"
        status, text = admin.post("/action/phone", {"csrf": admin.csrf(), "t": ids[1],
                                                    "phone": own})
        assert status == 200 and "Выполнено терминалом" in text, text
        other = {"ru": "Сдачу не выдаём.", "en": "No change is given."}
        status, text = admin.post("/action/help_text", {
            "csrf": admin.csrf(), "t": ids[1], "key": "change", **other})
        assert status == 200 and ids[1] in text and ids[0] not in text.split(
            'id="fleet-result"')[1]
        wait_for(lambda: terms[1].engine.help_texts.get("change") == other, 20, "one terminal")
        assert terms[1].engine.support_phone == own
        assert terms[1].engine.help_texts.get("how_to_pay") == HOW_TO_PAY
        assert "change" not in terms[0].engine.help_texts

        audit = _audit(store, login="adm1")
        assert [(r["action"], r["outcome"], r["terminal_id"]) for r in audit[:4]] == [
            ("push_help_text", "sent", ids[1]), ("set_support_phone", "executed", ids[1]),
            ("push_help_text", "sent", "*"), ("set_fleet_phone", "sent", "*")]
        assert audit[2]["detail"].startswith("2 terminal(s), 2 sent")

        # a document the terminal would refuse as too large is not published
        big = {f"k{i}": {"ru": "я" * 4000, "en": "e" * 4000} for i in range(40)}
        topic1 = topics.topic(ids[1], topics.CONFIG)
        store.record_config(topic1, 3, {"version": 3, "terminal_id": ids[1], "help_texts": big})
        status, text = admin.post("/action/help_text", {
            "csrf": admin.csrf(), "t": "*", "key": "more", **other})
        assert status == 200 and "Отклонено" in text and "too_large" in text, text
        assert store.last_config(topic1) == (3, {"version": 3, "terminal_id": ids[1],
                                                 "help_texts": big})
        row = _audit(store, login="adm1")[0]
        assert (row["action"], row["outcome"]) == ("push_help_text", "failed")
        assert row["detail"].startswith("2 terminal(s), 1 sent; failed for: " + ids[1])
        wait_for(lambda: terms[0].engine.help_texts.get("more") == other, 20, "the other one")

        # a terminal starting later (fresh data dir, same id) loads the newest document
        terms[0].stop()
        terms.pop(0)
        late = live_terminal(tmp_path / "late", ids[0], mqtt)
        wait_for(lambda: late.engine.help_texts.get("how_to_pay") == HOW_TO_PAY, 20,
                 "the retained document at a late terminal")
        assert late.engine.support_phone == PHONE
    finally:
        web.stop()
        desk.stop()
        for t in terms + ([late] if late else []):
            t.stop()


def test_an_operator_is_refused_the_admin_actions_and_the_attempt_is_audited(
        tmp_path: Path) -> None:
    store = DeskDB(tmp_path / "desk.sqlite")
    add_operators(store)
    web = DeskWeb(store).start("127.0.0.1", 0)
    try:
        for login in ("op1", "view1"):
            c = Client(web.port)
            c.login(login)
            _, text = c.get("/terminals")
            assert 'id="admin-actions"' not in text
            status, text = c.post("/action/fleet_phone", {"csrf": c.csrf(), "phone": PHONE})
            assert status == 403 and "только роли «администратор»" in text
            status, text = c.post("/action/help_text", {
                "csrf": c.csrf(), "t": "*", "key": "how_to_pay", **HOW_TO_PAY})
            assert status == 403
            refused = _audit(store, login=login, outcome="refused")
            assert sorted(r["action"] for r in refused) == ["push_help_text",
                                                            "set_fleet_phone"]
            assert all(f"role {'operator' if login == 'op1' else 'viewer'} may not" in
                       r["detail"] for r in refused)
        # an admin with a form from another page (no CSRF token) is refused too
        c = Client(web.port)
        c.login("adm1")
        status, _ = c.post("/action/fleet_phone", {"phone": PHONE})
        assert status == 403
    finally:
        web.stop()
        store.close()


def test_bad_help_texts_an_unknown_terminal_and_no_broker_are_refused_clearly(
        tmp_path: Path) -> None:
    store = DeskDB(tmp_path / "desk.sqlite")
    add_operators(store)
    with store.transaction() as conn:  # a terminal the desk has heard of
        store.save_state(conn, "T1", {"state": "online", "connection_id": "c1", "at_ms": 1}, 1)
    web = DeskWeb(store).start("127.0.0.1", 0)  # no desk connection: nothing can be sent
    try:
        c = Client(web.port)
        c.login("adm1")
        for form, why in (({"t": "*", "key": "How to pay!", **HOW_TO_PAY}, "key"),
                          ({"t": "*", "key": "how_to_pay", "ru": "текст", "en": " "},
                           "both texts"),
                          ({"t": "*", "key": "how_to_pay", "ru": "т" * 4001, "en": "t"},
                           "both texts"),
                          ({"t": "T9", "key": "how_to_pay", **HOW_TO_PAY}, "not known")):
            status, text = c.post("/action/help_text", {"csrf": c.csrf(), **form})
            assert status == 400 and "Неверный ввод" in text and why in text, form
        status, text = c.post("/action/help_text", {"csrf": c.csrf(), "t": "T1",
                                                    "key": "how_to_pay", **HOW_TO_PAY})
        assert status == 503 and "Нет связи с брокером" in text
        outcomes = [(r["outcome"], r["terminal_id"]) for r in _audit(store, login="adm1",
                                                                     action="push_help_text")]
        assert outcomes == [("failed", "T1"), ("refused", "T9"), ("refused", "*"),
                            ("refused", "*"), ("refused", "*")]
        assert store.last_config(topics.topic("T1", topics.CONFIG)) is None
    finally:
        web.stop()
        store.close()


def test_a_config_published_before_d0003_has_no_body_and_the_next_starts_above_it(
        tmp_path: Path) -> None:
    from sqlalchemy import insert

    from sync.desk_service import schema
    from sync.desk_service.db import make_engine, migrate

    engine = make_engine(tmp_path / "desk.sqlite")
    migrate(engine, "d0002")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO config_published (topic, version, published_ms) VALUES (?, ?, ?)",
            ("kiosk/v1/T1/config", 7, 1))
    store = DeskDB(engine)  # migrates to head
    try:
        topic = topics.topic("T1", topics.CONFIG)
        assert store.last_config(topic) == (7, None)
        assert store.carry_in_config(topic, {"support_phone": PHONE}) is False
        doc = next_config(store.last_config(topic), "T1", {"support_phone": PHONE})
        assert doc == {"version": 8, "terminal_id": "T1", "support_phone": PHONE}
        with store.transaction() as conn:  # an older version never replaces the body
            conn.execute(insert(schema.config_published).values(
                topic="kiosk/v1/T2/config", version=3, published_ms=1, body='{"version": 3}'))
        store.record_config("kiosk/v1/T2/config", 2, {"version": 2})
        assert store.last_config("kiosk/v1/T2/config") == (3, {"version": 3})
    finally:
        store.close()
