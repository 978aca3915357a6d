"""What the desk reads from offer and funnel events (stored as ordinary event records).

Pure summaries over `DeskDB.events()` rows, for `kiosk desk offers` and `kiosk desk
funnel` (docs/offers.md): offers shown and taps against the holdout, and each
day's funnel per terminal (the terminal's final report of a day wins over a partial one
asked for on demand).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class OfferStats:
    payments: int = 0  # committed payments that drew offers (or the holdout)
    holdout: int = 0
    treated: int = 0  # not in the holdout (offers may still have been none)
    shown: dict[str, int] = field(default_factory=dict)
    interested: dict[str, int] = field(default_factory=dict)

    def uptake(self, offer_id: str) -> float:
        n = self.shown.get(offer_id, 0)
        return self.interested.get(offer_id, 0) / n if n else 0.0


def offer_stats(events: list[dict[str, Any]]) -> OfferStats:
    out = OfferStats()
    for e in events:
        data = e.get("data") or {}
        if e.get("kind") == "offer_impression":
            out.payments += 1
            if data.get("holdout"):
                out.holdout += 1
            else:
                out.treated += 1
            for oid in data.get("offers") or []:
                out.shown[oid] = out.shown.get(oid, 0) + 1
        elif e.get("kind") == "offer_interested":
            oid = str(data.get("offer_id"))
            out.interested[oid] = out.interested.get(oid, 0) + 1
    return out


def funnel_days(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per day, the funnel summed over terminals: each terminal's final report of the
    day, or its latest partial one while the day is not over."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for e in events:  # in (terminal, seq) order: a later report replaces an earlier one
        if e.get("kind") != "funnel_report":
            continue
        data = e.get("data") or {}
        day = data.get("day")
        if not isinstance(day, str):
            continue
        key = (str(e.get("terminal_id")), day)
        held = best.get(key)
        if held is None or held.get("partial") or not data.get("partial"):
            best[key] = data
    days: dict[str, dict[str, Any]] = {}
    for (_terminal, day), data in sorted(best.items()):
        total = days.setdefault(day, {"terminals": 0, "sessions": 0, "paid": 0,
                                      "reached": {}, "left": {}})
        total["terminals"] += 1
        for k in ("sessions", "paid"):
            total[k] += int(data.get(k) or 0)
        for k in ("reached", "left"):
            for screen, n in (data.get(k) or {}).items():
                total[k][screen] = total[k].get(screen, 0) + int(n)
    return days


def format_offers(stats: OfferStats) -> list[str]:
    lines = [f"payments with offer rules: {stats.payments} (treated {stats.treated}, "
             f"holdout {stats.holdout})"]
    for oid in sorted(set(stats.shown) | set(stats.interested)):
        lines.append(f"  {oid}: shown {stats.shown.get(oid, 0)}, interested "
                     f"{stats.interested.get(oid, 0)} ({stats.uptake(oid):.1%})")
    return lines


FUNNEL_ORDER = ("provider", "account", "confirm", "cash", "receipt")


def format_funnel(days: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for day, t in sorted(days.items()):
        lines.append(f"{day}: {t['sessions']} sessions, {t['paid']} paid "
                     f"({t['terminals']} terminal(s))")
        screens = [s for s in FUNNEL_ORDER if s in t["reached"] or s in t["left"]]
        screens += sorted(set(t["reached"]) | set(t["left"]) - set(screens))
        for s in screens:
            lines.append(f"  {s:<10} reached {t['reached'].get(s, 0):>6}  "
                         f"left here {t['left'].get(s, 0):>6}")
    return lines
