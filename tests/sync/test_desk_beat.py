"""The desk's beat (sync/desk_beat.py): its body checked as a table and fuzzed; heard by a
terminal through the shipped TLS config and ACL, which no terminal can use to forge one;
and what it changes in the ack watch on a real mosquitto: a desk that stores but whose
acks never arrive gets the session reset after `ack_stall_heard_s`, and a desk that went
silent holds the reset off. Real mosquitto, real agent, real desk."""

from __future__ import annotations

import ssl
import threading
import time
import zlib
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from sync import desk_beat
from sync.ack_watch import MAX_FACTOR
from sync.desk import Desk
from sync.desk_beat import Beat, BeatError, beat_body, read_beat
from tests.sync.conftest import KitBroker, make_desk, wait_for
from tests.sync.terminal import (
    desk_payment_counts,
    live_terminal,
    make_payments,
    mqtt_config,
    terminal_public_key,
    unacked,
)

NOW_MS = 1_767_225_600_000


def _body(**changes: Any) -> dict[str, Any]:
    body = beat_body("desk-serve-1", 60.0, NOW_MS, (3, [1]))
    body.update(changes)
    return body


def test_a_beat_reads_back_and_names_the_terminals_it_covers():
    beat = read_beat(_body(), NOW_MS + 5_000, 300)
    assert beat == Beat("desk-serve-1", 60.0, 3, frozenset({1}), NOW_MS)
    ids = [f"T{i:04d}" for i in range(60)]
    assert {t for t in ids if beat.covers(t)} == {t for t in ids if zlib.crc32(t.encode()) % 3 == 1}
    assert 0 < sum(beat.covers(t) for t in ids) < len(ids)
    everyone = read_beat(beat_body("desk", 30, NOW_MS), NOW_MS, 300)
    assert everyone.n == 0 and all(everyone.covers(t) for t in ids)
    assert read_beat(_body(parts=[2, 0, 1]), NOW_MS, 300).covers("anything")


@pytest.mark.parametrize("changes, code, words", [
    ({"v": 2}, "malformed", "v must be 1"),
    ({"worker": ""}, "malformed", "worker"),
    ({"worker": 7}, "malformed", "worker"),
    ({"every_s": 0.5}, "malformed", "every_s"),
    ({"every_s": True}, "malformed", "every_s"),
    ({"every_s": float("nan")}, "malformed", "every_s"),
    ({"every_s": 7200}, "malformed", "every_s"),
    ({"n": -1}, "malformed", "n must be"),
    ({"n": 1.0}, "malformed", "n must be"),
    ({"n": 100_000}, "malformed", "n must be"),
    ({"parts": [3]}, "malformed", "parts"),
    ({"parts": [True]}, "malformed", "parts"),
    ({"parts": "1"}, "malformed", "parts"),
    ({"parts": []}, "malformed", "at least one partition"),
    ({"n": 0, "parts": [0]}, "malformed", "parts"),
    ({"issued_ms": "now"}, "malformed", "issued_ms"),
    ({"issued_ms": NOW_MS - 301_000}, "stale", "301 s before"),
    ({"issued_ms": NOW_MS + 301_000}, "stale", "301 s after"),
])
def test_a_beat_that_says_nothing_reliable_is_refused_with_its_reason(changes, code, words):
    with pytest.raises(BeatError) as err:
        read_beat(_body(**changes), NOW_MS, 300)
    assert err.value.code == code and words in str(err.value)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)


@given(st.dictionaries(st.sampled_from(["v", "worker", "every_s", "n", "parts", "issued_ms",
                                        "x"]), _json), st.integers(-2**63, 2**63))
def test_any_body_is_a_beat_or_a_coded_refusal(body, now_ms):
    try:
        beat = read_beat(body, now_ms, 300)
    except BeatError as exc:
        assert exc.code in ("malformed", "stale")
    else:
        assert beat.n == 0 or all(0 <= p < beat.n for p in beat.parts)
        beat.covers("T0001")


def test_the_desk_refuses_a_beat_period_it_could_not_keep(broker, desk_key, tmp_path):
    for bad in (0.5, 7200.0):
        with pytest.raises(ValueError, match="beat every"):
            make_desk(broker, desk_key, {}, tmp_path / "d.sqlite", beat_s=bad)


def _tls_client(kb: Any, name: str) -> mqtt.Client:
    cert = kb.terminal(name)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=str(kb.kit.terminal_ca), certfile=str(cert[0]), keyfile=str(cert[1]),
              cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    return c


def test_terminals_hear_the_beat_through_the_shipped_acl_and_none_can_forge_it(
        kit_broker, desk_key, tmp_path):
    kb = kit_broker
    cert = kb.terminal("BEAT1")
    cfg = mqtt_config(kb.port, desk_key, tls_ca=kb.kit.terminal_ca, tls_cert=cert[0],
                      tls_key=cert[1])
    t = live_terminal(tmp_path / "t", "BEAT1", cfg)
    desk = Desk("127.0.0.1", kb.desk_port, desk_key.key, desk_key.kid,
                {"BEAT1": terminal_public_key(t.config)}, tmp_path / "desk.sqlite",
                client_id="desk-beat", tls=kb.desk_tls(), beat_s=1.0).start()
    spy = _tls_client(kb, "BEATSPY")
    captured: list[bytes] = []
    outcomes: list[str] = []
    published = threading.Event()
    spy.on_message = lambda c, u, m: captured.append(bytes(m.payload))
    spy.on_publish = lambda c, u, mid, rc, p: (outcomes.append(str(rc)), published.set())
    try:
        assert t.agent is not None
        agent = t.agent
        wait_for(lambda: agent.ack_watch.beats >= 2, 15, "two desk beats heard over TLS")
        assert agent.conn.stats.optional_refused == 0
        spy.connect("127.0.0.1", kb.port)
        spy.loop_start()
        wait_for(spy.is_connected, 5, "the spy connected")
        spy.subscribe(desk_beat.TOPIC, 0)  # every terminal may read the beat ...
        wait_for(lambda: bool(captured), 10, "a beat captured by another terminal")
        desk.stop()
        desk = None
        time.sleep(0.3)
        heard = agent.ack_watch.beats
        spy.publish(desk_beat.TOPIC, captured[-1], qos=1)  # ... and none may replay it
        assert published.wait(5)
        time.sleep(1.0)
        assert agent.ack_watch.beats == heard, "a terminal's replayed beat reached another"
        assert outcomes == ["Not authorized"]
    finally:
        spy.loop_stop()
        spy.disconnect()
        if desk is not None:
            desk.stop()
        t.stop()


def test_a_broker_whose_acl_predates_the_beat_delivers_none_and_the_terminal_goes_on(
        desk_key, tmp_path):
    """The shipped ACL without its beat line (a broker not yet upgraded): mosquitto grants
    the subscription and delivers nothing on it (it checks on delivery; a NATS node
    refuses the SUBSCRIBE: test_cluster_tls.py); the session stays, payments are acked,
    and the watch runs on its first rule."""
    kb = KitBroker(tmp_path / "old")
    acl = kb.kit.acl.read_text()
    assert desk_beat.TOPIC in acl
    kb.kit.acl.write_text("\n".join(ln for ln in acl.splitlines() if desk_beat.TOPIC not in ln))
    kb.broker.start()
    cert = kb.terminal("OLDACL")
    t = live_terminal(tmp_path / "t", "OLDACL", mqtt_config(
        kb.port, desk_key, tls_ca=kb.kit.terminal_ca, tls_cert=cert[0], tls_key=cert[1]))
    desk = Desk("127.0.0.1", kb.desk_port, desk_key.key, desk_key.kid,
                {"OLDACL": terminal_public_key(t.config)}, tmp_path / "desk.sqlite",
                client_id="desk-old", tls=kb.desk_tls(), beat_s=1.0).start()
    try:
        assert t.agent is not None
        agent = t.agent
        make_payments(t.ledger, 2)
        wait_for(lambda: unacked(t) == 0, 20, "acknowledged without the beat")
        wait_for(lambda: desk.stats.beats_sent >= 3, 10, "beats sent")
        time.sleep(1.0)
        assert agent.ack_watch.beats == 0 and not agent.ack_watch.desk_holds()
        assert agent.link_status().state == "connected" and agent.conn.stats.connects == 1
    finally:
        desk.stop()
        t.stop()
        kb.broker.stop()


def test_a_desk_that_stores_but_whose_acks_never_come_gets_the_session_reset_sooner(
        broker, desk_key, tmp_path):
    """The desk beats and stores, the acks do not arrive (here: not sent; on NATS: a
    consumer lost): the heard rule resets after 2 s of heard time, long before the first
    rule's 600 s. Then a desk that acks: every payment once, acknowledged."""
    cfg = mqtt_config(broker.port, desk_key, resend_after_s=0.5, ack_stall_s=600,
                      ack_stall_heard_s=2.0)
    t = live_terminal(tmp_path / "t", "HEARD", cfg)
    keys = {"HEARD": terminal_public_key(t.config)}
    desk = make_desk(broker, desk_key, keys, tmp_path / "desk.sqlite", auto_ack=False,
                     beat_s=1.0).start()
    try:
        assert t.agent is not None
        agent = t.agent
        expected = set(make_payments(t.ledger, 3))
        wait_for(lambda: agent.ack_watch.resets >= 1, 30, "a reset with the desk heard")
        event = t.ledger.recent_events(kinds=("session_reset",))[0]
        assert event["data"]["heard_s"] >= 2 and event["data"]["waited_s"] < 600
        wait_for(lambda: len(desk.store.payments()) == 3, 10, "the desk stored them")
        assert unacked(t) >= 3  # stored, never acknowledged: nothing marked delivered (M8)
        desk.stop()
        desk = make_desk(broker, desk_key, keys, tmp_path / "desk.sqlite", beat_s=1.0).start()
        wait_for(lambda: unacked(t) == 0, 60, "every record acknowledged")
        rows, distinct = desk_payment_counts(tmp_path / "desk.sqlite")
        assert rows == distinct == 3
        assert {p["payment_id"] for p in desk.store.payments()} == expected
        assert agent.ack_watch.factor == 1
    finally:
        desk.stop()
        t.stop()


def test_a_desk_gone_silent_holds_the_reset_until_it_has_been_silent_for_the_longest_wait(
        broker, desk_key, tmp_path):
    """ack_stall_s 1 s would reset within about 1.5 s of a desk that is down; heard once,
    the desk's silence holds that off for ack_stall_s·MAX_FACTOR (8 s), then the first
    rule judges as before. Nothing is lost either way."""
    cfg = mqtt_config(broker.port, desk_key, resend_after_s=0.5, ack_stall_s=1.0,
                      ack_stall_heard_s=600)
    t = live_terminal(tmp_path / "t", "SILENT", cfg)
    desk: Desk | None = make_desk(broker, desk_key, {"SILENT": terminal_public_key(t.config)},
                                  tmp_path / "desk.sqlite", beat_s=1.0).start()
    try:
        assert t.agent is not None and desk is not None
        agent = t.agent
        make_payments(t.ledger, 1)
        wait_for(lambda: unacked(t) == 0 and agent.ack_watch.beats >= 1, 20,
                 "acked with the desk heard")
        desk.stop()
        desk = None
        silent_from = time.monotonic()
        make_payments(t.ledger, 2)
        wait_for(lambda: agent.ack_watch.waited_s() > 0, 10, "payments taken, no desk")
        time.sleep(4.0)  # four times the first rule's wait: what does not happen
        assert agent.ack_watch.resets == 0 and agent.ack_watch.desk_holds()
        wait_for(lambda: agent.ack_watch.resets >= 1, 20, "the first rule, once the hold ends")
        assert time.monotonic() - silent_from >= 1.0 * MAX_FACTOR - 1.5  # one beat period
        assert unacked(t) >= 2  # the payments (and events) wait in the outbox: none lost
    finally:
        if desk is not None:
            desk.stop()
        t.stop()


def test_beats_from_a_desk_whose_clock_is_off_are_refused_and_recorded_once(
        broker, desk_key, tmp_path):
    """A desk clock 10 minutes ahead (or this terminal's behind): every beat is stale.
    None is heard, and the refusal is one event, not one a minute for each worker."""
    t = live_terminal(tmp_path / "t", "SKEW", mqtt_config(broker.port, desk_key))
    desk = make_desk(broker, desk_key, {"SKEW": terminal_public_key(t.config)},
                     tmp_path / "desk.sqlite", beat_s=1.0,
                     clock=lambda: time.time() + 600).start()
    try:
        assert t.agent is not None
        agent = t.agent
        wait_for(lambda: desk.stats.beats_sent >= 4, 15, "four beats sent")
        make_payments(t.ledger, 1)
        wait_for(lambda: unacked(t) == 0, 20, "acknowledged: the acks do not depend on it")
        events = [e for e in t.ledger.recent_events(kinds=("desk_message_rejected",))
                  if e["data"].get("topic") == desk_beat.TOPIC]
        assert len(events) == 1, events
        assert events[0]["data"]["reason"] == "stale" and "600 s after" in \
            events[0]["data"]["detail"]
        assert agent.ack_watch.beats == 0 and not agent.ack_watch.desk_holds()
    finally:
        desk.stop()
        t.stop()
