"""Figure: outbox drain to a local mosquitto, acknowledged end-to-end by a desk consumer.

The agent under test is the real sync code (SyncAgent on a real ledger and engine with
virtual devices): it reads the outbox, signs record batches with the terminal key,
publishes them (QoS 1), and a record counts only when the desk consumer — a separate
process running sync.desk.Desk — has verified the signature, committed it to its own
SQLite file (synchronous=FULL) and sent the signed ack, and the agent has committed that
ack to the ledger (the row left the outbox: M8). The clock runs from the agent's start
to the moment the outbox is empty.

The limit, measured in the same run against the same broker: raw paho QoS 1 publishes
of a payload of the same size, counted at their PUBACKs (nothing else: no ledger, no
signature, no consumer). Target
(docs/performance-targets.md): ≥ 40 %.

Second figure: the agent's memory with 100,000 queued payments. The real core daemon
(`python -m kiosk run`, MQTT enabled) starts on a ledger whose 100,000 payments all wait
in the outbox, (a) with no broker listening (nothing can drain) and (b) with a mosquitto
of its own but no desk consumer (nothing is ever acknowledged: the agent keeps its
bounded window of records in flight and sends them again). Its VmRSS / VmHWM are read at
READY and after ~10 s of running, beside the same daemon on an empty outbox in the same
run; the core's memory target (≤ 60 MB resident, docs/performance-targets.md) is judged
on the peak.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sqlite3
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.loopback import free_port as _free_port  # below the ephemeral range
from agent.loopback import port_open
from bench.common import (
    PYTHON,
    REPO,
    BenchError,
    BenchResult,
    Context,
    Figure,
    fmt_mb,
    fmt_pct,
    fmt_rate,
    scratch_dir,
    verdict,
)
from bench.daemon import kiosk_argv, memory_kib, spawn_until_ready, stop, write_config
from bench.ledger_fill import build
from bench.startup import HOLD, IMPORTS
from kiosk.config import MqttConfig
from kiosk.ledger import Ledger

KEY = "mqtt_drain"
TITLE = ("Outbox drain to mosquitto, acknowledged end-to-end by a desk consumer; "
         "the agent's memory with 100,000 queued payments")
TARGET_RATIO = 0.40
TERMINAL = "T0001"


def _mosquitto() -> str:
    for path in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if path and os.access(path, os.X_OK):
            return path
    raise BenchError("mosquitto is not installed (scripts/system-deps.sh installs it)")


def start_broker(folder: Path) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    conf = folder / "mosquitto.conf"
    user = "user root\n" if os.geteuid() == 0 else ""
    conf.write_text(
        f"{user}listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 100000\nmax_inflight_messages 0\n"
    )
    log = open(folder / "mosquitto.log", "wb")  # noqa: SIM115 - the broker keeps it
    proc = subprocess.Popen([_mosquitto(), "-c", str(conf)], stdout=log, stderr=log)
    log.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if port_open(port):
            return proc, port
        time.sleep(0.02)
    proc.kill()
    raise BenchError("mosquitto did not start")


def raw_publish_rate(port: int, n: int, payload: bytes) -> float:
    """paho QoS 1 publishes per second, counted at PUBACK."""
    done = threading.Event()
    count = [0]

    def on_publish(client: mqtt.Client, userdata: Any, mid: int, reason_code: ReasonCode,
                   properties: Properties) -> None:
        count[0] += 1
        if count[0] >= n:
            done.set()

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-raw", protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(1000)
    c.on_publish = on_publish
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        deadline = time.monotonic() + 10
        while not c.is_connected() and time.monotonic() < deadline:
            time.sleep(0.01)
        t0 = time.perf_counter()
        for _ in range(n):
            c.publish("bench/raw", payload, qos=1)
        if not done.wait(120):
            raise BenchError(f"raw publishes: only {count[0]} of {n} acknowledged")
        return n / (time.perf_counter() - t0)
    finally:
        c.loop_stop()
        c.disconnect()


def desk_process(port: int, key_pem: str, pub_path: str, db: str, n: int) -> None:
    """Runs in its own process: the desk consumer. Prints DONE when n payments are in."""
    from cryptography.hazmat.primitives import serialization

    from sync.desk import Desk
    from sync.keys import key_id, load_public_key

    key = serialization.load_pem_private_key(Path(key_pem).read_bytes(), password=None)
    desk = Desk(
        "127.0.0.1", port, key, key_id("desk", key.public_key()),  # type: ignore[arg-type]
        {TERMINAL: load_public_key(Path(pub_path))}, Path(db), client_id="bench-desk",
    ).start()
    if not desk.conn.wait_connected(10):
        print("NOBROKER", flush=True)
        return
    time.sleep(0.2)  # subscriptions granted
    print("READY", flush=True)
    desk.wait(lambda: desk.stats.new_payments >= n, 600)
    print(f"DONE {desk.stats.new_payments} {desk.stats.duplicates} {desk.stats.messages}",
          flush=True)
    desk.stop()


def _drain_rate(folder: Path, port: int, n: int, inflight: int, batch: int) -> tuple[float, str]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from kiosk.config import MqttConfig, PathsConfig, load_config
    from kiosk.devices import build_acceptor, build_printer
    from kiosk.engine import PaymentEngine
    from sync.agent import SyncAgent
    from sync.keys import key_id, pem, public_b64, write_signing_key

    work = folder / f"drain-{inflight}-{batch}"
    base = load_config(None)
    paths = PathsConfig(data_dir=work / "data", runtime_dir=work / "run", log_dir=work / "log")
    desk_key = Ed25519PrivateKey.generate()
    (work / "desk").mkdir(parents=True)
    (work / "desk" / "desk.key").write_bytes(pem(desk_key))
    config = dataclasses.replace(
        base,
        paths=paths,
        mqtt=MqttConfig(
            enabled=True, port=port, inflight=inflight, batch=batch,
            desk_keys=((key_id("desk", desk_key.public_key()), public_b64(desk_key.public_key())),),
        ),
    )
    write_signing_key(paths.data_dir / "keys" / "terminal.ed25519.key")
    # n finished payments, none of which has reached the desk yet (untimed).
    build(paths.ledger, n, unsent=n)
    ledger = Ledger(paths.ledger, TERMINAL)
    ledger.open()
    desk = subprocess.Popen(
        [PYTHON, "-c",
         "import sys; from bench.mqtt_drain import desk_process; "
         "desk_process(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))",
         str(port), str(work / "desk" / "desk.key"),
         str(paths.data_dir / "keys" / "terminal.ed25519.pub"), str(work / "desk.sqlite"), str(n)],
        stdout=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    engine = None
    agent = None
    try:
        assert desk.stdout is not None
        if desk.stdout.readline().strip() != "READY":
            raise BenchError("the desk consumer did not start")
        engine = PaymentEngine(config, ledger, build_acceptor(config), build_printer(config))
        engine.start()
        from kiosk.ledger import desk as desk_ledger

        t0 = time.perf_counter()
        agent = SyncAgent(config, engine, ledger)
        agent.start()
        deadline = time.monotonic() + 600
        while desk_ledger.outbox_depth(ledger)["payments_unsent"] > 0:
            if time.monotonic() > deadline:
                raise BenchError("the drain did not finish in 600 s")
            time.sleep(0.005)
        elapsed = time.perf_counter() - t0
        line = desk.stdout.readline().split()
        detail = (
            f"inflight {inflight}, batch {batch}: {n} payments in {elapsed:.2f} s; desk saw "
            f"{line[2] if len(line) > 2 else '?'} duplicates in {line[3] if len(line) > 3 else '?'}"
            " messages"
        )
        return n / elapsed, detail
    finally:
        if agent is not None:
            agent.stop()
        if engine is not None:
            engine.stop()
        ledger.close()
        if desk.poll() is None:
            desk.kill()
        desk.wait(10)


# -- the agent's memory with a queued outbox ---------------------------------------------
QUEUED = 100_000
RSS_TARGET_KIB = 60 * 1024  # core resident memory <= 60 MB (read as MiB)
SAMPLE_S = 0.25  # VmRSS is sampled this often while the daemon runs
MEMORY_RESEND_S = 2.0  # mqtt.resend_after_s here (default 30 s): the window goes out again
# several times within the run, so a leak per resend would show
SYNC_IMPORTS = ("import agent.cli, agent.daemon, drivers.virtual_acceptor, "
                "drivers.virtual_printer, sync.agent; " + HOLD)
CRYPTO_IMPORTS = ("import agent.cli, agent.daemon, drivers.virtual_acceptor, "
                  "drivers.virtual_printer, sync.agent; "
                  "import cryptography.hazmat.primitives.asymmetric.ed25519; " + HOLD)


@dataclass
class MemoryRun:
    ready: dict[str, int]  # VmRSS / VmHWM at READY, KiB
    mid: int  # VmRSS half-way, KiB
    after: dict[str, int]  # VmRSS / VmHWM at the end, KiB
    rss_max: int  # highest VmRSS sampled, KiB
    held_s: float  # READY to the last reading
    unacked: int  # outbox rows still unacknowledged when the daemon stopped
    sent_rows: int  # rows the agent sent during the run (PUBACKed at least once)
    sends: int  # record sends PUBACKed during the run (sum of attempts)


def _outbox_counts(ledger: Path) -> tuple[int, int, int]:
    """Unacknowledged rows, rows sent at least once, sum of attempts."""
    with sqlite3.connect(f"file:{ledger}?mode=ro", uri=True) as db:
        row = db.execute("SELECT COALESCE(SUM(acked_ms IS NULL), 0),"
                         " COALESCE(SUM(attempts > 0), 0), COALESCE(SUM(attempts), 0)"
                         " FROM outbox").fetchone()
    db.close()
    return int(row[0]), int(row[1]), int(row[2])


def _memory_run(folder: Path, port: int, hold_s: float) -> MemoryRun:
    """The real daemon with MQTT on `port`; memory at READY and after `hold_s`."""
    config = write_config(folder)
    with config.open("a", encoding="utf-8") as f:  # the [mqtt] keys of kiosk/config.py
        f.write(f'\n[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {port}\n'
                f"resend_after_s = {MEMORY_RESEND_S}\n")
    ledger = folder / "data" / "ledger.sqlite"
    _, rows0, sends0 = _outbox_counts(ledger)
    spawned = spawn_until_ready(kiosk_argv(config), folder / "daemon.stderr")
    try:
        t0 = time.monotonic()
        ready = memory_kib(spawned.pid)
        rss_max, mid = ready["VmRSS"], None
        while (left := t0 + hold_s - time.monotonic()) > 0:
            time.sleep(min(SAMPLE_S, left))
            rss = memory_kib(spawned.pid)["VmRSS"]
            rss_max = max(rss_max, rss)
            if mid is None and time.monotonic() - t0 >= hold_s / 2:
                mid = rss
        after = memory_kib(spawned.pid)
        held = time.monotonic() - t0
    finally:
        code = stop(spawned.proc)
    if code != 0:
        raise BenchError(f"the daemon exited with {code} on SIGTERM "
                         f"(see {folder / 'daemon.stderr'})")
    unacked, rows1, sends1 = _outbox_counts(ledger)
    return MemoryRun(ready, mid if mid is not None else after["VmRSS"], after,
                     max(rss_max, after["VmRSS"]), held, unacked, rows1 - rows0,
                     sends1 - sends0)


def _drained_run(folder: Path, port: int) -> tuple[MemoryRun, float]:
    """The real daemon with MQTT on, a desk consumer in its own process acknowledging:
    every queued payment drained (the outbox empties); memory at READY and at the end."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from sync.keys import key_id, pem, public_b64, write_signing_key

    desk_key = Ed25519PrivateKey.generate()
    (folder / "desk").mkdir(exist_ok=True)
    (folder / "desk" / "desk.key").write_bytes(pem(desk_key))
    kid = key_id("desk", desk_key.public_key())
    config = write_config(folder)
    with config.open("a", encoding="utf-8") as f:
        f.write(f'\n[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {port}\n'
                f'[mqtt.desk_keys]\n"{kid}" = "{public_b64(desk_key.public_key())}"\n')
    keys = folder / "data" / "keys"
    write_signing_key(keys / "terminal.ed25519.key")
    ledger = folder / "data" / "ledger.sqlite"
    queued, _, _ = _outbox_counts(ledger)
    desk = subprocess.Popen(
        [PYTHON, "-c",
         "import sys; from bench.mqtt_drain import desk_process; "
         "desk_process(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))",
         str(port), str(folder / "desk" / "desk.key"), str(keys / "terminal.ed25519.pub"),
         str(folder / "desk.sqlite"), str(queued)],
        stdout=subprocess.PIPE, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert desk.stdout is not None
        if desk.stdout.readline().strip() != "READY":
            raise BenchError("the desk consumer did not start")
        spawned = spawn_until_ready(kiosk_argv(config), folder / "daemon.stderr")
        try:
            t0 = time.monotonic()
            ready = memory_kib(spawned.pid)
            rss_max, mid = ready["VmRSS"], None
            deadline = t0 + 900
            while (left := _outbox_counts(ledger)[0]) > 0:
                if time.monotonic() > deadline:
                    raise BenchError(f"the drain did not finish in 900 s ({left:,} left)")
                time.sleep(SAMPLE_S)
                rss = memory_kib(spawned.pid)["VmRSS"]
                rss_max = max(rss_max, rss)
                if mid is None and left <= queued // 2:
                    mid = rss
            drained_s = time.monotonic() - t0
            after = memory_kib(spawned.pid)
        finally:
            code = stop(spawned.proc)
        if code != 0:
            raise BenchError(f"the daemon exited with {code} on SIGTERM")
    finally:
        if desk.poll() is None:
            desk.kill()
        desk.wait(10)
    unacked, rows, sends = _outbox_counts(ledger)
    return MemoryRun(ready, mid if mid is not None else after["VmRSS"], after,
                     max(rss_max, after["VmRSS"]), drained_s, unacked, rows, sends), drained_s


def _floor_kib(argv: list[str], folder: Path) -> int:
    """VmRSS of an interpreter that imported what the daemon imports, then printed READY."""
    spawned = spawn_until_ready(argv, folder / "floor.stderr")
    try:
        return memory_kib(spawned.pid)["VmRSS"]
    finally:
        stop(spawned.proc)


def _mb_change(kib: int) -> str:
    sign = "±" if abs(kib) < 52 else "+" if kib > 0 else "−"  # under 0.05 MiB shows as 0.0
    return f"{sign}{fmt_mb(abs(kib))}"


def _memory_row(name: str, full: MemoryRun, limit: str, growth: str) -> Figure:
    peak = full.after["VmHWM"]
    return Figure(
        f"the agent's memory with {QUEUED:,} queued payments, {name}",
        f"{fmt_mb(full.ready['VmRSS'])} at READY → {fmt_mb(full.after['VmRSS'])} after "
        f"{full.held_s:.0f} s (peak {fmt_mb(peak)})",
        f"{limit}; target {fmt_mb(RSS_TARGET_KIB)}",
        f"{fmt_pct(peak / RSS_TARGET_KIB)}; {growth}",
        "≤ 60 MB (peak)",
        verdict(peak <= RSS_TARGET_KIB),
    )


def _brief(label: str, r: MemoryRun) -> str:
    return (f"{label} {r.ready['VmRSS'] / 1024:.1f} → {fmt_mb(r.after['VmRSS'])} "
            f"(peak {fmt_mb(r.after['VmHWM'])})")


def _timeline(label: str, r: MemoryRun) -> str:
    return (f"{label} {fmt_mb(r.ready['VmRSS'])} → {fmt_mb(r.mid)} → "
            f"{fmt_mb(r.after['VmRSS'])} (peak {fmt_mb(r.after['VmHWM'])})")


def agent_memory(ctx: Context) -> tuple[list[Figure], list[str]]:
    """The core daemon with MQTT on: 100,000 queued vs an empty outbox, broker down / up."""
    hold_s = 5.0 if ctx.quick else 10.0
    small = 2 * MqttConfig().inflight  # a queue of two windows: the broker-up control
    with scratch_dir(ctx, "mqtt-memory") as root:
        dirs = {name: root / name for name in ("empty", "small", "queued", "drained")}
        for folder in dirs.values():
            (folder / "data").mkdir(parents=True)
        ledger = Ledger(dirs["empty"] / "data" / "ledger.sqlite", TERMINAL)
        ledger.open()  # migrated, no payments: the outbox is empty
        ledger.close()
        build(dirs["small"] / "data" / "ledger.sqlite", small, unsent=small)
        fill = build(dirs["queued"] / "data" / "ledger.sqlite", QUEUED, unsent=QUEUED)
        if _outbox_counts(dirs["queued"] / "data" / "ledger.sqlite")[0] != QUEUED:
            raise BenchError("the filled ledger does not hold every payment in the outbox")
        shutil.copyfile(dirs["queued"] / "data" / "ledger.sqlite",
                        dirs["drained"] / "data" / "ledger.sqlite")
        floor = _floor_kib([PYTHON, "-c", IMPORTS], root)
        sync_floor = _floor_kib([PYTHON, "-c", SYNC_IMPORTS], root)
        crypto_floor = _floor_kib([PYTHON, "-c", CRYPTO_IMPORTS], root)
        down = _free_port()  # nothing listens there: every connect is refused
        runs: dict[str, MemoryRun] = {}
        runs["empty-down"] = _memory_run(dirs["empty"], down, hold_s)
        runs["queued-down"] = _memory_run(dirs["queued"], down, hold_s)
        (root / "broker").mkdir()
        broker, port = start_broker(root / "broker")
        try:
            runs["empty-up"] = _memory_run(dirs["empty"], port, hold_s)
            runs["small-up"] = _memory_run(dirs["small"], port, hold_s)
            runs["queued-up"] = _memory_run(dirs["queued"], port, hold_s)
            runs["drained"], drained_s = _drained_run(dirs["drained"], port)
        finally:
            broker.terminate()
            broker.wait(10)
    q_down, q_up, s_up = runs["queued-down"], runs["queued-up"], runs["small-up"]
    drained = runs["drained"]
    if drained.unacked != 0:
        raise BenchError(f"the drain left {drained.unacked:,} payments in the outbox")
    if q_down.sends:
        raise BenchError("with no broker the agent still counted sends: the setup is wrong")
    for r in (q_up, s_up):
        if r.sent_rows == 0:
            raise BenchError("with the broker up the agent sent nothing: it never connected "
                             "(see the daemon's stderr)")
    for key, expected in (("queued-down", QUEUED), ("queued-up", QUEUED), ("small-up", small)):
        if runs[key].unacked != expected:
            raise BenchError(f"{key}: {runs[key].unacked:,} payments left in the outbox, "
                             f"expected {expected:,} (nothing may acknowledge them)")

    def peak_change(a: MemoryRun, b: MemoryRun) -> str:
        return _mb_change(a.after["VmHWM"] - b.after["VmHWM"])

    figures = [
        _memory_row("broker down", q_down, _brief("empty outbox", runs["empty-down"]),
                    f"{peak_change(q_down, runs['empty-down'])} vs empty"),
        _memory_row("broker up, no desk", q_up,
                    f"{_brief(f'{small:,} queued', s_up)}; "
                    f"{_brief('empty outbox', runs['empty-up'])}",
                    f"{peak_change(q_up, s_up)} vs {small:,} queued, "
                    f"{peak_change(q_up, runs['empty-up'])} vs empty"),
        _memory_row(f"drained by a desk ({drained_s:.0f} s)", drained,
                    f"floors: imports {fmt_mb(floor)}, + sync.agent {fmt_mb(sync_floor)}, "
                    f"+ cryptography's Ed25519 {fmt_mb(crypto_floor)}",
                    f"{peak_change(drained, runs['empty-up'])} vs empty outbox"),
    ]
    details = [
        f"floors, same run: an interpreter importing the daemon's modules "
        f"{fmt_mb(floor)}; with sync.agent too (paho-mqtt; Ed25519 through the system "
        f"libcrypto, sync/ed25519.py) {fmt_mb(sync_floor)} ({_mb_change(sync_floor - floor)}); "
        f"the same plus the `cryptography` Ed25519 the agent used before {fmt_mb(crypto_floor)} "
        f"({_mb_change(crypto_floor - sync_floor)}). The `startup` figure runs the daemon "
        "with MQTT off.",
        f"drained: all {QUEUED:,} payments sent, acknowledged by a desk consumer in its own "
        f"process and out of the outbox in {drained_s:.0f} s; "
        + _timeline("VmRSS at READY → half-way → end", drained) + ".",
        f"VmRSS at READY → {hold_s / 2:g} s → {hold_s:g} s: "
        + "; ".join([
            _timeline("broker down, queued", q_down),
            _timeline("empty", runs["empty-down"]),
            _timeline("broker up, queued", q_up),
            _timeline(f"{small:,} queued", s_up),
            _timeline("empty", runs["empty-up"]),
        ]) + ".",
        f"broker up, no desk: {q_up.sent_rows:,} distinct records went out "
        f"(mqtt.inflight = {MqttConfig().inflight}) and {q_up.sends:,} record sends were "
        f"PUBACKed in {q_up.held_s:.0f} s (mqtt.resend_after_s = {MEMORY_RESEND_S:g} here, "
        f"{MqttConfig().resend_after_s:g} s by default, so the window went out again "
        f"{q_up.sends // max(1, q_up.sent_rows) - 1} times); all {QUEUED:,} payments were "
        "still in the outbox at the end. Broker down: nothing was sent.",
        f"queued ledger: {fill['payments']:,} payments, all {fill['unsent']:,} in the outbox "
        f"(never sent, never acknowledged), {fill['bytes'] / 2**20:.0f} MiB file, built "
        f"in {fill['seconds']:.1f} s (bench/ledger_fill.py), the same file for both cases; "
        f"VmRSS sampled every {SAMPLE_S:g} s; MB read as MiB.",
    ]
    return figures, details


def run(ctx: Context) -> BenchResult:
    n = 2000 if ctx.quick else 10_000
    result = BenchResult(KEY, TITLE, params=f"{n} payments per drain; {n} raw publishes; "
                                            "memory: one daemon start per case, "
                                            f"{5 if ctx.quick else 10} s each")
    with scratch_dir(ctx, "mqtt") as folder:
        broker, port = start_broker(folder)
        try:
            payload = b"x" * 700  # about one signed payment record
            raw = raw_publish_rate(port, n, payload)
            default = _drain_rate(folder, port, n, 1000, 50)
            single = _drain_rate(folder, port, min(n, 2000), 1000, 1)
        finally:
            broker.terminate()
            broker.wait(10)
    ratio = default[0] / raw
    result.figures.append(
        Figure(
            "drain, acked end-to-end (defaults: 1000 in flight, 50 per message)",
            fmt_rate(default[0]),
            f"raw paho QoS 1 {fmt_rate(raw)}",
            fmt_pct(ratio),
            f"≥ {fmt_pct(TARGET_RATIO)}",
            verdict(ratio >= TARGET_RATIO),
        )
    )
    result.figures.append(
        Figure(
            "drain, one record per message (batch 1)",
            fmt_rate(single[0]),
            f"raw paho QoS 1 {fmt_rate(raw)}",
            fmt_pct(single[0] / raw),
            "information",
            verdict(None),
        )
    )
    result.details += [default[1], single[1],
                       "Each record: Ed25519-signed by the terminal, verified by the desk, "
                       "committed by the desk before its signed ack, ack committed by the "
                       "terminal (fsync) before the row leaves the outbox."]
    figures, details = agent_memory(ctx)
    result.figures += figures
    result.details += [f"memory: {d}" for d in details]
    return result
