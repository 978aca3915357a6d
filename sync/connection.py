"""One MQTT v5 session on paho-mqtt 2.x, confined to one network thread.

- Every paho call happens on this module's own thread ("mqtt-net"): other threads hand
  publishes and manual PUBACKs over through a queue and poke the select loop (paho is not
  fully thread-safe: docs/protocols/mqtt-contract.md).
- Callbacks only copy data and call the handler, which must enqueue and return; any
  exception in them is logged, never allowed to kill the loop.
- Persistent session: a fixed client id, clean_start=False and a Session Expiry Interval,
  so desk messages published while the terminal is away wait at the broker.
- Reconnect with full-jitter backoff (sync/backoff.py) on our own schedule; paho's
  reconnect (no jitter) is not used. Each connection is a fresh paho Client: paho's
  in-memory queue is a transport buffer only and is dropped with the connection — the
  ledger outbox is the source of truth and the drain resends.
- PUBACK reason codes are checked (paho reports a refused publish as published:
  docs/protocols/mqtt-contract.md).
- Incoming QoS 1 messages are PUBACKed by the handler (manual ack) after it has
  processed them durably, so a message the agent did not get to is redelivered.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from sync.backoff import Backoff

log = logging.getLogger("sync.connection")

IDLE_LOOP_S = 0.05


@dataclass(frozen=True)
class Will:
    topic: str
    payload: Callable[[str], bytes]  # connection id -> payload
    qos: int = 1
    retain: bool = True
    delay_s: int = 0


@dataclass(frozen=True)
class Subscription:
    topic: str
    qos: int = 1
    send_retained: bool = True  # False: RETAIN_DO_NOT_SEND (command topics)
    retain_as_published: bool = False  # True: a live message keeps its retain flag


@dataclass(frozen=True)
class ConnSettings:
    host: str
    port: int
    client_id: str
    keepalive: int = 30
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    session_expiry_s: int = 7 * 24 * 3600
    clean_start: bool = False
    will: Will | None = None
    subscriptions: tuple[Subscription, ...] = ()
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    max_inflight: int = 100
    connect_timeout_s: float = 10.0
    manual_ack: bool = True


@dataclass(frozen=True)
class Inbound:
    generation: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int
    response_topic: str | None = None
    correlation_data: bytes | None = None


@dataclass
class _Publish:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: Properties | None
    tag: Any


@dataclass(frozen=True)
class _Final:
    index: int


@dataclass
class _Ack:
    generation: int
    mid: int
    qos: int


class Handler(Protocol):
    """Called on the network thread: enqueue and return, never block."""

    def on_connected(self, connection_id: str, session_present: bool) -> None: ...

    def on_disconnected(self, reason: str) -> None: ...

    def on_message(self, msg: Inbound) -> None: ...

    def on_published(self, tag: Any, ok: bool, reason: str) -> None: ...


@dataclass
class ConnStats:
    connects: int = 0
    attempts: int = 0
    refused_publishes: int = 0
    last_error: str = ""
    reasons: list[str] = field(default_factory=list)


class Connection:
    def __init__(self, settings: ConnSettings, handler: Handler, name: str = "mqtt-net") -> None:
        self.settings = settings
        self.handler = handler
        self.name = name
        self.backoff = Backoff(settings.reconnect_min_s, settings.reconnect_max_s)
        self.stats = ConnStats()
        self.connection_id = ""
        self.generation = 0
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()
        self._connecting_since = 0.0
        self._lost_flag = False
        self._requests: deque[_Publish | _Ack] = deque()
        self._mids: dict[int, Any] = {}
        self._stop = threading.Event()
        self._final: list[_Publish] = []
        self._final_timeout = 0.0
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._final_done: set[int] = set()

    # -- any thread --------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(
        self, final: list[tuple[str, bytes, int, bool]] | None = None, timeout: float = 3.0
    ) -> None:
        """Publish `final` (topic, payload, qos, retain) if connected, wait for their
        PUBACKs up to `timeout`, then DISCONNECT normally (no Will) and end the thread."""
        self._final = [
            _Publish(t, p, q, r, None, _Final(i)) for i, (t, p, q, r) in enumerate(final or [])
        ]
        self._final_timeout = timeout
        self._stop.set()
        self._poke()
        if self._thread is not None:
            self._thread.join(timeout + 5)

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        tag: Any = None,
        correlation_data: bytes | None = None,
        response_topic: str | None = None,
    ) -> None:
        """Queue a publish. The handler's on_published(tag, ok, reason) reports the
        PUBACK (or the failure: refused by the broker, connection lost, not connected)."""
        props = None
        if correlation_data is not None or response_topic is not None:
            props = Properties(PacketTypes.PUBLISH)
            if correlation_data is not None:
                props.CorrelationData = correlation_data
            if response_topic is not None:
                props.ResponseTopic = response_topic
        self._requests.append(_Publish(topic, payload, qos, retain, props, tag))
        self._poke()

    def ack(self, msg: Inbound) -> None:
        """PUBACK an incoming QoS 1 message now that it is processed."""
        if msg.qos > 0 and self.settings.manual_ack:
            self._requests.append(_Ack(msg.generation, msg.mid, msg.qos))
            self._poke()

    def _poke(self) -> None:
        self._wake.set()
        client = self._client
        w = getattr(client, "_sockpairW", None) if client is not None else None
        if w is not None:
            try:
                w.send(b"\0")
            except (OSError, ValueError):
                pass

    # -- the network thread ------------------------------------------------------------
    def _run(self) -> None:
        next_attempt = 0.0
        while not self._stop.is_set():
            try:
                if self._client is None:
                    self._fail_queued("not connected")
                    remaining = next_attempt - time.monotonic()
                    if remaining > 0:
                        self._wake.wait(min(remaining, 1.0))
                        self._wake.clear()
                        continue
                    if not self._try_connect():
                        next_attempt = time.monotonic() + self.backoff.next_delay()
                    continue
                self._flush()
                busy = bool(self._requests)
                rc = self._client.loop(timeout=0.0 if busy else IDLE_LOOP_S)
                if rc != mqtt.MQTT_ERR_SUCCESS or self._lost_flag:
                    self._lost(f"connection lost ({mqtt.error_string(rc)})")
                    next_attempt = time.monotonic() + self.backoff.next_delay()
                elif (
                    not self._connected.is_set()
                    and time.monotonic() - self._connecting_since > self.settings.connect_timeout_s
                ):
                    self._lost("no CONNACK in time")
                    next_attempt = time.monotonic() + self.backoff.next_delay()
            except Exception as exc:  # a bug or an odd socket state: never kill the thread
                log.exception("%s: network loop error", self.name)
                self._lost(f"loop error: {exc}")
                next_attempt = time.monotonic() + self.backoff.next_delay()
        self._shutdown()

    def _new_client(self) -> mqtt.Client:
        s = self.settings
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
            manual_ack=s.manual_ack,
        )
        client.suppress_exceptions = True
        client.connect_timeout = s.connect_timeout_s
        client.max_inflight_messages_set(s.max_inflight)
        if s.tls_ca is not None:
            client.tls_set(
                ca_certs=str(s.tls_ca),
                certfile=str(s.tls_cert) if s.tls_cert else None,
                keyfile=str(s.tls_key) if s.tls_key else None,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        if s.will is not None:
            will_props = Properties(PacketTypes.WILLMESSAGE)
            if s.will.delay_s > 0:
                will_props.WillDelayInterval = s.will.delay_s
            client.will_set(
                s.will.topic,
                s.will.payload(self.connection_id),
                qos=s.will.qos,
                retain=s.will.retain,
                properties=will_props,
            )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        return client

    def _try_connect(self) -> bool:
        s = self.settings
        self.connection_id = uuid.uuid4().hex[:16]
        self.stats.attempts += 1
        self._lost_flag = False
        client = self._new_client()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = s.session_expiry_s
        try:
            client.connect(
                s.host,
                s.port,
                keepalive=s.keepalive,
                clean_start=s.clean_start,
                properties=props,
            )
        except (OSError, ssl.SSLError, ValueError) as exc:
            self.stats.last_error = f"connect: {exc}"
            log.info("%s: cannot connect to %s:%s: %s", self.name, s.host, s.port, exc)
            _close(client)
            return False
        self._client = client
        self._connecting_since = time.monotonic()
        return True

    def _lost(self, reason: str) -> None:
        client, self._client = self._client, None
        was_connected = self._connected.is_set()
        self._connected.clear()
        self._lost_flag = False
        if client is not None:
            _close(client)
        self.stats.last_error = reason
        mids, self._mids = self._mids, {}
        for tag in mids.values():
            self._report(tag, False, "connection lost")
        # Publishes queued while the connection was going: fail them (the caller resends).
        self._fail_queued("not connected")
        if was_connected:
            log.warning("%s: %s", self.name, reason)
            try:
                self.handler.on_disconnected(reason)
            except Exception:
                log.exception("%s: on_disconnected handler failed", self.name)

    def _fail_queued(self, reason: str) -> None:
        """Fail queued publishes (the caller resends); drop queued acks (the broker
        redelivers what was not acknowledged on this connection)."""
        while self._requests:
            try:
                req = self._requests.popleft()
            except IndexError:
                break
            if isinstance(req, _Publish):
                self._report(req.tag, False, reason)

    def _flush(self) -> None:
        client = self._client
        if client is None:
            return
        if not self._connected.is_set():
            return  # wait for CONNACK; requests stay queued until then (or fail on loss)
        for _ in range(len(self._requests)):
            try:
                req = self._requests.popleft()
            except IndexError:
                break
            if isinstance(req, _Ack):
                if req.generation == self.generation:
                    client.ack(req.mid, req.qos)
                continue
            self._send(client, req)

    def _send(self, client: mqtt.Client, req: _Publish) -> None:
        info = client.publish(
            req.topic, req.payload, qos=req.qos, retain=req.retain, properties=req.properties
        )
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self._report(req.tag, False, mqtt.error_string(info.rc))
        elif req.qos == 0:
            self._report(req.tag, True, "qos0")
        else:
            self._mids[info.mid] = req.tag

    def _report(self, tag: Any, ok: bool, reason: str) -> None:
        if tag is None:
            return
        if isinstance(tag, _Final):
            self._final_done.add(tag.index)
            return
        try:
            self.handler.on_published(tag, ok, reason)
        except Exception:
            log.exception("%s: on_published handler failed", self.name)

    def _shutdown(self) -> None:
        client = self._client
        self._final_done = set()
        if client is not None and self._connected.is_set():
            try:
                for req in self._final:
                    self._send(client, req)
                deadline = time.monotonic() + self._final_timeout
                while len(self._final_done) < len(self._final) and time.monotonic() < deadline:
                    if client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                        break
                client.disconnect()  # normal disconnection: the broker drops the Will
                for _ in range(5):
                    if client.loop(timeout=0.02) != mqtt.MQTT_ERR_SUCCESS:
                        break
            except Exception:
                log.exception("%s: error while disconnecting", self.name)
        self._client = None
        self._connected.clear()
        if client is not None:
            _close(client)
        self._fail_queued("stopped")

    # -- paho callbacks (network thread) -----------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                    reason_code: ReasonCode, properties: Properties | None) -> None:
        if reason_code.is_failure:
            self.stats.last_error = f"CONNACK {reason_code}"
            log.warning("%s: broker refused the connection: %s", self.name, reason_code)
            self._lost_flag = True
            return
        self.generation += 1
        self.stats.connects += 1
        self.backoff.reset()
        subs = [
            (
                sub.topic,
                SubscribeOptions(
                    qos=sub.qos,
                    retainAsPublished=sub.retain_as_published,
                    retainHandling=(
                        SubscribeOptions.RETAIN_SEND_ON_SUBSCRIBE
                        if sub.send_retained
                        else SubscribeOptions.RETAIN_DO_NOT_SEND
                    ),
                ),
            )
            for sub in self.settings.subscriptions
        ]
        if subs:
            client.subscribe(subs)
        self._connected.set()
        log.info(
            "%s: connected to %s:%s (session present: %s)",
            self.name,
            self.settings.host,
            self.settings.port,
            bool(flags.session_present),
        )
        try:
            self.handler.on_connected(self.connection_id, bool(flags.session_present))
        except Exception:
            log.exception("%s: on_connected handler failed", self.name)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags,
                       reason_code: ReasonCode, properties: Properties | None) -> None:
        self.stats.reasons.append(str(reason_code))
        self._lost_flag = True

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reason_codes: list[ReasonCode], properties: Properties | None) -> None:
        bad = [str(rc) for rc in reason_codes if rc.is_failure]
        if bad:
            log.warning("%s: subscription refused: %s", self.name, ", ".join(bad))

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        props = getattr(message, "properties", None)
        msg = Inbound(
            generation=self.generation,
            topic=message.topic,
            payload=bytes(message.payload),
            qos=message.qos,
            retain=bool(message.retain),
            mid=message.mid,
            response_topic=getattr(props, "ResponseTopic", None),
            correlation_data=getattr(props, "CorrelationData", None),
        )
        try:
            self.handler.on_message(msg)
        except Exception:
            log.exception("%s: on_message handler failed", self.name)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int,
                    reason_code: ReasonCode, properties: Properties) -> None:
        tag = self._mids.pop(mid, None)
        ok = not reason_code.is_failure
        if not ok:
            self.stats.refused_publishes += 1
            log.warning("%s: broker refused a publish: %s", self.name, reason_code)
        self._report(tag, ok, str(reason_code))


def _close(client: mqtt.Client) -> None:
    """Drop a paho client without sending DISCONNECT (which would cancel the Will)."""
    try:
        sock = client.socket()
        if sock is not None:
            sock.close()
    except Exception:
        pass
    reset = getattr(client, "_reset_sockets", None)
    if reset is not None:
        try:
            reset()
        except Exception:
            pass
