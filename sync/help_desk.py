"""The desk's side of self-service: the live view behind a help code, and the help
metrics read from the terminals' events (docs/self-service.md).

The view is what the terminal put in its retained `health` while a customer holds a help
code (kiosk/help_events.py `session_context`: screen, provider, masked account, amounts,
the notice on screen); the desk only reads it, it can change nothing on the terminal.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from kiosk.help_events import HelpEvent


def terminal_of(code: str) -> str:
    """"T0001-4821" → "T0001" (a terminal id has no "-" at its end, the code's part
    is four digits)."""
    return code.strip().rsplit("-", 1)[0]


def help_view(health: Any, code: str) -> dict[str, Any] | None:
    """The view in a terminal's latest health if it is for this help code, else None."""
    if isinstance(health, str):
        health = json.loads(health)
    view = (health or {}).get("help") if isinstance(health, dict) else None
    if isinstance(view, dict) and view.get("code") == code.strip().upper():
        return {**view, "at_ms": health.get("at_ms")}
    return None


def _amount(minor: Any, currency: Any) -> str:
    return "—" if minor is None else f"{minor / 100:.2f} {currency or ''}".strip()


def describe_help(view: dict[str, Any]) -> str:
    provider = view.get("provider") or {}
    cur = view.get("currency")
    return "\n".join([
        f"help code {view['code']}",
        f"  screen:    {view.get('screen')}",
        f"  provider:  {provider.get('ru') or '—'} / {provider.get('en') or '—'}",
        f"  account:   {view.get('account_masked') or '—'}",
        f"  inserted:  {_amount(view.get('inserted_minor'), cur)}"
        f"  fee: {_amount(view.get('commission_minor'), cur)}"
        f"  credited: {_amount(view.get('credited_minor'), cur)}",
        f"  notice:    {view.get('notice') or '—'}   before: "
        f"{', '.join(view.get('recent_notices') or []) or '—'}",
        f"  bills returned: "
        f"{view.get('rejected_bills') or 0}   prompt: {'yes' if view.get('prompt') else 'no'}",
    ])


def help_metrics(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts from the terminals' help events. A help session is one help code; it is
    deflected when it asked for no call-back."""
    kinds: Counter[str] = Counter()
    opened: set[str] = set()
    called: set[str] = set()
    views: Counter[str] = Counter()
    not_helped: Counter[str] = Counter()
    triggers: Counter[str] = Counter()
    for e in events:
        kind = str(e.get("kind", ""))
        if not kind.startswith("help_"):
            continue
        data = e.get("data") or {}
        if isinstance(data, str):
            data = json.loads(data)
        kinds[kind] += 1
        code = str(data.get("help_code", ""))
        if kind == HelpEvent.OPENED:
            opened.add(code)
        elif kind == HelpEvent.CALLBACK_REQUESTED:
            called.add(code)
        elif kind == HelpEvent.ARTICLE_VIEWED:
            views[str(data.get("article_id"))] += 1
        elif kind == HelpEvent.NOT_HELPED:
            not_helped[str(data.get("article_id"))] += 1
        elif kind == HelpEvent.PROACTIVE_SHOWN:
            triggers[str(data.get("trigger"))] += 1
    sessions = len(opened | called)
    deflected = len(opened - called)
    return {
        "help_sessions": sessions,
        "callback_requests": len(called),
        "deflected_sessions": deflected,
        "deflection": round(deflected / sessions, 3) if sessions else None,
        "searches_without_result": kinds[HelpEvent.SEARCH_EMPTY],
        "article_views": dict(views),
        "not_helped": dict(not_helped),
        "proactive_by_trigger": dict(triggers),
    }
