"""Figure: a fleet of simulated terminals against one mosquitto, with desk consumers.

What is real and what is simplified:
- real: mosquitto (loopback, no TLS), MQTT v5 over paho-mqtt 2.x, the contract's topics
  (docs/mqtt.md: `kiosk/v1/{terminal}/state|health|payments` up, `cmd|ack|
  payment_status|config` down), persistent sessions (clean_start=false, 7-day expiry),
  the Last Will on `state` with a per-connection id, subscriptions as the agent makes
  them (`cmd` with Retain Handling 2), QoS 1 everywhere, payments as signed envelopes
  (sync.envelope.seal, Ed25519, one key per terminal) in the drain's batch format, the
  desk consumers = sync.desk.Desk unchanged (verify, commit to SQLite synchronous=FULL,
  then a signed `ack`), the terminals verify every ack's signature (sync.envelope), reconnects
  with the agent's full-jitter backoff (sync.backoff.Backoff, 1-60 s), the agent's ack
  watch (sync.ack_watch.AckWatch, [mqtt] ack_stall_s: payments PUBACKed and no ack for
  that long -> DISCONNECT, one clean-session connect ended at CONNACK, the persistent
  session again, as sync.connection's reset_session);
- simplified: a terminal is a paho client and a few counters, not a SyncAgent (no
  ledger, no engine, no devices): many terminals share a process and one epoll loop
  (bench/fleet.py `worker`), its "outbox" is in memory (unacked payments are sent again on
  every reconnect and after 30 s, as the drain does); health is a JSON document of the
  real shape and size with made-up values; no TLS (the handshake cost is not measured);
  the desk consumers read from `$share/desk/...` shared subscriptions (docs/protocols/
  mqtt-contract.md)
  and share one SQLite file.

Phases (full run: 20,000 terminals; --quick: 1,000):
1. connect storm: every terminal connects once, at a uniformly jittered instant;
2. field rates: health every 60 s, 20 payments per terminal per hour
   (docs/protocols/mqtt-contract.md, "Fleet sizing assumptions");
3. stress: 10x those rates, to measure the broker's CPU per message;
4. broker restart: mosquitto SIGKILLed and started again; the fleet reconnects with
   full-jitter backoff and re-sends what the desk has not acknowledged;
then every payment must be in the desk's database exactly once and acknowledged.

The broker's CPU comes from /proc/PID/stat (utime + stime), its memory from
/proc/PID/status, its packet counts (every MQTT packet in and out) from its own $SYS
topics (sys_interval 1); PUBLISH counts come from the clients (mosquitto 2.0.11's
$SYS/broker/publish/messages/received leaves retained messages out - checked here).
Target (docs/performance-targets.md): >= 5,000 simulated terminals against one mosquitto;
the aim is the full 20,000-terminal network. The extrapolation to 20,000 terminals and to a
cluster is arithmetic on the measured CPU per message; its assumptions are printed with it.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import heapq
import json
import os
import random
import re
import resource
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from agent.loopback import free_port as _free_port  # below the ephemeral range
from agent.loopback import port_open
from bench.common import (
    PYTHON,
    REPO,
    BenchError,
    BenchResult,
    Context,
    Figure,
    fmt_pct,
    percentile,
    scratch_dir,
    verdict,
)
from kiosk.config import MqttConfig, keepalive_for
from sync import desk_beat
from sync.ack_watch import JITTER as ACK_JITTER
from sync.connection import ConnSettings

KEY = "fleet"
CLOCK_SKEW_S = MqttConfig.clock_skew_s  # a beat further from our clock is stale (the agent's)
TITLE = "Fleet: simulated terminals against one mosquitto, desk consumers on shared subscriptions"
TLS_KEY = "fleet_tls"
TLS_TITLE = ("Fleet over TLS: simulated terminals, each with its own client certificate, "
             "against one mosquitto on the shipped configuration and ACL")
TARGET_TERMINALS = 5000
AIM_TERMINALS = 20_000
FULL_TERMINALS = 20_000
QUICK_TERMINALS = 1000
ENV_TERMINALS = "KIOSK_FLEET_TERMINALS"
# The terminals' ack watch ([mqtt] ack_stall_s): the agent's default unless this names
# another (a site may set it shorter; 0 = off, as a terminal configured so)
ENV_ACK_STALL = "KIOSK_FLEET_ACK_STALL_S"
# ... and its wait with the desk's beat heard ([mqtt] ack_stall_heard_s; 0 = beats unused,
# and not subscribed), and the desks' beat period (kiosk desk serve --beat; 0 = none):
# the shipped defaults unless these name others (sync/desk_beat.py)
ENV_ACK_STALL_HEARD = "KIOSK_FLEET_ACK_STALL_HEARD_S"
ENV_BEAT = "KIOSK_FLEET_BEAT_S"
# The terminals' [mqtt] connect_timeout_s (TCP connect + TLS handshake, then again the
# wait for CONNACK), and the desks' --connect-timeout: the agent's default unless this
# names another. A NATS node with a
# longer MQTT js_api_timeout may hold a CONNECT that long (docs/fleet.md).
ENV_CONNECT_TIMEOUT = "KIOSK_FLEET_CONNECT_TIMEOUT_S"
ACK_SETTLE_S = 120.0  # after a reset: the clean session, reconnect, resend, desk ack
# a terminal whose payments have waited this long (connected time) for an ack is stalled
# (a healthy one hears within seconds, a desk catching up after a restart within a
# minute or two): the benchmark probes the broker's view of it once, long before the
# watch resets it (a cluster's probe_terminals, sync/nats_probe.py)
STALL_PROBE_S = 180.0
PROBE_MAX = 40  # stalled terminals probed, and as many others beside them
HEALTH_S = 60.0  # the agent's health_interval_s default
PAYMENTS_PER_HOUR = 20.0  # mqtt-contract.md sizing: 20 at peak
STRESS = 10.0
KEEPALIVE_S = 30  # the agent's keepalive_s default
RESEND_S = 30.0  # the agent's resend_after_s default
SESSION_EXPIRY_S = 7 * 24 * 3600
DESKS = 2
NOFILE = 65536
FD_MARGIN = 100  # the broker's listener, desk consumers, monitor, log, ...
SAMPLES = 4000  # latency samples a worker reports (uniformly thinned)
SHARE = "$share/desk/"
# TLS: a worker does the TCP connect and the TLS handshake itself, non-blocking in its
# epoll loop (many handshakes in flight per process, as many terminals are), and gives
# paho the finished socket: paho's connect() would block for each handshake in turn,
# making the fleet's (re)connect pace the simulator's, not the broker's. The client-side
# ECDHE and certificate checks still cost this machine's CPU: wait longer for TLS.
TLS_WAIT_S = 240.0
TIMER_BUDGET_S = 0.05  # a worker's timer work per loop turn: sockets and stdin come first
# The agent's waits (sync/connection.py): its connect_timeout_s bounds the TCP connect and
# TLS handshake (paho's connect_timeout; at most handshake_timeout_s) and, again, the wait
# for CONNACK. A worker takes the value from its config ("connect_timeout_s",
# ENV_CONNECT_TIMEOUT's), this by default.
CONNECT_TIMEOUT_S = ConnSettings.connect_timeout_s
HANDSHAKE_TIMEOUT_S = ConnSettings.handshake_timeout_s
# A field terminal does its own handshake on its own CPU; thousands in flight in one
# simulator process would all crawl on this machine's and time out by the simulator's
# fault. So a process keeps at most this many in flight; the others wait for a slot
# (the wait is in the time to all connected, not in the CONNACK latency).
HANDSHAKES_IN_FLIGHT = 64
DESK_SETTLE_MAX_S = 120.0  # after the storm, the desks' backlog gets this long to clear
SLOW_TURN_S = 0.5  # a simulator loop turn this long delays every terminal of the process
# Why a connect attempt failed before CONNACK (worker stats keys "fail:<why>"), in the
# order the bench prints them.
FAILS = {"refused": "refused", "tcp_timeout": "TCP connect timed out",
         "tls_timeout": "TLS handshake timed out", "tls_error": "TLS refused",
         "connack": "CONNACK refused", "connack_timeout": "CONNACK timed out",
         "closed": "closed before CONNACK"}


def resend_wait(sends: int) -> float:
    """sync/drain.py's timing: the wait doubles with each send, capped."""
    from sync.drain import RESEND_BACKOFF_MAX

    return RESEND_S * min(RESEND_BACKOFF_MAX, 1 << min(max(sends, 1) - 1, 16))


def _why(exc: BaseException) -> str:
    """A failure's short name for the counters: the errno's, the TLS alert's, the type's."""
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    if isinstance(exc, OSError) and exc.errno is not None and exc.errno in errno.errorcode:
        return errno.errorcode[exc.errno]
    return type(exc).__name__


def _n(x: float) -> str:
    """A count with thin-space thousands, as the other benchmarks print them."""
    return f"{x:,.0f}".replace(",", " ")


def _fleet_ids(n: int) -> list[str]:
    return [f"F{i:05d}" for i in range(n)]


def terminal_key(tid: str) -> Any:
    """Deterministic per-terminal Ed25519 key, so the desk can pin every public key
    without a key exchange (real terminals make theirs with `kiosk keys`)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(b"kiosk-fleet-terminal:" + tid.encode()).digest())


def desk_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"kiosk-fleet-desk").digest())


def _raise_nofile(want: int = NOFILE) -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for new_hard in (max(hard, want), hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, new_hard), new_hard))
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _thin(samples: list[float], n: int = SAMPLES) -> list[float]:
    if len(samples) <= n:
        return samples
    step = len(samples) / n
    return [samples[int(i * step)] for i in range(n)]


# == the terminals: many paho clients on one epoll loop per process ====================


@dataclass
class _Term:
    idx: int
    tid: str
    key: Any
    kid: str
    topics: dict[str, str]
    client: Any = None
    fd: int = -1
    connected: bool = False
    connecting_since: float = 0.0
    connection_id: str = ""
    backoff: Any = None
    ever_connected: bool = False
    seq: int = 0
    # seq -> [created, sent, data, sends on this connection]
    pending: dict[int, list[Any]] = field(default_factory=dict)
    health_phase: float = 0.0
    ssl_ctx: Any = None  # TLS: this terminal's own client certificate (CN = its id)
    handshake: Any = None  # TLS: the ssl socket whose handshake is under way (no client yet)
    tcp_done: bool = False  # TLS: the TCP connect of `handshake` has completed
    waiting: bool = False  # TLS: waiting for a free handshake slot in this process
    wanted_since: float = 0.0  # when it decided to connect (before any slot wait)
    node: int = 0  # which of a cluster's ports next (the agent's crc32 spread + failover)
    watch: Any = None  # the agent's ack watch (sync.ack_watch.AckWatch)
    payment_mids: set[int] = field(default_factory=set)  # this client's payment publishes
    clean_next: bool = False  # a session reset: the next connection is the clean one
    beat_mid: int = -1  # the desk beat's own SUBSCRIBE (optional, as the agent's)
    resetting: bool = False  # from a reset until its persistent session's CONNACK


class Worker:
    """`python -m bench.fleet worker JSON`: N terminals, commands on stdin, one JSON line
    of counters on stdout per `stats` command."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        from sync import topics
        from sync.ack_watch import AckWatch
        from sync.backoff import Backoff
        from sync.keys import key_id, public_from_b64

        self.cfg = cfg
        self.port = int(cfg["port"])
        self.v5 = cfg.get("protocol", "5") == "5"  # "3.1.1": a NATS cluster (bench/fleet_nats)
        self.ports = [int(p) for p in cfg.get("ports") or [self.port]]  # a cluster's nodes
        # [mqtt] light_session: ack and config at QoS 0, only cmd and payment_status queued
        self.qos = {leaf: 0 if cfg.get("light_session") and leaf in topics.LIGHT else 1
                    for leaf in topics.DOWN}
        self.rng = random.Random(cfg["seed"])
        self.binds = cfg.get("binds") or [""]
        self.desk_keys = {cfg["desk_kid"]: public_from_b64(cfg["desk_pub"])}
        self.ep = select.epoll()
        self.by_fd: dict[int, int] = {}
        self.timers: list[tuple[float, int, str, int, int]] = []
        self._tseq = 0
        self.gen = 0  # rate changes make the older health/payment timers stale
        self.dirty: set[int] = set()
        self.out_registered: set[int] = set()
        self.health_s = 0.0
        self.pay_rate = 0.0  # payments per second per terminal
        self.paying = False
        self.running = True
        self.stats: Counter[str] = Counter()
        self.connack_lat: list[float] = []
        self.ack_lat: list[float] = []
        self.reconnect_done: list[float] = []
        self.stall_s = float(cfg.get("ack_stall_s", 0.0))
        self.heard_s = float(cfg.get("ack_stall_heard_s", 0.0))
        self.connect_timeout_s = float(cfg.get("connect_timeout_s", CONNECT_TIMEOUT_S))
        self.handshake_timeout_s = min(self.connect_timeout_s, HANDSHAKE_TIMEOUT_S)
        self.keepalive_s = keepalive_for(self.connect_timeout_s)
        self.clean_done: list[tuple[int, Any]] = []  # clean sessions to end (_end_clean)
        self.terms: list[_Term] = []
        self.hs_cap = int(cfg.get("handshakes_in_flight", HANDSHAKES_IN_FLIGHT))
        self.hs_in_flight = 0
        self.hs_waiting: deque[int] = deque()
        self.slot_wait_max = 0.0  # longest wait for a handshake slot since the last sample
        self.turn_max = 0.0  # longest loop turn since the last sample
        for i, tid in enumerate(cfg["ids"]):
            key = terminal_key(tid)
            t = _Term(i, tid, key, key_id(tid, key.public_key()),
                      {leaf: topics.topic(tid, leaf) for leaf in topics.UP + topics.DOWN})
            t.backoff = Backoff(1.0, 60.0, rng=self.rng.uniform)
            t.node = zlib.crc32(tid.encode()) % len(self.ports)
            t.health_phase = self.rng.random()
            t.watch = AckWatch(self.stall_s, rng=self.rng.uniform, heard_stall_s=self.heard_s)
            self.terms.append(t)
        if cfg.get("tls"):
            _terminal_tls(self.terms, cfg["tls"])
        self._stdin = sys.stdin.fileno()
        os.set_blocking(self._stdin, False)
        self.ep.register(self._stdin, select.EPOLLIN)
        self._inbuf = b""

    # -- timers ------------------------------------------------------------------------
    def at(self, when: float, kind: str, idx: int) -> None:
        self._tseq += 1
        heapq.heappush(self.timers, (when, self._tseq, kind, idx, self.gen))

    # -- connections -------------------------------------------------------------------
    def _client(self, t: _Term) -> Any:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        if self.v5:
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=t.tid,
                            protocol=mqtt.MQTTv5, reconnect_on_failure=False, userdata=t.idx)
        else:  # the reset's connection has a clean session (v5: clean_start, in connect)
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=t.tid,
                            protocol=mqtt.MQTTv311, clean_session=t.clean_next,
                            reconnect_on_failure=False, userdata=t.idx)
        c.suppress_exceptions = True
        c.connect_timeout = 5.0
        c.max_inflight_messages_set(40)
        if t.ssl_ctx is not None:
            c.tls_set_context(t.ssl_ctx)
        t.connection_id = f"{self.rng.getrandbits(64):016x}"
        t.payment_mids.clear()
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        c.on_socket_open = self._on_socket_open
        c.on_socket_close = self._on_socket_close
        c.on_socket_register_write = self._on_register_write
        c.on_socket_unregister_write = self._on_unregister_write
        if t.clean_next:  # the reset's connection: ended at its CONNACK, no Will (as the agent)
            return c
        will = json.dumps({"v": 1, "terminal_id": t.tid, "state": "offline", "reason": "lost",
                           "connection_id": t.connection_id, "at_ms": int(time.time() * 1000),
                           "agent_version": "0.1.0"}).encode()
        c.will_set(t.topics["state"], will, qos=1, retain=True,
                   properties=Properties(PacketTypes.WILLMESSAGE) if self.v5 else None)
        return c

    def connect(self, t: _Term) -> None:
        if t.connected or t.client is not None or t.handshake is not None or t.waiting:
            return
        self.stats["connect_attempts"] += 1
        t.wanted_since = t.connecting_since = time.monotonic()
        if t.ssl_ctx is None:
            self._mqtt_connect(t)
        elif self.hs_in_flight >= self.hs_cap:
            t.waiting = True
            self.hs_waiting.append(t.idx)
            self.stats["slot_waits"] += 1
        else:
            self._start_handshake(t)

    def _start_waiting(self) -> None:
        """Free handshake slots to the terminals waiting longest (called once a turn, not
        from a failure's path: an instant failure would otherwise recurse)."""
        now = time.monotonic()
        while self.hs_waiting and self.hs_in_flight < self.hs_cap:
            t = self.terms[self.hs_waiting.popleft()]
            if not t.waiting:
                continue
            t.waiting = False
            self.slot_wait_max = max(self.slot_wait_max, now - t.wanted_since)
            t.connecting_since = now
            self._start_handshake(t)

    def _start_handshake(self, t: _Term) -> None:
        """Non-blocking TCP connect, then the TLS handshake stepped by epoll events
        (_handshake_step); MQTT CONNECT once it is done."""
        t.tcp_done = False
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setblocking(False)
        try:
            if bind := self._bind_of(t):
                raw.bind((bind, 0))
            err = raw.connect_ex(("127.0.0.1", self._port_of(t)))
            if err not in (0, errno.EINPROGRESS):
                raise OSError(err, os.strerror(err))
        except OSError as exc:
            raw.close()
            self._connect_failed(t, "refused", _why(exc))
            return
        t.handshake = raw  # wrapped for TLS once connected (_handshake_step)
        self.hs_in_flight += 1  # until t.handshake is cleared (done, or _drop)
        fd = raw.fileno()
        self.by_fd[fd] = t.idx
        t.fd = fd
        self.ep.register(fd, select.EPOLLOUT)  # writable: the TCP connect is done

    def _handshake_step(self, t: _Term) -> None:
        if not t.tcp_done:  # the first event: the TCP connect has finished, one way or other
            raw = t.handshake
            if err := raw.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self._connect_failed(t, "refused", errno.errorcode.get(err, str(err)))
                return
            # Wrapped only now: Python's wrap_socket reads from a socket not yet connected
            # (its pre-handshake data check) and raises EAGAIN while the SYN waits, e.g.
            # dropped at a broker's full accept queue and due to be sent again by TCP. The
            # simulator once counted that as a refusal and backed off 1-60 s, which no
            # terminal does (the agent's connect waits for the SYN's retransmission).
            try:
                t.handshake = t.ssl_ctx.wrap_socket(raw, server_hostname="127.0.0.1",
                                                    do_handshake_on_connect=False)
            except (OSError, ValueError) as exc:
                self._connect_failed(t, "refused", _why(exc))
                return
            t.tcp_done = True
        sock = t.handshake
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self.ep.modify(sock.fileno(), select.EPOLLIN)
            return
        except ssl.SSLWantWriteError:
            self.ep.modify(sock.fileno(), select.EPOLLOUT)
            return
        except ssl.SSLError as exc:  # a certificate the other side refuses, a protocol error
            self._connect_failed(t, "tls_error", _why(exc))
            return
        except (OSError, ValueError) as exc:  # reset or closed in the middle of the handshake
            self._connect_failed(t, "refused", _why(exc))
            return
        self._forget_fd(sock.fileno())  # paho registers it again (on_socket_open)
        t.handshake = None
        self.hs_in_flight -= 1
        self.stats["tls_handshakes"] += 1
        self._mqtt_connect(t, sock)

    def _connect_failed(self, t: _Term, why: str, detail: str = "") -> None:
        """No connection at all: the next node next time, as sync/connection.py does."""
        self.stats[f"fail:{why}"] += 1
        if detail:
            self.stats[f"why:{why}:{detail}"] += 1
        self._retry_later(t)

    def _retry_later(self, t: _Term) -> None:
        """Drop what there is; the next node (as sync/connection.py) after the backoff."""
        self._drop(t)
        t.node = (t.node + 1) % len(self.ports)
        self.at(time.monotonic() + t.backoff.next_delay(), "connect", t.idx)

    def _port_of(self, t: _Term) -> int:
        return self.port if self.v5 else self.ports[t.node]

    def _bind_of(self, t: _Term) -> str:
        return str(self.binds[t.idx % len(self.binds)])

    def _mqtt_connect(self, t: _Term, sock: Any = None) -> None:
        """CONNECT on a new paho client; `sock`: a socket whose TLS handshake is done,
        which paho takes instead of making its own (its _create_socket)."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        c = self._client(t)
        if sock is not None:
            c._create_socket = lambda: sock
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0 if t.clean_next else SESSION_EXPIRY_S
        t.client = c
        try:
            if self.v5:
                c.connect("127.0.0.1", self._port_of(t), keepalive=self.keepalive_s,
                          bind_address=self._bind_of(t), clean_start=t.clean_next,
                          properties=props)
            else:
                c.connect("127.0.0.1", self._port_of(t), keepalive=self.keepalive_s,
                          bind_address=self._bind_of(t))
        except (OSError, ValueError) as exc:  # SSLError is an OSError; bad certificate ValueError
            self._connect_failed(t, "refused", _why(exc))

    def _drop(self, t: _Term, leave: bool = False) -> None:
        """Close what there is; `leave`: a normal DISCONNECT first (no Will)."""
        c, t.client = t.client, None
        if t.connected:
            t.watch.disconnected()  # the agent: its "disconnected" stops the watch's clock
        t.connected = False
        if leave and c is not None:
            try:
                c.disconnect()  # queued; written now (a few bytes, the socket takes them)
                c.loop_write()
            except Exception:
                pass
        t.waiting = False  # its entry in hs_waiting is skipped
        if t.handshake is not None:
            self.hs_in_flight -= 1
            hs, t.handshake = t.handshake, None
            self._forget_fd(t.fd)  # hs.fileno() is -1 if a failed wrap_socket took it
            hs.close()
        self.dirty.discard(t.idx)
        self.out_registered.discard(t.idx)
        if c is not None:
            try:
                sock = c.socket()
                if sock is not None:
                    self._forget_fd(sock.fileno())
                    sock.close()
            except Exception:
                pass
            try:
                c._sock = None
            except Exception:
                pass

    def _forget_fd(self, fd: int) -> None:
        if self.by_fd.pop(fd, None) is not None:
            try:
                self.ep.unregister(fd)
            except OSError:
                pass

    def lost(self, t: _Term, why: str) -> None:
        was = t.connected
        self._retry_later(t)
        if was:
            self.stats["disconnects"] += 1
            self.stats[f"lost:{why}"] += 1
        else:
            self.stats[f"fail:{why if why in FAILS else 'closed'}"] += 1
            if why not in FAILS:
                self.stats[f"why:closed:{why}"] += 1

    # -- paho callbacks (this thread) --------------------------------------------------
    def _on_socket_open(self, client: Any, idx: int, sock: Any) -> None:
        fd = sock.fileno()
        self.by_fd[fd] = idx
        self.terms[idx].fd = fd
        self.ep.register(fd, select.EPOLLIN)

    def _on_socket_close(self, client: Any, idx: int, sock: Any) -> None:
        self._forget_fd(sock.fileno())

    def _on_register_write(self, client: Any, idx: int, sock: Any) -> None:
        self.dirty.add(idx)

    def _on_unregister_write(self, client: Any, idx: int, sock: Any) -> None:
        if idx in self.out_registered:
            self.out_registered.discard(idx)
            try:
                self.ep.modify(sock.fileno(), select.EPOLLIN)
            except OSError:
                pass

    def _on_connect(self, client: Any, idx: int, flags: Any, rc: Any, props: Any) -> None:
        from paho.mqtt.subscribeoptions import SubscribeOptions

        t = self.terms[idx]
        if rc.is_failure:
            self.lost(t, "connack")
            return
        if t.clean_next:  # the reset's clean session: the broker dropped the old one
            t.clean_next = False
            self.stats["clean_connects"] += 1
            # ended from the loop, not here: paho's DISCONNECT path takes the callback
            # lock this callback holds (a deadlock, seen)
            self.clean_done.append((idx, client))
            return
        now = time.monotonic()
        t.connected = True
        self.stats["connects"] += 1
        if t.ever_connected and not flags.session_present:  # a reset's, or a broker lost it
            self.stats["fresh_sessions"] += 1
        if t.resetting:  # not a reconnect after a failure: kept out of those figures
            t.resetting = False
            self.stats["reset_connects"] += 1
        else:
            self.connack_lat.append(now - t.connecting_since)
            if t.ever_connected:
                self.stats["reconnects"] += 1
                self.reconnect_done.append(now)
        t.ever_connected = True
        t.watch.connected(bool(flags.session_present))  # a kept session keeps the stall
        if self.v5:
            client.subscribe([
                (t.topics[leaf], SubscribeOptions(qos=qos, retainHandling=2 if leaf == "cmd"
                                                  else 0))
                for leaf, qos in self.qos.items()
            ])
        else:  # 3.1.1: no subscription options
            client.subscribe([(t.topics[leaf], qos) for leaf, qos in self.qos.items()])
        if self.heard_s > 0:  # the desk's beat, QoS 0, in a SUBSCRIBE of its own (the agent)
            t.beat_mid = (
                client.subscribe(desk_beat.TOPIC, options=SubscribeOptions(qos=0, retainHandling=2))
                if self.v5 else client.subscribe(desk_beat.TOPIC, 0))[1]
        state = json.dumps({"v": 1, "terminal_id": t.tid, "state": "online",
                            "connection_id": t.connection_id,
                            "at_ms": int(time.time() * 1000), "agent_version": "0.1.0"})
        client.publish(t.topics["state"], state.encode(), qos=1, retain=True)
        self.stats["pub:state"] += 1
        self.health(t)
        if t.pending:  # like Drain.reset: everything unacknowledged goes out again
            for p in t.pending.values():
                p[3] = 0  # and the resend backoff starts over
            self.send(t, sorted(t.pending), resend=True)

    def _on_subscribe(self, client: Any, idx: int, mid: int, rcs: list[Any],
                      props: Any) -> None:
        """A refused subscription (SUBACK 0x80; NATS answers so when a consumer's creation
        times out): as sync/connection.py, the session is useless without it, so drop
        the connection and subscribe again on the next node after the backoff. Until
        2026-12-07 the simulator ignored it and the terminal waited for the ack watch."""
        t = self.terms[idx]
        if t.client is not client:
            return
        if mid == t.beat_mid:  # optional, as the agent's: a refusal keeps the session
            t.beat_mid = -1
            self.stats["beat_refused"] += any(rc.is_failure for rc in rcs)
            return
        if any(rc.is_failure for rc in rcs):
            self.stats["subscribe_refused"] += 1
            self.lost(t, "subscribe_refused")
        else:
            # as sync/connection.py's _healthy: the backoff starts afresh once subscribed,
            # not at CONNACK. Reset at CONNACK (until 2026-12-07), every refusal was
            # retried after the shortest delay: at 400 terminals on 2.14.6 the refusals
            # fed themselves, ≈ 1,750 a minute for 5 minutes without easing
            t.backoff.reset()

    def _on_disconnect(self, client: Any, idx: int, flags: Any, rc: Any, props: Any) -> None:
        t = self.terms[idx]
        if t.client is client:
            # paho's reason: the broker's DISCONNECT (v5), its own keep-alive timeout, or
            # a connection that ended ("Unspecified error")
            self.lost(t, f"disconnect:{getattr(rc, 'getName', lambda: rc)()}")

    def _on_publish(self, client: Any, idx: int, mid: int, rc: Any, props: Any) -> None:
        t = self.terms[idx]
        if t.client is client and mid in t.payment_mids:
            t.payment_mids.discard(mid)
            t.watch.taken()  # a record batch PUBACKed (the agent: Drain.published ok)

    def _end_clean(self) -> None:
        """A reset's clean session was accepted: leave it, and connect the persistent
        session at once (sync.connection: the same node, no backoff)."""
        done, self.clean_done = self.clean_done, []
        for idx, client in done:
            t = self.terms[idx]
            if t.client is client:
                self._drop(t, leave=True)
                self.connect(t)

    def reset_session(self, t: _Term) -> None:
        """The ack watch's cure (sync.connection.Connection.reset_session): a normal
        DISCONNECT, a clean-session connection ended at its CONNACK, then the persistent
        session again with its subscriptions made anew; unacked payments go out again."""
        t.watch.reset_started()
        self.stats["session_resets"] += 1
        self._drop(t, leave=True)
        t.clean_next = t.resetting = True
        self.connect(t)

    def _on_message(self, client: Any, idx: int, msg: Any) -> None:
        from sync.envelope import EnvelopeError, open_envelope

        t = self.terms[idx]
        if msg.topic == desk_beat.TOPIC:
            self._beat(t, msg)
            return
        leaf = msg.topic.rsplit("/", 1)[-1] if not msg.topic.endswith("cmd/result") else ""
        self.stats[f"in:{leaf}"] += 1
        if leaf != "ack":
            return
        try:
            body = open_envelope(bytes(msg.payload), "ack", self.desk_keys).body
        except EnvelopeError:
            self.stats["ack_rejected"] += 1
            return
        if body.get("terminal_id") != t.tid:
            self.stats["ack_rejected"] += 1
            return
        t.watch.acked()
        now = time.monotonic()
        for s in body.get("seqs", []):
            p = t.pending.pop(s, None)
            if p is None:
                self.stats["ack_repeat"] += 1
            else:
                self.stats["acked"] += 1
                self.ack_lat.append(now - p[0])

    def _beat(self, t: _Term, msg: Any) -> None:
        """As the agent's _on_beat: live, signed, fresh, covering this terminal."""
        from sync.envelope import EnvelopeError

        self.stats["in:beat"] += 1
        try:
            beat = desk_beat.open_beat(bytes(msg.payload), bool(msg.retain), self.desk_keys,
                                       int(time.time() * 1000), CLOCK_SKEW_S)
        except (EnvelopeError, desk_beat.BeatError):
            self.stats["beat_rejected"] += 1
            return
        if beat.covers(t.tid):
            self.stats["beats_heard"] += 1
            t.watch.heard(beat.every_s)

    # -- what a terminal sends ---------------------------------------------------------
    def health(self, t: _Term) -> None:
        if not t.connected:
            return
        doc = {
            "v": 1, "terminal_id": t.tid, "at_ms": int(time.time() * 1000),
            "connection_id": t.connection_id, "screen": "idle", "in_service": True,
            "out_of_service": {},
            "acceptor": {"status": "disabled", "detail": "0x19 unit disabled",
                         "protocol": "ccnet", "model": "SM-RU1353", "serial": "41A123456789"},
            "printer": {"status": "ok", "can_print": True}, "paper": "ok",
            "cassette": {"bills": t.seq, "total_minor": 50_000 * t.seq, "by_denomination": [
                {"amount_minor": 50_000, "currency": "RUB", "count": t.seq,
                 "value_minor": 50_000 * t.seq}]},
            "queue": {"payments_unsent": len(t.pending), "oldest_unsent_ms": None,
                      "events_unsent": 0},
            "disk": {"free_bytes": 8_123_456_789, "total_bytes": 16_000_000_000},
            "uptime_s": int(time.monotonic()),
            "versions": {"agent": "0.1.0", "python": "3.11.7", "paho_mqtt": "2.2.0"},
            "config_version": 7, "support_phone": "8 800 555-35-35",
        }
        t.client.publish(t.topics["health"], json.dumps(doc).encode(), qos=1, retain=True)
        self.stats["pub:health"] += 1

    def new_payment(self, t: _Term) -> None:
        t.seq += 1
        now_ms = int(time.time() * 1000)
        number = t.seq
        data = {
            "id": f"{t.tid}-{number:08d}", "number": number, "kind": "payment",
            "status": "queued", "provider_id": "mts", "account": "9161234567",
            "inserted_minor": 50_000, "commission_minor": 1500, "credited_minor": 48_500,
            "currency": "RUB", "reprocess_count": 0, "created_ms": now_ms,
            "session_id": number, "note": None, "terminal_id": t.tid,
            "bills": [{"amount_minor": 50_000, "currency": "RUB", "count": 1}],
        }
        t.pending[t.seq] = [time.monotonic(), 0.0, data, 0]  # created, sent, data, sends
        self.stats["payments"] += 1
        if t.connected:
            self.send(t, [t.seq])

    def send(self, t: _Term, seqs: list[int], resend: bool = False) -> None:
        """Signed batches of up to 20 records (the fleet's `mqtt.batch`), QoS 1."""
        from sync.envelope import seal

        now = time.monotonic()
        for start in range(0, len(seqs), 20):
            group = [s for s in seqs[start:start + 20] if s in t.pending]
            if not group:
                continue
            records = []
            for s in group:
                p = t.pending[s]
                p[1] = now
                p[3] += 1
                records.append({"seq": s, "ref": p[2]["id"], "attempt": 1, "data": p[2]})
            body = {"v": 1, "terminal_id": t.tid, "kind": "payment",
                    "connection_id": t.connection_id, "sent_ms": int(time.time() * 1000),
                    "records": records}
            info = t.client.publish(t.topics["payments"], seal(t.key, t.kid, "payments", body),
                                    qos=1)
            t.payment_mids.add(info.mid)
            self.stats["pub:payments"] += 1
            self.stats["records_resent" if resend else "records_sent"] += len(group)

    # -- the loop ----------------------------------------------------------------------
    def command(self, line: str) -> None:
        cmd = json.loads(line)
        op = cmd["op"]
        now = time.monotonic()
        if op == "connect":
            jitter = float(cmd.get("jitter_s", 0))
            for t in self.terms:
                self.at(now + self.rng.uniform(0, jitter), "connect", t.idx)
        elif op == "rates":
            self.gen += 1
            self.health_s = float(cmd["health_s"])
            self.pay_rate = float(cmd["pay_per_h"]) / 3600.0
            self.paying = self.pay_rate > 0
            for t in self.terms:
                self.at(now + t.health_phase * self.health_s, "health", t.idx)
                if self.paying:
                    self.at(now + self.rng.expovariate(self.pay_rate), "pay", t.idx)
        elif op == "quiet":
            self.gen += 1
            self.paying = False
            self.health_s = 0.0
        elif op == "stats":
            self.report(bool(cmd.get("samples")))
        elif op == "stop":
            for t in self.terms:
                self._drop(t)
            self.running = False

    def report(self, samples: bool) -> None:
        # one pass over the terminals (asked every second while the run drains): counts,
        # and why the ack watch did or did not reset - of the terminals holding payments,
        # how many have had one PUBACKed with no ack since (connected seconds, counted
        # across reconnects that kept the session: sync/ack_watch.py)
        connected = pending = holding = waiting = 0
        waited_max = 0.0
        stalled: list[str] = []  # the ones to probe (STALL_PROBE_S)
        backoff_max = 0  # the most failed attempts in a row of any terminal
        for t in self.terms:
            connected += t.connected
            pending += len(t.pending)
            backoff_max = max(backoff_max, t.backoff.attempt)
            waited = t.watch.waited_s()
            waited_max = max(waited_max, waited)
            if t.pending:
                holding += 1
                waiting += waited > 0
                if waited > STALL_PROBE_S and len(stalled) < PROBE_MAX:
                    stalled.append(t.tid)
        out: dict[str, Any] = {
            "stalled": stalled,
            "stats": dict(self.stats),
            "connected": connected,
            "pending": pending,
            "terminals": len(self.terms),
            "holding": holding,
            "watch_waiting": waiting,
            "watch_waited_max_s": waited_max,
            "backoff_attempts_max": backoff_max,
            "cpu_s": sum(os.times()[:2]),
        }
        if samples:
            out["slot_wait_max_s"], self.slot_wait_max = self.slot_wait_max, 0.0
            out["turn_max_s"], self.turn_max = self.turn_max, 0.0
            out["connack_lat"] = _thin(self.connack_lat)
            out["ack_lat"] = _thin(self.ack_lat)
            out["reconnect_done"] = self.reconnect_done[-1:] if self.reconnect_done else []
            self.connack_lat, self.ack_lat = [], []
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()

    def run(self) -> None:
        next_misc = time.monotonic() + 1.0
        misc_at = 0
        turn_start = time.monotonic()
        while self.running:
            now = time.monotonic()
            turn = now - turn_start  # the last turn's work, without this poll's wait
            self.turn_max = max(self.turn_max, turn)
            if turn > SLOW_TURN_S:
                self.stats["slow_turns"] += 1
            timeout = 0.05
            if self.timers:
                timeout = max(0.0, min(timeout, self.timers[0][0] - now))
            events = self.ep.poll(timeout, 2048)
            turn_start = time.monotonic()
            for fd, ev in events:
                if fd == self._stdin:
                    self._read_stdin()
                    continue
                idx = self.by_fd.get(fd)
                if idx is None:
                    continue
                t = self.terms[idx]
                if t.handshake is not None:
                    self._handshake_step(t)
                    continue
                c = t.client
                if c is None:
                    continue
                readable = ev & (select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP)
                if readable and c.loop_read(64) != 0 and t.client is c:
                    self.lost(t, "read")
                    continue
                if ev & select.EPOLLOUT and t.client is c and c.loop_write() != 0:
                    self.lost(t, "write")
            self._end_clean()
            now = time.monotonic()
            budget_end = now + TIMER_BUDGET_S
            while self.timers and self.timers[0][0] <= now:
                if time.monotonic() > budget_end:
                    break  # stdin and sockets first
                _, _, kind, idx, gen = heapq.heappop(self.timers)
                t = self.terms[idx]
                if kind == "connect":
                    self.connect(t)
                elif gen != self.gen:
                    continue  # a timer of an earlier rate setting
                elif kind == "health" and self.health_s > 0:
                    self.health(t)
                    self.at(now + self.health_s, "health", idx)
                elif kind == "pay" and self.paying:
                    self.new_payment(t)
                    self.at(now + self.rng.expovariate(self.pay_rate), "pay", idx)
            self._start_waiting()
            self._flush()
            if now >= next_misc and self.terms:  # keep-alive, resends: a slice a tick
                next_misc = now + 0.1
                step = max(1, len(self.terms) // 10)
                # a slice that wraps round: with len % 10 != 0 a plain slice ran short at
                # the end and the next began past the start, so the first few hundred
                # terminals of a process went unvisited for minutes (no PINGREQ: the
                # broker dropped them for keep-alive; resends and timeouts late)
                for t in (self.terms[(misc_at + i) % len(self.terms)] for i in range(step)):
                    if t.handshake is not None and \
                            now - t.connecting_since > self.handshake_timeout_s:
                        self._connect_failed(t, "tls_timeout" if t.tcp_done else "tcp_timeout")
                    if t.connected and t.watch.due():
                        self.reset_session(t)
                    if t.client is not None:
                        if t.connected and t.pending:
                            due = [s for s, p in t.pending.items()
                                   if now - p[1] >= resend_wait(p[3])]
                            if due:
                                self.send(t, sorted(due), resend=True)
                        if t.client is not None and t.client.loop_misc() != 0 and t.connected:
                            self.lost(t, "keepalive")
                        elif t.client is not None and not t.connected and \
                                now - t.connecting_since > self.connect_timeout_s:
                            self.lost(t, "connack_timeout")
                misc_at = (misc_at + step) % max(1, len(self.terms))
                self._flush()

    def _flush(self) -> None:
        while self.dirty:
            idx = self.dirty.pop()
            t = self.terms[idx]
            c = t.client
            if c is None:
                continue
            if c.loop_write() != 0:
                if t.client is c:
                    self.lost(t, "write")
                continue
            if c.want_write() and idx not in self.out_registered and t.fd in self.by_fd:
                self.out_registered.add(idx)
                try:
                    self.ep.modify(t.fd, select.EPOLLIN | select.EPOLLOUT)
                except OSError:
                    pass

    def _read_stdin(self) -> None:
        try:
            chunk = os.read(self._stdin, 65536)
        except BlockingIOError:
            return
        if not chunk:
            self.running = False
            return
        self._inbuf += chunk
        while b"\n" in self._inbuf:
            line, self._inbuf = self._inbuf.split(b"\n", 1)
            if line.strip():
                self.command(line.decode())


# == the desk consumers: sync.desk.Desk on shared subscriptions ========================


def tls_kit(folder: Path, port: int, desk_port: int) -> dict[str, str]:
    """The broker kit (`kiosk broker-kit init`: CAs, server certificate, the shipped
    kiosk.conf and ACL) and one desk certificate; terminals make their own certificates
    from the kit's terminal CA in their worker process (setup, before any clock)."""
    from sync import broker_kit

    kit = broker_kit.init(folder / "kit", "127.0.0.1", port, desk_port, bind="127.0.0.1",
                          days=30)
    desk_pem, desk_key_path = broker_kit.desk_cert(kit, folder / "desk-tls")
    # the bench's $SYS monitor connects as the desk: let that identity read $SYS too
    with open(kit.acl, "a", encoding="utf-8") as acl:
        acl.write(f"\nuser {broker_kit.DESK_IDENTITY}\ntopic read $SYS/#\n")
    return {"kit": str(kit.dir), "ca": str(kit.terminal_ca), "desk_cert": str(desk_pem),
            "desk_key": str(desk_key_path), "certs": str(folder / "certs")}


def _terminal_tls(terms: list[_Term], tls: dict[str, str]) -> None:
    """Each terminal its own key and certificate (CN = terminal id, signed by the kit's
    terminal CA) and its own SSL context, as a real terminal has."""
    import ssl

    from sync import broker_kit
    from sync.keys import issue, make_csr, pem, write_tls_key

    kit = broker_kit.Kit(Path(tls["kit"]))
    ca_key, ca_cert = broker_kit._load_ca(kit, desk=False)
    out = Path(tls["certs"])
    out.mkdir(parents=True, exist_ok=True)
    for t in terms:
        key_path, cert_path = out / f"{t.tid}.key", out / f"{t.tid}.pem"
        key = write_tls_key(key_path)
        cert = issue(ca_key, ca_cert, make_csr(key, t.tid), days=30)
        cert_path.write_bytes(pem(cert))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(tls["ca"])
        ctx.load_cert_chain(str(cert_path), str(key_path))
        t.ssl_ctx = ctx


def desk_main(cfg: dict[str, Any]) -> None:
    import dataclasses

    from sync import topics
    from sync.connection import Subscription
    from sync.desk import Desk
    from sync.keys import key_id

    key = desk_key()
    ids = _fleet_ids(int(cfg["terminals"]))
    pubs = {tid: terminal_key(tid).public_key() for tid in ids}
    tls = cfg.get("tls")
    tls_files = (Path(tls["ca"]), Path(tls["desk_cert"]), Path(tls["desk_key"])) if tls else None
    if cfg.get("ports"):  # a NATS cluster (bench/fleet_nats): 3.1.1, partitions, no $share
        from sync.connection import Endpoint

        desk = Desk("127.0.0.1", 0, key, key_id("desk", key.public_key()), pubs,
                    Path(cfg["db"]), client_id=cfg["client_id"], reconnect_min_s=1.0,
                    tls=tls_files, protocol="3.1.1",
                    endpoints=tuple(Endpoint("127.0.0.1", int(p)) for p in cfg["ports"]),
                    partition=(int(cfg["partition"][0]), int(cfg["partition"][1])),
                    connect_timeout_s=float(cfg.get("connect_timeout_s", CONNECT_TIMEOUT_S)),
                    beat_s=float(cfg.get("beat_s", 0.0)))
    else:
        desk = Desk("127.0.0.1", int(cfg["desk_port"] if tls else cfg["port"]), key,
                    key_id("desk", key.public_key()), pubs, Path(cfg["db"]),
                    client_id=cfg["client_id"], reconnect_min_s=1.0, tls=tls_files,
                    connect_timeout_s=float(cfg.get("connect_timeout_s", CONNECT_TIMEOUT_S)),
                    beat_s=float(cfg.get("beat_s", 0.0)))
        shared = tuple(Subscription(SHARE + topics.desk_filter(leaf), 1)
                       for leaf in (topics.PAYMENTS, topics.EVENTS, topics.STATE,
                                    topics.HEALTH))
        desk.conn.settings = dataclasses.replace(desk.conn.settings, subscriptions=shared)
    desk.store.db.execute("PRAGMA busy_timeout=10000")
    desk.start()
    # when the desk last got its link back (monotonic: one clock for every process here),
    # so a slow drain after a broker restart can be told apart from a desk that was away
    link = {"connected_at": 0.0}

    def watch_link() -> None:
        was = False
        while True:
            now = desk.conn.connected
            if now and not was:
                link["connected_at"] = time.monotonic()
            was = now
            time.sleep(0.2)

    threading.Thread(target=watch_link, daemon=True).start()
    print(json.dumps({"ready": desk.conn.wait_connected(20)}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "stats":
            s = desk.stats
            print(json.dumps({"new_payments": s.new_payments, "duplicates": s.duplicates,
                              "records": s.records, "messages": s.messages,
                              "acks": s.acks_sent, "rejected": s.rejected,
                              "health": len(desk.health), "states": len(desk.states),
                              "connected": desk.conn.connected,
                              "connected_at": link["connected_at"],
                              "cpu_s": sum(os.times()[:2])}), flush=True)
        elif cmd["op"] == "stop":
            break
    desk.stop()


# == the coordinator ===================================================================


class Proc:
    """A child speaking JSON lines on stdin/stdout."""

    def __init__(self, argv: list[str], name: str) -> None:
        self.name = name
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                                  preexec_fn=_raise_nofile)
        assert self.p.stdout is not None
        os.set_blocking(self.p.stdout.fileno(), False)
        self.buf = b""

    def send(self, obj: dict[str, Any]) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write((json.dumps(obj) + "\n").encode())
        self.p.stdin.flush()

    def read(self, timeout: float) -> dict[str, Any]:
        assert self.p.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or self.p.poll() is not None:
                raise BenchError(f"{self.name}: no answer (exit {self.p.poll()})")
            select.select([self.p.stdout], [], [], min(left, 0.5))
            try:
                chunk = os.read(self.p.stdout.fileno(), 1 << 20)
            except BlockingIOError:
                continue
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def ask(self, obj: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        self.send(obj)
        return self.read(timeout)

    def stop(self) -> None:
        if self.p.poll() is None:
            try:
                self.send({"op": "stop"})
                self.p.wait(15)
            except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
                self.p.kill()
                self.p.wait(10)


class Broker:
    """One mosquitto; bench/fleet_nats.py's NatsClusterBroker has the same interface."""

    key, title, tls_key, tls_title = KEY, TITLE, TLS_KEY, TLS_TITLE
    wait_s = 60.0  # connect storm and restart, beyond the jitter (TLS: TLS_WAIT_S)

    def __init__(self, folder: Path, tls: bool = False) -> None:
        self.folder = folder
        self.port = _free_port()
        self.desk_port = _free_port()
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.tls = tls_kit(folder, self.port, self.desk_port) if tls else None

    def start(self) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.access(exe, os.X_OK):
            raise BenchError("mosquitto is not installed (scripts/system-deps.sh installs it)")
        conf = self.folder / "mosquitto.conf"
        user = "user root\n" if os.geteuid() == 0 else ""
        if self.tls is None:
            conf.write_text(
                f"{user}listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                "persistence false\nmax_connections -1\nmax_queued_messages 1000\n"
                "sys_interval 1\nset_tcp_nodelay true\n", encoding="utf-8")
        else:  # the shipped kiosk.conf and ACL as `kiosk broker-kit init` wrote them
            shipped = (Path(self.tls["kit"]) / "kiosk.conf").read_text(encoding="utf-8")
            conf.write_text(
                f"{user}persistence false\nmax_connections -1\nsys_interval 1\n"
                f"set_tcp_nodelay true\n{shipped}", encoding="utf-8")
        self.starts += 1
        log = open(self.folder / f"mosquitto-{self.starts}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=log, stderr=log,
                                     preexec_fn=_raise_nofile)
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if port_open(self.port):
                return
            time.sleep(0.02)
        raise BenchError("mosquitto did not start")

    def disconnect_findings(self) -> list[str]:
        """Why mosquitto closed connections, in its own words, per start: a fleet's
        connections lost while it is steady must have a cause the report names."""
        lines = []
        for start in range(1, self.starts + 1):
            path = self.folder / f"mosquitto-{start}.log"
            text = path.read_text(errors="replace") if path.exists() else ""
            found = mosquitto_disconnects(text)
            if found:
                lines.append(f"mosquitto log, start {start}: " + "; ".join(
                    f"{count}x {example}" for example, count in found[:FINDINGS]))
        return lines

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def cpu_s(self) -> float:
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_kib(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def nofile(self) -> str:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return line.split()[3]
        return "?"

    def monitor(self) -> SysMonitor:
        return SysMonitor(self.desk_port if self.tls else self.port, self.tls)

    def desk_extra(self, i: int, desks: int) -> dict[str, Any]:
        return {}

    def worker_extra(self) -> dict[str, Any]:
        return {}

    def link(self, tls: bool) -> str:
        return ("TLS with a client certificate per terminal, the shipped kiosk.conf and ACL "
                "(kiosk broker-kit init)" if tls else "no TLS")


class SysMonitor:
    """The broker's own counters ($SYS, published every second)."""

    WANT = ("$SYS/broker/messages/received", "$SYS/broker/messages/sent",
            "$SYS/broker/clients/connected")

    def __init__(self, port: int, tls: dict[str, str] | None = None) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.values: dict[str, float] = {}
        self.lock = threading.Lock()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fleet-sys",
                             protocol=mqtt.MQTTv5)
        if tls is not None:  # as the desk identity, on the desk listener
            self.c.tls_set(ca_certs=tls["ca"], certfile=tls["desk_cert"],
                           keyfile=tls["desk_key"])
        self.c.on_message = self._on_message
        self.c.on_connect = lambda c, *_: c.subscribe([(t, 0) for t in self.WANT])
        self.c.reconnect_delay_set(1, 2)
        # In the loop's thread, retried: a broker busy with a reconnect storm can time out
        # this handshake too (a blocking connect() here once ended the whole run).
        self.c.connect_async("127.0.0.1", port, keepalive=60)
        self.c.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            value = float(msg.payload)
        except ValueError:
            return
        with self.lock:
            self.values[msg.topic.removeprefix("$SYS/broker/")] = value

    def snap(self) -> dict[str, float]:
        with self.lock:
            return dict(self.values)

    def stop(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


@dataclass
class Phase:
    name: str
    seconds: float
    broker_cpu_s: float
    pub_in: float
    pub_out: float
    pkt_in: float
    pkt_out: float
    fleet_cpu_s: float
    desk_cpu_s: float
    connected_end: int
    extra: dict[str, Any] = field(default_factory=dict)
    peak_cores: float = 0.0  # the busiest ~1 s of the phase
    fails: Counter[str] = field(default_factory=Counter)  # connect failures by cause
    why: Counter[str] = field(default_factory=Counter)  # "refused:ECONNRESET": the errors seen
    lost: Counter[str] = field(default_factory=Counter)  # live connections lost, by cause
    kernel: Counter[str] = field(default_factory=Counter)  # TcpExt listen counters' growth
    slow_turns: int = 0  # simulator loop turns over SLOW_TURN_S

    def fails_text(self) -> str:
        """'N connect attempts failed and were retried (refused a, ...)', for the details."""
        total = sum(self.fails.values())
        parts = [f"{FAILS[k]} {self.fails[k]}" for k in FAILS if self.fails.get(k)]
        if self.why:
            parts.append("errors: " + ", ".join(f"{k} {v}" for k, v in self.why.most_common(6)))
        return (f"{total} connect attempts failed and were retried"
                + (f" ({', '.join(parts)})" if parts else ""))

    @property
    def broker_cores(self) -> float:
        return self.broker_cpu_s / self.seconds if self.seconds else 0.0

    @property
    def pub_rate(self) -> float:
        return (self.pub_in + self.pub_out) / self.seconds if self.seconds else 0.0

    @property
    def cpu_per_pub_us(self) -> float:
        total = self.pub_in + self.pub_out
        return self.broker_cpu_s / total * 1e6 if total else 0.0


@dataclass
class FleetRun:
    terminals: int
    workers: list[Proc]
    desks: list[Proc]
    broker: Any  # Broker, or bench/fleet_nats.NatsClusterBroker
    sysmon: Any = None  # SysMonitor, or bench/fleet_nats.VarzMonitor
    phases: list[Phase] = field(default_factory=list)
    details: list[str] = field(default_factory=list)

    def worker_stats(self, samples: bool = False) -> list[dict[str, Any]]:
        for w in self.workers:
            w.send({"op": "stats", "samples": samples})
        return [w.read(60) for w in self.workers]

    def desk_stats(self) -> list[dict[str, Any]]:
        for d in self.desks:
            d.send({"op": "stats"})
        return [d.read(60) for d in self.desks]

    def connected(self) -> int:
        return sum(s["connected"] for s in self.worker_stats())

    def desks_settled(self) -> float | None:
        """Seconds until the desk consumers' message count stops growing (what the broker
        queued for them during a storm is taken), or None after DESK_SETTLE_MAX_S: a
        steady-state phase measured on top of that backlog would time the backlog."""
        t0 = time.monotonic()
        last, same_since = -1, t0
        while time.monotonic() - t0 < DESK_SETTLE_MAX_S:
            count = sum(d["messages"] for d in self.desk_stats())
            now = time.monotonic()
            if count != last:
                last, same_since = count, now
            elif now - same_since >= 2.0:
                return same_since - t0
            time.sleep(0.25)
        return None

    def measure(self, name: str, seconds: float, until: Any = None,
                start: Any = None) -> Phase:
        """`start()`, then run for `seconds` (or until `until(stats)`, at most `seconds`)."""
        assert self.sysmon is not None
        time.sleep(1.2)  # a fresh $SYS sample at the start
        s0, b0, k0 = self.sysmon.snap(), self.broker.cpu_s(), listen_counters()
        w0, d0 = self.worker_stats(), self.desk_stats()
        t0 = time.monotonic()
        if start is not None:
            start()
        peak, last = 0.0, (t0, b0)
        while time.monotonic() - t0 < seconds:
            time.sleep(min(1.0, seconds - (time.monotonic() - t0)))
            now, cpu = time.monotonic(), self.broker.cpu_s()
            if now - last[0] >= 0.5:  # the broker's busiest second of the phase
                peak = max(peak, (cpu - last[1]) / (now - last[0]))
                last = (now, cpu)
            if until is not None and until(self.worker_stats()):
                break
        time.sleep(1.2)
        s1, b1, k1 = self.sysmon.snap(), self.broker.cpu_s(), listen_counters()
        w1, d1 = self.worker_stats(), self.desk_stats()
        dt = time.monotonic() - t0

        def d(key: str) -> float:
            return s1.get(key, 0.0) - s0.get(key, 0.0)

        def wsum(stats: list[dict[str, Any]], prefix: str) -> int:
            return sum(v for s in stats for k, v in s["stats"].items() if k.startswith(prefix))

        # PUBLISH counts from the clients: mosquitto 2.0.11's $SYS publish counters leave
        # out retained messages (state, health), its packet counters are complete.
        up = wsum(w1, "pub:") - wsum(w0, "pub:")
        acks = sum(x["acks"] for x in d1) - sum(x["acks"] for x in d0)
        down = wsum(w1, "in:") - wsum(w0, "in:")
        phase = Phase(
            name, dt, b1 - b0, up + acks, up + down,
            d("messages/received"), d("messages/sent"),
            sum(b["cpu_s"] for b in w1) - sum(a["cpu_s"] for a in w0),
            sum(b["cpu_s"] for b in d1) - sum(a["cpu_s"] for a in d0),
            sum(s["connected"] for s in w1),
        )
        phase.peak_cores = peak
        phase.fails, phase.why, phase.lost = (_grown(w0, w1, p) for p in ("fail:", "why:", "lost:"))
        phase.kernel = Counter({k: k1[k] - k0.get(k, 0) for k in k1})
        phase.slow_turns = _sum(w1, "slow_turns") - _sum(w0, "slow_turns")
        self.phases.append(phase)
        return phase


# mosquitto's lines about a connection it ended (connection_messages, on by default);
# "New connection"/"New client connected" and the client's own clean close are the norm.
_MOSQ_LINE = re.compile(r"^\d+: (.*)$")
_MOSQ_ENDED = re.compile(r"exceeded timeout|disconnect|error|closing old connection|refused",
                         re.IGNORECASE)
_MOSQ_VARYING = re.compile(r"\b[A-Za-z]*\d[\w.:-]*")
FINDINGS = 3


def group_by_shape(messages: Iterable[str], varying: re.Pattern[str]) -> list[tuple[str, int]]:
    """Log messages grouped by their shape (`varying` parts folded into `#`), most frequent
    first, each with one real example (mosquitto's here, nats-server's in fleet_nats)."""
    counts: Counter[str] = Counter()
    example: dict[str, str] = {}
    for message in messages:
        shape = varying.sub("#", message)
        counts[shape] += 1
        example.setdefault(shape, message[:240])
    return [(example[k], n) for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def mosquitto_disconnects(text: str) -> list[tuple[str, int]]:
    """mosquitto log lines about connections it ended, grouped by shape (ids, addresses
    and numbers folded), most frequent first, each with one real example line."""
    ended = (m.group(1) for m in map(_MOSQ_LINE.match, text.splitlines())
             if m is not None and _MOSQ_ENDED.search(m.group(1))
             and not m.group(1).startswith(("New connection", "New client connected")))
    return group_by_shape(ended, _MOSQ_VARYING)


def _sum(stats: list[dict[str, Any]], key: str) -> int:
    return sum(int(s["stats"].get(key, 0)) for s in stats)


def _grown(before: list[dict[str, Any]], after: list[dict[str, Any]],
           prefix: str) -> Counter[str]:
    """The workers' counters under `prefix` that grew in a phase, by how much (prefix cut)."""
    keys = {k for s in after for k in s["stats"] if k.startswith(prefix)}
    return Counter({k[len(prefix):]: n for k in keys
                    if (n := _sum(after, k) - _sum(before, k))})


LISTEN_COUNTERS = ("ListenOverflows", "ListenDrops")  # /proc/net/netstat TcpExt


def listen_counters() -> dict[str, int]:
    """The kernel's count of connections a full accept queue turned away (machine-wide:
    on a quiet bench machine, the broker's). Empty where /proc/net/netstat is missing."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return {}
    for head, values in zip(lines[::2], lines[1::2]):
        if head.startswith("TcpExt:"):
            row = dict(zip(head.split()[1:], values.split()[1:]))
            return {k: int(row[k]) for k in LISTEN_COUNTERS if k in row}
    return {}


def listen_backlog(port: int) -> str:
    """The accept queue's length of the socket listening on `port` (ss's Send-Q), or "?"."""
    ss = shutil.which("ss")
    if ss is None:
        return "?"
    out = subprocess.run([ss, "-ltnH", f"sport = :{port}"], capture_output=True, text=True,
                         check=False).stdout.split()
    return out[2] if len(out) >= 3 else "?"


def run_fleet(n: int, quick: bool, folder: Path, log: bool = True, tls: bool = False,
              make_broker: Callable[[Path, list[str], bool], Any] | None = None
              ) -> BenchResult:
    """`make_broker(folder, terminal ids, tls)`: another broker with Broker's interface
    (bench/fleet_nats.py: a 3-node NATS cluster) instead of one mosquitto."""
    _raise_nofile()
    n_workers = max(1, min(4, (n + 2499) // 2500))
    ids = _fleet_ids(n)
    broker: Any = (make_broker(folder, ids, tls) if make_broker is not None
                   else Broker(folder, tls=tls))
    broker.start()
    from sync.keys import key_id, public_b64

    dk = desk_key()
    common: dict[str, Any] = {
              "port": broker.port, "desk_port": broker.desk_port, "tls": broker.tls,
              "desk_kid": key_id("desk", dk.public_key()),
              "desk_pub": public_b64(dk.public_key())}
    stall_s = ack_stall_s()
    common["ack_stall_s"] = stall_s
    heard_s, beat_every = ack_stall_heard_s(), beat_s()
    common["ack_stall_heard_s"], common["beat_s"] = heard_s, beat_every
    common["connect_timeout_s"] = connect_timeout_s()
    wait_s = max(broker.wait_s, TLS_WAIT_S if tls else 0.0)
    binds = [f"127.0.0.{i}" for i in range(2, 10)]
    run = FleetRun(n, [], [], broker)
    say = print if log else (lambda *_a, **_k: None)
    t_setup = time.monotonic()
    try:
        for i in range(DESKS):
            cfg = {**common, "terminals": n, "db": str(folder / "desk.sqlite"),
                   "client_id": f"desk-{i}", **broker.desk_extra(i, DESKS)}
            run.desks.append(Proc([PYTHON, "-m", "bench.fleet", "desk", json.dumps(cfg)],
                                  f"desk-{i}"))
        for d in run.desks:
            if not d.read(120).get("ready"):
                raise BenchError("a desk consumer did not connect")
        chunk = (n + n_workers - 1) // n_workers
        for i in range(n_workers):
            cfg = {**common, "ids": ids[i * chunk:(i + 1) * chunk], "seed": 1000 + i,
                   "binds": binds, **broker.worker_extra()}
            run.workers.append(Proc([PYTHON, "-m", "bench.fleet", "worker", json.dumps(cfg)],
                                    f"worker-{i}"))
        for w in run.workers:  # every worker built its terminals (keys, certificates)
            w.send({"op": "stats", "samples": False})
        for w in run.workers:
            w.read(600 if tls else 60)
        run.sysmon = broker.monitor()
        setup_s = time.monotonic() - t_setup
        say(f"  fleet: {n} terminals in {n_workers} processes, {DESKS} desk consumers "
            f"(setup {setup_s:.0f} s); broker pid {broker.proc.pid if broker.proc else '?'}, "
            f"open files {broker.nofile()}", flush=True)

        # 1. connect storm
        jitter = 5.0 if quick else 20.0
        rss0 = broker.rss_kib()

        def to_all(obj: dict[str, Any]) -> None:
            for w in run.workers:
                w.send(obj)

        storm = run.measure(
            "connect storm", jitter + wait_s,
            until=lambda st: sum(s["connected"] for s in st) >= n,
            start=lambda: to_all({"op": "connect", "jitter_s": jitter}))
        st = run.worker_stats(samples=True)
        connack = [x for s in st for x in s["connack_lat"]]
        storm.extra = {"connack_p50": percentile(connack, 50) if connack else 0,
                       "connack_p99": percentile(connack, 99) if connack else 0,
                       "slot_wait_max_s": max(s.get("slot_wait_max_s", 0.0) for s in st),
                       "turn_max_s": max(s.get("turn_max_s", 0.0) for s in st),
                       "backlog": listen_backlog(broker.port),
                       "rss_kib": broker.rss_kib() - rss0, "jitter_s": jitter,
                       "rss_abs_kib": broker.rss_kib()}
        say(f"  connect storm: {storm.connected_end}/{n} connected in {storm.seconds:.1f} s "
            f"(jitter {jitter:.0f} s); broker {storm.broker_cores * 100:.0f}% of a core",
            flush=True)
        if storm.connected_end < n:
            run.details.append(f"only {storm.connected_end} of {n} terminals connected")
        settled = run.desks_settled()
        run.details.append(
            f"after the connect storm the desk consumers took the terminals' state and health "
            f"messages still queued for them; they were through {settled:.1f} s after the "
            "storm's end (messages handled unchanged for 2 s), and the field-rate phase "
            "started then" if settled is not None else
            f"after the connect storm the desk consumers were still taking queued messages "
            f"{DESK_SETTLE_MAX_S:.0f} s later; the field-rate phase started anyway")

        # 2. field rates, 3. stress
        for name, factor, seconds in (("field rates", 1.0, 20 if quick else 60),
                                      ("stress x10", STRESS, 15 if quick else 30)):
            rates = {"op": "rates", "health_s": HEALTH_S / factor,
                     "pay_per_h": PAYMENTS_PER_HOUR * factor}
            ph = run.measure(name, seconds,
                             start=partial(to_all, rates))
            st = run.worker_stats(samples=True)
            acks = [x for s in st for x in s["ack_lat"]]
            ph.extra = {"ack_p50": percentile(acks, 50) if acks else 0,
                        "ack_p99": percentile(acks, 99) if acks else 0,
                        "factor": factor}
            say(f"  {name}: {ph.pub_in / ph.seconds:.0f} publishes/s in, "
                f"{ph.pub_out / ph.seconds:.0f}/s out; broker {ph.broker_cores * 100:.0f}% "
                f"of a core; payment -> desk ack p50 {ph.extra['ack_p50'] * 1000:.0f} ms",
                flush=True)
            for w in run.workers:
                w.send({"op": "quiet"})

        # 4. broker restart: SIGKILL, down 3 s, start; the fleet reconnects with jitter
        for w in run.workers:
            w.send({"op": "rates", "health_s": HEALTH_S, "pay_per_h": PAYMENTS_PER_HOUR})
        time.sleep(2)
        census = getattr(broker, "consumer_census", None)  # a NATS cluster's consumers
        census_before = census() if census is not None else None
        broker.kill()
        run.sysmon.stop()
        t_kill = time.monotonic()
        time.sleep(3)
        broker.start()
        run.sysmon = broker.monitor()
        # a cluster's nodes take MQTT before they report ready: count from their spawn
        t_up = getattr(broker, "spawned_at", None) or time.monotonic()
        restart = run.measure("broker restart", wait_s + 60,
                              until=lambda st: sum(s["connected"] for s in st) >= n)
        st = run.worker_stats(samples=True)
        # reconnects since the kill only (a stress phase has its own), and a time only
        # when the whole fleet is back: a run where none came back once printed "-51.8 s"
        done = [x for s in st for x in s["reconnect_done"] if x >= t_kill]
        all_back = restart.connected_end >= n and bool(done)
        lost_by_restart_end = _sum(st, "disconnects")
        restart.extra = {"all_back_s": (max(done) - t_up) if all_back else None,
                         "down_s": t_up - t_kill,
                         "connect_timeout_s": common["connect_timeout_s"],
                         "slot_wait_max_s": max(s.get("slot_wait_max_s", 0.0) for s in st),
                         "turn_max_s": max(s.get("turn_max_s", 0.0) for s in st),
                         "backlog": listen_backlog(broker.port)}
        say(f"  broker restart: {restart.connected_end}/{n} back "
            + (f"{restart.extra['all_back_s']:.1f} s after the broker was up" if all_back
               else f"{time.monotonic() - t_up:.0f} s after the broker was up"), flush=True)

        # end: no new payments; everything sent must be acknowledged, each once at the desk
        for w in run.workers:
            w.send({"op": "quiet"})
        # long enough for one round of the ack watch: a terminal whose acks stalled
        # resets at most stall·(1 + JITTER) after its last reconnect, then settles
        deadline = time.monotonic() + max(120.0, wait_s) + (
            stall_s * (1 + ACK_JITTER) + ACK_SETTLE_S if stall_s > 0 else 0.0)
        probe = getattr(broker, "probe_terminals", None)  # a NATS cluster's view of one
        while time.monotonic() < deadline:
            st = run.worker_stats()
            if sum(s["pending"] for s in st) == 0:
                break
            stalled = [tid for s in st for tid in s.get("stalled", [])]
            if probe is not None and stalled:
                others = random.Random(7).sample(
                    sorted(set(ids) - set(stalled)), min(len(stalled), n - len(stalled)))
                probes = probe(stalled + others)  # one read of the nodes' /jsz for all
                run.details.extend(stall_probe_lines(
                    probes[:len(stalled)], probes[len(stalled):], time.monotonic() - t_up))
                probe = None  # once a run: the stall sets in at the reconnect
            time.sleep(1)
        st = run.worker_stats()
        # a queue that never emptied has no drain time; printing the deadline as one would lie
        restart.extra["drained_s"] = (time.monotonic() - t_up
                                      if sum(s["pending"] for s in st) == 0 else None)
        desk_link = run.desk_stats()
        back_at = [d["connected_at"] for d in desk_link]
        restart.extra["desks_back_s"] = (
            max(back_at) - t_up
            if all(d["connected"] for d in desk_link) and min(back_at) >= t_up else None)
        if restart.connected_end < n and hasattr(broker, "log_findings"):
            run.details.extend(broker.log_findings())
        if hasattr(broker, "disconnect_findings"):
            run.details.extend(broker.disconnect_findings())
        census_after = census() if census is not None else None
        for when, found in (("before the kill", census_before),
                            ("after the restart's drain", census_after)):
            if found is not None:
                run.details.append(found.line(when))
        prune = getattr(broker, "prune_leftovers", None)  # the operator's remedy, measured
        if prune is not None and census is not None and census_after is not None \
                and census_after.extra:
            run.details.extend(prune())
            found = census()
            if found is not None:
                run.details.append(found.line("after prune-consumers"))
        desks = run.desk_stats()
        made = _sum(st, "payments")
        pending = sum(s["pending"] for s in st)
        import sqlite3

        db = sqlite3.connect(folder / "desk.sqlite", timeout=30)
        try:
            at_desk, distinct = db.execute(
                "SELECT count(*), count(DISTINCT terminal_id || payment_id) FROM payments"
            ).fetchone()
        finally:
            db.close()
        run.details.append(
            f"payments made {made}, at the desk {at_desk} ({distinct} distinct), not "
            f"acknowledged at the end {pending}; desk deliveries {sum(d['records'] for d in desks)}"
            f", duplicates de-duplicated {sum(d['duplicates'] for d in desks)}, signed acks "
            f"{sum(d['acks'] for d in desks)}, rejected {sum(d['rejected'] for d in desks)}; "
            f"acks seen twice by terminals {_sum(st, 'ack_repeat')}, acks refused "
            f"{_sum(st, 'ack_rejected')}; subscriptions refused (SUBACK failure: the terminal "
            f"reconnects and subscribes again, as the agent) {_sum(st, 'subscribe_refused')}; "
            + (f"ack watch ([mqtt] ack_stall_s {stall_s:.0f} s): {_sum(st, 'session_resets')} "
               f"session resets, {_sum(st, 'clean_connects')} clean sessions accepted, "
               f"{_sum(st, 'fresh_sessions')} connects that found no session kept (a reset's own "
               f"included; the watch's wait starts afresh on each)"
               if stall_s > 0 else "ack watch off (ack_stall_s 0)")
            + (f"; desk beat every {beat_every:.0f} s, ack_stall_heard_s {heard_s:.0f} s: "
               f"{_sum(st, 'beats_heard')} beats heard by terminals they cover ("
               f"{_sum(st, 'in:beat')} delivered, {_sum(st, 'beat_rejected')} refused), "
               f"beat subscription refused {_sum(st, 'beat_refused')} times"
               if beat_every > 0 and heard_s > 0 else
               f"; desk beat {'off' if beat_every <= 0 else 'unheard'} (beat {beat_every:.0f} "
               f"s, ack_stall_heard_s {heard_s:.0f} s)")
            + f"; at the end {sum(s['holding'] for s in st)} terminals held unacknowledged "
            f"payments, {sum(s['watch_waiting'] for s in st)} of them with payments PUBACKed "
            f"and no ack since (connected time, kept sessions counted on; longest "
            f"{max((s['watch_waited_max_s'] for s in st), default=0.0):.0f} s); connections "
            f"lost after the restart phase {_sum(st, 'disconnects') - lost_by_restart_end}")
        result = _result(run, n, quick, made, at_desk, distinct, pending, broker, tls)
    finally:
        if run.sysmon is not None:
            run.sysmon.stop()
        for p in run.workers + run.desks:
            p.stop()
        broker.stop()
    return result


def stall_probe_lines(stalled: list[Any], others: list[Any], at_s: float) -> list[str]:
    """What the broker held for the terminals waiting for acks beside as many that were
    not (sync.nats_probe.TerminalProbe): the ack subscription's verdicts counted, and the
    first stalled terminal in full."""
    def tally(probes: list[Any]) -> str:
        counts = Counter(p.verdict("ack").value for p in probes)
        return "; ".join(f"{count} {verdict}" for verdict, count in counts.most_common()) or "none"

    lines = [f"ack stall probe {at_s:.0f} s after the broker was up: {len(stalled)} "
             f"terminals with payments waiting over {STALL_PROBE_S:.0f} s for an ack "
             f"(at most {PROBE_MAX} probed); their ack subscriptions: {tally(stalled)}. "
             f"{len(others)} other terminals: {tally(others)}"]
    if stalled:
        lines.append("first of them: " + " | ".join(stalled[0].lines()))
    return lines


def _result(run: FleetRun, n: int, quick: bool, made: int, at_desk: int, distinct: int,
            pending: int, broker: Any, tls: bool = False) -> BenchResult:
    storm, field_, stress, restart = run.phases[:4]
    ok_fleet = storm.connected_end >= n and restart.connected_end >= n
    exact = made == at_desk == distinct and pending == 0
    link = broker.link(tls)
    consumers = ("partitions 0/2 and 1/2 (MQTT 3.1.1: no $share)"
                 if getattr(broker, "ports", None) else "on $share/desk/...")
    res = BenchResult(
        broker.tls_key if tls else broker.key, broker.tls_title if tls else broker.title,
        params=(f"{n} terminals in {len(run.workers)} processes, {len(run.desks)} desk "
                f"consumers {consumers}, loopback, {link}; field rates: health every "
                f"{HEALTH_S:.0f} s, {PAYMENTS_PER_HOUR:.0f} payments/terminal/h; "
                f"stress x{STRESS:.0f}"),
    )
    served = min(storm.connected_end, restart.connected_end)
    on_cluster = bool(getattr(broker, "ports", None))  # the target is one mosquitto's
    res.figures.append(Figure(
        "terminals connected and served at once", f"{served}",
        f"target {TARGET_TERMINALS}; aim {AIM_TERMINALS}",
        fmt_pct(served / TARGET_TERMINALS),
        f"≥ {TARGET_TERMINALS}" if not on_cluster else "none (the target is one mosquitto's)",
        verdict(ok_fleet and n >= TARGET_TERMINALS) if not quick and not on_cluster
        else verdict(None)))
    res.figures.append(Figure(
        "payments at the desk exactly once, all acknowledged", f"{at_desk} of {made}",
        f"made {made}", fmt_pct(at_desk / made if made else 1), "all, once", verdict(exact)))
    cs = storm.extra
    res.figures.append(Figure(
        "connect storm: all connected / CONNACK p50 / p99",
        f"{storm.seconds:.1f} s / {cs['connack_p50'] * 1000:.0f} ms / "
        f"{cs['connack_p99'] * 1000:.0f} ms",
        f"connects spread over {cs['jitter_s']:.0f} s", "—", "none", verdict(None)))
    res.figures.append(Figure(
        "broker memory after the connect storm", f"{storm.extra['rss_abs_kib'] / 1024:.0f} MiB",
        f"{storm.extra['rss_kib'] / max(1, storm.connected_end):.1f} KiB per connection",
        "—", "none (measured)", verdict(None)))
    for ph in (storm, field_, stress):
        res.figures.append(Figure(
            f"broker CPU, {ph.name}", f"{ph.broker_cores * 100:.0f}% of a core",
            f"{_n(ph.pub_rate)} publishes/s through it",
            f"{ph.cpu_per_pub_us:.0f} µs/publish" if ph.pub_in + ph.pub_out else "—",
            "none (measured)", verdict(None)))
    res.figures.append(Figure(
        "payment -> signed desk ack (p50 / p99), field rates",
        f"{field_.extra['ack_p50'] * 1000:.0f} ms / {field_.extra['ack_p99'] * 1000:.0f} ms",
        f"stress: {stress.extra['ack_p50'] * 1000:.0f} ms / "
        f"{stress.extra['ack_p99'] * 1000:.0f} ms",
        "—", "none", verdict(None)))
    back = restart.extra["all_back_s"]
    drained = restart.extra.get("drained_s")
    desks = restart.extra.get("desks_back_s")
    res.figures.append(Figure(
        "broker SIGKILL + restart: whole fleet back / every queue drained / peak CPU",
        (f"{back:.1f} s" if back is not None
         else f"{restart.connected_end} of {n} back at the end")
        + (f" / {drained:.1f} s after it was up" if drained is not None else " / not drained")
        + f" / peak {restart.peak_cores * 100:.0f}% of a core",
        f"down {restart.extra['down_s']:.1f} s; backoff 1-60 s full jitter; terminals' "
        f"connect_timeout_s {restart.extra['connect_timeout_s']:g}, keepalive_s "
        f"{keepalive_for(restart.extra['connect_timeout_s'])}; desk workers "
        + (f"back {desks:.1f} s" if desks is not None else "not all back"), "—", "none",
        verdict(None)))

    # -- extrapolation -------------------------------------------------------------------
    c_pub = stress.broker_cpu_s / max(1.0, stress.pub_in + stress.pub_out)
    per_term_field = (field_.pub_in + field_.pub_out) / field_.seconds / n
    idle = field_.broker_cores - c_pub * (field_.pub_in + field_.pub_out) / field_.seconds
    per_term_idle = max(0.0, idle) / n
    full_pubs = per_term_field * AIM_TERMINALS
    full_cores = c_pub * full_pubs + per_term_idle * AIM_TERMINALS
    capacity = 1.0 / c_pub if c_pub else float("inf")
    per_term_cost = c_pub * per_term_field + per_term_idle
    per_core_terminals = 1.0 / per_term_cost if per_term_cost else float("inf")
    cluster = bool(getattr(broker, "ports", None))
    what = "the 3 nodes together" if cluster else "this broker"
    res.figures.append(Figure(
        f"extrapolated: {AIM_TERMINALS} terminals at field rates on {what}",
        f"{full_cores * 100:.0f}% of a core",
        f"{_n(full_pubs)} publishes/s; one core ≈ {_n(capacity)} publishes/s",
        fmt_pct(full_cores), "< 100% of one core" if not cluster else "none (cluster)",
        verdict(full_cores < 1.0) if not cluster else verdict(None)))
    res.figures.append(Figure(
        f"terminals one {'NATS cluster' if cluster else 'mosquitto'} core could carry at "
        "field rates (CPU only)",
        f"≈ {_n(per_core_terminals)}", f"{per_term_cost * 1e6:.1f} µ-core per terminal",
        "—", "none (arithmetic on the figures above)", verdict(None)))
    rss_per_conn = storm.extra["rss_kib"] / max(1, storm.connected_end)
    ceiling_note = ("summed over the cluster's three processes, which share the work"
                    if cluster else "mosquitto is single-threaded: one core is its ceiling")
    tls_note = ("over TLS (the handshakes are in the connect storm's and the restart's CPU, "
                "the per-byte crypto in every phase)" if tls else
                "no TLS (TLS adds the handshake at every (re)connect and ~symmetric crypto "
                "per byte: not measured here; `fleet_tls` measures it)")
    if tls:
        per_connect_ms = storm.broker_cpu_s / max(1, storm.connected_end) * 1000
        res.figures.append(Figure(
            "broker CPU per TLS connect in the storm (handshake, certificate check, CONNECT, "
            "subscriptions, first state + health)",
            f"{per_connect_ms:.2f} ms", f"{_n(storm.connected_end)} connects in the storm",
            "—", "none (measured)", verdict(None)))
        res.details.append(
            f"TLS pacing: each of the {len(run.workers)} simulator processes does its "
            f"terminals' TCP connects and TLS handshakes non-blocking, up to "
            f"{HANDSHAKES_IN_FLIGHT} in flight at once (since 2026-12-05; before, paho's "
            "connect() did one at a time and the times were upper bounds; the cap, since "
            "2026-12-05 evening, keeps thousands of handshakes from crawling on one "
            "process's CPU and timing out by the simulator's fault); the client side's key "
            "exchange and certificate checks still take this machine's CPU beside the "
            "broker's (simulator share per phase below). To size a broker, use its CPU per "
            "TLS connect (above).")
    res.details += [
        f"phase {p.name}: {p.seconds:.1f} s; broker {p.broker_cpu_s:.1f} CPU s "
        f"({p.broker_cores * 100:.0f}% of a core); PUBLISH in {_n(p.pub_in / p.seconds)}/s, "
        f"out {_n(p.pub_out / p.seconds)}/s; all packets in {_n(p.pkt_in / p.seconds)}/s, out "
        f"{_n(p.pkt_out / p.seconds)}/s; simulator processes "
        f"{p.fleet_cpu_s / p.seconds * 100:.0f}% of a core, desks "
        f"{p.desk_cpu_s / p.seconds * 100:.0f}%; connected at the end {_n(p.connected_end)}"
        + (f"; connections lost {sum(p.lost.values())} ("
           + ", ".join(f"{k} {v}" for k, v in p.lost.most_common()) + ")" if p.lost else "")
        for p in run.phases
    ]
    # Whether a restart result can mean anything: the reconnect storm comes on top of
    # what field rates already take of this machine (the simulator shares its cores).
    cores = os.cpu_count() or 1
    field_busy = (field_.broker_cpu_s + field_.fleet_cpu_s + field_.desk_cpu_s) / field_.seconds
    res.details.append(
        f"headroom at field rates: broker, simulator processes and desks together "
        f"{field_busy * 100:.0f}% of a core, {field_busy / cores * 100:.0f}% of this "
        f"machine's {cores} cores; a broker restart's reconnect storm comes on top of it "
        f"(the connect storm took the broker {storm.broker_cores * 100:.0f}% of a core), "
        f"so a restart figure from a machine near saturation describes the machine, not "
        f"the broker.")
    res.details += [_storm_text(p, len(run.workers), tls) for p in (storm, restart)]
    res.details += run.details
    res.details += [d for d in [
        f"broker memory: {storm.extra['rss_kib'] / 1024:.0f} MiB more after the storm "
        f"(≈ {rss_per_conn:.1f} KiB per connection incl. its retained state+health); "
        f"open-files limit {broker.nofile()}.",
        f"extrapolation (arithmetic, assumptions stated): broker CPU per PUBLISH in or out, "
        f"measured under stress = {c_pub * 1e6:.1f} µs; field-rate traffic per terminal = "
        f"{per_term_field:.3f} PUBLISH/s through the broker (health 1/{HEALTH_S:.0f} s + "
        f"{PAYMENTS_PER_HOUR:.0f} payments/h, each delivered to a desk, + the desk's acks); the "
        f"rest of the broker's field-rate CPU (keep-alives, PUBACKs, housekeeping) is "
        f"{per_term_idle * 1e6:.1f} µ-core per terminal; so {AIM_TERMINALS} terminals ≈ "
        f"{_n(full_pubs)} PUBLISH/s ≈ {full_cores * 100:.0f}% of one core. Assumes cost "
        f"linear in messages and connections ({ceiling_note}), {tls_note}, payloads of the "
        f"sizes here (~1 KB health, ~1 KB "
        f"signed payment); one core at that cost per terminal would carry "
        f"≈ {_n(per_core_terminals)} terminals - CPU only: memory (≈ {rss_per_conn:.1f} KiB "
        f"per connection here), open files (one per connection) and TLS come first.",
        "" if cluster else
        f"cluster (not run here, arithmetic only): terminals spread evenly over k nodes, "
        f"desk consumers on $share/desk/... on every node; a node then carries 1/k of the "
        f"connections and publishes plus the forwarding of messages whose consumer sits on "
        f"another node ((k-1)/k of them, counted as one more PUBLISH each). With this "
        f"per-message cost a node's load at {AIM_TERMINALS} terminals is ≈ "
        f"{full_cores * 100:.0f}% × (1 + (k-1)/k) / k of a core: k=3 → "
        f"{full_cores * 100 * (1 + 2 / 3) / 3:.0f}%, which leaves room for a node to fail. "
        f"Per-message cost in EMQX/VerneMQ/HiveMQ differs from mosquitto's (not measured): "
        f"scale by their published ratios (docs/protocols/mqtt-contract.md) before trusting "
        f"these numbers.",
    ] if d]
    return res


def _storm_text(p: Phase, workers: int, tls: bool) -> str:
    """Why connects were retried in a storm: the broker's accept queue (the kernel's
    counters), timeouts, refusals; and whether the simulator itself was the bottleneck."""
    k = p.kernel
    kernel = (f"the kernel dropped {k.get('ListenOverflows', 0)} connection packets (SYN or "
              "handshake ACK) at a full accept queue (TcpExt ListenOverflows, machine-wide)"
              if k else "the kernel's listen counters were not readable")
    backlog = p.extra.get("backlog")
    since = " (counted from the broker's start)" if p.name == "broker restart" else ""
    text = (f"{p.name}{since}: {p.fails_text()}; {kernel}"
            + (f"; the broker listens with an accept queue of {backlog}" if backlog else "")
            + f"; simulator loop turns over {SLOW_TURN_S:g} s: {p.slow_turns} (longest "
            f"{p.extra.get('turn_max_s', 0.0):.2f} s)")
    if tls:
        text += (f"; at most {HANDSHAKES_IN_FLIGHT} TLS handshakes in flight per simulator "
                 f"process ({workers} processes), longest wait for a slot "
                 f"{p.extra.get('slot_wait_max_s', 0.0):.1f} s (in the time to all "
                 "connected, not in CONNACK latency)")
    return text + "."


def ack_stall_s() -> float:
    """The simulated terminals' [mqtt] ack_stall_s: the agent's default, or the env's."""
    return _env_seconds(ENV_ACK_STALL, MqttConfig.ack_stall_s, _stall_problem("ack_stall_s"))


def ack_stall_heard_s() -> float:
    """The simulated terminals' [mqtt] ack_stall_heard_s: the agent's default, or the env's."""
    return _env_seconds(ENV_ACK_STALL_HEARD, MqttConfig.ack_stall_heard_s,
                        _stall_problem("ack_stall_heard_s"))


def beat_s() -> float:
    """The desks' beat period: kiosk desk serve's default, or the env's."""
    return _env_seconds(ENV_BEAT, desk_beat.DEFAULT_EVERY_S, desk_beat.every_problem)


def _stall_problem(key: str) -> Callable[[float], str]:
    """As [mqtt] takes a watch's wait: 0 (off) or longer than the resend wait."""
    return lambda value: ("" if value == 0 or value > RESEND_S else
                          f"0 (off) or above {RESEND_S:g} s, as [mqtt] {key}")


def _env_seconds(name: str, default: float, problem: Callable[[float], str]) -> float:
    """The environment's number of seconds, refused with `problem`'s words; else the default."""
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BenchError(f"{name}={raw!r}: seconds, a number (0 = off)") from None
    why = problem(value)
    if why:
        raise BenchError(f"{name}={raw!r}: {why}")
    return value


def connect_timeout_s() -> float:
    """The simulated terminals' [mqtt] connect_timeout_s: the agent's default, or the env's."""
    raw = os.environ.get(ENV_CONNECT_TIMEOUT)
    if not raw:
        return CONNECT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        raise BenchError(f"{ENV_CONNECT_TIMEOUT}={raw!r}: seconds, a number") from None
    if value <= 0:
        raise BenchError(f"{ENV_CONNECT_TIMEOUT}={raw!r}: a positive number of seconds, "
                         "as [mqtt] connect_timeout_s")
    return value


def fleet_size(quick: bool) -> tuple[int, str]:
    """How many terminals: the environment's choice, or the aim (20,000) if one process
    may hold that many open files here (mosquitto needs one per connection)."""
    if os.environ.get(ENV_TERMINALS):
        return int(os.environ[ENV_TERMINALS]), f"{ENV_TERMINALS} set"
    if quick:
        return QUICK_TERMINALS, "quick run"
    limit = _raise_nofile()
    n = min(FULL_TERMINALS, limit - FD_MARGIN)
    if n < FULL_TERMINALS:
        return n, (f"{n} terminals, not {FULL_TERMINALS}: a process may hold at most {limit} "
                   f"open files on this machine (hard `ulimit -n`; not raisable here) and "
                   f"mosquitto needs one per connection")
    return n, ""


def run_tls(ctx: Context) -> BenchResult:
    """The same fleet over TLS (`make bench`; `python -m bench.fleet --tls`)."""
    n, why = fleet_size(ctx.quick)
    with scratch_dir(ctx, "fleet_tls") as folder:
        result = run_fleet(n, ctx.quick, folder, tls=True)
    if why:
        result.details.append(f"fleet size: {why}.")
    return result


def run(ctx: Context) -> BenchResult:
    n, why = fleet_size(ctx.quick)
    with scratch_dir(ctx, "fleet") as folder:
        result = run_fleet(n, ctx.quick, folder)
    if why:
        result.details.append(f"fleet size: {why}.")
    return result


def _main(argv: list[str]) -> int:
    if argv[:1] == ["worker"]:
        _raise_nofile()
        Worker(json.loads(argv[1])).run()
        return 0
    if argv[:1] == ["desk"]:
        desk_main(json.loads(argv[1]))
        return 0
    ap = argparse.ArgumentParser(prog="python -m bench.fleet",
                                 description="the fleet benchmark alone, printed, not written")
    ap.add_argument("--terminals", type=int, default=0, help="default: as many as fit")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tls", action="store_true", help="over TLS (the fleet_tls figure)")
    args = ap.parse_args(argv)
    from bench.common import pick_scratch_base
    from bench.report import print_result

    ctx = Context(quick=args.quick, scratch_base=pick_scratch_base())
    if args.terminals:
        os.environ[ENV_TERMINALS] = str(args.terminals)
    print_result(run_tls(ctx) if args.tls else run(ctx))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

