"""[mqtt] connect_timeout_s: how long one connect attempt may wait for the broker.

A NATS node that holds a CONNECT while it waits for JetStream (up to its MQTT
js_api_timeout; docs/fleet.md "Subscriptions refused under load") looks, from the
terminal, like a listener that accepts and says nothing: tests/sync/silent_broker.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from kiosk.config import ConfigError, MqttConfig, parse_config
from sync.connection import Connection, ConnSettings
from tests.sync.conftest import wait_for
from tests.sync.silent_broker import SilentBroker
from tests.sync.terminal import live_terminal


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
                                    connect_timeout_s=20.0, **fast), _Quiet())  # type: ignore[arg-type]
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
    assert mqtt({"connect_timeout_s": 25}).connect_timeout_s == 25.0
    for bad in (0, -3, "10s", True):
        with pytest.raises(ConfigError, match=r"mqtt\.connect_timeout_s.*positive number"):
            mqtt({"connect_timeout_s": bad})


def test_a_connect_timeout_must_be_shorter_than_the_keepalive() -> None:
    def mqtt(table: dict[str, object]) -> MqttConfig:
        return parse_config({"mqtt": table}, "kiosk.toml", Path("/etc/kiosk")).mqtt

    with pytest.raises(ConfigError,
                       match=r"mqtt\.connect_timeout_s.*not be longer than keepalive_s"):
        mqtt({"connect_timeout_s": 31})  # the keep-alive's default is 30
    m = mqtt({"connect_timeout_s": 40, "keepalive_s": 45})
    assert (m.connect_timeout_s, m.keepalive_s) == (40.0, 45)
    # a file written before the setting existed, with a short keep-alive, still loads: the
    # wait it had then (paho's keep-alive) is the one it gets
    assert mqtt({"keepalive_s": 5}).connect_timeout_s == 5.0
    assert mqtt({"keepalive_s": 5, "connect_timeout_s": 5}).connect_timeout_s == 5.0
    with pytest.raises(ValueError, match="not be longer than keepalive_s"):
        Connection(ConnSettings("h", 1, "T1", connect_timeout_s=40), _Quiet())  # type: ignore[arg-type]


def test_the_rule_s_reason_paho_gives_up_at_the_keepalive_before_connack() -> None:
    """What the rule above rests on: paho itself closes a connection that has heard
    nothing for the keep-alive, CONNACK or not. If a paho release stops doing this, this
    test fails and the rule can go."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    silent = SilentBroker()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="KEEPALIVE1")
    gone: list[object] = []
    client.on_disconnect = lambda c, u, f, rc, p: gone.append(rc)
    try:
        client.connect("127.0.0.1", silent.port, keepalive=1)

        def turn() -> bool:
            client.loop(0.05)
            return bool(gone)

        wait_for(turn, 10, "paho closing the silent connection")
        assert not client.is_connected() and silent.count() == 1
    finally:
        client.disconnect()
        silent.close()


def test_the_desk_raises_its_keepalive_with_its_connect_timeout(tmp_path: Path,
                                                                  desk_key) -> None:  # type: ignore[no-untyped-def]
    from sync.desk import Desk

    for timeout, keepalive in ((10.0, 30), (40.0, 45)):
        desk = Desk("127.0.0.1", 1, desk_key.key, desk_key.kid, {},
                    tmp_path / f"desk{timeout:g}.sqlite", connect_timeout_s=timeout)
        assert desk.conn.settings.keepalive == keepalive
        desk.store.close()


def test_a_long_connack_wait_keeps_the_handshake_short(tmp_path: Path) -> None:
    """A node whose host is down (or a listener that never speaks TLS) still fails over
    after the handshake bound, not after a CONNACK wait raised for js_api_timeout: a
    TLS client whose ClientHello goes unanswered gives up after handshake_timeout_s."""
    from sync import broker_kit

    kit = broker_kit.init(tmp_path / "kit", "127.0.0.1", 1, 2, bind="127.0.0.1", days=30)
    silent = SilentBroker()
    conn = Connection(ConnSettings("127.0.0.1", silent.port, "TLSWAIT1", connect_timeout_s=20.0,
                                   handshake_timeout_s=0.5, reconnect_min_s=0.05,
                                   reconnect_max_s=0.1, tls_ca=kit.terminal_ca),
                      _Quiet())  # type: ignore[arg-type]
    conn.start()
    try:
        wait_for(lambda: silent.count() >= 3, 15, "three TLS attempts, none answered")
        assert conn.link.problem == "unreachable", conn.link  # timed out, not refused
        assert "timed out" in conn.link.detail
        assert silent.got > 0  # the ClientHello went out each time
    finally:
        conn.stop()
        silent.close()
