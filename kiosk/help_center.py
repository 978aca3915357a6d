"""The help center's document: categories, articles (RU/EN), top questions, and the
thresholds of proactive help. Pure: parsed and validated here, applied elsewhere.

The desk sends it as the optional `help_center` section of its signed, versioned config
document (sync/desk_config.py); until one arrives the terminal shows the articles shipped
with the package (`help_center_default.json`, one per complaint story). Format, rules and
limits: docs/self-service.md.

Article bodies never carry the support phone: the screen appends the current phone (from
the desk's config) below every article, so a changed number is right everywhere at once.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any

from drivers.fieldspec import Field, Invalid, Problem, Table, read_fields

LANGS = ("ru", "en")
MAX_CATEGORIES = 20
MAX_ARTICLES = 120
MAX_TOP = 10
MAX_KEYWORDS = 20
MAX_TITLE = 120
MAX_BODY = 4000
MAX_KEYWORD = 40
MAX_COUNT = 100  # a threshold count above this would never fire
MAX_IDLE_S = 3600.0
ID_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
DEFAULT_FILE = "help_center_default.json"


class HelpCenterError(ValueError):
    """A help center document refused as a whole; the message names the key."""


class Trigger(enum.StrEnum):
    """A moment of truth the proactive detector (ui/help_detector.py) recognises."""

    INVALID_ACCOUNT = "invalid_account"  # the number was refused again and again
    IDLE_WITH_CASH = "idle_with_cash"    # cash inside, nobody touches the screen
    BACK_AND_FORTH = "back_and_forth"    # back, forward, back …
    REJECTED_BILLS = "rejected_bills"    # the acceptor returns bill after bill


@dataclass(frozen=True)
class Bilingual:
    ru: str
    en: str


@dataclass(frozen=True)
class Category:
    id: str
    title: Bilingual


@dataclass(frozen=True)
class Article:
    id: str
    category: str
    title: Bilingual
    body: Bilingual
    keywords: tuple[str, ...] = ()  # extra search words (any language), never shown


@dataclass(frozen=True)
class Proactive:
    """When the detector offers help (defaults chosen so a customer who merely reads or
    counts bills is left alone; docs/self-service.md)."""

    enabled: bool = True
    invalid_account: int = 3      # refused account numbers in one session
    idle_with_cash_s: float = 45.0  # seconds untouched on the cash screen with cash in
    back_and_forth: int = 4       # "back" taps in one session
    rejected_bills: int = 3       # bills returned in a row in one session
    articles: dict[str, str] = field(default_factory=dict)  # trigger -> article id


@dataclass(frozen=True)
class HelpCenter:
    categories: tuple[Category, ...]
    articles: tuple[Article, ...]
    top: tuple[str, ...]  # article ids, in the order the help screen lists them
    proactive: Proactive = Proactive()

    def article(self, article_id: str) -> Article | None:
        return next((a for a in self.articles if a.id == article_id), None)

    def to_dict(self) -> dict[str, Any]:
        """The plain form the UI receives over the local API (parse_help_center reads it
        back unchanged)."""
        out = asdict(self)
        for a in out["articles"]:
            a["keywords"] = list(a["keywords"])
        out["categories"] = list(out["categories"])
        out["articles"] = list(out["articles"])
        out["top"] = list(out["top"])
        return out


def _text(limit: int) -> Field:
    return Field(str, what=f"a non-empty text of at most {limit} characters",
                 check=lambda s: len(s.strip()) > 0 and len(s) <= limit)


def _count_check(limit: int) -> Callable[[Any], bool]:
    return lambda v: 0 < len(v) <= limit


def _bilingual(t: Table, key: str, limit: int) -> Bilingual:
    values = read_fields(t.get(key, Field(dict, what="an object {ru, en}")),
                         {lang: _text(limit) for lang in LANGS}, t.where(key))
    return Bilingual(**values)


_ID = Field(str, what="an id of 1-40 characters a-z 0-9 _ -",
            check=lambda s: ID_RE.fullmatch(s) is not None)


def parse_help_center(table: Any) -> HelpCenter:
    """The validated document, or HelpCenterError naming the first bad key."""
    try:
        return _parse(table)
    except Invalid as exc:
        raise HelpCenterError(f"help_center.{exc.path}: {exc.problem}".replace(
            "help_center.: ", "help_center: ")) from exc


def _unique(ids: list[str], path: str) -> None:
    seen: set[str] = set()
    for i, one in enumerate(ids):
        if one in seen:
            raise Invalid(f"{path}[{i}]", Problem.VALUE, f"repeats the id {one!r}")
        seen.add(one)


def _parse(table: Any) -> HelpCenter:
    root = Table(table)
    counts = {"categories": MAX_CATEGORIES, "articles": MAX_ARTICLES}
    for key, limit in counts.items():
        root.get(key, Field(list, what=f"a list of 1-{limit} objects",
                            check=_count_check(limit)))
    categories = []
    for t in root.tables("categories"):
        categories.append(Category(t.get("id", _ID), _bilingual(t, "title", MAX_TITLE)))
        t.finish()
    _unique([c.id for c in categories], "categories")
    known = {c.id for c in categories}
    articles = []
    for t in root.tables("articles"):
        art_id = t.get("id", _ID)
        category = t.get("category", Field(str, what=f"one of the categories {sorted(known)}",
                                           check=lambda c: c in known))
        keywords = t.get("keywords", Field(
            list, [], f"a list of at most {MAX_KEYWORDS} words",
            check=lambda v: len(v) <= MAX_KEYWORDS and all(
                isinstance(w, str) and 0 < len(w) <= MAX_KEYWORD for w in v)))
        articles.append(Article(art_id, category, _bilingual(t, "title", MAX_TITLE),
                                _bilingual(t, "body", MAX_BODY), tuple(keywords)))
        t.finish()
    _unique([a.id for a in articles], "articles")
    ids = {a.id for a in articles}
    top = root.get("top", Field(
        list, [], f"a list of at most {MAX_TOP} article ids",
        check=lambda v: len(v) <= MAX_TOP and all(isinstance(x, str) for x in v)))
    for i, art in enumerate(top):
        if art not in ids:
            raise Invalid(f"top[{i}]", Problem.VALUE, f"names no article ({art[:40]!r})")
    _unique(top, "top")
    proactive = _proactive(root.sub("proactive"), ids)
    root.finish()
    return HelpCenter(tuple(categories), tuple(articles), tuple(top), proactive)


def _proactive(t: Table, ids: set[str]) -> Proactive:
    d = Proactive()
    count = "an integer 1-" + str(MAX_COUNT)
    values = {
        "enabled": t.get("enabled", Field(bool, d.enabled, "true or false")),
        "invalid_account": t.get("invalid_account", Field(int, d.invalid_account, count,
                                                          lo=1, hi=MAX_COUNT)),
        "idle_with_cash_s": t.get("idle_with_cash_s", Field(
            float, d.idle_with_cash_s, f"seconds, 5-{MAX_IDLE_S:g}", lo=5, hi=MAX_IDLE_S)),
        "back_and_forth": t.get("back_and_forth", Field(int, d.back_and_forth, count,
                                                        lo=1, hi=MAX_COUNT)),
        "rejected_bills": t.get("rejected_bills", Field(int, d.rejected_bills, count,
                                                        lo=1, hi=MAX_COUNT)),
    }
    arts = t.sub("articles")
    mapping: dict[str, str] = {}
    for trig in Trigger:
        art = arts.get(trig.value, Field(str, None, "an article id", check=lambda a: a in ids))
        if art is not None:
            mapping[trig.value] = art
    arts.finish()
    t.finish()
    return Proactive(articles=mapping, **values)


def default_help_center() -> HelpCenter:
    """The articles shipped with the terminal (used until the desk sends its own)."""
    text = resources.files("kiosk").joinpath(DEFAULT_FILE).read_text(encoding="utf-8")
    return parse_help_center(json.loads(text))
