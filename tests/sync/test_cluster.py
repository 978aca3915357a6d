"""The fleet on a clustered broker: a real 3-node NATS cluster (JetStream, MQTT 3.1.1 on
every node, MQTT streams replicated R3), terminals spread over the nodes with
`[mqtt] hosts`, desk workers without shared subscriptions (every worker takes every
message; the database de-duplicates). One node SIGKILLed mid-drain and restarted later:
nothing lost, nothing stored twice, with and without light sessions (ack and config at
QoS 0). All three nodes SIGKILLed and restarted, with one-copy consumers and with light
sessions: back without a reset. A host lost with its node and its partitioned desk
worker: the next worker takes the partition over. Also: a node that refuses MQTT 5,
and a node that is reachable but cut off from its cluster. Real ledgers, real agents,
real desk database.
"""

from __future__ import annotations

import logging
import socket
import sqlite3
import subprocess
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from sync import broker_kit, nats_kit
from sync.desk import Desk
from sync.nats_kit import (
    FLEET_MAX_CONSUMERS,
    FLEET_MQTT_API_TIMEOUT_S,
    NodeSpec,
    needs_consumer_limit,
    render_node,
    takes_api_timeout,
)
from tests.sync.broker import free_port, spawn_listening, stop_process
from tests.sync.conftest import wait_for
from tests.sync.nats import (
    NatsCluster,
    NatsNode,
    max_consumers_for,
    nats_server_path,
    nats_server_version,
)
from tests.sync.terminal import (
    desk_payment_counts,
    live_terminal,
    make_payments,
    mqtt_config,
    paying_fleet,
    terminal_public_key,
    unacked,
)

TERMINALS = 8
PER_TERMINAL = 125  # 1,000 payments in all


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    c = NatsCluster(tmp_path_factory.mktemp("nats")).start()
    yield c
    c.stop()




def _desk(cluster: NatsCluster, desk_key, keys, db: Path, name: str, **kw) -> Desk:  # type: ignore[no-untyped-def]
    kw.setdefault("endpoints", cluster.endpoints())
    return Desk("127.0.0.1", 0, desk_key.key, desk_key.kid, keys, db, client_id=name,
                protocol="3.1.1", persistent=False, share_group="kiosk-desk",
                reconnect_min_s=0.2, **kw)


@pytest.mark.slow
@pytest.mark.parametrize("light", [False, True], ids=["qos1", "light_session"])
def test_node_killed_mid_drain_loses_and_duplicates_nothing(cluster, desk_key, tmp_path, light):
    cfg = mqtt_config(0, desk_key, protocol="3.1.1", hosts=cluster.hosts(),
                      inflight=50, batch=10, resend_after_s=2.0, light_session=light)
    fleet = paying_fleet(tmp_path, "G" if light else "F", TERMINALS, PER_TERMINAL, cfg)
    terms, expected, keys = fleet.terminals, fleet.expected, fleet.keys
    db = tmp_path / "desk.sqlite"
    desks = [_desk(cluster, desk_key, keys, db, f"desk-{n}", ack_delay_s=0.02).start()
             for n in ("a", "b")]
    try:
        for d in desks:
            assert d.conn.wait_connected(20), d.conn.link
        for t in terms:
            t.start_agent()
        wait_for(lambda: all(t.agent.conn.connected for t in terms), 30, "terminals online")
        on_node = {str(e): 0 for e in cluster.endpoints()}
        for t in terms:
            on_node[str(t.agent.conn.endpoint)] += 1
        assert sum(1 for n in on_node.values() if n) >= 2, on_node  # spread over the nodes

        wait_for(lambda: desk_payment_counts(db)[1] >= 200, 60, "the drain to start")
        victim_ep = max(on_node, key=lambda k: on_node[k])
        victim = next(n for n in cluster.nodes if str(n.endpoint()) == victim_ep)
        moved = [t for t in terms if str(t.agent.conn.endpoint) == victim_ep]
        at_kill = desk_payment_counts(db)[1]
        assert at_kill < TERMINALS * PER_TERMINAL, "the drain finished before the fault"
        t_kill = time.monotonic()
        victim.kill()
        wait_for(lambda: all(t.agent.conn.connected and str(t.agent.conn.endpoint) != victim_ep
                             for t in moved), 60, "the victim's terminals on other nodes")
        t_moved = time.monotonic() - t_kill
        wait_for(lambda: desk_payment_counts(db)[1] > at_kill + 50, 60, "the drain to go on")
        t_flowing = time.monotonic() - t_kill
        victim.start()  # back later: it rejoins the cluster and catches up its replicas
        victim.mqtt_ready()
        fleet.settle(db)
        t_done = time.monotonic() - t_kill
        fleet.assert_stored_once(db, desks[0].store.payments())
        for t in terms:
            with sqlite3.connect(t.config.paths.ledger) as c:
                assert dict(c.execute("SELECT status, count(*) FROM payments GROUP BY status")) \
                    == {"accepted": PER_TERMINAL}
        dups = sum(d.stats.duplicates for d in desks)
        print(f"\n{'light sessions: ' if light else ''}NATS node {victim.name} SIGKILLed "
              f"with {len(moved)} of {TERMINALS} terminals "
              f"and {at_kill} of {len(expected)} payments at the desk: terminals on other "
              f"nodes after {t_moved:.1f} s, the drain flowing again after {t_flowing:.1f} s, "
              f"all {len(expected)} stored and acknowledged {t_done:.1f} s after the kill; "
              f"{dups} duplicate deliveries de-duplicated by the desk")
    finally:
        for d in desks:
            d.stop()
        for t in terms:
            t.stop()
        for n in cluster.nodes:
            if not n.running:
                n.start()



@pytest.mark.slow
def test_a_host_lost_with_its_node_and_its_desk_worker_is_taken_over(cluster, desk_key,
                                                                     tmp_path):
    """Two faults at once: the host of NATS node n2 and of desk worker 1/2 dies mid-drain
    (node SIGKILLed, worker gone). The terminals move to the other nodes, worker 0/2 takes
    partition 1 after --takeover-after, every payment is stored once and acknowledged;
    the node comes back, the worker does not (sync/desk_service/takeover.py)."""
    cfg = mqtt_config(0, desk_key, protocol="3.1.1", hosts=cluster.hosts(),
                      inflight=50, batch=10, resend_after_s=2.0)
    fleet = paying_fleet(tmp_path, "H", TERMINALS, PER_TERMINAL, cfg)
    ids = [t.config.terminal.id for t in fleet.terminals]
    assert {zlib.crc32(i.encode()) % 2 for i in ids} == {0, 1}
    db = tmp_path / "desk.sqlite"
    victim = cluster.nodes[1]
    elsewhere = tuple(n.endpoint() for n in cluster.nodes if n is not victim)
    w0 = _desk(cluster, desk_key, fleet.keys, db, "desk-p0", partition=(0, 2),
               takeover_after_s=2.0, ack_delay_s=0.02, endpoints=elsewhere).start()
    w1 = _desk(cluster, desk_key, fleet.keys, db, "desk-p1", partition=(1, 2),
               takeover_after_s=2.0, ack_delay_s=0.02, endpoints=(victim.endpoint(),)).start()
    try:
        assert w0.conn.wait_connected(20) and w1.conn.wait_connected(20)
        for t in fleet.terminals:
            t.start_agent()
        wait_for(lambda: w1.stats.new_payments >= 50 and w0.stats.new_payments >= 50, 60,
                 "both partitions draining")
        at_kill = desk_payment_counts(db)[1]
        assert at_kill < len(fleet.expected), "the drain finished before the fault"
        t_kill = time.monotonic()
        victim.kill()
        w1.stop()
        wait_for(lambda: w0.share == "0/2,1/2", 30, "partition 1 taken over")
        t_taken = time.monotonic() - t_kill
        victim.start()
        victim.mqtt_ready()
        fleet.settle(db)
        t_done = time.monotonic() - t_kill
        fleet.assert_stored_once(db, w0.store.payments())
        print(f"\nhost lost (NATS node {victim.name} SIGKILLed, desk worker 1/2 gone) with "
              f"{at_kill} of {len(fleet.expected)} payments at the desk: partition 1 taken "
              f"over {t_taken:.1f} s after, all stored once and acknowledged {t_done:.1f} s "
              f"after; {w0.stats.duplicates} duplicate deliveries de-duplicated")
    finally:
        w0.stop()
        w1.stop()
        for t in fleet.terminals:
            t.stop()
        if not victim.running:
            victim.start()


def _kill_the_whole_cluster_mid_drain(tmp_path: Path, desk_key, cluster: NatsCluster,  # type: ignore[no-untyped-def]
                                      prefix: str, what: str,
                                      check_online: Callable[[NatsCluster], None] | None = None,
                                      **mqtt) -> None:
    """4 terminals drain 400 payments; all three nodes SIGKILLed mid-drain and started
    again; no reset: every payment must be stored once and acknowledged by itself."""
    cfg = mqtt_config(0, desk_key, protocol="3.1.1", hosts=cluster.hosts(),
                      inflight=20, batch=5, resend_after_s=2.0, **mqtt)
    fleet = paying_fleet(tmp_path, prefix, 4, 100, cfg)
    db = tmp_path / "desk.sqlite"
    desk = _desk(cluster, desk_key, fleet.keys, db, f"desk-{prefix}", ack_delay_s=0.02).start()
    try:
        assert desk.conn.wait_connected(20), desk.conn.link
        for t in fleet.terminals:
            t.start_agent()
        if check_online is not None:
            wait_for(lambda: all(t.agent.conn.connected for t in fleet.terminals), 30,
                     "terminals online")
            check_online(cluster)
        wait_for(lambda: desk_payment_counts(db)[1] >= 60, 60, "the drain to start")
        at_kill = desk_payment_counts(db)[1]
        assert at_kill < len(fleet.expected), "the drain finished before the fault"
        cluster.kill_all()
        t_up = time.monotonic()
        cluster.start_nodes()
        for n in cluster.nodes:
            n.mqtt_ready()
        fleet.settle(db)
        t_done = time.monotonic() - t_up
        fleet.assert_stored_once(db, desk.store.payments())
        print(f"\nall 3 NATS nodes SIGKILLed ({what}) with {at_kill} of {len(fleet.expected)} "
              f"payments at the desk: all stored once and acknowledged {t_done:.1f} s after "
              f"the nodes were started again; {desk.stats.duplicates} duplicate deliveries "
              f"de-duplicated")
    finally:
        desk.stop()
        for t in fleet.terminals:
            t.stop()
        cluster.stop()


@pytest.mark.slow
def test_one_copy_consumers_bring_a_killed_cluster_back_losing_nothing(desk_key, tmp_path):
    """`consumer_replicas: 1` (docs/fleet.md, "Consumer replicas"): all three nodes
    SIGKILLed mid-drain and started again; the consumers come back without Raft
    catch-up, every payment is stored once and acknowledged."""
    cluster = NatsCluster(tmp_path / "nats", consumer_replicas=1).start()
    assert "consumer_replicas: 1" in cluster.nodes[0].conf.read_text()
    _kill_the_whole_cluster_mid_drain(tmp_path, desk_key, cluster, "R", "consumer_replicas 1")


@pytest.mark.slow
def test_light_sessions_bring_a_killed_cluster_back_losing_nothing(desk_key, tmp_path):
    """`light_session` (ack and config at QoS 0): a terminal has JetStream consumers only
    for cmd and payment_status. All three nodes SIGKILLed mid-drain and started again,
    consumers R3 as shipped: the terminals come back by themselves, no reset, and every
    payment is stored once and acknowledged (docs/fleet.md, "Light sessions on NATS")."""

    def only_cmd_and_status_consumers(cluster: NatsCluster) -> None:
        def leaves() -> set[str]:
            return {s.rsplit(".", 1)[-1] for s in cluster.consumer_subjects()
                    if ".kiosk.v1.L" in s}

        wait_for(lambda: {"cmd", "payment_status"} <= leaves(), 20, "the consumers made")
        assert leaves() == {"cmd", "payment_status"}  # none for ack, none for config

    cluster = NatsCluster(tmp_path / "nats").start()
    _kill_the_whole_cluster_mid_drain(tmp_path, desk_key, cluster, "L",
                                      "light sessions, consumers R3",
                                      check_online=only_cmd_and_status_consumers,
                                      light_session=True)


@pytest.mark.slow
def test_a_terminal_whose_ack_consumer_is_lost_resets_its_session_and_is_acknowledged(
    cluster, desk_key, tmp_path
):
    """The stall seen after a full-cluster loss on 2.12, 2.14 and 2.15 (docs/mqtt.md, "Ack
    watch"), made on purpose: the JetStream consumer behind a terminal's `ack`
    subscription is deleted. Both terminals' payments still reach the desk (PUBACKs
    come), their acks do not. The one with the ack watch starts its session afresh and
    is acknowledged; the one without stays unacknowledged: the reset is what heals it."""
    base = dict(protocol="3.1.1", hosts=cluster.hosts(), resend_after_s=1.0)
    on = live_terminal(tmp_path / "on", "WON", mqtt_config(0, desk_key, ack_stall_s=3.0,
                                                           **base), agent=False)
    off = live_terminal(tmp_path / "off", "WOFF", mqtt_config(0, desk_key, ack_stall_s=0,
                                                              **base), agent=False)
    terms = [on, off]
    db = tmp_path / "desk.sqlite"
    desk = _desk(cluster, desk_key, {t.config.terminal.id: terminal_public_key(t.config)
                                     for t in terms}, db, "desk-w").start()
    try:
        assert desk.conn.wait_connected(20), desk.conn.link
        for t in terms:
            make_payments(t.ledger, 1)
            t.start_agent()
        wait_for(lambda: all(unacked(t) == 0 for t in terms), 60, "the first acks")
        for t in terms:
            ack_subject = f"$MQTT.msgs.kiosk.v1.{t.config.terminal.id}.ack"
            assert cluster.delete_consumers(ack_subject) == 1, cluster.consumers()
        t_cut = time.monotonic()
        for t in terms:
            make_payments(t.ledger, 5)
        wait_for(lambda: desk_payment_counts(db)[1] == 12, 60, "all 12 payments at the desk")
        wait_for(lambda: unacked(on) == 0, 90, "the watched terminal acknowledged")
        t_healed = time.monotonic() - t_cut
        assert unacked(off) == 5  # stored at the desk, acked by it, never delivered
        assert on.agent is not None and off.agent is not None
        assert on.agent.ack_watch.resets >= 1 and off.agent.ack_watch.resets == 0
        events = on.ledger.recent_events(kinds=("session_reset",))
        assert events and events[0]["data"]["waited_s"] >= 3, events
        assert "$MQTT.msgs.kiosk.v1.WON.ack" in cluster.consumer_subjects()  # made again
        rows, distinct = desk_payment_counts(db)
        assert rows == distinct == 12
        print(f"\nack consumer deleted: the watched terminal reset its session "
              f"{on.agent.ack_watch.resets} time(s) and was acknowledged {t_healed:.1f} s "
              f"later; the unwatched one still waits for 5 acks")
    finally:
        desk.stop()
        for t in terms:
            t.stop()


@pytest.mark.slow
def test_a_node_refusing_mqtt5_gives_one_clear_line_and_the_terminal_keeps_queueing(
    cluster, desk_key, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="sync.connection")
    node = cluster.nodes[0]
    cfg = mqtt_config(0, desk_key, protocol="5", hosts=((node.endpoint().host,
                                                        node.endpoint().port),))
    t = live_terminal(tmp_path / "t", "V5T", cfg)
    try:
        wait_for(lambda: t.agent.conn.stats.attempts >= 3, 30, "several attempts")
        link = t.agent.link_status()
        assert (link.state, link.problem) == ("down", "protocol_refused"), link
        assert "MQTT 5" in link.text("en") and "MQTT 5" in link.text("ru")
        lines = [r for r in caplog.records if "protocol_refused" in r.getMessage()]
        assert len(lines) == 1, [r.getMessage() for r in lines]  # one line, not one per retry
        assert lines[0].levelno == logging.ERROR
        assert "[mqtt] protocol" in lines[0].getMessage()
        pid = t.pay(500)
        time.sleep(0.5)
        assert unacked(t) >= 1  # queued in the ledger, acknowledged by nobody
        with sqlite3.connect(t.config.paths.ledger) as c:
            assert c.execute("SELECT status FROM payments WHERE id = ?", (pid,)).fetchone()[0] \
                == "queued"
    finally:
        t.stop()


def _id_starting_at(index: int, nodes: int, prefix: str) -> str:
    """A terminal id whose first endpoint (crc32 % nodes) is `index`."""
    for i in range(1000):
        tid = f"{prefix}{i}"
        if zlib.crc32(tid.encode()) % nodes == index:
            return tid
    raise AssertionError("no such id")


@pytest.mark.slow
def test_a_node_cut_off_from_its_cluster_is_named_and_left_for_a_good_one(
    cluster, desk_key, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="sync.connection")
    # reachable, JetStream and MQTT on, but its routes lead nowhere: no quorum, no sessions
    lone = NatsNode("lone", tmp_path / "lone", replicas=3)
    lone.routes = [_dead_port(), _dead_port()]
    lone.start()
    good = cluster.nodes[1].endpoint()
    only_lone = mqtt_config(0, desk_key, protocol="3.1.1",
                            hosts=((lone.endpoint().host, lone.endpoint().port),))
    both = mqtt_config(0, desk_key, protocol="3.1.1",
                       hosts=((lone.endpoint().host, lone.endpoint().port),
                              (good.host, good.port)))
    stuck = live_terminal(tmp_path / "a", "LONE1", only_lone)
    mover_id = _id_starting_at(0, 2, "MOVE")  # starts at the lone node
    mover = live_terminal(tmp_path / "b", mover_id, both, agent=False)
    keys = {mover_id: terminal_public_key(mover.config),
            "LONE1": terminal_public_key(stuck.config)}
    desk = _desk(cluster, desk_key, keys, tmp_path / "desk.sqlite", "desk-lone").start()
    try:
        mover.start_agent()
        wait_for(lambda: mover.agent.conn.connected, 40, "the mover on the good node")
        assert mover.agent.conn.endpoint == good
        pid = mover.pay(500)
        wait_for(lambda: {p["payment_id"] for p in desk.store.payments()} == {pid}, 30,
                 "the mover's payment at the desk")
        wait_for(lambda: stuck.agent.link_status().problem == "no_connack", 40,
                 "the lone node named")
        stuck_pid = stuck.pay(100)
        time.sleep(1.0)
        assert unacked(stuck) >= 1
        assert stuck_pid not in {p["payment_id"] for p in desk.store.payments()}
        assert not stuck.agent.conn.connected
        lone_ep = str(lone.endpoint())
        lines = [r.getMessage() for r in caplog.records
                 if "no_connack" in r.getMessage() and lone_ep in r.getMessage()]
        assert lines and all("cut off from its cluster" in m for m in lines), lines
        # one line per terminal for the lone node, whatever the number of retries
        assert stuck.agent.conn.stats.attempts >= 2
        assert len(lines) <= 2, lines
    finally:
        desk.stop()
        mover.stop()
        stuck.stop()
        lone.stop()


def test_a_cluster_that_does_not_come_up_leaves_no_node_running(tmp_path):
    """The third node cannot bind its MQTT port (something else holds it): start()
    raises, and the two nodes already started are stopped, not left to the machine."""
    cluster = NatsCluster(tmp_path / "nats")
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", cluster.nodes[2].mqtt_port))
    squatter.listen()
    try:
        with pytest.raises(RuntimeError):
            cluster.start()
        assert [n.running for n in cluster.nodes] == [False, False, False]
    finally:
        squatter.close()
        cluster.stop()


def _dead_port() -> int:
    return free_port()  # nothing listens there


class _Quiet:
    def on_connected(self, connection_id: str, session_present: bool) -> None: ...
    def on_disconnected(self, reason: str) -> None: ...
    def on_message(self, msg: object) -> None: ...
    def on_published(self, tag: object, ok: bool, reason: str) -> None: ...


@pytest.mark.slow
def test_a_refused_subscription_drops_the_session_with_one_line_and_backs_off(cluster, caplog):
    """NATS refuses a topic filter in its own `$MQTT/` space (2.9 also one with a '.',
    which 2.10 and later take; and any subscription while its JetStream cannot create the
    consumer): a session without its subscriptions would never get an ack, so it is
    dropped and made again, with backoff, and said once."""
    from sync.connection import Connection, ConnSettings, Subscription

    caplog.set_level(logging.INFO, logger="sync.connection")
    node = cluster.nodes[2]
    conn = Connection(ConnSettings("127.0.0.1", node.mqtt_port, "SUBREFUSED",
                                   protocol="3.1.1", reconnect_min_s=0.2, reconnect_max_s=0.4,
                                   subscriptions=(Subscription("$MQTT/sub/x"),)),
                      _Quiet())
    conn.start()
    try:
        wait_for(lambda: conn.stats.connects >= 3, 30, "several sessions")
        assert (conn.link.state, conn.link.problem) == ("down", "subscribe_refused") or \
            conn.link.problem == "subscribe_refused", conn.link
        lines = [r for r in caplog.records if "subscribe_refused" in r.getMessage()]
        assert len(lines) == 1 and lines[0].levelno == logging.ERROR, lines
        assert conn.backoff.attempt >= 2  # not reset by the CONNACK: it backs off
    finally:
        conn.stop()


# NATS 2.15 gives a stream at most 1,000 consumers unless node.conf's consumer_limit
# section says otherwise, and every QoS 1 subscription of every MQTT session is a consumer
# of one stream ($MQTT_msgs): 250 terminals' worth. A lone node (R1 consumers, quick to
# make) and 17 clients of 60 subscriptions each show the shipped node.conf lifts the cap
# where the version has it (and leaves the line out where NATS refuses it). 60, not all
# in one session: NATS gives a session at most 65,535 unacknowledged messages over all its
# subscriptions, 1,024 each by default, so the 64th subscription of one session is refused.
CLIENTS, SUBSCRIPTIONS_EACH = 17, 60  # 1,020 consumers


@pytest.mark.slow
def test_more_qos1_subscriptions_than_the_default_consumer_limit_are_all_granted(tmp_path):
    solo = NatsCluster(tmp_path / "nats", size=1).start()
    node = solo.nodes[0]
    exe = nats_server_path()
    assert exe is not None
    conf = node.conf.read_text()
    assert ("default_max_consumers" in conf) == (max_consumers_for(exe) is not None), conf
    granted: list[str] = []
    clients: list[mqtt.Client] = []
    try:
        for k in range(CLIENTS):
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"MANYSUBS{k}",
                                 protocol=mqtt.MQTTv311, clean_session=True)
            clients.append(client)
            client.on_subscribe = lambda _c, _u, _mid, rcs, _p: granted.extend(
                str(r) for r in rcs)
            client.connect("127.0.0.1", node.mqtt_port)
            client.loop_start()
            wait_for(client.is_connected, 10, f"client {k} connected")
            before = len(granted)
            client.subscribe([(f"kiosk/v1/M{k:02d}{i:03d}/ack", 1)
                              for i in range(SUBSCRIPTIONS_EACH)])
            wait_for(lambda b=before: len(granted) > b, 60, f"client {k}'s SUBACK")
        assert len(granted) == CLIENTS * SUBSCRIPTIONS_EACH
        assert set(granted) == {"Granted QoS 1"}, sorted(set(granted))
        assert "maximum consumers limit reached" not in node.log()
    finally:
        for client in clients:
            client.loop_stop()
            client.disconnect()
        solo.stop()


def test_the_consumer_limit_section_is_rendered_exactly_where_this_nats_server_accepts_it(
        tmp_path):
    """nats_kit's version rule (`needs_consumer_limit`) checked against the binary itself:
    `nats-server -t` validates node.conf rendered with and without the section. 2.9 to
    2.14 refuse the line, 2.15 and later need it (the test above)."""
    exe = nats_server_path()
    assert exe is not None
    version = nats_server_version(exe)
    checked: dict[int | None, subprocess.CompletedProcess[str]] = {}
    for limit in (None, FLEET_MAX_CONSUMERS):
        conf = tmp_path / f"node-{limit}.conf"
        conf.write_text(render_node(NodeSpec(
            "n1", "127.0.0.1:4222", "127.0.0.1:8222", tmp_path / "store",
            "127.0.0.1:1883", max_consumers=limit)), encoding="utf-8")
        checked[limit] = subprocess.run([exe, "-t", "-c", str(conf)], capture_output=True,
                                        text=True, timeout=30)
    plain, limited = checked[None], checked[FLEET_MAX_CONSUMERS]
    assert plain.returncode == 0, (version, plain.stdout, plain.stderr)
    said = limited.stdout + limited.stderr
    if needs_consumer_limit(version):
        assert limited.returncode == 0, (version, said)
    else:
        assert limited.returncode != 0, (version, said)
        assert 'unknown field "default_max_consumers"' in said, (version, said)


def test_the_api_timeout_section_is_rendered_exactly_where_this_nats_server_accepts_it(
        tmp_path):
    """nats_kit's rule (`takes_api_timeout`, 2.11.3 and later) against the binary itself:
    `nats-server -t` on node.conf with mqtt's js_api_timeout; 2.9 refuses the field."""
    exe = nats_server_path()
    assert exe is not None
    version = nats_server_version(exe)
    conf = tmp_path / "node.conf"
    conf.write_text(render_node(NodeSpec(
        "n1", "127.0.0.1:4222", "127.0.0.1:8222", tmp_path / "store", "127.0.0.1:1883",
        mqtt_api_timeout_s=FLEET_MQTT_API_TIMEOUT_S)), encoding="utf-8")
    done = subprocess.run([exe, "-t", "-c", str(conf)], capture_output=True, text=True,
                          timeout=30)
    said = done.stdout + done.stderr
    if not takes_api_timeout(version):
        assert done.returncode != 0, (version, said)
        assert 'unknown field "js_api_timeout"' in said, (version, said)
        return
    assert done.returncode == 0, (version, said)
    # and a node started from it takes MQTT sessions with QoS 1 subscriptions
    client, mqtt_port = free_port(), free_port()
    conf.write_text(render_node(NodeSpec(
        "n1", f"127.0.0.1:{client}", f"127.0.0.1:{free_port()}", tmp_path / "store",
        f"127.0.0.1:{mqtt_port}", replicas=1, mqtt_api_timeout_s=FLEET_MQTT_API_TIMEOUT_S)),
        encoding="utf-8")
    log = tmp_path / "n1.log"
    proc = spawn_listening([exe, "-c", str(conf)], log, mqtt_port, "nats-server",
                           lambda: log.read_text(errors="replace"))
    granted: list[int] = []
    term = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="T-API", protocol=mqtt.MQTTv311,
                       clean_session=False)
    try:
        term.on_subscribe = lambda _c, _u, _m, rcs, _p: granted.extend(r.value for r in rcs)
        term.connect("127.0.0.1", mqtt_port)
        term.loop_start()
        wait_for(term.is_connected, 20, "connected to the node with js_api_timeout")
        term.subscribe([("kiosk/v1/T-API/ack", 1), ("kiosk/v1/T-API/cmd", 1)])
        wait_for(lambda: len(granted) == 2, 20, "two QoS 1 subscriptions answered")
        assert granted == [1, 1], log.read_text(errors="replace")[-2000:]
    finally:
        term.loop_stop()
        term.disconnect()
        stop_process(proc)


def test_the_operators_commands_write_files_this_nats_server_accepts(tmp_path, capsys):
    """docs/fleet.md's steps for one node of a TLS cluster, told the release of the binary
    under test the way the docs say (`--for-version "$(nats-server --version)"`): node,
    users, then the node's own check. On 2.15 and later the consumer limit comes with it."""
    exe = nats_server_path()
    assert exe is not None
    told = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10,
                          check=True).stdout
    kit = broker_kit.init(tmp_path / "kit", "127.0.0.1")
    conf_dir = tmp_path / "conf"
    out = conf_dir / "kiosk.conf"
    assert nats_kit.main(["node", "--kit", str(kit.dir), "--name", "n1",
                          "--routes", "n2:6222,n3:6222", "--conf-dir", str(conf_dir),
                          "--store", str(tmp_path / "store"), "--out", str(out),
                          "--for-version", told]) == 0, capsys.readouterr().err
    ids = tmp_path / "ids.txt"
    ids.write_text("T0001\nT0002\n", encoding="utf-8")
    assert nats_kit.main(["users", "--ids", str(ids),
                          "--out", str(conf_dir / nats_kit.USERS)]) == 0
    assert ("default_max_consumers" in out.read_text()) == needs_consumer_limit(told)
    assert "js_api_timeout" not in out.read_text()  # the operator's choice (--mqtt-api-timeout)
    done = subprocess.run([exe, "-t", "-c", str(out)], capture_output=True, text=True,
                          timeout=30)
    said = done.stdout + done.stderr
    assert done.returncode == 0 and "is valid" in said, (told, said)
