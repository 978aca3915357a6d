"""A minimal desk: the other end of the MQTT contract, for tests, the demo and benches.

It consumes `payments` and `events` from every terminal, verifies each batch with the
terminal's pinned Ed25519 key, commits the records to its own SQLite file de-duplicated by
(terminal, seq) and by (terminal, payment id, reprocess count), and only then publishes a
signed `ack` (M8: the terminal's outbox empties on this ack, never on PUBACK). It keeps
the latest `state` and `health` of every terminal, signs and sends commands (MQTT v5
response topic + correlation data) and waits for their results, publishes signed,
retained config documents and payment statuses. `kiosk desk …` is its command line.

The store is sync/desk_service/db.py (SQLite file or PostgreSQL); `kiosk desk serve`
(sync/desk_service/service.py) runs this class as a long-lived worker on shared
subscriptions, several at once (docs/desk.md; the contract: docs/protocols/mqtt-contract.md).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Connection as DBConnection
from sqlalchemy.exc import IntegrityError

from kiosk.config import keepalive_for
from sync import desk_beat, topics
from sync.backoff import Backoff
from sync.connection import PROTOCOL_5, Connection, ConnSettings, Endpoint, Inbound, Subscription
from sync.desk_service.db import CommitStats, DeskDB, database_lost, record_problem
from sync.desk_service.takeover import Takeover
from sync.desk_service.takeover import describe as describe_share
from sync.ed25519 import PrivateKey, PublicKey
from sync.envelope import MAX_ENVELOPE_BYTES, EnvelopeError, open_envelope, peek_body, seal
from sync.keys import key_id, load_public_key

# Keys the desk signs and checks with: ours (sync/ed25519.py) or `cryptography` ones.
SigningKey = PrivateKey | Ed25519PrivateKey
VerifyKey = PublicKey | Ed25519PublicKey

log = logging.getLogger("sync.desk")

PROBE_PREFIX = "kiosk/v1/_desk/probe/"  # '_' is never in a terminal id: no terminal sees it
SHARE_GROUP = "kiosk-desk"
RACE_RETRIES = 3  # a batch retried after losing a key race with another worker
RETRY_MIN_S, RETRY_MAX_S = 0.2, 5.0  # waiting for a lost database to come back
MAX_REPORT_BYTES = MAX_ENVELOPE_BYTES  # state / health larger than this are quarantined
MAX_BATCH = 2000  # messages taken from the queue into one transaction
RESULT_POLL_S = 0.2  # a command's result stored by another worker: how often to look


@dataclass
class DeskStats:
    messages: int = 0
    records: int = 0  # every record delivered, duplicates included
    duplicates: int = 0
    new_payments: int = 0
    new_events: int = 0
    rejected: int = 0
    acks_sent: int = 0
    beats_sent: int = 0
    conflicts: int = 0
    stale_offline: int = 0
    quarantined: int = 0
    rejections: list[str] = field(default_factory=list)


@dataclass
class DeskHealth:
    """What `kiosk desk serve` reports: `ok`, or `degraded` while the database is lost
    (nothing is acknowledged then: the batch waits, unacknowledged, for it)."""

    state: str = "ok"
    since_ms: int = 0
    error: str | None = None
    held: int = 0  # messages waiting for the database
    outages: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


DeskStore = DeskDB  # the store's former name


@dataclass
class _Pending:
    """What a batch did; applied (stats, in-memory view, acks, reports) only after the
    transaction committed, so a retried batch counts once."""

    acks: dict[str, list[int]] = field(default_factory=dict)
    done: list[Inbound] = field(default_factory=list)
    commit: CommitStats = field(default_factory=CommitStats)
    messages: int = 0
    rejections: list[str] = field(default_factory=list)
    quarantined: int = 0
    reports: list[tuple[str, str, Any]] = field(default_factory=list)
    after: list[Callable[[], None]] = field(default_factory=list)

    def merge(self, other: _Pending) -> None:
        for terminal, seqs in other.acks.items():
            self.acks.setdefault(terminal, []).extend(seqs)
        for name in ("records", "duplicates", "new_payments", "new_events"):
            setattr(self.commit, name, getattr(self.commit, name) + getattr(other.commit, name))
        self.commit.conflicts.extend(other.commit.conflicts)
        self.messages += other.messages
        self.rejections.extend(other.rejections)
        self.quarantined += other.quarantined
        self.reports.extend(other.reports)
        self.after.extend(other.after)


def load_terminal_keys(directory: Path) -> dict[str, PublicKey]:
    """`<terminal id>.pub` files (PEM or base64 raw) in a folder."""
    keys: dict[str, PublicKey] = {}
    for path in sorted(directory.glob("*.pub")):
        keys[path.stem] = load_public_key(path)
    return keys


class Desk:
    def __init__(
        self,
        host: str,
        port: int,
        key: SigningKey,
        kid: str,
        terminal_keys: Mapping[str, VerifyKey],
        db_path: Path | str | DeskDB,
        client_id: str = "desk",
        tls: tuple[Path, Path, Path] | None = None,  # ca, cert, key
        on_report: Callable[[str, str, Any], None] | None = None,
        auto_ack: bool = True,
        reconnect_min_s: float = 0.5,
        consume: bool = True,
        ack_delay_s: float = 0.0,
        clock: Callable[[], float] = time.time,
        persistent: bool = True,
        share_group: str | None = None,
        results_for: str | None = None,
        watch_configs: tuple[str, ...] = (),
        protocol: str = PROTOCOL_5,
        endpoints: tuple[Endpoint, ...] = (),
        partition: tuple[int, int] | None = None,
        takeover_after_s: float = 0.0,
        connect_timeout_s: float = ConnSettings.connect_timeout_s,
        beat_s: float = 0.0,
    ) -> None:
        """`persistent=False`: a clean session that ends with the connection (one-shot
        tools leave nothing behind at the broker). `share_group`: payments and events on
        a shared subscription, so several consumers split the load instead of fighting.
        `results_for`: a tool that only waits for one terminal's command results.
        `watch_configs`: terminals whose retained config document to read.
        `protocol` "3.1.1" (a NATS cluster): no shared subscriptions, so every worker
        receives every message and the database's keys make the repeats no-ops;
        `partition` (k, n) then splits the work: this worker stores and acknowledges
        only the terminals whose crc32(id) % n == k (docs/fleet.md), and with
        `takeover_after_s` > 0 also those of a partition whose worker has sent no heartbeat for
        that long (sync/desk_service/takeover.py). `beat_s` > 0 (a consuming worker):
        publish the signed desk beat that often, from the storing thread
        (sync/desk_beat.py)."""
        self.key, self.kid = key, kid
        self.protocol = protocol
        if share_group and protocol != PROTOCOL_5:
            log.warning("MQTT %s has no shared subscriptions: this worker receives every "
                        "terminal's messages (the database de-duplicates; --partition "
                        "splits the work)", protocol)
            share_group = None
        if partition is not None and not 0 <= partition[0] < partition[1]:
            raise ValueError(f"partition {partition[0]}/{partition[1]}: need 0 <= k < n")
        self.partition = partition
        self.share_group = share_group
        why = desk_beat.every_problem(beat_s)
        if why:
            raise ValueError(f"beat every {beat_s:g} s: {why}")
        self.beat_s = beat_s if consume else 0.0
        self._next_beat = 0.0  # monotonic
        self.terminal_keys = {
            t: {key_id(t, pub): pub} for t, pub in terminal_keys.items()
        }
        self.store = db_path if isinstance(db_path, DeskDB) else DeskDB(db_path)
        self.takeover = (
            Takeover(self.store, client_id, partition, takeover_after_s,
                     connected=lambda: self.conn.connected)
            if partition is not None and takeover_after_s > 0 else None
        )
        self.stats = DeskStats()
        self.health_status = DeskHealth(since_ms=int(clock() * 1000))
        self.on_health: Callable[[DeskHealth], None] | None = None
        self.on_report = on_report
        self.auto_ack = auto_ack
        self.ack_delay_s = ack_delay_s  # tests: a slow desk, so a drain can be caught mid-way
        self.states: dict[str, dict[str, Any] | None] = {}  # None: the retained report was cleared
        self.health: dict[str, dict[str, Any] | None] = {}
        self.results: dict[str, dict[str, Any]] = {}
        self.result_props: dict[str, bytes | None] = {}
        # cmd id -> the broker's PUBACK reason ("Success": queued or delivered to the
        # terminal's session; "No matching subscribers": no session at all; a failure)
        self.publish_outcomes: dict[str, str] = {}
        self.last_publish = ""  # tag id of the latest config / payment_status publish
        self._cond = threading.Condition()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._stop = threading.Event()
        self.clock = clock
        self.retained_configs: dict[str, bytes] = {}
        self.probes: set[str] = set()
        self.conflicts: list[dict[str, Any]] = []
        subs: tuple[Subscription, ...]
        if consume:
            def flt(leaf: str) -> str:
                base = topics.desk_filter(leaf)
                shared = share_group and leaf in (topics.PAYMENTS, topics.EVENTS,
                                                  topics.CMD_RESULT)
                return f"$share/{share_group}/{base}" if shared else base

            subs = tuple(
                Subscription(flt(leaf), 1)
                for leaf in (topics.PAYMENTS, topics.EVENTS, topics.STATE, topics.HEALTH,
                             topics.CMD_RESULT)
            )
        else:
            result_topic = (
                topics.topic(results_for, topics.CMD_RESULT)
                if results_for
                else topics.desk_filter(topics.CMD_RESULT)
            )
            subs = (Subscription(result_topic, 1),)
        subs += tuple(Subscription(topics.topic(t, topics.CONFIG), 1) for t in watch_configs)
        if watch_configs:
            subs += (Subscription(PROBE_PREFIX + "#", 1),)
        ca, cert, tkey = tls if tls else (None, None, None)
        self.conn = Connection(
            ConnSettings(
                host=host,
                port=port,
                client_id=client_id,
                protocol=protocol,
                endpoints=endpoints,
                tls_ca=ca,
                tls_cert=cert,
                tls_key=tkey,
                subscriptions=subs,
                reconnect_min_s=reconnect_min_s,
                reconnect_max_s=max(reconnect_min_s, 5.0),
                connect_timeout_s=connect_timeout_s,
                # a CONNACK wait ends at the keep-alive too (kiosk/config.py
                # connect_timeout_problem): a longer connect timeout brings a longer one
                keepalive=keepalive_for(connect_timeout_s, ConnSettings.keepalive),
                max_inflight=1000,
                clean_start=not persistent,
                session_expiry_s=7 * 24 * 3600 if persistent else 0,
            ),
            self,
            name=f"{client_id}-net",
        )
        self._worker = threading.Thread(target=self._work, name=f"{client_id}-worker", daemon=True)

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> Desk:
        self._worker.start()
        self.conn.start()
        if self.takeover is not None:
            self.takeover.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(None)
        if self.takeover is not None:
            self.takeover.stop()
        self._worker.join(10)
        self.conn.stop(timeout=1.0)
        self.store.close()

    def __enter__(self) -> Desk:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- handler (network thread) ------------------------------------------------------
    def on_connected(self, connection_id: str, session_present: bool) -> None:
        pass

    def on_disconnected(self, reason: str) -> None:
        pass

    def on_message(self, msg: Inbound) -> None:
        self._queue.put(msg)

    def on_published(self, tag: Any, ok: bool, reason: str) -> None:
        if isinstance(tag, tuple) and tag and tag[0] in ("cmd", "pub"):
            with self._cond:
                self.publish_outcomes[tag[1]] = reason
                self._cond.notify_all()
        if not ok and reason not in ("connection lost", "not connected", "stopped"):
            log.warning("desk publish %s refused: %s", tag, reason)

    # -- worker ------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            self._maybe_beat()
            try:
                msg = self._queue.get(timeout=self._beat_wait())
            except queue.Empty:
                continue
            if msg is None:
                return
            batch = [msg]
            while len(batch) < MAX_BATCH:
                try:
                    m = self._queue.get_nowait()
                except queue.Empty:
                    break
                if m is None:
                    self._stop.set()
                    break
                batch.append(m)
            try:
                self._process(batch)
            except Exception:
                log.exception("desk worker error")

    def _beat_wait(self) -> float | None:
        return None if not self.beat_s else max(0.05, self._next_beat - time.monotonic())

    def _maybe_beat(self) -> None:
        """On the storing thread, between batches: a worker whose database is lost (its
        batch retried in _process) or whose link is down beats no more, and the
        terminals' ack watches stop counting (sync/desk_beat.py)."""
        now = time.monotonic()
        if not self.beat_s or now < self._next_beat:
            return
        if not self.conn.connected:
            self._next_beat = now + min(1.0, self.beat_s)  # look again soon, not spin
            return
        self._next_beat = now + self.beat_s
        share: tuple[int, Any] | None = None
        if self.partition is not None:
            k, n = self.partition
            share = (n, self.takeover.covers if self.takeover is not None else {k})
        body = desk_beat.beat_body(self.conn.settings.client_id, self.beat_s, self.now_ms(),
                                   share)
        self.conn.publish(desk_beat.TOPIC, seal(self.key, self.kid, desk_beat.PURPOSE, body),
                          qos=0, tag=("beat",))
        self.stats.beats_sent += 1

    def _process(self, batch: list[Inbound]) -> None:
        """Store the batch in one transaction, then (only then) acknowledge it.

        A message that cannot be taken (forged, malformed, oversized, failing to store)
        is quarantined in the same transaction: it never stops the worker. A lost
        database is retried until it is back (or the desk stops), acknowledging nothing
        meanwhile; a key race with another worker retries the batch, which then finds
        the other's rows."""
        races = 0
        backoff = Backoff(RETRY_MIN_S, RETRY_MAX_S)
        while True:
            pending = _Pending()
            try:
                with self.store.transaction() as db:
                    for msg in batch:
                        self._take(db, msg, pending, strict=races < RACE_RETRIES)
                break
            except IntegrityError as exc:
                if database_lost(exc):
                    raise
                races += 1
                log.info("desk batch lost a key race (%s), retrying", type(exc).__name__)
            except Exception as exc:
                if not database_lost(exc):
                    raise
                self._degraded(exc, len(batch) + self._queue.qsize())
                if self._stop.wait(backoff.next_delay()):
                    return  # stopping: nothing acknowledged, the terminals resend
        self._healthy()
        self._apply(pending)

    def _apply(self, pending: _Pending) -> None:
        c = pending.commit
        st = self.stats
        st.messages += pending.messages
        st.records += c.records
        st.duplicates += c.duplicates
        st.new_payments += c.new_payments
        st.new_events += c.new_events
        st.rejected += len(pending.rejections)
        st.rejections.extend(pending.rejections)
        st.quarantined += pending.quarantined
        st.conflicts += len(c.conflicts)
        self.conflicts.extend(c.conflicts)
        for fn in pending.after:
            fn()
        # Committed: now (and only now) the desk acknowledges.
        if self.ack_delay_s and pending.acks:
            time.sleep(self.ack_delay_s)
        if self.auto_ack:
            for terminal, seqs in pending.acks.items():
                self.ack(terminal, seqs)
        for msg in pending.done:
            self.conn.ack(msg)
        if self.on_report is not None:
            for terminal, leaf, value in pending.reports:
                self.on_report(terminal, leaf, value)

    def _degraded(self, exc: BaseException, held: int) -> None:
        h = self.health_status
        first = h.state != "degraded"
        if first:
            h.state, h.since_ms, h.outages = "degraded", self.now_ms(), h.outages + 1
        h.error, h.held = str(exc).splitlines()[0][:300] if str(exc) else repr(exc), held
        if first:
            log.error("desk DEGRADED: database unavailable (%s); %d message(s) held, "
                      "nothing acknowledged until it is back", h.error, held)
        if self.on_health is not None:
            self.on_health(h)

    def _healthy(self) -> None:
        h = self.health_status
        if h.state == "ok":
            return
        log.warning("desk OK again: database back after %.1f s", (self.now_ms() - h.since_ms)
                    / 1000)
        h.state, h.since_ms, h.error, h.held = "ok", self.now_ms(), None, 0
        if self.on_health is not None:
            self.on_health(h)

    def _take(self, db: DBConnection, msg: Inbound, pending: _Pending, strict: bool) -> None:
        split = topics.split(msg.topic)
        if split is None:
            if msg.topic.startswith(PROBE_PREFIX):
                probe = msg.topic[len(PROBE_PREFIX):]
                pending.after.append(lambda: self._probe_seen(probe))
            pending.done.append(msg)
            return
        terminal, leaf = split
        if leaf in (topics.PAYMENTS, topics.EVENTS, topics.CMD_RESULT) and not self.mine(
            terminal
        ):
            pending.done.append(msg)  # another worker's partition: it stores and acks it
            return
        if leaf == topics.CONFIG:
            payload = msg.payload
            pending.after.append(lambda: self._config_seen(terminal, payload))
            pending.done.append(msg)
            return
        one = _Pending()
        try:
            with db.begin_nested():
                self._handle(db, msg, terminal, leaf, one)
        except Exception as exc:
            if database_lost(exc) or (strict and isinstance(exc, IntegrityError)):
                raise
            one = _Pending()
            log.exception("desk could not store %s", msg.topic)
            self._quarantine(db, msg, terminal, leaf, "store_failed",
                             f"{type(exc).__name__}: {exc}"[:500], one)
        pending.merge(one)
        pending.done.append(msg)

    def mine(self, terminal: str) -> bool:
        """This worker's share of the terminals (all of them without a partition)."""
        if self.partition is None:
            return True
        k, n = self.partition
        part = desk_beat.partition_of(terminal, n)
        return part == k if self.takeover is None else self.takeover.share.takes(part, terminal)

    @property
    def share(self) -> str:
        """The partitions this worker takes now, for people: "all", "1/3", "1/3,0/3"."""
        if self.partition is None:
            return "all"
        k, n = self.partition
        if self.takeover is not None:
            return self.takeover.share.describe()
        return describe_share({k}, n, k)

    def _probe_seen(self, probe: str) -> None:
        with self._cond:
            self.probes.add(probe)
            self._cond.notify_all()

    def _config_seen(self, terminal: str, payload: bytes) -> None:
        with self._cond:
            self.retained_configs[terminal] = payload

    def _quarantine(self, db: DBConnection, msg: Inbound, terminal: str | None, leaf: str,
                    reason: str, detail: str, p: _Pending) -> None:
        """Keep what could not be taken, with why; an operator reads `kiosk desk
        quarantine`. The terminal gets no ack for it (its records are resent)."""
        self.store.quarantine(db, msg.topic, terminal, reason, detail, msg.payload,
                              self.now_ms())
        p.quarantined += 1
        p.rejections.append(f"{terminal}/{leaf}: {reason}")
        log.warning("desk quarantined %s/%s: %s (%s)", terminal, leaf, reason, detail[:200])
        p.reports.append((terminal or "?", "quarantine",
                          {"topic": msg.topic, "reason": reason, "detail": detail}))

    def _handle(self, db: DBConnection, msg: Inbound, terminal: str, leaf: str,
                p: _Pending) -> None:
        if leaf in (topics.PAYMENTS, topics.EVENTS):
            self._records(db, msg, terminal, leaf, p)
        elif leaf == topics.CMD_RESULT:
            self._result(db, msg, terminal, leaf, p)
        elif leaf in (topics.STATE, topics.HEALTH):
            self._report(db, msg, terminal, leaf, p)
        # a desk → terminal leaf seen here (another desk's publish): nothing to store

    def _records(self, db: DBConnection, msg: Inbound, terminal: str, leaf: str,
                 p: _Pending) -> None:
        keys = self.terminal_keys.get(terminal)
        if not keys:
            self._quarantine(db, msg, terminal, leaf, "unknown_terminal",
                             "no public key pinned for this terminal", p)
            return
        try:
            opened = open_envelope(msg.payload, leaf, keys)
        except EnvelopeError as exc:
            self._quarantine(db, msg, terminal, leaf, exc.code, str(exc), p)
            return
        body = opened.body
        kind = "payment" if leaf == topics.PAYMENTS else "event"
        records = body.get("records")
        if body.get("terminal_id") != terminal or body.get("kind") != kind or not isinstance(
            records, list
        ):
            self._quarantine(db, msg, terminal, leaf, "malformed_batch",
                             "terminal_id, kind or records do not fit the topic", p)
            return
        ok, bad = [], []
        for r in records:
            problem = record_problem(r, kind)
            if problem is None:
                ok.append(r)
            else:
                bad.append(problem)
        if bad:
            self._quarantine(db, msg, terminal, leaf, "bad_record",
                             f"{len(bad)} of {len(records)} record(s) not stored: {bad[0]}",
                             p)
        p.messages += 1
        seqs = self.store.commit_records(db, terminal, kind, ok, p.commit, self.now_ms())
        for c in p.commit.conflicts:
            c.setdefault("terminal_id", terminal)
            log.error("conflict from %s: seq %s / %s differs from what the desk holds",
                      terminal, c["seq"], c["ref"])
        if seqs:
            p.acks.setdefault(terminal, []).extend(seqs)
        for r in ok:
            p.reports.append((terminal, kind, r))
        for c in p.commit.conflicts:
            p.reports.append((terminal, "conflict", c))

    def _result(self, db: DBConnection, msg: Inbound, terminal: str, leaf: str,
                p: _Pending) -> None:
        keys = self.terminal_keys.get(terminal, {})
        try:
            body = open_envelope(msg.payload, "cmd_result", keys).body
        except EnvelopeError as exc:
            self._quarantine(db, msg, terminal, leaf, exc.code, str(exc), p)
            return
        cid = body.get("cmd_id") or body.get("claimed_cmd_id")
        if not cid and msg.correlation_data:
            cid = msg.correlation_data.decode("utf-8", "replace")
        if isinstance(cid, str) and cid:
            self.store.save_result(db, terminal, cid, body, self.now_ms())

        def publish() -> None:
            with self._cond:
                if isinstance(cid, str):
                    self.results[cid] = body
                    self.result_props[cid] = msg.correlation_data
                self._cond.notify_all()

        p.after.append(publish)
        p.reports.append((terminal, leaf, body))

    def _report(self, db: DBConnection, msg: Inbound, terminal: str, leaf: str,
                p: _Pending) -> None:
        if len(msg.payload) > MAX_REPORT_BYTES:
            self._quarantine(db, msg, terminal, leaf, "too_large",
                             f"payload of {len(msg.payload)} bytes", p)
            return
        try:
            value = json.loads(msg.payload) if msg.payload else None
        except (ValueError, RecursionError):
            self._quarantine(db, msg, terminal, leaf, "not_json", "payload is not JSON", p)
            return
        if value is not None and not isinstance(value, dict):
            self._quarantine(db, msg, terminal, leaf, "malformed", "not a JSON object", p)
            return
        now = self.now_ms()
        if leaf == topics.STATE and isinstance(value, dict) and value.get("at_ms") is None:
            value = {**value, "received_ms": now}  # a Last Will
        if leaf == topics.STATE:
            applied = self.store.save_state(db, terminal, value, now)
        else:
            self.store.save_health(db, terminal, value, now)
            applied = True

        def publish() -> None:
            if leaf == topics.STATE and (not applied or self._stale_offline(terminal, value)):
                self.stats.stale_offline += 1
                log.info("%s: offline of an older connection ignored", terminal)
                return
            with self._cond:
                (self.states if leaf == topics.STATE else self.health)[terminal] = value
                self._cond.notify_all()
            if self.on_report is not None:
                self.on_report(terminal, leaf, value)

        p.after.append(publish)

    def _stale_offline(self, terminal: str, value: Any) -> bool:
        """An `offline` whose connection is not the latest `online` one (a Last Will can
        arrive after the next connection's `online`)."""
        current = self.states.get(terminal)
        return (
            isinstance(value, dict)
            and value.get("state") == "offline"
            and isinstance(current, dict)
            and current.get("state") == "online"
            and current.get("connection_id") != value.get("connection_id")
        )

    # -- desk → terminal ---------------------------------------------------------------
    def ack(self, terminal: str, seqs: list[int]) -> None:
        body = {"terminal_id": terminal, "seqs": sorted(set(seqs)), "issued_ms": self.now_ms()}
        self.conn.publish(
            topics.topic(terminal, topics.ACK), seal(self.key, self.kid, "ack", body), qos=1
        )
        self.stats.acks_sent += 1

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def next_seq(self, terminal: str) -> int:
        """Per terminal and desk key, counted in the desk's database: 1, 2, 3 … (a desk
        clock that ran ahead cannot push it anywhere)."""
        return self.store.next_seq(terminal, self.kid)

    def command_body(
        self,
        terminal: str,
        kind: str,
        args: dict[str, Any] | None = None,
        ttl_s: float = 300,
        cmd_id: str | None = None,
    ) -> dict[str, Any]:
        now = self.now_ms()
        return {
            "cmd_id": cmd_id or uuid.uuid4().hex,
            "terminal_id": terminal,
            "type": kind,
            "args": args or {},
            "issued_ms": now,
            "expires_ms": now + int(ttl_s * 1000),
            "seq": self.next_seq(terminal),
        }

    def send_raw(self, terminal: str, leaf: str, payload: bytes, correlation: bytes | None = None,
                 retain: bool = False, tag: Any = None) -> None:
        response = topics.topic(terminal, topics.CMD_RESULT) if leaf == topics.CMD else None
        self.conn.publish(
            topics.topic(terminal, leaf),
            payload,
            qos=1,
            retain=retain,
            correlation_data=correlation,
            response_topic=response,
            tag=tag,
        )

    def send_command(self, body: dict[str, Any]) -> str:
        payload = seal(self.key, self.kid, "cmd", body)
        with self._cond:  # the same command id sent again (a retry): wait for this answer
            self.results.pop(body["cmd_id"], None)
            self.publish_outcomes.pop(body["cmd_id"], None)
        self.store.record_command(body)  # the operator's view: what was sent, when
        self.send_raw(body["terminal_id"], topics.CMD, payload, body["cmd_id"].encode(),
                      tag=("cmd", body["cmd_id"]))
        return str(body["cmd_id"])

    def command(
        self, terminal: str, kind: str, args: dict[str, Any] | None = None, timeout: float = 10
    ) -> dict[str, Any] | None:
        return self.run_command(self.command_body(terminal, kind, args), timeout)

    def run_command(self, body: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        """Send, wait for the result; if the terminal refused the sequence (`replayed`
        or `seq_gap` for a command id it never executed), continue above the high-water
        mark it reported (signed) and send the same command once more."""
        self.send_command(body)
        result = self.wait_result(body["cmd_id"], timeout)
        if (
            result is not None
            and result.get("ok") is False
            and result.get("error") in ("replayed", "seq_gap")
            and type(result.get("last_seq")) is int
            and not result.get("duplicate")
        ):
            self.store.raise_seq(body["terminal_id"], self.kid, result["last_seq"])
            log.warning("%s: command sequence continued above the terminal's mark %s",
                        body["terminal_id"], result["last_seq"])
            with self._cond:
                self.results.pop(body["cmd_id"], None)
                self.publish_outcomes.pop(body["cmd_id"], None)
            body["seq"] = self.next_seq(body["terminal_id"])
            body["resynced_from"] = result["last_seq"]
            self.send_command({k: v for k, v in body.items() if k != "resynced_from"})
            result = self.wait_result(body["cmd_id"], timeout)
        return result

    def wait_outcome(self, cmd_id: str, timeout: float) -> str | None:
        """The broker's PUBACK reason for a command, once known."""
        with self._cond:
            self._cond.wait_for(lambda: cmd_id in self.publish_outcomes, timeout)
            return self.publish_outcomes.get(cmd_id)

    def wait_result(self, cmd_id: str, timeout: float) -> dict[str, Any] | None:
        """The result, received here or stored by another worker of the share group
        (results come on a shared subscription: any worker may get it)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                if cmd_id in self.results:
                    return self.results[cmd_id]
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait_for(lambda: cmd_id in self.results,
                                    min(left, RESULT_POLL_S))
                if cmd_id in self.results:
                    return self.results[cmd_id]
            if self.share_group or self.partition is not None:
                stored = self.store.command_result(cmd_id)
                if stored is not None:
                    return stored

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            with self._cond:
                self._cond.wait(0.05)
        return predicate()

    def publish_config(self, terminal: str, doc: dict[str, Any]) -> bytes:
        body = {"issued_ms": self.now_ms(), **doc}
        payload = seal(self.key, self.kid, "config", body)
        self.last_publish = uuid.uuid4().hex
        self.send_raw(terminal, topics.CONFIG, payload, retain=True,
                      tag=("pub", self.last_publish))
        # the whole body: the next document carries it forward (a retained one replaces)
        self.store.record_config(topics.topic(terminal, topics.CONFIG), int(doc["version"]),
                                 body)
        return payload

    def retained_config_version(self, terminal: str, timeout: float) -> int | None:
        """The version of the config document retained at the broker for `terminal`
        (needs `watch_configs`). A probe published after subscribing comes back after
        any retained message, so "none" is known, not guessed from a timeout."""
        probe = uuid.uuid4().hex
        self.conn.publish(PROBE_PREFIX + probe, b"", qos=1)
        with self._cond:
            if not self._cond.wait_for(lambda: probe in self.probes, timeout):
                raise TimeoutError("the broker did not return the probe")
            raw = self.retained_configs.get(terminal)
        if not raw:
            return None
        body = peek_body(raw)
        version = body.get("version")
        return version if type(version) is int else None

    def payment_status(self, terminal: str, statuses: list[dict[str, Any]]) -> list[int]:
        """Each status gets the next version for its payment (the terminal applies only
        a version above the newest it has: old statuses replayed change nothing)."""
        stamped = [
            {**st, "version": st.get("version")
             or self.store.next_status_version(terminal, st["payment_id"])}
            for st in statuses
        ]
        body = {"terminal_id": terminal, "statuses": stamped, "issued_ms": self.now_ms()}
        self.store.record_statuses(terminal, stamped)
        self.last_publish = uuid.uuid4().hex
        self.send_raw(
            terminal, topics.PAYMENT_STATUS, seal(self.key, self.kid, "payment_status", body),
            tag=("pub", self.last_publish),
        )
        return [st["version"] for st in stamped]


def describe(terminal: str, leaf: str, value: Any) -> str:
    """One line per report, for `kiosk desk watch`."""
    if leaf == "conflict":
        return (
            f"{terminal} CONFLICT {value['kind']} {value['ref']} seq={value['seq']}: same id, "
            "different content; kept apart for an operator (kiosk desk conflicts)"
        )
    if leaf == "quarantine":
        return (f"{terminal} QUARANTINED {value['topic']}: {value['reason']}: "
                f"{value['detail']} (kiosk desk quarantine)")
    if leaf == "payment" and value["data"].get("kind") == "unclaimed":
        d = value["data"]
        amount = d.get("inserted_minor", 0)
        claimed = d.get("claimed_by") or (
            d.get("status_detail") if d.get("status") == "reprocessed" else None
        )
        state = f"re-processed as {claimed}" if claimed else (
            "UNCLAIMED: no account; re-process it with 'kiosk desk cmd "
            f"{terminal} reprocess_unclaimed --arg record_id={value['ref']} "
            "--arg provider_id=… --arg account=…'"
        )
        return (
            f"{terminal} unclaimed credit {value['ref']} seq={value['seq']} "
            f"{amount // 100}.{amount % 100:02d} {d.get('currency')} {state}"
            f"{' (historical)' if value.get('historical') else ''}"
        )
    if leaf == "payment":
        d = value["data"]
        amount = d.get("credited_minor", 0)
        return (
            f"{terminal} payment {value['ref']} seq={value['seq']} {d.get('status')} "
            f"{amount // 100}.{amount % 100:02d} {d.get('currency')} → {d.get('provider_id')} "
            f"{d.get('account')}{' (historical)' if value.get('historical') else ''}"
        )
    if leaf == "event":
        d = value["data"]
        return f"{terminal} event {d.get('kind')} {json.dumps(d.get('data'), ensure_ascii=False)}"
    if leaf == topics.STATE:
        return f"{terminal} state {value.get('state') if value else 'cleared'}"
    if leaf == topics.HEALTH and value:
        q = value.get("queue", {})
        return (
            f"{terminal} health screen={value.get('screen')} acceptor="
            f"{value.get('acceptor', {}).get('status')} printer="
            f"{value.get('printer', {}).get('status')} unsent={q.get('payments_unsent')} "
            f"phone={value.get('support_phone')} config=v{value.get('config_version')}"
        )
    if leaf == topics.CMD_RESULT:
        return f"{terminal} cmd/result {json.dumps(value, ensure_ascii=False, sort_keys=True)}"
    return f"{terminal} {leaf} {value}"
