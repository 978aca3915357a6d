"""The [mqtt] section of the configuration file (kiosk/config.py MqttConfig)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiosk.config import ConfigError, parse_config


def _mqtt(table: dict):  # type: ignore[no-untyped-def]
    return parse_config({"mqtt": table}, "kiosk.toml", Path("/etc/kiosk")).mqtt


# base64 of 32 bytes: config checks the key's form
DESK_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="


def test_defaults_and_values():
    d = _mqtt({})
    assert (d.enabled, d.port, d.inflight, d.batch, d.tls_ca) == (False, 1883, 1000, 50, None)
    m = _mqtt({
        "enabled": True, "host": "broker", "port": 8883, "tls_ca": "ca.pem",
        "tls_cert": "/k/c.pem", "tls_key": "c.key", "reconnect_min_s": 0.5,
        "desk_keys": {"desk.1a2b3c4d": DESK_KEY}, "health_interval_s": 30,
    })
    assert m.tls_ca == Path("/etc/kiosk/ca.pem") and m.tls_cert == Path("/k/c.pem")
    assert m.desk_keys == (("desk.1a2b3c4d", DESK_KEY),)
    assert m.reconnect_min_s == 0.5 and m.health_interval_s == 30
    assert (d.light_session, _mqtt({"light_session": True}).light_session) == (False, True)
    assert (d.ack_stall_s, _mqtt({"ack_stall_s": 0}).ack_stall_s) == (900.0, 0.0)
    assert _mqtt({"ack_stall_s": 120, "resend_after_s": 10}).ack_stall_s == 120.0


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ({"tls_cert": "c.pem"}, "go together"),
        ({"tls_cert": "c.pem", "tls_key": "k"}, "tls_ca"),
        ({"reconnect_min_s": 5, "reconnect_max_s": 1}, "reconnect_max_s"),
        ({"reconnect_min_s": 0}, "positive number"),
        ({"inflight": 0}, "positive integer"),
        ({"desk_keys": {"k": 5}}, "base64"),
        ({"will_delay_s": -1}, "0 or more"),
        ({"light_session": "yes"}, "light_session"),
        ({"ack_stall_s": -1}, "0 (off) or a number of seconds"),
        ({"ack_stall_s": "15m"}, "ack_stall_s"),
        ({"ack_stall_s": 30, "resend_after_s": 30}, "longer than mqtt.resend_after_s"),
        ({"brokr": "x"}, "not a known setting"),
    ],
)
def test_errors_name_the_key(table, words):
    with pytest.raises(ConfigError) as err:
        _mqtt(table)
    assert words in str(err.value) and "mqtt." in str(err.value)


def test_every_mqtt_key_is_shown_in_the_example_and_the_docs():
    import dataclasses
    import re
    from pathlib import Path

    from kiosk.config import MqttConfig, load_config

    root = Path(__file__).resolve().parents[2]
    example = (root / "config.example.toml").read_text(encoding="utf-8")
    section = example.split("[mqtt]", 1)[1].split("\n[catalog]", 1)[0]
    docs = (root / "docs" / "mqtt.md").read_text(encoding="utf-8").split(
        "## Configuration (`[mqtt]`)", 1)[1]
    for f in dataclasses.fields(MqttConfig):
        name = "mqtt.desk_keys" if f.name == "desk_keys" else f.name
        assert re.search(rf"^#? ?\[?{re.escape(name)}\b", section, re.M), name
        assert f"`{f.name}`" in docs or f"`[mqtt.{f.name}]`" in docs, f.name
    shown = load_config(root / "config.example.toml").mqtt
    assert shown == MqttConfig()  # the uncommented values are the defaults


def test_protocol_and_hosts():
    d = _mqtt({})
    assert (d.protocol, d.hosts) == ("5", ())
    m = _mqtt({"protocol": "3.1.1", "hosts": ["a.example.ru:8883", "[::1]:8884", "10.0.0.3:1"]})
    assert m.protocol == "3.1.1"
    assert m.hosts == (("a.example.ru", 8883), ("::1", 8884), ("10.0.0.3", 1))


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ({"protocol": "5.0"}, 'must be "5" or "3.1.1" (a string, quoted), got \'5.0\''),
        ({"protocol": 5}, 'must be "5" or "3.1.1" (a string, quoted), got 5'),
        ({"hosts": "a:1"}, "list of"),
        ({"hosts": [1883]}, "list of"),
        ({"hosts": ["a"]}, "needs its port"),
        ({"hosts": ["a:0"]}, "1-65535"),
        ({"hosts": ["a:b"]}, "1-65535"),
        ({"hosts": ["a b:1"]}, "not a host"),
        ({"hosts": ["a:1", "a:1"]}, "twice"),
        ({"hosts": ["a:1"], "host": "b"}, "one or the other"),
        ({"hosts": ["a:1"], "port": 8883}, "one or the other"),
    ],
)
def test_protocol_and_hosts_errors_name_the_key(table, words):
    with pytest.raises(ConfigError) as err:
        _mqtt(table)
    assert words in str(err.value) and "mqtt." in str(err.value), str(err.value)


def test_a_fleet_spreads_over_the_nodes_and_fails_over_in_turn():
    """Each terminal starts at its own node (crc32 of its id), and every failure moves it
    to the next one: no node is left out, none is tried twice before the others."""
    from collections import Counter

    from sync.connection import Connection, ConnSettings, Endpoint

    nodes = tuple(Endpoint("127.0.0.1", p) for p in (1, 2, 3))
    first = Counter()
    for i in range(300):
        conn = Connection(ConnSettings("x", 0, f"T{i:04d}", endpoints=nodes), handler=None)  # type: ignore[arg-type]
        first[conn.endpoint.port] += 1
        seen = [conn.endpoint]
        for _ in range(2):
            conn._next_endpoint()
            seen.append(conn.endpoint)
        assert sorted(e.port for e in seen) == [1, 2, 3]
        conn._next_endpoint()
        assert conn.endpoint == seen[0]
    assert min(first.values()) > 60, first  # about 100 each
    single = Connection(ConnSettings("h", 1883, "T1"), handler=None)  # type: ignore[arg-type]
    assert single.endpoints == (Endpoint("h", 1883),)
