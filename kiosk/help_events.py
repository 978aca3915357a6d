"""What the help screens report to the desk: a fixed set of event kinds, counts only.

The UI sends `help_event` over the local API; this module turns it into one ledger event
(queued for the desk like every other) or refuses it. The help code and the session's
context are the core's own (never taken from the UI); nothing personal travels except the
phone number a customer typed to be called back, which is the purpose of that request.
Metrics and how the desk reads them: docs/self-service.md.
"""

from __future__ import annotations

import enum
import re
from typing import TYPE_CHECKING, Any

from drivers.fieldspec import Field, Invalid, read_fields
from kiosk.help_center import ID_RE, HelpCenter, Trigger

if TYPE_CHECKING:
    from kiosk.engine import PaymentEngine

CALLBACK_PHONE = re.compile(r"[78]?9\d{9}")  # a Russian mobile: 10 digits, or 11 with 7/8
ACCOUNT_TAIL = 4  # digits of the account an operator may see (less than the receipt)


class HelpEvent(enum.StrEnum):
    OPENED = "help_opened"                      # a help session began (menu or proactive)
    ARTICLE_VIEWED = "help_article_viewed"
    SEARCH_EMPTY = "help_search_empty"          # a search that found nothing
    NOT_HELPED = "help_not_helped"              # "this did not help" on an article
    PROACTIVE_SHOWN = "help_proactive_shown"    # the detector offered help
    CALLBACK_REQUESTED = "help_callback_requested"


class HelpEventError(ValueError):
    """A help event refused (bad_request for the local API)."""


def _spec(center: HelpCenter) -> dict[HelpEvent, dict[str, Field]]:
    known = {a.id for a in center.articles}
    article = Field(str, what="an article id of the help center",
                    check=lambda a: ID_RE.fullmatch(a) is not None and a in known)
    trigger = Field(str, what="a proactive trigger", choices=tuple(t.value for t in Trigger))
    return {
        HelpEvent.OPENED: {"via": Field(str, what="menu or proactive",
                                        choices=("menu", "proactive"))},
        HelpEvent.ARTICLE_VIEWED: {"article_id": article},
        HelpEvent.SEARCH_EMPTY: {},
        HelpEvent.NOT_HELPED: {"article_id": article},
        HelpEvent.PROACTIVE_SHOWN: {"trigger": trigger, "article_id": Field(
            str, None, "an article id", check=lambda a: a in known)},
        HelpEvent.CALLBACK_REQUESTED: {
            "phone": Field(str, what="a mobile number, 10 digits starting with 9",
                           check=lambda p: CALLBACK_PHONE.fullmatch(p) is not None),
            "trigger": Field(str, None, "a proactive trigger",
                             choices=tuple(t.value for t in Trigger)),
        },
    }


def read_help_event(kind: str, args: Any, center: HelpCenter) -> tuple[HelpEvent, dict[str, Any]]:
    """The event kind and its validated fields, or HelpEventError naming what is wrong."""
    try:
        event = HelpEvent(kind)
    except ValueError:
        raise HelpEventError(f"unknown help event {str(kind)[:40]!r}") from None
    try:
        data = read_fields(args, _spec(center)[event], "args")
    except Invalid as exc:
        raise HelpEventError(str(exc)) from exc
    return event, {k: v for k, v in data.items() if v is not None}


def session_context(snapshot: dict[str, Any]) -> dict[str, Any]:
    """What the operator may know of the session behind a help code: the screen, the
    provider, the account's last digits and the amounts — never more than the receipt."""
    s = snapshot.get("session") or {}
    provider = s.get("provider") or {}
    account = str(s.get("account") or "")
    notice = snapshot.get("notice") or None
    return {
        "screen": snapshot.get("screen"),
        "provider_id": provider.get("id"),
        "provider": {"ru": provider.get("name_ru"), "en": provider.get("name_en")}
        if provider else None,
        "account_masked": mask_account(account),
        "inserted_minor": s.get("inserted_minor"),
        "commission_minor": s.get("commission_minor"),
        "credited_minor": s.get("credited_minor"),
        "currency": provider.get("currency"),
        "rejected_bills": s.get("rejected_bills"),
        "notice": notice.get("code") if isinstance(notice, dict) else None,
        "recent_notices": list(s.get("recent_notices") or []),
        "prompt": bool(snapshot.get("prompt")),
    }


def mask_account(account: str) -> str:
    """All but the last ACCOUNT_TAIL digits hidden ("••••••4567"); short ones fully."""
    if len(account) <= ACCOUNT_TAIL:
        return "•" * len(account)
    return "•" * (len(account) - ACCOUNT_TAIL) + account[-ACCOUNT_TAIL:]


def record_help_event(engine: PaymentEngine, kind: str, args: Any) -> dict[str, Any]:
    """Validate and record one help event for the desk; returns the help code. The ledger
    write takes the ledger's own transaction, never the engine's lock, so a bill being
    credited does not wait for a help counter (call it off the event loop)."""
    event, data = read_help_event(kind, args, engine.help_center)
    code = engine.open_help()
    data["help_code"] = code
    if event is HelpEvent.CALLBACK_REQUESTED:
        data["context"] = session_context(engine.snapshot())
    engine.ledger.add_event(event.value, "info", data)
    return {"help_code": code}
