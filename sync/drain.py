"""Outbox drain: ledger outbox → signed record batches on `payments` / `events` (M8).

- The ledger outbox is the source of truth. A record's sequence number is its outbox id
  (per terminal, monotonic, allocated in the transaction that wrote the payment).
- At most `inflight` records are out at a time (sent, not yet acknowledged by the desk);
  each message carries up to `batch` records of one kind, signed with the terminal key.
- A record leaves the outbox only on the desk's signed `ack` naming its sequence number
  (kiosk.ledger.desk.acknowledge_seqs). PUBACK only counts an attempt (outbox.mark_sent).
- Unacknowledged records are sent again after `resend_after_s`, after a refused publish,
  and from the start after every reconnect. Resending is always safe: the desk
  de-duplicates by (terminal, seq) and by payment id + reprocess count.
- On one connection a record's wait doubles with each resend, up to RESEND_BACKOFF_MAX
  times `resend_after_s`: an overloaded broker or desk whose acks take longer than the
  period is not buried under the whole fleet's repeats (docs/mqtt.md).
Runs on the agent's worker thread only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kiosk.ledger import Ledger, outbox
from kiosk.ledger import desk as desk_ledger
from kiosk.ledger.outbox import RawMessage
from sync import topics
from sync.envelope import seal

HISTORICAL_AFTER_MS = 60_000  # a record older than this when sent is marked historical
REFUSED_RETRY_S = 1.0
# The longest wait before a resend, in multiples of resend_after_s (30 s: 30, 60, 120,
# 120 … s). Bounded so that records the desk missed come again within minutes.
RESEND_BACKOFF_MAX = 4


@dataclass(frozen=True)
class Batch:
    leaf: str  # topics.PAYMENTS or topics.EVENTS
    payload: bytes
    seqs: tuple[int, ...]


class Drain:
    def __init__(
        self,
        ledger: Ledger,
        terminal_id: str,
        key: Any,  # Ed25519 private key (sync/ed25519.py)
        kid: str,
        inflight: int = 256,
        batch: int = 50,
        resend_after_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ledger = ledger
        self.terminal_id = terminal_id
        self.key = key
        self.kid = kid
        self.inflight = inflight
        self.batch = batch
        self.resend_after_s = resend_after_s
        self._clock = clock
        self.in_flight: dict[int, float] = {}  # seq -> when it went out
        self._sends: dict[int, int] = {}  # seq -> times sent on this connection
        self.cursor = 0  # highest seq handed out on this connection
        self.connection_id = ""
        self._sent_ok: list[int] = []
        self.exhausted = False  # the last look found nothing new
        self.acked_total = 0
        self.sent_total = 0

    def reset(self, connection_id: str) -> None:
        """A new connection: everything unacknowledged goes out again, in order."""
        self.in_flight.clear()
        self._sends.clear()
        self.cursor = 0
        self.connection_id = connection_id
        self.exhausted = False

    # -- what to send ------------------------------------------------------------------
    def next_batches(self) -> list[Batch]:
        """Due resends, then new records, read and sealed one batch at a time (the
        payload text is embedded as it is stored): memory holds one batch of records,
        not the whole window."""
        now = self._clock()
        out: list[Batch] = []
        due = sorted(s for s, at in self.in_flight.items() if now - at >= self._wait(s))
        for i in range(0, len(due), self.batch):
            chunk = due[i:i + self.batch]
            messages = outbox.raw_by_seq(self.ledger, chunk)
            gone = set(chunk) - {m.id for m in messages}
            for s in gone:  # acknowledged meanwhile (an ack on another path)
                self.in_flight.pop(s, None)
                self._sends.pop(s, None)
            out += self._batches(messages, now)
        while (room := self.inflight - len(self.in_flight)) > 0:
            want = min(room, self.batch)
            fresh = outbox.pending_raw(self.ledger, limit=want, after_id=self.cursor)
            if fresh:
                self.cursor = fresh[-1].id
                out += self._batches(fresh, now)
            if len(fresh) < want:
                self.exhausted = True
                break
            self.exhausted = False
        return out

    def _batches(self, messages: list[RawMessage], now: float) -> list[Batch]:
        out: list[Batch] = []
        group: list[RawMessage] = []
        for m in messages:
            if group and (group[0].kind != m.kind or len(group) >= self.batch):
                out.append(self._seal(group))
                group = []
            group.append(m)
        if group:
            out.append(self._seal(group))
        for m in messages:
            self.in_flight[m.id] = now
            self._sends[m.id] = self._sends.get(m.id, 0) + 1
        return out

    def _wait(self, seq: int) -> float:
        """How long after its last send `seq` is due again: doubling per send."""
        sends = self._sends.get(seq, 1)
        return self.resend_after_s * min(RESEND_BACKOFF_MAX, 1 << min(sends - 1, 16))

    def _seal(self, group: list[RawMessage]) -> Batch:
        """The batch body as JSON text, each record's `data` the stored payload text
        verbatim (it is JSON already); the verifier parses what was signed."""
        now_ms = self.ledger.now_ms()
        kind = group[0].kind
        records = []
        for m in group:
            historical = ',"historical":true' if now_ms - m.created_ms > HISTORICAL_AFTER_MS else ""
            records.append(
                f'{{"attempt":{m.attempts + 1},"data":{m.payload}{historical},'
                f'"ref":{json.dumps(m.ref)},"seq":{m.id}}}'
            )
        leaf = topics.PAYMENTS if kind == "payment" else topics.EVENTS
        head = json.dumps(
            {"connection_id": self.connection_id, "kind": kind, "sent_ms": now_ms,
             "terminal_id": self.terminal_id, "v": 1},
            ensure_ascii=False, separators=(",", ":"),
        )
        body = head[:-1] + ',"records":[' + ",".join(records) + "]}"
        payload = seal(self.key, self.kid, leaf, body.encode("utf-8"))
        return Batch(leaf, payload, tuple(m.id for m in group))

    # -- what happened -----------------------------------------------------------------
    def published(self, seqs: tuple[int, ...], ok: bool) -> None:
        """PUBACK (ok) or a refused / lost publish for a batch."""
        if ok:
            self._sent_ok.extend(s for s in seqs if s in self.in_flight)
            self.sent_total += len(seqs)
            return
        now = self._clock()
        for s in seqs:
            if s in self.in_flight:
                self.in_flight[s] = now - self._wait(s) + REFUSED_RETRY_S

    def flush_sent(self) -> None:
        """Count the attempts PUBACKed since the last call (one transaction)."""
        if self._sent_ok:
            ids, self._sent_ok = self._sent_ok, []
            outbox.mark_sent(self.ledger, ids)

    def acknowledged(self, seqs: list[int]) -> int:
        """The desk committed these: they leave the outbox (M8)."""
        count = desk_ledger.acknowledge_seqs(self.ledger, seqs)
        for s in seqs:
            self.in_flight.pop(s, None)
            self._sends.pop(s, None)
        self.acked_total += count
        if count:
            self.exhausted = False
        return count

    def next_resend_in(self) -> float | None:
        if not self.in_flight:
            return None
        first = min(at + self._wait(s) for s, at in self.in_flight.items())
        return max(0.0, first - self._clock())
