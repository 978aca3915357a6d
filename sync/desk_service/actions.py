"""What an operator asks a terminal to do, and what came of it: one path for the command
line (`kiosk desk cmd`, `kiosk desk status`) and the desk page.

A command is signed and sent (sync/desk.py), and its outcome told apart: executed,
executed before (a retry ran nothing again), refused (by the terminal, with its code),
queued at the broker (the terminal is away), or not delivered at all.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from sync import topics
from sync.envelope import MAX_ENVELOPE_BYTES, seal

EXIT_OK = 0  # executed (or executed before: a retry ran nothing again)
EXIT_REFUSED = 1  # refused by the terminal or by this tool: code and reason printed
EXIT_QUEUED = 2  # queued at the broker for the terminal's session, not executed yet
EXIT_NO_BROKER = 3
EXIT_NOT_DELIVERED = 4  # the broker refused it, or no terminal session exists for it
PUBACK_WAIT_S = 1.0  # after no result: how long to wait for the broker's answer
_PUBLISH_LOCK = threading.Lock()  # publish + read its tag (Desk.last_publish) as one


@dataclass(frozen=True)
class Outcome:
    code: int  # one of EXIT_*
    kind: str  # executed | again | refused | queued | not_delivered | sent
    message: str  # one line for a person (English; the page translates `kind`)
    cmd_id: str | None = None
    result: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.code == EXIT_OK


def reprocess_cmd_id(terminal: str, args: dict[str, Any]) -> str:
    """The same correction retried is the same command: the terminal runs it once."""
    key = "|".join(str(args.get(k)) for k in ("payment_id", "record_id", "provider_id",
                                              "account", "reprocess_count"))
    return "rp-" + hashlib.sha256(f"{terminal}|{key}".encode()).hexdigest()[:40]


def run_command(desk: Any, terminal: str, kind: str, args: dict[str, Any],
                ttl_s: float, wait_s: float) -> Outcome:
    """Sign, send and wait for the result of one command."""
    cmd_id = None
    if kind in ("reprocess", "reprocess_unclaimed"):
        cmd_id = reprocess_cmd_id(terminal, args)
    body = desk.command_body(terminal, kind, args, ttl_s, cmd_id=cmd_id)
    result = desk.run_command(body, wait_s)
    cid = str(body["cmd_id"])
    if result is None:
        outcome = desk.wait_outcome(cid, PUBACK_WAIT_S)
        if outcome == "Success":
            until = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(body["expires_ms"] / 1000))
            return Outcome(EXIT_QUEUED, "queued",
                           f"queued at the broker, not yet executed: {cid} waits in "
                           f"{terminal}'s session (terminal offline or busy); it expires at "
                           f"{until} UTC; sending the same command again is safe", cid)
        reason = outcome or "no answer from the broker"
        if outcome == "No matching subscribers":
            reason = f"no session of {terminal} at the broker (never connected?)"
        return Outcome(EXIT_NOT_DELIVERED, "not_delivered", f"not delivered: {cid}: {reason}",
                       cid)
    if result.get("ok"):
        again = result.get("duplicate") or result.get("already")
        return Outcome(EXIT_OK, "again" if again else "executed",
                       "executed before, not run again" if again else "executed", cid, result)
    return Outcome(EXIT_REFUSED, "refused",
                   f"refused: {result.get('error')}: {result.get('message')}", cid, result)


def send_status(desk: Any, terminal: str, payment_id: str, status: str,
                detail: str | None, reprocess_count: int | None = None) -> Outcome:
    """Tell a terminal a payment is processed or failed (a new version each time)."""
    known = desk.store.known_payment(terminal, payment_id)
    if known is None:
        return Outcome(EXIT_REFUSED, "refused",
                       f"refused: unknown_payment: the desk has never received {payment_id} "
                       f"from {terminal} (run 'kiosk desk watch' with this --db)")
    count = known if reprocess_count is None else reprocess_count
    with _PUBLISH_LOCK:  # the page's operators publish at once: each waits for its own
        (version,) = desk.payment_status(
            terminal, [{"payment_id": payment_id, "status": status, "detail": detail,
                        "reprocess_count": count}])
        tag = desk.last_publish
    return await_puback(desk, f"{status} v{version} for {payment_id} (reprocess {count})",
                        tag=tag)


def await_puback(desk: Any, what: str, retained: bool = False,
                 tag: str | None = None) -> Outcome:
    """Wait until the broker has taken the publish (PUBACK). Without a subscribed
    terminal session only a retained document is kept."""
    outcome = desk.wait_outcome(desk.last_publish if tag is None else tag, 10)
    if outcome == "No matching subscribers" and not retained:
        outcome = "no session of the terminal at the broker (never connected?)"
    if outcome not in ("Success", "No matching subscribers"):
        return Outcome(EXIT_NOT_DELIVERED, "not_delivered",
                       f"not delivered: {what}: {outcome or 'no PUBACK from the broker'}")
    return Outcome(EXIT_OK, "sent",
                   f"sent {what} (the broker has it; the terminal reports a refusal as a "
                   "payment_status_rejected or config_rejected event)")


def result_text(outcome: Outcome) -> str:
    return json.dumps(outcome.result, ensure_ascii=False, sort_keys=True)


_CONFIG_LOCK = threading.Lock()  # read the last document, publish the next, record it
CONFIG_CLAIM_ATTEMPTS = 5  # versions taken by other workers meanwhile before giving up


def next_config(last: tuple[int, dict[str, Any] | None] | None, terminal: str,
                change: dict[str, Any]) -> dict[str, Any]:
    """The next config document for `terminal`: the last one the desk published (a
    retained document replaces the previous one at the broker, so a terminal starting
    later sees only the newest) with `change` on top, one version above it. Help texts
    merge key by key; every other field is replaced."""
    version, body = last if last is not None else (0, None)
    doc = {k: v for k, v in (body or {}).items() if k != "issued_ms"}
    for key, value in change.items():
        if key == "help_texts":
            doc["help_texts"] = {**(doc.get("help_texts") or {}), **value}
        else:
            doc[key] = value
    doc["version"] = version + 1
    doc["terminal_id"] = terminal
    return doc


def publish_config_change(desk: Any, terminal: str, change: dict[str, Any]) -> Outcome:
    """Publish the next retained config document for one terminal (next_config) and wait
    for the broker to take it."""
    topic = topics.topic(terminal, topics.CONFIG)
    with _CONFIG_LOCK:
        for _ in range(CONFIG_CLAIM_ATTEMPTS):
            last = desk.store.last_config(topic)
            doc = next_config(last, terminal, change)
            size = len(seal(desk.key, desk.kid, "config", {"issued_ms": 0, **doc}))
            if size > MAX_ENVELOPE_BYTES:  # the terminal would refuse it as too_large
                return Outcome(EXIT_REFUSED, "refused",
                               f"refused: too_large: config v{doc['version']} for {terminal} "
                               f"would be {size} bytes, over the terminals' "
                               f"{MAX_ENVELOPE_BYTES} (fewer or shorter help texts)")
            # another worker (another process) may be publishing for this terminal now:
            # the version is taken in the database first, so two never share one
            if desk.store.claim_config(topic, None if last is None else last[0],
                                       doc["version"], doc):
                break
        else:
            return Outcome(EXIT_REFUSED, "refused",
                           f"refused: busy: other desk workers kept publishing config for "
                           f"{terminal}; nothing was sent, try again")
        with _PUBLISH_LOCK:
            desk.publish_config(terminal, doc)
            tag = desk.last_publish
    return await_puback(desk, f"config v{doc['version']} for {terminal}", retained=True,
                        tag=tag)


def publish_fleet_change(desk: Any, terminals: list[str], change: dict[str, Any]
                         ) -> list[tuple[str, Outcome]]:
    """The same change in the next config document of each terminal, one by one; a
    failure for one terminal does not stop the others."""
    out: list[tuple[str, Outcome]] = []
    for terminal in terminals:
        try:
            outcome = publish_config_change(desk, terminal, change)
        except Exception as exc:  # the database or the connection failed for this one
            outcome = Outcome(EXIT_NOT_DELIVERED, "not_delivered",
                              f"not delivered: {type(exc).__name__}: {str(exc)[:200]}")
        out.append((terminal, outcome))
    return out
