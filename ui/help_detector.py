"""Proactive help: recognise a customer who is stuck, from what the screen already sees.

Pure: fed observations (the core's snapshots, refused intents, touches, the time), it
answers with at most one trigger per session. It runs in the UI process, on the UI's
main thread, after a snapshot has been drawn: the core never waits for it, and what it
decides only adds an overlay (ui/help_overlay.py) that leaves the amount and the cash
handling alone. Rules and thresholds: docs/self-service.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TRIGGERS = ("invalid_account", "idle_with_cash", "back_and_forth", "rejected_bills")
# The order the customer walks forward; a move to an earlier one is a step back.
FLOW = ("idle", "provider", "account", "confirm", "cash", "receipt")


@dataclass(frozen=True)
class Thresholds:
    """Defaults as in kiosk/help_center.py `Proactive` (the desk may change them)."""

    enabled: bool = True
    invalid_account: int = 3
    idle_with_cash_s: float = 45.0
    back_and_forth: int = 4
    rejected_bills: int = 3

    @classmethod
    def from_center(cls, center: dict[str, Any] | None) -> Thresholds:
        p = (center or {}).get("proactive") or {}
        d = cls()
        return cls(
            enabled=bool(p.get("enabled", d.enabled)),
            invalid_account=int(p.get("invalid_account", d.invalid_account)),
            idle_with_cash_s=float(p.get("idle_with_cash_s", d.idle_with_cash_s)),
            back_and_forth=int(p.get("back_and_forth", d.back_and_forth)),
            rejected_bills=int(p.get("rejected_bills", d.rejected_bills)),
        )


class StuckDetector:
    """One customer session's signals. `observe_*` return a trigger the first time a
    threshold is crossed, None otherwise; a session fires at most once (a customer who
    closed the offer is not nagged)."""

    def __init__(self, thresholds: Thresholds | None = None) -> None:
        self.thresholds = thresholds or Thresholds()
        self._reset()

    def _reset(self) -> None:
        self.invalid = 0
        self.backs = 0
        self.rejected = 0
        self.screen = ""
        self.fired: str | None = None
        self.cash_in = False
        self.last_touch = 0.0

    def _fire(self, trigger: str | None) -> str | None:
        if trigger is None or self.fired is not None or not self.thresholds.enabled:
            return None
        self.fired = trigger
        return trigger

    def observe_snapshot(self, snap: dict[str, Any], now: float) -> str | None:
        screen = str(snap.get("screen", ""))
        if screen not in FLOW or screen == "idle":
            if self.screen and screen != self.screen:
                self._reset()  # the session ended (or the terminal left service)
            self.screen = screen
            return None
        if self.screen in FLOW and FLOW.index(screen) < FLOW.index(self.screen):
            self.backs += 1
        if screen != self.screen:
            self.last_touch = now
        self.screen = screen
        session = snap.get("session") or {}
        cash_in = int(session.get("inserted_minor") or 0) > 0 or bool(session.get("escrow"))
        if cash_in and not self.cash_in:
            self.last_touch = now  # a bill going in is the customer acting
        self.cash_in = cash_in
        self.rejected = int(session.get("rejected_bills") or 0)
        t = self.thresholds
        if self.backs >= t.back_and_forth:
            return self._fire("back_and_forth")
        if self.rejected >= t.rejected_bills:
            return self._fire("rejected_bills")
        return None

    def observe_refusal(self, code: str) -> str | None:
        """An intent the core refused; invalid account numbers count."""
        if code in ("invalid_account", "bad_account"):
            self.invalid += 1
            if self.invalid >= self.thresholds.invalid_account:
                return self._fire("invalid_account")
        return None

    def observe_touch(self, now: float) -> None:
        self.last_touch = now

    def observe_time(self, now: float) -> str | None:
        """Called every second: cash inside and nobody touching the cash screen."""
        if (self.screen == "cash" and self.cash_in
                and now - self.last_touch >= self.thresholds.idle_with_cash_s):
            return self._fire("idle_with_cash")
        return None
