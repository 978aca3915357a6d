"""Why a terminal hears nothing from the desk: its connection and its downlink
subscriptions' consumers, as the NATS nodes see them.

The ack watch (sync/ack_watch.py) starts a terminal's session afresh when its payments
were PUBACKed and no ack came for `ack_stall_s`. After full-cluster restarts that
happened on every release measured, to 1-31 terminals of 250, and the watch's cure says
nothing of the cause. On NATS a QoS 1 MQTT subscription is a JetStream consumer of
`$MQTT_msgs` that pushes to a `$MQTT.sub.<id>` subject the client's connection
subscribes to; the probe reads the nodes' monitoring ports (`/connz` with the
connection's subscriptions, `/jsz` with every consumer) and says, for each downlink
subscription, whether a consumer can deliver to the terminal's live connection:

    python -m sync.nats_kit terminal T-00042 --monitor n1:8222 --monitor n2:8222 ...

The fleet benchmark probes the terminals its watch sees waiting (bench/fleet.py).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from sync import topics
from sync.nats_census import (
    JSZ_TIMEOUT_S,
    json_count,
    json_objects,
    msgs_consumers,
    read_monitor,
)

# NATS maps an MQTT topic to a subject ('/' -> '.') and stores QoS 1 messages for
# sessions under this prefix (what a subscription's consumer filters on)
MQTT_MSGS_PREFIX = "$MQTT.msgs."
CONNZ_QUERY = "/connz?subs=detail&mqtt_client="


class Verdict(Enum):
    """One downlink subscription's state; the silent ones mean nothing the desk sends
    on it reaches the terminal."""

    NOT_CONNECTED = "the terminal is connected to no node"
    NOT_SUBSCRIBED = "not subscribed: neither a consumer nor the subject on the connection"
    # the connection still has the plain subject (NATS subscribes it beside the consumer)
    # but a QoS 1 message goes only through a consumer: stored, never pushed. A consumer
    # deleted under a kept session looks so (tests/sync/test_nats_probe.py).
    NO_CONSUMER = "subscribed at QoS 1 without a consumer: what is stored is never pushed"
    # seen in a connect storm and after a full-cluster restart (2.12.8, 250 TLS
    # terminals): the consumer's creation timed out (5 s), NATS refused the subscription
    # (SUBACK 0x80) and took it off the connection, and made the consumer later anyway.
    # A client that ignores the refusal hears nothing on it; the agent reconnects and
    # subscribes again (sync/connection.py, subscribe_refused)
    LOST_ON_CONNECTION = ("consumers exist, the connection subscribes none of their "
                          "subjects (a refused subscription: subscribe again)")
    NOT_BOUND = "consumers, none pushing to the live connection"
    UNACKED = "delivered, not acknowledged by the terminal"
    UNDELIVERED = "stored for it, not delivered"
    QOS0 = "subscribed at QoS 0 (light session: nothing kept for it)"
    IDLE = "nothing waiting: everything delivered and acknowledged"

    @property
    def silent(self) -> bool:
        return self in (Verdict.NOT_CONNECTED, Verdict.NOT_SUBSCRIBED, Verdict.NO_CONSUMER,
                        Verdict.LOST_ON_CONNECTION, Verdict.NOT_BOUND)


@dataclass(frozen=True)
class ConsumerView:
    """One consumer on a subscription's subject, merged from every node's view."""

    name: str
    created: str
    deliver_subject: str
    delivered: int  # the last stream sequence pushed
    ack_floor: int  # the last stream sequence the client acknowledged, all below too
    ack_pending: int
    redelivered: int
    pending: int  # stored on its subject, not yet pushed
    # NATS's own word that something listens on the deliver subject; 2.9.10 said true
    # for a subject nobody subscribed, so the probe decides on `bound_here` alone
    push_bound: bool
    bound_here: bool  # the terminal's live connection subscribes its deliver subject

    def line(self) -> str:
        return (f"{self.name} made {self.created or '?'}: pushes to "
                f"{self.deliver_subject or '?'} ("
                + ("the terminal's connection" if self.bound_here else
                   f"not the terminal's connection; NATS's push_bound "
                   f"{str(self.push_bound).lower()}")
                + f"); delivered up to {self.delivered}, acknowledged up to "
                f"{self.ack_floor}, {self.ack_pending} awaiting the terminal's ack, "
                f"{self.redelivered} redelivered, {self.pending} not yet delivered")


@dataclass(frozen=True)
class SubscriptionProbe:
    leaf: str
    subject: str  # the stored messages' subject the consumers filter on
    consumers: tuple[ConsumerView, ...]  # oldest first
    verdict: Verdict


@dataclass(frozen=True)
class TerminalProbe:
    terminal_id: str
    nodes: tuple[str, ...]  # the monitoring addresses of nodes holding its connection
    subscriptions: tuple[SubscriptionProbe, ...]

    def verdict(self, leaf: str) -> Verdict:
        return next(s.verdict for s in self.subscriptions if s.leaf == leaf)

    @property
    def silent(self) -> bool:
        return any(s.verdict.silent for s in self.subscriptions)

    def lines(self) -> list[str]:
        where = ", ".join(self.nodes) if self.nodes else "no node"
        out = [f"terminal {self.terminal_id}: connected to {where}"]
        for s in self.subscriptions:
            out.append(f"  {s.leaf}: {s.verdict.value}")
            out.extend(f"    {c.line()}" for c in s.consumers)
        return out


def probe_terminal(terminal_id: str, views: list[dict[str, Any]],
                   connections: dict[str, list[dict[str, Any]]],
                   light_session: bool = False) -> TerminalProbe:
    """`views`: the nodes' `/jsz?accounts=true&consumers=true&config=true`;
    `connections`: per node (its address), the connections `/connz` lists for this
    client id; `light_session`: the terminal's `[mqtt] light_session` (topics.LIGHT at
    QoS 0). Pure: any JSON gives an answer, never an error."""
    conns = {node: [c for c in json_objects(listed) if c.get("mqtt_client") == terminal_id]
             for node, listed in connections.items()}
    nodes = tuple(sorted(node for node, found in conns.items() if found))
    subscribed = {str(s.get("subject", "")) for found in conns.values() for c in found
                  for s in json_objects(c.get("subscriptions_list_detail"))}
    consumers = consumers_by_subject(views)
    subs: list[SubscriptionProbe] = []
    for leaf in topics.DOWN:
        plain = topics.topic(terminal_id, leaf).replace("/", ".")
        subject = MQTT_MSGS_PREFIX + plain
        found = tuple(sorted(
            (consumer_view(c, subscribed) for c in consumers.get(subject, {}).values()),
            key=lambda v: (v.created, v.name)))
        qos0 = light_session and leaf in topics.LIGHT
        subs.append(SubscriptionProbe(
            leaf, subject, found, _verdict(bool(nodes), plain in subscribed, qos0, found)))
    return TerminalProbe(terminal_id, nodes, tuple(subs))


def _verdict(connected: bool, plain_subscribed: bool, qos0: bool,
             found: tuple[ConsumerView, ...]) -> Verdict:
    if not connected:
        return Verdict.NOT_CONNECTED
    if not found:
        if not plain_subscribed:
            return Verdict.NOT_SUBSCRIBED
        return Verdict.QOS0 if qos0 else Verdict.NO_CONSUMER
    bound = [c for c in found if c.bound_here]
    if not bound:
        return Verdict.NOT_BOUND if plain_subscribed else Verdict.LOST_ON_CONNECTION
    newest = bound[-1]
    if newest.ack_pending > 0:
        return Verdict.UNACKED
    if newest.pending > 0:
        return Verdict.UNDELIVERED
    return Verdict.IDLE


def consumers_by_subject(views: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """subject: {name: the consumer as the node with the most progress reports it}; a
    replica behind its leader reports less, and one-copy consumers only on their node."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for c in (c for view in views for c in msgs_consumers(view)):
        raw = c.get("config")
        config: dict[str, Any] = raw if isinstance(raw, dict) else {}
        subject = str(config.get("filter_subject") or "")
        name = str(c.get("name", ""))
        if not subject or not name:
            continue
        have = out.setdefault(subject, {})
        if name not in have or _progress(c) > _progress(have[name]):
            have[name] = c
    return out


def _progress(c: dict[str, Any]) -> tuple[int, int]:
    return _seq(c.get("delivered")), _seq(c.get("ack_floor"))


def consumer_view(c: dict[str, Any], subscribed: set[str]) -> ConsumerView:
    raw = c.get("config")
    config: dict[str, Any] = raw if isinstance(raw, dict) else {}
    deliver = str(config.get("deliver_subject") or "")
    return ConsumerView(
        name=str(c.get("name", "")), created=str(c.get("created", "")),
        deliver_subject=deliver, delivered=_seq(c.get("delivered")),
        ack_floor=_seq(c.get("ack_floor")), ack_pending=json_count(c.get("num_ack_pending")),
        redelivered=json_count(c.get("num_redelivered")), pending=json_count(c.get("num_pending")),
        push_bound=c.get("push_bound") is True,
        bound_here=bool(deliver) and deliver in subscribed)


def _seq(value: Any) -> int:
    return json_count(value.get("stream_seq")) if isinstance(value, dict) else 0


def read_connections(monitors: Iterable[tuple[str, int]], terminal_id: str,
                     timeout: float = JSZ_TIMEOUT_S
                     ) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """Per node that answered (HOST:PORT), the connections its `/connz` lists for this
    MQTT client id with their subscriptions; one line per node that gave none."""
    found: dict[str, list[dict[str, Any]]] = {}
    failed: list[str] = []
    query = CONNZ_QUERY + urllib.parse.quote(terminal_id, safe="")
    for host, port in monitors:
        answer, why = read_monitor(host, port, query, timeout)
        if answer is None:
            failed.append(why)
        else:
            found[f"{host}:{port}"] = json_objects(answer.get("connections"))
    return found, failed
