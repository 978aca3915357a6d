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
signature, no consumer). Target (DESIGN.md): ≥ 40 %.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import (
    PYTHON,
    REPO,
    BenchError,
    BenchResult,
    Context,
    Figure,
    fmt_pct,
    fmt_rate,
    scratch_dir,
    verdict,
)
from bench.ledger_fill import build

KEY = "mqtt_drain"
TITLE = "Outbox drain to mosquitto, acknowledged end-to-end by a desk consumer"
TARGET_RATIO = 0.40
TERMINAL = "T0001"


def _mosquitto() -> str:
    for path in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if path and os.access(path, os.X_OK):
            return path
    raise BenchError("mosquitto is not installed (scripts/system-deps.sh installs it)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_broker(folder: Path) -> tuple[subprocess.Popen, int]:
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
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise BenchError("mosquitto did not start")


def raw_publish_rate(port: int, n: int, payload: bytes) -> float:
    """paho QoS 1 publishes per second, counted at PUBACK."""
    done = threading.Event()
    count = [0]

    def on_publish(client, userdata, mid, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
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
    from kiosk.ledger import Ledger
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
    build(paths.ledger, n)
    with sqlite3.connect(paths.ledger) as db:
        db.execute("UPDATE outbox SET acked_ms = NULL, attempts = 0, last_sent_ms = NULL")
        db.execute("UPDATE payments SET status = 'queued'")
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


def run(ctx: Context) -> BenchResult:
    n = 2000 if ctx.quick else 10_000
    result = BenchResult(KEY, TITLE, params=f"{n} payments per drain; {n} raw publishes")
    with scratch_dir(ctx, "mqtt") as folder:
        broker, port = _start_broker(folder)
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
    return result
