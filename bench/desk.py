"""Figures: the desk service (`kiosk desk serve`) on PostgreSQL.

1. Ingest. A fleet of simulated terminals, each with a real ledger (bench/ledger_fill.py,
   every payment still in the outbox) and its own Ed25519 key: their messages are made by
   the terminal's own drain (sync/drain.py `Drain`, the bytes an agent publishes), sealed
   before the clock starts. One paho client publishes them all (QoS 1) to a local
   mosquitto, interleaved across terminals, and counts the desk's signed acks (each
   verified, as a terminal does). A payment counts when its seq has been acknowledged: the
   worker verified the batch, committed it to PostgreSQL (fsync on) and sent the ack. Run
   with 1 worker, then 3 (each `python -m kiosk desk … serve`, its own process, on the
   MQTT 5 shared subscription), each time on a fresh, migrated database; then the database
   must hold every payment exactly once. Two shapes: 50 records per message (the default
   `mqtt.batch`: a backlog after an outage) and 1 (a payment sent as it happens).
   The limit, same run, same broker, same publisher code: bare paho QoS 1
   publish→subscribe of the same payloads (no signature check, no database, no ack),
   counted at the subscriber, in payments per second.
2. Operator search on 1,000,000 payments (100,000 with --quick): the desk's schema after
   its own migrations, seeded with COPY (rows shaped by the desk's own `payment_row`),
   ANALYZEd, then the desk's own `find_payments` timed for what an operator types: a
   payment id off a receipt, a full account, a phone read out as "+7 916 123-45-67", the
   last 4 digits, a terminal and a one-day window. The limit: a primary-key lookup round
   trip through the same engine. Each query's plan (EXPLAIN) is printed: a sequential scan
   means no index serves that query.
3. A worker's memory: VmHWM of each worker process at the end of its ingest run, beside
   its VmRSS once connected and idle.

docs/performance-targets.md sets no number for the desk: the figures are INFO.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import (
    PYTHON,
    REPO,
    BenchError,
    BenchResult,
    Context,
    Figure,
    fmt_mb,
    fmt_ms,
    fmt_rate,
    median,
    percentile,
    scratch_dir,
    verdict,
)
from bench.daemon import memory_kib, stop
from bench.ledger_fill import build
from bench.mqtt_drain import start_broker

KEY = "desk"
TITLE = ("Desk: ingest by `kiosk desk serve` workers on PostgreSQL beside raw broker "
         "throughput; operator search on 1,000,000 payments; a worker's memory")
NO_TARGET = "none set (information)"
WORKER_COUNTS = (1, 3)
BATCHES = (50, 1)  # records per message: the default mqtt.batch (a backlog), one (live)
PUBLISH_INFLIGHT = 1000  # the publisher's QoS 1 window (as bench/mqtt_drain.py's raw)
HEALTH_INTERVAL_S = 0.5  # the workers' status files: how we see them connected
SUBSCRIBE_SETTLE_S = 1.0  # after CONNACK, for the workers' SUBSCRIBEs to be granted
INGEST_TIMEOUT_S = 900.0
SEARCH_ROWS_FULL, SEARCH_ROWS_QUICK = 1_000_000, 100_000
SEARCH_TERMINALS_FULL, SEARCH_TERMINALS_QUICK = 2_000, 200
ACCOUNTS_PER_CUSTOMER = 5  # payments per account on average: customers pay again
YEAR_MS = 365 * 24 * 3600 * 1000
DAY_MS = 24 * 3600 * 1000
PK_SAMPLES = 500
CPU_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sizes:
    terminals: int
    per_terminal: int
    search_rows: int
    search_terminals: int
    search_samples: int  # per query kind, at most
    search_budget_s: float  # per query kind, at most


def sizes(quick: bool) -> Sizes:
    if quick:
        return Sizes(20, 50, SEARCH_ROWS_QUICK, SEARCH_TERMINALS_QUICK, 100, 15.0)
    return Sizes(100, 200, SEARCH_ROWS_FULL, SEARCH_TERMINALS_FULL, 100, 60.0)


def _pg() -> Any:
    """The tests' throwaway cluster (tests/desk/pg.py), durable here: fsync on."""
    from tests.desk.pg import PgCluster, pg_bin

    if pg_bin("initdb") is None or pg_bin("postgres") is None:
        raise BenchError("PostgreSQL is not installed (scripts/system-deps.sh installs it)")
    return PgCluster(settings=())


@contextmanager
def _cluster() -> Iterator[Any]:
    pg = _pg()
    try:
        pg.init().start()
        yield pg
    finally:
        pg.remove()


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CPU_TICK


# == 1. ingest ==========================================================================


@dataclass
class Fleet:
    """Terminals' keys and their sealed messages, per batch size."""

    ids: list[str]
    per_terminal: int
    keys_dir: Path  # <terminal>.pub files: the desk's --terminal-keys
    desk_key: Path
    messages: dict[int, list[tuple[str, bytes]]]  # batch -> (topic, payload), interleaved
    payload_bytes: dict[int, int]  # batch -> mean message size
    build_s: float


def build_fleet(folder: Path, terminals: int, per_terminal: int) -> Fleet:
    """Every terminal's ledger with `per_terminal` payments in the outbox, drained by the
    terminal's own Drain into sealed messages (untimed)."""
    from kiosk.ledger import Ledger
    from sync import topics
    from sync.drain import Drain
    from sync.keys import key_id, write_signing_key

    t0 = time.perf_counter()
    keys_dir = folder / "terminal-keys"
    desk_key = folder / "desk" / "desk.ed25519.key"
    write_signing_key(desk_key)
    ids = [f"B{i:04d}" for i in range(terminals)]
    per_term: dict[int, list[list[tuple[str, bytes]]]] = {b: [] for b in BATCHES}
    for tid in ids:
        key = write_signing_key(keys_dir / f"{tid}.key")
        (keys_dir / f"{tid}.key").unlink()  # the desk's folder holds public keys only
        path = folder / "ledgers" / f"{tid}.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        build(path, per_terminal, unsent=per_terminal, terminal_id=tid)
        ledger = Ledger(path, tid)
        ledger.open()
        try:
            for b in BATCHES:
                drain = Drain(ledger, tid, key, key_id(tid, key.public_key()),
                              inflight=per_terminal, batch=b)
                drain.reset(f"bench-{tid}")
                batches = drain.next_batches()
                if sum(len(x.seqs) for x in batches) != per_terminal:
                    raise BenchError(f"{tid}: the drain did not hand out every payment")
                per_term[b].append([(topics.topic(tid, x.leaf), x.payload) for x in batches])
        finally:
            ledger.close()
    messages = {b: [m for group in itertools.zip_longest(*lists) for m in group if m]
                for b, lists in per_term.items()}
    sizes_ = {b: sum(len(p) for _, p in msgs) // len(msgs) for b, msgs in messages.items()}
    return Fleet(ids, per_terminal, keys_dir, desk_key, messages, sizes_, time.perf_counter() - t0)


class _Counter:
    """Counts arrivals until `expected`; notes the instant of the last one."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.end = 0.0
        self.done = threading.Event()
        self.lock = threading.Lock()

    def add(self, n: int) -> None:
        with self.lock:
            self.count += n
            if self.count >= self.expected and not self.done.is_set():
                self.end = time.perf_counter()
                self.done.set()


def _client(port: int, client_id: str, on_message: Callable[..., None] | None = None,
            subscribe: str | None = None) -> mqtt.Client:
    """A connected paho v5 client, its subscription granted."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(PUBLISH_INFLIGHT)
    granted = threading.Event()
    c.on_subscribe = lambda *_a: granted.set()
    if on_message is not None:
        c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.loop_start()
    deadline = time.monotonic() + 10
    while not c.is_connected():
        if time.monotonic() > deadline:
            c.loop_stop()
            raise BenchError(f"{client_id}: could not connect to mosquitto")
        time.sleep(0.01)
    if subscribe is not None:
        c.subscribe(subscribe, qos=1)
        if not granted.wait(10):
            raise BenchError(f"{client_id}: subscription to {subscribe} not granted")
    return c


def _close(*clients: mqtt.Client) -> None:
    for c in clients:
        c.disconnect()
        c.loop_stop()


def _publish_all(c: mqtt.Client, messages: list[tuple[str, bytes]], counter: _Counter,
                 what: str) -> float:
    """Publish everything (QoS 1), wait for the counter; seconds from the first publish
    to the last arrival."""
    t0 = time.perf_counter()
    for topic, payload in messages:
        c.publish(topic, payload, qos=1)
    timeout = INGEST_TIMEOUT_S
    if not counter.done.wait(timeout):
        raise BenchError(f"{what}: {counter.count} of {counter.expected} after {timeout:.0f} s")
    return counter.end - t0


def raw_rate(port: int, messages: list[tuple[str, bytes]]) -> float:
    """Bare paho QoS 1 publish→subscribe of the same payloads: messages per second."""
    counter = _Counter(len(messages))
    sub = _client(port, "bench-desk-raw-sub", lambda *_a: counter.add(1), "bench/raw/#")
    pub = _client(port, "bench-desk-raw-pub")
    try:
        raw = [(f"bench/raw/{topic}", payload) for topic, payload in messages]
        return len(messages) / _publish_all(pub, raw, counter, "raw publish→subscribe")
    finally:
        _close(pub, sub)


@dataclass
class WorkerRun:
    name: str
    proc: subprocess.Popen[bytes]
    status_path: Path
    log_path: Path
    idle_rss_kib: int = 0
    end: dict[str, int] = field(default_factory=dict)
    cpu_s: float = 0.0
    status: dict[str, Any] = field(default_factory=dict)

    def read_status(self) -> dict[str, Any]:
        from sync.desk_service.service import StatusFile

        return StatusFile(self.status_path).read() or {}

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""


def start_workers(k: int, port: int, fleet: Fleet, url: str, folder: Path) -> list[WorkerRun]:
    """`python -m kiosk desk … serve` × k, each its own process; returns once every one
    is connected (its status file says so) and its subscriptions have settled."""
    runs = []
    for i in range(k):
        name = f"bench-desk-w{i}"
        log_path = folder / f"{name}.log"
        status_path = folder / f"{name}.status.json"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [PYTHON, "-m", "kiosk", "desk", "--host", "127.0.0.1", "--port", str(port),
                 "--key", str(fleet.desk_key), "--terminal-keys", str(fleet.keys_dir),
                 "--db", url, "--client-id", name, "serve", "--status-file", str(status_path),
                 "--health-interval", str(HEALTH_INTERVAL_S)],
                cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        runs.append(WorkerRun(name, proc, status_path, log_path))
    deadline = time.monotonic() + 60
    for w in runs:
        while not w.read_status().get("broker_connected"):
            if w.proc.poll() is not None or time.monotonic() > deadline:
                stop_workers(runs)
                raise BenchError(f"{w.name} did not connect:\n{w.log_tail()}")
            time.sleep(0.05)
    time.sleep(SUBSCRIBE_SETTLE_S)
    for w in runs:
        w.idle_rss_kib = memory_kib(w.proc.pid)["VmRSS"]
        w.cpu_s = _cpu_s(w.proc.pid)
    return runs


def stop_workers(runs: list[WorkerRun]) -> None:
    for w in runs:
        if w.proc.poll() is None:
            try:
                w.end = memory_kib(w.proc.pid)
                w.cpu_s = _cpu_s(w.proc.pid) - w.cpu_s
            except OSError:
                pass
            stop(w.proc)
        w.status = w.read_status()


@dataclass
class Ingest:
    workers: int
    batch: int
    payments: int
    seconds: float
    runs: list[WorkerRun]
    stored: int
    distinct: int
    broker_cpu_s: float

    @property
    def rate(self) -> float:
        return self.payments / self.seconds


def ingest(pg: Any, port: int, broker_pid: int, fleet: Fleet, workers: int, batch: int,
           folder: Path) -> Ingest:
    """One timed run on a fresh, migrated database; every payment must end up stored once
    and acknowledged."""
    from sqlalchemy import func, select

    from sync.desk_service import schema as s
    from sync.desk_service.db import DeskDB
    from sync.envelope import EnvelopeError, open_envelope
    from sync.keys import key_id, load_public_key

    url = pg.new_database()
    store = DeskDB(url)  # the desk's own migrations, before the workers start
    store.close()
    desk_pub = load_public_key(fleet.desk_key.with_suffix(".pub"))
    desk_keys = {key_id("desk", desk_pub): desk_pub}
    messages = fleet.messages[batch]
    expected = len(fleet.ids) * fleet.per_terminal
    counter = _Counter(expected)
    acked: dict[str, set[int]] = {tid: set() for tid in fleet.ids}
    refused = [0]

    def on_ack(_c: Any, _u: Any, msg: Any) -> None:
        try:
            body = open_envelope(bytes(msg.payload), "ack", desk_keys).body
        except EnvelopeError:
            refused[0] += 1
            return
        seen = acked.get(str(body.get("terminal_id")), set())
        before = len(seen)
        seen.update(body.get("seqs", []))
        counter.add(len(seen) - before)

    work = folder / f"w{workers}-b{batch}"
    work.mkdir()
    runs = start_workers(workers, port, fleet, url, work)
    pub = None
    try:
        pub = _client(port, "bench-desk-fleet", on_ack, "kiosk/v1/+/ack")
        b0 = _cpu_s(broker_pid)
        seconds = _publish_all(pub, messages, counter,
                               f"ingest with {workers} worker(s), batch {batch}")
        broker_cpu = _cpu_s(broker_pid) - b0
    finally:
        stop_workers(runs)
        if pub is not None:
            _close(pub)
    if refused[0]:
        raise BenchError(f"{refused[0]} acks failed their signature check")
    store = DeskDB(url, migrate_now=False)
    try:
        with store.engine.connect() as conn:
            p = s.payments
            stored = int(conn.execute(select(func.count()).select_from(p)).scalar_one())
            distinct = int(conn.execute(select(func.count()).select_from(
                select(p.c.terminal_id, p.c.payment_id).distinct().subquery())).scalar_one())
    finally:
        store.close()
    if not stored == distinct == expected:
        raise BenchError(f"the desk holds {stored} payments ({distinct} distinct), "
                         f"expected {expected} exactly once")
    return Ingest(workers, batch, expected, seconds, runs, stored, distinct, broker_cpu)


# == 2. operator search =================================================================

PROVIDERS = (("mts", True), ("beeline", True), ("megafon", True), ("tele2", True),
             ("rostelecom", False), ("mosenergosbyt", False))  # (id, account is a phone)
STATUSES = ("processed",) * 96 + ("queued", "failed", "reprocessed", "accepted")
UNCLAIMED_EVERY = 100  # one unclaimed credit (no account) per this many payments


@dataclass(frozen=True)
class Sample:
    terminal_id: str
    payment_id: str
    account: str
    created_ms: int


def _accounts(rng: random.Random, n: int) -> list[tuple[str, str]]:
    """(provider, account) pairs: phones are 10 digits from 9, others 12 digits."""
    out = []
    for _ in range(n):
        provider, phone = rng.choice(PROVIDERS)
        digits = 9 if phone else 12
        head = "9" if phone else ""
        out.append((provider, head + "".join(rng.choice("0123456789") for _ in range(digits))))
    return out


def seed(url: str, rows: int, terminals: int, samples: int) -> tuple[float, list[Sample]]:
    """COPY `rows` payments into the desk's `payments` table (migrated first), spread over
    a year and `terminals` terminals; returns the seconds taken and `samples` rows to
    look for (phones only, so every kind of query has a target)."""
    import psycopg

    from kiosk.ledger.store import NUMBER_WIDTH
    from sync.desk_service import schema as s
    from sync.desk_service.db import DeskDB, payment_row

    t0 = time.perf_counter()
    DeskDB(url).close()  # the desk's own migrations: the schema is the desk's
    rng = random.Random(7)
    pool = _accounts(rng, max(1, rows // ACCOUNTS_PER_CUSTOMER))
    per_terminal = rows // terminals
    start_ms = int(time.time() * 1000) - YEAR_MS
    spacing = YEAR_MS // max(1, rows)
    pick = set(rng.sample(range(rows), min(rows, samples * 4)))
    found: list[Sample] = []
    columns = [c.name for c in s.payments.columns]
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY payments ({', '.join(columns)}) FROM STDIN") as copy:
            for i in range(per_terminal * terminals):
                n, t = divmod(i, terminals)
                tid = f"D{t:05d}"
                number = n + 1
                pid = f"{tid}-{number:0{NUMBER_WIDTH}d}"
                created = start_ms + i * spacing
                provider, account = pool[rng.randrange(len(pool))]
                inserted = rng.choice((10_000, 50_000, 100_000, 150_000, 500_000))
                fee = inserted * 3 // 100
                unclaimed = i % UNCLAIMED_EVERY == UNCLAIMED_EVERY - 1
                data = {
                    "id": pid, "number": number, "kind": "unclaimed" if unclaimed else "payment",
                    "session_id": number, "provider_id": None if unclaimed else provider,
                    "account": None if unclaimed else account, "inserted_minor": inserted,
                    "commission_minor": 0 if unclaimed else fee,
                    "credited_minor": 0 if unclaimed else inserted - fee, "currency": "RUB",
                    "status": rng.choice(STATUSES), "note": None, "created_ms": created,
                    "reprocess_count": 0, "terminal_id": tid,
                    "bills": [{"amount_minor": inserted, "currency": "RUB", "count": 1}],
                }
                text = json.dumps(data, ensure_ascii=False, sort_keys=True)
                row = payment_row(tid, pid, 0, number, data, text, created + 60_000)
                copy.write_row([row[c] for c in columns])
                if i in pick and not unclaimed and len(account) == 10:
                    found.append(Sample(tid, pid, account, created))
        conn.commit()
        conn.execute("ANALYZE payments")
        conn.commit()
    rng.shuffle(found)
    return time.perf_counter() - t0, found[:samples]


def _phone_as_read(account: str) -> str:
    """"9161234567" as a caller reads it out: "+7 916 123-45-67"."""
    return f"+7 {account[:3]} {account[3:6]}-{account[6:8]}-{account[8:]}"


QUERY_KINDS: tuple[tuple[str, Callable[[Sample], dict[str, Any]]], ...] = (
    ("payment id off the receipt", lambda x: {"text": x.payment_id}),
    ("full account", lambda x: {"text": x.account}),
    ("phone typed +7 with dashes", lambda x: {"text": _phone_as_read(x.account)}),
    ("last 4 digits", lambda x: {"text": x.account[-4:]}),
    ("terminal + one-day window", lambda x: {
        "terminal_id": x.terminal_id, "since_ms": x.created_ms - DAY_MS // 2,
        "until_ms": x.created_ms + DAY_MS // 2}),
)


@dataclass
class SearchKind:
    name: str
    times: list[float]
    hits: int  # queries that found their target payment (the window / digits: any row)
    plan: str


def _plan_nodes(plan: dict[str, Any]) -> list[str]:
    """The scans of an EXPLAIN (ANALYZE, FORMAT JSON) plan, depth first: 'Seq Scan',
    'Index Scan using ix_… (read 999,950 rows, kept 50)' when a filter threw rows away."""
    label = ("Parallel " if plan.get("Parallel Aware") else "") + plan.get("Node Type", "?")
    if "Index Name" in plan:
        label += f" using {plan['Index Name']}"
    if "Rows Removed by Filter" in plan:
        loops = int(plan.get("Actual Loops", 1))
        kept = int(plan.get("Actual Rows", 0)) * loops
        read = kept + int(plan["Rows Removed by Filter"]) * loops
        about = "≈" if loops > 1 else ""  # PostgreSQL rounds per-loop averages
        label += f" (read {about}{_fmt_n(read)} rows, kept {about}{_fmt_n(kept)})"
    out = [label] if "Scan" in label else []
    for child in plan.get("Plans", []):
        out += _plan_nodes(child)
    return out


def search(url: str, targets: list[Sample], budget_s: float) -> tuple[list[SearchKind],
                                                                      list[float]]:
    """Time the desk's find_payments per query kind (round-robin over the kinds, up to
    `budget_s` each) and a primary-key lookup through the same engine."""
    from sqlalchemy import event, select

    from sync.desk_service import schema as s
    from sync.desk_service.db import make_engine
    from sync.desk_service.search import Query, find_payments

    engine = make_engine(url)
    seen: list[tuple[str, Any]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _capture(_conn, _cur, statement, params, _ctx, _many) -> None:  # type: ignore[no-untyped-def]
        seen.append((statement, params))

    try:
        kinds = [SearchKind(name, [], 0, "") for name, _ in QUERY_KINDS]
        for (_, make), kind in zip(QUERY_KINDS, kinds, strict=True):  # warm-up and plans
            find_payments(engine, Query(**make(targets[0])))
            statement, params = seen[-1]
            with engine.connect() as conn:
                plan: Any = conn.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + statement,
                                            params).scalar_one()
            plan = json.loads(plan) if isinstance(plan, str) else plan
            kind.plan = " → ".join(_plan_nodes(plan[0]["Plan"])) or "no scan"
        spent = [0.0] * len(kinds)
        for target in targets:
            for k, ((_, make), kind) in enumerate(zip(QUERY_KINDS, kinds, strict=True)):
                if spent[k] >= budget_s:
                    continue
                q = Query(**make(target))
                t0 = time.perf_counter()
                rows = find_payments(engine, q)
                dt = time.perf_counter() - t0
                spent[k] += dt
                kind.times.append(dt)
                if rows and (q.terminal_id or q.text[-4:] == target.account[-4:]
                             or any(r["payment_id"] == target.payment_id for r in rows)):
                    kind.hits += 1
            if all(x >= budget_s for x in spent):
                break
        p = s.payments
        pk_times = []
        for i in range(PK_SAMPLES):
            x = targets[i % len(targets)]
            stmt = select(p.c.terminal_id, p.c.payment_id, p.c.status).where(
                p.c.terminal_id == x.terminal_id, p.c.payment_id == x.payment_id,
                p.c.reprocess_count == 0)
            t0 = time.perf_counter()
            with engine.connect() as conn:
                found = conn.execute(stmt).all()
            pk_times.append(time.perf_counter() - t0)
            if len(found) != 1:
                raise BenchError(f"primary-key lookup of {x.payment_id} found {len(found)}")
    finally:
        engine.dispose()
    return kinds, pk_times


# == the figures ========================================================================


def _fmt_n(x: float) -> str:
    return f"{x:,.0f}".replace(",", " ")


def _ingest_figures(fleet: Fleet, raws: dict[int, float],
                    runs: list[Ingest]) -> tuple[list[Figure], list[str]]:
    figures, details = [], []
    for r in runs:
        raw_pay = raws[r.batch] * r.batch  # payments per second the broker alone carried
        shape = ("50 records per message (backlog)" if r.batch == 50
                 else f"{r.batch} record(s) per message (live)")
        figures.append(Figure(
            f"ingest, {r.workers} worker{'s' if r.workers > 1 else ''}, {shape}",
            f"{fmt_rate(r.rate)} payments",
            f"raw paho QoS 1 publish→subscribe {fmt_rate(raw_pay)} payments "
            f"({fmt_rate(raws[r.batch])} messages)",
            f"{r.rate / raw_pay * 100:.1f}%", NO_TARGET, verdict(None)))
        shares = ", ".join(f"{w.status.get('new_payments', '?')}" for w in r.runs)
        cpu = ", ".join(f"{w.cpu_s:.1f}" for w in r.runs)
        details.append(
            f"ingest {r.workers} worker(s), batch {r.batch}: {_fmt_n(r.payments)} payments in "
            f"{r.seconds:.1f} s, stored {r.stored} ({r.distinct} distinct) and every seq "
            f"acknowledged; payments stored per worker: {shares}; worker CPU {cpu} s; "
            f"mosquitto {r.broker_cpu_s:.1f} CPU s; duplicates "
            f"{sum(int(w.status.get('duplicates', 0)) for w in r.runs)}, quarantined "
            f"{sum(int(w.status.get('quarantined', 0)) for w in r.runs)}.")
    by = {(r.workers, r.batch): r for r in runs}
    for b in BATCHES:
        one, three = by.get((1, b)), by.get((3, b))
        if one and three:
            details.append(f"batch {b}: 3 workers / 1 worker = {three.rate / one.rate:.2f}× "
                           f"(on {os.cpu_count()} cores shared with PostgreSQL, mosquitto and "
                           "the publisher)")
    details.append(
        f"fleet: {len(fleet.ids)} terminals × {fleet.per_terminal} payments, each terminal a "
        "real ledger (bench/ledger_fill.py) drained by sync/drain.py into signed messages "
        f"(mean {fleet.payload_bytes[50]} bytes at 50 records, {fleet.payload_bytes[1]} at 1), "
        f"built in {fleet.build_s:.0f} s before any clock started; PostgreSQL with fsync on "
        "(synchronous_commit on: each worker transaction durable before its ack).")
    peak = max(runs, key=lambda r: max(w.end.get("VmHWM", 0) for w in r.runs))
    top = max(peak.runs, key=lambda w: w.end.get("VmHWM", 0))
    figures.append(Figure(
        "a worker's memory: VmHWM through the ingest run (highest worker)",
        fmt_mb(top.end.get("VmHWM", 0)),
        f"the same worker connected and idle: VmRSS {fmt_mb(top.idle_rss_kib)}",
        f"{top.end.get('VmHWM', 0) / max(1, top.idle_rss_kib):.2f}×", NO_TARGET,
        verdict(None)))
    details.append("worker memory (VmRSS idle → VmHWM at the end), per run: " + "; ".join(
        f"{r.workers}w/batch {r.batch}: " + ", ".join(
            f"{fmt_mb(w.idle_rss_kib)} → {fmt_mb(w.end.get('VmHWM', 0))}" for w in r.runs)
        for r in runs) + ".")
    return figures, details


def _search_figures(rows: int, seed_s: float, kinds: list[SearchKind],
                    pk: list[float]) -> tuple[list[Figure], list[str]]:
    pk50, pk99 = median(pk), percentile(pk, 99)
    figures = []
    for k in kinds:
        p50, p99 = median(k.times), percentile(k.times, 99)
        figures.append(Figure(
            f"search on {_fmt_n(rows)} payments: {k.name} (p50 / p99)",
            f"{fmt_ms(p50)} / {fmt_ms(p99)}",
            f"primary-key lookup {fmt_ms(pk50)} / {fmt_ms(pk99)}",
            f"{p99 / pk99:.{0 if p99 >= 10 * pk99 else 1}f}× at p99", NO_TARGET,
            verdict(None)))
    details = [
        f"search: the desk's find_payments (sync/desk_service/search.py) through its own "
        f"engine; {_fmt_n(rows)} payments COPYed into the migrated schema and ANALYZEd in "
        f"{seed_s:.0f} s; queries round-robin over the kinds, each kind at most its time "
        f"budget; the primary-key lookup: {len(pk)} round trips.",
        "search plans (EXPLAIN): " + "; ".join(f"{k.name}: {k.plan}" for k in kinds) + ".",
        "search samples and hits (the target payment among the rows; digits and window: any "
        "row): " + "; ".join(f"{k.name} {k.hits}/{len(k.times)}" for k in kinds) + ".",
    ]
    if any("Seq Scan" in k.plan or "read " in k.plan for k in kinds):
        details.append(
            "a Seq Scan, or a scan that reads far more rows than it keeps, means no index "
            "serves that query: find_payments matches ids and digits with LIKE '%…%' (a "
            "substring anywhere), which a B-tree index cannot answer, so PostgreSQL walks "
            "ix_payments_created_ms newest first and filters every row until it has "
            "`limit` matches (the whole table when fewer match: a full account, a payment "
            "id); a trigram index (pg_trgm GIN on payment_id and account_digits) or a "
            "prefix/suffix form of the query would serve it.")
    return figures, details


def run(ctx: Context) -> BenchResult:
    z = sizes(ctx.quick)
    result = BenchResult(
        KEY, TITLE,
        params=(f"ingest: {z.terminals} terminals × {z.per_terminal} payments, workers "
                f"{' and '.join(map(str, WORKER_COUNTS))}, {' and '.join(map(str, BATCHES))} "
                f"records per message; search: {_fmt_n(z.search_rows)} payments over "
                f"{_fmt_n(z.search_terminals)} terminals, up to {z.search_samples} queries or "
                f"{z.search_budget_s:.0f} s per kind"))
    with scratch_dir(ctx, "desk") as folder, _cluster() as pg:
        fleet = build_fleet(folder, z.terminals, z.per_terminal)
        (folder / "broker").mkdir()
        broker, port = start_broker(folder / "broker")
        try:
            raws = {b: raw_rate(port, fleet.messages[b]) for b in BATCHES}
            runs = [ingest(pg, port, broker.pid, fleet, w, b, folder)
                    for b in BATCHES for w in WORKER_COUNTS]
        finally:
            broker.terminate()
            broker.wait(10)
        figures, details = _ingest_figures(fleet, raws, runs)
        url = pg.new_database()
        seed_s, targets = seed(url, z.search_rows, z.search_terminals, z.search_samples)
        if not targets:
            raise BenchError("the seeded database gave no payments to search for")
        kinds, pk = search(url, targets, z.search_budget_s)
        s_figures, s_details = _search_figures(z.search_rows, seed_s, kinds, pk)
    result.figures += figures + s_figures
    result.details += details + s_details
    result.details.append(
        f"the machine is shared with other work (other sessions' builds and tests): the "
        f"workers, PostgreSQL, mosquitto and the publisher compete for {os.cpu_count()} "
        "cores with it, so these figures are pessimistic (see the machine line's CPU busy "
        "figure).")
    return result


def _main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.desk",
                                 description="the desk benchmark alone, printed, not written")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    from bench.common import pick_scratch_base
    from bench.report import print_result

    print_result(run(Context(quick=args.quick, scratch_base=pick_scratch_base())))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
