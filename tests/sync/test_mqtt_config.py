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
