"""The ack watch (sync/ack_watch.py): its rules on a fake clock, the session reset on a
real mosquitto (MQTT 5 and 3.1.1), and a desk that is down: the terminal resets, backs
off, and loses nothing. The lost-consumer case on a real NATS cluster is in
test_cluster.py."""

from __future__ import annotations

import threading
import time
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


def test_a_new_session_starts_the_wait_afresh():
    w, clock = _watch(60)
    w.taken()
    clock.now += 59
    w.disconnected()
    w.connected(session_present=False)  # its subscriptions were made anew
    clock.now += 30
    assert not w.due() and w.waited_s() == 0


def test_a_kept_session_keeps_the_wait_and_counts_only_connected_time():
    w, clock = _watch(60)
    w.taken()
    clock.now += 40
    w.disconnected()
    clock.now += 3600  # an hour offline: not the session's fault
    assert w.waited_s() == 40 and not w.due()
    w.connected(session_present=True)
    assert not w.due()  # back from a long outage: the held acks get their chance
    clock.now += 19
    assert w.waited_s() == 59 and not w.due()
    clock.now += 1
    assert w.due()


def test_a_link_that_drops_more_often_than_the_wait_still_gets_its_reset():
    """The case a per-connection wait missed: 20 s connections, a 60 s wait."""
    w, clock = _watch(60)
    w.connected(session_present=True)
    w.taken()
    for _ in range(2):
        clock.now += 20
        w.disconnected()
        clock.now += 5
        w.connected(session_present=True)
    assert w.waited_s() == 40 and not w.due()
    clock.now += 20
    assert w.due()


def test_a_puback_reported_after_the_link_went_counts_from_the_next_connection():
    w, clock = _watch(60)
    w.disconnected()
    w.taken()  # the PUBACK came before the drop, its report after
    clock.now += 100
    assert w.waited_s() == 0 and not w.due()
    w.connected(session_present=True)
    clock.now += 60
    assert w.due()


def test_a_connection_that_ended_unreported_is_counted_once():
    w, clock = _watch(60)
    w.taken()
    clock.now += 30
    w.connected(session_present=True)  # no disconnected() before it
    clock.now += 30
    assert w.waited_s() == 60 and w.due()


def test_an_ack_or_a_reset_ends_the_wait_across_connections():
    w, clock = _watch(60)
    w.taken()
    clock.now += 50
    w.disconnected()
    w.connected(session_present=True)
    w.acked()
    clock.now += 50
    assert w.waited_s() == 0
    w.taken()
    clock.now += 60
    assert w.due()
    w.reset_started()
    w.connected(session_present=True)
    clock.now += 1000
    assert not w.due()  # nothing taken since the reset


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


def test_a_flapping_link_that_keeps_its_session_still_gets_reset(broker, desk_key, tmp_path):
    """No desk acks, and the terminal's connection is taken over every ~0.6 s, less than
    the 2-3 s wait; each reconnect finds the session kept (session_present), as a link
    to a broken NATS session that keeps dropping would. The wait counts on across those
    connections, so the reset still comes; before, every reconnect forgot it."""
    cfg = mqtt_config(broker.port, desk_key, resend_after_s=0.5, ack_stall_s=2.0,
                      reconnect_min_s=0.05, reconnect_max_s=0.1)
    t = live_terminal(tmp_path / "t", "FLAP", cfg)
    keep = Properties(PacketTypes.CONNECT)
    keep.SessionExpiryInterval = 3600
    takeovers = 0
    try:
        assert t.agent is not None
        agent = t.agent
        make_payments(t.ledger, 2)
        wait_for(lambda: agent.ack_watch.waited_s() > 0, 20, "payments taken by the broker")
        deadline = time.monotonic() + 40
        while agent.ack_watch.resets == 0 and time.monotonic() < deadline:
            wait_for(lambda: agent.link_status().state == "connected", 10, "reconnected")
            time.sleep(0.6)
            if agent.ack_watch.resets:
                break
            other = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="FLAP",
                                protocol=mqtt.MQTTv5)
            other.connect("127.0.0.1", broker.port, clean_start=False, properties=keep)
            wait_for(lambda o=other: o.loop(0.05) == mqtt.MQTT_ERR_SUCCESS
                     and o.is_connected(), 5, "the takeover's CONNACK")
            other.disconnect()
            takeovers += 1
        assert agent.ack_watch.resets >= 1, f"no reset after {takeovers} takeovers"
        assert takeovers >= 3  # the reset came over several connections, none long enough
        assert unacked(t) >= 2  # no desk: nothing was acknowledged, nothing lost
    finally:
        t.stop()


# -- the desk's beat (sync/desk_beat.py) -------------------------------------------------
def _heard_watch(stall_s: float = 900, heard_s: float = 60) -> tuple[AckWatch, Clock]:
    clock = Clock()
    return AckWatch(stall_s, clock, rng=lambda lo, hi: lo, heard_stall_s=heard_s), clock


def _beats(w: AckWatch, clock: Clock, seconds: float, every: float = 10) -> None:
    for _ in range(int(seconds // every)):
        clock.now += every
        w.heard(every)


def test_a_desk_that_beats_while_acks_stay_away_resets_sooner():
    w, clock = _heard_watch()
    w.heard(10)
    w.taken()
    _beats(w, clock, 50)
    assert w.heard_waited_s() == 50 and not w.due()
    _beats(w, clock, 10)
    assert w.heard_waited_s() == 60 and w.due()  # 60 s heard, not the 900 s of the first rule
    assert w.waited_s() == 60
    w.reset_started()
    assert w.next_wait_s == 120 and w.heard_waited_s() == 0  # doubled, as the first rule's


def test_only_time_with_the_desk_heard_counts_and_a_desk_silent_for_long_counts_little():
    w, clock = _heard_watch()
    w.taken()  # no beat yet: nothing counts until the first one marks the start
    clock.now += 500
    w.heard(10)
    assert w.heard_waited_s() == 0
    clock.now += 300  # the desk silent for 5 minutes (restarting): at most two beat periods
    w.heard(10)
    assert w.heard_waited_s() == 20 and not w.due()


def test_offline_time_and_a_new_session_do_not_count_with_the_desk_heard():
    w, clock = _heard_watch()
    w.heard(10)
    w.taken()
    _beats(w, clock, 40)
    w.disconnected()
    clock.now += 5
    w.heard(10)  # a beat reported after the drop
    clock.now += 100
    w.connected(session_present=True)
    w.heard(10)  # the first beat of the connection marks, it does not count the outage
    assert w.heard_waited_s() == 40
    _beats(w, clock, 20)
    assert w.due()
    w.connected(session_present=False)
    assert w.heard_waited_s() == 0 and not w.due()


def test_a_silent_desk_holds_the_first_rule_until_it_has_been_silent_for_the_longest_wait():
    w, clock = _heard_watch(stall_s=100)
    w.heard(10)
    w.taken()
    clock.now += 100 * MAX_FACTOR - 1  # the desk went away: silence, not a lost session
    assert w.waited_s() >= 100 and w.desk_holds() and not w.due()
    assert w.next_wait_s == 60  # the beats judge while the desk holds
    clock.now += 1
    assert not w.desk_holds() and w.due() and w.next_wait_s == 100  # judged as before


def test_without_beats_or_with_them_off_the_first_rule_is_unchanged():
    w, clock = _heard_watch(stall_s=100)
    w.taken()
    clock.now += 100
    assert w.due()  # never heard: an older desk, or an ACL that refused the beat
    off, clock = _heard_watch(stall_s=100, heard_s=0)
    off.heard(10)
    off.taken()
    _beats(off, clock, 100)
    assert off.due() and not off.desk_holds()  # beats unused: the first rule judges
    with pytest.raises(ValueError):
        AckWatch(10, heard_stall_s=-1)


def test_beats_rarer_than_the_heard_wait_end_it_after_one_beat_period():
    """Six partitioned workers beating every 360 s (docs/fleet.md "200,000 terminals"):
    a terminal hears its own worker's beat every 360 s; the 300 s heard wait ends at the
    first beat that brings 300 s or more, not never."""
    w, clock = _heard_watch(heard_s=300)
    w.heard(360)
    w.taken()
    clock.now += 360
    w.heard(360)
    assert w.heard_waited_s() == 360 and w.due()
