"""The customer funnel: per screen, how many sessions reach it and where they leave.

Counts only (no account, no amount, no time of a single session): a session starts when
the terminal leaves idle for a customer screen and ends when it is back between
customers. It is *paid* once it reaches the receipt screen; a session that ends unpaid
counts under `left` for the last customer screen it showed. Pure: the engine feeds it the
screens (kiosk/engagement.py), the day's counts go to the desk as a `funnel_report`
event (docs/offers.md, "Funnel").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PAID_SCREEN = "receipt"
BETWEEN = frozenset({"idle", "out_of_service", "starting"})


@dataclass
class Funnel:
    day: str  # the local date the counts belong to, "2026-12-03"
    sessions: int = 0
    paid: int = 0
    reached: dict[str, int] = field(default_factory=dict)
    left: dict[str, int] = field(default_factory=dict)
    # the session under way (not reported): the screens it reached, its last one
    _seen: set[str] = field(default_factory=set)
    _last: str | None = None

    @property
    def in_session(self) -> bool:
        return self._last is not None

    def on_screen(self, screen: str) -> None:
        """The engine showed `screen` (its value: "provider", "idle", …)."""
        if screen in BETWEEN:
            if self._last is not None:
                if PAID_SCREEN not in self._seen:
                    self.left[self._last] = self.left.get(self._last, 0) + 1
                self._seen, self._last = set(), None
            return
        if self._last is None:
            self.sessions += 1
        self._last = screen
        if screen not in self._seen:
            self._seen.add(screen)
            self.reached[screen] = self.reached.get(screen, 0) + 1
            if screen == PAID_SCREEN:
                self.paid += 1

    def report(self) -> dict[str, Any]:
        """The day's counts as the desk stores them."""
        return {"day": self.day, "sessions": self.sessions, "paid": self.paid,
                "reached": dict(sorted(self.reached.items())),
                "left": dict(sorted(self.left.items()))}

    def to_json(self) -> dict[str, Any]:
        return self.report()

    @classmethod
    def from_json(cls, data: Any, day: str) -> Funnel:
        """Counts kept across a restart; anything unreadable starts the day afresh."""
        def counts(v: Any) -> dict[str, int]:
            if not isinstance(v, dict):
                return {}
            return {str(k): n for k, n in v.items() if type(n) is int and n >= 0}

        if not isinstance(data, dict) or data.get("day") != day:
            return cls(day)
        sessions, paid = data.get("sessions"), data.get("paid")
        return cls(day, sessions if type(sessions) is int else 0,
                   paid if type(paid) is int else 0,
                   counts(data.get("reached")), counts(data.get("left")))

    def rolled(self, day: str) -> Funnel:
        """A new day's funnel; a session under way carries on into it (its screens are
        counted again in the new day when it shows them)."""
        nxt = Funnel(day)
        nxt._last = self._last
        if self._last is not None:
            nxt.sessions = 1
        return nxt
