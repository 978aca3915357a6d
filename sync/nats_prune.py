"""Leftover consumers of connected terminals: found on the nodes' monitoring ports and
deleted one at a time through the JetStream API, every session kept.

A subscription (one session's subject on `$MQTT_msgs`) with more than one consumer has
leftovers (sync/nats_census.py): a refused subscription's consumer that NATS made after
refusing it, or an old one a full-cluster restart left. Until now only reset-sessions
removed them, with every session. Which consumer is the subscription's own, the
terminal's live connection says: NATS pushes a QoS 1 subscription's messages to a
`$MQTT.sub.<id>` subject that connection subscribes to. A consumer is deleted only when,
on two reads `confirm_after_s` apart, every node answered and

- another consumer of the same session and subject pushes to a subject some live
  connection subscribes, and this one does not;
- it was made `min_age_s` or longer ago (a subscription being made is not judged).

Subscriptions of terminals connected nowhere are left alone: which consumer the session
will use when it comes back is not known here.

Why deleting one loses nothing: a leftover pushes to a subject nobody subscribes, so
nothing it holds can reach the terminal, deleted or not. What the desk sent on it was
an ack or a command the application layer repeats: the terminal resends each payment the
desk has not acknowledged, and the desk answers every resend (M8).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sync.nats_census import JSZ_TIMEOUT_S, json_count, json_objects, read_monitor
from sync.nats_probe import consumer_view, consumers_by_subject

MIN_AGE_S = 300.0  # a restore or a new SUBSCRIBE takes seconds, not minutes
CONFIRM_AFTER_S = 10.0
CONNZ_PAGE = 1024  # NATS's own default page of /connz
CONNZ_ALL_QUERY = "/connz?subs=detail&limit={limit}&offset={offset}"
# what NATS names an MQTT consumer (session hash, '_', a unique part); anything else in a
# node's answer is never deleted (it goes into a JetStream API subject)
_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")
# NATS writes RFC 3339 with up to nanoseconds; Python's datetime takes microseconds
_CREATED = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)")


@dataclass(frozen=True)
class Leftover:
    name: str
    subject: str
    created: str
    pending: int  # stored on its subject since it was made, never to be pushed
    kept: str  # the consumer of the same subscription that pushes to a live connection

    def line(self) -> str:
        return (f"{self.name} on {self.subject} (made {self.created or '?'}, "
                f"{self.pending} pending; {self.kept} delivers)")


@dataclass(frozen=True)
class LeftoverSurvey:
    leftovers: tuple[Leftover, ...]
    offline: int  # subscriptions with leftovers and no consumer pushing to a live connection
    unjudged: int  # made less than min_age_s ago, at no known time, or oddly named

    def names(self) -> set[str]:
        return {x.name for x in self.leftovers}

    def confirmed_by(self, later: LeftoverSurvey) -> LeftoverSurvey:
        """Only what both reads call leftovers, with the later read's counts."""
        keep = later.names()
        return LeftoverSurvey(tuple(x for x in self.leftovers if x.name in keep),
                              later.offline, later.unjudged)


def created_at(text: str) -> datetime | None:
    """A node's `created` time, or None when it is not one."""
    m = _CREATED.fullmatch(text)
    if m is None:
        return None
    base, fraction, zone = m.groups()
    micro = f".{(fraction or '0')[:6]:0<6}"
    try:
        return datetime.fromisoformat(base + micro + ("+00:00" if zone == "Z" else zone))
    except ValueError:
        return None


def find_leftovers(views: list[dict[str, Any]], subscribed: set[str], now: datetime,
                   min_age_s: float = MIN_AGE_S) -> LeftoverSurvey:
    """`views`: every node's /jsz with consumers and config; `subscribed`: every subject
    a connection on any node subscribes (`read_subscribed`); `now` aware. Pure: any JSON
    gives a survey, never an error."""
    leftovers: list[Leftover] = []
    offline = unjudged = 0
    for subject, by_name in sorted(consumers_by_subject(views).items()):
        sessions: dict[str, list[dict[str, Any]]] = {}
        for name, c in by_name.items():
            sessions.setdefault(name.split("_", 1)[0], []).append(c)
        for consumers in sessions.values():
            if len(consumers) < 2:
                continue
            seen = sorted((consumer_view(c, subscribed) for c in consumers),
                          key=lambda v: (v.created, v.name))
            live = [v for v in seen if v.bound_here]
            if not live:
                offline += 1
                continue
            if len(live) > 1:  # never seen; neither is known to be the session's
                continue
            for v in seen:
                if v.bound_here:
                    continue
                made = created_at(v.created)
                if made is None or (now - made).total_seconds() < min_age_s or \
                        not _NAME.fullmatch(v.name):
                    unjudged += 1
                    continue
                leftovers.append(Leftover(v.name, subject, v.created, v.pending,
                                          live[0].name))
    return LeftoverSurvey(tuple(leftovers), offline, unjudged)


def read_subscribed(monitors: Iterable[tuple[str, int]], timeout: float = JSZ_TIMEOUT_S,
                    page: int = CONNZ_PAGE) -> tuple[set[str], list[str]]:
    """Every subject any connection on the nodes subscribes, page by page of /connz;
    one line per node that did not answer every page. A connection that comes or goes
    between two pages may be missed: its consumers then look unbound, which keeps them."""
    subjects: set[str] = set()
    failed: list[str] = []
    for host, port in monitors:
        offset = 0
        while True:
            query = CONNZ_ALL_QUERY.format(limit=page, offset=offset)
            answer, why = read_monitor(host, port, query, timeout)
            if answer is None:
                failed.append(why)
                break
            conns = json_objects(answer.get("connections"))
            for c in conns:
                subjects.update(str(s.get("subject", "")) for s in
                                json_objects(c.get("subscriptions_list_detail")))
            offset += len(conns)
            if len(conns) < page or offset >= json_count(answer.get("total")):
                break
    subjects.discard("")
    return subjects, failed
