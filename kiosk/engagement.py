"""The terminal's side of offers and the funnel: rules, today's caps, today's counts.

One `Engagement` per engine, used only under the engine lock (kiosk/engine/offers.py).
It never touches money: it reads a payment that is already committed (M5) and writes
nothing to the ledger itself; the engine records its events through the ordinary event
path, after the payment's own outbox row (M8 is untouched: events never leave or reorder
payment rows). Today's frequency caps and funnel counts live in memory and in one small
file (`engagement.json` in the data folder, written with kiosk/durable_file.py between
customers, never on the receipt's path), so a restart neither forgets a cap nor loses a
day's funnel. Rules: kiosk/offers.py; docs/offers.md.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from kiosk.durable_file import replace_file
from kiosk.funnel import Funnel
from kiosk.offers import Choice, OfferContext, OfferRules, account_hash, choose

log = logging.getLogger("kiosk.engagement")

STATE_FILE = "engagement.json"
STATE_MODE = 0o600
DAY_FORMAT = "%Y-%m-%d"


def local_now() -> datetime:
    return datetime.now().astimezone()


@dataclass(frozen=True)
class OfferPick:
    """What the terminal chose after one committed payment, and the context it reports
    (the account only as its keyed hash)."""

    choice: Choice
    context: dict[str, Any]


class Engagement:
    def __init__(self, terminal_tags: tuple[str, ...], state_dir: Path | None,
                 wall: Callable[[], datetime] | None = None) -> None:
        self.tags = frozenset(terminal_tags)
        self.rules: OfferRules | None = None
        self.rules_version: int | None = None
        # the local wall clock (days, time windows); looked up at each call by default
        self._wall: Callable[[], datetime] = wall or (lambda: local_now())
        self._path = state_dir / STATE_FILE if state_dir is not None else None
        day = self._wall().strftime(DAY_FORMAT)
        self.caps: dict[str, int] = {}
        self.funnel = Funnel(day)
        self._dirty = False
        self._load(day)

    # -- offers ----------------------------------------------------------------------
    def set_rules(self, rules: OfferRules, version: int | None) -> None:
        self.rules, self.rules_version = rules, version

    def pick(self, provider_id: str, category: str, account: str,
             amount_minor: int) -> OfferPick | None:
        """The offers for a committed payment (None: the desk's rules have no offers). Cheap and
        pure but for today's caps, which count what is chosen here."""
        rules = self.rules
        if rules is None or not rules.items:  # offers off: nothing shown, nothing recorded
            return None
        now = self._wall()
        self._roll(now.strftime(DAY_FORMAT))
        digest = account_hash(rules.account_key, provider_id, account)
        ctx = OfferContext(provider_id, category, amount_minor, digest, self.tags)
        choice = choose(rules, ctx, now, self.caps)
        for offer in choice.offers:
            self.caps[offer.id] = self.caps.get(offer.id, 0) + 1
            self._dirty = True
        context = {"provider_id": provider_id, "category": category,
                   "amount_minor": amount_minor, "account_hash": digest,
                   "terminal_tags": sorted(self.tags), "local_time": now.strftime("%H:%M"),
                   "rules_version": self.rules_version}
        return OfferPick(choice, context)

    # -- the funnel ------------------------------------------------------------------
    def on_screen(self, screen: str) -> None:
        self.funnel.on_screen(screen)
        self._dirty = True

    def due_report(self) -> dict[str, Any] | None:
        """The finished day's funnel once the local date has changed (then a new day
        starts), else None. Called from the engine's tick."""
        return self._roll(self._wall().strftime(DAY_FORMAT))

    def report_now(self) -> dict[str, Any]:
        """Today's counts so far (on demand), marked partial."""
        return {**self.funnel.report(), "partial": True}

    # -- state -------------------------------------------------------------------------
    def _roll(self, day: str) -> dict[str, Any] | None:
        if day == self.funnel.day:
            return None
        done = self.funnel.report()
        self.funnel = self.funnel.rolled(day)
        self.caps = {}
        self._dirty = True
        return done

    def save(self) -> None:
        """Between customers: today's caps and counts to disk (a failure is logged: it
        costs at most a cap or a count after a restart, never a payment)."""
        if not self._dirty or self._path is None:
            return
        data = {"day": self.funnel.day, "caps": self.caps, "funnel": self.funnel.to_json()}
        try:
            replace_file(self._path, json.dumps(data, sort_keys=True).encode(), STATE_MODE)
            self._dirty = False
        except OSError as exc:
            log.warning("engagement state not saved: %s", exc)

    def _load(self, day: str) -> None:
        if self._path is None or not self._path.exists():
            return
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("engagement state unreadable, starting afresh: %s", exc)
            return
        if not isinstance(data, dict):
            return
        stored_day = data.get("day")
        funnel = Funnel.from_json(data.get("funnel"), str(stored_day))
        if stored_day == day:
            caps = data.get("caps")
            if isinstance(caps, dict):
                self.caps = {str(k): v for k, v in caps.items() if type(v) is int and v >= 0}
            self.funnel = funnel
        elif isinstance(stored_day, str) and funnel.sessions:
            # a day that ended while the terminal was off: reported at the first tick
            self.funnel = funnel
