"""A minimal desk: the other end of the MQTT contract, for tests, the demo and benches.

It consumes `payments` and `events` from every terminal, verifies each batch with the
terminal's pinned Ed25519 key, commits the records to its own SQLite file de-duplicated by
(terminal, seq) and by (terminal, payment id, reprocess count), and only then publishes a
signed `ack` (M8: the terminal's outbox empties on this ack, never on PUBACK). It keeps
the latest `state` and `health` of every terminal, signs and sends commands (MQTT v5
response topic + correlation data) and waits for their results, publishes signed,
retained config documents and payment statuses. `kiosk desk …` is its command line.

A production desk would be a service on shared subscriptions with the de-duplication
in a shared database (mqtt-fleet.md §4); the contract is the same.
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
from sync.envelope import EnvelopeError, open_envelope, seal
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
"""


@dataclass
class DeskStats:
    messages: int = 0
    records: int = 0  # every record delivered, duplicates included
    duplicates: int = 0
    new_payments: int = 0
    new_events: int = 0
    rejected: int = 0
    acks_sent: int = 0
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
    ) -> list[int]:
        """Insert what is new; return every seq to acknowledge (new and repeated)."""
        now = int(time.time() * 1000)
        seqs = []
        cur = self.db.cursor()
        for r in records:
            seq, ref, data = r["seq"], r["ref"], r["data"]
            text = json.dumps(data, ensure_ascii=False, sort_keys=True)
            stats.records += 1
            cur.execute(
                "INSERT OR IGNORE INTO records VALUES (?, ?, ?, ?, ?, ?)",
                (terminal_id, seq, kind, ref, text, now),
            )
            fresh = cur.rowcount == 1
            if kind == "payment":
                cur.execute(
                    "INSERT OR IGNORE INTO payments VALUES (?, ?, ?, ?, ?, ?)",
                    (terminal_id, ref, int(data.get("reprocess_count", 0)), seq, text, now),
                )
                fresh = cur.rowcount == 1
                stats.new_payments += int(fresh)
            else:
                stats.new_events += int(fresh)
            stats.duplicates += int(not fresh)
            seqs.append(seq)
        return seqs

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
    ) -> None:
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
        self._cond = threading.Condition()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._seq = 0
        subs = (
            tuple(
                Subscription(topics.desk_filter(leaf), 1)
                for leaf in (topics.PAYMENTS, topics.EVENTS, topics.STATE, topics.HEALTH,
                             topics.CMD_RESULT)
            )
            if consume
            else (Subscription(topics.desk_filter(topics.CMD_RESULT), 1),)
        )
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
        if isinstance(tag, tuple) and tag and tag[0] == "cmd":
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
        seqs = self.store.commit_records(terminal, kind, ok, self.stats)
        if self.on_report is not None:
            for r in ok:
                self.on_report(terminal, kind, r)
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
            with self._cond:
                (self.states if leaf == topics.STATE else self.health)[terminal] = value
                self._cond.notify_all()
        if self.on_report is not None:
            self.on_report(terminal, leaf, value)

    # -- desk → terminal ---------------------------------------------------------------
    def ack(self, terminal: str, seqs: list[int]) -> None:
        body = {"terminal_id": terminal, "seqs": sorted(set(seqs)), "issued_ms": _now_ms()}
        self.conn.publish(
            topics.topic(terminal, topics.ACK), seal(self.key, self.kid, "ack", body), qos=1
        )
        self.stats.acks_sent += 1

    def next_seq(self) -> int:
        """Per-desk-key sequence: above anything sent before, also across desk runs."""
        self._seq = max(self._seq + 1, _now_ms())
        return self._seq

    def command_body(
        self, terminal: str, kind: str, args: dict[str, Any] | None = None, ttl_s: float = 300
    ) -> dict[str, Any]:
        now = _now_ms()
        return {
            "cmd_id": uuid.uuid4().hex,
            "terminal_id": terminal,
            "type": kind,
            "args": args or {},
            "issued_ms": now,
            "expires_ms": now + int(ttl_s * 1000),
            "seq": self.next_seq(),
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
        cid = self.send_command(self.command_body(terminal, kind, args))
        return self.wait_result(cid, timeout)

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
        payload = seal(self.key, self.kid, "config", {"issued_ms": _now_ms(), **doc})
        self.send_raw(terminal, topics.CONFIG, payload, retain=True)
        return payload

    def payment_status(self, terminal: str, statuses: list[dict[str, Any]]) -> None:
        body = {"terminal_id": terminal, "statuses": statuses, "issued_ms": _now_ms()}
        self.send_raw(
            terminal, topics.PAYMENT_STATUS, seal(self.key, self.kid, "payment_status", body)
        )


def _now_ms() -> int:
    return int(time.time() * 1000)


def describe(terminal: str, leaf: str, value: Any) -> str:
    """One line per report, for `kiosk desk watch`."""
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
