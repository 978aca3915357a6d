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

For a terminal connected nowhere, the session's own record says it: NATS keeps each
MQTT session in the `$MQTT_sess` stream (subject `$MQTT.sess.<hash>`, the hash that
begins its consumers' names), and the record's `cons` names the one consumer per subject
the session uses; NATS never takes up a consumer the session does not list (read in its
server/mqtt.go: `processJSConsumer` looks only in that map). NATS writes the record at
every CONNECT and SUBSCRIBE that changes it. So a consumer is deleted when, on both reads,

- the record names another consumer of the same subject that the nodes hold, and
- this one was made before the record was written and `min_age_s` or longer ago.

A consumer made after the record is left alone: the session might have taken it up and
failed to write its record since. A session without a record, or whose record names no
consumer the nodes hold for the subject, is left alone too (counted).

Why deleting one loses nothing: a leftover pushes to a subject nobody subscribes, so
nothing it holds can reach the terminal, deleted or not. What the desk sent on it was
an ack or a command the application layer repeats: the terminal resends each payment the
desk has not acknowledged, and the desk answers every resend (M8).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sync.nats_admin import StoredMessage
from sync.nats_census import JSZ_TIMEOUT_S, json_count, json_objects, read_monitor
from sync.nats_probe import ConsumerView, consumer_view, consumers_by_subject

MIN_AGE_S = 300.0  # a restore or a new SUBSCRIBE takes seconds, not minutes
CONFIRM_AFTER_S = 10.0
CONNZ_PAGE = 1024  # NATS's own default page of /connz
CONNZ_ALL_QUERY = "/connz?subs=detail&limit={limit}&offset={offset}"
# what NATS names an MQTT consumer (session hash, '_', a unique part); anything else in a
# node's answer is never deleted (it goes into a JetStream API subject)
_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")
SESSION_STREAM = "$MQTT_sess"
SESSION_SUBJECT = "$MQTT.sess.{}"  # a session's record (no JetStream domain, as shipped)
_SESSION_HASH = re.compile(r"[A-Za-z0-9]{1,64}")
# NATS writes RFC 3339 with up to nanoseconds; Python's datetime takes microseconds
_CREATED = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)")


@dataclass(frozen=True)
class Leftover:
    name: str
    subject: str
    created: str
    pending: int  # stored on its subject since it was made, never to be pushed
    kept: str  # the subscription's consumer: it pushes to a live connection, or the
    by_record: bool = False  # session's record names it (the terminal is connected nowhere)

    def line(self) -> str:
        why = "is the session's, by its record" if self.by_record else "delivers"
        return (f"{self.name} on {self.subject} (made {self.created or '?'}, "
                f"{self.pending} pending; {self.kept} {why})")


@dataclass(frozen=True)
class OfflineGroup:
    """One subscription with several consumers and none bound to a live connection."""

    session: str  # the hash its consumers' names begin with
    subject: str
    consumers: tuple[ConsumerView, ...]


@dataclass(frozen=True)
class SessionRecord:
    """What a session's record in $MQTT_sess says: when it was written and the consumer
    (durable name) it uses per filter subject."""

    written: str
    consumers: dict[str, str]


@dataclass(frozen=True)
class LeftoverSurvey:
    leftovers: tuple[Leftover, ...]
    offline: int  # subscriptions with leftovers, no consumer pushing to a live connection,
    # and no record that tells (all of them until `with_records`)
    unjudged: int  # made less than min_age_s ago, at no known time, or oddly named
    offline_groups: tuple[OfflineGroup, ...] = ()

    def names(self) -> set[str]:
        return {x.name for x in self.leftovers}

    def sessions(self) -> set[str]:
        """The sessions whose records `with_records` needs."""
        return {g.session for g in self.offline_groups}

    def confirmed_by(self, later: LeftoverSurvey) -> LeftoverSurvey:
        """Only what both reads call leftovers (by the same reason), with the later
        read's counts."""
        keep = {(x.name, x.kept) for x in later.leftovers}
        return LeftoverSurvey(tuple(x for x in self.leftovers if (x.name, x.kept) in keep),
                              later.offline, later.unjudged)

    def with_records(self, records: dict[str, SessionRecord | None], now: datetime,
                     min_age_s: float = MIN_AGE_S) -> LeftoverSurvey:
        """The offline subscriptions judged by their sessions' records (module doc)."""
        leftovers = list(self.leftovers)
        offline, unjudged = 0, self.unjudged
        for g in self.offline_groups:
            record = records.get(g.session)
            kept = record.consumers.get(g.subject) if record is not None else None
            written = created_at(record.written) if record is not None else None
            if kept is None or written is None or kept not in {v.name for v in g.consumers}:
                offline += 1
                continue
            for v in g.consumers:
                if v.name == kept:
                    continue
                made = created_at(v.created)
                if made is None or made >= written or \
                        (now - made).total_seconds() < min_age_s or not _NAME.fullmatch(v.name):
                    unjudged += 1
                    continue
                leftovers.append(Leftover(v.name, g.subject, v.created, v.pending, kept,
                                          by_record=True))
        return LeftoverSurvey(tuple(leftovers), offline, unjudged)


def session_subject(session: str) -> str | None:
    """The subject of a session's record, None for a hash NATS does not make."""
    return SESSION_SUBJECT.format(session) if _SESSION_HASH.fullmatch(session) else None


def parse_session_record(message: StoredMessage | None) -> SessionRecord | None:
    """A record's `cons` as {filter subject: durable name}; None when there is no record
    or it is not one. Pure: any bytes give an answer, never an error."""
    if message is None:
        return None
    try:
        doc = json.loads(message.data)
    except (ValueError, UnicodeDecodeError):
        return None
    cons = doc.get("cons") if isinstance(doc, dict) else None
    if not isinstance(cons, dict):
        return SessionRecord(message.time, {})
    consumers: dict[str, str] = {}
    for config in cons.values():
        if isinstance(config, dict):
            subject, name = config.get("filter_subject"), config.get("durable_name")
            if isinstance(subject, str) and isinstance(name, str) and subject and name:
                consumers[subject] = name
    return SessionRecord(message.time, consumers)


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
    groups: list[OfflineGroup] = []
    unjudged = 0
    for subject, by_name in sorted(consumers_by_subject(views).items()):
        sessions: dict[str, list[dict[str, Any]]] = {}
        for name, c in by_name.items():
            sessions.setdefault(name.split("_", 1)[0], []).append(c)
        for session, consumers in sessions.items():
            if len(consumers) < 2:
                continue
            seen = sorted((consumer_view(c, subscribed) for c in consumers),
                          key=lambda v: (v.created, v.name))
            live = [v for v in seen if v.bound_here]
            if not live:
                groups.append(OfflineGroup(session, subject, tuple(seen)))
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
    return LeftoverSurvey(tuple(leftovers), len(groups), unjudged, tuple(groups))


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
