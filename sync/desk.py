"""A minimal desk: the other end of the MQTT contract, for tests, the demo and benches.

It consumes `payments` and `events` from every terminal, verifies each batch with the
terminal's pinned Ed25519 key, commits the records to its own SQLite file de-duplicated by
(terminal, seq) and by (terminal, payment id, reprocess count), and only then publishes a
signed `ack` (M8: the terminal's outbox empties on this ack, never on PUBACK). It keeps
the latest `state` and `health` of every terminal, signs and sends commands (MQTT v5
response topic + correlation data) and waits for their results, publishes signed,
retained config documents and payment statuses. `kiosk desk …` is its command line.

A production desk would be a service on shared subscriptions with the de-duplication
in a shared database (docs/protocols/mqtt-contract.md); the contract is the same.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sync import topics
from sync.connection import Connection, ConnSettings, Inbound, Subscription
from sync.envelope import EnvelopeError, open_envelope, peek_body, seal
from sync.keys import key_id, load_public_key

log = logging.getLogger("sync.desk")

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    terminal_id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, ref TEXT NOT NULL,
    data TEXT NOT NULL, received_ms INTEGER NOT NULL, PRIMARY KEY (terminal_id, seq));
CREATE TABLE IF NOT EXISTS payments (
    terminal_id TEXT NOT NULL, payment_id TEXT NOT NULL, reprocess_count INTEGER NOT NULL,
    seq INTEGER NOT NULL, data TEXT NOT NULL, received_ms INTEGER NOT NULL,
    PRIMARY KEY (terminal_id, payment_id, reprocess_count));
CREATE TABLE IF NOT EXISTS conflicts (
    id INTEGER PRIMARY KEY, terminal_id TEXT NOT NULL, seq INTEGER NOT NULL,
    kind TEXT NOT NULL, ref TEXT NOT NULL, reprocess_count INTEGER, stored TEXT NOT NULL,
    received TEXT NOT NULL, received_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS cmd_seq (
    terminal_id TEXT NOT NULL, kid TEXT NOT NULL, last INTEGER NOT NULL,
    PRIMARY KEY (terminal_id, kid));
CREATE TABLE IF NOT EXISTS status_versions (
    terminal_id TEXT NOT NULL, payment_id TEXT NOT NULL, version INTEGER NOT NULL,
    PRIMARY KEY (terminal_id, payment_id));
CREATE TABLE IF NOT EXISTS config_published (
    topic TEXT PRIMARY KEY, version INTEGER NOT NULL, published_ms INTEGER NOT NULL);
"""
PROBE_PREFIX = "kiosk/v1/_desk/probe/"  # '_' is never in a terminal id: no terminal sees it
SHARE_GROUP = "kiosk-desk"


@dataclass
class DeskStats:
    messages: int = 0
    records: int = 0  # every record delivered, duplicates included
    duplicates: int = 0
    new_payments: int = 0
    new_events: int = 0
    rejected: int = 0
    acks_sent: int = 0
    conflicts: int = 0
    stale_offline: int = 0
    rejections: list[str] = field(default_factory=list)


class DeskStore:
    """The desk's own ledger of what it received (WAL, synchronous=FULL)."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        self.lock = threading.Lock()

    def commit_records(
        self, terminal_id: str, kind: str, records: list[dict[str, Any]], stats: DeskStats
    ) -> tuple[list[int], list[dict[str, Any]]]:
        """Insert what is new; return every seq to acknowledge (new, repeated and
        conflicting: each is kept here) and the conflicts found.

        A repeat is the same record again (same seq, same content). The same seq or the
        same payment id (and reprocess count) with *different* content is a conflict —
        e.g. a terminal whose ledger was replaced numbering from 1 again: it is stored
        in `conflicts` in full and reported, never taken for a duplicate."""
        now = int(time.time() * 1000)
        seqs: list[int] = []
        conflicts: list[dict[str, Any]] = []
        cur = self.db.cursor()
        for r in records:
            seq, ref, data = r["seq"], r["ref"], r["data"]
            text = json.dumps(data, ensure_ascii=False, sort_keys=True)
            count = int(data.get("reprocess_count", 0)) if kind == "payment" else None
            stats.records += 1
            seqs.append(seq)
            old = cur.execute(
                "SELECT ref, data FROM records WHERE terminal_id = ? AND seq = ?",
                (terminal_id, seq),
            ).fetchone()
            clash = old is not None and (old[0] != ref or old[1] != text)
            if kind == "payment" and not clash:
                prior = cur.execute(
                    "SELECT data FROM payments WHERE terminal_id = ? AND payment_id = ? "
                    "AND reprocess_count = ?",
                    (terminal_id, ref, count),
                ).fetchone()
                clash = prior is not None and prior[0] != text
                old = old or (prior and (ref, prior[0]))
            if clash:
                assert old is not None
                cur.execute(
                    "INSERT INTO conflicts (terminal_id, seq, kind, ref, reprocess_count, "
                    "stored, received, received_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (terminal_id, seq, kind, ref, count, old[1], text, now),
                )
                stats.conflicts += 1
                conflicts.append({"seq": seq, "ref": ref, "kind": kind,
                                  "reprocess_count": count})
                log.error("conflict from %s: seq %s / %s differs from what the desk holds",
                          terminal_id, seq, ref)
                continue
            if old is not None:
                stats.duplicates += 1
                continue
            cur.execute(
                "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?)",
                (terminal_id, seq, kind, ref, text, now),
            )
            if kind == "payment":
                cur.execute(
                    "INSERT OR IGNORE INTO payments VALUES (?, ?, ?, ?, ?, ?)",
                    (terminal_id, ref, count, seq, text, now),
                )
                fresh = cur.rowcount == 1
                stats.new_payments += int(fresh)
                stats.duplicates += int(not fresh)
            else:
                stats.new_events += 1
        return seqs, conflicts

    def conflicts(self, terminal_id: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            rows = self.db.execute(
                "SELECT terminal_id, seq, kind, ref, reprocess_count, stored, received, "
                "received_ms FROM conflicts "
                + ("WHERE terminal_id = ? " if terminal_id else "") + "ORDER BY id",
                (terminal_id,) if terminal_id else (),
            ).fetchall()
        keys = ("terminal_id", "seq", "kind", "ref", "reprocess_count", "stored", "received",
                "received_ms")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def known_payment(self, terminal_id: str, payment_id: str) -> int | None:
        """The highest reprocess_count the desk holds for a payment, or None."""
        with self.lock:
            row = self.db.execute(
                "SELECT max(reprocess_count) FROM payments WHERE terminal_id = ? "
                "AND payment_id = ?",
                (terminal_id, payment_id),
            ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def next_seq(self, terminal_id: str, kid: str) -> int:
        """Per terminal and desk key: 1, 2, 3 … — never derived from a clock."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.execute(
                    "INSERT INTO cmd_seq VALUES (?, ?, 1) ON CONFLICT (terminal_id, kid) "
                    "DO UPDATE SET last = last + 1",
                    (terminal_id, kid),
                )
                (value,) = self.db.execute(
                    "SELECT last FROM cmd_seq WHERE terminal_id = ? AND kid = ?",
                    (terminal_id, kid),
                ).fetchone()
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        return int(value)

    def raise_seq(self, terminal_id: str, kid: str, at_least: int) -> None:
        """The terminal said (signed) its high-water mark: continue above it."""
        with self.lock:
            self.db.execute(
                "INSERT INTO cmd_seq VALUES (?, ?, ?) ON CONFLICT (terminal_id, kid) "
                "DO UPDATE SET last = max(last, excluded.last)",
                (terminal_id, kid, at_least),
            )

    def next_status_version(self, terminal_id: str, payment_id: str) -> int:
        with self.lock:
            self.db.execute(
                "INSERT INTO status_versions VALUES (?, ?, 1) ON CONFLICT "
                "(terminal_id, payment_id) DO UPDATE SET version = version + 1",
                (terminal_id, payment_id),
            )
            (value,) = self.db.execute(
                "SELECT version FROM status_versions WHERE terminal_id = ? AND payment_id = ?",
                (terminal_id, payment_id),
            ).fetchone()
        return int(value)

    def published_config(self, topic: str) -> int | None:
        with self.lock:
            row = self.db.execute(
                "SELECT version FROM config_published WHERE topic = ?", (topic,)
            ).fetchone()
        return None if row is None else int(row[0])

    def record_config(self, topic: str, version: int) -> None:
        with self.lock:
            self.db.execute(
                "INSERT INTO config_published VALUES (?, ?, ?) ON CONFLICT (topic) DO UPDATE "
                "SET version = max(version, excluded.version), "
                "published_ms = excluded.published_ms",
                (topic, version, int(time.time() * 1000)),
            )

    def payments(self, terminal_id: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            rows = self.db.execute(
                "SELECT terminal_id, payment_id, reprocess_count, seq, data FROM payments "
                + ("WHERE terminal_id = ? " if terminal_id else "")
                + "ORDER BY terminal_id, seq",
                (terminal_id,) if terminal_id else (),
            ).fetchall()
        return [
            {"terminal_id": t, "payment_id": p, "reprocess_count": n, "seq": s,
             "data": json.loads(d)}
            for t, p, n, s, d in rows
        ]

    def events(self, terminal_id: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            rows = self.db.execute(
                "SELECT terminal_id, seq, data FROM records WHERE kind = 'event' "
                + ("AND terminal_id = ? " if terminal_id else "")
                + "ORDER BY terminal_id, seq",
                (terminal_id,) if terminal_id else (),
            ).fetchall()
        return [{"terminal_id": t, "seq": s, **json.loads(d)} for t, s, d in rows]

    def close(self) -> None:
        self.db.close()


def load_terminal_keys(directory: Path) -> dict[str, Ed25519PublicKey]:
    """`<terminal id>.pub` files (PEM or base64 raw) in a folder."""
    keys = {}
    for path in sorted(directory.glob("*.pub")):
        keys[path.stem] = load_public_key(path)
    return keys


class Desk:
    def __init__(
        self,
        host: str,
        port: int,
        key: Ed25519PrivateKey,
        kid: str,
        terminal_keys: dict[str, Ed25519PublicKey],
        db_path: Path,
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
    ) -> None:
        """`persistent=False`: a clean session that ends with the connection (one-shot
        tools leave nothing behind at the broker). `share_group`: payments and events on
        a shared subscription, so several consumers split the load instead of fighting.
        `results_for`: a tool that only waits for one terminal's command results.
        `watch_configs`: terminals whose retained config document to read."""
        self.key, self.kid = key, kid
        self.terminal_keys = {
            t: {key_id(t, pub): pub} for t, pub in terminal_keys.items()
        }
        self.store = DeskStore(db_path)
        self.stats = DeskStats()
        self.on_report = on_report
        self.auto_ack = auto_ack
        self.ack_delay_s = ack_delay_s  # tests: a slow desk, so a drain can be caught mid-way
        self.states: dict[str, dict[str, Any]] = {}
        self.health: dict[str, dict[str, Any]] = {}
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
                shared = share_group and leaf in (topics.PAYMENTS, topics.EVENTS)
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
                tls_ca=ca,
                tls_cert=cert,
                tls_key=tkey,
                subscriptions=subs,
                reconnect_min_s=reconnect_min_s,
                reconnect_max_s=max(reconnect_min_s, 5.0),
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
        return self

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(None)
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
            msg = self._queue.get()
            if msg is None:
                return
            batch = [msg]
            while len(batch) < 2000:
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

    def _process(self, batch: list[Inbound]) -> None:
        acks: dict[str, list[int]] = {}
        done: list[Inbound] = []
        with self.store.lock:
            self.store.db.execute("BEGIN IMMEDIATE")
            try:
                for msg in batch:
                    split = topics.split(msg.topic)
                    if split is None:
                        if msg.topic.startswith(PROBE_PREFIX):
                            with self._cond:
                                self.probes.add(msg.topic[len(PROBE_PREFIX):])
                                self._cond.notify_all()
                        done.append(msg)
                        continue
                    if split[1] == topics.CONFIG:
                        with self._cond:
                            self.retained_configs[split[0]] = msg.payload
                        done.append(msg)
                        continue
                    terminal, leaf = split
                    if leaf in (topics.PAYMENTS, topics.EVENTS):
                        seqs = self._records(msg, terminal, leaf)
                        if seqs:
                            acks.setdefault(terminal, []).extend(seqs)
                    done.append(msg)
                self.store.db.execute("COMMIT")
            except BaseException:
                self.store.db.execute("ROLLBACK")
                raise
        # Committed: now (and only now) the desk acknowledges.
        if self.ack_delay_s and acks:
            time.sleep(self.ack_delay_s)
        if self.auto_ack:
            for terminal, seqs in acks.items():
                self.ack(terminal, seqs)
        for msg in done:
            self.conn.ack(msg)
            split = topics.split(msg.topic)
            if split is not None and split[1] in (topics.STATE, topics.HEALTH, topics.CMD_RESULT):
                self._report(msg, *split)

    def _reject(self, terminal: str, leaf: str, reason: str) -> None:
        self.stats.rejected += 1
        self.stats.rejections.append(f"{terminal}/{leaf}: {reason}")
        log.warning("desk rejected %s/%s: %s", terminal, leaf, reason)

    def _records(self, msg: Inbound, terminal: str, leaf: str) -> list[int]:
        keys = self.terminal_keys.get(terminal)
        if not keys:
            self._reject(terminal, leaf, "unknown terminal")
            return []
        try:
            opened = open_envelope(msg.payload, leaf, keys)
        except EnvelopeError as exc:
            self._reject(terminal, leaf, exc.code)
            return []
        body = opened.body
        kind = "payment" if leaf == topics.PAYMENTS else "event"
        records = body.get("records")
        if body.get("terminal_id") != terminal or body.get("kind") != kind or not isinstance(
            records, list
        ):
            self._reject(terminal, leaf, "malformed batch")
            return []
        ok = [
            r
            for r in records
            if isinstance(r, dict)
            and type(r.get("seq")) is int
            and isinstance(r.get("ref"), str)
            and isinstance(r.get("data"), dict)
        ]
        self.stats.messages += 1
        seqs, conflicts = self.store.commit_records(terminal, kind, ok, self.stats)
        for c in conflicts:
            self.conflicts.append({"terminal_id": terminal, **c})
        if self.on_report is not None:
            for r in ok:
                self.on_report(terminal, kind, r)
            for c in conflicts:
                self.on_report(terminal, "conflict", c)
        return seqs

    def _report(self, msg: Inbound, terminal: str, leaf: str) -> None:
        if leaf == topics.CMD_RESULT:
            keys = self.terminal_keys.get(terminal, {})
            try:
                body = open_envelope(msg.payload, "cmd_result", keys).body
            except EnvelopeError as exc:
                self._reject(terminal, leaf, exc.code)
                return
            cid = body.get("cmd_id") or body.get("claimed_cmd_id")
            if not cid and msg.correlation_data:
                cid = msg.correlation_data.decode("utf-8", "replace")
            with self._cond:
                if isinstance(cid, str):
                    self.results[cid] = body
                    self.result_props[cid] = msg.correlation_data
                self._cond.notify_all()
            value: Any = body
        else:
            try:
                value = json.loads(msg.payload) if msg.payload else None
            except ValueError:
                self._reject(terminal, leaf, "not JSON")
                return
            if leaf == topics.STATE and self._stale_offline(terminal, value):
                self.stats.stale_offline += 1
                log.info("%s: offline of an older connection ignored", terminal)
                return
            if leaf == topics.STATE and isinstance(value, dict) and value.get("at_ms") is None:
                value = {**value, "received_ms": int(self.clock() * 1000)}  # a Last Will
            with self._cond:
                (self.states if leaf == topics.STATE else self.health)[terminal] = value
                self._cond.notify_all()
        if self.on_report is not None:
            self.on_report(terminal, leaf, value)

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
        with self._cond:
            self._cond.wait_for(lambda: cmd_id in self.results, timeout)
            return self.results.get(cmd_id)

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            with self._cond:
                self._cond.wait(0.05)
        return predicate()

    def publish_config(self, terminal: str, doc: dict[str, Any]) -> bytes:
        payload = seal(self.key, self.kid, "config", {"issued_ms": self.now_ms(), **doc})
        self.last_publish = uuid.uuid4().hex
        self.send_raw(terminal, topics.CONFIG, payload, retain=True,
                      tag=("pub", self.last_publish))
        self.store.record_config(topics.topic(terminal, topics.CONFIG), int(doc["version"]))
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
