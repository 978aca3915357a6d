"""A census of the JetStream consumers behind the MQTT sessions' subscriptions.

NATS makes each QoS 1 MQTT subscription a consumer of the `$MQTT_msgs` stream, named
`<session hash>_<unique>`. After a full-cluster restart, some kept sessions were found
with two or three consumers on one subscription: a new one, delivering, and the old one
left without a subscriber, holding undelivered copies (counted on 2.12.8 and 2.15.1 at 250
TLS terminals; docs/fleet.md "Leftover consumers"). Neither 22 minutes nor the ack watch's
clean sessions removed them, only a reset of the sessions' streams; each counts against
the stream's consumer limit. The census reads the nodes' monitoring port (`/jsz`), which
needs no credentials, and counts them beside that limit (past it, new subscriptions are
refused):

    python -m sync.nats_kit consumers --monitor n1:8222 --monitor n2:8222 ... [--fail-at 80]

deploy/systemd/kiosk-nats-census.timer runs it hourly (docs/fleet.md).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

# the stream behind every QoS 1 MQTT subscription; `$MQTT_rmsgs` (retained messages) has
# a consumer per node, named alike, and is not a session's
MQTT_MSGS_STREAM = "$MQTT_msgs"
JSZ_QUERY = "/jsz?accounts=true&consumers=true&config=true"
JSZ_TIMEOUT_S = 30.0  # every consumer's detail: several MiB on a large fleet


@dataclass(frozen=True)
class ConsumerCensus:
    """What the nodes hold on `$MQTT_msgs`: a subscription is (session, subject), and a
    subscription with more than one consumer has leftovers (the module's docstring)."""

    consumers: int
    subscriptions: int
    doubled: int  # subscriptions with more than one consumer
    extra: int  # consumers beyond one per subscription
    pending_on_extra: int  # undelivered messages on the older consumers of those
    # the most consumers the stream may have (the lowest any node applies: the stream's
    # own max_consumers, else the node's default_max_consumers, NATS 2.15 and later);
    # None: no node applies one. Past it, new MQTT subscriptions are refused.
    limit: int | None = None

    def line(self, when: str) -> str:
        return (f"JetStream consumers {when}: {self.consumers} for {self.subscriptions} "
                f"subscriptions; {self.doubled} subscriptions with more than one consumer "
                f"({self.extra} extra, {self.pending_on_extra} messages pending on them); "
                + (f"the stream's consumer limit {self.limit} ({self.used_percent:.1f}% "
                   f"used)" if self.limit else "no consumer limit on these nodes"))

    @property
    def used_percent(self) -> float:
        return 100.0 * self.consumers / self.limit if self.limit else 0.0


def consumer_census(views: list[dict[str, Any]]) -> ConsumerCensus:
    """One census of MQTT_MSGS_STREAM from the nodes' `/jsz?accounts=true&consumers=true
    &config=true`: the union of every node's view (with one-copy consumers each node
    lists only its own), a consumer's pending count the highest any node reports."""
    found: dict[str, tuple[str, str, int]] = {}  # name: (subject, created, pending)
    for c in (c for view in views for c in msgs_consumers(view)):
        name = str(c.get("name", ""))
        raw = c.get("config")
        config: dict[str, Any] = raw if isinstance(raw, dict) else {}
        subjects = config.get("filter_subjects")
        subject = str(config.get("filter_subject") or (
            ",".join(map(str, subjects)) if isinstance(subjects, list) else ""))
        pending = json_count(c.get("num_pending"))
        if name in found:
            pending = max(pending, found[name][2])
        found[name] = (subject, str(c.get("created", "")), pending)
    subs: dict[tuple[str, str], list[tuple[str, int]]] = {}  # (session, subject)
    for name, (subject, created, pending) in found.items():
        subs.setdefault((name.split("_", 1)[0], subject), []).append((created, pending))
    doubled = [sorted(v) for v in subs.values() if len(v) > 1]
    limits = [n for n in map(_limit, views) if n is not None]
    return ConsumerCensus(
        consumers=len(found), subscriptions=len(subs), doubled=len(doubled),
        extra=sum(len(v) - 1 for v in doubled),
        pending_on_extra=sum(p for v in doubled for _, p in v[:-1]),
        limit=min(limits) if limits else None)


def _limit(view: dict[str, Any]) -> int | None:
    """The consumer limit one node applies to MQTT_MSGS_STREAM: the stream's own
    `max_consumers` when set (above 0), else the node's `limits.default_max_consumers`."""
    for stream in _msgs_streams(view):
        config = stream.get("config")
        own = json_count(config.get("max_consumers")) if isinstance(config, dict) else 0
        if own:
            return own
    limits = view.get("limits")
    default = json_count(limits.get("default_max_consumers")) if isinstance(
        limits, dict) else 0
    return default or None


def msgs_consumers(view: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The consumers one node lists on MQTT_MSGS_STREAM (not `$MQTT_rmsgs`' per-node ones)."""
    for stream in _msgs_streams(view):
        yield from json_objects(stream.get("consumer_detail"))


def _msgs_streams(view: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """MQTT_MSGS_STREAM as one node's /jsz lists it (once per account that has it)."""
    for account in json_objects(view.get("account_details")):
        for stream in json_objects(account.get("stream_detail")):
            if stream.get("name") == MQTT_MSGS_STREAM:
                yield stream


def json_objects(value: Any) -> list[dict[str, Any]]:
    """The JSON objects of a list; anything else (absent, null, a stray type) is none."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def json_count(value: Any) -> int:
    """A count from a node's JSON: a positive int, else 0 (null, a string, a bool)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def read_monitor(host: str, port: int, path: str,
                 timeout: float = JSZ_TIMEOUT_S) -> tuple[dict[str, Any] | None, str]:
    """One node's monitoring answer to `path` as a JSON object, or None and one line
    saying why (down, not a NATS monitoring port, or not a JSON object)."""
    what = path.split("?", 1)[0]
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=timeout) as r:
            answer = json.load(r)
    except (OSError, ValueError) as exc:
        return None, f"{host}:{port}: no {what} answer ({exc})"
    if not isinstance(answer, dict):
        return None, f"{host}:{port}: {what} answered with something other than an object"
    return answer, ""


def read_views(monitors: Iterable[tuple[str, int]],
               timeout: float = JSZ_TIMEOUT_S) -> tuple[list[dict[str, Any]], list[str]]:
    """Each node's /jsz answer, and one line per node that gave none."""
    views: list[dict[str, Any]] = []
    failed: list[str] = []
    for host, port in monitors:
        view, why = read_monitor(host, port, JSZ_QUERY, timeout)
        if view is None:
            failed.append(why)
        else:
            views.append(view)
    return views, failed
