"""The census of JetStream consumers (sync/nats_census.py, `python -m sync.nats_kit
consumers`, and the fleet bench's report): after a full-cluster restart some kept MQTT
sessions were found with two consumers on one subscription, the older one holding
undelivered messages. The census counts them from the nodes' /jsz; these tests hold it to
hand-made views, to fuzzed ones, and to a real 3-node cluster."""

from __future__ import annotations

import json
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from sync import nats_kit
from sync.nats_census import MQTT_MSGS_STREAM, consumer_census
from tests.sync.conftest import wait_for
from tests.sync.nats import FixedMonitor, NatsCluster

SUBJECT = "$MQTT.msgs.kiosk.v1.{}.{}"


def _consumer(name: str, subject: str, created: str, pending: int = 0) -> dict[str, Any]:
    return {"name": name, "created": created, "num_pending": pending,
            "config": {"filter_subject": subject}}


def _view(*consumers: dict[str, Any], stream: str = "$MQTT_msgs") -> dict[str, Any]:
    return {"account_details": [{"stream_detail": [{"name": stream,
                                                    "consumer_detail": list(consumers)}]}]}


def test_one_consumer_per_subscription_seen_by_three_nodes_counts_once():
    a = _consumer("sessA_1", SUBJECT.format("T1", "ack"), "2026-12-07T11:46:00Z")
    b = _consumer("sessA_2", SUBJECT.format("T1", "cmd"), "2026-12-07T11:46:00Z")
    c = _consumer("sessB_1", SUBJECT.format("T2", "ack"), "2026-12-07T11:46:01Z")
    census = consumer_census([_view(a, b, c)] * 3)
    assert (census.consumers, census.subscriptions) == (3, 3)
    assert (census.doubled, census.extra, census.pending_on_extra) == (0, 0, 0)


def test_a_subscription_left_with_an_older_consumer_is_counted_with_its_pending():
    ack = SUBJECT.format("T1", "ack")
    old = _consumer("sessA_old", ack, "2026-12-07T11:46:45Z", pending=3)
    new = _consumer("sessA_new", ack, "2026-12-07T11:48:50Z", pending=0)
    newer = _consumer("sessA_newer", ack, "2026-12-07T11:49:51Z", pending=0)
    # nodes disagree on the pending count of the orphan: the highest is taken
    census = consumer_census([_view(old, new, newer),
                              _view({**old, "num_pending": 5}, {**new, "num_pending": 2},
                                    newer)])
    assert (census.consumers, census.subscriptions) == (3, 1)
    assert (census.doubled, census.extra) == (1, 2)
    assert census.pending_on_extra == 5 + 2  # the newest one delivers: not counted
    assert "1 subscriptions with more than one consumer (2 extra, 7 messages" in \
        census.line("after the restart")


def test_two_sessions_on_one_subject_are_not_a_leftover():
    """The two desk partitions read the same filter, each with its own session."""
    subject = "$MQTT.msgs.kiosk.v1.*.payments"
    census = consumer_census([_view(_consumer("deskA_1", subject, "t1"),
                                    _consumer("deskB_1", subject, "t1"))])
    assert (census.subscriptions, census.doubled) == (2, 0)


def test_one_copy_consumers_each_on_its_own_node_add_up():
    census = consumer_census([_view(_consumer("s1_a", "x.ack", "t")),
                              _view(_consumer("s2_a", "y.ack", "t")), {}])
    assert (census.consumers, census.subscriptions, census.doubled) == (2, 2, 0)


def test_other_streams_consumers_are_not_subscriptions():
    """NATS keeps a consumer per node on `$MQTT_rmsgs` (retained messages), named alike."""
    rmsgs = [_consumer(f"$MQTT_rmsgs_{x}", "$MQTT.rmsgs", "t") for x in ("a", "b", "c")]
    census = consumer_census([_view(*rmsgs, stream="$MQTT_rmsgs")])
    assert (census.consumers, census.doubled) == (0, 0)


def test_missing_and_empty_fields_are_no_consumers():
    assert consumer_census([{}, {"account_details": None},
                            {"account_details": [{"stream_detail": None}]}]).consumers == 0


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
    | st.sampled_from([MQTT_MSGS_STREAM, "sessA_1", "sessA_2"]),  # names that reach the count
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["account_details", "stream_detail", "consumer_detail", "name",
                         "config", "filter_subject", "filter_subjects", "num_pending",
                         "created", "x"]), inner, max_size=5),
    max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(st.just("account_details"), JSON), max_size=3))
def test_any_json_a_monitoring_port_answers_is_counted_without_an_error(views):
    census = consumer_census(views)
    assert census.consumers == census.subscriptions + census.extra  # one is never extra
    assert census.doubled <= census.extra and census.pending_on_extra >= 0


def test_a_real_cluster_names_a_sessions_consumers_as_the_census_expects(tmp_path, capsys):
    """Two kept sessions, two QoS 1 subscriptions each, on a real 3-node cluster: four
    consumers, one per subscription, none doubled (`nats_kit consumers` exits 0). A
    session's consumers share the prefix before `_`, which is what ties a leftover to its
    session. A second consumer made on one subscription's subject under that session's
    prefix, as the restarts left them, is counted as a leftover (exit 3)."""
    cluster = NatsCluster(tmp_path / "nats").start()
    monitors = [f"127.0.0.1:{n.monitor_port}" for n in cluster.nodes]
    argv = ["consumers", *(a for m in monitors for a in ("--monitor", m))]
    clients: list[mqtt.Client] = []
    granted: list[int] = []
    try:
        for k, node in enumerate(cluster.nodes[:2]):
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"CENSUS{k}",
                                 protocol=mqtt.MQTTv311, clean_session=False)
            clients.append(client)
            client.on_subscribe = lambda _c, _u, _m, rcs, _p: granted.extend(
                r.value for r in rcs)
            client.connect("127.0.0.1", node.mqtt_port)
            client.loop_start()
            wait_for(client.is_connected, 20, f"session {k} connected")
            client.subscribe([(f"kiosk/v1/CENSUS{k}/ack", 1), (f"kiosk/v1/CENSUS{k}/cmd", 1)])
        wait_for(lambda: len(granted) == 4, 30, "four subscriptions granted")
        assert granted == [1, 1, 1, 1]

        assert nats_kit.main(argv) == 0
        out = capsys.readouterr().out
        assert "(3 of 3 nodes answering): 4 for 4 subscriptions; 0 subscriptions" in out, out
        consumers = cluster.consumers()
        by_session = {k: {name.split("_", 1)[0] for _, name, subject in consumers
                          if f".CENSUS{k}." in subject} for k in range(2)}
        assert all(len(p) == 1 for p in by_session.values()), consumers
        assert by_session[0] != by_session[1]

        session = next(iter(by_session[0]))
        subject = "$MQTT.msgs.kiosk.v1.CENSUS0.ack"
        cluster.add_stray_consumer(subject, f"{session}_leftover", "census.nobody")
        wait_for(lambda: sum(c[0] == MQTT_MSGS_STREAM for c in cluster.consumers()) == 5, 20,
                 "the leftover made")
        assert nats_kit.main(argv) == 3
        out = capsys.readouterr().out
        assert "5 for 4 subscriptions; 1 subscriptions with more than one consumer " \
            "(1 extra" in out, out
        assert "1 leftover consumers" in out and "prune-consumers" in out
        assert "reset-sessions" in out
    finally:
        for client in clients:
            client.loop_stop()
            client.disconnect()
        cluster.stop()


def test_no_node_answering_is_one_clear_line_and_no_count(capsys):
    from agent.loopback import free_port

    assert nats_kit.main(["consumers", "--monitor", f"127.0.0.1:{free_port()}",
                          "--timeout", "2"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no node answered on its monitoring port: nothing counted" in captured.err
    assert "no /jsz answer" in captured.err


def _limited(view: dict[str, Any], default: int | None = None,
             own: int | None = None) -> dict[str, Any]:
    """A node's view with its default_max_consumers and the stream's max_consumers."""
    out = json.loads(json.dumps(view))
    if default is not None:
        out["limits"] = {"default_max_consumers": default}
    out["account_details"][0]["stream_detail"][0]["config"] = {"max_consumers": own or -1}
    return out


def test_the_limit_is_the_lowest_any_node_applies_and_the_streams_own_comes_first():
    v = _view(_consumer("sessA_1", SUBJECT.format("T1", "ack"), "2026-12-07T11:46:00Z"))
    assert consumer_census([v, v]).limit is None
    assert "no consumer limit on these nodes" in consumer_census([v]).line("now")
    assert consumer_census([_limited(v, 1000), _limited(v, 900)]).limit == 900
    assert consumer_census([_limited(v, 1000, own=40), _limited(v, 1000)]).limit == 40
    census = consumer_census([_limited(v, 8)])
    assert census.used_percent == 12.5
    assert "the stream's consumer limit 8 (12.5% used)" in census.line("now")


def test_the_alarm_exits_4_near_the_limit_and_leftovers_alone_exit_3(capsys):
    ack, cmd = SUBJECT.format("T1", "ack"), SUBJECT.format("T1", "cmd")
    one_each = [_consumer("s_1", ack, "1"), _consumer("s_2", cmd, "1")]
    leftover = [*one_each, _consumer("s_0", ack, "0", pending=2)]
    cases = [  # consumers, limit, --fail-at, exit
        (one_each, 4, "80", 0), (one_each, 2, "80", 4), (leftover, 10, "80", 3),
        (leftover, 3, "80", 4), (leftover, 3, None, 3), (one_each, None, "80", 0)]
    for consumers, limit, fail_at, code in cases:
        jsz = FixedMonitor(_limited(_view(*consumers), default=limit))
        try:
            argv = ["consumers", "--monitor", jsz.address]
            assert nats_kit.main(argv + (["--fail-at", fail_at] if fail_at else [])) == code
        finally:
            jsz.close()
        captured = capsys.readouterr()
        assert ("alarm at 80%" in captured.err) == (code == 4), captured
        assert ("leftover consumers" in captured.out) == (consumers is leftover)
    for bad in ("0", "101", "-5"):
        with pytest.raises(SystemExit) as exc:
            nats_kit.main(["consumers", "--monitor", "127.0.0.1:1", "--fail-at", bad])
        assert exc.value.code == 2
