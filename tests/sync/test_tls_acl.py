"""TLS with per-terminal client certificates and an ACL keyed on the certificate's CN
(use_identity_as_username; the shipped deploy/mosquitto/ files): a terminal cannot
publish as another nor read another's commands; forged, expired and replayed commands
change nothing. Real mosquitto."""

from __future__ import annotations

import ssl
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from kiosk.ledger import desk as desk_ledger
from sync import topics
from sync.desk import Desk
from sync.envelope import seal
from sync.keys import key_id
from tests.sync.conftest import wait_for
from tests.sync.terminal import live_terminal, mqtt_config, terminal_public_key


@pytest.fixture(scope="module")
def tls_setup(kit_broker):
    """The broker runs the shipped configuration and ACL (tests/sync/test_broker_kit.py)."""
    return kit_broker


def _raw_client(kb, cert: tuple[Path, Path] | None, port: int, cid: str):  # type: ignore[no-untyped-def]
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
    c.tls_set(
        ca_certs=str(kb.kit.terminal_ca),
        certfile=str(cert[0]) if cert else None,
        keyfile=str(cert[1]) if cert else None,
        cert_reqs=ssl.CERT_REQUIRED,
        tls_version=ssl.PROTOCOL_TLS_CLIENT,
    )
    return c


def test_tls_acl_isolates_terminals_and_bad_commands_change_nothing(
    tls_setup, desk_key, tmp_path
):
    kb = tls_setup
    ca = kb.kit.terminal_ca
    base, broker = kb, kb.broker

    def cfg(name: str):  # type: ignore[no-untyped-def]
        cert = kb.terminal(name)
        return mqtt_config(broker.port, desk_key, tls_ca=ca, tls_cert=cert[0], tls_key=cert[1])

    ta = live_terminal(tmp_path / "a", "TA", cfg("TA"))
    tb = live_terminal(tmp_path / "b", "TB", cfg("TB"))
    pubs = {"TA": terminal_public_key(ta.config), "TB": terminal_public_key(tb.config)}
    desk = Desk("127.0.0.1", kb.desk_port, desk_key.key, desk_key.kid, pubs,
                tmp_path / "desk.sqlite", client_id="desk", tls=kb.desk_tls()).start()
    spy = None
    try:
        wait_for(lambda: {"TA", "TB"} <= set(desk.states), 10, "both online over TLS")
        pa, pb = ta.pay(500), tb.pay(100)
        wait_for(lambda: len(desk.store.payments()) == 2, 10, "payments over TLS")
        assert {p["payment_id"] for p in desk.store.payments()} == {pa, pb}

        # A spy with another fleet member's certificate (its own identity: with A's it would
        # only take A's own session, test_broker_kit.py): reads B's commands? publishes as B?
        got: list[str] = []
        refused: list[str] = []
        acked = threading.Event()
        spy = _raw_client(base, kb.terminal("TSPY"), broker.port, "TB")
        spy.on_message = lambda c, u, m: got.append(m.topic)
        spy.on_publish = lambda c, u, mid, rc, p: (refused.append(str(rc)), acked.set())
        spy.connect("127.0.0.1", broker.port)
        spy.loop_start()
        wait_for(spy.is_connected, 5, "spy connected")
        spy.subscribe([("kiosk/v1/TB/cmd", 1), ("kiosk/v1/+/cmd", 1), ("kiosk/v1/#", 1)])
        time.sleep(0.3)
        ta_key = ta.agent.key
        fake = seal(ta_key, key_id("TB", ta_key.public_key()), "payments",
                    {"v": 1, "terminal_id": "TB", "kind": "payment", "records": [
                        {"seq": 999, "ref": "TB-99999999", "attempt": 1, "data": {}}]})
        spy.publish("kiosk/v1/TB/payments", fake, qos=1)
        assert acked.wait(5)
        # Commands for B: executed by B, never seen by A's spy.
        assert desk.command("TB", "set_support_phone", {"phone": "8 800 222-22-22"})["ok"]
        assert tb.engine.support_phone == "8 800 222-22-22"
        # A cannot command B either (terminals never write cmd topics).
        spy_cmd = seal(Ed25519PrivateKey.generate(), desk_key.kid, "cmd",
                       desk.command_body("TB", "disable"))
        acked.clear()
        spy.publish("kiosk/v1/TB/cmd", spy_cmd, qos=1)
        assert acked.wait(5)
        time.sleep(0.5)
        assert not [t for t in got if "/TB/" in t], got  # nothing of B reached A
        assert "TB-99999999" not in {p["payment_id"] for p in desk.store.payments()}
        assert refused and all(r == "Not authorized" for r in refused), refused
        assert tb.engine.snapshot()["screen"] == "idle"

        # Forged, expired and replayed commands change nothing (over TLS, from the desk).
        before = (ta.engine.support_phone, ta.engine.snapshot()["screen"])
        forged = desk.command_body("TA", "disable")
        desk.send_raw("TA", topics.CMD, seal(Ed25519PrivateKey.generate(), desk_key.kid, "cmd",
                                             forged), forged["cmd_id"].encode())
        expired = desk.command_body("TA", "disable")
        expired["issued_ms"] -= 3_600_000
        expired["expires_ms"] = expired["issued_ms"] + 1000
        desk.send_command(expired)
        good = desk.command_body("TA", "set_support_phone", {"phone": "8 800 333-33-33"})
        payload = seal(desk_key.key, desk_key.kid, "cmd", good)
        desk.send_raw("TA", topics.CMD, payload, b"1")
        assert desk.wait_result(good["cmd_id"], 5)["ok"]
        ta.engine.set_support_phone(before[0])  # put it back: the replay must not redo it
        desk.results.pop(good["cmd_id"])
        desk.send_raw("TA", topics.CMD, payload, b"2")
        assert desk.wait_result(good["cmd_id"], 5)["duplicate"] is True
        for body in (forged, expired):
            assert desk.wait_result(body["cmd_id"], 5)["ok"] is False
        assert (ta.engine.support_phone, ta.engine.snapshot()["screen"]) == before
        reasons = {e["data"]["reason"] for e in ta.ledger.recent_events(100)
                   if e["kind"] == "command_rejected"}
        assert {"bad_signature", "expired", "replayed"} <= reasons
        assert desk_ledger.command_record(ta.ledger, forged["cmd_id"]) is None

        # No certificate, no connection.
        anon = _raw_client(base, None, broker.port, "anon")
        with pytest.raises((ssl.SSLError, OSError)):
            anon.connect("127.0.0.1", broker.port)
            for _ in range(20):
                if anon.loop(0.05) != 0:
                    raise OSError("dropped")
            raise AssertionError(f"connected without a certificate: {anon.is_connected()}")
    finally:
        if spy is not None:
            spy.loop_stop()
            spy.disconnect()
        desk.stop()
        ta.stop()
        tb.stop()
