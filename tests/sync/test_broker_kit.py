"""The broker kit and the shipped broker configuration, on a real mosquitto running the
files `kiosk broker-kit init` wrote from deploy/mosquitto/ (not a copy in this test):
a fleet member holding T2's certificate cannot take over, kick or wipe T1's session,
cannot read T1's commands nor publish as T1; terminal and desk certificates only work
on their own listeners; the kit never signs the desk's identity for a terminal."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from sync import broker_kit
from sync.desk import Desk
from sync.keys import make_csr, pem, write_tls_key
from tests.sync.conftest import KitBroker, wait_for
from tests.sync.terminal import live_terminal, mqtt_config, terminal_public_key

SHIPPED = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"


class RawClient:
    """A bare paho client recording what happens to it (the impostor)."""

    def __init__(self, kb: KitBroker, cert: tuple[Path, Path], client_id: str,
                 port: int | None = None, clean_start: bool = True) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.messages: list[str] = []
        self.acked = threading.Event()
        # no automatic reconnect: nine impostors sharing T2's certificate share its one
        # session and would otherwise go on taking it from each other
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                        reconnect_on_failure=False)
        c.tls_set(ca_certs=str(kb.kit.terminal_ca), certfile=str(cert[0]), keyfile=str(cert[1]),
                  cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        c.on_connect = lambda c_, u, f, rc, p: self.events.append(("connect", str(rc)))
        c.on_disconnect = lambda c_, u, f, rc, p: self.events.append(("disconnect", str(rc)))
        c.on_message = lambda c_, u, m: self.messages.append(m.topic)
        c.on_publish = lambda c_, u, mid, rc, p: (self.events.append(("puback", str(rc))),
                                                  self.acked.set())
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        c.connect("127.0.0.1", port or kb.port, clean_start=clean_start, properties=props)
        c.loop_start()
        self.client = c

    def publish(self, topic: str, payload: bytes) -> str:
        self.acked.clear()
        self.client.publish(topic, payload, qos=1)
        assert self.acked.wait(5), "no PUBACK"
        return str(self.events[-1][1])

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_the_kit_writes_the_shipped_files(kit_broker):
    kit = kit_broker.kit
    assert kit.acl.read_bytes() == (SHIPPED / "acl").read_bytes()
    shipped = (SHIPPED / "kiosk.conf").read_text()
    expected = (
        shipped.replace("listener 8883\n", f"listener {kit_broker.port} 127.0.0.1\n")
        .replace("listener 8884\n", f"listener {kit_broker.desk_port} 127.0.0.1\n")
        .replace("/etc/mosquitto/kiosk", str(kit.dir))
    )
    assert kit.conf.read_text() == expected
    terminal_listener = shipped.split("listener 8883\n")[1].split("listener 8884\n")[0]
    for line in ("require_certificate true", "use_identity_as_username true",
                 "use_username_as_clientid true", "cafile /etc/mosquitto/kiosk/terminal-ca.pem"):
        assert line in terminal_listener.splitlines()


def test_an_impostor_cannot_take_over_kick_or_wipe_a_terminal_session(
    kit_broker, desk_key, tmp_path
):
    kb = kit_broker
    ca = kb.kit.terminal_ca
    t1_cert = kb.terminal("T1")
    cfg = mqtt_config(kb.port, desk_key, tls_ca=ca, tls_cert=t1_cert[0], tls_key=t1_cert[1])
    t1 = live_terminal(tmp_path / "t1", "T1", cfg)
    desk = Desk("127.0.0.1", kb.desk_port, desk_key.key, desk_key.kid,
                {"T1": terminal_public_key(t1.config)}, tmp_path / "desk.sqlite",
                client_id="desk-test", tls=kb.desk_tls()).start()
    impostors: list[RawClient] = []
    try:
        wait_for(lambda: desk.states.get("T1", {}).get("state") == "online", 10, "T1 online")
        # Nine connections with T2's certificate claiming client id T1, clean start.
        for _ in range(9):
            imp = RawClient(kb, kb.terminal("T2"), "T1")
            impostors.append(imp)
            wait_for(lambda imp=imp: ("connect", "Success") in imp.events, 5, "impostor up")
        assert t1.agent.conn.stats.connects == 1, "the real T1 was kicked off"
        assert t1.agent.conn.connected and t1.agent.conn.stats.reasons == []
        assert desk.states["T1"]["state"] == "online"

        imp = impostors[-1]
        wait_for(lambda: imp.client.is_connected(), 5, "the last impostor holds T2")
        imp.client.subscribe([("kiosk/v1/T1/cmd", 1), ("kiosk/v1/#", 1)])
        time.sleep(0.3)
        assert imp.publish("kiosk/v1/T1/payments", b"{}") == "Not authorized"
        assert imp.publish("kiosk/v1/T1/cmd", b"{}") == "Not authorized"
        assert imp.publish("kiosk/v1/T1/state", b"{}") == "Not authorized"
        res = desk.command("T1", "set_support_phone", {"phone": "8 800 111-11-11"})
        assert res is not None and res["ok"], res
        assert not [t for t in imp.messages if "/T1/" in t], imp.messages
        # What it can do: act as T2, the identity its certificate names (its own topics).
        desk.send_raw("T2", "cmd", b"{}")
        wait_for(lambda: "kiosk/v1/T2/cmd" in imp.messages, 5, "T2's own command topic")

        # T1 away: a command waits in T1's session at the broker ...
        t1.agent.stop()
        t1.agent = None
        body = desk.command_body("T1", "set_support_phone", {"phone": "8 800 222-22-22"})
        desk.send_command(body)
        wait_for(lambda: body["cmd_id"] in desk.publish_outcomes, 5, "PUBACK")
        assert desk.publish_outcomes[body["cmd_id"]] == "Success"  # queued for T1's session
        # ... and an impostor's clean start under the id T1 does not wipe it.
        for imp in impostors:
            imp.close()
        wiper = RawClient(kb, kb.terminal("T2"), "T1", clean_start=True)
        impostors = [wiper]
        wait_for(lambda: ("connect", "Success") in wiper.events, 5, "wiper up")
        t1.start_agent()
        wait_for(lambda: t1.engine.support_phone == "8 800 222-22-22", 10,
                 "the queued command reached T1")
        assert desk.wait_result(body["cmd_id"], 5)["ok"]
    finally:
        for imp in impostors:
            imp.close()
        desk.stop()
        t1.stop()


def test_certificates_only_work_on_their_own_listener(kit_broker):
    kb = kit_broker
    # A terminal certificate on the desk listener: the TLS handshake is refused.
    with pytest.raises((ssl.SSLError, OSError, AssertionError)):
        c = RawClient(kb, kb.terminal("T3"), "desk-x", port=kb.desk_port)
        try:
            wait_for(lambda: ("connect", "Success") in c.events, 2, "connected")
        finally:
            c.close()
    # A desk certificate on the terminal listener: refused too.
    with pytest.raises((ssl.SSLError, OSError, AssertionError)):
        c = RawClient(kb, kb.desk(), "T3", port=kb.port)
        try:
            wait_for(lambda: ("connect", "Success") in c.events, 2, "connected")
        finally:
            c.close()


def test_the_kit_never_signs_the_desk_identity_or_a_wildcard_for_a_terminal(
    kit_broker, tmp_path
):
    kit = kit_broker.kit
    for cn in (broker_kit.DESK_IDENTITY, "T+", "#", "a/b", ""):
        key = write_tls_key(tmp_path / f"k{abs(hash(cn))}.key")
        with pytest.raises(broker_kit.KitError):
            broker_kit.sign_terminal(kit, make_csr(key, cn or "x" * 40))
    out = subprocess.run(
        [sys.executable, "-m", "kiosk", "keys", "--dir", str(tmp_path / "k"), "--terminal",
         broker_kit.DESK_IDENTITY],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert out.returncode != 0 and "terminal id" in out.stderr
    assert not (tmp_path / "k" / "tls.csr").exists()


def test_kiosk_broker_kit_command_line(tmp_path):
    def kit(*args: str) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
        return subprocess.run(
            [sys.executable, "-m", "kiosk", "broker-kit", *args], capture_output=True,
            text=True, timeout=60, env={**os.environ, "PYTHONPATH": os.getcwd()},
        )

    d = tmp_path / "kit"
    assert kit("init", "--dir", str(d), "--server-name", "mqtt.example.ru").returncode == 0
    assert (d / "acl").read_bytes() == (SHIPPED / "acl").read_bytes()
    assert "listener 8883\n" in (d / "kiosk.conf").read_text()
    again = kit("init", "--dir", str(d), "--server-name", "x")
    assert again.returncode == 1 and "never overwritten" in again.stderr
    key = write_tls_key(tmp_path / "t.key")
    (tmp_path / "t.csr").write_bytes(pem(make_csr(key, "T0042")))
    ok = kit("sign", "--dir", str(d), "--csr", str(tmp_path / "t.csr"), "--out",
             str(tmp_path / "t.pem"))
    assert ok.returncode == 0, ok.stderr
    from cryptography import x509

    cert = x509.load_pem_x509_certificate((tmp_path / "t.pem").read_bytes())
    assert cert.subject.rfc4514_string() == "CN=T0042"
    desk = kit("desk", "--dir", str(d), "--out", str(tmp_path / "desk"))
    assert desk.returncode == 0 and "CN=kiosk.desk" in desk.stdout
