"""The desk's beat: a signed "I am storing and acknowledging" that terminals hear, so the
ack watch (sync/ack_watch.py) can tell a desk that is away from a session that lost its
acks.

Each consuming desk worker publishes one beat every `every_s` from the thread that stores
and acknowledges (a worker stuck on a lost database beats no more), at QoS 0 and never
retained, on one topic outside every terminal's own: `kiosk/v1/_desk/beat` ('_' is no
terminal-id character, so no terminal's ACL pattern reaches it). QoS 0 because a beat is
only worth anything live: the broker keeps none for an absent terminal, and on NATS a
QoS 0 subscription is a plain subscription, not one of the JetStream consumers whose loss
the watch is there to notice.

The body names the worker's share, so a terminal counts only beats from a worker that
stores its records: `n` 0 (one worker, or shared subscriptions: all terminals), else the
partitions `parts` of `n` it stores for now (its own, and any it covers for a silent
worker: docs/fleet.md "Partition takeover"). Everything here is pure: the agent and the
desk call it, the tests table it.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kiosk.coded_error import CodedError
from sync import topics
from sync.envelope import open_envelope

TOPIC = f"{topics.PREFIX}/_desk/beat"
PURPOSE = "desk_beat"
DEFAULT_EVERY_S = 60.0  # kiosk desk serve --beat: 20,000 terminals hear 333 beats/s per worker
MIN_EVERY_S = 1.0
MAX_EVERY_S = 3600.0
MAX_PARTITIONS = 4096  # far beyond any desk; bounds what a terminal reads
WORKER_MAX = 64  # characters of the worker's client id kept in a beat


def every_problem(seconds: float) -> str:
    """Why a beat period cannot be used ("" when it can): 0 (no beat) or MIN-MAX seconds.
    The desk, its command line and the fleet benchmark word their refusals around it."""
    if seconds == 0 or MIN_EVERY_S <= seconds <= MAX_EVERY_S:  # NaN is neither
        return ""
    return f"give {MIN_EVERY_S:g}-{MAX_EVERY_S:g} seconds, or 0 (no beat)"


def partition_of(terminal_id: str, n: int) -> int:
    """Which of `n` partitions a terminal belongs to (`kiosk desk serve --partition K/N`)."""
    return zlib.crc32(terminal_id.encode()) % n


class BeatError(CodedError, ValueError):
    """A beat that verified but says nothing a terminal may rely on."""


@dataclass(frozen=True)
class Beat:
    worker: str
    every_s: float
    n: int  # 0: the worker stores for every terminal
    parts: frozenset[int]
    issued_ms: int

    def covers(self, terminal_id: str) -> bool:
        return self.n == 0 or partition_of(terminal_id, self.n) in self.parts


def beat_body(worker: str, every_s: float, issued_ms: int,
              share: tuple[int, Iterable[int]] | None = None) -> dict[str, Any]:
    """`share` (n, partitions stored for now); None: every terminal."""
    n, parts = (0, ()) if share is None else share
    return {"v": 1, "worker": worker[:WORKER_MAX], "every_s": every_s, "n": n,
            "parts": sorted(set(parts)), "issued_ms": issued_ms}


def open_beat(payload: bytes, retain: bool, keys: Mapping[str, Any], now_ms: int,
              skew_s: float) -> Beat:
    """A received beat, as the agent (and the fleet benchmark's terminals) take it: live,
    signed by one of `keys`, then read_beat. EnvelopeError or BeatError otherwise."""
    if retain:
        raise BeatError("retained", "a retained desk beat is never taken for a live desk")
    return read_beat(open_envelope(payload, PURPOSE, keys).body, now_ms, skew_s)


def read_beat(body: Mapping[str, Any], now_ms: int, skew_s: float) -> Beat:
    """A verified beat's body, checked: BeatError `malformed` or `stale` (issued more than
    `skew_s` away from our clock: an old beat replayed says nothing about the desk now)."""
    def bad(why: str) -> BeatError:
        return BeatError("malformed", f"desk beat: {why}")

    worker, every, n, parts, issued = (body.get(k) for k in
                                       ("worker", "every_s", "n", "parts", "issued_ms"))
    if body.get("v") != 1:
        raise bad("v must be 1")
    if not isinstance(worker, str) or not 0 < len(worker) <= WORKER_MAX:
        raise bad(f"worker must be a name of 1-{WORKER_MAX} characters")
    if (isinstance(every, bool) or not isinstance(every, int | float)
            or not math.isfinite(every) or not MIN_EVERY_S <= every <= MAX_EVERY_S):
        raise bad(f"every_s must be {MIN_EVERY_S:g}-{MAX_EVERY_S:g} seconds")
    if type(n) is not int or not 0 <= n <= MAX_PARTITIONS:
        raise bad(f"n must be 0 (every terminal) or a partition count up to {MAX_PARTITIONS}")
    if (not isinstance(parts, list) or len(parts) > max(n, 0)
            or not all(type(p) is int and 0 <= p < n for p in parts)):
        raise bad("parts must list partitions 0 <= k < n")
    if n and not parts:
        raise bad("a partitioned worker stores for at least one partition")
    if type(issued) is not int:
        raise bad("issued_ms must be an integer")
    if abs(issued - now_ms) > skew_s * 1000:
        ahead = issued > now_ms
        raise BeatError("stale", f"desk beat issued {abs(now_ms - issued) / 1000:.0f} s "
                                 f"{'after' if ahead else 'before'} this terminal's clock "
                                 f"(more than {skew_s:g} s)")
    return Beat(worker, float(every), n, frozenset(parts), issued)
