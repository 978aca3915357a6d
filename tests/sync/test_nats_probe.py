"""The terminal probe (sync/nats_probe.py, `python -m sync.nats_kit terminal`, and the fleet
bench's stall report): for each downlink subscription of one terminal, whether a JetStream
consumer can push to the terminal's live connection. Held to hand-made views, to fuzzed
ones, and to a real 3-node cluster where a consumer is taken away under a kept session
(what the ack watch exists for) and a stray one pushes to nobody."""

from __future__ import annotations

import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from bench.fleet import stall_probe_lines
from sync import nats_kit, topics
from sync.nats_probe import Verdict, probe_terminal
from tests.sync.conftest import wait_for
from tests.sync.nats import NatsCluster

T = "T-0042"
MSGS = "$MQTT.msgs.kiosk.v1.{}.{}"


def _consumer(name: str, leaf: str, deliver: str, created: str = "2026-12-07T10:00:00Z",
              delivered: int = 0, acked: int = 0, ack_pending: int = 0, pending: int = 0,
              terminal: str = T) -> dict[str, Any]:
    return {"name": name, "created": created, "push_bound": True,
            "config": {"filter_subject": MSGS.format(terminal, leaf),
                       "deliver_subject": deliver},
            "delivered": {"stream_seq": delivered}, "ack_floor": {"stream_seq": acked},
            "num_ack_pending": ack_pending, "num_pending": pending, "num_redelivered": 0}


def _view(*consumers: dict[str, Any], stream: str = "$MQTT_msgs") -> dict[str, Any]:
    return {"account_details": [{"stream_detail": [{"name": stream,
                                                    "consumer_detail": list(consumers)}]}]}


def _conn(*subjects: str, client: str = T) -> dict[str, Any]:
    return {"mqtt_client": client,
            "subscriptions_list_detail": [{"subject": s} for s in subjects]}


def _subscribed(leaf: str, deliver: str) -> tuple[str, str]:
    """What NATS puts on a connection for one QoS 1 subscription: the plain subject and
    the consumer's deliver subject."""
    return f"kiosk.v1.{T}.{leaf}", deliver


def test_a_bound_consumer_with_nothing_waiting_is_idle_and_not_silent():
    views = [_view(_consumer("S_a", "ack", "$MQTT.sub.A", delivered=5, acked=5))]
    probe = probe_terminal(T, views, {"n1": [_conn(*_subscribed("ack", "$MQTT.sub.A"))],
                                      "n2": []})
    assert probe.nodes == ("n1",)
    assert probe.verdict("ack") is Verdict.IDLE
    (ack,) = (s for s in probe.subscriptions if s.leaf == "ack")
    assert ack.consumers[0].bound_here and ack.consumers[0].delivered == 5
    assert [s.leaf for s in probe.subscriptions] == list(topics.DOWN)
    assert probe.verdict("cmd") is Verdict.NOT_SUBSCRIBED  # nothing on the connection
    assert probe.silent


def test_the_newest_bound_consumer_decides_and_an_older_leftover_is_listed_first():
    views = [_view(
        _consumer("S_new", "ack", "$MQTT.sub.NEW", created="2026-12-07T11:00:00Z",
                  delivered=9, acked=9),
        _consumer("S_old", "ack", "$MQTT.sub.OLD", created="2026-12-07T10:00:00Z",
                  pending=4))]
    probe = probe_terminal(T, views, {"n1": [_conn(*_subscribed("ack", "$MQTT.sub.NEW"))]})
    (ack,) = (s for s in probe.subscriptions if s.leaf == "ack")
    assert [c.name for c in ack.consumers] == ["S_old", "S_new"]
    assert ack.verdict is Verdict.IDLE
    assert not ack.consumers[0].bound_here and ack.consumers[0].pending == 4


@pytest.mark.parametrize(("kw", "verdict"), [
    ({"ack_pending": 1, "delivered": 3, "acked": 2}, Verdict.UNACKED),
    ({"pending": 2, "delivered": 3, "acked": 3}, Verdict.UNDELIVERED),
])
def test_a_bound_consumer_holding_messages_says_which_side_holds_them(kw, verdict):
    views = [_view(_consumer("S_a", "ack", "$MQTT.sub.A", **kw))]
    probe = probe_terminal(T, views, {"n1": [_conn(*_subscribed("ack", "$MQTT.sub.A"))]})
    assert probe.verdict("ack") is verdict
    assert not verdict.silent


def test_consumers_pushing_elsewhere_are_not_bound_and_silent():
    views = [_view(_consumer("S_a", "ack", "$MQTT.sub.GONE", pending=7))]
    probe = probe_terminal(T, views, {"n1": [_conn(f"kiosk.v1.{T}.ack", "$MQTT.sub.NEW")]})
    assert probe.verdict("ack") is Verdict.NOT_BOUND
    assert Verdict.NOT_BOUND.silent
    text = "\n".join(probe.lines())
    assert "none pushing to the live connection" in text and "7 not yet delivered" in text


def test_consumers_with_nothing_of_them_on_the_connection_are_a_lost_subscription():
    """As a refused subscription left one terminal's ack (2.12.8, a connect storm and
    the restart after it): two consumers made after their creation timed out, both with
    undelivered acks, and a connection subscribing the other three leaves but nothing of
    this one."""
    views = [_view(
        _consumer("S_old", "ack", "$MQTT.sub.OLD", delivered=503, pending=7),
        _consumer("S_late", "ack", "$MQTT.sub.LATE", created="2026-12-07T11:00:00Z",
                  delivered=3652, pending=2))]
    others = [x for leaf in ("cmd", "payment_status", "config")
              for x in _subscribed(leaf, f"$MQTT.sub.{leaf}")]
    probe = probe_terminal(T, views, {"n1": [_conn(*others)]})
    assert probe.verdict("ack") is Verdict.LOST_ON_CONNECTION
    assert Verdict.LOST_ON_CONNECTION.silent and probe.silent


def test_no_consumer_is_silent_at_qos_1_and_expected_for_a_light_sessions_ack():
    conns = {"n1": [_conn(*(f"kiosk.v1.{T}.{leaf}" for leaf in topics.DOWN))]}
    full = probe_terminal(T, [], conns)
    assert {s.verdict for s in full.subscriptions} == {Verdict.NO_CONSUMER}
    light = probe_terminal(T, [], conns, light_session=True)
    assert {leaf: light.verdict(leaf) for leaf in topics.DOWN} == {
        leaf: Verdict.QOS0 if leaf in topics.LIGHT else Verdict.NO_CONSUMER
        for leaf in topics.DOWN}


def test_a_terminal_on_no_node_and_other_clients_connections_are_not_it():
    views = [_view(_consumer("S_a", "ack", "$MQTT.sub.A"))]
    probe = probe_terminal(T, views, {"n1": [_conn("$MQTT.sub.A", client="T-0043")]})
    assert probe.nodes == ()
    assert {s.verdict for s in probe.subscriptions} == {Verdict.NOT_CONNECTED}


def test_the_most_advanced_copy_of_a_consumer_is_the_one_read():
    """A replica behind its leader reports less progress; the leader's view counts."""
    behind = _consumer("S_a", "ack", "$MQTT.sub.A", delivered=2, acked=2, pending=3)
    leader = _consumer("S_a", "ack", "$MQTT.sub.A", delivered=5, acked=5)
    for views in ([_view(behind), _view(leader)], [_view(leader), _view(behind)]):
        probe = probe_terminal(T, views, {"n1": [_conn(*_subscribed("ack", "$MQTT.sub.A"))]})
        (ack,) = (s for s in probe.subscriptions if s.leaf == "ack")
        assert len(ack.consumers) == 1 and ack.consumers[0].delivered == 5
        assert ack.verdict is Verdict.IDLE


def test_other_streams_and_other_terminals_consumers_are_left_out():
    views = [_view(_consumer("S_r", "ack", "$MQTT.sub.A"), stream="$MQTT_rmsgs"),
             _view(_consumer("S_o", "ack", "$MQTT.sub.A", terminal="T-0043"))]
    probe = probe_terminal(T, views, {"n1": [_conn(*_subscribed("ack", "$MQTT.sub.A"))]})
    assert probe.verdict("ack") is Verdict.NO_CONSUMER


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["name", "config", "filter_subject", "deliver_subject", "delivered",
                         "stream_seq", "num_pending", "mqtt_client", "account_details",
                         "stream_detail", "consumer_detail", "subscriptions_list_detail",
                         "subject", "push_bound"]), inner, max_size=5),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(views=st.lists(st.dictionaries(st.text(max_size=4), JSON, max_size=3) | JSON.filter(
    lambda v: isinstance(v, dict)), max_size=3),
       conns=st.dictionaries(st.text(max_size=4), st.lists(JSON, max_size=3), max_size=3))
def test_any_json_the_nodes_answer_gives_a_probe_without_an_error(views, conns):
    probe = probe_terminal(T, views, conns)
    assert [s.leaf for s in probe.subscriptions] == list(topics.DOWN)
    assert probe.lines()[0].startswith(f"terminal {T}: connected to ")


def test_the_bench_report_counts_verdicts_and_shows_the_first_stalled_in_full():
    stalled = probe_terminal(T, [_view(_consumer("S_a", "ack", "$MQTT.sub.GONE"))],
                             {"n1": [_conn(f"kiosk.v1.{T}.ack", "$MQTT.sub.NEW")]})
    fine = probe_terminal(T, [_view(_consumer("S_a", "ack", "$MQTT.sub.A"))],
                          {"n1": [_conn(*_subscribed("ack", "$MQTT.sub.A"))]})
    first, detail = stall_probe_lines([stalled, stalled], [fine], 240.4)
    assert first.startswith("ack stall probe 240 s after the broker was up: 2 terminals")
    assert f"ack subscriptions: 2 {Verdict.NOT_BOUND.value}. 1 other terminals: " \
        f"1 {Verdict.IDLE.value}" in first
    assert detail.startswith(f"first of them: terminal {T}: connected to n1")
    assert stall_probe_lines([], [], 1.0)[0].endswith("none. 0 other terminals: none")


def test_a_real_cluster_shows_a_consumer_taken_away_and_one_pushing_to_nobody(
        tmp_path, capsys):
    """A kept session with the terminal's four QoS 1 subscriptions on a real 3-node
    cluster: every one delivers (exit 0; an ack the desk's side sent was delivered and
    acknowledged). The ack consumer deleted through the JetStream API, as the restarts
    lost them: 'without a consumer' (exit 3). A consumer made on that subject under the
    session's name that pushes to a subject nobody subscribes: 'none pushing to the live
    connection'. A terminal connected nowhere: exit 3; a bad id: a usage error."""
    cluster = NatsCluster(tmp_path / "nats").start()
    argv = ["terminal", T, *(a for n in cluster.nodes
                             for a in ("--monitor", f"127.0.0.1:{n.monitor_port}"))]
    granted: list[int] = []
    got: list[bytes] = []
    term = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=T, protocol=mqtt.MQTTv311,
                       clean_session=False)
    desk = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="probe-desk",
                       protocol=mqtt.MQTTv311)
    try:
        term.on_subscribe = lambda _c, _u, _m, rcs, _p: granted.extend(r.value for r in rcs)
        term.on_message = lambda _c, _u, m: got.append(m.payload)
        term.connect("127.0.0.1", cluster.nodes[1].mqtt_port)
        term.loop_start()
        wait_for(term.is_connected, 20, "the terminal connected")
        term.subscribe([(topics.topic(T, leaf), 1) for leaf in topics.DOWN])
        wait_for(lambda: len(granted) == 4, 30, "four subscriptions granted")
        assert granted == [1, 1, 1, 1]
        desk.connect("127.0.0.1", cluster.nodes[2].mqtt_port)
        desk.loop_start()
        wait_for(desk.is_connected, 20, "the desk's side connected")
        desk.publish(topics.topic(T, topics.ACK), b"ack-1", qos=1)
        wait_for(lambda: got == [b"ack-1"], 20, "the ack delivered")

        def probe_out(code: int) -> str:
            """The command's output once it exits `code` (the nodes' views settle)."""
            deadline = time.monotonic() + 20
            while True:
                rc = nats_kit.main(argv)
                out = capsys.readouterr().out
                if rc == code:
                    return out
                assert time.monotonic() < deadline, f"exit {rc}, not {code}:\n{out}"
                time.sleep(0.5)

        out = probe_out(0)
        node = f"127.0.0.1:{cluster.nodes[1].monitor_port}"
        assert out.startswith(f"terminal {T}: connected to {node}\n"), out
        assert out.count(Verdict.IDLE.value) == 4, out
        ack_lines = [ln for ln in out.splitlines() if "$MQTT.sub." in ln]
        assert len(ack_lines) == 4 and all("0 awaiting the terminal's ack" in ln
                                           for ln in ack_lines), out

        ack_subject = MSGS.format(T, "ack")
        session = next(name.split("_", 1)[0] for _, name, subject in cluster.consumers()
                       if subject == ack_subject)
        assert cluster.delete_consumers(ack_subject) == 1
        out = probe_out(3)
        assert f"  ack: {Verdict.NO_CONSUMER.value}" in out, out
        assert out.count(Verdict.IDLE.value) == 3
        assert "cannot hear the desk" in out and "ack_stall_s" in out

        cluster.add_stray_consumer(ack_subject, f"{session}_stray", "probe.nobody")
        desk.publish(topics.topic(T, topics.ACK), b"ack-2", qos=1).wait_for_publish(10)
        out = probe_out(3)
        assert f"  ack: {Verdict.NOT_BOUND.value}" in out, out
        assert "pushes to probe.nobody (not the terminal's connection" in out
        assert got == [b"ack-1"]  # the second ack reached nobody

        assert nats_kit.main(["terminal", "T-9999", *argv[2:]]) == 3
        assert capsys.readouterr().out.count(Verdict.NOT_CONNECTED.value) == 4
        with pytest.raises(SystemExit) as bad:
            nats_kit.main(["terminal", "T/#", *argv[2:]])
        assert bad.value.code == 2
    finally:
        for client in (term, desk):
            client.loop_stop()
            client.disconnect()
        cluster.stop()


def test_no_node_answering_is_one_clear_line(capsys):
    from agent.loopback import free_port

    assert nats_kit.main(["terminal", T, "--monitor", f"127.0.0.1:{free_port()}",
                          "--timeout", "2"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no node answered on its monitoring port" in captured.err
    assert "no /jsz answer" in captured.err and "no /connz answer" in captured.err
