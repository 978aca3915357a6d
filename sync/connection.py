"""One MQTT session (v5 or 3.1.1) on paho-mqtt 2.x, confined to one network thread.

- Every paho call happens on this module's own thread ("mqtt-net"): other threads hand
  publishes and manual PUBACKs over through a queue and poke the select loop (paho is not
  fully thread-safe: docs/protocols/mqtt-contract.md).
- Callbacks only copy data and call the handler, which must enqueue and return; any
  exception in them is logged, never allowed to kill the loop.
- Persistent session: a fixed client id, clean_start=False and a Session Expiry Interval,
  so desk messages published while the terminal is away wait at the broker. MQTT 3.1.1
  (`protocol="3.1.1"`, e.g. a NATS cluster) sends no properties: clean session false, no
  expiry, no Will delay, no subscription options (docs/mqtt.md, "Protocol levels"); the
  exactly-once rules rest on the desk's signed acks, which are the same on both levels.
- Several broker endpoints (a cluster): each terminal starts at its own one (a hash of
  the client id spreads a fleet over the nodes) and moves to the next after every failed
  attempt or lost connection, with the same jittered backoff.
- Why a connection is down is one `LinkStatus` (a stable problem code, the endpoint, the
  technician's text in Russian and English) and one log line per change, not per retry.
- Reconnect with full-jitter backoff (sync/backoff.py) on our own schedule; paho's
  reconnect (no jitter) is not used. Each connection is a fresh paho Client: paho's
  in-memory queue is a transport buffer only and is dropped with the connection — the
  ledger outbox is the source of truth and the drain resends.
- PUBACK reason codes are checked (paho reports a refused publish as published:
  docs/protocols/mqtt-contract.md).
- Incoming QoS 1 messages are PUBACKed by the handler (manual ack) after it has
  processed them durably, so a message the agent did not get to is redelivered.
- `reset_session()` starts the broker session afresh: a normal DISCONNECT, one
  connection with a clean session (the broker drops the old session and its queues),
  ended at once, then the usual persistent one (sync/ack_watch.py says when).
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from kiosk.config import connect_timeout_problem, parse_host_port
from sync.backoff import Backoff

log = logging.getLogger("sync.connection")

IDLE_LOOP_S = 0.05

PROTOCOL_5 = "5"
PROTOCOL_311 = "3.1.1"
PROTOCOLS = (PROTOCOL_5, PROTOCOL_311)

# CONNACK reason codes (MQTT 5 values; paho maps a 3.1.1 return code onto them)
RC_UNSUPPORTED_PROTOCOL = 0x84
RC_NOT_AUTHORIZED = (0x86, 0x87, 0x8C)  # bad user name or password, not authorized, bad auth
RC_UNAVAILABLE = (0x88, 0x89, 0x97)  # server unavailable, server busy, quota exceeded

# TLS alerts a server sends about the CLIENT's certificate. With TLS 1.3 the server checks
# it after the client's handshake has returned, so the refusal arrives as a failed read
# before CONNACK (paho logs it and reports "connection lost"), not as a connect() error.
CLIENT_CERT_ALERTS = ("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_EXPIRED",
                      "CERTIFICATE_REVOKED", "CERTIFICATE_UNKNOWN", "CERTIFICATE_REQUIRED",
                      "ACCESS_DENIED", "UNSUPPORTED_CERTIFICATE")

# Why the link is down: code -> (English, Russian) for the technician and the log.
LINK_TEXTS: dict[str, tuple[str, str]] = {
    "protocol_refused": (
        "the broker refused MQTT {protocol}: set [mqtt] protocol to the level it speaks",
        "брокер не принимает MQTT {protocol}: укажите в [mqtt] protocol версию, которую он "
        "понимает",
    ),
    "not_authorized": (
        "the broker refused this terminal's identity (certificate, ACL)",
        "брокер не принял удостоверение терминала (сертификат, ACL)",
    ),
    "server_unavailable": (
        "the broker is up but not serving (overloaded or cut off from its cluster)",
        "брокер отвечает, но не обслуживает (перегружен или отрезан от кластера)",
    ),
    "no_connack": (
        "the broker closed the connection without accepting it: a cluster node cut off "
        "from its cluster, or an overloaded broker",
        "брокер закрыл соединение, не приняв его: узел отрезан от кластера или перегружен",
    ),
    "connack_timeout": (
        "the broker took the connection but did not accept it within [mqtt] "
        "connect_timeout_s: an overloaded broker, or a cluster node still starting (a NATS "
        "node may hold a CONNECT for its MQTT js_api_timeout)",
        "брокер принял соединение, но не подтвердил его за [mqtt] connect_timeout_s: брокер "
        "перегружен или узел кластера ещё запускается (узел NATS может держать CONNECT "
        "до своего MQTT js_api_timeout)",
    ),
    "tls_certificate": (
        "the broker's certificate does not match [mqtt] tls_ca or the host name",
        "сертификат брокера не подходит: проверьте [mqtt] tls_ca и имя хоста",
    ),
    "client_certificate": (
        "the broker refused this terminal's TLS certificate (not signed by the CA it "
        "trusts, expired or revoked): install the certificate the broker's CA issued",
        "брокер отверг TLS-сертификат терминала (выпущен не тем УЦ, истёк или отозван): "
        "установите сертификат от УЦ брокера",
    ),
    "tls": (
        "the TLS handshake with the broker failed (client certificate, TLS settings)",
        "не удалось установить TLS с брокером (сертификат терминала, настройки TLS)",
    ),
    "unreachable": (
        "no broker answers at this address",
        "брокер по этому адресу не отвечает",
    ),
    "refused": (
        "the broker refused the connection",
        "брокер отказал в соединении",
    ),
    "subscribe_refused": (
        "the broker refused a subscription: a cluster node that cannot reach its storage "
        "(JetStream), or the ACL; reconnecting",
        "брокер отказал в подписке: узел кластера без доступа к хранилищу (JetStream) или "
        "ACL; переподключение",
    ),
    "lost": (
        "the connection to the broker was lost; reconnecting",
        "связь с брокером потеряна; переподключение",
    ),
}


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_endpoint(text: str, default_port: int) -> Endpoint:
    """`host`, `host:port`, `[v6]:port` (kiosk/config.py checks them); ValueError else."""
    host, port = parse_host_port(text, default_port)
    return Endpoint(host, port)


@dataclass(frozen=True)
class LinkStatus:
    """What the technician and the logs see about the broker link."""

    state: str  # "connected", "connecting", "down"
    endpoint: str
    problem: str = ""  # a LINK_TEXTS code, "" when none
    detail: str = ""  # the library's or the broker's own words
    protocol: str = PROTOCOL_5
    since_ms: int = 0

    def text(self, lang: str = "en") -> str:
        if not self.problem:
            return ""
        en, ru = LINK_TEXTS.get(self.problem, LINK_TEXTS["refused"])
        return (ru if lang == "ru" else en).format(protocol=self.protocol)

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "endpoint": self.endpoint, "problem": self.problem,
                "detail": self.detail, "protocol": self.protocol, "since_ms": self.since_ms,
                "text_en": self.text("en"), "text_ru": self.text("ru")}


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
    # True: a refusal is one log line and the session is kept (a NATS node whose users.conf
    # predates this subscription: the desk beat, sync/desk_beat.py); sent in its own SUBSCRIBE
    optional: bool = False


@dataclass(frozen=True)
class ConnSettings:
    host: str
    port: int
    client_id: str
    protocol: str = PROTOCOL_5
    endpoints: tuple[Endpoint, ...] = ()  # a cluster's nodes; () = (host, port) only
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
    connect_timeout_s: float = 10.0  # the TCP connect + TLS handshake, then the CONNACK wait
    # ... but the TCP connect and TLS handshake at most this: a longer CONNACK wait (for a
    # NATS node's js_api_timeout) must not slow failover from a node whose host is down
    handshake_timeout_s: float = 10.0
    manual_ack: bool = True

    def all_endpoints(self) -> tuple[Endpoint, ...]:
        return self.endpoints or (Endpoint(self.host, self.port),)

    @property
    def v5(self) -> bool:
        return self.protocol == PROTOCOL_5


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


class _ResetStep(Enum):
    """Where a reset_session stands: the clean-session attempt, then its CONNACK."""

    NONE = "none"
    CLEAN_CONNECT = "clean_connect"  # the next attempt is the clean session
    CLEAN_ACCEPTED = "clean_accepted"  # its CONNACK came: end it, connect as usual


@dataclass
class ConnStats:
    connects: int = 0
    attempts: int = 0
    refused_publishes: int = 0
    optional_refused: int = 0  # SUBACKs refusing an optional subscription
    last_error: str = ""
    reasons: list[str] = field(default_factory=list)


class Connection:
    def __init__(self, settings: ConnSettings, handler: Handler, name: str = "mqtt-net") -> None:
        why = connect_timeout_problem(settings.connect_timeout_s, settings.keepalive)
        if why:
            raise ValueError(f"connect_timeout_s {why}")
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
        self._reset_wanted = threading.Event()
        self._reset_step = _ResetStep.NONE
        self.endpoints = settings.all_endpoints()
        # each client starts at its own node: a fleet spreads over a cluster
        self._endpoint_index = zlib.crc32(settings.client_id.encode()) % len(self.endpoints)
        self._attempt_problem: tuple[str, str] | None = None  # set by a refused CONNACK
        self._optional_mids: dict[int, str] = {}  # SUBSCRIBE mid -> its optional topic
        self._logged_problems: set[tuple[str, str]] = set()  # since last subscribed
        self._link = LinkStatus("connecting", str(self.endpoint), protocol=settings.protocol,
                                since_ms=_now_ms())

    # -- any thread --------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    @property
    def endpoint(self) -> Endpoint:
        """The endpoint in use (connected) or to be tried next."""
        return self.endpoints[self._endpoint_index]

    @property
    def link(self) -> LinkStatus:
        return self._link

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
        v5 = self.settings.v5  # MQTT 3.1.1 has no properties: the body carries the cmd id
        if v5 and (correlation_data is not None or response_topic is not None):
            props = Properties(PacketTypes.PUBLISH)
            if correlation_data is not None:
                props.CorrelationData = correlation_data
            if response_topic is not None:
                props.ResponseTopic = response_topic
        self._requests.append(_Publish(topic, payload, qos, retain, props, tag))
        self._poke()

    def reset_session(self) -> None:
        """Drop this client's broker session and make a new one (its subscriptions, and
        on NATS their JetStream consumers, made again). Publishes in flight are reported
        lost (the caller resends); a message received but not yet PUBACKed is not
        redelivered. Ignored when not connected."""
        self._reset_wanted.set()
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
                        self._next_endpoint()
                        next_attempt = time.monotonic() + self.backoff.next_delay()
                    continue
                if self._reset_wanted.is_set():
                    self._reset_wanted.clear()
                    if self._connected.is_set():
                        self._drop_for_reset()
                        next_attempt = 0.0
                        continue
                self._flush()
                busy = bool(self._requests)
                rc = self._client.loop(timeout=0.0 if busy else IDLE_LOOP_S)
                if self._reset_step is _ResetStep.CLEAN_ACCEPTED:
                    self._end_clean_session()
                    next_attempt = 0.0
                elif rc != mqtt.MQTT_ERR_SUCCESS or self._lost_flag:
                    self._lost(f"connection lost ({mqtt.error_string(rc)})")
                    next_attempt = time.monotonic() + self.backoff.next_delay()
                elif (
                    not self._connected.is_set()
                    and time.monotonic() - self._connecting_since > self.settings.connect_timeout_s
                ):
                    why = f"no CONNACK within {self.settings.connect_timeout_s:g} s"
                    if self._attempt_problem is None:
                        self._attempt_problem = ("connack_timeout", why)
                    self._lost(why)
                    next_attempt = time.monotonic() + self.backoff.next_delay()
            except Exception as exc:  # a bug or an odd socket state: never kill the thread
                log.exception("%s: network loop error", self.name)
                self._lost(f"loop error: {exc}")
                next_attempt = time.monotonic() + self.backoff.next_delay()
        self._shutdown()

    def _new_client(self) -> mqtt.Client:
        s = self.settings
        clean = s.clean_start or self._cleaning
        if s.v5:
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=s.client_id,
                protocol=mqtt.MQTTv5,
                reconnect_on_failure=False,
                manual_ack=s.manual_ack,
            )
        else:
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=s.client_id,
                protocol=mqtt.MQTTv311,
                clean_session=clean,  # False: the broker keeps the session
                reconnect_on_failure=False,
                manual_ack=s.manual_ack,
            )
        client.suppress_exceptions = True
        client.connect_timeout = min(s.connect_timeout_s, s.handshake_timeout_s)
        client.max_inflight_messages_set(s.max_inflight)
        if s.tls_ca is not None:
            client.tls_set(
                ca_certs=str(s.tls_ca),
                certfile=str(s.tls_cert) if s.tls_cert else None,
                keyfile=str(s.tls_key) if s.tls_key else None,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        if s.will is not None and not self._cleaning:
            will_props: Properties | None = None
            if s.v5:  # 3.1.1: no Will Delay, the broker publishes the Will at once
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
        client.on_log = self._on_log
        return client

    def _try_connect(self) -> bool:
        s = self.settings
        ep = self.endpoint
        self.connection_id = uuid.uuid4().hex[:16]
        self.stats.attempts += 1
        self._lost_flag = False
        self._attempt_problem = None
        if self._link.state == "connected":
            self._set_link("connecting")
        client = self._new_client()
        try:
            if s.v5:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = 0 if self._cleaning else s.session_expiry_s
                client.connect(ep.host, ep.port, keepalive=s.keepalive,
                               clean_start=s.clean_start or self._cleaning, properties=props)
            else:
                client.connect(ep.host, ep.port, keepalive=s.keepalive)
        except ssl.SSLCertVerificationError as exc:
            self._problem("tls_certificate", exc.verify_message or str(exc))
            _close(client)
            return False
        except ssl.SSLError as exc:
            self._problem("tls", exc.reason or str(exc))
            _close(client)
            return False
        except (OSError, ValueError) as exc:
            self._problem("unreachable", str(exc) or type(exc).__name__)
            _close(client)
            return False
        self._client = client
        self._connecting_since = time.monotonic()
        return True

    @property
    def _cleaning(self) -> bool:
        """This attempt is the clean session of a reset (no Will, no expiry)."""
        return self._reset_step is not _ResetStep.NONE

    def _drop_for_reset(self) -> None:
        """The first step of reset_session: leave normally (no Will), fail what is in
        flight, and make the next attempt the clean one, on the same node, at once."""
        client, self._client = self._client, None
        self._disconnect_normally(client)
        self._connected.clear()
        self._reset_step = _ResetStep.CLEAN_CONNECT
        self._set_link("connecting")
        log.info("%s: resetting the MQTT session at %s: a clean session, then a new "
                 "persistent one", self.name, self.endpoint)
        self._forget_connection("session reset", was_connected=True)

    def _end_clean_session(self) -> None:
        """The clean session's CONNACK came: the broker has dropped the old session."""
        client, self._client = self._client, None
        self._disconnect_normally(client)
        self._reset_step = _ResetStep.NONE
        log.info("%s: the broker dropped the old session; connecting again", self.name)

    def _forget_connection(self, reason: str, was_connected: bool) -> None:
        """A connection has gone (lost or left): fail what was in flight or queued on it
        (the caller resends) and tell the handler if it had been told it was up."""
        mids, self._mids = self._mids, {}
        for tag in mids.values():
            self._report(tag, False, "connection lost")
        # Publishes queued while the connection was going: fail them (the caller resends).
        self._fail_queued("not connected")
        if was_connected:
            try:
                self.handler.on_disconnected(reason)
            except Exception:
                log.exception("%s: on_disconnected handler failed", self.name)

    def _disconnect_normally(self, client: mqtt.Client | None) -> None:
        if client is None:
            return
        try:
            client.disconnect()  # normal disconnection: the broker drops the Will
            for _ in range(5):
                if client.loop(timeout=0.02) != mqtt.MQTT_ERR_SUCCESS:
                    break
        except Exception:
            log.exception("%s: error while disconnecting", self.name)
        _close(client)

    def _next_endpoint(self) -> None:
        """Another node of the cluster for the next attempt (none with one endpoint)."""
        self._endpoint_index = (self._endpoint_index + 1) % len(self.endpoints)

    def _set_link(self, state: str, problem: str = "", detail: str = "") -> None:
        self._link = LinkStatus(state, str(self.endpoint), problem, detail[:300],
                                self.settings.protocol, _now_ms())

    def _problem(self, code: str, detail: str) -> None:
        """Why this attempt failed: the link status, and one log line per new problem."""
        ep = str(self.endpoint)
        self.stats.last_error = f"{code}: {detail}"
        self._set_link("down", code, detail)
        key = (code, ep)
        if key in self._logged_problems:  # cycling through a cluster's nodes: once each
            log.debug("%s: %s at %s again: %s", self.name, code, ep, detail)
            return
        self._logged_problems.add(key)
        text = self._link.text("en")
        level = logging.WARNING if code in ("unreachable", "lost") else logging.ERROR
        log.log(level, "%s: MQTT link DOWN (%s) at %s: %s [%s]; payments stay queued in "
                "the ledger", self.name, code, ep, text, detail)

    def _lost(self, reason: str) -> None:
        client, self._client = self._client, None
        was_connected = self._connected.is_set()
        if self._attempt_problem is not None:
            self._problem(*self._attempt_problem)
        elif was_connected:
            self._problem("lost", reason)
        elif not self._stop.is_set():
            self._problem("no_connack", reason)
        self._next_endpoint()
        self._connected.clear()
        self._lost_flag = False
        if client is not None:
            _close(client)
        self.stats.last_error = reason
        self._forget_connection(reason, was_connected)

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
            except Exception:
                log.exception("%s: error while sending the final publishes", self.name)
            self._disconnect_normally(client)
        elif client is not None:
            _close(client)
        self._client = None
        self._connected.clear()
        self._fail_queued("stopped")

    # -- paho callbacks (network thread) -----------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                    reason_code: ReasonCode, properties: Properties | None) -> None:
        if reason_code.is_failure:
            value = reason_code.value
            code = (
                "protocol_refused" if value == RC_UNSUPPORTED_PROTOCOL
                else "not_authorized" if value in RC_NOT_AUTHORIZED
                else "server_unavailable" if value in RC_UNAVAILABLE
                else "refused"
            )
            self._attempt_problem = (code, f"CONNACK {reason_code}")
            self._lost_flag = True
            return
        if self._cleaning:  # the reset's clean session: no subscriptions, no handler
            self._reset_step = _ResetStep.CLEAN_ACCEPTED
            return
        self.generation += 1
        self.stats.connects += 1
        required = [sub for sub in self.settings.subscriptions if not sub.optional]
        if not required:
            self._healthy()
        self._subscribe(client, required)
        self._optional_mids = {self._subscribe(client, [sub]): sub.topic
                               for sub in self.settings.subscriptions if sub.optional}
        self._connected.set()
        log.info(
            "%s: connected to %s (MQTT %s, session present: %s)",
            self.name,
            self.endpoint,
            self.settings.protocol,
            bool(flags.session_present),
        )
        try:
            self.handler.on_connected(self.connection_id, bool(flags.session_present))
        except Exception:
            log.exception("%s: on_connected handler failed", self.name)

    def _subscribe(self, client: mqtt.Client, subs: list[Subscription]) -> int:
        """One SUBSCRIBE packet; its mid (0: nothing to send)."""
        if not subs:
            return 0
        if not self.settings.v5:  # 3.1.1: no subscription options (docs/mqtt.md)
            return int(client.subscribe([(sub.topic, sub.qos) for sub in subs])[1] or 0)
        return int(client.subscribe([
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
            for sub in subs
        ])[1] or 0)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags,
                       reason_code: ReasonCode, properties: Properties | None) -> None:
        self.stats.reasons.append(str(reason_code))
        self._lost_flag = True

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reason_codes: list[ReasonCode], properties: Properties | None) -> None:
        bad = [str(rc) for rc in reason_codes if rc.is_failure]
        optional = self._optional_mids.pop(mid, None)
        if optional is not None:
            if bad:
                self.stats.optional_refused += 1
                log.warning("%s: %s refused the optional subscription %s (SUBACK %s): "
                            "probably an access list older than it; the session goes on "
                            "without it",
                            self.name, self.endpoint, optional, ", ".join(bad))
            return
        if bad:
            # Without its subscriptions the session is useless (no acks, no commands; a
            # desk would take nothing): drop it and reconnect, to the next node if any.
            self._attempt_problem = ("subscribe_refused", f"SUBACK {', '.join(bad)}")
            self._lost_flag = True
        else:
            self._healthy()

    def _on_log(self, client: mqtt.Client, userdata: Any, level: int, buf: str) -> None:
        """A TLS alert read before CONNACK names why the broker dropped us: keep it as
        this attempt's problem (else it would read as a cluster node without CONNACK)."""
        if level != mqtt.MQTT_LOG_ERR or self._connected.is_set() or "ALERT" not in buf:
            return
        upper = buf.upper()
        code = "client_certificate" if any(a in upper for a in CLIENT_CERT_ALERTS) else "tls"
        if self._attempt_problem is None:
            self._attempt_problem = (code, buf)

    def _healthy(self) -> None:
        """Connected and subscribed: the backoff and the logged problems start afresh
        (not at CONNACK: a node that accepts and then refuses every subscription would
        otherwise be retried at once, forever, with a line each time)."""
        self.backoff.reset()
        self._logged_problems.clear()
        self._set_link("connected")

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


def _now_ms() -> int:
    return int(time.time() * 1000)


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
