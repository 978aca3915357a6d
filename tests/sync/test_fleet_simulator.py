"""The fleet benchmark's simulated terminals (bench/fleet.py) carry the agent's ack watch:
publishes PUBACKed and no desk ack for `ack_stall_s` → the session is started afresh the
way sync.connection does it; and, as the agent, they drop a connection whose SUBACK
refused a subscription and subscribe again after the backoff. The benchmark's figures
after a full-cluster loss rest on this copy behaving like the agent, so it is checked
here on a real mosquitto (a real NATS node for the refusal) with the benchmark's own
worker and desk processes, MQTT 5 and 3.1.1 (the NATS runs' protocol)."""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bench.fleet import PYTHON, Proc, _fleet_ids, desk_key
from sync.keys import key_id, public_b64
from tests.sync.broker import free_port, spawn_listening, stop_process
from tests.sync.conftest import wait_for
from tests.sync.nats import nats_server_path

STALL_S = 1.0


def _stats(worker: Proc) -> dict[str, Any]:
    return worker.ask({"op": "stats"}, timeout=20)


def _states(broker_port: int, tid: str) -> tuple[mqtt.Client, list[dict[str, Any]]]:
    """Every `state` message of the terminal (its Wills included), as they come."""
    seen: list[dict[str, Any]] = []
    lock = threading.Lock()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"watch-{tid}")

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        with lock:
            seen.append(json.loads(msg.payload))

    c.on_message = on_message
    c.connect("127.0.0.1", broker_port)
    c.subscribe(f"kiosk/v1/{tid}/state", qos=1)
    c.loop_start()
    return c, seen


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_simulated_terminal_without_acks_resets_its_session_and_is_acked_once_the_desk_is_up(
        own_broker: Any, tmp_path: Path, protocol: str) -> None:
    broker = own_broker  # its own: no retained state or session from another test
    tid = _fleet_ids(1)[0]  # the one terminal whose key the benchmark's desk pins
    dk = desk_key()
    keys = {"desk_kid": key_id("desk", dk.public_key()), "desk_pub": public_b64(dk.public_key())}
    watcher, states = _states(broker.port, tid)
    worker = Proc([PYTHON, "-m", "bench.fleet", "worker", json.dumps({
        "port": broker.port, "ids": [tid], "seed": 7, "ack_stall_s": STALL_S,
        "protocol": protocol, **keys})], "worker")
    desk: Proc | None = None
    try:
        worker.send({"op": "connect", "jitter_s": 0})
        wait_for(lambda: _stats(worker)["connected"] == 1, 15, "the terminal connected")
        worker.send({"op": "rates", "health_s": 60, "pay_per_h": 7200})  # two a second
        # no desk: PUBACKs come, acks do not; waits of 1-1.5 s, then 2-3 s
        wait_for(lambda: _stats(worker)["stats"].get("session_resets", 0) >= 2, 20,
                 "two session resets")
        worker.send({"op": "quiet"})
        st = _stats(worker)
        resets = st["stats"]["session_resets"]
        assert st["pending"] > 0 and st["stats"].get("acked", 0) == 0
        # each reset: one clean session accepted, then a persistent one the broker made anew
        wait_for(lambda: _stats(worker)["stats"].get("reset_connects", 0) >= resets, 15,
                 "the resets' persistent sessions")
        st = _stats(worker)["stats"]
        assert st.get("clean_connects", 0) >= resets, st
        assert st.get("fresh_sessions", 0) >= resets, st
        assert st.get("reconnects", 0) == 0, st  # a reset is not counted as a reconnect
        # the reset leaves with a normal DISCONNECT: no Will, so no "offline" at all
        assert [s for s in states if s.get("state") == "offline"] == []
        online = {s["connection_id"] for s in states if s.get("state") == "online"}
        assert len(online) >= 1 + resets, states  # a new connection after every reset

        db = tmp_path / "desk.sqlite"
        desk = Proc([PYTHON, "-m", "bench.fleet", "desk", json.dumps({
            "port": broker.port, "desk_port": broker.port, "tls": None, "terminals": 1,
            "db": str(db), "client_id": "desk", **keys})], "desk")
        assert desk.read(60).get("ready")
        # the next reset (the wait doubled: 4-6 s) sends everything again; the desk stores
        # and acks it through the ack subscription the new session made
        wait_for(lambda: _stats(worker)["pending"] == 0, 30, "every payment acknowledged")
        st = _stats(worker)
        made = st["stats"]["payments"]
        assert st["stats"]["acked"] == made
        conn = sqlite3.connect(db, timeout=10)
        try:
            stored, distinct = conn.execute(
                "SELECT count(*), count(DISTINCT payment_id) FROM payments "
                "WHERE terminal_id = ?", (tid,)).fetchone()
        finally:
            conn.close()
        assert stored == distinct == made
        # acked: the watch is back at rest and resets no more
        after = st["stats"]["session_resets"]
        time.sleep(3 * STALL_S * 1.5)
        assert _stats(worker)["stats"]["session_resets"] == after
    finally:
        worker.stop()
        if desk is not None:
            desk.stop()
        watcher.loop_stop()
        watcher.disconnect()



def _nats_conf(path: Path, ports: tuple[int, int], deny: str | None) -> None:
    """One NATS node, JetStream and MQTT; connections without credentials are the user
    `term`, whose subscribe permission denies `deny` (NATS then answers SUBACK 0x80)."""
    sub = f'{{ allow: ">", deny: "{deny}" }}' if deny else '">"'
    path.write_text(
        f'server_name: s1\nlisten: 127.0.0.1:{ports[0]}\n'
        f'jetstream {{ store_dir: "{path.parent / "js"}" }}\n'
        f'mqtt {{ listen: 127.0.0.1:{ports[1]} }}\n'
        f'authorization {{ users: [ {{ user: term, password: "not-used", permissions: '
        f'{{ publish: ">", subscribe: {sub} }} }} ] }}\nno_auth_user: term\n',
        encoding="utf-8")


def test_a_refused_subscription_makes_the_simulated_terminal_reconnect_as_the_agent_does(
        tmp_path: Path) -> None:
    """A SUBACK failure (NATS answers so when a consumer's creation times out under
    load; here a NATS node whose permissions deny the terminal's ack subject) drops the
    connection and subscribes again after the backoff, as sync/connection.py's
    `subscribe_refused`; once the node accepts the subscription (permissions reloaded)
    the terminal stays connected. Before, the simulator ignored the refusal and the
    terminal waited for its ack watch; then it reset its backoff at CONNACK, so a
    refusal was retried after the shortest delay every time."""
    tid = _fleet_ids(1)[0]
    exe = nats_server_path()
    assert exe, "nats-server is needed (scripts/system-deps.sh)"
    ports = (free_port(), free_port())  # client, MQTT: the same again on the reload
    mqtt_port = ports[1]
    conf = tmp_path / "nats" / "s1.conf"
    conf.parent.mkdir()
    _nats_conf(conf, ports, f"kiosk.v1.{tid}.ack")
    log = tmp_path / "nats" / "s1.log"
    node = spawn_listening([exe, "-c", str(conf)], log, mqtt_port, "nats-server",
                           lambda: log.read_text(errors="replace")[-4000:])
    dk = desk_key()
    worker = Proc([PYTHON, "-m", "bench.fleet", "worker", json.dumps({
        "port": mqtt_port, "ports": [mqtt_port], "protocol": "3.1.1", "ids": [tid], "seed": 7,
        "ack_stall_s": 0, "desk_kid": key_id("desk", dk.public_key()),
        "desk_pub": public_b64(dk.public_key())})], "worker")
    try:
        worker.send({"op": "connect", "jitter_s": 0})
        wait_for(lambda: _stats(worker)["stats"].get("subscribe_refused", 0) >= 3, 60,
                 "three refused subscriptions, each followed by a new connection")
        whole = _stats(worker)
        st = whole["stats"]
        assert st.get("lost:subscribe_refused", 0) >= 3, st
        assert st.get("connects", 0) >= st["lost:subscribe_refused"], st
        # the backoff grows across refusals (the CONNACKs between do not reset it): a
        # refusal storm under load eases instead of feeding itself
        assert whole["backoff_attempts_max"] >= 3, whole
        text = log.read_text(errors="replace")  # the wording differs between releases
        assert "Subscription Violation" in text and f'Subject "kiosk.v1.{tid}.ack"' in text

        _nats_conf(conf, ports, None)
        node.send_signal(signal.SIGHUP)  # reload: the permission lifted
        wait_for(lambda: _stats(worker)["connected"] == 1, 90, "connected, subscribed")
        refused = _stats(worker)["stats"]["subscribe_refused"]
        time.sleep(3)
        st = _stats(worker)
        assert st["connected"] == 1 and st["stats"]["subscribe_refused"] == refused, (
            st, log.read_text(errors="replace")[-3000:])
        assert st["backoff_attempts_max"] == 0, st  # subscribed: the backoff starts afresh
    finally:
        worker.stop()
        stop_process(node)


def test_the_simulated_terminals_hear_the_desk_beat_and_a_refusal_keeps_their_session(
        own_broker: Any, tmp_path: Path) -> None:
    """As the agent: the benchmark's desk beats (beat_s), the simulated terminal verifies
    each beat and feeds its ack watch; on a NATS node whose permissions deny the beat the
    refused SUBSCRIBE is counted and the connection stays (it is optional)."""
    tid = _fleet_ids(1)[0]
    dk = desk_key()
    keys = {"desk_kid": key_id("desk", dk.public_key()), "desk_pub": public_b64(dk.public_key())}
    heard = {"ack_stall_s": 900, "ack_stall_heard_s": 300}
    worker = Proc([PYTHON, "-m", "bench.fleet", "worker", json.dumps({
        "port": own_broker.port, "ids": [tid], "seed": 7, **heard, **keys})], "worker")
    desk = Proc([PYTHON, "-m", "bench.fleet", "desk", json.dumps({
        "port": own_broker.port, "desk_port": own_broker.port, "tls": None, "terminals": 1,
        "db": str(tmp_path / "desk.sqlite"), "client_id": "desk", "beat_s": 1.0, **keys})],
        "desk")
    try:
        assert desk.read(60).get("ready")
        worker.send({"op": "connect", "jitter_s": 0})
        wait_for(lambda: _stats(worker)["stats"].get("beats_heard", 0) >= 2, 20,
                 "two beats heard")
        st = _stats(worker)["stats"]
        assert st.get("beat_rejected", 0) == 0 and st.get("beat_refused", 0) == 0, st
    finally:
        worker.stop()
        desk.stop()

    exe = nats_server_path()
    assert exe, "nats-server is needed (scripts/system-deps.sh)"
    ports = (free_port(), free_port())
    conf = tmp_path / "nats" / "s1.conf"
    conf.parent.mkdir()
    _nats_conf(conf, ports, "kiosk.v1._desk.beat")
    log = tmp_path / "nats" / "s1.log"
    node = spawn_listening([exe, "-c", str(conf)], log, ports[1], "nats-server",
                           lambda: log.read_text(errors="replace")[-4000:])
    worker = Proc([PYTHON, "-m", "bench.fleet", "worker", json.dumps({
        "port": ports[1], "ports": [ports[1]], "protocol": "3.1.1", "ids": [tid], "seed": 7,
        **heard, **keys})], "worker")
    try:
        worker.send({"op": "connect", "jitter_s": 0})
        wait_for(lambda: _stats(worker)["stats"].get("beat_refused", 0) == 1, 30,
                 "the beat's SUBSCRIBE refused")
        time.sleep(1.0)
        whole = _stats(worker)
        assert whole["connected"] == 1 and whole["stats"].get("subscribe_refused", 0) == 0, whole
        assert whole["stats"].get("connects", 0) == 1, whole
    finally:
        worker.stop()
        stop_process(node)


@pytest.mark.parametrize(("timeout", "counted"), [(1.0, True), (20.0, False)])
def test_a_simulated_terminal_waits_its_connect_timeout_for_connack(
        timeout: float, counted: bool) -> None:
    """As the agent's [mqtt] connect_timeout_s (KIOSK_FLEET_CONNECT_TIMEOUT_S in the
    benchmark): against a listener that accepts and never answers (a NATS node holding
    a CONNECT for its js_api_timeout), 1 s gives up and tries again; 20 s is still on its
    first attempt after the 1 s run would have made several."""
    from tests.sync.silent_broker import SilentBroker

    tid = _fleet_ids(1)[0]
    silent = SilentBroker()
    dk = desk_key()
    worker = Proc([PYTHON, "-m", "bench.fleet", "worker", json.dumps({
        "port": silent.port, "protocol": "3.1.1", "ids": [tid], "seed": 7,
        "ack_stall_s": 0, "connect_timeout_s": timeout,
        "desk_kid": key_id("desk", dk.public_key()),
        "desk_pub": public_b64(dk.public_key())})], "worker")
    try:
        worker.send({"op": "connect", "jitter_s": 0})
        if counted:
            wait_for(lambda: _stats(worker)["stats"].get("fail:connack_timeout", 0) >= 2, 60,
                     "two CONNACK timeouts")
            assert silent.count() >= 2
        else:
            wait_for(lambda: silent.count() == 1, 20, "the first attempt")
            time.sleep(4.0)  # four of the 1 s timeouts
            st = _stats(worker)
            assert st["stats"].get("fail:connack_timeout", 0) == 0, st
            assert silent.count() == 1 and st["connected"] == 0
    finally:
        worker.stop()
        silent.close()


def test_the_simulated_terminals_keepalive_outlasts_a_long_connect_timeout() -> None:
    """paho ends a CONNACK wait at the keep-alive (tests/sync/test_connect_timeout.py):
    the simulator's terminals take the keep-alive [mqtt] requires, as the desk does."""
    from bench.fleet import KEEPALIVE_S, keepalive_for
    from kiosk.config import connect_timeout_problem

    assert keepalive_for(10.0) == KEEPALIVE_S == 30
    for timeout in (10.0, 29.5, 30.0, 40.0, 95.0):
        assert connect_timeout_problem(timeout, keepalive_for(timeout)) == ""
