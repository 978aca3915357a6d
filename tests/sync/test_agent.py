"""The sync agent against a real mosquitto and the minimal desk: state, health, events,
payment_status, signed commands and config. In-process terminal (real ledger, real
engine with device doubles, real SyncAgent)."""

from __future__ import annotations

import json
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivers.acceptor import AcceptorStatus
from kiosk.ledger import desk as desk_ledger
from kiosk.pin import hash_pin
from sync import topics
from sync.envelope import seal
from sync.keys import key_id
from tests.sync.conftest import DeskKey, make_desk, wait_for
from tests.sync.terminal import live_terminal, mqtt_config, terminal_public_key, unacked

NEW_PHONE = "8 800 700-00-07"


@pytest.fixture
def pair(broker, desk_key, tmp_path, request):
    """(terminal T-<test>, desk) on the session broker; unique ids keep tests apart."""
    tid = "T" + str(abs(hash(request.node.name)) % 10**8)
    term = live_terminal(tmp_path / "t", tid, mqtt_config(broker.port, desk_key))
    desk = make_desk(
        broker, desk_key, {tid: terminal_public_key(term.config)}, tmp_path / "desk.sqlite",
        client_id=f"desk-{tid}",
    ).start()
    wait_for(lambda: desk.states.get(tid, {}).get("state") == "online", 10, "online")
    yield term, desk, tid
    desk.stop()
    term.stop()


def _events(term, kind):  # type: ignore[no-untyped-def]
    return [e for e in term.ledger.recent_events(200) if e["kind"] == kind]


def _desk_events(desk, tid, kind):  # type: ignore[no-untyped-def]
    return [e for e in desk.store.events(tid) if e["kind"] == kind]


# -- state, health, events, payment_status ---------------------------------------------
def test_state_is_retained_with_a_connection_id(pair, broker, desk_key, tmp_path):
    term, desk, tid = pair
    online = desk.states[tid]
    assert online["connection_id"] == term.agent.conn.connection_id
    # A consumer that connects later still gets the retained state and health.
    late = make_desk(broker, desk_key, {}, tmp_path / "late.sqlite", client_id="late").start()
    try:
        wait_for(lambda: tid in late.states and tid in late.health, 5, "retained")
        assert late.states[tid]["state"] == "online"
        assert late.health[tid]["terminal_id"] == tid
    finally:
        late.stop()
    term.agent.stop()  # a clean stop says offline itself (the Will is for a lost link)
    wait_for(lambda: desk.states[tid]["state"] == "offline", 5, "offline")
    assert desk.states[tid]["reason"] == "shutdown"
    term.agent = None


def test_health_on_connect_on_change_and_on_request(pair):
    term, desk, tid = pair
    wait_for(lambda: tid in desk.health, 5)
    h = desk.health[tid]
    assert h["screen"] == "idle" and h["in_service"] is True
    assert h["acceptor"]["status"] == "disabled" and h["printer"]["status"] == "ok"
    assert h["queue"]["payments_unsent"] == 0
    assert h["support_phone"] == "8 800 555-35-35"
    for key in ("cassette", "disk", "uptime_s", "versions", "config_version", "paper"):
        assert key in h
    term.pay(500, 100)
    wait_for(lambda: desk.health[tid]["cassette"]["bills"] == 2, 5, "health on change")
    assert desk.health[tid]["cassette"]["total_minor"] == 60_000
    before = desk.health[tid]["at_ms"]
    res = desk.command(tid, "request_health")
    assert res["ok"]
    wait_for(lambda: desk.health[tid]["at_ms"] > before, 5, "requested health")


def test_events_reach_the_desk_signed_and_leave_the_outbox(pair):
    term, desk, tid = pair
    term.acceptor.set_status(AcceptorStatus.JAMMED, "bill jam")
    wait_for(lambda: _desk_events(desk, tid, "acceptor_fault"), 5, "event at desk")
    ev = _desk_events(desk, tid, "acceptor_fault")[0]
    assert ev["data"]["status"] == "jammed"
    wait_for(lambda: desk_ledger.outbox_depth(term.ledger)["events_unsent"] == 0, 5, "ack")
    wait_for(lambda: desk.health[tid]["in_service"] is False, 5, "health shows the fault")


def test_payment_status_from_the_desk_is_kept_for_the_customer(pair):
    term, desk, tid = pair
    p1, p2 = term.pay(500), term.pay(100)
    wait_for(lambda: term.ledger.get_payment(p2)["status"] == "accepted", 10, "accepted")
    desk.payment_status(
        tid,
        [
            {"payment_id": p1, "status": "processed", "reprocess_count": 0},
            {"payment_id": p2, "status": "failed", "detail": "account closed",
             "reprocess_count": 0},
        ],
    )
    wait_for(lambda: term.ledger.get_payment(p2)["status"] == "failed", 5, "status")
    assert term.engine.payment_status(p1)["status"] == "processed"
    assert term.engine.payment_status(p2)["status"] == "failed"
    assert term.ledger.get_payment(p2)["history"][-1]["detail"] == "account closed"


# -- commands --------------------------------------------------------------------------
def test_support_phone_reaches_screens_and_the_next_receipt(pair):
    term, desk, tid = pair
    res = desk.command(tid, "set_support_phone", {"phone": NEW_PHONE})
    assert res["ok"] and res["cmd_id"]
    assert term.snapshots[-1]["terminal"]["support_phone"] == NEW_PHONE
    term.pay(500)
    assert NEW_PHONE in term.printer.texts()[-1]
    wait_for(lambda: desk.health[tid]["support_phone"] == NEW_PHONE, 5, "health")
    # kept across a restart of the agent and engine (from the ledger)
    term.agent.stop()
    term.agent = None
    assert desk_ledger.desk_settings(term.ledger)["support_phone"] == NEW_PHONE


def test_command_result_uses_response_topic_and_correlation_data(pair):
    _term, desk, tid = pair
    body = desk.command_body(tid, "enable")
    desk.send_command(body)
    res = desk.wait_result(body["cmd_id"], 5)
    assert res["ok"] and res["type"] == "enable"
    assert desk.result_props[body["cmd_id"]] == body["cmd_id"].encode()


def test_disable_and_enable(pair):
    term, desk, tid = pair
    assert desk.command(tid, "disable", {"reason": "cash audit"})["ok"]
    snap = term.engine.snapshot()
    assert snap["screen"] == "out_of_service" and "desk" in snap["out_of_service"]["reasons"]
    assert term.acceptor.enabled == frozenset()
    wait_for(lambda: desk.health[tid]["in_service"] is False, 5)
    assert desk.command(tid, "enable")["ok"]
    assert term.engine.snapshot()["screen"] == "idle"


def test_reprocess_to_a_corrected_account(pair):
    term, desk, tid = pair
    pid = term.pay(500)
    wait_for(lambda: term.ledger.get_payment(pid)["status"] == "accepted", 10)
    res = desk.command(
        tid, "reprocess", {"payment_id": pid, "account": "9169999999", "reason": "typo"}
    )
    assert res["ok"] and res["reprocess_count"] == 1
    wait_for(lambda: len([p for p in desk.store.payments(tid) if p["payment_id"] == pid]) == 2,
             5, "the re-processed payment at the desk")
    again = [p for p in desk.store.payments(tid) if p["payment_id"] == pid][-1]
    assert again["reprocess_count"] == 1 and again["data"]["account"] == "9169999999"
    assert again["data"]["status"] == "reprocessed"
    bad = desk.command(tid, "reprocess", {"payment_id": pid, "account": "123"})
    assert bad["ok"] is False and bad["error"] == "invalid_account"
    missing = desk.command(tid, "reprocess", {"payment_id": f"{tid}-99", "account": "9160000000"})
    assert missing["error"] == "unknown_payment"


def test_restart_command_asks_the_daemon_to_restart(pair):
    term, desk, tid = pair
    assert desk.command(tid, "restart")["ok"]
    wait_for(lambda: term.engine.restart_requested, 5, "restart requested")


def _state(term):  # type: ignore[no-untyped-def]
    snap = term.engine.snapshot()
    return (snap["terminal"]["support_phone"], snap["screen"], term.engine.config.catalog)


def _rejected(term, kind="command_rejected"):  # type: ignore[no-untyped-def]
    return [e["data"].get("reason") for e in _events(term, kind)]


def test_replayed_command_is_not_executed_twice(pair):
    term, desk, tid = pair
    body = desk.command_body(tid, "set_support_phone", {"phone": NEW_PHONE})
    payload = seal(desk.key, desk.kid, "cmd", body)
    desk.send_raw(tid, topics.CMD, payload, b"first")
    first = desk.wait_result(body["cmd_id"], 5)
    assert first["ok"]
    executed = len(_events(term, "desk_command"))
    desk.results.clear()
    desk.send_raw(tid, topics.CMD, payload, b"again")  # the very same signed bytes
    again = desk.wait_result(body["cmd_id"], 5)
    assert again["duplicate"] is True and again["ok"]
    assert len(_events(term, "desk_command")) == executed
    assert "replayed" in _rejected(term)
    # A new command id with an old sequence number is a replay too.
    old_seq = {**desk.command_body(tid, "disable"), "seq": body["seq"]}
    desk.send_command(old_seq)
    res = desk.wait_result(old_seq["cmd_id"], 5)
    assert res["ok"] is False and res["error"] == "replayed"
    assert term.engine.snapshot()["screen"] == "idle"


@pytest.mark.parametrize(
    "attack",
    ["unsigned", "forged_key", "tampered", "expired", "future", "wrong_terminal", "malformed",
     "unknown_type"],
)
def test_bad_commands_change_nothing(pair, attack):
    term, desk, tid = pair
    before = _state(term)
    events_before = len(_events(term, "command_rejected"))
    body = desk.command_body(tid, "disable", {"reason": attack})
    key, kid = desk.key, desk.kid
    if attack == "forged_key":
        key = Ed25519PrivateKey.generate()  # same key id, wrong key
    elif attack == "expired":
        body["issued_ms"] -= 3_600_000
        body["expires_ms"] = body["issued_ms"] + 60_000
    elif attack == "future":
        body["issued_ms"] += 3_600_000
        body["expires_ms"] = body["issued_ms"] + 60_000
    elif attack == "wrong_terminal":
        body["terminal_id"] = "T-OTHER"
    elif attack == "malformed":
        body["seq"] = "one"
    elif attack == "unknown_type":
        body["type"] = "rm_rf"
    payload = seal(key, kid, "cmd", body)
    if attack == "unsigned":
        payload = json.dumps(body).encode()
    elif attack == "tampered":
        env = json.loads(payload)
        env["body"] = env["body"].replace('"disable"', '"enable"')
        payload = json.dumps(env).encode()
    desk.send_raw(tid, topics.CMD, payload, body["cmd_id"].encode())
    wait_for(lambda: len(_events(term, "command_rejected")) > events_before, 5, "rejection")
    res = desk.wait_result(body["cmd_id"], 5)
    assert res is not None and res["ok"] is False
    assert _state(term) == before
    assert desk_ledger.command_record(term.ledger, body["cmd_id"]) is None
    # the rejection also reaches the desk as an event
    wait_for(lambda: _desk_events(desk, tid, "command_rejected"), 5, "event at desk")


def test_a_retained_command_is_never_replayed_to_a_subscribing_terminal(
    broker, desk_key, tmp_path
):
    tid = "TRETAINED"
    desk = make_desk(broker, desk_key, {}, tmp_path / "d.sqlite", client_id="desk-r").start()
    try:
        wait_for(lambda: desk.conn.connected, 5)
        body = desk.command_body(tid, "disable", {"reason": "left on the broker"})
        desk.send_raw(tid, topics.CMD, seal(desk.key, desk.kid, "cmd", body), retain=True,
                      tag=("pub", "retained-disable"))
        assert desk.wait_outcome("retained-disable", 5) == "No matching subscribers"
        term = live_terminal(tmp_path / "t", tid, mqtt_config(broker.port, desk_key))
        try:
            pub = terminal_public_key(term.config)
            desk.terminal_keys[tid] = {key_id(tid, pub): pub}  # to read its results
            wait_for(lambda: term.agent.conn.connected, 5)
            # A later command's result proves the subscription is live and everything
            # the broker had for it was handled: a retained command would have come first.
            result = desk.run_command(desk.command_body(tid, "request_health", {}), 10)
            assert result is not None and result["ok"] is True, result
            assert term.engine.snapshot()["screen"] == "idle"
            assert desk_ledger.command_record(term.ledger, body["cmd_id"]) is None
        finally:
            term.stop()
    finally:
        desk.send_raw(tid, topics.CMD, b"", retain=True)
        desk.stop()


# -- config ----------------------------------------------------------------------------
def test_config_is_applied_atomically_once_and_versioned(pair):
    term, desk, tid = pair
    pin_hash = hash_pin("4321")
    doc = {
        "version": 1,
        "terminal_id": "*",
        "support_phone": NEW_PHONE,
        "commissions": {"mts": [{"from_minor": 0, "percent_bp": 100}]},
        "help_texts": {"how_to_pay": {"ru": "Вставьте купюры", "en": "Insert bills"}},
        "technician_pin_hash": pin_hash,
    }
    desk.publish_config(tid, doc)
    wait_for(lambda: desk_ledger.current_config(term.ledger) is not None, 5, "config applied")
    assert term.engine.support_phone == NEW_PHONE
    assert term.engine.config.catalog.get("mts").commission(100_000) == 1000
    assert term.agent.help_texts["how_to_pay"]["en"] == "Insert bills"
    snap = term.engine.snapshot()  # the UI gets the help texts and the config version
    assert snap["help_texts"]["how_to_pay"]["ru"] == "Вставьте купюры"
    assert snap["config_version"] == 1
    assert term.engine.technician.login("4321")
    wait_for(lambda: desk.health[tid]["config_version"] == 1, 5)
    applied = len(_events(term, "config_applied"))

    # A broken v2 changes nothing at all (not even its valid support phone).
    desk.publish_config(tid, {**doc, "version": 2, "support_phone": "8 800 000-00-02",
                              "commissions": {"mts": [{"percent_bp": -1}]}})
    wait_for(lambda: "bad_value" in _rejected(term, "config_rejected"), 5, "rejected")
    assert term.engine.support_phone == NEW_PHONE
    assert desk_ledger.current_config(term.ledger)[0] == 1

    # Stale versions are rejected; a forged one too.
    desk.publish_config(tid, {**doc, "version": 1, "support_phone": "8 800 000-00-03"})
    wait_for(lambda: "stale_version" in _rejected(term, "config_rejected"), 5)
    forged = seal(Ed25519PrivateKey.generate(), desk.kid, "config", {**doc, "version": 9})
    desk.send_raw(tid, topics.CONFIG, forged, retain=True)
    wait_for(lambda: "bad_signature" in _rejected(term, "config_rejected"), 5)
    assert desk_ledger.current_config(term.ledger)[0] == 1

    # Reconnecting re-delivers the retained document: applied once only.
    desk.publish_config(tid, {**doc, "version": 3})
    wait_for(lambda: desk_ledger.current_config(term.ledger)[0] == 3, 5)
    term.agent.conn._lost("test: drop the link")
    wait_for(lambda: term.agent.conn.connected, 10, "reconnected")
    # The retained document comes with the new subscription, before a later command.
    result = desk.run_command(desk.command_body(tid, "request_health", {}), 10)
    assert result is not None and result["ok"] is True, result
    assert len(_events(term, "config_applied")) == applied + 1
    desk.send_raw(tid, topics.CONFIG, b"", retain=True)  # clear the retained document


def test_unsigned_acks_and_statuses_are_ignored(pair):
    term, desk, tid = pair
    pid = term.pay(500)
    wait_for(lambda: term.ledger.get_payment(pid)["status"] == "accepted", 10)
    evil = DeskKey("desk1")  # a key the terminal does not pin
    body = {"terminal_id": tid, "issued_ms": 0,
            "statuses": [{"payment_id": pid, "status": "failed", "reprocess_count": 0}]}
    desk.send_raw(tid, topics.PAYMENT_STATUS, seal(evil.key, desk.kid, "payment_status", body))
    desk.send_raw(tid, topics.PAYMENT_STATUS, json.dumps(body).encode())
    wait_for(lambda: len(_rejected(term, "desk_message_rejected")) >= 2, 5)
    assert term.ledger.get_payment(pid)["status"] == "accepted"


# -- light sessions (docs/mqtt.md "Light sessions") --------------------------------------
def test_a_light_session_loses_nothing_while_the_terminal_is_away(broker, desk_key, tmp_path):
    """ack and config at QoS 0: the broker keeps neither for an absent terminal. The ack
    published while the terminal is away is dropped, so the terminal's resend after
    reconnecting brings it again (a duplicate the desk stores once); the config comes as
    the retained copy; the payment status, QoS 1, waits in the session."""
    tid = "TL" + str(abs(hash(tmp_path.name)) % 10**6)
    term = live_terminal(tmp_path / "t", tid,
                         mqtt_config(broker.port, desk_key, light_session=True))
    desk = make_desk(broker, desk_key, {tid: terminal_public_key(term.config)},
                     tmp_path / "desk.sqlite", client_id=f"desk-{tid}", ack_delay_s=2.0).start()
    try:
        assert {s.topic.rsplit("/", 1)[-1]: s.qos
                for s in term.agent.conn.settings.subscriptions} == \
            {"cmd": 1, "ack": 0, "payment_status": 1, "config": 0,
             "beat": 0}  # the desk's beat is QoS 0 in any session (sync/desk_beat.py)
        wait_for(lambda: desk.states.get(tid, {}).get("state") == "online", 10, "online")
        pid = term.pay(500)
        wait_for(lambda: desk.stats.new_payments == 1, 10, "stored at the desk")
        # The desk can store the batch before the terminal has counted its PUBACK (the
        # worker marks it sent on its next turn): wait for that, not for the clock.
        wait_for(lambda: term.ledger.get_payment(pid)["status"] == "sent", 1.5,
                 "the PUBACK counted")
        term.agent.stop()  # away before the desk's (slow) ack goes out
        term.agent = None
        wait_for(lambda: desk.states[tid]["state"] == "offline", 5, "offline")
        time.sleep(2.5)  # the ack is published now, to nobody
        assert term.ledger.get_payment(pid)["status"] == "sent"
        desk.publish_config(tid, {"version": 1, "terminal_id": "*",
                                  "support_phone": NEW_PHONE})
        desk.payment_status(tid, [{"payment_id": pid, "status": "processed",
                                   "reprocess_count": 0}])

        term.start_agent()
        wait_for(lambda: term.ledger.get_payment(pid)["status"] == "processed", 15,
                 "the queued status")
        wait_for(lambda: desk_ledger.current_config(term.ledger) is not None, 5,
                 "the retained config")
        assert term.engine.support_phone == NEW_PHONE
        wait_for(lambda: unacked(term) == 0, 15, "the resend acknowledged")
        assert desk.stats.duplicates >= 1  # the dropped ack was made good by the resend
        assert desk.stats.new_payments == 1
        assert [p["payment_id"] for p in desk.store.payments(tid)] == [pid]
        desk.send_raw(tid, topics.CONFIG, b"", retain=True)
    finally:
        desk.stop()
        term.stop()
