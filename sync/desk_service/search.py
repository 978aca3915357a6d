"""Finding payments the way an operator on the phone types them.

A caller reads a phone number or an account as "+7 916 123-45-67", "8 (916) 1234567",
"916 123 45 67" or only its last digits. Every account is stored with a normalised
column (`payments.account_digits`: digits only, a Russian 11-digit phone's leading 7 or
8 dropped), and a query is normalised the same way and matched as a substring of it.
All values travel as bound parameters (SQLAlchemy Core), never as SQL text.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import ColumnElement, Engine, or_, select

from sync.desk_service import schema as s

PHONE_DIGITS = 10  # a Russian number without its country/trunk prefix
TRUNK_PREFIXES = ("7", "8")  # +7 and the domestic 8
MIN_PARTIAL_DIGITS = 3  # fewer digits would match nearly every payment
DEFAULT_LIMIT = 50
MINOR_PER_MAJOR = 100
PAYMENT_ID_RE = re.compile(r"^[A-Za-z0-9]+(-[A-Za-z0-9]+)+$")
LIKE_ESCAPE = "\\"


def normalise_digits(text: str | None) -> str | None:
    """Digits only; an 11-digit number starting 7 or 8 loses that prefix. None if no
    digit at all."""
    if not text:
        return None
    digits = "".join(ch for ch in text if ch.isascii() and ch.isdigit())
    if not digits:
        return None
    if len(digits) == PHONE_DIGITS + 1 and digits[0] in TRUNK_PREFIXES:
        digits = digits[1:]
    return digits


def parse_amount(text: str) -> int:
    """"500", "500.5", "500,50", "1 500" (roubles) -> minor units; ValueError if not."""
    cleaned = text.replace(" ", "").replace("\u00a0", "").replace(",", ".")
    try:
        value = Decimal(cleaned)
    except InvalidOperation as exc:
        raise ValueError(f"not an amount: {text!r}") from exc
    minor = value * MINOR_PER_MAJOR
    if minor != minor.to_integral_value() or minor < 0:
        raise ValueError(f"not an amount in kopecks: {text!r}")
    return int(minor)


def parse_when(text: str, now_s: float | None = None) -> int:
    """UTC date/time (2026-12-03, 2026-12-03T10:00, 2026-12-03 10:00:00) or an age
    (30m, 2h, 3d) -> epoch milliseconds."""
    units = {"m": 60, "h": 3600, "d": 86400}
    now_s = time.time() if now_s is None else now_s
    t = text.strip()
    if t[:-1].isdigit() and t[-1:] in units:
        return int((now_s - int(t[:-1]) * units[t[-1]]) * 1000)
    try:
        when = dt.datetime.fromisoformat(t)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a time (2026-12-03T10:00) or an age (2h)") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def digits_only(text: str) -> str | None:
    """An account as an operator types it ("916 123-45-67", "(916) 1234567"): the digits.
    None when it holds anything but digits, spaces, dashes, dots and brackets."""
    allowed = set("0123456789 -.()\u00a0")
    cleaned = text.strip()
    if not cleaned or not set(cleaned) <= allowed:
        return None
    return "".join(ch for ch in cleaned if ch.isdigit()) or None


def corrected_account(text: str, previous: str | None) -> str | None:
    """The corrected account as the customer reads it out. A phone is read with its
    prefix ("+7 916 …", "8 916 …") but the terminal keeps the 10 digits: the prefix is
    dropped when the payment's account was such a number, or when "+" was typed (a
    country code). None when it is not a number (see digits_only)."""
    typed = text.strip()
    plus = typed.startswith("+")
    digits = digits_only(typed[1:] if plus else typed)
    if digits is None:
        return None
    phone_like = plus or (previous is not None and len(previous) == PHONE_DIGITS
                          and previous.isdigit())
    if phone_like and normalise_digits(digits) != digits:
        return normalise_digits(digits)
    return digits


def like_escape(text: str) -> str:
    """Text matched literally inside a LIKE pattern (with escape=LIKE_ESCAPE)."""
    return (text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2).replace("%", LIKE_ESCAPE + "%")
            .replace("_", LIKE_ESCAPE + "_"))


_like_escape = like_escape


@dataclass(frozen=True)
class Query:
    text: str = ""  # payment id, account or phone in any formatting
    terminal_id: str | None = None
    amount_minor: int | None = None  # inserted or credited amount
    since_ms: int | None = None
    until_ms: int | None = None  # exclusive
    limit: int = DEFAULT_LIMIT


def find_payments(engine: Engine, q: Query) -> list[dict[str, Any]]:
    """Payments and unclaimed credits matching every given criterion, newest first.

    A whole payment id or a whole 10-digit account is looked up exactly first (an index
    lookup), and matched as a substring only when nothing has it exactly: on a table of
    a million payments the substring match reads the whole table (docs/benchmarks.md,
    "desk"), the exact one a few index pages."""
    p = s.payments
    text = q.text.strip()
    exact: ColumnElement[bool] | None = None
    partial: ColumnElement[bool] | None = None
    if text:
        digits = normalise_digits(text)
        if PAYMENT_ID_RE.match(text) and not text.replace("-", "").isdigit():
            exact = p.c.payment_id == text
            partial = p.c.payment_id.ilike(f"%{_like_escape(text)}%", escape=LIKE_ESCAPE)
        elif digits is not None and len(digits) >= MIN_PARTIAL_DIGITS:
            if len(digits) == PHONE_DIGITS:
                exact = p.c.account_digits == digits
            partial = or_(p.c.account_digits.like(f"%{digits}%"),
                          p.c.payment_id.like(f"%-{digits}"))
        else:
            raise ValueError(
                f"{text!r}: type a payment id, or at least {MIN_PARTIAL_DIGITS} digits of "
                "an account or phone number")
    stmt = select(p)
    if q.terminal_id:
        stmt = stmt.where(p.c.terminal_id == q.terminal_id)
    if q.amount_minor is not None:
        stmt = stmt.where(or_(p.c.inserted_minor == q.amount_minor,
                              p.c.credited_minor == q.amount_minor))
    if q.since_ms is not None:
        stmt = stmt.where(p.c.created_ms >= q.since_ms)
    if q.until_ms is not None:
        stmt = stmt.where(p.c.created_ms < q.until_ms)
    stmt = stmt.order_by(p.c.created_ms.desc(), p.c.terminal_id, p.c.payment_id,
                         p.c.reprocess_count.desc()).limit(q.limit)
    with engine.connect() as conn:
        rows: Any = []
        if exact is not None:
            rows = conn.execute(stmt.where(exact)).mappings().all()
        if not rows:
            rows = conn.execute(stmt if partial is None else stmt.where(partial)
                                ).mappings().all()
    return [{**{k: v for k, v in r.items() if k != "data"}, "data": json.loads(r["data"])}
            for r in rows]
