"""Next best offer: the desk's offer rules, parsed and validated, and the pure choice.

The desk pushes the rules as the optional `offers` section of its signed config document
(sync/desk_config.py; format and meaning: docs/offers.md, "Offers"):

    "offers": {"account_key": "<base64, 16-64 bytes>", "holdout_percent": 10,
               "holdout_seed": "2026-q4",
               "items": [{"id": "tv-home", "title_ru": "…", "title_en": "…",
                          "text_ru": "…", "text_en": "…",
                          "providers": ["mts"], "categories": ["mobile"],
                          "min_minor": 10000, "max_minor": 500000,
                          "from_hhmm": "08:00", "to_hhmm": "22:00",
                          "tags": ["mall"], "priority": 10, "cap_per_day": 200}]}

Everything here is pure: `parse_offers` refuses a bad section whole (OffersError with the
dotted key), `choose` picks offers from the rules, the context, the local time and the
counts already shown today, and `account_hash` / `in_holdout` are keyed hashes, so the
same customer is in the holdout (or not) at every terminal of the network, and the desk
never sees an account in clear. Nothing here touches money: offers are chosen only after
the payment is committed (kiosk/engagement.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from drivers.fieldspec import REQUIRED, Field, Invalid, Table

MAX_OFFERS_SHOWN = 3
"""At most this many offers on the final screen (the top one goes on the receipt)."""
MAX_ITEMS = 200
MAX_TITLE = 60
MAX_TEXT = 200
MAX_LIST = 100
MAX_ID = 64
MAX_PRIORITY = 1_000_000
MAX_CAP = 1_000_000
MAX_MINOR = 2**53 - 1
KEY_MIN_BYTES, KEY_MAX_BYTES = 16, 64
HOLDOUT_SCALE = 10_000  # holdout draws in basis points of a percent: 0.01 % steps
MINUTES_PER_DAY = 24 * 60
HASH_HEX = 32  # 128 bits of the HMAC: plenty to join sessions, short in every event

ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
HHMM_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class OffersError(ValueError):
    """The offers section refused as a whole; the message names the key."""


@dataclass(frozen=True)
class Offer:
    id: str
    title_ru: str
    title_en: str
    text_ru: str
    text_en: str
    providers: frozenset[str]  # empty: any provider
    categories: frozenset[str]  # empty: any category
    min_minor: int
    max_minor: int | None  # None: no upper bound
    from_minute: int  # minutes after local midnight; from == to means all day
    to_minute: int
    tags: frozenset[str]  # empty: any terminal; else the terminal has one of them
    priority: int  # higher first; ties by id
    cap_per_day: int | None  # shows per terminal per local day; None: no cap

    def public(self) -> dict[str, str]:
        """What the screen and the events carry of an offer."""
        return {"id": self.id, "title_ru": self.title_ru, "title_en": self.title_en,
                "text_ru": self.text_ru, "text_en": self.text_en}


@dataclass(frozen=True)
class OfferRules:
    account_key: bytes
    holdout_bp: int  # 0..HOLDOUT_SCALE: the share of customers who see no offer
    holdout_seed: str
    items: tuple[Offer, ...]  # best first: priority high to low, then id


NO_OFFERS = OfferRules(account_key=b"", holdout_bp=0, holdout_seed="", items=())
"""What a config document without an `offers` section means: offers are off."""


@dataclass(frozen=True)
class OfferContext:
    """One committed payment as the rules see it (no account: only its keyed hash)."""

    provider_id: str
    category: str
    amount_minor: int  # what the customer inserted
    account_hash: str
    terminal_tags: frozenset[str]


@dataclass(frozen=True)
class Choice:
    holdout: bool
    offers: tuple[Offer, ...]

    @property
    def top(self) -> Offer | None:
        return self.offers[0] if self.offers else None


def _text(limit: int, required: bool = True) -> Field:
    what = f"a non-empty string of at most {limit} characters"
    if not required:
        return Field(str, "", f"a string of at most {limit} characters",
                     check=lambda v: len(v) <= limit and v.isprintable())
    return Field(str, what=what, check=lambda v: bool(v.strip()) and len(v) <= limit
                 and v.isprintable())


def _ids(value: Any) -> bool:
    return (isinstance(value, list) and len(value) <= MAX_LIST
            and all(isinstance(v, str) and ID_RE.match(v) for v in value))


def _key(value: str) -> bool:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return KEY_MIN_BYTES <= len(raw) <= KEY_MAX_BYTES


_IDS = Field(list, [], f"a list of at most {MAX_LIST} ids", check=_ids)
_HHMM = Field(str, "00:00", "a time HH:MM (00:00-23:59)", check=lambda v: bool(HHMM_RE.match(v)))
ITEM_FIELDS: dict[str, Field] = {
    "id": Field(str, what="an id (letters, digits, _.:-, up to 64)",
                check=lambda v: bool(ID_RE.match(v))),
    "title_ru": _text(MAX_TITLE),
    "title_en": _text(MAX_TITLE),
    "text_ru": _text(MAX_TEXT, required=False),
    "text_en": _text(MAX_TEXT, required=False),
    "providers": _IDS,
    "categories": _IDS,
    "min_minor": Field(int, 0, "a non-negative integer", lo=0, hi=MAX_MINOR),
    "max_minor": Field((int, type(None)), None, "a non-negative integer or null",
                       check=lambda v: v is None or 0 <= v <= MAX_MINOR),
    "from_hhmm": _HHMM,
    "to_hhmm": _HHMM,
    "tags": _IDS,
    "priority": Field(int, 0, f"an integer 0-{MAX_PRIORITY}", lo=0, hi=MAX_PRIORITY),
    "cap_per_day": Field((int, type(None)), None, f"an integer 1-{MAX_CAP} or null",
                         check=lambda v: v is None or 1 <= v <= MAX_CAP),
}
SECTION_FIELDS: dict[str, Field] = {
    "account_key": Field(str, what=f"base64 of {KEY_MIN_BYTES}-{KEY_MAX_BYTES} bytes",
                         check=_key),
    "holdout_percent": Field(float, 0.0, "a number 0-100", lo=0, hi=100),
    "holdout_seed": _text(MAX_ID, required=False),
}


def _minute(hhmm: str) -> int:
    m = HHMM_RE.match(hhmm)
    assert m is not None  # checked by the field
    return int(m.group(1)) * 60 + int(m.group(2))


def parse_offers(section: Any, path: str = "offers") -> OfferRules:
    """The section validated whole, or OffersError naming the first bad key."""
    try:
        t = Table(section, path)
        head = {k: t.get(k, f) for k, f in SECTION_FIELDS.items()}
        items: list[Offer] = []
        seen: set[str] = set()
        raw_items = t.get("items", Field(list, REQUIRED, f"a list of at most {MAX_ITEMS}"
                                         " offers", check=lambda v: len(v) <= MAX_ITEMS))
        for i, item in enumerate(t.tables("items")):
            v = {k: item.get(k, f) for k, f in ITEM_FIELDS.items()}
            item.finish()
            where = f"{path}.items[{i}]"
            if v["id"] in seen:
                raise OffersError(f"{where}.id: offer {v['id']!r} appears twice")
            seen.add(v["id"])
            if v["max_minor"] is not None and v["max_minor"] < v["min_minor"]:
                raise OffersError(f"{where}.max_minor: must not be below min_minor")
            items.append(Offer(
                id=v["id"], title_ru=v["title_ru"], title_en=v["title_en"],
                text_ru=v["text_ru"], text_en=v["text_en"],
                providers=frozenset(v["providers"]), categories=frozenset(v["categories"]),
                min_minor=v["min_minor"], max_minor=v["max_minor"],
                from_minute=_minute(v["from_hhmm"]), to_minute=_minute(v["to_hhmm"]),
                tags=frozenset(v["tags"]), priority=v["priority"],
                cap_per_day=v["cap_per_day"]))
        assert len(items) == len(raw_items)
        t.finish()
    except Invalid as exc:
        raise OffersError(str(exc)) from exc
    return OfferRules(
        account_key=base64.b64decode(head["account_key"]),
        holdout_bp=round(head["holdout_percent"] * HOLDOUT_SCALE / 100),
        holdout_seed=head["holdout_seed"],
        items=tuple(sorted(items, key=_rank)),  # best first: choose stops at three
    )


def _rank(offer: Offer) -> tuple[int, str]:
    return (-offer.priority, offer.id)


def account_hash(key: bytes, provider_id: str, account: str) -> str:
    """The account as the desk may see it: HMAC-SHA256 under the network's key (hex,
    truncated). The provider is bound in, so the same digits at two providers differ."""
    mac = hmac.new(key, f"account\0{provider_id}\0{account}".encode(), hashlib.sha256)
    return mac.hexdigest()[:HASH_HEX]


def holdout_draw(key: bytes, seed: str, acct_hash: str) -> int:
    """A number in [0, HOLDOUT_SCALE) fixed for this customer and seed: a customer stays
    in (or out of) the holdout at every terminal until the desk changes the seed."""
    mac = hmac.new(key, f"holdout\0{seed}\0{acct_hash}".encode(), hashlib.sha256)
    return int.from_bytes(mac.digest()[:8], "big") % HOLDOUT_SCALE


def in_holdout(rules: OfferRules, acct_hash: str) -> bool:
    return holdout_draw(rules.account_key, rules.holdout_seed, acct_hash) < rules.holdout_bp


def in_window(offer: Offer, minute: int) -> bool:
    """`minute` after local midnight inside [from, to); a window may wrap midnight
    (22:00-06:00); from == to is the whole day."""
    a, b = offer.from_minute, offer.to_minute
    if a == b:
        return True
    if a < b:
        return a <= minute < b
    return minute >= a or minute < b


def eligible(offer: Offer, ctx: OfferContext, minute: int) -> bool:
    return (
        (not offer.providers or ctx.provider_id in offer.providers)
        and (not offer.categories or ctx.category in offer.categories)
        and ctx.amount_minor >= offer.min_minor
        and (offer.max_minor is None or ctx.amount_minor <= offer.max_minor)
        and in_window(offer, minute)
        and (not offer.tags or bool(offer.tags & ctx.terminal_tags))
    )


def choose(rules: OfferRules, ctx: OfferContext, now: datetime,
           shown_today: Mapping[str, int]) -> Choice:
    """Up to MAX_OFFERS_SHOWN offers for this context, best first (priority, then id);
    none for a holdout customer. `now` is the terminal's local time; `shown_today` the
    shows per offer on this terminal today (the frequency caps). Deterministic."""
    if in_holdout(rules, ctx.account_hash):
        return Choice(True, ())
    minute = now.hour * 60 + now.minute
    fit: list[Offer] = []
    for o in rules.items:  # already best first: the first three that fit
        if eligible(o, ctx, minute) and (
            o.cap_per_day is None or shown_today.get(o.id, 0) < o.cap_per_day
        ):
            fit.append(o)
            if len(fit) == MAX_OFFERS_SHOWN:
                break
    return Choice(False, tuple(fit))
