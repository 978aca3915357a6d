"""The broker link on MQTT 3.1.1 and under faults, on a real mosquitto: the 3.1.1 path
does payments, acks and commands like v5; a broker certificate that does not match gives
one clear line and the terminal keeps queueing; a TLS mosquitto SIGKILLed and restarted
while 1,000 payments drain loses and duplicates nothing."""

from __future__ import annotations

import logging
import sqlite3
import time

import pytest

from sync import broker_kit
from sync.desk import Desk
from tests.sync.conftest import KitBroker, make_desk, wait_for
from tests.sync.terminal import (
    live_terminal,
    make_payments,
    mqtt_config,
    terminal_public_key,
    unacked,
)


def test_mqtt_311_carries_payments_acks_and_commands(broker, desk_key, tmp_path):
    """No properties on 3.1.1: the result is matched by the signed cmd_id, the session
    is kept (clean session false), the desk worker has no shared subscription."""
    t = live_terminal(tmp_path / "t", "P311", mqtt_config(broker.port, desk_key,
                                                         protocol="3.1.1"))
    desk = make_desk(broker, desk_key, {"P311": terminal_public_key(t.config)},
                     tmp_path / "desk.sqlite", client_id="desk-311", protocol="3.1.1",
                     share_group="kiosk-desk", persistent=False).start()
    try:
        assert desk.share_group is None  # 3.1.1: every worker takes every message
        wait_for(lambda: t.agent.conn.connected and desk.conn.connected, 10, "connected")
        wait_for(lambda: t.agent.link_status().state == "connected", 10, "subscribed")
        pid = t.pay(500)
        wait_for(lambda: [p["payment_id"] for p in desk.store.payments()] == [pid], 10,
                 "the payment at the desk")
        wait_for(lambda: unacked(t) == 0, 10, "the desk's ack")
        result = desk.command("P311", "set_support_phone", {"phone": "8 800 311-31-13"})
        assert result is not None and result["ok"] is True
        assert desk.result_props[result["cmd_id"]] is None  # no correlation data on 3.1.1
        assert t.engine.support_phone == "8 800 311-31-13"
        # the session is kept: a command sent while the terminal is away waits for it
        t.agent.stop()
        body = desk.command_body("P311", "set_support_phone", {"phone": "8 800 222-22-22"})
        desk.send_command(body)
        assert desk.wait_outcome(body["cmd_id"], 5) is not None
        t.start_agent()
        got = desk.wait_result(body["cmd_id"], 15)
        assert got is not None and got["ok"] is True
        assert t.engine.support_phone == "8 800 222-22-22"
    finally:
        desk.stop()
        t.stop()


def test_a_broker_certificate_that_does_not_match_is_one_clear_line(
    kit_broker, desk_key, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="sync.connection")
    other = broker_kit.init(tmp_path / "other-kit", "127.0.0.1", 1, 2, bind="127.0.0.1",
                            days=30)  # another CA: the broker's certificate is not from it
    cert, key = kit_broker.terminal("TCERT")
    cfg = mqtt_config(kit_broker.port, desk_key, tls_ca=other.terminal_ca, tls_cert=cert,
                      tls_key=key)
    t = live_terminal(tmp_path / "t", "TCERT", cfg)
    try:
        wait_for(lambda: t.agent.conn.stats.attempts >= 3, 20, "several attempts")
        link = t.agent.link_status()
        assert (link.state, link.problem) == ("down", "tls_certificate"), link
        assert "tls_ca" in link.text("en") and "сертификат" in link.text("ru")
        assert "certificate" in link.detail
        lines = [r for r in caplog.records if "tls_certificate" in r.getMessage()]
        assert len(lines) == 1 and lines[0].levelno == logging.ERROR, lines
        pid = t.pay(500)
        time.sleep(0.5)
        assert unacked(t) >= 1  # queued, acknowledged by nobody
        with sqlite3.connect(t.config.paths.ledger) as c:
            assert c.execute("SELECT status FROM payments WHERE id = ?", (pid,)).fetchone()[0] \
                == "queued"
    finally:
        t.stop()


@pytest.mark.slow
def test_tls_mosquitto_killed_and_restarted_mid_drain_loses_and_duplicates_nothing(
    desk_key, tmp_path
):
    kb = KitBroker(tmp_path / "kit")
    kb.broker.start()
    terms = []
    for i in range(4):
        cert, key = kb.terminal(f"M{i}")
        cfg = mqtt_config(kb.port, desk_key, tls_ca=kb.kit.terminal_ca, tls_cert=cert,
                          tls_key=key, inflight=50, batch=10, resend_after_s=2.0)
        terms.append(live_terminal(tmp_path / f"t{i}", f"M{i}", cfg, agent=False))
    expected = set()
    for t in terms:
        expected |= {(t.config.terminal.id, p) for p in make_payments(t.ledger, 250)}
    keys = {t.config.terminal.id: terminal_public_key(t.config) for t in terms}
    db = tmp_path / "desk.sqlite"
    desk = Desk("127.0.0.1", kb.desk_port, desk_key.key, desk_key.kid, keys, db,
                client_id="desk-tls", tls=kb.desk_tls(), persistent=False,
                share_group="kiosk-desk", ack_delay_s=0.02, reconnect_min_s=0.2)
    desk.start()

    def at_desk() -> int:
        with sqlite3.connect(db) as c:
            return int(c.execute("SELECT count(DISTINCT payment_id) FROM payments").fetchone()[0])

    try:
        for t in terms:
            t.start_agent()
        wait_for(lambda: at_desk() >= 200, 60, "the drain to start")
        before = at_desk()
        assert before < len(expected), "the drain finished before the fault"
        t_kill = time.monotonic()
        kb.broker.kill()
        kb.broker.start()
        wait_for(lambda: all(t.agent.conn.connected for t in terms) and desk.conn.connected,
                 60, "everyone back over TLS")
        t_back = time.monotonic() - t_kill
        wait_for(lambda: at_desk() >= len(expected), 120, "every payment at the desk")
        wait_for(lambda: all(unacked(t) == 0 for t in terms), 60, "every outbox empty")
        t_done = time.monotonic() - t_kill
        with sqlite3.connect(db) as c:
            rows, distinct = c.execute(
                "SELECT count(*), count(DISTINCT terminal_id || '/' || payment_id) "
                "FROM payments").fetchone()
        assert rows == distinct == len(expected)
        assert {(p["terminal_id"], p["payment_id"]) for p in desk.store.payments()} == expected
        print(f"\nTLS mosquitto SIGKILLed and restarted with {before} of {len(expected)} "
              f"payments at the desk: every client back after {t_back:.1f} s, all stored "
              f"and acknowledged {t_done:.1f} s after the kill; {desk.stats.duplicates} "
              "duplicate deliveries de-duplicated")
    finally:
        desk.stop()
        for t in terms:
            t.stop()
        kb.broker.stop()


def test_partitioned_desk_workers_on_311_split_the_terminals(broker, desk_key, tmp_path):
    """No shared subscriptions on 3.1.1: with --partition K/N each worker stores and
    acknowledges only its terminals; together they take every payment once."""
    import zlib

    ids = ["PA1", "PA2", "PA3", "PA4", "PA5", "PA6"]
    assert {zlib.crc32(i.encode()) % 2 for i in ids} == {0, 1}  # both partitions used
    terms = [live_terminal(tmp_path / i, i, mqtt_config(broker.port, desk_key,
                                                        protocol="3.1.1")) for i in ids]
    keys = {i: terminal_public_key(t.config) for i, t in zip(ids, terms, strict=True)}
    db = tmp_path / "desk.sqlite"
    desks = [make_desk(broker, desk_key, keys, db, client_id=f"desk-p{k}", protocol="3.1.1",
                       share_group="kiosk-desk", persistent=False, partition=(k, 2)).start()
             for k in (0, 1)]
    try:
        wait_for(lambda: all(d.conn.connected for d in desks)
                 and all(t.agent.conn.connected for t in terms), 10, "connected")
        paid = {(i, t.pay(500)) for i, t in zip(ids, terms, strict=True)}
        wait_for(lambda: {(p["terminal_id"], p["payment_id"]) for p in desks[0].store.payments()}
                 == paid, 15, "every payment at the desk")
        wait_for(lambda: all(unacked(t) == 0 for t in terms), 15, "every outbox empty")
        for k, d in enumerate(desks):
            mine = [i for i in ids if zlib.crc32(i.encode()) % 2 == k]
            assert d.stats.new_payments == len(mine)  # only its own terminals' records
            assert d.stats.duplicates == 0
            assert all(d.mine(i) == (i in mine) for i in ids)
        with sqlite3.connect(db) as c:
            assert c.execute("SELECT count(*) FROM payments").fetchone()[0] == len(ids)
    finally:
        for d in desks:
            d.stop()
        for t in terms:
            t.stop()


def takeover_setup(broker, desk_key, tmp_path, ids: list[str], n: int):
    """Live terminals at 3.1.1 (resending after 1 s) and a maker of partitioned desk
    workers 0..n-1 with a 1.5 s takeover, all on one SQLite desk database."""
    terms = [live_terminal(tmp_path / i, i, mqtt_config(broker.port, desk_key,
                                                        protocol="3.1.1", resend_after_s=1.0))
             for i in ids]
    keys = {i: terminal_public_key(t.config) for i, t in zip(ids, terms, strict=True)}

    def worker(k: int) -> Desk:
        return make_desk(broker, desk_key, keys, tmp_path / "desk.sqlite",
                         client_id=f"desk-p{k}", protocol="3.1.1", persistent=False,
                         partition=(k, n), takeover_after_s=1.5).start()

    return terms, worker


def test_a_partition_whose_worker_is_gone_is_taken_over_and_handed_back(broker, desk_key,
                                                                       tmp_path, caplog):
    """--takeover-after: worker 1 stops; after the period worker 0 stores and acknowledges
    partition 1's terminals too (their outboxes empty, nothing lost, nothing twice); worker
    1 comes back and gets its partition back (sync/desk_service/takeover.py)."""
    import zlib

    ids = ["PA1", "PA2", "PA3", "PA4", "PA5", "PA6"]
    part = {i: zlib.crc32(i.encode()) % 2 for i in ids}
    terms, worker = takeover_setup(broker, desk_key, tmp_path, ids, 2)

    def at_desk() -> list[tuple[str, str]]:
        return [(p["terminal_id"], p["payment_id"]) for p in w0.store.payments()]

    w0, w1 = worker(0), worker(1)
    back: Desk | None = None
    caplog.set_level(logging.WARNING, logger="sync.desk.takeover")
    try:
        wait_for(lambda: w0.conn.connected and w1.conn.connected
                 and all(t.agent.conn.connected for t in terms), 10, "connected")
        w1.stop()
        wait_for(lambda: w0.share == "0/2,1/2", 10, "worker 0 takes partition 1")
        paid = {(i, t.pay(500)) for i, t in zip(ids, terms, strict=True)}
        wait_for(lambda: set(at_desk()) == paid, 20, "every payment at the desk")
        wait_for(lambda: all(unacked(t) == 0 for t in terms), 20, "every outbox empty")
        assert w0.stats.new_payments == len(ids)
        assert any("taking over partition 1/2" in r.message for r in caplog.records)

        back = worker(1)
        wait_for(lambda: w0.share == "0/2", 10, "partition 1 handed back")
        assert back.share == "1/2"
        again = {(i, t.pay(1000)) for i, t in zip(ids, terms, strict=True)}
        wait_for(lambda: set(at_desk()) == paid | again, 20, "the second round at the desk")
        wait_for(lambda: all(unacked(t) == 0 for t in terms), 20, "every outbox empty again")
        assert back.stats.new_payments == sum(1 for i in ids if part[i] == 1)
        assert len(at_desk()) == len(set(at_desk())) == 2 * len(ids)
        assert any("handed back" in r.message for r in caplog.records)
    finally:
        for d in (w0, w1, back):
            if d is not None:
                d.stop()
        for t in terms:
            t.stop()


def test_a_dead_partition_is_shared_by_every_live_worker(broker, desk_key, tmp_path, caplog):
    """Three workers, worker 1 stops: its terminals are spread over workers 0 and 2 (each
    takes some, not one of them all), every payment is stored once and acknowledged; when
    worker 1 is back both hand its partition back."""
    import zlib

    from sync.desk_service.takeover import spread

    pool = [f"PB{i}" for i in range(60)]
    part = {i: zlib.crc32(i.encode()) % 3 for i in pool}
    halves = [[i for i in pool if part[i] == 1 and spread(i, 2) == h][:2] for h in (0, 1)]
    ids = [next(i for i in pool if part[i] == 0), next(i for i in pool if part[i] == 2),
           *halves[0], *halves[1]]
    # live workers 0 and 2: spread() index 0 is worker 0, index 1 worker 2
    expected = {0: 3, 2: 3}
    terms, worker = takeover_setup(broker, desk_key, tmp_path, ids, 3)
    db = tmp_path / "desk.sqlite"
    workers = {k: worker(k) for k in range(3)}
    back: Desk | None = None
    caplog.set_level(logging.WARNING, logger="sync.desk.takeover")
    try:
        wait_for(lambda: all(w.conn.connected for w in workers.values())
                 and all(t.agent.conn.connected for t in terms), 10, "connected")
        workers[1].stop()
        wait_for(lambda: workers[0].share == "0/3,1/3÷2" and workers[2].share == "2/3,1/3÷2",
                 10, "workers 0 and 2 share partition 1")
        paid = {(i, t.pay(500)) for i, t in zip(ids, terms, strict=True)}
        wait_for(lambda: {(p["terminal_id"], p["payment_id"])
                          for p in workers[0].store.payments()} == paid, 20,
                 "every payment at the desk")
        wait_for(lambda: all(unacked(t) == 0 for t in terms), 20, "every outbox empty")
        for k, n in expected.items():
            assert workers[k].stats.new_payments == n, k  # its own and its half of 1/3
        with sqlite3.connect(db) as c:
            assert c.execute("SELECT count(*) FROM payments").fetchone()[0] == len(ids)
        assert sum("taking over partition 1/3 (1 of the 2 live workers" in r.message
                   for r in caplog.records) == 2

        back = worker(1)
        wait_for(lambda: workers[0].share == "0/3" and workers[2].share == "2/3", 10,
                 "partition 1 handed back by both")
    finally:
        for d in (*workers.values(), back):
            if d is not None:
                d.stop()
        for t in terms:
            t.stop()


def test_desk_cluster_options_are_checked():
    from sync.cli import _endpoints, _partition
    from sync.connection import Endpoint
    from sync.desk_service.service import health_line
    from sync.keys import KeyError_

    assert _partition("") is None and _partition("1/3") == (1, 3)
    for bad in ("3/3", "a/2", "1", "-1/2"):
        with pytest.raises(KeyError_, match="K/N"):
            _partition(bad)
    assert _endpoints("a:1, [::1]:2,b", 8884) == (
        Endpoint("a", 1), Endpoint("::1", 2), Endpoint("b", 8884))
    with pytest.raises(KeyError_, match="--hosts"):
        _endpoints("a:x", 8884)
    with pytest.raises(ValueError, match="partition"):
        Desk("h", 1, None, "k", {}, ":memory:", partition=(2, 2))  # type: ignore[arg-type]
    from sync.cli import _takeover_after

    assert _takeover_after(0) == 0 and _takeover_after(12.5) == 12.5
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(KeyError_, match="--takeover-after"):
            _takeover_after(bad)
    status = {"state": "ok", "broker_connected": False, "database": "sqlite", "messages": 0,
              "new_payments": 0, "duplicates": 0, "acks_sent": 0, "quarantined": 0,
              "conflicts": 0, "broker_link": {"problem": "no_connack", "endpoint": "n1:8884"}}
    assert "broker=DOWN (no_connack at n1:8884)" in health_line(status)
    assert "share=" not in health_line(status)  # one worker for everything says nothing
    assert "share=1/3,0/3 db=" in health_line({**status, "share": "1/3,0/3"})
