"""A real NATS cluster with JetStream and MQTT for the fleet tests.

Debian's `nats-server` (2.9.x): MQTT 3.1.1 only (a v5 CONNECT is refused), QoS 0 and 1,
no `$share` shared subscriptions; MQTT sessions, retained messages and QoS 1 messages
live in JetStream, which is why every node runs JetStream and the MQTT streams are
replicated (`stream_replicas`). Each node has its own free loopback ports (client,
cluster route, MQTT), its JetStream store in the test's temporary folder and its own
`server_name`; nodes are started, SIGKILLed and restarted by pid. Each node's
configuration is the shipped deploy/nats/node.conf rendered by sync/nats_kit.py (a node
without routes drops its cluster section; a node without `conf_dir` its TLS section).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import ssl
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from sync.broker_kit import Kit
from sync.connection import Endpoint
from sync.nats_admin import JS_API, NatsAdmin
from sync.nats_census import MQTT_MSGS_STREAM
from sync.nats_kit import (
    FLEET_MAX_CONSUMERS,
    USERS,
    NodeSpec,
    needs_consumer_limit,
    parse_version,
    render_node,
    render_users,
    takes_api_timeout,
    tls_files,
)
from tests.sync.broker import free_port, spawn_listening, stop_process

READY_TIMEOUT_S = 20.0
CLUSTER_NAME = "kiosk-test"


# Another nats-server than Debian's for the tests and benchmarks (docs/fleet.md "Upstream
# NATS"): `make nats-upstream` puts upstream 2.15.1 in build/nats-upstream/bin/.
ENV_NATS_SERVER = "KIOSK_NATS_SERVER"


def nats_server_path() -> str | None:
    """KIOSK_NATS_SERVER if set (it must then be an executable), else Debian's."""
    chosen = os.environ.get(ENV_NATS_SERVER)
    if chosen:
        if not os.access(chosen, os.X_OK):
            raise FileNotFoundError(f"{ENV_NATS_SERVER}={chosen}: not an executable file")
        return chosen
    for candidate in (shutil.which("nats-server"), "/usr/sbin/nats-server",
                      "/usr/bin/nats-server"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@functools.cache
def nats_server_version(exe: str) -> str:
    """"2.9.10" from `nats-server --version` ("nats-server: v2.9.10")."""
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10,
                         check=True).stdout
    return ".".join(map(str, parse_version(out)))


def max_consumers_for(exe: str) -> int | None:
    """node.conf's consumer limit for this binary: the fleet's on 2.15 and later (which
    cap a stream at 1,000 consumers by default), none before (they refuse the line)."""
    return FLEET_MAX_CONSUMERS if needs_consumer_limit(nats_server_version(exe)) else None


def api_timeout_for(exe: str, seconds: int | None) -> int | None:
    """node.conf's MQTT js_api_timeout for this binary: `seconds` on 2.11.3 and later,
    none before (2.9 refuses the line)."""
    return seconds if seconds and takes_api_timeout(nats_server_version(exe)) else None


@dataclass
class NatsNode:
    name: str
    workdir: Path
    client_port: int = field(default_factory=free_port)
    cluster_port: int = field(default_factory=free_port)
    mqtt_port: int = field(default_factory=free_port)
    monitor_port: int = field(default_factory=free_port)
    routes: list[int] = field(default_factory=list)  # the other nodes' cluster ports
    replicas: int = 1
    consumer_replicas: int | None = None  # None: as many as the streams (node.conf)
    conf_dir: Path | None = None  # TLS files and users.conf (with_tls); None: plain MQTT
    probe_tls: tuple[Path, Path, Path] | None = None  # CA, cert, key mqtt_ready connects with
    proc: subprocess.Popen | None = None
    starts: int = 0

    @property
    def conf(self) -> Path:
        """Beside users.conf when TLS is on (NATS includes relative to the file)."""
        return (self.conf_dir or self.workdir) / f"{self.name}.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def spec(self) -> NodeSpec:
        return NodeSpec(
            self.name, f"127.0.0.1:{self.client_port}", f"127.0.0.1:{self.monitor_port}",
            self.workdir / f"{self.name}-js", f"127.0.0.1:{self.mqtt_port}",
            replicas=self.replicas, consumer_replicas=self.consumer_replicas,
            cluster_name=CLUSTER_NAME,
            cluster_listen=f"127.0.0.1:{self.cluster_port}",
            routes=tuple(f"127.0.0.1:{p}" for p in self.routes), conf_dir=self.conf_dir,
            max_consumers=max_consumers_for(self._exe()))

    @staticmethod
    def _exe() -> str:
        exe = nats_server_path()
        if exe is None:
            pytest.fail("nats-server is not installed: run scripts/system-deps.sh")
        return exe

    def write_conf(self) -> None:
        """The shipped deploy/nats/node.conf with this node's ports and folders."""
        self.conf.write_text(render_node(self.spec()), encoding="utf-8")

    def start(self) -> NatsNode:
        exe = self._exe()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.write_conf()
        self.starts += 1
        self.proc = spawn_listening([exe, "-c", str(self.conf)], self.log_path,
                                    self.mqtt_port, f"nats-server {self.name}", self.log,
                                    ready_s=READY_TIMEOUT_S, append=True)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.proc, sig, wait_s=15)
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self, timeout: float = READY_TIMEOUT_S) -> None:
        """SIGTERM, start again, and wait until it accepts MQTT (its MQTT layer then has
        made whatever MQTT stream was missing: the first CONNECT creates them)."""
        self.stop()
        self.start()
        self.mqtt_ready(timeout)

    @property
    def client_address(self) -> str:
        """host:port of the NATS client port (sync.nats_admin, nats_kit reset-sessions)."""
        return f"127.0.0.1:{self.client_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def endpoint(self) -> Endpoint:
        return Endpoint("127.0.0.1", self.mqtt_port)

    def mqtt_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Wait until an MQTT 3.1.1 CONNECT is accepted: JetStream has a meta leader and
        the MQTT streams exist (before that the node closes the connection)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if mqtt_connack(self.mqtt_port, tls=self.probe_tls) == 0:
                return
            time.sleep(0.2)
        raise RuntimeError(f"nats-server {self.name} never accepted MQTT:\n{self.log()}")


def mqtt_connack(port: int, protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv311,
                 wait_s: float = 8.0,
                 tls: tuple[Path, Path, Path] | None = None) -> int | None:
    """The CONNACK reason code value a fresh clean session gets (None: no CONNACK).
    `tls`: (CA, certificate, key) of the client."""
    got: list[int] = []
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{uuid.uuid4().hex[:8]}",
                    protocol=protocol,  # v5 has no clean session flag (clean start instead)
                    clean_session=True if protocol == mqtt.MQTTv311 else None)
    if tls is not None:
        c.tls_set(ca_certs=str(tls[0]), certfile=str(tls[1]), keyfile=str(tls[2]),
                  cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    c.on_connect = lambda _c, _u, _f, rc, _p: got.append(rc.value)
    try:
        c.connect("127.0.0.1", port, keepalive=10)
        deadline = time.monotonic() + wait_s
        while not got and time.monotonic() < deadline:
            if c.loop(0.1) != mqtt.MQTT_ERR_SUCCESS:
                break
        if got and got[0] == 0:
            c.disconnect()
            c.loop(0.1)
    except (OSError, ssl.SSLError):
        return None
    finally:
        sock = c.socket()
        if sock is not None:
            sock.close()
    return got[0] if got else None


@dataclass
class NatsCluster:
    """`size` nodes routed to each other; MQTT streams replicated on every node (R3),
    their consumers too unless `consumer_replicas` is 1."""

    workdir: Path
    size: int = 3
    consumer_replicas: int | None = None
    nodes: list[NatsNode] = field(default_factory=list)

    conf_dir: Path | None = None  # set by with_tls(): every node then requires certificates

    def __post_init__(self) -> None:
        if not self.nodes:
            self.nodes = [NatsNode(f"n{i + 1}", self.workdir) for i in range(self.size)]
            for n in self.nodes:
                n.routes = [o.cluster_port for o in self.nodes if o is not n]
                n.replicas = min(3, self.size)
                n.consumer_replicas = self.consumer_replicas

    def with_tls(self, kit: Kit, terminal_ids: Iterable[str],
                 probe: tuple[Path, Path, Path],
                 operator_password: str | None = None) -> NatsCluster:
        """TLS with client certificates on every node's MQTT port: the kit's server
        certificate, both CAs, and users.conf for `terminal_ids` (plus the desk, plus the
        kiosk.operator user of the client port with `operator_password`).
        `probe`: the (CA, certificate, key) the readiness probe connects with."""
        self.conf_dir = self.workdir / "conf"
        tls_files(kit, self.conf_dir)
        self.write_users(terminal_ids, operator_password)
        for n in self.nodes:
            n.conf_dir, n.probe_tls = self.conf_dir, probe
        return self

    def write_users(self, terminal_ids: Iterable[str],
                    operator_password: str | None = None) -> None:
        assert self.conf_dir is not None, "with_tls() first"
        (self.conf_dir / USERS).write_text(
            render_users(terminal_ids, operator_password=operator_password), encoding="utf-8")

    def start(self) -> NatsCluster:
        """Every node, each accepting MQTT. A node that does not come up stops the
        others: a fixture that fails must leave no server behind (33 of them outlived
        their tests once, from a run whose nodes took MQTT too late)."""
        try:
            for n in self.nodes:
                n.start()
            for n in self.nodes:
                n.mqtt_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()

    def kill_all(self) -> None:
        """SIGKILL every node at once (a power loss): nothing flushed, nothing handed over."""
        for n in self.nodes:
            n.kill()

    def start_nodes(self) -> None:
        """Start every stopped node without waiting for MQTT: after a full-cluster loss
        JetStream needs its quorum back first, and MQTT may keep failing after that."""
        for n in self.nodes:
            if not n.running:
                n.start()

    def restart_rolling(self, timeout: float = READY_TIMEOUT_S) -> None:
        """One node at a time, each accepting MQTT before the next goes down (the
        operator's rolling restart: the others keep the quorum meanwhile)."""
        for n in self.nodes:
            n.restart(timeout)

    def endpoints(self) -> tuple[Endpoint, ...]:
        return tuple(n.endpoint() for n in self.nodes)

    def hosts(self) -> tuple[tuple[str, int], ...]:
        """The nodes as `[mqtt] hosts` takes them: (host, port) in the terminals' order."""
        return tuple((e.host, e.port) for e in self.endpoints())

    def logs(self) -> str:
        return "\n".join(f"--- {n.name}\n{n.log()}" for n in self.nodes)

    def consumers(self) -> set[tuple[str, str, str]]:
        """(stream, consumer name, filter subject) of every JetStream consumer the running
        nodes host (the monitoring port's /jsz): one per QoS 1 MQTT subscription."""
        found: set[tuple[str, str, str]] = set()
        for n in self.nodes:
            if not n.running:
                continue
            url = (f"http://127.0.0.1:{n.monitor_port}/jsz?accounts=true&streams=true"
                   "&consumers=true&config=true")
            with urllib.request.urlopen(url, timeout=5) as r:
                jsz = json.loads(r.read())
            for account in jsz.get("account_details") or []:
                for stream in account.get("stream_detail") or []:
                    for consumer in stream.get("consumer_detail") or []:
                        found.add((stream["name"], consumer["name"],
                                   consumer["config"].get("filter_subject", "")))
        return found

    def consumer_subjects(self) -> set[str]:
        return {subject for _, _, subject in self.consumers()}

    def delete_consumers(self, filter_subject: str) -> int:
        """Delete the JetStream consumers reading `filter_subject` through the JetStream
        API (a consumer lost in a cluster's recovery: the MQTT session still lists the
        subscription, nothing delivers it). Plain (no TLS, no users) clusters only."""
        assert self.conf_dir is None, "the client port needs a user with TLS on"
        node = next(n for n in self.nodes if n.running)
        deleted = 0
        with NatsAdmin("127.0.0.1", node.client_port) as admin:
            for stream, name, subject in self.consumers():
                if subject == filter_subject:
                    assert admin.delete_consumer(stream, name), name
                    deleted += 1
        return deleted

    def add_stray_consumer(self, filter_subject: str, name: str, deliver_subject: str) -> None:
        """A consumer of $MQTT_msgs made through the JetStream API under `name` (a session's
        hash + "_..." makes it that session's), pushing to `deliver_subject`: what a refused
        subscription leaves behind when nobody subscribes that subject. Plain clusters only."""
        assert self.conf_dir is None, "the client port needs a user with TLS on"
        config = {"durable_name": name, "filter_subject": filter_subject,
                  "ack_policy": "explicit", "deliver_subject": deliver_subject,
                  "num_replicas": self.size}
        node = next(n for n in self.nodes if n.running)
        with NatsAdmin("127.0.0.1", node.client_port) as admin:
            answer = json.loads(admin.request(
                f"{JS_API}.CONSUMER.DURABLE.CREATE.{MQTT_MSGS_STREAM}.{name}",
                json.dumps({"stream_name": MQTT_MSGS_STREAM, "config": config}).encode()
            ).payload)
        assert "error" not in answer, answer

    def stream_messages(self) -> dict[str, int]:
        """Each JetStream stream's message count as the first running node reports it
        (the MQTT streams are replicated on every node)."""
        node = next(n for n in self.nodes if n.running)
        url = f"http://127.0.0.1:{node.monitor_port}/jsz?accounts=true&streams=true"
        with urllib.request.urlopen(url, timeout=5) as r:
            jsz = json.loads(r.read())
        return {stream["name"]: stream["state"]["messages"]
                for account in jsz.get("account_details") or []
                for stream in account.get("stream_detail") or []}


class FixedMonitor:
    """A NATS monitoring port answering a fixed /jsz and paging a fixed list of
    connections on /connz as NATS does (`limit`, `offset`, `total`): states a real cluster
    cannot be put in within a test (thousands of consumers near their limit)."""

    def __init__(self, jsz: dict[str, Any], connections: list[dict[str, Any]] | None = None
                 ) -> None:
        import http.server
        import threading
        import urllib.parse

        conns = connections or []
        asked: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                asked.append(self.path)
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                answer: dict[str, Any] = jsz
                if url.path == "/connz":
                    offset, limit = int(query.get("offset", 0)), int(query.get("limit", 1024))
                    answer = {"total": len(conns), "offset": offset, "limit": limit,
                              "connections": conns[offset:offset + limit]}
                body = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_a: Any) -> None:
                pass

        self.asked = asked
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.port = self.server.server_address[1]
        self.address = f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
