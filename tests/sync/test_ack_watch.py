"""The ack watch (sync/ack_watch.py): its rules on a fake clock, the session reset on a
real mosquitto (MQTT 5 and 3.1.1), and a desk that is down: the terminal resets, backs
off, and loses nothing. The lost-consumer case on a real NATS cluster is in
test_cluster.py."""

from __future__ import annotations

import threading
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from sync.ack_watch import JITTER, MAX_FACTOR, AckWatch
from sync.connection import Connection, ConnSettings, Subscription, Will
from tests.sync.conftest import make_desk, wait_for
from tests.sync.terminal import (
    desk_payment_counts,
    live_terminal,
    make_payments,
    mqtt_config,
    terminal_public_key,
    unacked,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _watch(stall_s: float, top: bool = False) -> tuple[AckWatch, Clock]:
    clock = Clock()
    return AckWatch(stall_s, clock, rng=lambda lo, hi: hi if top else lo), clock


def test_due_only_after_a_stall_of_taken_publishes():
    w, clock = _watch(60)
    clock.now += 1000
    assert not w.due()  # nothing taken: nothing to wait for
    w.taken()
    clock.now += 59
    w.taken()  # later publishes do not move the start
    assert not w.due() and w.waited_s() == 59
    clock.now += 1
    assert w.due()
    w.acked()
    assert not w.due() and w.waited_s() == 0


def test_a_new_connection_starts_the_wait_afresh():
    w, clock = _watch(60)
    w.taken()
    clock.now += 59
    w.connected()
    clock.now += 30
    assert not w.due()


def test_jitter_stretches_the_wait_up_to_half():
    w, clock = _watch(60, top=True)
    w.taken()
    clock.now += 60 * (1 + JITTER) - 0.1
    assert not w.due()
    clock.now += 0.1
    assert w.due()


def test_resets_back_off_to_a_cap_and_an_ack_restores_the_period():
    w, clock = _watch(10)
    waits = []
    for _ in range(6):
        w.taken()
        start = clock.now
        while not w.due():
            clock.now += 1
        waits.append(clock.now - start)
        w.reset_started()
    assert waits == [10, 20, 40, 80, 80, 80] and MAX_FACTOR == 8 and w.resets == 6
    w.acked()
    w.taken()
    clock.now += 10
    assert w.due()


def test_off_and_bad_values():
    w, clock = _watch(0)
    w.taken()
    clock.now += 1e9
    assert not w.due()
    with pytest.raises(ValueError):
        AckWatch(-1)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.lock = threading.Lock()

    def on_connected(self, connection_id: str, session_present: bool) -> None:
        with self.lock:
            self.events.append(("connected", session_present))

    def on_disconnected(self, reason: str) -> None:
        with self.lock:
            self.events.append(("disconnected", reason))

    def on_message(self, msg: Any) -> None:
        with self.lock:
            self.events.append(("message", msg.payload))

    def on_published(self, tag: Any, ok: bool, reason: str) -> None: ...

    def kinds(self, kind: str) -> list[Any]:
        with self.lock:
            return [v for k, v in self.events if k == kind]


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_reset_drops_the_session_keeps_no_will_and_makes_the_subscriptions_again(
        broker, protocol):
    cid = f"RESET{protocol.replace('.', '')}"
    topic = f"kiosk/v1/{cid}/cmd"
    wills: list[bytes] = []
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{cid}-watch")
    watcher.on_message = lambda c, u, m: wills.append(m.payload)
    watcher.connect("127.0.0.1", broker.port)
    watcher.subscribe(f"kiosk/v1/{cid}/state", 1)
    watcher.loop_start()
    rec = Recorder()
    conn = Connection(ConnSettings(
        "127.0.0.1", broker.port, cid, protocol=protocol, reconnect_min_s=0.1,
        reconnect_max_s=0.2,
        # the Will names its connection: a takeover's Will is told apart from the reset's
        will=Will(f"kiosk/v1/{cid}/state", lambda connection_id: connection_id.encode()),
        subscriptions=(Subscription(topic, 1),)), rec)
    conn.start()
    try:
        wait_for(lambda: rec.kinds("connected") == [False], 10, "the first session")
        # another client takes the session over and leaves: the reconnect finds it kept
        other = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid,
                            protocol=mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311,
                            **({} if protocol == "5" else {"clean_session": False}))
        keep = Properties(PacketTypes.CONNECT)
        keep.SessionExpiryInterval = 3600  # MQTT 5: else the session ends with `other`
        other.connect("127.0.0.1", broker.port, **({"clean_start": False, "properties": keep}
                                                   if protocol == "5" else {}))
        wait_for(lambda: other.loop(0.1) == mqtt.MQTT_ERR_SUCCESS and other.is_connected(),
                 5, "the other client's CONNACK")
        other.disconnect()
        wait_for(lambda: rec.kinds("connected") == [False, True], 10, "the session kept")
        reset_id = conn.connection_id.encode()
        conn.reset_session()
        wait_for(lambda: len(rec.kinds("connected")) == 3, 10, "the session made again")
        assert rec.kinds("connected")[-1] is False  # a new session, not the old one
        assert "session reset" in rec.kinds("disconnected")
        conn.publish(topic, b"after the reset", qos=1)
        wait_for(lambda: b"after the reset" in rec.kinds("message"), 10, "the subscription")
        assert reset_id not in wills  # left normally: no Will
    finally:
        conn.stop()
        watcher.loop_stop()
        watcher.disconnect()


def test_a_desk_that_is_down_gets_resets_that_back_off_and_nothing_is_lost(
        broker, desk_key, tmp_path):
    cfg = mqtt_config(broker.port, desk_key, resend_after_s=0.5, ack_stall_s=1.0)
    t = live_terminal(tmp_path / "t", "ACKW", cfg)
    desk = None
    try:
        assert t.agent is not None
        expected = set(make_payments(t.ledger, 3))
        wait_for(lambda: t.agent is not None and t.agent.ack_watch.resets >= 2, 30,
                 "two resets with no desk")
        assert t.agent.ack_watch.factor == 4  # each reset without an ack doubles the wait
        assert unacked(t) >= 3
        desk = make_desk(broker, desk_key, {"ACKW": terminal_public_key(t.config)},
                         tmp_path / "desk.sqlite").start()
        wait_for(lambda: unacked(t) == 0, 60, "every record acknowledged")
        rows, distinct = desk_payment_counts(tmp_path / "desk.sqlite")
        assert rows == distinct == 3
        assert {p["payment_id"] for p in desk.store.payments()} == expected
        assert t.agent.ack_watch.factor == 1  # the first ack ends the back-off
        resets = t.ledger.recent_events(kinds=("session_reset",))
        assert len(resets) == t.agent.ack_watch.resets and resets[0]["severity"] == "warning"
    finally:
        if desk is not None:
            desk.stop()
        t.stop()
