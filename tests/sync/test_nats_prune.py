"""prune-consumers (sync/nats_prune.py, `python -m sync.nats_kit prune-consumers`): which
consumers are leftovers (of connected terminals by their live connections, of the others
by their sessions' records), held to hand-made and fuzzed views and records, to
monitoring ports that page or fail, and to a real 3-node cluster where a terminal's
subscription has a second consumer pushing to nobody: it is deleted, the terminal still
hears the desk, a young consumer is left, and an offline terminal's once its record
proves it."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from agent.loopback import free_port
from sync import nats_kit, topics
from sync.nats_admin import NatsAdmin, NatsProtocolError, StoredMessage, parse_msg_get
from sync.nats_census import consumer_census, read_views
from sync.nats_prune import (
    SessionRecord,
    created_at,
    find_leftovers,
    parse_session_record,
    read_subscribed,
    session_subject,
)
from tests.sync.conftest import wait_for
from tests.sync.nats import FixedMonitor, NatsCluster

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
OLD = "2026-12-07T11:00:00.123456789Z"  # an hour before NOW
MSGS = "$MQTT.msgs.kiosk.v1.{}.{}"


def _consumer(name: str, deliver: str, terminal: str = "T1", leaf: str = "ack",
              created: str = OLD, pending: int = 0) -> dict[str, Any]:
    return {"name": name, "created": created, "num_pending": pending,
            "config": {"filter_subject": MSGS.format(terminal, leaf),
                       "deliver_subject": deliver}}


def _view(*consumers: dict[str, Any], stream: str = "$MQTT_msgs") -> dict[str, Any]:
    return {"account_details": [{"stream_detail": [{"name": stream,
                                                    "consumer_detail": list(consumers)}]}]}


@pytest.mark.parametrize("text, expected", [
    ("2026-12-07T11:00:00Z", datetime(2026, 12, 7, 11, tzinfo=UTC)),
    ("2026-12-07T11:00:00.123456789Z", datetime(2026, 12, 7, 11, 0, 0, 123456, tzinfo=UTC)),
    ("2026-12-07T14:00:00.5+03:00", datetime(2026, 12, 7, 11, 0, 0, 500000, tzinfo=UTC)),
    ("", None), ("yesterday", None), ("2026-13-07T11:00:00Z", None),
    ("2026-12-07T11:00:00", None),  # no zone: not NATS's, not judged
])
def test_a_nodes_creation_time_is_read_to_the_microsecond_or_not_at_all(text, expected):
    assert created_at(text) == expected


def test_the_consumer_not_pushing_to_a_live_connection_beside_one_that_does_is_a_leftover():
    old = _consumer("sessA_old", "$MQTT.sub.nobody", pending=3)
    new = _consumer("sessA_new", "$MQTT.sub.live", created="2026-12-07T11:30:00Z")
    survey = find_leftovers([_view(old, new)] * 3, {"$MQTT.sub.live"}, NOW)
    assert [(x.name, x.kept, x.pending) for x in survey.leftovers] == [
        ("sessA_old", "sessA_new", 3)]
    assert (survey.offline, survey.unjudged) == (0, 0)
    assert "sessA_old on $MQTT.msgs.kiosk.v1.T1.ack" in survey.leftovers[0].line()
    # the newer one may be the leftover: refused, made late, after the new SUBSCRIBE's
    survey = find_leftovers([_view(old, new)], {"$MQTT.sub.nobody"}, NOW)
    assert [(x.name, x.kept) for x in survey.leftovers] == [("sessA_new", "sessA_old")]


def test_what_is_not_provably_a_leftover_is_kept():
    live = {"$MQTT.sub.a", "$MQTT.sub.b"}
    cases = [  # (consumers, leftovers, offline, unjudged)
        # one consumer that pushes nowhere: a refused subscription's, not a second one
        ([_consumer("s_1", "$MQTT.sub.x")], 0, 0, 0),
        # two, neither live: the terminal is connected nowhere
        ([_consumer("s_1", "$MQTT.sub.x"), _consumer("s_2", "$MQTT.sub.y")], 0, 1, 0),
        # two live (never seen): neither is known to be the session's
        ([_consumer("s_1", "$MQTT.sub.a"), _consumer("s_2", "$MQTT.sub.b")], 0, 0, 0),
        # made a minute ago: maybe a subscription being made
        ([_consumer("s_1", "$MQTT.sub.a"),
          _consumer("s_2", "$MQTT.sub.x", created="2026-12-07T11:59:00Z")], 0, 0, 1),
        # no time, or a name NATS does not make (it would go into an API subject)
        ([_consumer("s_1", "$MQTT.sub.a"), _consumer("s_2", "$MQTT.sub.x", created="")],
         0, 0, 1),
        ([_consumer("s_1", "$MQTT.sub.a"), _consumer("s_2.x", "$MQTT.sub.x")], 0, 0, 1),
        # two sessions on one subject (another client id): one consumer each
        ([_consumer("s_1", "$MQTT.sub.a"), _consumer("t_1", "$MQTT.sub.x")], 0, 0, 0),
        # two subjects of one session: one consumer each
        ([_consumer("s_1", "$MQTT.sub.a"), _consumer("s_2", "$MQTT.sub.x", leaf="cmd")],
         0, 0, 0),
    ]
    for consumers, leftovers, offline, unjudged in cases:
        survey = find_leftovers([_view(*consumers)], live, NOW)
        assert (len(survey.leftovers), survey.offline, survey.unjudged) == (
            leftovers, offline, unjudged), consumers
    # the retained messages' stream has a consumer per node, named alike: never touched
    rmsgs = [_consumer("r_1", "$MQTT.sub.a"), _consumer("r_2", "$MQTT.sub.x")]
    assert find_leftovers([_view(*rmsgs, stream="$MQTT_rmsgs")], live, NOW).leftovers == ()


def test_min_age_decides_and_both_reads_must_agree():
    old = _consumer("s_old", "$MQTT.sub.x")
    new = _consumer("s_new", "$MQTT.sub.a")
    # made 3,599.88 s before NOW
    hour = find_leftovers([_view(old, new)], {"$MQTT.sub.a"}, NOW, min_age_s=3599)
    assert len(hour.leftovers) == 1
    assert find_leftovers([_view(old, new)], {"$MQTT.sub.a"}, NOW,
                          min_age_s=3600).unjudged == 1
    first = find_leftovers([_view(old, new)], {"$MQTT.sub.a"}, NOW)
    later = find_leftovers([_view(old, new)], set(), NOW + timedelta(seconds=10))
    confirmed = first.confirmed_by(later)  # the terminal left between the reads
    assert confirmed.leftovers == () and confirmed.offline == 1
    assert first.confirmed_by(first) == first


RECORD_AT = "2026-12-07T11:30:00.5Z"  # between OLD and NOW


def _record(*pairs: tuple[str, str], written: str = RECORD_AT) -> SessionRecord:
    """A session's record naming (leaf, consumer) pairs of terminal T1."""
    return SessionRecord(written, {MSGS.format("T1", leaf): name for leaf, name in pairs})


def test_a_terminal_connected_nowhere_is_judged_by_its_sessions_record():
    """NATS uses only the consumer the session's record names (its `cons`): another one
    of the same subject, made before the record was written, is a leftover."""
    own, other = _consumer("s_own", "$MQTT.sub.x"), _consumer("s_other", "$MQTT.sub.y",
                                                              pending=2)
    survey = find_leftovers([_view(own, other)], set(), NOW)
    assert survey.offline == 1 and survey.sessions() == {"s"}
    judged = survey.with_records({"s": _record(("ack", "s_own"))}, NOW)
    assert [(x.name, x.kept, x.by_record) for x in judged.leftovers] == [
        ("s_other", "s_own", True)]
    assert (judged.offline, judged.unjudged) == (0, 0)
    assert "s_own is the session's, by its record" in judged.leftovers[0].line()
    assert judged.confirmed_by(judged).leftovers == judged.leftovers
    # the record names the other one: the other way round
    assert [x.name for x in survey.with_records(
        {"s": _record(("ack", "s_other"))}, NOW).leftovers] == ["s_own"]


def test_what_a_record_does_not_prove_is_kept():
    own, other = _consumer("s_own", "$MQTT.sub.x"), _consumer("s_other", "$MQTT.sub.y")
    survey = find_leftovers([_view(own, other)], set(), NOW)
    cases = [  # (records, offline, unjudged)
        ({}, 1, 0),  # no record read
        ({"s": None}, 1, 0),  # the session has none
        ({"s": _record()}, 1, 0),  # its record lists no consumer for the subject
        ({"s": _record(("cmd", "s_own"))}, 1, 0),  # ... only another subject's
        ({"s": _record(("ack", "s_gone"))}, 1, 0),  # names one the nodes do not hold
        ({"s": _record(("ack", "s_own"), written="")}, 1, 0),  # no time it was written
        # the other was made after the record: the session may have taken it up since
        ({"s": _record(("ack", "s_own"), written="2026-12-07T10:00:00Z")}, 0, 1),
    ]
    for records, offline, unjudged in cases:
        judged = survey.with_records(records, NOW)
        assert (judged.leftovers, judged.offline, judged.unjudged) == ((), offline,
                                                                        unjudged), records
    young = _consumer("s_other", "$MQTT.sub.y", created="2026-12-07T11:59:00Z")
    judged = find_leftovers([_view(own, young)], set(), NOW).with_records(
        {"s": _record(("ack", "s_own"), written="2026-12-07T11:59:30Z")}, NOW)
    assert (judged.leftovers, judged.unjudged) == ((), 1)  # younger than min_age_s
    # both reads must agree, by the same reason
    by_record = survey.with_records({"s": _record(("ack", "s_own"))}, NOW)
    assert by_record.confirmed_by(survey).leftovers == ()


def test_a_sessions_record_is_read_from_what_nats_stores():
    """The shape NATS writes (mqttPersistedSession: `cons` maps a subscription's subject
    to its consumer's config) and anything else without an error."""
    body = (b'{"origin":"x","id":"T1","subs":{"kiosk.v1.T1.ack":1},"cons":{"kiosk.v1.T1.'
            b'ack":{"durable_name":"s_own","deliver_subject":"$MQTT.sub.x","filter_subject"'
            b':"$MQTT.msgs.kiosk.v1.T1.ack","ack_policy":"explicit"}}}')
    msg = StoredMessage("$MQTT.sess.s", 7, body, RECORD_AT)
    assert parse_session_record(msg) == _record(("ack", "s_own"))
    assert parse_session_record(None) is None
    assert parse_session_record(StoredMessage("x", 1, b"not json", RECORD_AT)) is None
    assert parse_session_record(StoredMessage("x", 1, b'{"id":"T1"}', RECORD_AT)) == \
        SessionRecord(RECORD_AT, {})
    assert session_subject("AbC123") == "$MQTT.sess.AbC123"
    for bad in ("", "a.b", "a*", "a>", "a b", "x" * 65):
        assert session_subject(bad) is None


def test_a_message_get_answer_is_parsed_or_refused_in_one_line():
    ok = (b'{"type":"io.nats.jetstream.api.v1.stream_msg_get_response","message":{"subject":'
          b'"$MQTT.sess.s","seq":7,"data":"eyJpZCI6IlQxIn0=","time":"' + RECORD_AT.encode()
          + b'"}}')
    assert parse_msg_get(ok, "$MQTT_sess") == StoredMessage("$MQTT.sess.s", 7, b'{"id":"T1"}',
                                                            RECORD_AT)
    none = b'{"error":{"code":404,"err_code":10037,"description":"no message found"}}'
    assert parse_msg_get(none, "$MQTT_sess") is None
    for bad in (b'{"message":{"data":"!!"}}', b'{"type":"x"}', b"[]"):
        with pytest.raises(NatsProtocolError):
            parse_msg_get(bad, "$MQTT_sess")


@settings(max_examples=200)
@given(st.binary(max_size=80) | st.text(max_size=80).map(str.encode),
       st.text(max_size=30))
def test_any_bytes_as_a_record_give_an_answer(data, written):
    record = parse_session_record(StoredMessage("$MQTT.sess.s", 1, data, written))
    assert record is None or isinstance(record.consumers, dict)


@settings(max_examples=200)
@given(st.lists(st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(
        ["account_details", "stream_detail", "consumer_detail", "name", "config",
         "filter_subject", "deliver_subject", "created", "num_pending"]), c, max_size=4),
    max_leaves=25), max_size=3),
    st.sets(st.text(max_size=12), max_size=3))
def test_any_json_the_nodes_answer_gives_a_survey_without_an_error(views, subscribed):
    survey = find_leftovers([v for v in views if isinstance(v, dict)], subscribed, NOW)
    assert survey.offline >= 0 and survey.unjudged >= 0


def _conn(*subjects: str) -> dict[str, Any]:
    return {"subscriptions_list_detail": [{"subject": s} for s in subjects]}


def test_every_page_of_every_nodes_connections_is_read_and_a_silent_node_named():
    conns = [_conn(f"$MQTT.sub.{i}", f"kiosk.v1.T{i}.ack") for i in range(5)]
    node = FixedMonitor({}, conns)
    down = free_port()
    try:
        subjects, failed = read_subscribed([("127.0.0.1", node.port)], page=2)
        assert subjects == {s for i in range(5)
                            for s in (f"$MQTT.sub.{i}", f"kiosk.v1.T{i}.ack")}
        assert sum("/connz" in a for a in node.asked) == 3  # 2 + 2 + 1
        subjects, failed = read_subscribed([("127.0.0.1", down), ("127.0.0.1", node.port)],
                                           timeout=2)
        assert len(subjects) == 10
        assert len(failed) == 1 and f"127.0.0.1:{down}: no /connz answer" in failed[0]
    finally:
        node.close()


def test_the_command_lists_on_a_dry_run_and_deletes_nothing_when_a_node_is_silent(capsys):
    jsz = _view(_consumer("s_old", "$MQTT.sub.x", pending=4), _consumer("s_new", "$MQTT.sub.a"),
                _consumer("u_1", "$MQTT.sub.y", terminal="T2"),
                _consumer("u_2", "$MQTT.sub.z", terminal="T2"))
    node = FixedMonitor(jsz, [_conn("$MQTT.sub.a")])
    closed = f"127.0.0.1:{free_port()}"  # no client port: T2's record cannot be read
    base = ["prune-consumers", "--monitor", f"127.0.0.1:{node.port}", "--server", closed,
            "--confirm-after", "0"]
    try:
        assert nats_kit.main([*base, "--dry-run"]) == 0
        captured = capsys.readouterr()
        out = captured.out.splitlines()
        # one line, not one per read: T2 (connected nowhere) is left alone
        assert captured.err.count("\n") == 1 and closed in captured.err
        assert "the sessions' records unread" in captured.err
        assert out[0].startswith("would delete s_old on $MQTT.msgs.kiosk.v1.T1.ack")
        assert "4 pending; s_new delivers" in out[0]
        assert out[1].startswith("1 leftover consumers would be deleted (4 messages")
        assert "1 subscriptions with leftovers whose terminal is connected nowhere" in out[1]
        # deleting needs the client port: one line, exit 1
        assert nats_kit.main([*base, "--timeout", "2"]) == 1
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.count("\n") == 1
        assert closed in captured.err and captured.err.startswith("nats_kit: ")
        silent = f"127.0.0.1:{free_port()}"
        assert nats_kit.main([*base, "--dry-run", "--monitor", silent, "--timeout", "2"]) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert f"{silent}: no /jsz answer" in captured.err
        assert "every node must answer on its monitoring port: nothing deleted" in captured.err
        # the benchmark's way: its own streams, stdout and stderr untouched
        out, err = io.StringIO(), io.StringIO()
        host, port = closed.split(":")
        assert nats_kit.prune_consumers(
            [("127.0.0.1", node.port)], 2.0, lambda: NatsAdmin(host, int(port), timeout=2),
            dry_run=False, confirm_after_s=0, out=out, err=err) == 1
        assert out.getvalue() == "" and err.getvalue().count("\n") == 1
        assert closed in err.getvalue()
        assert capsys.readouterr() == ("", "")
    finally:
        node.close()
    for bad in (["--min-age", "-1"], ["--confirm-after", "-5"], ["--timeout", "0"],
                ["--user", "x"]):
        with pytest.raises(SystemExit) as usage:
            nats_kit.main([*base, *bad])
        assert usage.value.code == 2


def test_a_real_cluster_loses_its_leftovers_and_keeps_the_rest(tmp_path, capsys):
    """A kept session with four QoS 1 subscriptions on node 2 and a second consumer on its
    ack subject pushing to a subject nobody subscribes (what a refused subscription
    leaves); another kept session, disconnected, with the same, made after its session's
    record. The dry run lists the first only; with --min-age an hour nothing is judged;
    the run deletes it; the census counts one extra consumer (the offline terminal's)
    instead of two; the terminal still hears every ack; a second run finds nothing. Once
    the offline terminal has connected and left again (NATS writes its record at every
    CONNECT), its record proves the stray is not its own: deleted, its own kept."""
    cluster = NatsCluster(tmp_path / "nats").start()
    monitors = [a for n in cluster.nodes for a in ("--monitor", f"127.0.0.1:{n.monitor_port}")]
    argv = ["prune-consumers", *monitors, "--server",
            f"127.0.0.1:{cluster.nodes[0].client_port}", "--min-age", "0",
            "--confirm-after", "0.5"]
    got: list[bytes] = []
    clients: list[mqtt.Client] = []

    def terminal(tid: str, on_message: Any = None) -> mqtt.Client:
        granted: list[int] = []
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=tid, protocol=mqtt.MQTTv311,
                        clean_session=False)
        clients.append(c)
        c.on_subscribe = lambda _c, _u, _m, rcs, _p: granted.extend(r.value for r in rcs)
        c.on_message = on_message
        c.connect("127.0.0.1", cluster.nodes[1].mqtt_port)
        c.loop_start()
        wait_for(c.is_connected, 20, f"{tid} connected")
        c.subscribe([(topics.topic(tid, leaf), 1) for leaf in topics.DOWN])
        wait_for(lambda: len(granted) == 4, 30, f"{tid}'s subscriptions granted")
        assert granted == [1, 1, 1, 1]
        return c

    def stray(tid: str) -> str:
        subject = MSGS.format(tid, "ack")
        session = next(name.split("_", 1)[0] for _, name, s in cluster.consumers()
                       if s == subject)
        cluster.add_stray_consumer(subject, f"{session}_stray", "prune.nobody")
        return f"{session}_stray"

    def census_extra() -> int:
        views, failed = read_views([("127.0.0.1", n.monitor_port) for n in cluster.nodes])
        assert not failed
        return consumer_census(views).extra

    try:
        away = terminal("T-0002")
        away.loop_stop()
        away.disconnect()  # its session and consumers stay
        term = terminal("T-0001", lambda _c, _u, m: got.append(m.payload))
        desk = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="prune-desk",
                           protocol=mqtt.MQTTv311)
        clients.append(desk)
        desk.connect("127.0.0.1", cluster.nodes[2].mqtt_port)
        desk.loop_start()
        wait_for(desk.is_connected, 20, "the desk's side connected")
        leftover, offline = stray("T-0001"), stray("T-0002")
        desk.publish(topics.topic("T-0001", topics.ACK), b"ack-1", qos=1)
        wait_for(lambda: got == [b"ack-1"], 20, "the ack delivered beside the stray")
        wait_for(lambda: census_extra() == 2, 20, "both strays counted")

        assert nats_kit.main([*argv, "--dry-run"]) == 0
        out = capsys.readouterr().out.splitlines()
        assert len(out) == 2 and out[0].startswith(f"would delete {leftover} on "), out
        # the offline one's stray is younger than its session's record: not judged
        assert "0 subscriptions with leftovers whose terminal is connected nowhere" in out[1]
        assert "1 consumers not judged" in out[1]
        assert nats_kit.main([*argv, "--min-age", "3600"]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out == [out[0]] and out[0].startswith("0 leftover consumers deleted"), out
        assert "2 consumers not judged" in out[0]
        assert census_extra() == 2

        assert nats_kit.main(argv) == 0
        out = capsys.readouterr().out.splitlines()
        assert len(out) == 2 and out[0].startswith(f"deleted {leftover} on "), out
        assert out[1].startswith("1 leftover consumers deleted")
        names = {name for _, name, _ in cluster.consumers()}
        assert leftover not in names and offline in names
        wait_for(lambda: census_extra() == 1, 20, "the offline terminal's stray left")
        desk.publish(topics.topic("T-0001", topics.ACK), b"ack-2", qos=1)
        wait_for(lambda: got == [b"ack-1", b"ack-2"], 20, "the next ack delivered")
        assert nats_kit.main(argv) == 0
        assert capsys.readouterr().out.startswith("0 leftover consumers deleted")
        assert term.is_connected()

        own = {name for _, name, s in cluster.consumers()
               if s == MSGS.format("T-0002", "ack") and name != offline}
        back = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="T-0002",
                           protocol=mqtt.MQTTv311, clean_session=False)
        back.connect("127.0.0.1", cluster.nodes[0].mqtt_port)
        back.loop_start()
        wait_for(back.is_connected, 20, "T-0002 back, its session restored")
        back.loop_stop()
        back.disconnect()  # connected nowhere again, its record now newer than the stray
        assert nats_kit.main(argv) == 0
        out = capsys.readouterr().out.splitlines()
        assert len(out) == 2 and out[0].startswith(f"deleted {offline} on "), out
        assert f"{own.pop()} is the session's, by its record" in out[0]
        wait_for(lambda: census_extra() == 0, 20, "no leftover anywhere")
        names = {name for _, name, _ in cluster.consumers()}
        assert len([n for n in names if n.startswith(offline.split("_")[0] + "_")]) == 4
    finally:
        for client in clients:
            client.loop_stop()
            client.disconnect()
        cluster.stop()
