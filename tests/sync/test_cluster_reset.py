"""The operator's recovery after a full-cluster loss (docs/fleet.md "Resetting the MQTT
sessions"): `python -m sync.nats_kit reset-sessions` deletes exactly `$MQTT_sess` and
`$MQTT_msgs`, the nodes are restarted one at a time, their MQTT layer makes the two
streams again, and every payment reaches the desk exactly once, because exactly once
rests on the terminals' ledger outboxes and the desk's signed acks, not on the broker's
sessions. `$MQTT_rmsgs` (retained state) is the same stream before and after. Also: a
dry run deletes nothing; the kiosk.operator user of users.conf may do this and nothing
else; bad input gives exit 1 and one line. Real 3-node NATS cluster, real terminals and
desk database; the reset runs as the operator runs it (a subprocess).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest

from sync import nats_kit
from sync.desk import Desk
from sync.nats_admin import NatsAdmin, NatsAdminError, StreamInfo
from sync.nats_kit import OPERATOR_USER, USERS
from tests.sync.broker import free_port, spawn_listening, stop_process
from tests.sync.conftest import KitBroker, wait_for
from tests.sync.nats import NatsCluster, NatsNode, mqtt_connack, nats_server_path
from tests.sync.terminal import (
    desk_payment_counts,
    mqtt_config,
    paying_fleet,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SESS, MSGS, RMSGS = "$MQTT_sess", "$MQTT_msgs", "$MQTT_rmsgs"
TERMINALS = 4
PER_TERMINAL = 50  # 200 payments in all
JETSTREAM_BACK_S = 60.0
OPERATOR_PW = "a-long-operator-password-1"
ROLLING_READY_S = 60.0
T = TypeVar("T")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    c = NatsCluster(tmp_path_factory.mktemp("nats-reset")).start()
    yield c
    c.stop()


def _admin(node: NatsNode, user: str | None = None, password: str | None = None) -> NatsAdmin:
    return NatsAdmin("127.0.0.1", node.client_port, user, password)


def _streams(node: NatsNode) -> set[str]:
    with _admin(node) as a:
        return set(a.stream_names())


def _infos_once(node: NatsNode) -> dict[str, StreamInfo | None]:
    with _admin(node) as a:
        return {name: a.stream_info(name) for name in (SESS, MSGS, RMSGS)}


def _retry(cluster: NatsCluster, fn: Callable[[], T]) -> T:
    """fn() once JetStream answers it: after a restart the meta leader and each stream's
    leader are elected anew, and until then a request may go unanswered."""
    last: Exception | None = None
    deadline = time.monotonic() + JETSTREAM_BACK_S
    while time.monotonic() < deadline:
        try:
            return fn()
        except NatsAdminError as exc:
            last = exc
            time.sleep(0.5)
    raise AssertionError(f"JetStream did not answer within {JETSTREAM_BACK_S} s: {last}\n"
                         f"{cluster.logs()}")


def _infos(cluster: NatsCluster, node: NatsNode) -> dict[str, StreamInfo | None]:
    return _retry(cluster, lambda: _infos_once(node))


def _wait_jetstream(cluster: NatsCluster, node: NatsNode) -> set[str]:
    """The stream names once JetStream answers again (a meta leader after the restart)."""
    return _retry(cluster, lambda: _streams(node))


def _reset_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    """`python -m sync.nats_kit reset-sessions ...` as the operator runs it."""
    return subprocess.run([sys.executable, "-m", "sync.nats_kit", "reset-sessions", *argv],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)




def test_a_dry_run_names_the_two_streams_and_deletes_nothing(cluster):
    node = cluster.nodes[1]
    before = _infos(cluster, node)
    assert all(before[s] is not None for s in (SESS, MSGS, RMSGS)), before
    done = _reset_cli("--server", node.client_address, "--dry-run")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == [f"{SESS}: would delete", f"{MSGS}: would delete"], lines
    assert "nothing deleted" in lines[-1] and not done.stderr
    after = _infos(cluster, node)
    for s, was in before.items():  # the very same streams, not deleted and made again
        now = after[s]
        assert was is not None and now is not None and now.created == was.created, s


@pytest.mark.timeout(240)
def test_all_nodes_killed_mid_drain_then_a_session_reset_loses_and_duplicates_nothing(
    cluster, desk_key, tmp_path
):
    cfg = mqtt_config(0, desk_key, protocol="3.1.1", hosts=cluster.hosts(),
                      inflight=5, batch=5, resend_after_s=2.0)
    fleet = paying_fleet(tmp_path, "R", TERMINALS, PER_TERMINAL, cfg)
    terms, expected, keys = fleet.terminals, fleet.expected, fleet.keys
    db = tmp_path / "desk.sqlite"
    desk = Desk("127.0.0.1", 0, desk_key.key, desk_key.kid, keys, db, client_id="desk-reset",
                protocol="3.1.1", endpoints=cluster.endpoints(), persistent=False,
                share_group="kiosk-desk", reconnect_min_s=0.2, ack_delay_s=0.1).start()
    node = cluster.nodes[0]
    try:
        assert desk.conn.wait_connected(20), desk.conn.link
        rmsgs_before = _infos(cluster, node)[RMSGS]
        assert rmsgs_before is not None
        for t in terms:
            t.start_agent()
        wait_for(lambda: desk_payment_counts(db)[1] >= 20, 60, "the drain to start")
        at_kill = desk_payment_counts(db)[1]
        assert at_kill < len(expected), "the drain finished before the fault"
        t_kill = time.monotonic()
        cluster.kill_all()
        cluster.start_nodes()
        before = _wait_jetstream(cluster, node)
        t_js = time.monotonic() - t_kill
        assert RMSGS in before, before
        made = _infos(cluster, node)  # the incarnations the reset deletes

        done = _reset_cli("--server", node.client_address, "--timeout", "10")
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert lines[:2] == [f"{s}: deleted" if s in before else f"{s}: not present"
                             for s in (SESS, MSGS)], lines
        assert "one at a time" in lines[-1] and "resend" in lines[-1] and not done.stderr
        # present again already if a node's MQTT layer was still being made (the nodes
        # make it at their first MQTT CONNECT after start, and retry it while JetStream
        # is not ready); otherwise absent until the restarts below
        between = _infos(cluster, node)
        # recorded, not asserted: does a node not yet restarted take a CONNECT now?
        connack_between = mqtt_connack(cluster.nodes[-1].mqtt_port, wait_s=5.0)
        t_reset = time.monotonic() - t_kill

        cluster.restart_rolling(ROLLING_READY_S)
        t_rolled = time.monotonic() - t_kill
        after = _infos(cluster, node)
        for s in (SESS, MSGS):  # there again, and a new stream: made after the delete
            old, new = made[s], after[s]
            assert new is not None, (s, after)
            assert old is None or new.created != old.created, (s, old, new)
        # the retained messages' stream is the very same one (never deleted, never made anew)
        kept = after[RMSGS]
        assert kept is not None and kept.created == rmsgs_before.created, (kept, rmsgs_before)

        fleet.settle(db)
        t_done = time.monotonic() - t_kill
        fleet.assert_stored_once(db, desk.store.payments())
        print(f"\nall 3 NATS nodes SIGKILLed with {at_kill} of {len(expected)} payments at the "
              f"desk; JetStream answering {t_js:.1f} s after the kill, sessions reset at "
              f"{t_reset:.1f} s (between: {SESS} {'absent' if between[SESS] is None else 'present'}"
              f", {MSGS} {'absent' if between[MSGS] is None else 'present'}, a fresh CONNECT "
              f"to a running node: CONNACK {connack_between}), rolling restart "
              f"done at {t_rolled:.1f} s, all {len(expected)} stored once and acknowledged at "
              f"{t_done:.1f} s; {desk.stats.duplicates} duplicates de-duplicated by the desk")
    finally:
        desk.stop()
        for t in terms:
            t.stop()
        cluster.start_nodes()


@contextmanager
def _fake_server(greeting: bytes | None) -> Iterator[int]:
    """A listening socket that is not NATS: it sends `greeting` (or nothing) and waits."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.1)
    port = srv.getsockname()[1]
    stop = threading.Event()
    conns: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            conns.append(conn)
            if greeting:
                conn.sendall(greeting)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join(5)
        for c in conns:
            c.close()
        srv.close()


def _main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], list[str]]:
    rc = nats_kit.main(["reset-sessions", *argv])
    out, err = capsys.readouterr()
    return rc, out.splitlines(), err.splitlines()


def _one_error_line(err: list[str], *words: str) -> None:
    assert len(err) == 1, err
    assert err[0].startswith("nats_kit: ") and "Traceback" not in err[0], err
    for w in words:
        assert w in err[0], (w, err[0])


@pytest.mark.parametrize(("greeting", "words"), [
    (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
     ("not a NATS client port", "not a NATS operation")),
    (b"SSH-2.0-OpenSSH_9.2\r\n", ("not a NATS client port",)),
    (b"\x16\x03\x01\x02\x00\x01", ("not a NATS client port", "no INFO within 1 s")),
    (None, ("not a NATS client port", "no INFO within 1 s")),
    (b'INFO {"server_id":"x","tls_required":true}\r\n', ("requires TLS",)),
])
def test_a_port_that_is_not_a_nats_client_port_gives_exit_1_and_one_line(
    capsys, greeting, words
):
    with _fake_server(greeting) as port:
        rc, out, err = _main(capsys, "--server", f"127.0.0.1:{port}", "--timeout", "1")
    assert rc == 1 and out == []
    _one_error_line(err, f"127.0.0.1:{port}", *words)


def test_a_closed_port_gives_exit_1_and_one_line(capsys):
    port = free_port()
    rc, out, err = _main(capsys, "--server", f"127.0.0.1:{port}")
    assert rc == 1 and out == []
    _one_error_line(err, "connection refused", f"127.0.0.1:{port}")


def test_a_missing_password_file_gives_exit_1_and_one_line(capsys, tmp_path):
    rc, _, err = _main(capsys, "--server", "127.0.0.1:1", "--password-file",
                       str(tmp_path / "nope"))
    assert rc == 1
    _one_error_line(err, "nope")


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """One node from the shipped TLS configuration, users.conf with the operator user."""
    base = tmp_path_factory.mktemp("nats-operator")
    kb = KitBroker(base)  # its CAs and certificates; its mosquitto is not started
    solo = NatsCluster(base / "nats", size=1).with_tls(kb.kit, ["TA"], kb.desk_tls(),
                                                        operator_password=OPERATOR_PW)
    solo.start()  # the desk certificate's probe CONNECT made the MQTT streams
    yield solo
    solo.stop()


def test_the_operator_user_may_reset_the_sessions_and_nothing_more(tls_node, capsys, tmp_path):
    node = tls_node.nodes[0]
    good, wrong = tmp_path / "pw", tmp_path / "wrong"
    good.write_text(OPERATOR_PW + "\n")
    wrong.write_text("not-the-operator-password\n")
    server = ("--server", node.client_address)
    users_conf = (tls_node.conf_dir / USERS).read_text()  # type: ignore[operator]
    assert OPERATOR_PW not in users_conf and "$2a$11$" in users_conf  # only its hash

    rc, out, err = _main(capsys, *server, "--dry-run")  # no user: every user is MQTT-only
    assert rc == 1 and out == []
    _one_error_line(err, "Authorization Violation", "no user")
    rc, out, err = _main(capsys, *server, "--password-file", str(wrong), "--dry-run")
    assert rc == 1 and out == []
    _one_error_line(err, "Authorization Violation", OPERATOR_USER, "wrong user or password")
    rc, out, err = _main(capsys, *server, "--user", "CN=kiosk.desk", "--password-file",
                         str(good), "--dry-run")  # the desk's user: MQTT only
    assert rc == 1
    _one_error_line(err, "Authorization Violation")

    rc, out, err = _main(capsys, *server, "--password-file", str(good), "--dry-run")
    assert rc == 0 and err == []
    assert out[:2] == [f"{SESS}: would delete", f"{MSGS}: would delete"], out
    with _admin(node, user=OPERATOR_USER, password=OPERATOR_PW) as a:
        with pytest.raises(NatsAdminError, match="Permissions Violation"):
            a.delete_stream(RMSGS)
        with pytest.raises(NatsAdminError, match="Permissions Violation"):
            a.stream_info(RMSGS)
        assert {SESS, MSGS, RMSGS} <= set(a.stream_names())  # the connection still works

    rc, out, err = _main(capsys, *server, "--password-file", str(good))
    assert rc == 0 and err == []
    assert out[:2] == [f"{SESS}: deleted", f"{MSGS}: deleted"], out
    with _admin(node, user=OPERATOR_USER, password=OPERATOR_PW) as a:
        names = set(a.stream_names())
    assert RMSGS in names and SESS not in names and MSGS not in names, names
    rc, out, err = _main(capsys, *server, "--password-file", str(good))
    assert rc == 0 and out[:2] == [f"{SESS}: not present", f"{MSGS}: not present"], out

    node.restart()  # accepting MQTT (desk certificate) again: the streams are back
    with _admin(node, user=OPERATOR_USER, password=OPERATOR_PW) as a:
        assert {SESS, MSGS, RMSGS} <= set(a.stream_names())


def test_the_operator_user_may_delete_consumers_of_the_qos1_stream_only(tls_node):
    """prune-consumers deletes single consumers of $MQTT_msgs as kiosk.operator; the
    retained state's consumers and the sessions' stream stay out of its reach. It may
    read a session's record, and no message of the other streams (the terminals')."""
    retained = sorted(name for stream, name, _ in tls_node.consumers() if stream == RMSGS)
    assert retained, tls_node.consumers()  # one per node, made at the MQTT start
    with _admin(tls_node.nodes[0], user=OPERATOR_USER, password=OPERATOR_PW) as a:
        assert a.delete_consumer(MSGS, "nobody_1") is False  # allowed, not there
        for stream, name in ((RMSGS, retained[0]), (SESS, "nobody_1")):
            with pytest.raises(NatsAdminError, match="Permissions Violation"):
                a.delete_consumer(stream, name)
    assert retained[0] in {name for _, name, _ in tls_node.consumers()}
    with _admin(tls_node.nodes[0], user=OPERATOR_USER, password=OPERATOR_PW) as a:
        assert a.last_message(SESS, "$MQTT.sess.nobody") is None  # allowed, none there
        for stream, subject in ((MSGS, "$MQTT.msgs.kiosk.v1.T1.ack"),
                                (RMSGS, "$MQTT.rmsgs.kiosk.v1.T1.state")):
            with pytest.raises(NatsAdminError, match="Permissions Violation"):
                a.last_message(stream, subject)


def test_a_nats_server_without_jetstream_gives_exit_1_and_one_line(capsys, tmp_path):
    """Not a node of the fleet (JetStream off): the request is answered by nobody."""
    exe = nats_server_path()
    assert exe is not None, "nats-server is not installed: run scripts/system-deps.sh"
    port = free_port()
    conf, log = tmp_path / "plain.conf", tmp_path / "plain.log"
    conf.write_text(f"listen: 127.0.0.1:{port}\n", encoding="utf-8")
    proc = spawn_listening([exe, "-c", str(conf)], log, port, "nats-server (no JetStream)",
                           lambda: log.read_text(errors="replace"))
    try:
        rc, out, err = _main(capsys, "--server", f"127.0.0.1:{port}", "--timeout", "2")
    finally:
        stop_process(proc)
    assert rc == 1 and out == []
    _one_error_line(err, f"127.0.0.1:{port}", "JetStream")
