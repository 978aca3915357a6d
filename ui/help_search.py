"""Search over the help articles, forgiving to a customer typing on a touch keyboard.

Pure and small on purpose (no dependency): normalise (case, ё→е, punctuation), cut a
light set of Russian and English endings so word forms meet ("чека", "чеку" → "чек";
"receipts" → "receipt"), then let a query word match an article word when their stems are
equal, when the query is the beginning of a word (typing is not finished), or when they
are one edit apart (two for long words): "квитанцыя" finds "квитанция". Title words weigh
more than keywords, keywords more than body words. docs/self-service.md; tests:
tests/ui/test_help_search.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

MIN_TOKEN = 2
MIN_PREFIX = 3  # a shorter unfinished word would match far too much
LONG_WORD = 6  # from this stem length, two typos are tolerated; below, one
MIN_STEM = 3
WEIGHT_TITLE = 3.0
WEIGHT_KEYWORD = 2.0
WEIGHT_BODY = 1.0
FUZZY_FACTOR = 0.6  # a typo match counts less than an exact one
MAX_QUERY = 60

_WORD = re.compile(r"[0-9a-zа-я]+")
# Longest first: the first ending that leaves a stem of MIN_STEM letters is cut.
_RU_ENDINGS = tuple(sorted((
    "иями", "ями", "ами", "ого", "его", "ому", "ему", "ыми", "ими", "ией", "ией",
    "ах", "ях", "ов", "ев", "ей", "ой", "ый", "ий", "ая", "яя", "ое", "ее", "ые", "ие",
    "ую", "юю", "ом", "ем", "ам", "ям", "ть", "ти", "ет", "ит", "ут", "ют", "ат", "ят",
    "ешь", "ишь", "ла", "ло", "ли", "ся", "сь", "ия", "ию", "ии", "ье", "ья", "ью",
    "а", "я", "о", "е", "ы", "и", "у", "ю", "ь", "й",
), key=len, reverse=True))
_EN_ENDINGS = ("ing", "ed", "es", "s")
STOP_WORDS = frozenset({
    "не", "на", "в", "во", "и", "а", "с", "со", "по", "за", "к", "у", "о", "об", "от",
    "до", "из", "что", "как", "где", "мне", "мой", "моя", "мои", "я", "это", "ли",
    "the", "a", "an", "to", "of", "in", "on", "my", "is", "it", "i", "and", "or", "not",
    "how", "what", "where", "do", "does", "нет", "нету", "no",
})


def normalise(text: str) -> str:
    return text.lower().replace("ё", "е")


def tokens(text: str) -> list[str]:
    """The words of a text, normalised, without stop words and single letters."""
    return [w for w in _WORD.findall(normalise(text))
            if len(w) >= MIN_TOKEN and w not in STOP_WORDS]


def stem(word: str) -> str:
    """A word without its ending (Russian or English), never shorter than MIN_STEM."""
    endings = _EN_ENDINGS if word.isascii() else _RU_ENDINGS
    for end in endings:
        if word.endswith(end) and len(word) - len(end) >= MIN_STEM:
            return word[: -len(end)]
    return word


def edit_distance(a: str, b: str, limit: int) -> int:
    """Levenshtein distance with adjacent swaps (a customer's most common slip), or
    limit + 1 as soon as it is certainly above `limit`."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1]


def word_match(query_word: str, word: str) -> float:
    """How well one typed word matches one article word: 1 exact (same stem or an
    unfinished word), FUZZY_FACTOR within the typo allowance, 0 otherwise."""
    q, w = stem(query_word), stem(word)
    if q == w or (len(query_word) >= MIN_PREFIX and word.startswith(query_word)):
        return 1.0
    allowed = 2 if min(len(q), len(w)) >= LONG_WORD else 1
    if edit_distance(q, w, allowed) <= allowed:
        return FUZZY_FACTOR
    # an unfinished word with a typo: compare with the word's beginning
    if len(query_word) >= MIN_PREFIX + 1 and len(word) > len(query_word):
        head = word[: len(query_word)]
        if edit_distance(query_word, head, 1) <= 1:
            return FUZZY_FACTOR
    return 0.0


@dataclass(frozen=True)
class Indexed:
    """One article's words by weight (both languages: a customer may type either)."""

    id: str
    fields: tuple[tuple[float, frozenset[str]], ...]


def index(articles: Iterable[Mapping[str, Any]]) -> list[Indexed]:
    """Articles as the help center's plain form (`{id, title: {ru, en}, body, keywords}`)."""
    out = []
    for a in articles:
        title = " ".join(str(v) for v in (a.get("title") or {}).values())
        body = " ".join(str(v) for v in (a.get("body") or {}).values())
        keywords = " ".join(str(k) for k in a.get("keywords") or ())
        out.append(Indexed(str(a.get("id")), (
            (WEIGHT_TITLE, frozenset(tokens(title))),
            (WEIGHT_KEYWORD, frozenset(tokens(keywords))),
            (WEIGHT_BODY, frozenset(tokens(body))),
        )))
    return out


def search(indexed: Iterable[Indexed], query: str, limit: int = 5) -> list[str]:
    """Article ids best first; an article must match every typed word but one (all of
    them for one or two words), so a long query does not pull in everything."""
    words = tokens(query[:MAX_QUERY])
    if not words:
        return []
    need = len(words) if len(words) <= 2 else len(words) - 1
    scored: list[tuple[float, int, str]] = []
    for order, art in enumerate(indexed):
        total, matched = 0.0, 0
        for q in words:
            best = max((weight * word_match(q, w) for weight, ws in art.fields for w in ws),
                       default=0.0)
            if best > 0:
                matched += 1
                total += best
        if matched >= need:
            scored.append((-total, order, art.id))
    return [art_id for _, _, art_id in sorted(scored)[:limit]]
