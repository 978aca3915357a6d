"""Issue 13 on a real mosquitto: a replayed payment status is ignored, a desk clock
that ran ahead locks nothing out (and an old runaway mark is recovered from), every
refusal carries its code and reason, an unclaimed credit is re-processed once, the desk
keeps conflicting records apart, ignores an older connection's offline, and health says
"ledger failed" instead of crashing."""

from __future__ import annotations

import json
import shutil
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import insert

from kiosk.ledger import LedgerError
from kiosk.ledger import desk as desk_ledger
from kiosk.ledger import schema as t
from sync import topics
from sync.desk import Desk
from sync.envelope import seal
from sync.health import build_health, significant
from tests.sync.conftest import make_desk, wait_for
from tests.sync.terminal import live_terminal, mqtt_config, terminal_public_key

YEAR_MS = 365 * 24 * 3600 * 1000


@pytest.fixture(params=["plain", "tls"])
def pair(broker, desk_key, tmp_path, request):
    """(terminal, desk, id) on the plain session broker, and on a mosquitto running the
    shipped configuration and ACL over TLS (client certificates from the broker kit)."""
    tid = "C" + str(abs(hash(request.node.name)) % 10**8)
    if request.param == "tls":
        kb = request.getfixturevalue("kit_broker")
        cert = kb.terminal(tid)
        cfg = mqtt_config(kb.port, desk_key, tls_ca=kb.kit.terminal_ca, tls_cert=cert[0],
                          tls_key=cert[1])
        port, tls = kb.desk_port, kb.desk_tls()
    else:
        cfg, port, tls = mqtt_config(broker.port, desk_key), broker.port, None
    term = live_terminal(tmp_path / "t", tid, cfg)
    desk = Desk("127.0.0.1", port, desk_key.key, desk_key.kid,
                {tid: terminal_public_key(term.config)}, tmp_path / "desk.sqlite",
                client_id=f"desk-{tid}", tls=tls).start()
    wait_for(lambda: desk.states.get(tid, {}).get("state") == "online", 10, "online")
    yield term, desk, tid
    desk.stop()
    term.stop()


def _events(term, kind):  # type: ignore[no-untyped-def]
    return [e["data"] for e in term.ledger.recent_events(300) if e["kind"] == kind]


def test_a_replayed_old_status_is_ignored_with_an_event(pair):
    term, desk, tid = pair
    pid = term.pay(500)
    wait_for(lambda: term.ledger.get_payment(pid)["status"] == "accepted", 10, "accepted")
    old = {"terminal_id": tid, "issued_ms": desk.now_ms(), "statuses": [
        {"payment_id": pid, "status": "failed", "detail": "timeout", "reprocess_count": 0,
         "version": desk.store.next_status_version(tid, pid)}]}
    signed_failed = seal(desk.key, desk.kid, "payment_status", old)
    desk.send_raw(tid, topics.PAYMENT_STATUS, signed_failed)
    wait_for(lambda: term.ledger.get_payment(pid)["status"] == "failed", 5, "failed")
    assert desk.payment_status(tid, [{"payment_id": pid, "status": "processed",
                                      "reprocess_count": 0}]) == [2]
    wait_for(lambda: term.ledger.get_payment(pid)["status"] == "processed", 5, "processed")
    desk.send_raw(tid, topics.PAYMENT_STATUS, signed_failed)  # the old signed bytes again
    wait_for(lambda: any(e["reason"] == "stale_version"
                         for e in _events(term, "payment_status_rejected")), 5, "stale event")
    assert term.ledger.get_payment(pid)["status"] == "processed"
    assert term.engine.payment_status(pid)["status"] == "processed"


def test_a_desk_clock_ahead_locks_out_nothing(pair):
    term, desk, tid = pair
    desk.clock = lambda: time.time() + 240  # ahead, but within the 300 s allowance
    assert desk.command(tid, "set_support_phone", {"phone": "8 800 100-00-01"})["ok"]
    desk.clock = time.time  # corrected: every later command still runs
    for n in range(2, 5):
        res = desk.command(tid, "set_support_phone", {"phone": f"8 800 100-00-0{n}"})
        assert res is not None and res["ok"], res
    assert term.engine.support_phone == "8 800 100-00-04"
    kid = desk.kid
    assert desk_ledger.last_command_seq(term.ledger, kid) == desk.store.next_seq(tid, kid) - 1


def test_a_runaway_mark_left_by_an_old_desk_is_recovered(pair):
    term, desk, tid = pair
    # An older desk used its wall clock, a year ahead, as the sequence: the mark is there.
    runaway = int(time.time() * 1000) + YEAR_MS
    with term.ledger.transaction() as tx:
        tx.execute(insert(t.counters).values(
            name=desk_ledger.DESK_SEQ_PREFIX + desk.kid, value=runaway))
    body = desk.command_body(tid, "set_support_phone", {"phone": "8 800 200-00-02"})
    res = desk.run_command(body, 10)  # refused "replayed" with the mark, then sent above it
    assert res is not None and res["ok"], res
    assert body["resynced_from"] == runaway
    assert term.engine.support_phone == "8 800 200-00-02"
    assert desk.command(tid, "enable")["ok"]  # and it stays usable
    assert desk_ledger.last_command_seq(term.ledger, desk.kid) == runaway + 2
    rejected = [e for e in _events(term, "command_rejected") if e.get("reason") == "replayed"]
    assert rejected and rejected[-1]["detail"].endswith(f"is not above {runaway}")


@pytest.mark.parametrize(
    ("attack", "code"),
    [("unsigned", "unsigned"), ("forged_key", "bad_signature"), ("unknown_key", "unknown_key"),
     ("tampered", "bad_signature"), ("wrong_purpose", "wrong_purpose"),
     ("retained", "retained"), ("not_json", "malformed"), ("expired", "expired"),
     ("future", "not_yet_valid"), ("wrong_terminal", "wrong_terminal"),
     ("bad_args", "bad_args"), ("unknown_type", "unknown_type"), ("old_seq", "replayed"),
     ("seq_jump", "seq_gap")],
)
def test_every_refusal_carries_its_code_and_reason(pair, attack, code):
    term, desk, tid = pair
    body = desk.command_body(tid, "disable", {"reason": attack})
    key, kid, purpose, retain = desk.key, desk.kid, "cmd", False
    if attack == "forged_key":
        key = Ed25519PrivateKey.generate()
    elif attack == "unknown_key":
        kid = "desk.00000000"
    elif attack == "wrong_purpose":
        purpose = "config"
    elif attack == "retained":
        retain = True
    elif attack == "expired":
        body["issued_ms"] -= 120_000
        body["expires_ms"] = body["issued_ms"] + 60_000
    elif attack == "future":
        body["issued_ms"] += 3_600_000
        body["expires_ms"] = body["issued_ms"] + 60_000
    elif attack == "wrong_terminal":
        body["terminal_id"] = "C-OTHER"
    elif attack == "bad_args":
        body["args"] = {"reason": 7}
    elif attack == "unknown_type":
        body["type"] = "rm_rf"
    elif attack == "old_seq":
        assert desk.command(tid, "enable")["ok"]
        body["seq"] = 1
    elif attack == "seq_jump":
        body["seq"] += 10**9
    payload = seal(key, kid, purpose, body)
    if attack == "unsigned":
        payload = json.dumps(body).encode()
    elif attack == "tampered":
        env = json.loads(payload)
        env["body"] = env["body"].replace('"disable"', '"enable"')
        payload = json.dumps(env).encode()
    elif attack == "not_json":
        payload = b"\xff not json"
    desk.send_raw(tid, topics.CMD, payload, body["cmd_id"].encode(), retain=retain)
    try:
        res = desk.wait_result(body["cmd_id"], 10)
    finally:
        if retain:
            desk.send_raw(tid, topics.CMD, b"", retain=True)
    assert res is not None and res["ok"] is False
    assert res["error"] == code, res
    assert isinstance(res["message"], str) and len(res["message"]) > 5, res
    assert term.engine.snapshot()["screen"] == "idle"
    assert any(e.get("reason") == code and e.get("detail")
               for e in _events(term, "command_rejected"))


def test_a_reprocess_retried_with_a_new_command_id_runs_once(pair):
    term, desk, tid = pair
    pid = term.pay(500)
    wait_for(lambda: term.ledger.get_payment(pid)["status"] == "accepted", 10, "accepted")
    args = {"payment_id": pid, "account": "9169999999", "reason": "typo"}
    first = desk.command(tid, "reprocess", args)
    again = desk.command(tid, "reprocess", args)  # another cmd_id: the operator retried
    assert first["ok"] and first["reprocess_count"] == 1
    assert again["ok"] and again["already"] is True and again["reprocess_count"] == 1
    wait_for(lambda: len([p for p in desk.store.payments(tid) if p["payment_id"] == pid]) == 2,
             10, "the re-processed record at the desk")
    assert term.ledger.get_payment(pid)["reprocess_count"] == 1
    assert [p["reprocess_count"] for p in desk.store.payments(tid)
            if p["payment_id"] == pid] == [0, 1]


def test_an_unclaimed_credit_is_reprocessed_once_and_reported(pair):
    term, desk, tid = pair
    sid = term.ledger.open_session("mts", "9161234567", "RUB")
    term.ledger.abandon_session(sid)
    rid = term.ledger.record_stacked("froze", 50_000, "RUB", 2, False, None).unclaimed_id
    wait_for(lambda: any(p["payment_id"] == rid for p in desk.store.payments(tid)), 10,
             "the unclaimed record at the desk")
    args = {"record_id": rid, "provider_id": "mts", "account": "9169999999", "reason": "call"}
    res = desk.command(tid, "reprocess_unclaimed", args)
    assert res["ok"], res
    pid = res["payment_id"]
    wait_for(lambda: any(p["payment_id"] == pid for p in desk.store.payments(tid)), 10,
             "the new payment at the desk")
    got = next(p for p in desk.store.payments(tid) if p["payment_id"] == pid)["data"]
    assert got["from_unclaimed"] == rid and got["account"] == "9169999999"
    assert got["inserted_minor"] == 50_000
    assert got["credited_minor"] == 50_000 - got["commission_minor"]
    wait_for(lambda: term.ledger.get_payment(pid)["status"] == "accepted", 10, "acked")
    again = desk.command(tid, "reprocess_unclaimed", args)
    assert again["ok"] and again["already"] is True and again["payment_id"] == pid
    elsewhere = desk.command(tid, "reprocess_unclaimed", {**args, "account": "9160000000"})
    assert elsewhere["ok"] is False and elsewhere["error"] == "already_claimed"
    payments = [p for p in term.ledger.list_payments(50) if p["kind"] == "payment"]
    assert [p["id"] for p in payments] == [pid]
    assert desk.command(tid, "reprocess_unclaimed", {**args, "provider_id": "nope"})[
        "error"] == "unknown_provider"


def test_a_replaced_ledger_is_a_conflict_never_a_silent_duplicate(
    broker, desk_key, tmp_path
):
    tid = "CREPLACED"
    first = live_terminal(tmp_path / "a", tid, mqtt_config(broker.port, desk_key))
    desk = make_desk(broker, desk_key, {tid: terminal_public_key(first.config)},
                     tmp_path / "desk.sqlite", client_id="desk-replaced").start()
    try:
        p1 = first.pay(500)
        wait_for(lambda: first.ledger.get_payment(p1)["status"] == "accepted", 10, "acked")
        first.stop()
        # the same terminal id and key, a fresh ledger: numbering starts again
        keys = first.config.paths.data_dir / "keys"
        second_dir = tmp_path / "b"
        shutil.copytree(keys, second_dir / "data" / "keys")
        second = live_terminal(second_dir, tid, mqtt_config(broker.port, desk_key))
        try:
            p2 = second.pay(100)
            assert p2 == p1  # the same payment id, another payment
            wait_for(lambda: desk.stats.conflicts >= 1, 10, "conflict at the desk")
            (c,) = [c for c in desk.store.conflicts(tid) if c["kind"] == "payment"]
            assert c["ref"] == p1
            assert json.loads(c["stored"])["inserted_minor"] == 50_000
            assert json.loads(c["received"])["inserted_minor"] == 10_000
            held = [p for p in desk.store.payments(tid) if p["payment_id"] == p1]
            assert len(held) == 1 and held[0]["data"]["inserted_minor"] == 50_000
            assert desk.stats.new_payments == 1
        finally:
            second.stop()
    finally:
        desk.stop()


def test_an_offline_of_an_older_connection_is_ignored(pair):
    term, desk, tid = pair
    current = desk.states[tid]
    will = json.loads(term.agent._state_payload("offline", "0ld0ld0ld0ld0ld0", "lost",
                                                will=True))
    assert will["at_ms"] is None and will["connected_ms"] > 0  # composed at connect time
    desk.send_raw(tid, topics.STATE, json.dumps(will).encode())
    wait_for(lambda: desk.stats.stale_offline == 1, 5, "stale offline seen")
    assert desk.states[tid] == current
    desk.send_raw(tid, topics.STATE, term.agent._state_payload(
        "online", term.agent.conn.connection_id), retain=True)


def test_health_says_ledger_failed_instead_of_crashing(pair, mocker):
    term, _desk, _tid = pair
    pid = term.pay(500)
    ok = build_health(term.engine, term.ledger, connection_id="c", started_monotonic=0.0,
                      config_version=0)
    assert ok["ledger"] == {"ok": True, "error": None}
    assert ok["last_payment"]["id"] == pid and ok["last_payment"]["status"] in (
        "queued", "sent", "accepted")
    mocker.patch.object(term.ledger, "cassette_counts", side_effect=LedgerError("disk I/O"))
    bad = build_health(term.engine, term.ledger, connection_id="c", started_monotonic=0.0,
                       config_version=0)
    assert bad["ledger"]["ok"] is False and "ledger failed" in bad["ledger"]["error"]
    assert bad["cassette"] is None and bad["queue"] is None
    assert significant(bad) != significant(ok)


def test_the_agent_keeps_sqlite_page_cache_small(pair):
    term, _desk, _tid = pair  # the agent has started on this ledger
    assert desk_ledger.page_cache_kib(term.ledger) == desk_ledger.SYNC_PAGE_CACHE_KIB
