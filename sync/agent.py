"""The terminal's sync agent: wires the MQTT session to the engine and the ledger.

Threads:
- "mqtt-net" (sync/connection.py) owns paho; its callbacks only enqueue here.
- "sync-worker" (this module) does everything else: ledger reads and writes (fsync),
  signature checks, desk commands and config (through the engine's methods), the outbox drain,
  state and health. So paho's loop never waits on the engine lock or the disk.

Topics, payloads and the rules for rejecting messages: docs/mqtt.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kiosk import __version__
from kiosk.config import Config
from kiosk.engine import PaymentEngine
from kiosk.ledger import Ledger, LedgerError, LedgerTx
from kiosk.ledger import desk as desk_ledger
from kiosk.offers import NO_OFFERS
from sync import desk_beat, topics
from sync.ack_watch import AckWatch
from sync.commands import Command, CommandError, check_fresh, check_seq, parse_command
from sync.connection import (
    Connection,
    ConnSettings,
    Endpoint,
    Inbound,
    LinkStatus,
    Subscription,
    Will,
)
from sync.desk_config import ConfigDoc, ConfigDocError, parse_config_doc
from sync.drain import Drain
from sync.ed25519 import PublicKey
from sync.envelope import EnvelopeError, open_envelope, peek_body, seal
from sync.health import build_health, significant
from sync.keys import KeyError_, key_id, load_or_create_signing_key, public_from_b64

log = logging.getLogger("sync.agent")

DESK_OOS_CODE = "desk"
POLL_S = 1.0  # look at the outbox at least this often (payments written by the engine)
REJECT_EVENTS_PER_MIN = 20
# a refused desk beat is one event per reason and hour: beats come every minute from each
# worker, and one cause (this terminal's clock off, a desk key not pinned) refuses them all
BEAT_REFUSAL_EVERY_S = 3600.0
STATUS_REFUSALS = {
    "unknown_payment": "no such payment on this terminal",
    "not_allowed": "this record cannot take that status now",
    "stale": "about an attempt before the payment's latest re-processing",
    "stale_version": "older than the newest status already applied (ignored)",
}


def signing_key_path(config: Config) -> Path:
    return config.mqtt.signing_key or (config.paths.data_dir / "keys" / "terminal.ed25519.key")


def desk_public_keys(config: Config) -> dict[str, PublicKey]:
    keys = {}
    for kid, b64 in config.mqtt.desk_keys:
        try:
            keys[kid] = public_from_b64(b64)
        except KeyError_ as exc:
            raise KeyError_(f"mqtt.desk_keys.{kid}: {exc}") from exc
    return keys


@dataclasses.dataclass(frozen=True)
class _Refusal:
    """Why a desk message was not acted on: a stable code and a human reason."""

    code: str
    message: str


class _RateLimit:
    """At most `per_window` rejection events per `window_s` per kind; the rest are
    counted (`suppressed`, taken by the next event that is let through)."""

    def __init__(self, per_window: int, window_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_window, self.window_s, self._clock = per_window, window_s, clock
        self._window: dict[str, tuple[float, int]] = {}
        self.suppressed: dict[str, int] = {}

    def allow(self, kind: str) -> bool:
        now = self._clock()
        start, count = self._window.get(kind, (now, 0))
        if now - start >= self.window_s:
            start, count = now, 0
        if count >= self.per_window:
            self.suppressed[kind] = self.suppressed.get(kind, 0) + 1
            self._window[kind] = (start, count)
            return False
        self._window[kind] = (start, count + 1)
        return True


class SyncAgent:
    def __init__(
        self,
        config: Config,
        engine: PaymentEngine,
        ledger: Ledger,
        on_restart: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.engine = engine
        self.ledger = ledger
        self.on_restart = on_restart
        m = config.mqtt
        self.terminal_id = config.terminal.id
        self.key, created = load_or_create_signing_key(signing_key_path(config))
        if created:
            log.warning("created a new terminal signing key at %s", signing_key_path(config))
        self.kid = key_id(self.terminal_id, self.key.public_key())
        self.desk_keys = desk_public_keys(config)
        if not self.desk_keys:
            log.warning("mqtt.desk_keys is empty: every desk message will be rejected")
        self.drain = Drain(
            ledger,
            self.terminal_id,
            self.key,
            self.kid,
            inflight=m.inflight,
            batch=m.batch,
            resend_after_s=m.resend_after_s,
        )
        self.help_texts: dict[str, dict[str, str]] = {}
        self.config_version = 0
        self._queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._started = time.monotonic()
        self._connected = False
        self._link_shown: LinkStatus | None = None  # the last link given to the engine
        self._health_sig: tuple[Any, ...] | None = None
        self._health_at = -1e9
        self._health_wanted = False
        self._last_poll = 0.0
        self._reject_limit = _RateLimit(REJECT_EVENTS_PER_MIN)
        self._restart_after: float | None = None
        self._acks: list[int] = []
        self._beat_refusals = _RateLimit(1, BEAT_REFUSAL_EVERY_S)  # per refusal reason
        self.ack_watch = AckWatch(m.ack_stall_s, heard_stall_s=m.ack_stall_heard_s)
        self.conn = Connection(self._settings(), self)

    # -- lifecycle ---------------------------------------------------------------------
    def _settings(self) -> ConnSettings:
        m, t = self.config.mqtt, self.terminal_id
        light = m.light_session  # docs/mqtt.md "Light sessions"
        return ConnSettings(
            host=m.host,
            port=m.port,
            client_id=m.client_id or t,
            protocol=m.protocol,
            endpoints=tuple(Endpoint(h, p) for h, p in m.hosts),
            keepalive=m.keepalive_s,
            tls_ca=m.tls_ca,
            tls_cert=m.tls_cert,
            tls_key=m.tls_key,
            session_expiry_s=m.session_expiry_s,
            clean_start=False,
            will=Will(
                topics.topic(t, topics.STATE),
                lambda cid: self._state_payload("offline", cid, "lost", will=True),
                qos=1,
                retain=True,
                delay_s=m.will_delay_s,
            ),
            subscriptions=(
                # never the retained copy; a command published with retain is refused
                Subscription(topics.topic(t, topics.CMD), 1, send_retained=False,
                             retain_as_published=True),
                *(Subscription(topics.topic(t, leaf), 0 if light and leaf in topics.LIGHT
                               else 1)
                  for leaf in (topics.ACK, topics.PAYMENT_STATUS, topics.CONFIG)),
                # the desk's beat, live only; a NATS node whose users.conf predates it
                # refuses it (mosquitto grants it, delivers nothing) and the session goes
                # on: the ack watch then judges without it
                *((Subscription(desk_beat.TOPIC, 0, send_retained=False, optional=True),)
                  if m.ack_stall_heard_s > 0 else ()),
            ),
            reconnect_min_s=m.reconnect_min_s,
            reconnect_max_s=m.reconnect_max_s,
            connect_timeout_s=m.connect_timeout_s,
            max_inflight=max(20, min(1000, m.inflight // max(1, m.batch) + 10)),
        )

    def start(self) -> None:
        try:
            desk_ledger.limit_page_cache(self.ledger)  # memory: see kiosk/ledger/desk.py
            self.restore()
        except LedgerError as exc:
            # A blocked or failing ledger (the terminal is out of service): connect anyway,
            # so state and health tell the desk, which is exactly when it must know.
            log.error("desk settings not restored, the ledger is unusable: %s", exc)
        self.engine.subscribe(self._on_snapshot)
        self._worker = threading.Thread(target=self._work, name="sync-worker", daemon=True)
        self._worker.start()
        self.conn.start()
        log.info(
            "sync agent: terminal %s, key %s, broker %s, MQTT %s%s",
            self.terminal_id,
            self.kid,
            ", ".join(str(e) for e in self.conn.endpoints),
            self.config.mqtt.protocol,
            " (TLS)" if self.config.mqtt.tls_ca else "",
        )

    def link_status(self) -> LinkStatus:
        """The broker link as the technician sees it: state, endpoint, why it is down
        (a stable code and a Russian and English text: LinkStatus.text)."""
        return self.conn.link

    def stop(self) -> None:
        self.engine.unsubscribe(self._on_snapshot)
        self._stop.set()
        self._queue.put(("stop",))
        if self._worker is not None:
            self._worker.join(15)
        offline = self._state_payload("offline", self.conn.connection_id, "shutdown")
        self.conn.stop(final=[(topics.topic(self.terminal_id, topics.STATE), offline, 1, True)])

    def restore(self) -> None:
        """Apply what the desk set before a restart (config, phone, disable) to the engine."""
        settings = desk_ledger.desk_settings(self.ledger)
        body = settings["config"]
        if body is not None:
            try:
                doc = parse_config_doc(body, self.terminal_id, self.engine.config.catalog)
                self._apply_config(doc, publish=False)
            except ConfigDocError as exc:  # kept documents were valid when applied
                log.error("stored desk config v%s no longer applies: %s", body.get("version"), exc)
        self.config_version = settings["config_version"]
        if settings["support_phone"]:
            self.engine.set_support_phone(settings["support_phone"])
        if settings["disabled"]:
            self.engine.set_out_of_service(
                DESK_OOS_CODE, f"disabled by the desk: {settings['disabled']}"
            )

    # -- connection handler (network thread: enqueue only) -----------------------------
    def on_connected(self, connection_id: str, session_present: bool) -> None:
        self._queue.put(("connected", connection_id, session_present))

    def on_disconnected(self, reason: str) -> None:
        self._queue.put(("disconnected", reason))

    def on_message(self, msg: Inbound) -> None:
        self._queue.put(("message", msg))

    def on_published(self, tag: Any, ok: bool, reason: str) -> None:
        self._queue.put(("published", tag, ok, reason))

    def _on_snapshot(self, snap: dict[str, Any]) -> None:  # engine thread, engine lock held
        self._queue.put(("snapshot",))

    # -- the worker --------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=self._wait_s())
            except queue.Empty:
                item = None
            try:
                items = [item] if item is not None else []
                while len(items) < 10_000:  # take what is there, then act once
                    try:
                        items.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                for it in items:
                    if it[0] == "stop":
                        return
                    self._handle(it)
                self._after_batch()
            except LedgerError as exc:
                log.error("ledger error in the sync worker: %s", exc)
                self._stop.wait(1.0)
            except Exception:
                log.exception("sync worker error")
                self._stop.wait(0.2)

    def _wait_s(self) -> float:
        waits = [POLL_S]
        r = self.drain.next_resend_in()
        if r is not None:
            waits.append(r)
        if self._connected:
            interval = self.config.mqtt.health_interval_s
            waits.append(max(0.0, self._health_at + interval - time.monotonic()))
            if self._health_wanted:
                waits.append(
                    max(
                        0.0,
                        self._health_at + self.config.mqtt.health_min_interval_s
                        - time.monotonic(),
                    )
                )
        if self._restart_after is not None:
            waits.append(max(0.0, self._restart_after - time.monotonic()))
        return max(0.01, min(waits))

    def _handle(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == "connected":
            self._connected = True
            self.engine.note_sync_connected()  # the technician's status page
            self.drain.reset(item[1])
            self.ack_watch.connected(item[2])  # a kept session keeps the stall
            self._publish_state("online")
            self._publish_health(force=True)
        elif kind == "disconnected":
            self._connected = False
            self.ack_watch.disconnected()
            self.engine.note_sync_disconnected(str(item[1]))
        elif kind == "published":
            self._published(item[1], item[2], item[3])
        elif kind == "message":
            self._message(item[1])
        elif kind == "snapshot":
            self._health_wanted = True

    def _after_batch(self) -> None:
        if self._acks:
            acks, self._acks = self._acks, []
            self.drain.acknowledged(acks)
            self.engine.note_sync_delivered()
        self.drain.flush_sent()
        link = self.conn.link
        if link != self._link_shown:  # at most POLL_S late: the technician's status page
            self._link_shown = link
            self.engine.note_sync_link(link.as_dict())
        if self._restart_after is not None and time.monotonic() >= self._restart_after:
            self._restart_when_idle()
        if not self._connected:
            return
        if self.ack_watch.due():
            self._reset_session()
            return
        now = time.monotonic()
        if not self.drain.exhausted or now - self._last_poll >= POLL_S or self._health_wanted:
            self._last_poll = now
            self._pump()
        self._maybe_health(now)

    def _reset_session(self) -> None:
        """Publishes taken, no ack for the watch's wait: a broker session that lost its
        ack subscription (sync/ack_watch.py), or a desk that is down. Nothing in the
        ledger changes: the records stay in the outbox and go again on the new session."""
        waited, heard = self.ack_watch.waited_s(), self.ack_watch.heard_waited_s()
        self.ack_watch.reset_started()
        self.conn.reset_session()  # first: a ledger that cannot write must not stop it
        log.warning("no desk ack for %.0f s of connected time (%.0f s of it with the desk's "
                    "beat heard) while the broker took our publishes: %s; starting the MQTT "
                    "session afresh (reset %d; next after %.0f s more without an ack)",
                    waited, heard,
                    "this session's ack subscription is lost" if heard
                    else "the desk is down or this session's ack subscription is lost",
                    self.ack_watch.resets, self.ack_watch.next_wait_s)
        self.ledger.add_event("session_reset", "warning", {
            "waited_s": round(waited), "heard_s": round(heard),
            "resets": self.ack_watch.resets, "in_flight": len(self.drain.in_flight),
            "detail": "publishes taken but no desk ack: MQTT session started afresh"})

    def _restart_when_idle(self) -> None:
        """Between customers only: the daemon's loop ends and systemd starts it again."""
        idle = self.engine.request_restart()  # refused while a customer is paying
        if idle:
            log.warning("restarting on the desk's command")
            self._restart_after = None
            if self.on_restart is not None:
                self.on_restart()
        else:
            self._restart_after = time.monotonic() + 1.0

    def _pump(self) -> None:
        for batch in self.drain.next_batches():
            self.conn.publish(
                topics.topic(self.terminal_id, batch.leaf),
                batch.payload,
                qos=1,
                tag=("drain", batch.seqs),
            )

    def _published(self, tag: Any, ok: bool, reason: str) -> None:
        if isinstance(tag, tuple) and tag and tag[0] == "drain":
            self.drain.published(tag[1], ok)
            if ok:
                self.ack_watch.taken()
        if not ok and reason not in ("connection lost", "not connected", "stopped"):
            self._reject_event(
                "publish_refused",
                {"tag": str(tag[0]), "reason": reason,
                 "detail": f"the broker refused a {tag[0]} publish: {reason}"},
            )

    # -- state and health --------------------------------------------------------------
    def _state_payload(
        self, state: str, connection_id: str, reason: str | None = None, will: bool = False
    ) -> bytes:
        """`will`: the Last Will is composed when the connection is made, long before the
        broker publishes it, so it carries `connected_ms` and no `at_ms` (the desk uses
        the time it receives it)."""
        now = int(time.time() * 1000)
        body: dict[str, Any] = {
            "v": 1,
            "terminal_id": self.terminal_id,
            "state": state,
            "connection_id": connection_id,
            "at_ms": None if will else now,
            "agent_version": __version__,
        }
        if will:
            body["connected_ms"] = now
        if reason:
            body["reason"] = reason
        return json.dumps(body).encode()

    def _publish_state(self, state: str) -> None:
        self.conn.publish(
            topics.topic(self.terminal_id, topics.STATE),
            self._state_payload(state, self.conn.connection_id),
            qos=1,
            retain=True,
            tag=("state",),
        )

    def _maybe_health(self, now: float) -> None:
        m = self.config.mqtt
        if now - self._health_at >= m.health_interval_s:
            self._publish_health(force=True)
        elif self._health_wanted and now - self._health_at >= m.health_min_interval_s:
            self._publish_health(force=False)

    def _publish_health(self, force: bool) -> None:
        self._health_wanted = False
        health = build_health(
            self.engine,
            self.ledger,
            connection_id=self.conn.connection_id,
            started_monotonic=self._started,
            config_version=self.config_version,
        )
        sig = significant(health)
        if not force and sig == self._health_sig:
            return
        self._health_sig = sig
        self._health_at = time.monotonic()
        self.conn.publish(
            topics.topic(self.terminal_id, topics.HEALTH),
            json.dumps(health, ensure_ascii=False).encode(),
            qos=1,
            retain=True,
            tag=("health",),
        )

    # -- desk messages -----------------------------------------------------------------
    def _message(self, msg: Inbound) -> None:
        try:
            split = topics.split(msg.topic)
            if msg.topic == desk_beat.TOPIC:
                self._on_beat(msg)
            elif split is None or split[0] != self.terminal_id:
                log.warning("message on an unexpected topic %s ignored", msg.topic)
            elif split[1] == topics.ACK:
                self._on_ack(msg)
            elif split[1] == topics.PAYMENT_STATUS:
                self._on_payment_status(msg)
            elif split[1] == topics.CONFIG:
                self._on_config(msg)
            elif split[1] == topics.CMD:
                self._on_command(msg)
        finally:
            self.conn.ack(msg)  # processed (durably) or rejected: PUBACK it now

    def _reject_event(self, kind: str, data: dict[str, Any]) -> None:
        log.warning("%s: %s", kind, data)
        if self._reject_limit.allow(kind):
            suppressed = self._reject_limit.suppressed.pop(kind, 0)
            if suppressed:
                data = {**data, "suppressed_before": suppressed}
            self.ledger.add_event(kind, "warning", data)

    def _open(self, msg: Inbound, purpose: str, event: str) -> dict[str, Any] | _Refusal:
        """The verified body, or the refusal (recorded as an `event` with its code)."""
        refusal: _Refusal | None = None
        body: dict[str, Any] = {}
        if msg.retain and purpose != "config":
            refusal = _Refusal("retained", f"a retained {purpose} message is never acted on")
        else:
            try:
                opened = open_envelope(msg.payload, purpose, self.desk_keys)
                body = opened.body
                if purpose != "config" and body.get("terminal_id") != self.terminal_id:
                    refusal = _Refusal(
                        "wrong_terminal",
                        f"addressed to {str(body.get('terminal_id'))[:32]!r}, "
                        f"this is {self.terminal_id}",
                    )
            except EnvelopeError as exc:
                refusal = _Refusal(exc.code, str(exc)[:200])
        if refusal is not None:
            self._reject_event(
                event, {"topic": msg.topic, "reason": refusal.code, "detail": refusal.message}
            )
            return refusal
        body["_kid"] = opened.kid
        body["_sha256"] = hashlib.sha256(opened.body_bytes).hexdigest()
        return body

    def _on_ack(self, msg: Inbound) -> None:
        body = self._open(msg, "ack", "desk_message_rejected")
        if isinstance(body, _Refusal):
            return
        seqs = body.get("seqs")
        if not isinstance(seqs, list) or not all(type(s) is int and s > 0 for s in seqs):
            self._reject_event(
                "desk_message_rejected",
                {"topic": msg.topic, "reason": "malformed",
                 "detail": "seqs must be a list of positive integers"},
            )
            return
        self._acks.extend(seqs)  # committed once per worker round (_after_batch)
        self.ack_watch.acked()

    def _on_beat(self, msg: Inbound) -> None:
        """The desk's beat (sync/desk_beat.py): heard only live, signed by a desk key,
        issued within clock_skew_s of our clock, from a worker that stores our records."""
        try:
            beat = desk_beat.open_beat(msg.payload, msg.retain, self.desk_keys,
                                       int(time.time() * 1000), self.config.mqtt.clock_skew_s)
        except (EnvelopeError, desk_beat.BeatError) as exc:
            self._beat_refusal(msg.topic, exc.code, str(exc))
            return
        if beat.covers(self.terminal_id):
            self.ack_watch.heard(beat.every_s)
            self.engine.note_sync_desk_heard()  # the technician's status page

    def _beat_refusal(self, topic: str, code: str, detail: str) -> None:
        """One `desk_message_rejected` event per reason and BEAT_REFUSAL_EVERY_S, with the
        number refused since the last one; the watch then judges without the beat."""
        if not self._beat_refusals.allow(code):
            return
        since = self._beat_refusals.suppressed.pop(code, 0)
        self._reject_event("desk_message_rejected", {
            "topic": topic, "reason": code, "detail": detail[:200],
            **({"refused_since_last": since} if since else {})})

    def _on_payment_status(self, msg: Inbound) -> None:
        body = self._open(msg, "payment_status", "desk_message_rejected")
        if isinstance(body, _Refusal):
            return
        statuses = body.get("statuses")
        if not isinstance(statuses, list):
            self._reject_event(
                "desk_message_rejected",
                {"topic": msg.topic, "reason": "malformed", "detail": "statuses must be a list"},
            )
            return
        for st in statuses:
            ok = (
                isinstance(st, dict)
                and isinstance(st.get("payment_id"), str)
                and st.get("status") in desk_ledger.FINAL_STATUSES
                and type(st.get("reprocess_count", 0)) is int
                and type(st.get("version")) is int
                and 0 < st["version"] < 2**53
                and isinstance(st.get("detail") or "", str)
            )
            if not ok:
                self._reject_event(
                    "payment_status_rejected",
                    {"payment_id": str(st.get("payment_id"))[:64] if isinstance(st, dict)
                     else None, "reason": "malformed",
                     "detail": "each status needs payment_id, status processed|failed, "
                               "reprocess_count and a positive integer version"},
                )
                continue
            outcome = desk_ledger.apply_payment_status(
                self.ledger,
                st["payment_id"],
                st["status"],
                (st.get("detail") or None),
                st.get("reprocess_count", 0),
                st["version"],
            )
            log.info("payment %s %s v%s from the desk: %s", st["payment_id"], st["status"],
                     st["version"], outcome)
            if outcome in STATUS_REFUSALS:
                self._reject_event(
                    "payment_status_rejected",
                    {"payment_id": st["payment_id"][:64], "status": st["status"],
                     "version": st["version"], "reason": outcome,
                     "detail": STATUS_REFUSALS[outcome]},
                )

    # -- config ------------------------------------------------------------------------
    def _on_config(self, msg: Inbound) -> None:
        if not msg.payload:
            return  # the desk cleared the retained document: keep what is applied
        body = self._open(msg, "config", "config_rejected")
        if isinstance(body, _Refusal):
            return
        sha = body.pop("_sha256")
        body.pop("_kid")
        version = body.get("version")
        current = desk_ledger.current_config(self.ledger)
        if current is not None and type(version) is int and version <= current[0]:
            if version == current[0] and sha == current[1]:
                return  # the retained copy again (every reconnect): nothing to do
            self._reject_event(
                "config_rejected",
                {"version": version, "current": current[0], "reason": "stale_version",
                 "detail": f"version {version} is not above the applied {current[0]}"},
            )
            return
        try:
            doc = parse_config_doc(body, self.terminal_id, self.engine.config.catalog)
        except ConfigDocError as exc:
            self._reject_event(
                "config_rejected",
                {"version": version if type(version) is int else None, "reason": exc.code,
                 "detail": str(exc)[:300]},
            )
            return
        if not desk_ledger.record_config(self.ledger, doc.version, sha, body):
            self._reject_event(
                "config_rejected",
                {"version": doc.version, "reason": "duplicate_document",
                 "detail": "this version or this very document was applied before"},
            )
            return
        self._apply_config(doc, publish=True)
        self.config_version = doc.version
        self.ledger.add_event("config_applied", "info", {"version": doc.version})
        self._health_wanted = True

    def _apply_config(self, doc: ConfigDoc, publish: bool) -> None:
        """Every part at once in the engine (validated before)."""
        self.engine.apply_desk_config(
            version=doc.version,
            catalog=doc.catalog,
            support_phone=doc.support_phone,
            pin_hash=doc.pin_hash,
            help_texts=doc.help_texts,  # shown by the UI's help screen
            # each document carries the whole rules: without a section, offers are off
            # (so a restart, which re-applies the latest document only, changes nothing)
            offers=doc.offers if doc.offers is not None else NO_OFFERS,
            help_center=doc.help_center,  # the help center's articles (self-service.md)
            publish=publish,
        )
        if doc.help_texts is not None:
            self.help_texts = doc.help_texts
        self.config_version = doc.version

    # -- commands ----------------------------------------------------------------------
    def _on_command(self, msg: Inbound) -> None:
        claimed = peek_body(msg.payload).get("cmd_id")
        claimed = claimed if isinstance(claimed, str) else None
        body = self._open(msg, "cmd", "command_rejected")
        if isinstance(body, _Refusal):
            self._reply(
                msg, None, {"ok": False, "error": body.code, "message": body.message}, claimed
            )
            return
        kid = body.pop("_kid")
        body.pop("_sha256")
        try:
            cmd = parse_command(body)
            check_fresh(
                cmd, self.terminal_id, self.ledger.now_ms(), self.config.mqtt.clock_skew_s * 1000
            )
        except CommandError as exc:
            self._reject_event(
                "command_rejected", {"cmd_id": claimed, "reason": exc.code, "detail": str(exc)}
            )
            self._reply(msg, None, {"ok": False, "error": exc.code, "message": str(exc)}, claimed)
            return
        old = desk_ledger.command_record(self.ledger, cmd.cmd_id)
        if old is not None:
            self._reject_event(
                "command_rejected",
                {"cmd_id": cmd.cmd_id, "reason": "replayed",
                 "detail": "executed before: the stored result is sent again"},
            )
            self._reply(msg, cmd, {**old.result, "duplicate": True})
            return
        try:
            check_seq(cmd, desk_ledger.last_command_seq(self.ledger, kid))
        except CommandError as exc:
            self._reject_event(
                "command_rejected", {"cmd_id": cmd.cmd_id, "reason": exc.code, "detail": str(exc)}
            )
            self._reply(
                msg, cmd, {"ok": False, "error": exc.code, "message": str(exc), **exc.extra}
            )
            return
        result = self._execute(cmd, kid)
        self._reply(msg, cmd, result)

    def _execute(self, cmd: Command, kid: str) -> dict[str, Any]:
        a = cmd.args
        action = None
        extra: dict[str, Any] = {"type": cmd.type}
        if cmd.type == "reprocess":
            action = self._reprocess_action(cmd)
        elif cmd.type == "reprocess_unclaimed":
            action = self._claim_action(cmd)
        elif cmd.type == "set_support_phone":
            extra["support_phone"] = a["phone"]
        elif cmd.type == "disable":
            extra["reason"] = a["reason"] or "disabled by the desk"
        fresh, result = desk_ledger.execute_command(
            self.ledger, cmd.cmd_id, cmd.type, kid, cmd.seq, action, extra
        )
        if not fresh:  # recorded meanwhile (cannot happen on one worker; kept safe)
            return {**result, "duplicate": True}
        self.ledger.add_event(
            "desk_command", "info", {"cmd_id": cmd.cmd_id, "type": cmd.type, "ok": result["ok"]}
        )
        if not result.get("ok"):
            return result
        # The ledger has it; now the engine (a restart re-applies from the ledger).
        if cmd.type == "set_support_phone":
            self.engine.set_support_phone(a["phone"])
        elif cmd.type == "disable":
            reason = f"disabled by the desk: {extra['reason']}"
            self.engine.set_out_of_service(DESK_OOS_CODE, reason)
        elif cmd.type == "enable":
            self.engine.clear_out_of_service(DESK_OOS_CODE)
        elif cmd.type == "request_health":
            self._publish_health(force=True)
        elif cmd.type == "report_funnel":
            self.engine.report_funnel()  # an event: it goes out with the next drain
        elif cmd.type == "restart":
            self._restart_after = time.monotonic() + 1.0  # let the result go out first
        elif cmd.type in ("reprocess", "reprocess_unclaimed"):
            self._last_poll = 0.0  # the new outbox message goes out now
        self._health_wanted = True
        return result

    def _reprocess_action(self, cmd: Command) -> desk_ledger.DeskAction:
        a = cmd.args
        base = desk_ledger.reprocess_action(
            a["payment_id"], a["account"], cmd.cmd_id, a["reason"],
            a.get("reprocess_count"),
        )
        catalog = self.engine.config.catalog

        def action(tx: LedgerTx) -> dict[str, Any]:
            from sqlalchemy import select

            from kiosk.ledger import schema as t

            row = tx.execute(
                select(t.payments.c.provider_id).where(t.payments.c.id == a["payment_id"])
            ).first()
            provider = catalog.get(row.provider_id) if row and row.provider_id else None
            if provider is not None and not provider.validate_account(a["account"]):
                raise desk_ledger.DeskRefused(
                    "invalid_account", f"{a['account']} is not a valid {provider.id} account"
                )
            return base(tx)

        return action

    def _claim_action(self, cmd: Command) -> desk_ledger.DeskAction:
        """reprocess_unclaimed: the provider and account are checked against the catalog
        before the ledger part runs (kiosk/ledger/desk.py, claim_unclaimed_action)."""
        a = cmd.args
        provider = self.engine.config.catalog.get(a["provider_id"])

        def refused(code: str, message: str) -> desk_ledger.DeskAction:
            def action(tx: LedgerTx) -> dict[str, Any]:
                raise desk_ledger.DeskRefused(code, message)

            return action

        if provider is None:
            return refused("unknown_provider", f"no provider {a['provider_id']!r} here")
        if not provider.validate_account(a["account"]):
            return refused(
                "invalid_account", f"{a['account']} is not a valid {provider.id} account"
            )
        return desk_ledger.claim_unclaimed_action(
            a["record_id"], provider.id, a["account"], cmd.cmd_id, a["reason"],
            provider.commission,
        )

    def _reply(
        self,
        msg: Inbound,
        cmd: Command | None,
        result: dict[str, Any],
        claimed_id: str | None = None,
    ) -> None:
        body = {
            "v": 1,
            "terminal_id": self.terminal_id,
            "cmd_id": cmd.cmd_id if cmd is not None else None,
            "claimed_cmd_id": claimed_id if cmd is None else None,
            "type": cmd.type if cmd is not None else None,
            "at_ms": self.ledger.now_ms(),
            **{k: v for k, v in result.items() if k not in ("key_id", "seq")},
        }
        own = topics.topic(self.terminal_id, topics.CMD_RESULT)
        if msg.response_topic not in (None, own):
            log.warning("response topic %s ignored: results go to %s", msg.response_topic, own)
        self.conn.publish(
            own,
            seal(self.key, self.kid, "cmd_result", body),
            qos=1,
            tag=("result",),
            correlation_data=msg.correlation_data,
        )
