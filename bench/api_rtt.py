"""Figure 2, local API round trip: what the UI waits for on each request to the core.

The real daemon (`kiosk run`, virtual devices) is started as a subprocess and driven with
kiosk.api_client.ApiClient, the same client the UI and CLI use: `snapshot` requests, and
customer intents in `start` / `cancel` pairs (each one takes the engine lock, changes the
screen and builds a snapshot for subscribers). The limit is the transport itself: a bare
asyncio line server on a Unix socket, in its own process, answering the same request and
reply sizes (bench/echo_server.py). The difference is the cost of JSON, the API layer and
the engine. docs/performance-targets.md sets no target for this figure: it is reported,
not judged.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

from bench.common import (
    PYTHON,
    BenchError,
    BenchResult,
    Context,
    Figure,
    fmt_rate,
    fmt_us,
    percentile,
    scratch_dir,
    verdict,
)
from bench.daemon import kiosk_daemon, socket_of, spawn_until_ready, stop
from kiosk.api_client import API_VERSION, ApiClient, ApiRequestError

KEY = "api_rtt"
TITLE = "Local API round trip (UI/CLI ↔ core over the Unix socket)"
IDLE_TIMEOUT_S = 30.0
CHUNK = 50  # requests to one server before switching to the other


def _line_len(obj: dict[str, Any]) -> int:
    """Bytes on the wire for one message, encoded as client and server encode it."""
    return len(json.dumps(obj, ensure_ascii=False).encode()) + 1


def _wait_idle(client: ApiClient) -> dict[str, Any]:
    deadline = time.monotonic() + IDLE_TIMEOUT_S
    while True:
        snap = client.request("snapshot")
        if snap["screen"] == "idle":
            return snap
        if time.monotonic() > deadline:
            raise BenchError(f"the core never reached the idle screen: {snap['screen']} "
                             f"{snap.get('out_of_service')}")
        time.sleep(0.01)


def _timed(client: ApiClient, op: str, n: int, **fields: Any) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.request(op, **fields)
        out.append(time.perf_counter() - t0)
    return out


def _intent_pairs(client: ApiClient, n: int) -> tuple[list[float], list[float]]:
    starts, cancels = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        client.intent("start")
        t1 = time.perf_counter()
        client.intent("cancel")
        t2 = time.perf_counter()
        starts.append(t1 - t0)
        cancels.append(t2 - t1)
    return starts, cancels


def _raw_round_trips(sock: socket.socket, req_size: int, reply_size: int,
                     n: int) -> list[float]:
    """Same framing work as ApiClient (sendall, recv until newline), minus JSON."""
    header = f"{reply_size:08d}".encode()
    request = header + b"y" * max(0, req_size - len(header) - 1) + b"\n"
    out = []
    buf = b""
    for _ in range(n):
        t0 = time.perf_counter()
        sock.sendall(request)
        while b"\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise BenchError("the echo server closed the connection")
            buf += chunk
        _, buf = buf.split(b"\n", 1)
        out.append(time.perf_counter() - t0)
    return out


def _sizes(snap: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """(request, reply) bytes of the measured messages, for the raw round trip to copy."""
    msg_id = 10**6  # a typical id width for a long-lived client
    return {
        "snapshot": (
            _line_len({"v": API_VERSION, "id": msg_id, "op": "snapshot"}),
            _line_len({"v": API_VERSION, "id": msg_id, "ok": True, "result": snap}),
        ),
        "intent": (
            _line_len({"v": API_VERSION, "id": msg_id, "op": "intent",
                       "intent": "cancel", "args": {}}),
            _line_len({"v": API_VERSION, "id": msg_id, "ok": True, "result": {}}),
        ),
    }


def _measure(folder: Path, n: int) -> dict[str, Any]:
    """Core and raw transport side by side, alternating in chunks so both see the same
    machine (other work, CPU frequency, cache state) at the same moments."""
    echo_path = folder / "echo.sock"
    echo = spawn_until_ready([PYTHON, "-m", "bench.echo_server", str(echo_path)],
                             folder / "echo.stderr")
    try:
        with kiosk_daemon(folder) as daemon, ApiClient(socket_of(daemon)) as client, \
                socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
            client.connect(subscribe=False)  # replies only: pushes would blur the pairing
            raw.settimeout(10.0)  # as ApiClient: a timeout-mode socket
            raw.connect(str(echo_path))
            sizes = _sizes(_wait_idle(client))
            out: dict[str, list[float]] = {
                k: [] for k in ("snapshot", "start", "cancel", "raw_snapshot", "raw_intent")
            }
            try:
                _timed(client, "snapshot", 100)  # warm-up, both sides
                _intent_pairs(client, 20)
                for req, reply in sizes.values():
                    _raw_round_trips(raw, req, reply, 100)
                for _ in range(n // CHUNK):
                    out["snapshot"] += _timed(client, "snapshot", CHUNK)
                    out["raw_snapshot"] += _raw_round_trips(raw, *sizes["snapshot"], CHUNK)
                    starts, cancels = _intent_pairs(client, CHUNK // 2)
                    out["start"] += starts
                    out["cancel"] += cancels
                    out["raw_intent"] += _raw_round_trips(raw, *sizes["intent"], CHUNK)
            except ApiRequestError as exc:
                raise BenchError(f"the core refused a benchmark request: {exc}") from exc
    finally:
        stop(echo.proc)
    return {"sizes": sizes, **out}


def _row(name: str, api: list[float], raw: list[float], stat: str) -> Figure:
    if stat == "mean":
        a, r = sum(api) / len(api), sum(raw) / len(raw)
    else:
        pct = float(stat[1:])
        a, r = percentile(api, pct), percentile(raw, pct)
    sign = "+" if a >= r else "−"
    return Figure(f"{name} {stat}", fmt_us(a), f"raw socket {fmt_us(r)}",
                  f"×{a / r:.1f} ({sign}{fmt_us(abs(a - r))})", "none set",
                  verdict(None))


def run(ctx: Context) -> BenchResult:
    n = 400 if ctx.quick else 2000
    result = BenchResult(KEY, TITLE, params=f"{n} snapshot requests and {n // 2} start/cancel "
                                            f"pairs ({n} intents), each beside {n} raw round "
                                            f"trips, alternating in chunks of {CHUNK}")
    with scratch_dir(ctx, "api") as folder:
        m = _measure(folder, n)
    intents = m["start"] + m["cancel"]
    for stat in ("p50", "p99", "mean"):
        result.figures.append(_row("snapshot RTT", m["snapshot"], m["raw_snapshot"], stat))
    for stat in ("p50", "p99", "mean"):
        result.figures.append(_row("intent RTT", intents, m["raw_intent"], stat))
    (sreq, srep), (ireq, irep) = m["sizes"]["snapshot"], m["sizes"]["intent"]
    snap_mean = sum(m["snapshot"]) / len(m["snapshot"])
    result.details += [
        f"message sizes: snapshot request {sreq} B, reply {srep} B (idle screen); "
        f"intent request {ireq} B, reply {irep} B; the raw round trips use the same sizes.",
        f"intent p50 by kind: start {fmt_us(percentile(m['start'], 50))}, "
        f"cancel {fmt_us(percentile(m['cancel'], 50))}; slowest intent "
        f"{fmt_us(max(intents))}, slowest snapshot {fmt_us(max(m['snapshot']))}.",
        f"snapshot requests in lock-step from one client: {fmt_rate(1 / snap_mean)}.",
        "The client connects with subscribe=false so every reply pairs with its request; "
        "the core runs its usual 100 ms tick meanwhile; the echo server and the daemon run "
        "side by side and are measured in alternation.",
    ]
    return result
