"""[mqtt] connect_timeout_s: how long one connect attempt may wait for the broker.

A NATS node that holds a CONNECT while it waits for JetStream (up to its MQTT
js_api_timeout; docs/fleet.md "Subscriptions refused under load") looks, from the
terminal, like a listener that accepts and says nothing. That is what SilentBroker is: a
real TCP listener that accepts every connection, reads what comes and never answers.
"""

from __future__ import annotations

import math
import socket
import threading
from pathlib import Path

import pytest

from kiosk.config import ConfigError, MqttConfig, parse_config
from sync.connection import Connection, ConnSettings
from tests.sync.conftest import wait_for
from tests.sync.terminal import live_terminal


class SilentBroker:
    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.got = 0  # bytes read: the CONNECT packets
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                pass
            else:
                conn.setblocking(False)
                with self._lock:
                    self.accepted += 1
                    self._held.append(conn)
            with self._lock:
                for c in self._held:
                    try:
                        self.got += len(c.recv(4096))
                    except (BlockingIOError, OSError):
                        pass

    def count(self) -> int:
        with self._lock:
            return self.accepted

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for c in self._held:
            c.close()
        self.sock.close()


class _Quiet:
    def on_connected(self, connection_id: str, session_present: bool) -> None: ...
    def on_disconnected(self, reason: str) -> None: ...
    def on_message(self, msg: object) -> None: ...
    def on_published(self, tag: object, ok: bool, reason: str) -> None: ...


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_an_attempt_waits_connect_timeout_s_for_connack_then_names_it(protocol: str) -> None:
    """The short timeout gives up and tries again, saying why (`connack_timeout`, not
    `no_connack`: the broker did not close anything); the long one is still waiting on
    its first attempt long after the short one's timeout has passed several times."""
    short_b, long_b = SilentBroker(), SilentBroker()
    fast = dict(protocol=protocol, reconnect_min_s=0.05, reconnect_max_s=0.1)
    short = Connection(ConnSettings("127.0.0.1", short_b.port, "SHORT1",
                                    connect_timeout_s=0.5, **fast), _Quiet())  # type: ignore[arg-type]
    long_ = Connection(ConnSettings("127.0.0.1", long_b.port, "LONG1",
                                    connect_timeout_s=60.0, **fast), _Quiet())  # type: ignore[arg-type]
    short.start()
    long_.start()
    try:
        wait_for(lambda: short_b.count() >= 3, 30, "three attempts at the silent broker")
        assert short_b.got > 0  # a CONNECT was sent each time, nothing came back
        assert short.link.problem == "connack_timeout", short.link
        assert "no CONNACK within 0.5 s" in short.link.detail
        assert "connect_timeout_s" in short.link.text("en")
        assert "connect_timeout_s" in short.link.text("ru")
        assert not short.connected
        # ≥ 3 attempts of 0.5 s took at least 1 s: the long one's single attempt outlived
        # the short timeout twice over and is still open, with no problem named
        assert long_b.count() == 1
        assert long_.link.problem == "", long_.link
        assert long_.stats.attempts == 1
    finally:
        short.stop()
        long_.stop()
        short_b.close()
        long_b.close()


def test_the_agent_takes_connect_timeout_s_from_its_config_file(tmp_path: Path) -> None:
    silent = SilentBroker()
    mqtt = parse_config(
        {"mqtt": {"enabled": True, "host": "127.0.0.1", "port": silent.port,
                  "connect_timeout_s": 0.5, "reconnect_min_s": 0.05,
                  "reconnect_max_s": 0.1}},
        "kiosk.toml", tmp_path).mqtt
    term = live_terminal(tmp_path, "SLOWCONN1", mqtt)
    try:
        agent = term.agent
        assert agent is not None
        wait_for(lambda: silent.count() >= 2, 30, "the agent trying again")
        wait_for(lambda: agent.link_status().problem == "connack_timeout", 10,
                 "the agent's link naming the timeout")
        assert "0.5 s" in agent.link_status().detail
    finally:
        term.stop()
        silent.close()


def test_the_desk_takes_connect_timeout_s(tmp_path: Path, desk_key) -> None:  # type: ignore[no-untyped-def]
    from sync.desk import Desk

    silent = SilentBroker()
    desk = Desk("127.0.0.1", silent.port, desk_key.key, desk_key.kid, {},
                tmp_path / "desk.sqlite", client_id="desk-slow", reconnect_min_s=0.05,
                connect_timeout_s=0.5)
    desk.start()
    try:
        wait_for(lambda: silent.count() >= 2, 30, "the desk trying again")
        assert desk.conn.link.problem == "connack_timeout"
    finally:
        desk.stop()
        silent.close()


def test_the_desk_option_is_checked() -> None:
    from sync.cli import _connect_timeout
    from sync.keys import KeyError_

    assert _connect_timeout(None) == ConnSettings.connect_timeout_s == 10.0
    assert _connect_timeout(45.0) == 45.0
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(KeyError_, match="--connect-timeout"):
            _connect_timeout(bad)


def test_config_default_and_errors() -> None:
    def mqtt(table: dict[str, object]) -> MqttConfig:
        return parse_config({"mqtt": table}, "kiosk.toml", Path("/etc/kiosk")).mqtt

    assert mqtt({}).connect_timeout_s == MqttConfig.connect_timeout_s == 10.0
    assert mqtt({"connect_timeout_s": 45}).connect_timeout_s == 45.0
    for bad in (0, -3, "10s", True):
        with pytest.raises(ConfigError, match=r"mqtt\.connect_timeout_s.*positive number"):
            mqtt({"connect_timeout_s": bad})
