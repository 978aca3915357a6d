"""Figure: the same fleet (bench/fleet.py) against a 3-node NATS 2.9 cluster: JetStream,
MQTT 3.1.1 on every node, MQTT streams replicated R3, the node configuration rendered
from the shipped deploy/nats/ files (sync/nats_kit.py), over plain TCP and over TLS with a
client certificate per terminal (verify_and_map, users.conf with one user per terminal).

What differs from the mosquitto run, and why:
- MQTT 3.1.1 (NATS refuses v5): clean session false, no subscription options;
- terminals spread over the nodes as the agent spreads them (crc32 of the id) and move
  to the next node after a failure, with the same 1-60 s full-jitter backoff;
- no `$share` on 3.1.1: the two desk consumers are partitions (`--partition 0/2`, `1/2`),
  each stores and acknowledges half the terminals and PUBACKs the rest unread;
- the broker's CPU and memory are the sum over the three nats-server processes, its
  message counts those of /varz (NATS messages, internal JetStream traffic included,
  not MQTT packets);
- the "broker restart" SIGKILLs all three nodes and starts them again: the whole fleet
  reconnects, as after a mosquitto restart;
- `fleet_nats_tls_r1` is the TLS run with node.conf's `consumer_replicas` at 1 instead of
  the streams' 3: one copy of each subscription's consumer, no Raft group per consumer;
- `fleet_nats_tls_light` is the TLS run with the terminals' `[mqtt] light_session`: ack
  and config at QoS 0, so two consumers per terminal (cmd, payment_status) instead of four.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from agent.loopback import free_port as _free_port  # below the ephemeral range
from bench.common import REPO, BenchError, BenchResult, Context, scratch_dir
from sync.nats_admin import NatsAdmin
from sync.nats_census import JSZ_TIMEOUT_S, ConsumerCensus, consumer_census, read_views
from sync.nats_probe import TerminalProbe, probe_terminal, read_connections
from tests.sync.nats import (
    api_timeout_for,
    max_consumers_for,
    nats_server_path,
    nats_server_version,
)

KEY = "fleet_nats"
TITLE = ("Fleet on a 3-node NATS cluster (JetStream, MQTT 3.1.1, R3): simulated terminals, "
         "desk consumers as partitions")
TLS_KEY = "fleet_nats_tls"
TLS_TITLE = ("Fleet on a 3-node NATS cluster over TLS: a client certificate per terminal "
             "(verify_and_map, per-terminal permissions), desk consumers as partitions")
# The same TLS fleet with one copy of each subscription's consumer (node.conf's
# consumer_replicas, docs/fleet.md "Consumer replicas"): what the Raft groups cost.
R1_KEY = "fleet_nats_tls_r1"
R1_TITLE = ("Fleet on a 3-node NATS cluster over TLS with consumer_replicas 1: streams R3, "
            "one copy of each subscription's consumer")
# The TLS fleet with `[mqtt] light_session` (ack and config at QoS 0): two JetStream
# consumers per terminal instead of four, consumers R3 as shipped.
LIGHT_KEY = "fleet_nats_tls_light"
LIGHT_TITLE = ("Fleet on a 3-node NATS cluster over TLS with light sessions: ack and config "
               "at QoS 0, consumers R3 as shipped")
# The shipped TLS configuration on upstream nats-server (`make nats-upstream`): a release
# with NATS's 2026 MQTT advisories fixed and newer JetStream recovery (docs/fleet.md
# "Upstream NATS"); consumers R3 and full sessions as shipped, as in fleet_nats_tls.
UPSTREAM_KEY = "fleet_nats_tls_upstream"
UPSTREAM_TITLE = ("Fleet on a 3-node NATS cluster over TLS, upstream nats-server "
                  "(make nats-upstream): the shipped files as in fleet_nats_tls")
UPSTREAM_EXE = REPO / "build" / "nats-upstream" / "bin" / "nats-server"
NODES = 3
ENV_TERMINALS = "KIOSK_FLEET_NATS_TERMINALS"
# 20,000 is the aim; what the cluster reaches on this 2-core machine is measured and
# recorded (docs/benchmarks.md): every MQTT session is a JetStream consumer per QoS 1
# subscription, replicated on the three nodes. KIOSK_FLEET_NATS_TERMINALS overrides.
DEFAULT_TERMINALS = 500
QUICK_TERMINALS = 200
# node.conf's api_timeout section (NATS 2.11.3 and later) is the operator's choice:
# KIOSK_FLEET_NATS_API_TIMEOUT=N keeps it with N seconds; unset or 0, NATS's own 5 s
ENV_API_TIMEOUT = "KIOSK_FLEET_NATS_API_TIMEOUT"
OPERATOR_PASSWORD_BYTES = 24  # token_urlsafe: 32 characters, within bcrypt's 72 bytes
PRUNE_CONFIRM_S = 5.0  # the two reads prune-consumers compares
WAIT_S = 900.0  # connect storm and restart: JetStream work per session paces them
READY_S = 90.0


def nats_path() -> str:
    """Debian's nats-server, or KIOSK_NATS_SERVER's (tests/sync/nats.py)."""
    try:
        exe = nats_server_path()
    except FileNotFoundError as exc:
        raise BenchError(str(exc)) from exc
    if exe is None:
        raise BenchError("nats-server is not installed (scripts/system-deps.sh installs it)")
    return exe


class _Node:
    def __init__(self, name: str) -> None:
        self.name = name
        self.client, self.cluster, self.mqtt, self.monitor = (
            _free_port(), _free_port(), _free_port(), _free_port())
        self.proc: subprocess.Popen[bytes] | None = None


class NatsClusterBroker:
    """Three nats-server processes with the interface bench/fleet.py's Broker has."""

    key, title, tls_key, tls_title = KEY, TITLE, TLS_KEY, TLS_TITLE
    wait_s = WAIT_S

    def __init__(self, folder: Path, terminal_ids: list[str], tls: bool,
                 consumer_replicas: int | None = None, light_session: bool = False,
                 exe: str | None = None) -> None:
        from bench.fleet import tls_kit

        self.consumer_replicas = consumer_replicas
        self.light_session = light_session
        self.exe = exe or nats_path()
        if consumer_replicas == 1:
            self.tls_key, self.tls_title = R1_KEY, R1_TITLE
        elif light_session:
            self.tls_key, self.tls_title = LIGHT_KEY, LIGHT_TITLE
        elif exe is not None:
            self.tls_key, self.tls_title = UPSTREAM_KEY, UPSTREAM_TITLE
        self.folder = folder
        chosen = os.environ.get(ENV_API_TIMEOUT, "0")
        try:
            self.api_timeout_s = api_timeout_for(self.exe, int(chosen))
        except ValueError:
            raise BenchError(f"{ENV_API_TIMEOUT}={chosen!r}: whole seconds, 0 for NATS's "
                             f"own 5") from None
        self.nodes = [_Node(f"n{i + 1}") for i in range(NODES)]
        self.port = self.nodes[0].mqtt
        self.desk_port = self.port
        self.ports = [n.mqtt for n in self.nodes]
        self.starts = 0
        self.spawned_at: float | None = None  # the last start(): the restart's time zero
        self.tls: dict[str, str] | None = None
        self.conf_dir: Path | None = None
        self.operator_password: str | None = None  # TLS: the client port needs a user
        if tls:
            from sync import broker_kit, nats_kit

            self.tls = tls_kit(folder, self.port, _free_port())
            self.conf_dir = folder / "nats-conf"
            nats_kit.tls_files(broker_kit.Kit(Path(self.tls["kit"])), self.conf_dir)
            # with the operator user: prune-consumers runs as the operator runs it
            self.operator_password = secrets.token_urlsafe(OPERATOR_PASSWORD_BYTES)
            (self.conf_dir / nats_kit.USERS).write_text(
                nats_kit.render_users(terminal_ids, operator_password=self.operator_password),
                encoding="utf-8")
        self._write_confs()

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.nodes[0].proc

    def _conf(self, node: _Node) -> Path:
        return (self.conf_dir or self.folder) / f"{node.name}.conf"

    def _write_confs(self) -> None:
        from sync.nats_kit import NodeSpec, render_node

        for n in self.nodes:
            spec = NodeSpec(
                n.name, f"127.0.0.1:{n.client}", f"127.0.0.1:{n.monitor}",
                self.folder / f"{n.name}-js", f"127.0.0.1:{n.mqtt}", replicas=NODES,
                cluster_name="kiosk-bench", cluster_listen=f"127.0.0.1:{n.cluster}",
                routes=tuple(f"127.0.0.1:{o.cluster}" for o in self.nodes if o is not n),
                conf_dir=self.conf_dir, consumer_replicas=self.consumer_replicas,
                max_consumers=max_consumers_for(self.exe),
                mqtt_api_timeout_s=self.api_timeout_s)
            self._conf(n).write_text(render_node(spec), encoding="utf-8")

    def start(self) -> None:
        from bench.fleet import _raise_nofile

        exe = self.exe
        self.starts += 1
        for n in self.nodes:
            log = open(self.folder / f"{n.name}-{self.starts}.log", "wb")  # noqa: SIM115
            n.proc = subprocess.Popen([exe, "-c", str(self._conf(n))], stdout=log,
                                      stderr=log, preexec_fn=_raise_nofile)
            log.close()
        self.spawned_at = time.monotonic()
        # The first start waits for JetStream (/healthz); a restart only for the MQTT
        # ports: the fleet's reconnects are what the restart phase measures, and a
        # JetStream still recovering its consumers shows in them.
        deadline = time.monotonic() + READY_S
        for n in self.nodes:
            while not (_healthy(n.monitor) if self.starts == 1 else _open(n.mqtt)):
                if n.proc is not None and n.proc.poll() is not None:
                    path = self.folder / f"{n.name}-{self.starts}.log"
                    tail = path.read_text(errors="replace")[-600:] if path.exists() else ""
                    raise BenchError(f"nats-server {n.name} exited: {tail}")
                if time.monotonic() > deadline:
                    raise BenchError(f"nats-server {n.name}: not ready in {READY_S:.0f} s")
                time.sleep(0.2)

    def log_findings(self) -> list[str]:
        """The nodes' own warnings and errors since the last start, most frequent first:
        when the fleet does not come back, this is what the operator would read."""
        lines = []
        for n in self.nodes:
            path = self.folder / f"{n.name}-{self.starts}.log"
            text = path.read_text(errors="replace") if path.exists() else ""
            for message, count in log_findings(text)[:FINDINGS]:
                lines.append(f"{n.name} log after the restart, {count}x: {message}")
        return lines

    def consumer_census(self) -> ConsumerCensus | None:
        """What the nodes hold now (sync/nats_census.py); None when no node answers."""
        views, _ = read_views([("127.0.0.1", n.monitor) for n in self.nodes])
        return consumer_census(views) if views else None

    def prune_leftovers(self) -> list[str]:
        """`prune-consumers` as an operator runs it once the fleet has drained (any age:
        nothing is being subscribed then): its closing line, or its error. Its lines go
        to buffers, not a redirected stdout, which the desks' log threads also write."""
        from sync import nats_kit

        monitors = [("127.0.0.1", n.monitor) for n in self.nodes]
        user = nats_kit.OPERATOR_USER if self.operator_password else None
        out, err = io.StringIO(), io.StringIO()
        rc = nats_kit.prune_consumers(
            monitors, JSZ_TIMEOUT_S,
            lambda: NatsAdmin("127.0.0.1", self.nodes[0].client, user, self.operator_password),
            dry_run=False, min_age_s=0.0, confirm_after_s=PRUNE_CONFIRM_S, out=out, err=err)
        said = (out.getvalue().splitlines() or [""])[-1]
        return [f"prune-consumers after the drain: {said}" if rc == 0 else
                f"prune-consumers after the drain failed: {err.getvalue().strip()}"]

    def probe_terminals(self, terminal_ids: list[str]) -> list[TerminalProbe]:
        """Each terminal's connection and downlink consumers now (sync/nats_probe.py):
        one /jsz read for all, a /connz read per terminal and node."""
        monitors = [("127.0.0.1", n.monitor) for n in self.nodes]
        views, _ = read_views(monitors)
        return [probe_terminal(tid, views, read_connections(monitors, tid)[0],
                               self.light_session) for tid in terminal_ids]

    def kill(self) -> None:
        for n in self.nodes:
            if n.proc is not None and n.proc.poll() is None:
                n.proc.send_signal(signal.SIGKILL)
                n.proc.wait(10)

    def stop(self) -> None:
        for n in self.nodes:
            if n.proc is not None and n.proc.poll() is None:
                n.proc.terminate()
                try:
                    n.proc.wait(20)
                except subprocess.TimeoutExpired:
                    n.proc.kill()
                    n.proc.wait(10)

    def cpu_s(self) -> float:
        total = 0.0
        for n in self.nodes:
            if n.proc is None or n.proc.poll() is not None:
                continue
            fields = Path(f"/proc/{n.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def rss_kib(self) -> int:
        total = 0
        for n in self.nodes:
            if n.proc is None or n.proc.poll() is not None:
                continue
            for line in Path(f"/proc/{n.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        return total

    def nofile(self) -> str:
        n = self.nodes[0]
        if n.proc is None:
            return "?"
        for line in Path(f"/proc/{n.proc.pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return line.split()[3]
        return "?"

    def monitor(self) -> VarzMonitor:
        return VarzMonitor([n.monitor for n in self.nodes])

    def desk_extra(self, i: int, desks: int) -> dict[str, Any]:
        return {"ports": self.ports, "partition": [i, desks]}

    def worker_extra(self) -> dict[str, Any]:
        return {"ports": self.ports, "protocol": "3.1.1", "light_session": self.light_session}

    def link(self, tls: bool) -> str:
        consumers = ("consumer_replicas 1" if self.consumer_replicas == 1
                     else "consumers R3 as shipped")
        if self.light_session:
            consumers += ", light sessions (ack and config at QoS 0)"
        consumers += f"; nats-server {nats_server_version(self.exe)} ({self.exe})"
        consumers += (f"; MQTT js_api_timeout {self.api_timeout_s} s" if self.api_timeout_s
                      else "; MQTT js_api_timeout NATS's own 5 s")
        return ("TLS with a client certificate per terminal, deploy/nats/ node.conf + "
                f"users.conf (verify_and_map, per-terminal permissions), {consumers}" if tls
                else f"no TLS, deploy/nats/node.conf without its TLS section, {consumers}")


# nats-server's log line: "[pid] date time [LVL] message"
_LOG_LINE = re.compile(r"^\[\d+\] \S+ \S+ \[(WRN|ERR|FTL)\] (.*)$")
# what varies between repeats of one warning: numbers, ids, addresses, subjects' tails
_VARYING = re.compile(r"[0-9A-Za-z]{20,}|\d+(\.\d+)*")
FINDINGS = 3


def log_findings(text: str) -> list[tuple[str, int]]:
    """Warnings and errors grouped by their shape (numbers and ids folded into `#`),
    most frequent first, each with one real example line."""
    from bench.fleet import group_by_shape

    found = (f"[{m.group(1)}] {m.group(2)}" for m in map(_LOG_LINE.match, text.splitlines())
             if m is not None)
    return group_by_shape(found, _VARYING)


def _open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


class VarzMonitor:
    """Message counters summed over the nodes' /varz, polled each second; a node's
    counter that falls (a restart) counts from zero again, so sums only grow."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.last: dict[int, tuple[float, float]] = {}
        self.total = [0.0, 0.0]
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(1.0):
            for p in self.ports:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{p}/varz", timeout=2) as r:
                        v = json.loads(r.read())
                except (OSError, ValueError):
                    continue
                now = (float(v.get("in_msgs", 0)), float(v.get("out_msgs", 0)))
                with self.lock:
                    before = self.last.get(p, (0.0, 0.0))
                    for i in (0, 1):
                        self.total[i] += now[i] - before[i] if now[i] >= before[i] else now[i]
                    self.last[p] = now

    def snap(self) -> dict[str, float]:
        with self.lock:
            return {"messages/received": self.total[0], "messages/sent": self.total[1]}

    def stop(self) -> None:
        self._stop.set()


def fleet_size(quick: bool) -> tuple[int, str]:
    if os.environ.get(ENV_TERMINALS):
        return int(os.environ[ENV_TERMINALS]), f"{ENV_TERMINALS} set"
    if quick:
        return QUICK_TERMINALS, "quick run"
    return DEFAULT_TERMINALS, (
        f"{DEFAULT_TERMINALS} terminals, not 20,000: on this 2-core machine each MQTT "
        f"session costs the cluster a JetStream consumer per QoS 1 subscription, replicated "
        f"on 3 nodes as shipped (≈ 1.6 ms of CPU per second per terminal at field rates "
        f"on 2.9.10, 1.5-1.9 ms on 2.15.1, 2.7-3.3 ms on the same machine after a restart, "
        f"measured; ≈ 1.1 ms with light sessions, ≈ 0.24 ms with consumer_replicas 1); "
        f"where 500 take more than a core at field rates the cluster has no headroom left "
        f"for a full restart (KIOSK_FLEET_NATS_TERMINALS=250 there); "
        f"1,000 connected but their acks lagged by seconds and the cluster's JetStream did "
        f"not recover within 90 s of a full restart (docs/benchmarks.md 'fleet_nats')")


def _run(ctx: Context, tls: bool, consumer_replicas: int | None = None,
         light_session: bool = False, exe: str | None = None) -> BenchResult:
    from bench.fleet import run_fleet

    def make_broker(folder: Path, ids: list[str], tls: bool) -> NatsClusterBroker:
        return NatsClusterBroker(folder, ids, tls, consumer_replicas, light_session, exe)

    n, why = fleet_size(ctx.quick)
    key = (R1_KEY if consumer_replicas == 1 else LIGHT_KEY if light_session
           else UPSTREAM_KEY if exe is not None else TLS_KEY if tls else KEY)
    with scratch_dir(ctx, key) as folder:
        result = run_fleet(n, ctx.quick, folder, tls=tls, make_broker=make_broker)
    if why:
        result.details.append(f"fleet size: {why}.")
    return result


def run(ctx: Context) -> BenchResult:
    return _run(ctx, tls=False)


def run_tls(ctx: Context) -> BenchResult:
    return _run(ctx, tls=True)


def run_tls_r1(ctx: Context) -> BenchResult:
    return _run(ctx, tls=True, consumer_replicas=1)


def run_tls_light(ctx: Context) -> BenchResult:
    return _run(ctx, tls=True, light_session=True)


def run_tls_upstream(ctx: Context) -> BenchResult:
    if not UPSTREAM_EXE.exists():
        raise BenchError(f"{UPSTREAM_EXE.relative_to(REPO)} is missing: run make nats-upstream")
    return _run(ctx, tls=True, exe=str(UPSTREAM_EXE))
